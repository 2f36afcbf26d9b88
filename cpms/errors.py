"""Errors the core raises, under one base.

::

    CpmsError
    ├── ConfigError           a configuration value is not allowed (start-up exits 2)
    ├── DocumentError         an OCPI document does not validate; names the field
    ├── NotFound              the object asked for does not exist
    ├── Conflict              the change contradicts what is stored (duplicate id, in use)
    ├── InvalidRequest        the request is well-formed but asks for something impossible
    └── SchemaOutOfDate       the database needs a migration the server may not run

Adapters translate these at their edge: the operator API to HTTP statuses, OCPI to OCPI
status codes, the CLI to exit codes.
"""

from __future__ import annotations

__all__ = [
    "ConfigError",
    "Conflict",
    "CpmsError",
    "DocumentError",
    "InvalidRequest",
    "NotFound",
    "SchemaOutOfDate",
]


class CpmsError(Exception):
    """Base of every error the core raises on purpose."""


class ConfigError(CpmsError):
    """A configuration value is not allowed.

    ``setting`` names the value as the user wrote it (flag, variable or file key).
    """

    def __init__(self, setting: str, value: object, allowed: str) -> None:
        self.setting = setting
        self.value = value
        self.allowed = allowed
        super().__init__(f"{setting}={value!r} is not allowed: {allowed}")


class DocumentError(CpmsError):
    """An OCPI document does not validate.

    ``path`` is where in the document the problem is, e.g. ``evses[0].connectors[0].power_type``.
    """

    def __init__(self, path: str, problem: str) -> None:
        self.path = path
        self.problem = problem
        super().__init__(f"{path or '(document)'}: {problem}")


class NotFound(CpmsError):
    """The object asked for does not exist."""

    def __init__(self, kind: str, key: object) -> None:
        self.kind = kind
        self.key = key
        super().__init__(f"{kind} {key!r} not found")


class Conflict(CpmsError):
    """The change contradicts what is stored (a duplicate id, an object in use)."""


class InvalidRequest(CpmsError):
    """The request is well-formed but asks for something that cannot be done."""


class SchemaOutOfDate(CpmsError):
    """The database schema is behind the code and migrating was not allowed."""
