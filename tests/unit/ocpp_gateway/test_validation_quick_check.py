"""The quick check (fastjsonschema) never accepts what jsonschema refuses, on every OCPP schema.

``validation.violations`` trusts the generated validator when it says "valid" and asks
jsonschema only otherwise. So for every schema of both versions, payloads built from the
schema itself (valid ones, and each property broken in the ways stations break them) must
never pass the quick check while jsonschema refuses them; and valid payloads must pass it, or
the quick path would be dead weight.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator, Mapping
from typing import Any

import fastjsonschema
import pytest

from ocpp_gateway import validation
from ocpp_gateway.rpc import OcppVersion
from ocpp_gateway.validation import PayloadKind

WRONG_VALUES: tuple[Any, ...] = (None, True, 0, 1.0, 1.5, -1, "", "x" * 600, [], {}, [1], {"a": 1})


def _schemas() -> Iterator[tuple[OcppVersion, str, PayloadKind]]:
    for version in (OcppVersion.V16, OcppVersion.V201):
        for action, kind in sorted(validation._schema_files(version), key=str):
            yield version, action, kind


def _resolve(schema: Mapping[str, Any], root: Mapping[str, Any]) -> Mapping[str, Any]:
    while "$ref" in schema:
        node: Any = root
        for part in schema["$ref"].removeprefix("#/").split("/"):
            node = node[part]
        schema = node
    return schema


def _example(schema: Mapping[str, Any], root: Mapping[str, Any], *, full: bool) -> Any:
    """A valid instance: required properties only, or every property when ``full``."""
    schema = _resolve(schema, root)
    if "enum" in schema:
        return schema["enum"][0]
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = kind[0]
    if kind == "object":
        properties = schema.get("properties", {})
        names = properties if full else schema.get("required", [])
        return {name: _example(properties[name], root, full=full) for name in names}
    if kind == "array":
        item = _example(schema.get("items", {}), root, full=full)
        return [item] * max(1, schema.get("minItems", 1))
    if kind == "string":
        return "a" * max(1, min(schema.get("minLength", 1), schema.get("maxLength", 8)))
    if kind == "integer":
        return int(schema.get("minimum", 1))
    if kind == "number":
        return float(schema.get("minimum", 1))
    if kind == "boolean":
        return True
    return "a"


def _leaves(instance: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    if isinstance(instance, dict):
        for key, value in instance.items():
            yield (*path, key)
            yield from _leaves(value, (*path, key))
    elif isinstance(instance, list) and instance:
        yield (*path, 0)
        yield from _leaves(instance[0], (*path, 0))


def _replaced(instance: Any, path: tuple[Any, ...], value: Any) -> Any:
    changed = copy.deepcopy(instance)
    node = changed
    for part in path[:-1]:
        node = node[part]
    node[path[-1]] = value
    return changed


def _variants(schema: Mapping[str, Any]) -> Iterator[Any]:
    for full in (False, True):
        valid = _example(schema, schema, full=full)
        yield valid
        if isinstance(valid, dict):
            yield {**valid, "unexpectedProperty": 1}
            for path in _leaves(valid):
                for wrong in WRONG_VALUES:
                    yield _replaced(valid, path, wrong)
    yield from WRONG_VALUES


SCHEMAS = list(_schemas())


def test_every_schema_is_covered() -> None:
    assert len(SCHEMAS) == validation.preload()


@pytest.mark.parametrize(("version", "action", "kind"), SCHEMAS, ids=lambda value: str(value))
def test_the_quick_check_accepts_nothing_jsonschema_refuses(
    version: OcppVersion, action: str, kind: PayloadKind
) -> None:
    slow = validation._validator(version, action, kind)
    quick = validation._quick_check(version, action, kind)
    for payload in _variants(slow.schema):
        try:
            quick(payload)
        except fastjsonschema.JsonSchemaValueException:
            continue
        assert slow.is_valid(payload), (action, kind, payload)


@pytest.mark.parametrize(("version", "action", "kind"), SCHEMAS, ids=lambda value: str(value))
def test_the_quick_check_accepts_valid_payloads(
    version: OcppVersion, action: str, kind: PayloadKind
) -> None:
    schema = validation._validator(version, action, kind).schema
    for full in (False, True):
        payload = _example(schema, schema, full=full)
        assert validation._validator(version, action, kind).is_valid(payload), payload
        validation._quick_check(version, action, kind)(payload)  # raises if refused


def _profile_limited_to(limit: float) -> dict[str, Any]:
    schedule = {
        "chargingRateUnit": "A",
        "chargingSchedulePeriod": [{"startPeriod": 0, "limit": limit}],
    }
    profile = {
        "chargingProfileId": 1,
        "stackLevel": 0,
        "chargingProfilePurpose": "TxDefaultProfile",
        "chargingProfileKind": "Absolute",
        "chargingSchedule": schedule,
    }
    return {"connectorId": 1, "csChargingProfiles": profile}


def test_multiple_of_is_decimal_in_both_checks() -> None:
    # 21.4 is a multiple of 0.1 in decimal, not in binary floating point; 21.45 is neither.
    quick = validation._quick_check(OcppVersion.V16, "SetChargingProfile", PayloadKind.REQUEST)
    quick(_profile_limited_to(21.4))
    assert (
        validation.violations(OcppVersion.V16, "SetChargingProfile", _profile_limited_to(21.4))
        == []
    )
    with pytest.raises(fastjsonschema.JsonSchemaValueException):
        quick(_profile_limited_to(21.45))
    found = validation.violations(OcppVersion.V16, "SetChargingProfile", _profile_limited_to(21.45))
    assert [(v.path, v.rule) for v in found] == [
        ("csChargingProfiles.chargingSchedule.chargingSchedulePeriod[0].limit", "multipleOf")
    ]
