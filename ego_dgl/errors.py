"""User-facing errors: the CLI prints their message as one line and exits with code 2."""


class EgoDGLError(Exception):
    """A problem with the user's input or setup; the message says what and how to fix it."""


class DataError(EgoDGLError):
    """Bad or missing dataset files."""


class ConfigError(EgoDGLError):
    """Unknown, invalid or incompatible options."""


class EgoDGLWarning(UserWarning):
    """Something was fixed up on the way (e.g. duplicate interactions dropped); the CLI
    shows it as one yellow line."""
