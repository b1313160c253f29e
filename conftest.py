"""Fixtures shared by every test suite of the repository."""

pytest_plugins = ["shopkit.fixtures"]
