"""Errors that stop a build; their messages name the file and the problem."""


class BuildError(Exception):
    """Input that cannot be built at all (or any problem under --strict)."""
