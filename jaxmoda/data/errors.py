"""Data errors: the project's user-facing error types, plus file-not-found and missing-extra variants.

They subclass the builtin types the callers expect (ValueError, FileNotFoundError,
ImportError) and JaxmodaError, so entry points print them as one line.
"""

from jaxmoda.errors import ConfigError, DataError, JaxmodaError


class MissingDataError(DataError, FileNotFoundError):
    """A dataset path that does not exist or holds no usable file."""


class MissingExtraError(JaxmodaError, ImportError):
    """An optional dependency (a pip extra) that is not installed."""


__all__ = ["ConfigError", "DataError", "MissingDataError", "MissingExtraError"]
