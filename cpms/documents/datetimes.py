"""Read and write OCPI 2.2.1 DateTime values.

OCPI DateTime is a subset of RFC 3339 in UTC only: ``2015-06-29T20:39:09Z``, with the ``Z``
optional on input (absent means UTC) and fractional seconds allowed. A numeric offset, even
``+00:00``, is not allowed. We always emit the ``Z`` form, with milliseconds only when the
time has a sub-second part. Spec: OCPI 2.2.1 Types, DateTime.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime

from cpms.errors import DocumentError

__all__ = ["DATETIME_MAX_LENGTH", "format_datetime", "parse_datetime"]

#: OCPI DateTime is a string(25).
DATETIME_MAX_LENGTH = 25

_DATETIME = re.compile(
    r"(?P<year>\d{4})-(?P<month>\d{2})-(?P<day>\d{2})"
    r"T(?P<hour>\d{2}):(?P<minute>\d{2}):(?P<second>\d{2})"
    r"(?:\.(?P<fraction>\d+))?Z?"
)
# A time followed by a numeric offset: recognised only to explain the rejection.
_WITH_OFFSET = re.compile(r".*T\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?[+-]\d{2}(?::?\d{2})?")

_EXAMPLE = "'2015-06-29T20:39:09Z'"


def parse_datetime(text: str, path: str) -> datetime:
    """Parse an OCPI DateTime into an aware UTC datetime.

    Raise ``DocumentError`` naming ``path`` when ``text`` is not an OCPI DateTime, a
    numeric UTC offset included. Digits beyond microseconds are dropped.
    """
    if not isinstance(text, str):
        raise DocumentError(path, f"expected a DateTime string like {_EXAMPLE}, got {text!r}")
    if len(text) > DATETIME_MAX_LENGTH:
        raise DocumentError(
            path, f"DateTime too long: {len(text)} characters, at most {DATETIME_MAX_LENGTH}"
        )
    match = _DATETIME.fullmatch(text)
    if match is None:
        if _WITH_OFFSET.fullmatch(text):
            raise DocumentError(
                path,
                f"{text!r} has a numeric UTC offset; OCPI DateTimes are UTC only,"
                f" written like {_EXAMPLE}",
            )
        raise DocumentError(path, f"expected a DateTime like {_EXAMPLE}, got {text!r}")
    fraction = (match["fraction"] or "").ljust(6, "0")[:6]
    try:
        return datetime(
            int(match["year"]),
            int(match["month"]),
            int(match["day"]),
            int(match["hour"]),
            int(match["minute"]),
            int(match["second"]),
            int(fraction),
            tzinfo=UTC,
        )
    except ValueError as exc:
        raise DocumentError(path, f"{text!r} is not a valid date and time: {exc}") from None


def format_datetime(dt: datetime) -> str:
    """Format an aware datetime as an OCPI DateTime in UTC, ending in ``Z``.

    Milliseconds are written only when ``dt`` has a sub-second part. A naive datetime is a
    bug (the core keeps aware UTC times only) and raises ``ValueError``.
    """
    if dt.tzinfo is None or dt.utcoffset() is None:
        raise ValueError(f"naive datetime {dt!r}: the core keeps aware UTC times only")
    dt = dt.astimezone(UTC)
    text = (
        f"{dt.year:04d}-{dt.month:02d}-{dt.day:02d}T{dt.hour:02d}:{dt.minute:02d}:{dt.second:02d}"
    )
    if dt.microsecond:
        text += f".{dt.microsecond // 1000:03d}"
    return text + "Z"
