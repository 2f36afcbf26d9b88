"""Tests of cpms.documents: OCPI 2.2.1 Location/EVSE/Connector/Tariff documents.

Driven by the official example payloads (../shared/ocpi/examples/2.2.1), each named below
under the kind of object it holds, plus small documents made here. No database.
"""

from __future__ import annotations

import copy
import json
import random
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from typing import Any, get_args

import pytest
from jsonschema import Draft202012Validator

import cpms.documents
from cpms.documents import (
    apply_connector,
    apply_evse,
    apply_location,
    apply_tariff,
    connector_from_ocpi,
    connector_to_ocpi,
    datetimes,
    evse_from_ocpi,
    evse_to_ocpi,
    files,
    find_problems,
    format_datetime,
    load_documents,
    location_from_ocpi,
    location_to_ocpi,
    locations,
    parse_datetime,
    schema,
    tariff_from_ocpi,
    tariff_to_ocpi,
    tariffs,
    validate,
    validate_subschema,
)
from cpms.errors import DocumentError
from cpms.model import Connector, Evse, Location

from support import EXAMPLES

NOW = datetime(2024, 5, 6, 7, 8, 9, 123456, tzinfo=UTC)
NOW_TEXT = "2024-05-06T07:08:09.123Z"
LATER = NOW + timedelta(hours=1)
LATER_TEXT = "2024-05-06T08:08:09.123Z"

# Every official example this package has an opinion on, by what it holds.
FULL_LOCATIONS = [
    "location_example.json",
    "location_example_parking_garage_opening_hours.json",
    "location_example_uc2_destination_charger.json",
    "location_example_uc3_destination_charger_not_published.json",
    "location_example_uc4_limited_visibility.json",
    "location_example_uc5_home_charge_point.json",
]
FULL_TARIFFS = [
    "tariff_1_simple_2hour.json",
    "tariff_2_alt_text.json",
    "tariff_3_alt_url.json",
    "tariff_4_complex.json",
    "tariff_5_free_of_charge.json",
    "tariff_6_025kwh_start_max_price.json",
    "tariff_8_simple_025kwh.json",
    "tariff_9_025kwh_start.json",
    "tariff_10_025kwh_parking_start.json",
    "tariff_11_not_possible_alt_text.json",
    "tariff_12_025kwh_min_price.json",
    "tariff_13_simple_3hour_5parking.json",
    "tariff_14_step_size.json",
    "tariff_15_reservation_5_euro_per_hour.json",
    "tariff_16_reservation_2_euro_fee_5_euro_per_hour.json",
    "tariff_17_reservation_with_expire_fee.json",
    "tariff_18_reservation_with_expire_time.json",
    # Named after the restriction they show, but each is a whole Tariff.
    "tariffrestriction_example_max_duration.json",
    "tariffrestriction_example_max_power.json",
]


def _energy_mix(doc: dict[str, Any]) -> Any:
    return doc["energy_mix"]


def _opening_times(doc: dict[str, Any]) -> Any:
    return doc["opening_times"]


def _itself(doc: dict[str, Any]) -> Any:
    return doc


# (file, how to find the sub-object in it, its OCPI type)
SUB_OBJECTS: list[tuple[str, Callable[[dict[str, Any]], Any], schema.SubschemaName]] = [
    ("location_energymix_example_complete.json", _energy_mix, "EnergyMix"),
    ("location_energymix_example_energy_provider.json", _energy_mix, "EnergyMix"),
    ("location_energymix_example_simple.json", _energy_mix, "EnergyMix"),
    ("location_hours_247_open_exception_closing.json", _itself, "Hours"),
    ("location_hours_opening_hours_with_exceptional_closing.json", _itself, "Hours"),
    ("location_hours_opening_hours_with_exceptional_opening.json", _itself, "Hours"),
    ("location_regularhours_example.json", _opening_times, "Hours"),
    ("type_displaytext_example.json", _itself, "DisplayText"),
]
# PATCH bodies: partial objects, which no full-document schema accepts.
PATCHES = [
    "location_patch_example_location.json",
    "location_patch_example_remove_evse.json",
    "location_patch_example_status.json",
    "location_patch_example_tariff.json",
]
# Listed in ../DEFECTS.md.
DEFECTIVE_EVSE = "location_put_example_add_evse.json"
DEFECTIVE_TARIFF = "tariff_put_example.json"


def example(name: str) -> Any:
    """Load an official example; fail loudly when the shared examples are not present."""
    path = EXAMPLES / name
    if not EXAMPLES.is_dir():
        pytest.fail(f"official OCPI examples not found at {EXAMPLES} (set CPMS_SHARED_DIR)")
    return json.loads(path.read_text(encoding="utf-8"))


def stamped(doc: dict[str, Any], stamp: str) -> dict[str, Any]:
    """Return a copy of a Location, EVSE or Connector doc with every last_updated = stamp."""
    doc = copy.deepcopy(doc)
    doc["last_updated"] = stamp
    for evse in doc.get("evses") or []:
        evse["last_updated"] = stamp
        for connector in evse["connectors"]:
            connector["last_updated"] = stamp
    for connector in doc.get("connectors") or []:
        connector["last_updated"] = stamp
    return doc


def problem_of(kind: schema.DocumentKind, doc: object) -> DocumentError:
    with pytest.raises(DocumentError) as caught:
        validate(kind, doc)
    return caught.value


def connector_doc(connector_id: str = "1", **changes: Any) -> dict[str, Any]:
    doc = {
        "id": connector_id,
        "standard": "IEC_62196_T2",
        "format": "SOCKET",
        "power_type": "AC_3_PHASE",
        "max_voltage": 230,
        "max_amperage": 32,
        "last_updated": "2019-06-24T12:39:09Z",
    }
    doc.update(changes)
    return doc


def evse_doc(uid: str, *connectors: dict[str, Any], **changes: Any) -> dict[str, Any]:
    doc = {
        "uid": uid,
        "status": "AVAILABLE",
        "connectors": list(connectors) or [connector_doc()],
        "last_updated": "2019-06-24T12:39:09Z",
    }
    doc.update(changes)
    return doc


def location_doc(*evses: dict[str, Any], **changes: Any) -> dict[str, Any]:
    doc = {
        "country_code": "BE",
        "party_id": "BEC",
        "id": "LOC1",
        "publish": True,
        "address": "F.Rooseveltlaan 3A",
        "city": "Gent",
        "country": "BEL",
        "coordinates": {"latitude": "51.047599", "longitude": "3.729944"},
        "evses": list(evses),
        "time_zone": "Europe/Brussels",
        "last_updated": "2019-06-24T12:39:09Z",
    }
    doc.update(changes)
    return doc


def corrected_add_evse() -> dict[str, Any]:
    """The official add-EVSE example with its four defects repaired."""
    doc = example(DEFECTIVE_EVSE)
    doc["floor_level"] = str(doc.pop("floor"))
    doc["physical_reference"] = str(doc["physical_reference"])
    doc["connectors"][0].update(
        power_type="AC_3_PHASE",
        max_voltage=230,
        max_amperage=16,
        last_updated="2019-06-24T12:39:09Z",
    )
    return doc


# --------------------------------------------------------------------------- the examples


def test_every_official_location_and_tariff_example_is_classified_once() -> None:
    if not EXAMPLES.is_dir():
        pytest.fail(f"official OCPI examples not found at {EXAMPLES} (set CPMS_SHARED_DIR)")
    on_disk = {
        path.name
        for pattern in ("location_*.json", "tariff*.json", "type_displaytext*.json")
        for path in EXAMPLES.glob(pattern)
    }
    classified = [
        *FULL_LOCATIONS,
        *FULL_TARIFFS,
        *(name for name, _, _ in SUB_OBJECTS),
        *PATCHES,
        DEFECTIVE_EVSE,
        DEFECTIVE_TARIFF,
    ]
    assert len(classified) == len(set(classified))
    assert set(classified) == on_disk


@pytest.mark.parametrize("name", FULL_LOCATIONS)
def test_every_official_location_example_round_trips(name: str) -> None:
    doc = example(name)
    validate("location", doc)

    location = location_from_ocpi(doc, now=NOW)

    assert location_to_ocpi(location) == stamped(doc, NOW_TEXT)
    assert location.last_updated == NOW
    assert location.created_at == NOW
    for position, evse in enumerate(location.evses):
        assert (evse.position, evse.last_updated) == (position, NOW)
        for index, connector in enumerate(evse.connectors):
            assert (connector.position, connector.last_updated) == (index, NOW)


@pytest.mark.parametrize("name", FULL_TARIFFS)
def test_every_official_tariff_example_round_trips(name: str) -> None:
    doc = example(name)
    validate("tariff", doc)

    tariff = tariff_from_ocpi(doc, now=NOW)

    assert tariff_to_ocpi(tariff) == {**doc, "last_updated": NOW_TEXT}
    assert tariff.last_updated == NOW


@pytest.mark.parametrize(("name", "part", "type_name"), SUB_OBJECTS)
def test_official_sub_object_examples_validate_against_their_subschema(
    name: str, part: Callable[[dict[str, Any]], Any], type_name: schema.SubschemaName
) -> None:
    validate_subschema(type_name, part(example(name)))


@pytest.mark.parametrize(("name", "part", "type_name"), SUB_OBJECTS)
def test_official_sub_object_examples_with_an_unknown_field_are_rejected(
    name: str, part: Callable[[dict[str, Any]], Any], type_name: schema.SubschemaName
) -> None:
    sub_object = part(example(name))
    sub_object["colour"] = "green"

    with pytest.raises(DocumentError, match="unknown field 'colour'"):
        validate_subschema(type_name, sub_object)


@pytest.mark.parametrize("name", PATCHES)
def test_official_patch_examples_are_not_full_documents(name: str) -> None:
    doc = example(name)
    for kind in ("location", "evse", "connector"):
        assert find_problems(kind, doc), kind


def test_every_official_tariff_element_and_restriction_validates_on_its_own() -> None:
    restrictions = 0
    for name in FULL_TARIFFS:
        for element in example(name)["elements"]:
            validate_subschema("TariffElement", element)
            if "restrictions" in element:
                validate_subschema("TariffRestrictions", element["restrictions"])
                restrictions += 1

    assert restrictions >= 2


# --------------------------------------------------------------------------- the defective examples


def test_official_add_evse_example_is_rejected_naming_floor_first() -> None:
    error = problem_of("evse", example(DEFECTIVE_EVSE))

    assert error.path == ""
    assert error.problem == "unknown field 'floor' (did you mean 'floor_level'?)"


def test_official_add_evse_example_reports_all_four_defects() -> None:
    problems = {(p.path, p.problem) for p in find_problems("evse", example(DEFECTIVE_EVSE))}

    assert problems == {
        ("", "unknown field 'floor' (did you mean 'floor_level'?)"),
        ("physical_reference", "expected a string, got number 3"),
        ("connectors[0]", "'power_type' is required"),
        ("connectors[0]", "'max_voltage' is required"),
        ("connectors[0]", "'max_amperage' is required"),
        ("connectors[0]", "'last_updated' is required"),
    }


def test_corrected_add_evse_example_is_accepted_and_round_trips() -> None:
    doc = corrected_add_evse()
    validate("evse", doc)

    evse = evse_from_ocpi(doc, now=NOW)

    assert evse_to_ocpi(evse) == stamped(doc, NOW_TEXT)


def _floor(doc: dict[str, Any]) -> None:
    doc["floor"] = doc.pop("floor_level")


def _numeric_physical_reference(doc: dict[str, Any]) -> None:
    doc["physical_reference"] = 3


def _drop_connector_field(field: str) -> Callable[[dict[str, Any]], None]:
    def drop(doc: dict[str, Any]) -> None:
        del doc["connectors"][0][field]

    return drop


@pytest.mark.parametrize(
    ("defect", "path", "problem"),
    [
        (_floor, "", "unknown field 'floor' (did you mean 'floor_level'?)"),
        (_numeric_physical_reference, "physical_reference", "expected a string, got number 3"),
        (_drop_connector_field("power_type"), "connectors[0]", "'power_type' is required"),
        (_drop_connector_field("max_voltage"), "connectors[0]", "'max_voltage' is required"),
        (_drop_connector_field("max_amperage"), "connectors[0]", "'max_amperage' is required"),
        (_drop_connector_field("last_updated"), "connectors[0]", "'last_updated' is required"),
    ],
    ids=[
        "floor",
        "physical_reference",
        "power_type",
        "max_voltage",
        "max_amperage",
        "last_updated",
    ],
)
def test_each_defect_of_the_add_evse_example_is_caught_on_its_own(
    defect: Callable[[dict[str, Any]], None], path: str, problem: str
) -> None:
    doc = corrected_add_evse()
    defect(doc)

    assert [(p.path, p.problem) for p in find_problems("evse", doc)] == [(path, problem)]


def test_official_tariff_put_example_is_rejected_naming_last_updated() -> None:
    doc = example(DEFECTIVE_TARIFF)

    error = problem_of("tariff", doc)

    assert (error.path, error.problem) == ("", "'last_updated' is required")
    validate("tariff", {**doc, "last_updated": "2015-06-29T20:39:09Z"})


def test_the_first_problem_does_not_depend_on_key_order() -> None:
    doc = example(DEFECTIVE_EVSE)
    expected = str(problem_of("evse", doc))
    shuffler = random.Random(7)
    for _ in range(10):
        keys = list(doc)
        shuffler.shuffle(keys)
        assert str(problem_of("evse", {key: doc[key] for key in keys})) == expected


# --------------------------------------------------------------------------- DateTime


@pytest.mark.parametrize("offset", ["+01:00", "+00:00", "-05:00", "+0100"])
def test_a_datetime_with_a_numeric_offset_is_rejected_naming_the_path(offset: str) -> None:
    with pytest.raises(DocumentError, match="numeric UTC offset") as caught:
        parse_datetime(f"2015-06-29T20:39:09{offset}", "evses[0].last_updated")

    assert caught.value.path == "evses[0].last_updated"


def test_a_datetime_without_z_is_read_as_utc() -> None:
    expected = datetime(2015, 6, 29, 20, 39, 9, tzinfo=UTC)

    assert parse_datetime("2015-06-29T20:39:09", "x") == expected
    assert parse_datetime("2015-06-29T20:39:09Z", "x") == expected


@pytest.mark.parametrize(
    ("text", "microsecond"),
    [
        ("2016-12-29T17:45:09.2Z", 200000),
        ("2018-01-01T01:08:01.123", 123000),
        ("2018-01-01T01:08:01.12345", 123450),
    ],
)
def test_a_datetime_may_have_fractional_seconds(text: str, microsecond: int) -> None:
    assert parse_datetime(text, "x").microsecond == microsecond


@pytest.mark.parametrize(
    "text",
    [
        "1970-1-1T00:00:00Z",
        "2015-06-29 20:39:09Z",
        "2015-06-29",
        "2015-06-29T20:39Z",
        "2015-02-30T20:39:09Z",
        "2015-06-29T24:00:00Z",
        "2015-06-29T20:39:09z",
        "2015-06-29T20:39:09.123456Z",  # 26 characters: DateTime is a string(25)
    ],
)
def test_a_malformed_datetime_is_rejected(text: str) -> None:
    with pytest.raises(DocumentError) as caught:
        parse_datetime(text, "last_updated")

    assert caught.value.path == "last_updated"


def test_formatting_emits_z_and_milliseconds_only_when_there_is_a_fraction() -> None:
    assert format_datetime(datetime(2015, 6, 29, 20, 39, 9, tzinfo=UTC)) == "2015-06-29T20:39:09Z"
    assert format_datetime(NOW) == NOW_TEXT
    plus_two = timezone(timedelta(hours=2))
    assert format_datetime(datetime(2015, 6, 29, 22, 39, 9, tzinfo=plus_two)) == (
        "2015-06-29T20:39:09Z"
    )


def test_formatting_a_naive_datetime_is_refused() -> None:
    with pytest.raises(ValueError, match="naive"):
        format_datetime(datetime(2015, 6, 29, 20, 39, 9))


def test_a_document_datetime_with_an_offset_is_rejected_with_its_path() -> None:
    doc = location_doc(evse_doc("E1", connector_doc(last_updated="2019-06-24T12:39:09+01:00")))

    error = problem_of("location", doc)

    assert error.path == "evses[0].connectors[0].last_updated"
    assert "numeric UTC offset" in error.problem


# --------------------------------------------------------------------------- schema problems


@pytest.mark.parametrize(
    ("change", "path", "words"),
    [
        (lambda d: d["evses"][0].update(status="BROKEN"), "evses[0].status", "not a valid Status"),
        (
            lambda d: d["evses"][0]["connectors"][0].update(power_type="AC_4_PHASE"),
            "evses[0].connectors[0].power_type",
            "not a valid PowerType",
        ),
        (lambda d: d.update(parking_type="on_street"), "parking_type", "did you mean 'ON_STREET'"),
        (lambda d: d.update(city="G" * 46), "city", "too long: 46 characters, at most 45"),
        (
            lambda d: d["evses"][0].update(physical_reference="P" * 17),
            "evses[0].physical_reference",
            "at most 16",
        ),
        (lambda d: d.update(id="L" * 37), "id", "at most 36"),
        (
            lambda d: d["coordinates"].update(latitude="51.04"),
            "coordinates.latitude",
            "latitude string with 5 to 7 decimals",
        ),
        (
            lambda d: d["coordinates"].update(longitude="3,729944"),
            "coordinates.longitude",
            "longitude string with 5 to 7 decimals",
        ),
        (
            lambda d: d["evses"][0].update(
                coordinates={"latitude": "151.047599", "longitude": "3.729944"}
            ),
            "evses[0].coordinates.latitude",
            "latitude",
        ),
        (lambda d: d.update(country="BE"), "country", "alpha-3"),
        (lambda d: d.update(time_zone="Europe/Gent"), "time_zone", "unknown IANA time zone"),
        (lambda d: d.update(name="Gent\tZuid"), "name", "no CR, LF or TAB"),
        (lambda d: d.update(publish="yes"), "publish", "expected a boolean, got string 'yes'"),
        (
            lambda d: d["evses"][0]["connectors"][0].update(max_voltage=230.5),
            "evses[0].connectors[0].max_voltage",
            "expected an integer, got number 230.5",
        ),
        (lambda d: d["evses"][0].update(connectors=[]), "evses[0].connectors", "must not be empty"),
        (lambda d: d.update(name=1), "name", "expected a string, got number 1"),
        (lambda d: d.update(id=None), "id", "expected a string, got null"),
    ],
)
def test_a_bad_field_is_rejected_with_its_path(
    change: Callable[[dict[str, Any]], None], path: str, words: str
) -> None:
    doc = location_doc(evse_doc("E1"))
    validate("location", doc)
    change(doc)

    error = problem_of("location", doc)

    assert error.path == path
    assert words in error.problem


def test_the_errata_lengths_of_address_and_state_are_used() -> None:
    validate("location", location_doc(address="A" * 255, state="S" * 45))

    assert problem_of("location", location_doc(address="A" * 256)).path == "address"
    assert problem_of("location", location_doc(state="S" * 46)).path == "state"


def test_null_is_accepted_for_optional_fields_only() -> None:
    validate("location", location_doc(name=None, evses=None, opening_times=None, energy_mix=None))

    assert problem_of("location", location_doc(city=None)).path == "city"


def test_an_unknown_field_deep_inside_is_rejected_with_a_suggestion() -> None:
    doc = location_doc(evse_doc("E1", connector_doc(max_amperes=16)))

    error = problem_of("location", doc)

    assert error.path == "evses[0].connectors[0]"
    assert error.problem == "unknown field 'max_amperes' (did you mean 'max_amperage'?)"


def test_a_document_that_is_not_an_object_is_rejected() -> None:
    assert str(problem_of("tariff", [])) == "(document): expected an object, got an array"


def test_opening_hours_that_are_not_24_7_need_regular_hours() -> None:
    error = problem_of("location", location_doc(opening_times={"twentyfourseven": False}))

    assert error.path == "opening_times"
    assert "regular_hours" in error.problem


def test_regular_hours_must_end_after_they_begin() -> None:
    hours = {
        "twentyfourseven": False,
        "regular_hours": [{"weekday": 1, "period_begin": "18:00", "period_end": "07:00"}],
    }

    error = problem_of("location", location_doc(opening_times=hours))

    assert error.path == "opening_times.regular_hours[0].period_end"


def test_publish_token_rules_are_checked() -> None:
    assert (
        "one of 'uid'"
        in problem_of(
            "location", location_doc(publish=False, publish_allowed_to=[{"issuer": "ANWB"}])
        ).problem
    )
    assert "'type' is required when 'uid' is set" in str(
        problem_of("location", location_doc(publish_allowed_to=[{"uid": "123"}]))
    )
    assert "'issuer' is required" in str(
        problem_of("location", location_doc(publish_allowed_to=[{"visual_number": "1"}]))
    )


def test_evse_uids_must_be_unique_ignoring_case() -> None:
    error = problem_of("location", location_doc(evse_doc("abc"), evse_doc("ABC")))

    assert error.path == "evses[1].uid"
    assert "duplicate uid" in error.problem


def test_connector_ids_must_be_unique_within_an_evse() -> None:
    error = problem_of("evse", evse_doc("E1", connector_doc("1"), connector_doc("1")))

    assert error.path == "connectors[1].id"


def tariff_doc(**changes: Any) -> dict[str, Any]:
    doc = {
        "country_code": "DE",
        "party_id": "ALL",
        "id": "12",
        "currency": "EUR",
        "elements": [{"price_components": [{"type": "TIME", "price": 2.0, "step_size": 60}]}],
        "last_updated": "2015-06-29T20:39:09Z",
    }
    doc.update(changes)
    return doc


def test_a_tariff_must_end_after_it_starts() -> None:
    doc = tariff_doc(start_date_time="2020-01-01T00:00:00Z", end_date_time="2019-12-31T23:59:59Z")

    assert problem_of("tariff", doc).path == "end_date_time"


def test_a_reservation_element_may_only_price_flat_and_time() -> None:
    element = {
        "price_components": [{"type": "ENERGY", "price": 0.25, "step_size": 1}],
        "restrictions": {"reservation": "RESERVATION"},
    }

    error = problem_of("tariff", tariff_doc(elements=[element]))

    assert error.path == "elements[0].price_components[0].type"


@pytest.mark.parametrize(
    ("change", "path"),
    [
        ({"currency": "eur"}, "currency"),
        ({"type": "CHEAP"}, "type"),
        ({"elements": []}, "elements"),
        ({"min_price": {"incl_vat": 1.0}}, "min_price"),
        ({"tariff_alt_url": "https://x/" + "y" * 250}, "tariff_alt_url"),
        ({"last_updated": "2015-06-29T20:39:09+00:00"}, "last_updated"),
    ],
)
def test_a_bad_tariff_field_is_rejected_with_its_path(change: dict[str, Any], path: str) -> None:
    assert problem_of("tariff", tariff_doc(**change)).path == path


def test_a_bad_restriction_date_is_rejected() -> None:
    element = {
        "price_components": [{"type": "TIME", "price": 2.0, "step_size": 60}],
        "restrictions": {"start_date": "2019-02-30"},
    }

    assert problem_of("tariff", tariff_doc(elements=[element])).path == (
        "elements[0].restrictions.start_date"
    )


def test_every_schema_is_a_valid_draft_2020_12_schema_and_named_in_the_type() -> None:
    for json_schema in schema.SCHEMAS.values():
        Draft202012Validator.check_schema(json_schema)
    assert set(schema.SCHEMAS) == set(get_args(schema.SubschemaName))


def test_an_unknown_document_kind_or_schema_name_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="document kind"):
        validate("token", {})  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="no schema"):
        validate_subschema("Token", {})  # type: ignore[arg-type]


# --------------------------------------------------------------------------- reading and replacing


def test_reading_a_location_maps_coordinates_and_stores_nested_values_as_given() -> None:
    hours = {"twentyfourseven": True}
    doc = location_doc(
        evse_doc("E1", coordinates={"latitude": "51.047600", "longitude": "3.729945"}),
        opening_times=hours,
        facilities=[],
    )

    location = location_from_ocpi(doc, now=NOW)

    assert (location.latitude, location.longitude) == ("51.047599", "3.729944")
    assert (location.evses[0].latitude, location.evses[0].longitude) == ("51.047600", "3.729945")
    assert location.opening_times == hours
    assert location.opening_times is not hours
    rendered = location_to_ocpi(location)
    assert rendered["facilities"] == []
    assert "name" not in rendered
    assert rendered == stamped(doc, NOW_TEXT)


def test_reading_rejects_an_invalid_document() -> None:
    with pytest.raises(DocumentError):
        location_from_ocpi(location_doc(country="BE"), now=NOW)
    with pytest.raises(DocumentError):
        tariff_from_ocpi(tariff_doc(currency="euro"), now=NOW)


def test_reading_needs_an_aware_now() -> None:
    with pytest.raises(ValueError, match="naive"):
        location_from_ocpi(location_doc(), now=datetime(2024, 1, 1))


def existing_location() -> Location:
    location = location_from_ocpi(
        location_doc(
            evse_doc("E1", connector_doc("1"), connector_doc("2")),
            evse_doc("E2"),
            evse_doc("E3"),
        ),
        now=NOW,
    )
    location.evses[0].station_id = "CP-1"
    location.evses[0].ocpp_evse_id = 1
    location.evses[0].connectors[0].ocpp_connector_id = 1
    return location


def test_apply_location_marks_a_vanished_evse_removed_and_keeps_it() -> None:
    location = existing_location()

    apply_location(location, location_doc(evse_doc("E2"), evse_doc("E1")), now=LATER)

    assert [(e.uid, e.position, e.status) for e in location.evses] == [
        ("E2", 0, "AVAILABLE"),
        ("E1", 1, "AVAILABLE"),
        ("E3", 2, "REMOVED"),
    ]
    by_uid = {evse.uid: evse for evse in location.evses}
    assert by_uid["E2"].last_updated == NOW  # unchanged: keeps its stamp (OCPI)
    assert by_uid["E3"].last_updated == LATER  # removed
    assert location.last_updated == LATER
    rendered = location_to_ocpi(location)
    assert rendered["last_updated"] == LATER_TEXT
    assert rendered["evses"][2]["status"] == "REMOVED"


def test_apply_location_does_not_bump_an_evse_already_removed() -> None:
    location = existing_location()
    apply_location(location, location_doc(evse_doc("E1"), evse_doc("E2")), now=LATER)

    apply_location(
        location, location_doc(evse_doc("E1"), evse_doc("E2")), now=LATER + timedelta(hours=1)
    )

    removed = location.evses[2]
    assert (removed.uid, removed.status, removed.last_updated) == ("E3", "REMOVED", LATER)


def test_apply_location_updates_matched_adds_new_and_drops_vanished_connectors() -> None:
    location = existing_location()
    first = location.evses[0]
    doc = location_doc(
        evse_doc("e1", connector_doc("1", max_amperage=16), connector_doc("3")),
        evse_doc("E2"),
        evse_doc("E3"),
        evse_doc("E4", status="PLANNED"),
        name="Gent Zuid",
    )

    apply_location(location, doc, now=LATER)

    assert location.evses[0] is first
    assert [(c.id, c.max_amperage, c.position) for c in first.connectors] == [
        ("1", 16, 0),
        ("3", 32, 1),
    ]
    assert (first.station_id, first.ocpp_evse_id) == ("CP-1", 1)
    assert first.connectors[0].ocpp_connector_id == 1
    assert [(e.uid, e.status) for e in location.evses][3] == ("E4", "PLANNED")
    assert location.name == "Gent Zuid"
    assert location.created_at == NOW


def test_apply_location_reverts_omitted_optional_fields() -> None:
    location = location_from_ocpi(
        location_doc(name="Gent Zuid", energy_mix={"is_green_energy": True}), now=NOW
    )

    apply_location(location, location_doc(), now=LATER)

    assert (location.name, location.energy_mix) == (None, None)


def test_apply_location_refuses_another_locations_document_and_changes_nothing() -> None:
    location = existing_location()
    before = location_to_ocpi(location)

    with pytest.raises(DocumentError) as caught:
        apply_location(location, location_doc(id="LOC2", name="Elsewhere"), now=LATER)
    with pytest.raises(DocumentError):
        apply_location(location, location_doc(name="Bad", country="BE"), now=LATER)

    assert caught.value.path == "id"
    assert location_to_ocpi(location) == before


def test_apply_evse_replaces_fields_and_connectors() -> None:
    evse = evse_from_ocpi(evse_doc("E1", connector_doc("1"), connector_doc("2")), now=NOW)
    kept = evse.connectors[1]

    apply_evse(
        evse,
        evse_doc("E1", connector_doc("2", tariff_ids=["11"]), status="CHARGING"),
        now=LATER,
    )

    assert evse.status == "CHARGING"
    assert evse.connectors == [kept]
    assert (kept.tariff_ids, kept.position, kept.last_updated) == (["11"], 0, LATER)
    assert evse.last_updated == LATER
    with pytest.raises(DocumentError) as caught:
        apply_evse(evse, evse_doc("E2"), now=LATER)
    assert caught.value.path == "uid"


def test_apply_connector_replaces_fields_and_bumps_last_updated() -> None:
    connector = connector_from_ocpi(connector_doc("1", max_electric_power=11000), now=NOW)

    apply_connector(connector, connector_doc("1", format="CABLE"), now=LATER)

    assert connector_to_ocpi(connector) == connector_doc(
        "1", format="CABLE", last_updated=LATER_TEXT
    )
    with pytest.raises(DocumentError) as caught:
        apply_connector(connector, connector_doc("2"), now=LATER)
    assert caught.value.path == "id"


def test_an_integral_float_is_stored_as_an_int() -> None:
    connector = connector_from_ocpi(connector_doc(max_voltage=230.0), now=NOW)

    assert connector.max_voltage == 230
    assert isinstance(connector.max_voltage, int)


def test_rendering_does_not_share_mutable_state_with_the_model() -> None:
    location = location_from_ocpi(location_doc(evse_doc("E1"), facilities=["CAFE"]), now=NOW)

    rendered = location_to_ocpi(location)
    rendered["facilities"].append("WIFI")

    assert location.facilities == ["CAFE"]


def test_an_evse_renders_every_optional_field_it_has() -> None:
    doc = evse_doc(
        "E1",
        evse_id="BE*BEC*E041503001",
        status_schedule=[{"period_begin": "2019-06-24T12:39:09Z", "status": "INOPERATIVE"}],
        capabilities=["RESERVABLE"],
        floor_level="-1",
        coordinates={"latitude": "51.047599", "longitude": "3.729944"},
        physical_reference="1",
        directions=[{"language": "en", "text": "Left"}],
        parking_restrictions=["EV_ONLY"],
        images=[{"url": "https://x/y.png", "category": "CHARGER", "type": "png"}],
    )

    assert evse_to_ocpi(evse_from_ocpi(doc, now=NOW)) == stamped(doc, NOW_TEXT)


def test_tariff_dates_are_read_as_aware_utc_datetimes() -> None:
    doc = tariff_doc(start_date_time="2019-01-01T00:00:00", end_date_time="2019-06-30T23:59:59Z")

    tariff = tariff_from_ocpi(doc, now=NOW)

    assert tariff.start_date_time == datetime(2019, 1, 1, tzinfo=UTC)
    assert tariff_to_ocpi(tariff)["start_date_time"] == "2019-01-01T00:00:00Z"


def test_apply_tariff_replaces_the_tariff_and_bumps_last_updated() -> None:
    tariff = tariff_from_ocpi(
        tariff_doc(
            type="REGULAR", max_price={"excl_vat": 10.0}, end_date_time="2030-01-01T00:00:00Z"
        ),
        now=NOW,
    )

    apply_tariff(tariff, tariff_doc(currency="SEK"), now=LATER)

    assert tariff_to_ocpi(tariff) == tariff_doc(currency="SEK", last_updated=LATER_TEXT)
    assert tariff.created_at == NOW
    with pytest.raises(DocumentError) as caught:
        apply_tariff(tariff, tariff_doc(id="13"), now=LATER)
    assert caught.value.path == "id"


# --------------------------------------------------------------------------- files


def test_a_file_may_hold_one_document_or_a_list() -> None:
    assert load_documents('{"id": "1"}') == [{"id": "1"}]
    assert load_documents('[{"id": "1"}, {"id": "2"}]') == [{"id": "1"}, {"id": "2"}]
    assert load_documents("[]") == []


@pytest.mark.parametrize(
    ("text", "path", "words"),
    [
        ('{"id": ', "(file)", "invalid JSON at line 1"),
        ("42", "(file)", "expected an object or a list of objects, got a number"),
        ('[{"id": "1"}, "2"]', "[1]", "expected an object, got a string"),
        ('{"id": "1", "id": "2"}', "(file)", "duplicate key 'id'"),
        ('{"price": NaN}', "(file)", "NaN is not a JSON number"),
    ],
)
def test_a_bad_file_is_rejected(text: str, path: str, words: str) -> None:
    with pytest.raises(DocumentError) as caught:
        load_documents(text)

    assert caught.value.path == path
    assert words in caught.value.problem


# --------------------------------------------------------------------------- exports


@pytest.mark.parametrize(
    "module",
    [cpms.documents, datetimes, files, locations, schema, tariffs],
    ids=lambda m: m.__name__,
)
def test_every_exported_name_exists_and_the_module_says_what_it_is_for(module: Any) -> None:
    for name in module.__all__:
        assert hasattr(module, name), name
    assert module.__doc__ is not None
    assert module.__doc__.splitlines()[0].endswith(".")


def test_the_models_used_are_the_ones_of_cpms_model() -> None:
    location = location_from_ocpi(location_doc(evse_doc("E1")), now=NOW)

    assert isinstance(location, Location)
    assert isinstance(location.evses[0], Evse)
    assert isinstance(location.evses[0].connectors[0], Connector)


def test_applying_an_identical_document_changes_no_last_updated() -> None:
    location = existing_location()
    document = location_to_ocpi(location)

    apply_location(location, document, now=LATER)

    assert location.last_updated == NOW
    assert all(evse.last_updated == NOW for evse in location.evses)
    assert all(c.last_updated == NOW for evse in location.evses for c in evse.connectors)


def test_changing_one_connector_bumps_it_and_its_evse_but_not_its_siblings() -> None:
    location = existing_location()
    document = location_to_ocpi(location)
    document["evses"][0]["connectors"][1]["max_amperage"] = 63

    apply_location(location, document, now=LATER)

    first, second = location.evses[0].connectors
    assert (first.last_updated, second.last_updated) == (NOW, LATER)
    assert location.evses[0].last_updated == LATER
    assert location.evses[1].last_updated == NOW
    assert location.last_updated == LATER
