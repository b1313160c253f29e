"""Typed clients of the services the cart calls."""
