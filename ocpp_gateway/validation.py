"""Check OCPP-J payloads against the JSON schemas shipped inside the ``ocpp`` package.

Owns which schema applies to a payload (``ocpp/v16/schemas/{Action}.json`` and
``{Action}Response.json`` for 1.6; ``ocpp/v201/schemas/{Action}Request.json`` and
``{Action}Response.json`` for 2.0.1), how a schema error becomes a ``Violation`` with a readable
path, and which CALLERROR answers a station's invalid CALL. Does no I/O once warm: each validator
is compiled once per (version, action, kind) on first use, or all at once by ``preload()`` when
the server starts, and is reused for every message. A payload is first put to a validator
that ``fastjsonschema`` generated from the schema (about thirty times quicker than jsonschema on
the hot path's small payloads); only a payload it refuses goes to jsonschema, which decides and
explains (so errors, their codes and the exact ``multipleOf`` below are jsonschema's). The draft
comes from each schema's ``$schema`` (1.6 is draft-04 except the 22 schemas of its security
extension, which are draft-06 like all of 2.0.1). Formats (``date-time``, ``uri``) are not
checked: timestamps are the handlers' business (FIELD-NOTES 11).

Who calls what: the gateway runs ``check_call`` on every CALL a station sends, ``check_response``
on the station's CALLRESULT to our CALL, and ``check_outgoing`` on a CALL we are about to send
(an operator's Reset body, say).

The CALLERROR answering an invalid CALL (OCPP-J 1.6 section 4.2.3, OCPP 2.0.1 Part 4 section 4),
chosen by the rule of the most serious violation, in this order of priority:

==================================  ============================  =============================
broken schema rule                  ocpp1.6                       ocpp2.0.1
==================================  ============================  =============================
``type``                            TypeConstraintViolation       TypeConstraintViolation
``required``, ``minItems``,         OccurenceConstraintViolation  OccurrenceConstraintViolation
``maxItems``
``additionalProperties``, anything  FormationViolation            FormatViolation
else
``enum``, ``maxLength``,            PropertyConstraintViolation   PropertyConstraintViolation
``minLength``, ``pattern``,
``minimum``, ``maximum``,
``exclusiveMinimum``,
``exclusiveMaximum``,
``multipleOf``
no request schema for the action    NotImplemented                NotImplemented
==================================  ============================  =============================

"Anything else" includes ``anyOf``/``oneOf``: an error under a combinator is reported with the
combinator's keyword (no shipped schema uses one). Leniency (a per-station switch, FIELD-NOTES 12)
tolerates only ``maxLength`` and ``enum`` (over-long serial numbers, ``errorCode: "Error"``,
unknown units); the caller logs what was tolerated.

``multipleOf`` is checked on the decimal number written in the JSON text, not on its binary
float: the 1.6 charging schedules require ``multipleOf: 0.1`` and ``21.4 / 0.1`` is not an
integer in floating point, so plain jsonschema refuses a valid ``limit: 21.4``.
"""

from __future__ import annotations

import enum
import functools
import json
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from fractions import Fraction
from importlib import resources
from importlib.resources.abc import Traversable
from typing import Any

import fastjsonschema
from jsonschema import ValidationError, validators
from jsonschema.protocols import Validator

from ocpp_gateway.rpc import ErrorCode, OcppVersion, RpcError

__all__ = [
    "TOLERABLE_RULES",
    "InvalidPayload",
    "PayloadKind",
    "UnknownAction",
    "Violation",
    "check_call",
    "check_outgoing",
    "check_response",
    "has_schema",
    "known_actions",
    "preload",
    "violations",
]

TOLERABLE_RULES: frozenset[str] = frozenset({"maxLength", "enum"})
"""Rules a lenient station may break: real firmware sends long serials and unlisted values."""

MAX_MESSAGE_LENGTH = 200
"""A violation's message is cut here: jsonschema quotes whole instances and enum lists."""

MAX_DESCRIPTION_LENGTH = 255
"""OCPP 2.0.1 caps a CALLERROR's errorDescription at 255 characters; we apply it to 1.6 too."""

_SCHEMA_PACKAGE = "ocpp"
_SCHEMA_DIRS: Mapping[OcppVersion, str] = {
    OcppVersion.V16: "v16/schemas",
    OcppVersion.V201: "v201/schemas",
}
_REQUEST_SUFFIXES: Mapping[OcppVersion, str] = {OcppVersion.V16: "", OcppVersion.V201: "Request"}
_RESPONSE_SUFFIX = "Response"

_TYPE_RULES = frozenset({"type"})
_OCCURRENCE_RULES = frozenset({"required", "minItems", "maxItems"})
_PROPERTY_RULES = frozenset(
    {
        "enum",
        "maxLength",
        "minLength",
        "pattern",
        "minimum",
        "maximum",
        "exclusiveMinimum",
        "exclusiveMaximum",
        "multipleOf",
    }
)


class PayloadKind(enum.Enum):
    """Which half of an exchange a payload is: a CALL's or its CALLRESULT's."""

    REQUEST = "request"
    RESPONSE = "response"


@dataclass(frozen=True, slots=True)
class Violation:
    """One broken schema rule: where, which jsonschema keyword, and what jsonschema says.

    ``path`` names the value at fault, or the missing or unexpected property
    (``"meterValue[0].timestamp"``); ``""`` is the payload itself. ``message`` is cut at
    ``MAX_MESSAGE_LENGTH``.
    """

    path: str
    rule: str
    message: str


class UnknownAction(ValueError):
    """No schema exists for this action (and kind) in this OCPP version."""

    def __init__(self, version: OcppVersion, action: str, kind: PayloadKind) -> None:
        super().__init__(f"no {kind.value} schema for action {action!r} in {version}")
        self.version = version
        self.action = action
        self.kind = kind


class InvalidPayload(ValueError):
    """A payload we were about to send breaks its schema; ``violations`` says how."""

    def __init__(self, version: OcppVersion, action: str, found: list[Violation]) -> None:
        listed = "; ".join(_describe(violation) for violation in found)
        super().__init__(f"{action} payload breaks the {version} schema: {listed}")
        self.version = version
        self.action = action
        self.violations = found


def known_actions(version: OcppVersion) -> frozenset[str]:
    """Return the actions of ``version`` that have a request schema."""
    return frozenset(
        action for action, kind in _schema_files(version) if kind is PayloadKind.REQUEST
    )


def has_schema(version: OcppVersion, action: str, kind: PayloadKind = PayloadKind.REQUEST) -> bool:
    """Tell whether ``version`` ships a schema for ``action``'s request or response."""
    return (action, kind) in _schema_files(version)


def preload(versions: Iterable[OcppVersion] = (OcppVersion.V16, OcppVersion.V201)) -> int:
    """Compile every schema of ``versions`` now rather than on first use; return how many."""
    count = 0
    for version in versions:
        for action, kind in _schema_files(version):
            _quick_check(version, action, kind)
            count += 1
    return count


def violations(
    version: OcppVersion,
    action: str,
    payload: Any,
    kind: PayloadKind = PayloadKind.REQUEST,
) -> list[Violation]:
    """Return how ``payload`` breaks its schema, most serious first; ``[]`` when it is valid.

    Raises ``UnknownAction`` when ``version`` has no such schema.
    """
    validator = _validator(version, action, kind)
    try:
        _quick_check(version, action, kind)(payload)
        return []  # the common case, without building errors
    except fastjsonschema.JsonSchemaValueException:
        pass  # jsonschema decides (it may still accept: multipleOf on decimals, say)
    found = [
        (_priority(rule), _sort_key(parts), Violation(_path(parts), rule, _shorten(message)))
        for parts, rule, message in _flatten(validator.iter_errors(payload))
    ]
    found.sort(key=lambda item: (item[0], item[1], item[2].rule, item[2].message))
    return [violation for _, _, violation in found]


def check_call(
    version: OcppVersion, action: str, payload: Any, *, lenient: bool
) -> list[Violation]:
    """Check a station's CALL; return what leniency tolerated, or raise the CALLERROR to send.

    Returns ``[]`` for a valid payload. With ``lenient``, a payload whose every violation is in
    ``TOLERABLE_RULES`` is accepted and those violations are returned for the caller to log.
    Otherwise raises ``RpcError`` for the most serious violation (see the module docstring),
    with ``{"path": ..., "rule": ...}`` as details; ``NotImplemented`` for an unknown action.
    """
    try:
        found = violations(version, action, payload)
    except UnknownAction:
        raise RpcError(ErrorCode.NOT_IMPLEMENTED, f"unknown action {action!r}") from None
    if not found:
        return []
    fatal = [violation for violation in found if violation.rule not in TOLERABLE_RULES]
    if lenient and not fatal:
        return found
    worst = (fatal if lenient else found)[0]
    raise RpcError(
        _error_code(version, worst.rule),
        _shorten(_describe(worst), MAX_DESCRIPTION_LENGTH),
        details={"path": _shorten(worst.path), "rule": worst.rule},
    )


def check_response(
    version: OcppVersion, action: str, payload: Any, *, lenient: bool
) -> list[Violation]:
    """Return the violations that make a station's CALLRESULT to our CALL unacceptable.

    Strict: every violation. Lenient: those outside ``TOLERABLE_RULES``; the tolerated ones are
    left out, so ``[]`` means the response may be used. Raises only ``UnknownAction``.
    """
    found = violations(version, action, payload, PayloadKind.RESPONSE)
    if not lenient:
        return found
    return [violation for violation in found if violation.rule not in TOLERABLE_RULES]


def check_outgoing(version: OcppVersion, action: str, payload: Any) -> None:
    """Refuse a CALL payload of ours that breaks its schema: we are never lenient with ourselves.

    Raises ``InvalidPayload`` listing the violations, ``UnknownAction`` when there is no schema.
    """
    found = violations(version, action, payload)
    if found:
        raise InvalidPayload(version, action, found)


# Schemas and their compiled validators


@functools.cache
def _schema_files(version: OcppVersion) -> Mapping[tuple[str, PayloadKind], str]:
    """Map (action, kind) to the schema file name, for every schema ``version`` ships."""
    request_suffix = _REQUEST_SUFFIXES[OcppVersion(version)]  # ValueError for other versions
    files: dict[tuple[str, PayloadKind], str] = {}
    for entry in _schema_dir(version).iterdir():
        name = entry.name
        if not name.endswith(".json"):
            continue
        stem = name.removesuffix(".json")
        if stem.endswith(_RESPONSE_SUFFIX):
            files[stem.removesuffix(_RESPONSE_SUFFIX), PayloadKind.RESPONSE] = name
        elif stem.endswith(request_suffix):  # "" for 1.6: every other file is a request
            files[stem.removesuffix(request_suffix), PayloadKind.REQUEST] = name
    return files


def _schema_dir(version: OcppVersion) -> Traversable:
    return resources.files(_SCHEMA_PACKAGE).joinpath(_SCHEMA_DIRS[OcppVersion(version)])


@functools.cache
def _validator(version: OcppVersion, action: str, kind: PayloadKind) -> Validator:
    """Compile the validator of one schema; cached, so each file is read once per process."""
    name = _schema_files(version).get((action, kind))
    if name is None:  # raised, so not cached: station-chosen names cannot grow the cache
        raise UnknownAction(version, action, kind)
    text = _schema_dir(version).joinpath(name).read_text(encoding="utf-8-sig")
    schema = json.loads(text)
    return _with_exact_multiple_of(validators.validator_for(schema))(schema)


@functools.cache
def _quick_check(version: OcppVersion, action: str, kind: PayloadKind) -> Callable[[Any], Any]:
    """The schema as generated Python: raises ``JsonSchemaValueException`` if not plainly valid.

    Defaults are not filled in (the payload stays what the station sent) and formats are not
    checked, as with jsonschema above.
    """
    return fastjsonschema.compile(
        _validator(version, action, kind).schema,
        use_default=False,
        use_formats=False,
        detailed_exceptions=False,
    )


@functools.cache
def _with_exact_multiple_of(base: type[Validator]) -> type[Validator]:
    return validators.extend(base, {"multipleOf": _exact_multiple_of})


def _exact_multiple_of(
    validator: Validator, divisor: Any, instance: Any, schema: Mapping[str, Any]
) -> Iterator[ValidationError]:
    """Check ``multipleOf`` on decimal values: ``21.4`` is a multiple of ``0.1``."""
    if not validator.is_type(instance, "number"):
        return
    try:
        multiple = (_exact(instance) / _exact(divisor)).denominator == 1
    except (ValueError, OverflowError, ZeroDivisionError):  # NaN, Infinity
        multiple = False
    if not multiple:
        yield ValidationError(f"{instance!r} is not a multiple of {divisor}")


def _exact(number: float | int) -> Fraction:
    # str() of a float is the shortest text that reads back as it: what the JSON said.
    return Fraction(str(number)) if isinstance(number, float) else Fraction(number)


# From jsonschema errors to violations and CALLERROR codes


_Part = str | int


def _flatten(errors: Iterable[ValidationError]) -> Iterator[tuple[list[_Part], str, str]]:
    """Yield (path parts, rule, message) per broken rule, naming the property at fault."""
    for error in errors:
        parts = list(error.absolute_path)
        rule = str(error.validator)
        if rule == "required" and isinstance(error.instance, Mapping):
            yield [*parts, _missing_property(error)], rule, error.message
        elif rule == "additionalProperties" and isinstance(error.instance, Mapping):
            extras = _additional_properties(error.instance, error.schema)
            if not extras:
                yield parts, rule, error.message
            for extra in extras:
                yield [*parts, extra], rule, f"{extra!r} is not an allowed property"
        else:
            yield parts, rule, error.message


def _missing_property(error: ValidationError) -> str:
    """Name the property one ``required`` error is about (jsonschema raises one per property)."""
    missing = [name for name in error.validator_value if name not in error.instance]
    for name in missing:
        if error.message == f"{name!r} is a required property":
            return str(name)
    return str(missing[0]) if missing else ""


def _additional_properties(instance: Mapping[str, Any], schema: Any) -> list[str]:
    if not isinstance(schema, Mapping):
        return []
    allowed = schema.get("properties", {})
    patterns = schema.get("patternProperties", {})
    if patterns:  # none of the shipped schemas has any; jsonschema then names no extras
        return []
    return [str(key) for key in instance if key not in allowed]


def _path(parts: Iterable[_Part]) -> str:
    text = ""
    for part in parts:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else part
    return text


def _sort_key(parts: list[_Part]) -> tuple[tuple[int, int, str], ...]:
    # Array indices sort as numbers ("[2]" before "[10]"), keys as text.
    return tuple((0, part, "") if isinstance(part, int) else (1, 0, part) for part in parts)


def _priority(rule: str) -> int:
    """Rank a rule for choosing the CALLERROR: lower is more serious."""
    if rule in _TYPE_RULES:
        return 0
    if rule in _OCCURRENCE_RULES:
        return 1
    if rule in _PROPERTY_RULES:
        return 3
    return 2  # additionalProperties and anything else


def _error_code(version: OcppVersion, rule: str) -> ErrorCode:
    v16 = OcppVersion(version) is OcppVersion.V16
    if rule in _TYPE_RULES:
        return ErrorCode.TYPE_CONSTRAINT_VIOLATION
    if rule in _OCCURRENCE_RULES:
        if v16:
            return ErrorCode.OCCURENCE_CONSTRAINT_VIOLATION
        return ErrorCode.OCCURRENCE_CONSTRAINT_VIOLATION
    if rule in _PROPERTY_RULES:
        return ErrorCode.PROPERTY_CONSTRAINT_VIOLATION
    return ErrorCode.FORMATION_VIOLATION if v16 else ErrorCode.FORMAT_VIOLATION


def _describe(violation: Violation) -> str:
    return f"{violation.path}: {violation.message}" if violation.path else violation.message


def _shorten(text: str, limit: int = MAX_MESSAGE_LENGTH) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."
