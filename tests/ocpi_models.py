"""Check OCPI bodies against an independent model set we did not write (``ocpi-types``).

``check(name, body)`` parses ``body`` with ``ocpi_types.v2_2_1.<name>.from_dict`` and raises
``AssertionError`` naming the model and the problem; ``problems(name, body)`` returns the
problem text instead (empty when the body parses). ``ocpi-types`` is a test dependency only.
"""

from __future__ import annotations

import traceback
from typing import Any

from ocpi_types import v2_2_1

__all__ = ["check", "problems"]


def problems(name: str, body: Any) -> str:
    """Return why ``body`` is not a valid ``name`` (e.g. "Session"), or "" when it is."""
    model = getattr(v2_2_1, name)
    try:
        model.from_dict(body)
    except (AssertionError, ValueError, TypeError, KeyError, AttributeError) as error:
        where = traceback.extract_tb(error.__traceback__)[-2:]
        return f"{name}: {type(error).__name__} {error} at {[f.line for f in where]}"
    return ""


def check(name: str, body: Any) -> None:
    """Raise ``AssertionError`` unless ``body`` parses as ocpi-types' ``name``."""
    problem = problems(name, body)
    assert not problem, f"{problem}\nbody: {body!r}"
