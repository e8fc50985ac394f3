"""User-facing errors: the CLI prints these as one line and exits non-zero."""


class DDIBError(Exception):
    """A problem with the user's input or environment, explained in one line."""
