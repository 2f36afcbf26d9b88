"""Read a JSON file of OCPI documents: one object, or a list of objects.

Only the JSON is checked here (syntax, shape, no duplicate keys, no ``NaN``); each document
is then checked by ``cpms.documents.schema.validate``. Pure: the caller reads the file.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from cpms.errors import DocumentError

__all__ = ["FILE_PATH", "item_of", "load_documents"]

#: The path ``DocumentError`` names for a problem with the file as a whole.
FILE_PATH = "(file)"


def load_documents(text: str) -> list[dict[str, Any]]:
    """Parse ``text`` holding one JSON object or a list of them; return the objects.

    Raise ``DocumentError`` on invalid JSON, a duplicate key, ``NaN``/``Infinity`` (all
    with path ``(file)``), a top level that is neither an object nor a list, or a list
    item that is not an object (path ``[i]``).
    """
    try:
        value = json.loads(text, object_pairs_hook=_object, parse_constant=_constant)
    except json.JSONDecodeError as exc:
        raise DocumentError(
            FILE_PATH, f"invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}"
        ) from None
    if isinstance(value, dict):
        return [value]
    if not isinstance(value, list):
        raise DocumentError(
            FILE_PATH, f"expected an object or a list of objects, got {_json_type(value)}"
        )
    for index, item in enumerate(value):
        if not isinstance(item, dict):
            raise DocumentError(f"[{index}]", f"expected an object, got {_json_type(item)}")
    return value


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, item in pairs:
        if key in result:
            raise DocumentError(FILE_PATH, f"duplicate key {key!r} in one object")
        result[key] = item
    return result


def _constant(name: str) -> Any:
    raise DocumentError(FILE_PATH, f"{name} is not a JSON number")


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    return "an array" if isinstance(value, list) else type(value).__name__


@contextmanager
def item_of(index: int, count: int) -> Iterator[None]:
    """Name list item ``index`` in a ``DocumentError`` raised inside, when there are several.

    An import of one document reports ``evses[0].uid``; of a list, ``[3].evses[0].uid``.
    """
    try:
        yield
    except DocumentError as error:
        if count == 1:
            raise
        path = f"[{index}].{error.path}" if error.path else f"[{index}]"
        raise DocumentError(path, error.problem) from None
