"""Typed clients for the services this one calls."""
