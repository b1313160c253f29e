"""Fakes of outside systems the tests cannot run for real; each one says in its name, its module
docstring and its notes file that it is a fake, and where it differs from the real thing."""
