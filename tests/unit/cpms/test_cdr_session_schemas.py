"""Tests of the OCPI 2.2.1 Session and CDR schemas in cpms.documents.schema.

Driven by the official example payloads (../shared/ocpi/examples/2.2.1) and by small
changes to them made here: lengths at and one past their limit, Session-only dimensions,
credit CDRs, charging-period order. No database.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from typing import Any, get_args

import pytest
from jsonschema import Draft202012Validator

from cpms.documents import find_problems, schema, validate, validate_subschema
from cpms.errors import DocumentError

from support import EXAMPLES

FULL_SESSIONS = [
    "session_example_1_simple_start.json",
    "session_example_2_short_finished.json",
]
FULL_CDRS = ["cdr_example.json"]
# PATCH bodies: partial Sessions. Only their parts are whole OCPI objects.
SESSION_PATCHES = [
    "session_patch_example_charging_period.json",
    "session_patch_example_total_cost.json",
]
NEW_SUBSCHEMAS = {
    "Session",
    "CDR",
    "CdrToken",
    "CdrLocation",
    "ChargingPeriod",
    "CdrDimension",
    "SignedData",
    "SignedValue",
}
SESSION_ONLY_DIMENSIONS = ["CURRENT", "ENERGY_EXPORT", "ENERGY_IMPORT", "POWER", "STATE_OF_CHARGE"]


def example(name: str) -> Any:
    """Load an official example, unwrapped from a response envelope's ``data`` if it has one."""
    if not EXAMPLES.is_dir():
        pytest.fail(f"official OCPI examples not found at {EXAMPLES} (set CPMS_SHARED_DIR)")
    doc = json.loads((EXAMPLES / name).read_text(encoding="utf-8"))
    if isinstance(doc, dict) and "data" in doc and "status_code" in doc:
        return doc["data"]
    return doc


def cdr_doc() -> dict[str, Any]:
    """A fresh copy of the official CDR example, valid as it is."""
    return copy.deepcopy(example("cdr_example.json"))


def session_doc() -> dict[str, Any]:
    """A fresh copy of the official finished-session example, valid as it is."""
    return copy.deepcopy(example("session_example_2_short_finished.json"))


def problem_of(kind: schema.DocumentKind, doc: object) -> DocumentError:
    with pytest.raises(DocumentError) as caught:
        validate(kind, doc)
    return caught.value


def signed_data(**changes: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "encoding_method": "OCMF",
        "encoding_method_version": 1,
        "public_key": "MFYwEAYHKoZIzj0CAQYFK4EEAAoDQgAE",
        "signed_values": [
            {"nature": "Start", "plain_data": "OCMF|{}", "signed_data": "c2lnbmVk"},
            {"nature": "End", "plain_data": "OCMF|{}", "signed_data": "c2lnbmVk"},
        ],
        "url": "https://example.com/verify",
    }
    doc.update(changes)
    return doc


# --------------------------------------------------------------------------- the examples


def test_every_official_session_and_cdr_example_is_classified_once() -> None:
    if not EXAMPLES.is_dir():
        pytest.fail(f"official OCPI examples not found at {EXAMPLES} (set CPMS_SHARED_DIR)")
    on_disk = {
        path.name for pattern in ("session*.json", "cdr*.json") for path in EXAMPLES.glob(pattern)
    }
    classified = [*FULL_SESSIONS, *FULL_CDRS, *SESSION_PATCHES]

    assert len(classified) == len(set(classified))
    assert set(classified) == on_disk


@pytest.mark.parametrize("name", FULL_SESSIONS)
def test_every_official_session_example_validates(name: str) -> None:
    doc = example(name)

    assert find_problems("session", doc) == []
    # A Session is not a CDR: the same document has CDR fields missing.
    assert find_problems("cdr", doc)


@pytest.mark.parametrize("name", FULL_CDRS)
def test_every_official_cdr_example_validates(name: str) -> None:
    doc = example(name)

    assert find_problems("cdr", doc) == []
    assert find_problems("session", doc)


@pytest.mark.parametrize("name", [*FULL_SESSIONS, *FULL_CDRS])
def test_the_parts_of_every_official_example_validate_on_their_own(name: str) -> None:
    doc = example(name)

    validate_subschema("CdrToken", doc["cdr_token"])
    validate_subschema("Price", doc["total_cost"])
    if "cdr_location" in doc:
        validate_subschema("CdrLocation", doc["cdr_location"])
    for period in doc.get("charging_periods") or []:
        validate_subschema("ChargingPeriod", period)
        for dimension in period["dimensions"]:
            validate_subschema("CdrDimension", dimension)
    for tariff in doc.get("tariffs") or []:
        validate_subschema("Tariff", tariff)


@pytest.mark.parametrize("name", SESSION_PATCHES)
def test_official_session_patch_examples_are_not_full_sessions(name: str) -> None:
    problems = find_problems("session", example(name))

    assert "'id' is required" in {p.problem for p in problems}


def test_the_parts_of_the_official_session_patch_examples_validate_on_their_own() -> None:
    periods = example("session_patch_example_charging_period.json")["charging_periods"]
    for period in periods:
        validate_subschema("ChargingPeriod", period)
    for name in SESSION_PATCHES:
        validate_subschema("Price", example(name)["total_cost"])

    assert len(periods) == 1


# --------------------------------------------------------------------------- the CDR


def test_a_cdr_location_address_of_46_characters_is_rejected_and_45_accepted() -> None:
    doc = cdr_doc()
    doc["cdr_location"]["address"] = "A" * 45
    validate("cdr", doc)
    doc["cdr_location"]["address"] = "A" * 46

    error = problem_of("cdr", doc)

    assert error.path == "cdr_location.address"
    assert error.problem == "too long: 46 characters, at most 45 allowed"


@pytest.mark.parametrize(
    ("field", "limit"),
    [("city", 45), ("postal_code", 10), ("state", 20), ("name", 255)],
)
def test_cdr_location_text_fields_keep_their_published_lengths(field: str, limit: int) -> None:
    # Unlike Location, whose state the errata widened to 45, CdrLocation keeps state at 20.
    doc = cdr_doc()
    doc["cdr_location"][field] = "x" * limit
    validate("cdr", doc)
    doc["cdr_location"][field] = "x" * (limit + 1)

    error = problem_of("cdr", doc)

    assert error.path == f"cdr_location.{field}"
    assert f"at most {limit} allowed" in error.problem


@pytest.mark.parametrize(
    ("field", "value", "words"),
    [
        ("connector_standard", "IEC_62196_T3", "not a valid ConnectorType"),
        ("connector_format", "socket", "did you mean 'SOCKET'? values are case-sensitive"),
        ("connector_power_type", "AC_4_PHASE", "not a valid PowerType"),
        ("country", "BE", "alpha-3"),
        ("evse_id", "E" * 49, "at most 48 allowed"),
        ("coordinates", {"latitude": "51.04", "longitude": "3.729944"}, "latitude"),
    ],
)
def test_a_bad_cdr_location_field_is_rejected_with_its_path(
    field: str, value: Any, words: str
) -> None:
    doc = cdr_doc()
    doc["cdr_location"][field] = value

    error = problem_of("cdr", doc)

    assert error.path.startswith(f"cdr_location.{field}")
    assert words in error.problem


def test_a_reservation_only_cdr_may_say_na_for_evse_and_connector() -> None:
    doc = cdr_doc()
    doc["cdr_location"].update(evse_uid="#NA", evse_id="#NA", connector_id="#NA")

    validate("cdr", doc)


@pytest.mark.parametrize(
    "field",
    [
        "total_cost",
        "total_energy",
        "total_time",
        "cdr_location",
        "cdr_token",
        "charging_periods",
        "end_date_time",
        "last_updated",
    ],
)
def test_a_cdr_missing_a_required_field_is_rejected(field: str) -> None:
    doc = cdr_doc()
    del doc[field]

    error = problem_of("cdr", doc)

    assert (error.path, error.problem) == ("", f"'{field}' is required")


@pytest.mark.parametrize(
    ("where", "path"),
    [
        (lambda d: d, ""),
        (lambda d: d["cdr_location"], "cdr_location"),
        (lambda d: d["cdr_token"], "cdr_token"),
        (lambda d: d["charging_periods"][0], "charging_periods[0]"),
        (lambda d: d["charging_periods"][0]["dimensions"][0], "charging_periods[0].dimensions[0]"),
        (lambda d: d["total_cost"], "total_cost"),
    ],
    ids=["cdr", "cdr_location", "cdr_token", "charging_period", "dimension", "total_cost"],
)
def test_an_unknown_field_anywhere_in_a_cdr_is_rejected(
    where: Callable[[dict[str, Any]], dict[str, Any]], path: str
) -> None:
    doc = cdr_doc()
    where(doc)["colour"] = "green"

    error = problem_of("cdr", doc)

    assert error.path == path
    assert error.problem.startswith("unknown field 'colour'")


def test_a_misspelt_cdr_field_gets_a_suggestion() -> None:
    doc = cdr_doc()
    doc["total_parkingtime"] = 0.5

    assert problem_of("cdr", doc).problem == (
        "unknown field 'total_parkingtime' (did you mean 'total_parking_time'?)"
    )


def test_a_cdr_id_of_40_characters_is_rejected_and_39_accepted() -> None:
    doc = cdr_doc()
    doc["id"] = "C" * 39
    validate("cdr", doc)
    doc["id"] = "C" * 40

    error = problem_of("cdr", doc)

    assert error.path == "id"
    assert error.problem == "too long: 40 characters, at most 39 allowed"


@pytest.mark.parametrize("field", ["session_id", "authorization_reference"])
def test_a_cdr_reference_to_a_session_or_authorization_is_a_ci_string_36(field: str) -> None:
    doc = cdr_doc()
    doc[field] = "S" * 36
    validate("cdr", doc)
    doc[field] = "S" * 37

    assert problem_of("cdr", doc).path == field


@pytest.mark.parametrize("dimension", SESSION_ONLY_DIMENSIONS)
def test_a_session_only_dimension_in_a_cdr_is_rejected(dimension: str) -> None:
    doc = cdr_doc()
    doc["charging_periods"][0]["dimensions"].append({"type": dimension, "volume": 12.5})

    error = problem_of("cdr", doc)

    assert error.path == "charging_periods[0].dimensions[1].type"
    assert error.problem == f"{dimension} is a Session-only dimension type, not allowed in a CDR"


@pytest.mark.parametrize("dimension", SESSION_ONLY_DIMENSIONS)
def test_a_session_only_dimension_in_a_session_is_accepted(dimension: str) -> None:
    doc = session_doc()
    doc["charging_periods"][0]["dimensions"].append({"type": dimension, "volume": 12.5})

    validate("session", doc)
    validate_subschema("ChargingPeriod", doc["charging_periods"][0])


def test_every_session_only_dimension_in_a_cdr_is_reported() -> None:
    doc = cdr_doc()
    doc["charging_periods"][0]["dimensions"] = [
        {"type": dimension, "volume": 1} for dimension in SESSION_ONLY_DIMENSIONS
    ]

    paths = [p.path for p in find_problems("cdr", doc)]

    assert paths == [
        f"charging_periods[0].dimensions[{index}].type"
        for index in range(len(SESSION_ONLY_DIMENSIONS))
    ]


def test_flat_is_not_a_cdr_dimension_type() -> None:
    doc = cdr_doc()
    doc["charging_periods"][0]["dimensions"][0]["type"] = "FLAT"

    error = problem_of("cdr", doc)

    assert error.path == "charging_periods[0].dimensions[0].type"
    assert "not a valid CdrDimensionType" in error.problem


def test_a_credit_cdr_without_credit_reference_id_is_rejected() -> None:
    doc = cdr_doc()
    doc.update(id="12345-C", credit=True)

    error = problem_of("cdr", doc)

    assert (error.path, error.problem) == (
        "",
        "'credit_reference_id' is required when 'credit' is true",
    )


def test_a_credit_cdr_with_a_null_credit_reference_id_is_rejected() -> None:
    doc = cdr_doc()
    doc.update(id="12345-C", credit=True, credit_reference_id=None)

    error = problem_of("cdr", doc)

    assert error.path == "credit_reference_id"
    assert "required when 'credit' is true" in error.problem


def test_a_credit_cdr_with_its_reference_and_negated_amounts_is_accepted() -> None:
    doc = cdr_doc()
    doc.update(
        id="12345-C",
        credit=True,
        credit_reference_id="12345",
        total_cost={"excl_vat": -4.00, "incl_vat": -4.40},
    )

    validate("cdr", doc)


@pytest.mark.parametrize("credit", [False, None])
def test_a_cdr_that_is_not_a_credit_needs_no_credit_reference_id(credit: bool | None) -> None:
    doc = cdr_doc()
    doc["credit"] = credit

    validate("cdr", doc)


@pytest.mark.parametrize(
    ("where", "path"),
    [
        (lambda d: d, "end_date_time"),
        (lambda d: d, "start_date_time"),
        (lambda d: d, "last_updated"),
        (lambda d: d["charging_periods"][0], "charging_periods[0].start_date_time"),
        (lambda d: d["tariffs"][0], "tariffs[0].last_updated"),
    ],
    ids=["end_date_time", "start_date_time", "last_updated", "charging_period", "tariff"],
)
@pytest.mark.parametrize(
    ("value", "words"),
    [
        ("2015-06-29T23:37:32+00:00", "numeric UTC offset"),
        ("2015-06-29 23:37:32Z", "expected a DateTime"),
        ("2015-02-30T23:37:32Z", "not a valid date and time"),
        ("2015-06-29T23:37:32.1234567890Z", "at most 25"),
    ],
    ids=["offset", "space", "february-30", "too-long"],
)
def test_a_bad_datetime_in_a_cdr_is_rejected_with_its_path(
    where: Callable[[dict[str, Any]], dict[str, Any]], path: str, value: str, words: str
) -> None:
    doc = cdr_doc()
    where(doc)[path.rsplit(".", 1)[-1]] = value

    error = problem_of("cdr", doc)

    assert error.path == path
    assert words in error.problem


def test_cdr_charging_periods_out_of_order_are_rejected() -> None:
    doc = cdr_doc()
    doc["charging_periods"].append(
        {
            "start_date_time": "2015-06-29T21:00:00Z",
            "dimensions": [{"type": "PARKING_TIME", "volume": 0.5}],
        }
    )

    error = problem_of("cdr", doc)

    assert error.path == "charging_periods[1].start_date_time"
    assert "must not be earlier than the previous period's start" in error.problem


def test_cdr_charging_periods_are_compared_as_times_not_as_text() -> None:
    # Without the optional Z, "...21:39:09" sorts before "...21:39:09Z" as text; both are UTC.
    doc = cdr_doc()
    doc["charging_periods"].append(
        {
            "start_date_time": "2015-06-29T21:39:09",
            "dimensions": [{"type": "PARKING_TIME", "volume": 0.5}],
        }
    )
    validate("cdr", doc)
    doc["charging_periods"][1]["start_date_time"] = "2015-06-29T21:39:08.9"

    assert problem_of("cdr", doc).path == "charging_periods[1].start_date_time"


def test_a_cdr_without_charging_periods_is_rejected() -> None:
    doc = cdr_doc()
    doc["charging_periods"] = []

    assert (problem_of("cdr", doc).path, problem_of("cdr", doc).problem) == (
        "charging_periods",
        "must not be empty",
    )


def test_a_charging_period_without_dimensions_is_rejected() -> None:
    doc = cdr_doc()
    doc["charging_periods"][0]["dimensions"] = []

    assert problem_of("cdr", doc).path == "charging_periods[0].dimensions"


def test_a_tariff_inside_a_cdr_is_checked_like_a_tariff() -> None:
    doc = cdr_doc()
    doc["tariffs"][0].update(
        start_date_time="2016-01-01T00:00:00Z", end_date_time="2015-01-01T00:00:00Z"
    )

    error = problem_of("cdr", doc)

    assert error.path == "tariffs[0].end_date_time"
    assert "must be later than start_date_time" in error.problem


@pytest.mark.parametrize(
    ("change", "path"),
    [
        ({"auth_method": "RFID"}, "auth_method"),
        ({"currency": "eur"}, "currency"),
        ({"total_energy": "15.342"}, "total_energy"),
        ({"total_parking_cost": {"incl_vat": 1.0}}, "total_parking_cost"),
        ({"remark": "stopped\nby driver"}, "remark"),
        ({"invoice_reference_id": "I" * 40}, "invoice_reference_id"),
        ({"home_charging_compensation": "yes"}, "home_charging_compensation"),
    ],
)
def test_a_bad_cdr_field_is_rejected_with_its_path(change: dict[str, Any], path: str) -> None:
    doc = cdr_doc()
    doc.update(change)

    assert problem_of("cdr", doc).path == path


@pytest.mark.parametrize(
    ("change", "path"),
    [
        ({"type": "RFID_CARD"}, "cdr_token.type"),
        ({"uid": "U" * 37}, "cdr_token.uid"),
        ({"contract_id": "C" * 37}, "cdr_token.contract_id"),
        ({"country_code": "DEU"}, "cdr_token.country_code"),
        ({"party_id": "TNMX"}, "cdr_token.party_id"),
    ],
)
def test_a_bad_cdr_token_is_rejected_with_its_path(change: dict[str, Any], path: str) -> None:
    doc = cdr_doc()
    doc["cdr_token"].update(change)

    assert problem_of("cdr", doc).path == path


def test_a_cdr_token_needs_the_country_code_added_in_2_2_1() -> None:
    doc = cdr_doc()
    del doc["cdr_token"]["country_code"]

    error = problem_of("cdr", doc)

    assert (error.path, error.problem) == ("cdr_token", "'country_code' is required")


# --------------------------------------------------------------------------- signed data


def test_a_cdr_with_signed_data_is_accepted() -> None:
    doc = cdr_doc()
    doc["signed_data"] = signed_data()

    validate("cdr", doc)
    validate_subschema("SignedData", doc["signed_data"])


@pytest.mark.parametrize("field", ["plain_data", "signed_data"])
def test_a_signed_value_holds_at_most_5000_characters(field: str) -> None:
    doc = cdr_doc()
    doc["signed_data"] = signed_data()
    doc["signed_data"]["signed_values"][1][field] = "x" * 5000
    validate("cdr", doc)
    doc["signed_data"]["signed_values"][1][field] = "x" * 5001

    error = problem_of("cdr", doc)

    assert error.path == f"signed_data.signed_values[1].{field}"
    assert error.problem == "too long: 5001 characters, at most 5000 allowed"


@pytest.mark.parametrize(
    ("change", "path", "words"),
    [
        ({"signed_values": []}, "signed_data.signed_values", "must not be empty"),
        ({"encoding_method": "E" * 37}, "signed_data.encoding_method", "at most 36"),
        ({"encoding_method_version": 1.5}, "signed_data.encoding_method_version", "an integer"),
        ({"public_key": "k" * 513}, "signed_data.public_key", "at most 512"),
        ({"url": "https://x/" + "y" * 503}, "signed_data.url", "at most 512"),
        ({"signature": "x"}, "signed_data", "unknown field 'signature'"),
    ],
)
def test_bad_signed_data_is_rejected_with_its_path(
    change: dict[str, Any], path: str, words: str
) -> None:
    doc = cdr_doc()
    doc["signed_data"] = signed_data(**change)

    error = problem_of("cdr", doc)

    assert error.path == path
    assert words in error.problem


def test_signed_data_url_is_a_string_512_not_a_url_255() -> None:
    validate_subschema("SignedData", signed_data(url="https://x/" + "y" * 502))


def test_a_signed_value_needs_its_nature() -> None:
    value = {"plain_data": "OCMF|{}", "signed_data": "c2lnbmVk"}

    with pytest.raises(DocumentError, match="'nature' is required"):
        validate_subschema("SignedValue", value)


# --------------------------------------------------------------------------- the Session


def test_a_session_may_have_no_total_cost_and_no_charging_periods() -> None:
    doc = session_doc()
    del doc["total_cost"]
    doc["charging_periods"] = []

    validate("session", doc)


@pytest.mark.parametrize(
    "field",
    [
        "kwh",
        "cdr_token",
        "auth_method",
        "location_id",
        "evse_uid",
        "connector_id",
        "currency",
        "status",
        "last_updated",
    ],
)
def test_a_session_missing_a_required_field_is_rejected(field: str) -> None:
    doc = session_doc()
    del doc[field]

    assert (problem_of("session", doc).path, problem_of("session", doc).problem) == (
        "",
        f"'{field}' is required",
    )


def test_a_session_id_of_37_characters_is_rejected_and_36_accepted() -> None:
    doc = session_doc()
    doc["id"] = "S" * 36
    validate("session", doc)
    doc["id"] = "S" * 37

    error = problem_of("session", doc)

    assert (error.path, error.problem) == ("id", "too long: 37 characters, at most 36 allowed")


def test_the_session_status_is_reservation_not_reserved() -> None:
    doc = session_doc()
    doc["status"] = "RESERVATION"
    validate("session", doc)
    doc["status"] = "RESERVED"

    error = problem_of("session", doc)

    assert error.path == "status"
    assert "did you mean 'RESERVATION'?" in error.problem


def test_a_session_with_an_unknown_field_is_rejected() -> None:
    doc = session_doc()
    doc["kwh_total"] = 41.12

    error = problem_of("session", doc)

    assert error.path == ""
    assert error.problem.startswith("unknown field 'kwh_total'")


def test_a_session_without_an_assigned_evse_may_say_na() -> None:
    doc = session_doc()
    doc.update(evse_uid="#NA", connector_id="#NA", status="RESERVATION")

    validate("session", doc)


def test_a_session_datetime_with_an_offset_is_rejected_with_its_path() -> None:
    doc = session_doc()
    doc["charging_periods"][1]["start_date_time"] = "2015-06-29T22:40:54+01:00"

    error = problem_of("session", doc)

    assert error.path == "charging_periods[1].start_date_time"
    assert "numeric UTC offset" in error.problem


def test_session_charging_periods_out_of_order_are_rejected() -> None:
    doc = session_doc()
    doc["charging_periods"][2]["start_date_time"] = "2015-06-29T22:39:10Z"

    error = problem_of("session", doc)

    assert error.path == "charging_periods[2].start_date_time"


def test_session_charging_periods_starting_together_are_accepted() -> None:
    doc = session_doc()
    doc["charging_periods"][1]["start_date_time"] = doc["charging_periods"][0]["start_date_time"]

    validate("session", doc)


@pytest.mark.parametrize(
    ("change", "path"),
    [
        ({"kwh": "41.12"}, "kwh"),
        ({"auth_method": "whitelist"}, "auth_method"),
        ({"meter_id": "M" * 256}, "meter_id"),
        ({"authorization_reference": "A" * 37}, "authorization_reference"),
        ({"total_cost": {"excl_vat": "8.50"}}, "total_cost.excl_vat"),
        ({"end_date_time": "2015-06-29T23:50"}, "end_date_time"),
        ({"location_id": None}, "location_id"),
    ],
)
def test_a_bad_session_field_is_rejected_with_its_path(change: dict[str, Any], path: str) -> None:
    doc = session_doc()
    doc.update(change)

    assert problem_of("session", doc).path == path


# --------------------------------------------------------------------------- the schema table


def test_the_new_schemas_are_valid_draft_2020_12_and_named_in_the_type() -> None:
    names = set(get_args(schema.SubschemaName))

    assert names >= NEW_SUBSCHEMAS
    assert set(schema.SCHEMAS) == names
    for name in NEW_SUBSCHEMAS:
        Draft202012Validator.check_schema(schema.SCHEMAS[name])  # type: ignore[index]


def test_session_and_cdr_are_document_kinds() -> None:
    assert {"session", "cdr"} <= set(get_args(schema.DocumentKind))


def test_the_new_enums_have_the_spec_values() -> None:
    assert set(schema.ENUMS["AuthMethod"]) == {"AUTH_REQUEST", "COMMAND", "WHITELIST"}
    assert set(schema.ENUMS["SessionStatus"]) == {
        "ACTIVE",
        "COMPLETED",
        "INVALID",
        "PENDING",
        "RESERVATION",
    }
    assert len(schema.ENUMS["CdrDimensionType"]) == 13
    assert set(SESSION_ONLY_DIMENSIONS) <= set(schema.ENUMS["CdrDimensionType"])
