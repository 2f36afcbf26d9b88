"""Check OCPI 2.2.1 Location, EVSE, Connector, Tariff, Session and CDR documents against schemas.

The schemas (draft 2020-12) are built from small helpers (``ci_string(36)``, ``enum(...)``,
``obj(required=..., optional=...)``) that spell the spec's types, cardinalities and lengths
once. They are strict: required fields, JSON types, enum values, string lengths (the errata
lengths: Location ``address`` 255, ``state`` 45) and regexes are checked, ``null`` is
accepted for optional fields only, and an unknown field is rejected, because we would
otherwise lose it silently. A few rules JSON Schema cannot say well (unique EVSE uids,
``period_end`` after ``period_begin``, charging periods in time order, no Session-only
dimension in a CDR, ...) are checked once the schema passes.

Problems come out as ``DocumentError(path, problem)`` with a path like
``evses[0].connectors[0]`` and a sentence a person can act on; the order is deterministic
(by path, then type before required before unknown-field errors before the rest).
Spec: OCPI 2.2.1 Types; Locations (Location, EVSE, Connector and sub-types); Tariffs;
Sessions (Session); CDRs (CDR, CdrToken, CdrLocation, ChargingPeriod, SignedData, ...).
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from datetime import date
from typing import Any, Final, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from jsonschema import Draft202012Validator, FormatChecker
from jsonschema.exceptions import ValidationError

from cpms.documents.datetimes import DATETIME_MAX_LENGTH, parse_datetime
from cpms.errors import DocumentError

__all__ = [
    "ENUMS",
    "SCHEMAS",
    "DocumentKind",
    "Schema",
    "SubschemaName",
    "array",
    "boolean",
    "ci_string",
    "date_time",
    "enum",
    "find_problems",
    "format_path",
    "integer",
    "nullable",
    "number",
    "obj",
    "pattern",
    "string",
    "url",
    "validate",
    "validate_subschema",
]

#: A JSON Schema, as a plain dict.
Schema = dict[str, Any]

#: The documents ``validate`` knows: the objects of the Locations, Tariffs, Sessions and CDRs
#: modules.
DocumentKind = Literal["location", "evse", "connector", "tariff", "session", "cdr"]

#: Every OCPI type that has a schema here, by its name in the spec.
SubschemaName = Literal[
    "Location",
    "EVSE",
    "Connector",
    "Tariff",
    "GeoLocation",
    "AdditionalGeoLocation",
    "BusinessDetails",
    "Image",
    "Hours",
    "RegularHours",
    "ExceptionalPeriod",
    "StatusSchedule",
    "EnergyMix",
    "EnergySource",
    "EnvironmentalImpact",
    "PublishTokenType",
    "DisplayText",
    "Price",
    "TariffElement",
    "PriceComponent",
    "TariffRestrictions",
    "Session",
    "CDR",
    "CdrToken",
    "CdrLocation",
    "ChargingPeriod",
    "CdrDimension",
    "SignedData",
    "SignedValue",
]

_KIND_SCHEMA: Final[Mapping[DocumentKind, SubschemaName]] = {
    "location": "Location",
    "evse": "EVSE",
    "connector": "Connector",
    "tariff": "Tariff",
    "session": "Session",
    "cdr": "CDR",
}

# Keywords of our own, ignored by JSON Schema and read by the error translation below.
_EXPECTED = "x-expected"  # what a pattern or format wants, in words
_PROBLEM = "x-problem"  # the whole problem text for any error raised by this subschema
_ENUM_NAME = "x-enum"  # the OCPI name of an enum, e.g. "Status"

# --------------------------------------------------------------------------- enums

#: OCPI 2.2.1 enums used by Locations, Tariffs, Sessions and CDRs (values are case-sensitive).
ENUMS: Final[Mapping[str, tuple[str, ...]]] = {
    name: tuple(values.split())
    for name, values in {
        "Status": "AVAILABLE BLOCKED CHARGING INOPERATIVE OUTOFORDER PLANNED REMOVED RESERVED"
        " UNKNOWN",
        "Capability": "CHARGING_PROFILE_CAPABLE CHARGING_PREFERENCES_CAPABLE CHIP_CARD_SUPPORT"
        " CONTACTLESS_CARD_SUPPORT CREDIT_CARD_PAYABLE DEBIT_CARD_PAYABLE PED_TERMINAL"
        " REMOTE_START_STOP_CAPABLE RESERVABLE RFID_READER START_SESSION_CONNECTOR_REQUIRED"
        " TOKEN_GROUP_CAPABLE UNLOCK_CAPABLE",
        "ConnectorType": "CHADEMO CHAOJI"
        + "".join(f" DOMESTIC_{letter}" for letter in "ABCDEFGHIJKLMNO")
        + " GBT_AC GBT_DC IEC_60309_2_single_16 IEC_60309_2_three_16 IEC_60309_2_three_32"
        " IEC_60309_2_three_64 IEC_62196_T1 IEC_62196_T1_COMBO IEC_62196_T2 IEC_62196_T2_COMBO"
        " IEC_62196_T3A IEC_62196_T3C NEMA_5_20 NEMA_6_30 NEMA_6_50 NEMA_10_30 NEMA_10_50"
        " NEMA_14_30 NEMA_14_50 PANTOGRAPH_BOTTOM_UP PANTOGRAPH_TOP_DOWN TESLA_R TESLA_S",
        "ConnectorFormat": "SOCKET CABLE",
        "PowerType": "AC_1_PHASE AC_2_PHASE AC_2_PHASE_SPLIT AC_3_PHASE DC",
        "ParkingType": "ALONG_MOTORWAY PARKING_GARAGE PARKING_LOT ON_DRIVEWAY ON_STREET"
        " UNDERGROUND_GARAGE",
        "ParkingRestriction": "EV_ONLY PLUGGED DISABLED CUSTOMERS MOTORCYCLES",
        "Facility": "HOTEL RESTAURANT CAFE MALL SUPERMARKET SPORT RECREATION_AREA NATURE MUSEUM"
        " BIKE_SHARING BUS_STOP TAXI_STAND TRAM_STOP METRO_STATION TRAIN_STATION AIRPORT"
        " PARKING_LOT CARPOOL_PARKING FUEL_STATION WIFI",
        "ImageCategory": "CHARGER ENTRANCE LOCATION NETWORK OPERATOR OTHER OWNER",
        "EnergySourceCategory": "NUCLEAR GENERAL_FOSSIL COAL GAS GENERAL_GREEN SOLAR WIND WATER",
        "EnvironmentalImpactCategory": "NUCLEAR_WASTE CARBON_DIOXIDE",
        "TokenType": "AD_HOC_USER APP_USER OTHER RFID",
        "TariffType": "AD_HOC_PAYMENT PROFILE_CHEAP PROFILE_FAST PROFILE_GREEN REGULAR",
        "TariffDimensionType": "ENERGY FLAT PARKING_TIME TIME",
        "DayOfWeek": "MONDAY TUESDAY WEDNESDAY THURSDAY FRIDAY SATURDAY SUNDAY",
        "ReservationRestrictionType": "RESERVATION RESERVATION_EXPIRES",
        # FLAT is not a CdrDimensionType since 2.2 (it prices, it is not measured).
        "CdrDimensionType": "CURRENT ENERGY ENERGY_EXPORT ENERGY_IMPORT MAX_CURRENT MIN_CURRENT"
        " MAX_POWER MIN_POWER PARKING_TIME POWER RESERVATION_TIME STATE_OF_CHARGE TIME",
        "AuthMethod": "AUTH_REQUEST COMMAND WHITELIST",
        # The Sessions prose says RESERVED; the enum value is RESERVATION.
        "SessionStatus": "ACTIVE COMPLETED INVALID PENDING RESERVATION",
    }.items()
}

# --------------------------------------------------------------------------- formats

_FORMATS = FormatChecker(formats=())
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


@_FORMATS.checks("ocpi-date-time", raises=DocumentError)
def _check_date_time(instance: object) -> bool:
    # An over-long value is reported once, by the schema's maxLength.
    if isinstance(instance, str) and len(instance) <= DATETIME_MAX_LENGTH:
        parse_datetime(instance, "")
    return True


@_FORMATS.checks("ocpi-date", raises=DocumentError)
def _check_date(instance: object) -> bool:
    if isinstance(instance, str):
        try:
            if not _DATE.fullmatch(instance):
                raise ValueError(instance)
            date.fromisoformat(instance)
        except ValueError:
            raise DocumentError(
                "", f"expected a date like '2019-06-30', got {instance!r}"
            ) from None
    return True


@_FORMATS.checks("iana-time-zone", raises=DocumentError)
def _check_time_zone(instance: object) -> bool:
    if isinstance(instance, str):
        try:
            ZoneInfo(instance)
        except (ZoneInfoNotFoundError, ValueError, OSError):
            raise DocumentError(
                "", f"unknown IANA time zone {instance!r}, expected a name like 'Europe/Brussels'"
            ) from None
    return True


# --------------------------------------------------------------------------- building blocks

_NO_CONTROL_CHARACTERS = r"^[^\x00-\x1f\x7f]*$"
_PRINTABLE_ASCII = r"^[\x20-\x7e]*$"


def string(max_length: int) -> Schema:
    """Return the schema of an OCPI string(n): printable text without CR, LF or TAB."""
    return {
        "type": "string",
        "maxLength": max_length,
        "pattern": _NO_CONTROL_CHARACTERS,
        _EXPECTED: "text without control characters (no CR, LF or TAB)",
    }


def ci_string(max_length: int) -> Schema:
    """Return the schema of an OCPI CiString(n): printable ASCII."""
    return {
        "type": "string",
        "maxLength": max_length,
        "pattern": _PRINTABLE_ASCII,
        _EXPECTED: "printable ASCII characters only",
    }


def url() -> Schema:
    """Return the schema of an OCPI URL: a string(255)."""
    return string(255)


def pattern(max_length: int, regex: str, expected: str) -> Schema:
    """Return the schema of a string of at most ``max_length`` matching ``regex``.

    ``expected`` says in words what the regex wants; it becomes part of the problem text.
    """
    return {"type": "string", "maxLength": max_length, "pattern": regex, _EXPECTED: expected}


def date_time() -> Schema:
    """Return the schema of an OCPI DateTime (UTC only, RFC 3339 subset)."""
    return {
        "type": "string",
        "maxLength": DATETIME_MAX_LENGTH,
        "format": "ocpi-date-time",
    }


def enum(name: str, values: Iterable[str] | None = None) -> Schema:
    """Return the schema of the OCPI enum ``name`` (values from ``ENUMS`` unless given)."""
    return {
        "type": "string",
        "enum": list(ENUMS[name] if values is None else values),
        _ENUM_NAME: name,
    }


def integer(minimum: int | None = None, maximum: int | None = None) -> Schema:
    """Return the schema of an OCPI int, optionally bounded (inclusive)."""
    return _bounded({"type": "integer"}, minimum, maximum)


def number(minimum: float | None = None, maximum: float | None = None) -> Schema:
    """Return the schema of an OCPI number, optionally bounded (inclusive)."""
    return _bounded({"type": "number"}, minimum, maximum)


def boolean() -> Schema:
    """Return the schema of a JSON boolean."""
    return {"type": "boolean"}


def array(items: Schema, *, min_items: int = 0) -> Schema:
    """Return the schema of a list of ``items``; ``min_items=1`` for OCPI's ``+``."""
    schema: Schema = {"type": "array", "items": items}
    if min_items:
        schema["minItems"] = min_items
    return schema


def nullable(schema: Schema) -> Schema:
    """Return ``schema`` also accepting ``null`` (an OCPI optional field)."""
    result = dict(schema)
    kind = result.get("type")
    if isinstance(kind, str):
        result["type"] = [kind, "null"]
    elif isinstance(kind, list) and "null" not in kind:
        result["type"] = [*kind, "null"]
    if "enum" in result and None not in result["enum"]:
        result["enum"] = [*result["enum"], None]
    return result


def obj(
    *,
    required: Mapping[str, Schema],
    optional: Mapping[str, Schema] | None = None,
    all_of: Sequence[Schema] = (),
) -> Schema:
    """Return the schema of an OCPI object with no fields but the ones named.

    Optional fields also accept ``null``; ``all_of`` adds cross-field rules.
    """
    properties = dict(required)
    properties.update({name: nullable(field) for name, field in (optional or {}).items()})
    schema: Schema = {
        "type": "object",
        "properties": properties,
        "required": list(required),
        "additionalProperties": False,
    }
    if all_of:
        schema["allOf"] = list(all_of)
    return schema


def _bounded(schema: Schema, minimum: float | None, maximum: float | None) -> Schema:
    if minimum is not None:
        schema["minimum"] = minimum
    if maximum is not None:
        schema["maximum"] = maximum
    return schema


def _required_when(field: str, condition: Schema, when: str) -> Schema:
    """Return a rule: ``field`` must be set (not null) when ``condition`` holds."""
    problem = f"'{field}' is required when {when}"
    return {
        "if": condition,
        "then": {
            "required": [field],
            "properties": {field: {"not": {"type": "null"}, _PROBLEM: problem}},
            _PROBLEM: problem,
        },
    }


def _is_set(field: str) -> Schema:
    return {"required": [field], "properties": {field: {"not": {"type": "null"}}}}


# --------------------------------------------------------------------------- the schemas

_LATITUDE = pattern(
    10, r"^-?[0-9]{1,2}\.[0-9]{5,7}$", "a latitude string with 5 to 7 decimals, like '51.047599'"
)
_LONGITUDE = pattern(
    11, r"^-?[0-9]{1,3}\.[0-9]{5,7}$", "a longitude string with 5 to 7 decimals, like '3.729944'"
)
_HOUR_MINUTE = pattern(5, r"^([0-1][0-9]|2[0-3]):[0-5][0-9]$", "a local time 'HH:MM' like '08:00'")
_DATE_SCHEMA: Schema = {"type": "string", "maxLength": 10, "format": "ocpi-date"}
_COUNTRY_ALPHA_2 = pattern(2, r"^[A-Za-z]{2}$", "an ISO 3166-1 alpha-2 country code like 'BE'")
_COUNTRY_ALPHA_3 = pattern(3, r"^[A-Z]{3}$", "an ISO 3166-1 alpha-3 country code like 'BEL'")
_CURRENCY = pattern(3, r"^[A-Z]{3}$", "an ISO 4217 currency code like 'EUR'")
_TIME_ZONE: Schema = {
    "type": "string",
    "maxLength": 255,
    "format": "iana-time-zone",
}

DISPLAY_TEXT = obj(required={"language": string(2), "text": string(512)})
GEO_LOCATION = obj(required={"latitude": _LATITUDE, "longitude": _LONGITUDE})
ADDITIONAL_GEO_LOCATION = obj(
    required={"latitude": _LATITUDE, "longitude": _LONGITUDE},
    optional={"name": DISPLAY_TEXT},
)
IMAGE = obj(
    required={"url": url(), "category": enum("ImageCategory"), "type": ci_string(4)},
    optional={
        "thumbnail": url(),
        "width": integer(0, 99999),
        "height": integer(0, 99999),
    },
)
BUSINESS_DETAILS = obj(
    required={"name": string(100)},
    optional={"website": url(), "logo": IMAGE},
)
REGULAR_HOURS = obj(
    required={
        "weekday": integer(1, 7),
        "period_begin": _HOUR_MINUTE,
        "period_end": _HOUR_MINUTE,
    }
)
EXCEPTIONAL_PERIOD = obj(required={"period_begin": date_time(), "period_end": date_time()})
_REGULAR_HOURS_NEEDED = (
    "at least one 'regular_hours' entry is required when 'twentyfourseven' is false"
)
HOURS = obj(
    required={"twentyfourseven": boolean()},
    optional={
        "regular_hours": array(REGULAR_HOURS),
        "exceptional_openings": array(EXCEPTIONAL_PERIOD),
        "exceptional_closings": array(EXCEPTIONAL_PERIOD),
    },
    all_of=[
        {
            "if": {
                "required": ["twentyfourseven"],
                "properties": {"twentyfourseven": {"const": False}},
            },
            "then": {
                "required": ["regular_hours"],
                "properties": {
                    "regular_hours": {
                        "type": "array",
                        "minItems": 1,
                        _PROBLEM: _REGULAR_HOURS_NEEDED,
                    }
                },
                _PROBLEM: _REGULAR_HOURS_NEEDED,
            },
        }
    ],
)
STATUS_SCHEDULE = obj(
    required={"period_begin": date_time(), "status": enum("Status")},
    optional={"period_end": date_time()},
)
ENERGY_SOURCE = obj(required={"source": enum("EnergySourceCategory"), "percentage": number(0, 100)})
ENVIRONMENTAL_IMPACT = obj(
    required={"category": enum("EnvironmentalImpactCategory"), "amount": number(0)}
)
ENERGY_MIX = obj(
    required={"is_green_energy": boolean()},
    optional={
        "energy_sources": array(ENERGY_SOURCE),
        "environ_impact": array(ENVIRONMENTAL_IMPACT),
        "supplier_name": string(64),
        "energy_product_name": string(64),
    },
)
PUBLISH_TOKEN_TYPE = obj(
    required={},
    optional={
        "uid": ci_string(36),
        "type": enum("TokenType"),
        "visual_number": string(64),
        "issuer": string(64),
        "group_id": ci_string(36),
    },
    all_of=[
        {
            "anyOf": [_is_set("uid"), _is_set("visual_number"), _is_set("group_id")],
            _PROBLEM: "one of 'uid', 'visual_number' or 'group_id' is required",
        },
        _required_when("type", _is_set("uid"), "'uid' is set"),
        _required_when("issuer", _is_set("visual_number"), "'visual_number' is set"),
    ],
)
CONNECTOR = obj(
    required={
        "id": ci_string(36),
        "standard": enum("ConnectorType"),
        "format": enum("ConnectorFormat"),
        "power_type": enum("PowerType"),
        "max_voltage": integer(0),
        "max_amperage": integer(0),
        "last_updated": date_time(),
    },
    optional={
        "max_electric_power": integer(0),
        "tariff_ids": array(ci_string(36)),
        "terms_and_conditions": url(),
    },
)
EVSE = obj(
    required={
        "uid": ci_string(36),
        "status": enum("Status"),
        "connectors": array(CONNECTOR, min_items=1),
        "last_updated": date_time(),
    },
    optional={
        "evse_id": ci_string(48),
        "status_schedule": array(STATUS_SCHEDULE),
        "capabilities": array(enum("Capability")),
        "floor_level": string(4),
        "coordinates": GEO_LOCATION,
        "physical_reference": string(16),
        "directions": array(DISPLAY_TEXT),
        "parking_restrictions": array(enum("ParkingRestriction")),
        "images": array(IMAGE),
    },
)
LOCATION = obj(
    required={
        "country_code": _COUNTRY_ALPHA_2,
        "party_id": ci_string(3),
        "id": ci_string(36),
        "publish": boolean(),
        "address": string(255),  # errata; the published 2.2.1 said string(45)
        "city": string(45),
        "country": _COUNTRY_ALPHA_3,
        "coordinates": GEO_LOCATION,
        "time_zone": _TIME_ZONE,
        "last_updated": date_time(),
    },
    optional={
        "publish_allowed_to": array(PUBLISH_TOKEN_TYPE),
        "name": string(255),
        "postal_code": string(10),
        "state": string(45),  # errata; the published 2.2.1 said string(20)
        "related_locations": array(ADDITIONAL_GEO_LOCATION),
        "parking_type": enum("ParkingType"),
        "evses": array(EVSE),
        "directions": array(DISPLAY_TEXT),
        "operator": BUSINESS_DETAILS,
        "suboperator": BUSINESS_DETAILS,
        "owner": BUSINESS_DETAILS,
        "facilities": array(enum("Facility")),
        "opening_times": HOURS,
        "charging_when_closed": boolean(),
        "images": array(IMAGE),
        "energy_mix": ENERGY_MIX,
    },
)
PRICE = obj(required={"excl_vat": number()}, optional={"incl_vat": number()})
PRICE_COMPONENT = obj(
    required={
        "type": enum("TariffDimensionType"),
        "price": number(),
        "step_size": integer(0),
    },
    optional={"vat": number()},
)
TARIFF_RESTRICTIONS = obj(
    required={},
    optional={
        "start_time": _HOUR_MINUTE,
        "end_time": _HOUR_MINUTE,
        "start_date": _DATE_SCHEMA,
        "end_date": _DATE_SCHEMA,
        "min_kwh": number(),
        "max_kwh": number(),
        "min_current": number(),
        "max_current": number(),
        "min_power": number(),
        "max_power": number(),
        "min_duration": integer(),
        "max_duration": integer(),
        "day_of_week": array(enum("DayOfWeek")),
        "reservation": enum("ReservationRestrictionType"),
    },
)
TARIFF_ELEMENT = obj(
    required={"price_components": array(PRICE_COMPONENT, min_items=1)},
    optional={"restrictions": TARIFF_RESTRICTIONS},
)
TARIFF = obj(
    required={
        "country_code": _COUNTRY_ALPHA_2,
        "party_id": ci_string(3),
        "id": ci_string(36),
        "currency": _CURRENCY,
        "elements": array(TARIFF_ELEMENT, min_items=1),
        "last_updated": date_time(),
    },
    optional={
        "type": enum("TariffType"),
        "tariff_alt_text": array(DISPLAY_TEXT),
        "tariff_alt_url": url(),
        "min_price": PRICE,
        "max_price": PRICE,
        "start_date_time": date_time(),
        "end_date_time": date_time(),
        "energy_mix": ENERGY_MIX,
    },
)

CDR_TOKEN = obj(
    required={
        "country_code": _COUNTRY_ALPHA_2,
        "party_id": ci_string(3),
        "uid": ci_string(36),
        "type": enum("TokenType"),
        "contract_id": ci_string(36),
    }
)
# The location as it was at session start, narrowed to the one EVSE and connector used.
# evse_uid, evse_id and connector_id may be "#NA" for a reservation-only CDR, which the
# CiString schemas accept as they are.
CDR_LOCATION = obj(
    required={
        "id": ci_string(36),
        # Not widened by the errata as Location's were: a CDR carries at most 45 and 20.
        "address": string(45),
        "city": string(45),
        "country": _COUNTRY_ALPHA_3,
        "coordinates": GEO_LOCATION,
        "evse_uid": ci_string(36),
        "evse_id": ci_string(48),
        "connector_id": ci_string(36),
        "connector_standard": enum("ConnectorType"),
        "connector_format": enum("ConnectorFormat"),
        "connector_power_type": enum("PowerType"),
    },
    optional={
        "name": string(255),
        "postal_code": string(10),
        "state": string(20),
    },
)
CDR_DIMENSION = obj(required={"type": enum("CdrDimensionType"), "volume": number()})
CHARGING_PERIOD = obj(
    required={
        "start_date_time": date_time(),
        "dimensions": array(CDR_DIMENSION, min_items=1),
    },
    optional={"tariff_id": ci_string(36)},
)
SIGNED_VALUE = obj(
    required={
        "nature": ci_string(32),
        "plain_data": string(5000),  # errata; the published 2.2.1 said string(512)
        "signed_data": string(5000),
    }
)
SIGNED_DATA = obj(
    required={
        "encoding_method": ci_string(36),
        "signed_values": array(SIGNED_VALUE, min_items=1),
    },
    optional={
        "encoding_method_version": integer(),
        "public_key": string(512),
        "url": string(512),  # a string(512) here, not a URL (string(255))
    },
)
SESSION = obj(
    required={
        "country_code": _COUNTRY_ALPHA_2,
        "party_id": ci_string(3),
        "id": ci_string(36),
        "start_date_time": date_time(),
        "kwh": number(),
        "cdr_token": CDR_TOKEN,
        "auth_method": enum("AuthMethod"),
        "location_id": ci_string(36),
        "evse_uid": ci_string(36),
        "connector_id": ci_string(36),
        "currency": _CURRENCY,
        "status": enum("SessionStatus"),
        "last_updated": date_time(),
    },
    optional={
        "end_date_time": date_time(),
        "authorization_reference": ci_string(36),
        "meter_id": string(255),
        "charging_periods": array(CHARGING_PERIOD),
        "total_cost": PRICE,
    },
)
_CREDIT: Schema = {"required": ["credit"], "properties": {"credit": {"const": True}}}
CDR = obj(
    required={
        "country_code": _COUNTRY_ALPHA_2,
        "party_id": ci_string(3),
        # 36 for a normal CDR plus 3 for a credit suffix such as "-C".
        "id": ci_string(39),
        "start_date_time": date_time(),
        "end_date_time": date_time(),
        "cdr_token": CDR_TOKEN,
        "auth_method": enum("AuthMethod"),
        "cdr_location": CDR_LOCATION,
        "currency": _CURRENCY,
        "charging_periods": array(CHARGING_PERIOD, min_items=1),
        "total_cost": PRICE,
        "total_energy": number(),
        "total_time": number(),
        "last_updated": date_time(),
    },
    optional={
        "session_id": ci_string(36),
        "authorization_reference": ci_string(36),
        "meter_id": string(255),
        "tariffs": array(TARIFF),
        "signed_data": SIGNED_DATA,
        "total_fixed_cost": PRICE,
        "total_energy_cost": PRICE,
        "total_time_cost": PRICE,
        "total_parking_time": number(),
        "total_parking_cost": PRICE,
        "total_reservation_cost": PRICE,
        "remark": string(255),
        "invoice_reference_id": ci_string(39),
        "credit": boolean(),
        "credit_reference_id": ci_string(39),
        "home_charging_compensation": boolean(),
    },
    all_of=[_required_when("credit_reference_id", _CREDIT, "'credit' is true")],
)

_DIALECT = "https://json-schema.org/draft/2020-12/schema"

#: Every schema by OCPI type name, each a complete draft 2020-12 schema.
SCHEMAS: Final[Mapping[SubschemaName, Schema]] = {
    name: {"$schema": _DIALECT, **schema}
    for name, schema in {
        "Location": LOCATION,
        "EVSE": EVSE,
        "Connector": CONNECTOR,
        "Tariff": TARIFF,
        "GeoLocation": GEO_LOCATION,
        "AdditionalGeoLocation": ADDITIONAL_GEO_LOCATION,
        "BusinessDetails": BUSINESS_DETAILS,
        "Image": IMAGE,
        "Hours": HOURS,
        "RegularHours": REGULAR_HOURS,
        "ExceptionalPeriod": EXCEPTIONAL_PERIOD,
        "StatusSchedule": STATUS_SCHEDULE,
        "EnergyMix": ENERGY_MIX,
        "EnergySource": ENERGY_SOURCE,
        "EnvironmentalImpact": ENVIRONMENTAL_IMPACT,
        "PublishTokenType": PUBLISH_TOKEN_TYPE,
        "DisplayText": DISPLAY_TEXT,
        "Price": PRICE,
        "TariffElement": TARIFF_ELEMENT,
        "PriceComponent": PRICE_COMPONENT,
        "TariffRestrictions": TARIFF_RESTRICTIONS,
        "Session": SESSION,
        "CDR": CDR,
        "CdrToken": CDR_TOKEN,
        "CdrLocation": CDR_LOCATION,
        "ChargingPeriod": CHARGING_PERIOD,
        "CdrDimension": CDR_DIMENSION,
        "SignedData": SIGNED_DATA,
        "SignedValue": SIGNED_VALUE,
    }.items()
}
# Built once: a validator instance is reusable and thread-safe for reading.
_VALIDATORS: Final[Mapping[str, Draft202012Validator]] = {
    name: Draft202012Validator(schema, format_checker=_FORMATS) for name, schema in SCHEMAS.items()
}

# --------------------------------------------------------------------------- validation


def validate(kind: DocumentKind, doc: object) -> None:
    """Check ``doc`` as a whole OCPI document of ``kind``; raise the first problem found.

    Raise ``DocumentError`` with the path of the problem inside ``doc`` (``""`` for the
    document itself). "First" is deterministic: see ``find_problems``.
    """
    problems = find_problems(kind, doc)
    if problems:
        raise problems[0]


def validate_subschema(name: SubschemaName, doc: object) -> None:
    """Check ``doc`` as the OCPI type ``name`` (e.g. ``"EnergyMix"``); raise the first problem."""
    problems = _problems(name, doc)
    if problems:
        raise problems[0]


def find_problems(kind: DocumentKind, doc: object) -> list[DocumentError]:
    """Return every problem of ``doc`` as a document of ``kind``, most relevant first.

    Schema problems are sorted by path (a parent before its children, list items in
    order), then wrong types before missing fields before unknown fields before the rest.
    Rules beyond the schema (unique ids, ordered periods) are checked only when the
    schema passes, so they can rely on the document's shape.
    """
    if kind not in _KIND_SCHEMA:
        raise ValueError(f"unknown document kind {kind!r}, expected one of {list(_KIND_SCHEMA)}")
    return _problems(_KIND_SCHEMA[kind], doc)


def format_path(parts: Iterable[str | int]) -> str:
    """Write a path inside a document the way people read it: ``evses[0].connectors[1]``."""
    text = ""
    for part in parts:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else str(part)
    return text


def _problems(name: str, doc: object) -> list[DocumentError]:
    validator = _VALIDATORS.get(name)
    if validator is None:
        raise ValueError(f"no schema named {name!r}, expected one of {list(SCHEMAS)}")
    ranked: list[tuple[tuple[Any, ...], int, str, DocumentError]] = []
    seen: set[tuple[str, str]] = set()
    for error in validator.iter_errors(doc):
        for problem in _translate(error):
            if (problem.path, problem.problem) in seen:
                continue
            seen.add((problem.path, problem.problem))
            rank = _RANK.get(str(error.validator), len(_RANK))
            ranked.append((_path_key(error.absolute_path), rank, problem.problem, problem))
    if ranked:
        ranked.sort(key=lambda item: item[:3])
        return [item[3] for item in ranked]
    rule = _RULES.get(name)
    return list(rule(doc, "")) if rule else []


# Within one path: a wrong type makes the rest moot; a missing field before an extra one.
_RANK: Final[Mapping[str, int]] = {"type": 0, "required": 1, "additionalProperties": 2}


def _path_key(parts: Iterable[str | int]) -> tuple[Any, ...]:
    return tuple((0, part, "") if isinstance(part, int) else (1, 0, part) for part in parts)


def _translate(error: ValidationError) -> list[DocumentError]:
    """Turn one jsonschema error into problems a person can act on."""
    path = format_path(error.absolute_path)
    schema = error.schema if isinstance(error.schema, dict) else {}
    value = error.instance
    if _PROBLEM in schema:
        return [DocumentError(path, schema[_PROBLEM])]
    handler = _HANDLERS.get(str(error.validator))
    if handler is None:
        return [DocumentError(path, error.message)]
    return [DocumentError(path, problem) for problem in handler(error, schema, value)]


def _on_type(error: ValidationError, schema: Schema, value: Any) -> list[str]:
    expected = error.validator_value
    names = [expected] if isinstance(expected, str) else list(expected)
    wanted = " or ".join(_ARTICLE_TYPE[name] for name in names if name != "null")
    return [f"expected {wanted}, got {_describe(value)}"]


def _on_required(error: ValidationError, schema: Schema, value: Any) -> list[str]:
    missing = [field for field in error.validator_value if field not in value]
    return [f"'{field}' is required" for field in missing] or [error.message]


def _on_additional(error: ValidationError, schema: Schema, value: Any) -> list[str]:
    known = list(schema.get("properties", {}))
    problems = []
    for field in value:
        if field in known:
            continue
        problem = f"unknown field '{field}'"
        close = difflib.get_close_matches(str(field), known, n=1)
        if close:
            problem += f" (did you mean '{close[0]}'?)"
        problems.append(problem)
    return problems or [error.message]


def _on_enum(error: ValidationError, schema: Schema, value: Any) -> list[str]:
    allowed = [v for v in error.validator_value if v is not None]
    name = schema.get(_ENUM_NAME, "value")
    problem = f"{_describe(value)} is not a valid {name}"
    close = _close_enum_value(value, allowed)
    if close:
        if close.lower() == str(value).lower():
            return [f"{problem} (did you mean '{close}'? values are case-sensitive)"]
        return [f"{problem} (did you mean '{close}'?)"]
    if len(allowed) <= 12:
        return [f"{problem}, expected one of {', '.join(allowed)}"]
    return [f"{problem} (see OCPI 2.2.1 {name} for the {len(allowed)} allowed values)"]


def _close_enum_value(value: Any, allowed: list[str]) -> str | None:
    if not isinstance(value, str):
        return None
    for candidate in allowed:
        if candidate.lower() == value.lower():
            return candidate
    close = difflib.get_close_matches(value, allowed, n=1)
    return close[0] if close else None


def _on_max_length(error: ValidationError, schema: Schema, value: Any) -> list[str]:
    return [f"too long: {len(value)} characters, at most {error.validator_value} allowed"]


def _on_pattern(error: ValidationError, schema: Schema, value: Any) -> list[str]:
    expected = schema.get(_EXPECTED, f"a string matching {error.validator_value}")
    return [f"expected {expected}, got {_describe(value)}"]


def _on_format(error: ValidationError, schema: Schema, value: Any) -> list[str]:
    cause = error.cause
    return [cause.problem if isinstance(cause, DocumentError) else error.message]


def _on_min_items(error: ValidationError, schema: Schema, value: Any) -> list[str]:
    count = error.validator_value
    return ["must not be empty" if count == 1 else f"must have at least {count} items"]


def _on_minimum(error: ValidationError, schema: Schema, value: Any) -> list[str]:
    return [f"must be at least {error.validator_value}, got {_describe(value)}"]


def _on_maximum(error: ValidationError, schema: Schema, value: Any) -> list[str]:
    return [f"must be at most {error.validator_value}, got {_describe(value)}"]


_HANDLERS: Final[Mapping[str, Callable[[ValidationError, Schema, Any], list[str]]]] = {
    "type": _on_type,
    "required": _on_required,
    "additionalProperties": _on_additional,
    "enum": _on_enum,
    "maxLength": _on_max_length,
    "pattern": _on_pattern,
    "format": _on_format,
    "minItems": _on_min_items,
    "minimum": _on_minimum,
    "maximum": _on_maximum,
}

_ARTICLE_TYPE: Final[Mapping[str, str]] = {
    "string": "a string",
    "integer": "an integer",
    "number": "a number",
    "boolean": "a boolean",
    "array": "an array",
    "object": "an object",
    "null": "null",
}


def _describe(value: Any) -> str:
    """Name a JSON value and show it briefly: ``number 1``, ``string 'x'``, ``array``."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"boolean {json.dumps(value)}"
    if isinstance(value, int | float):
        return f"number {value!r}"
    if isinstance(value, str):
        shown = value if len(value) <= 40 else value[:37] + "..."
        return f"string {shown!r}"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


# ------------------------------------------------------------------- rules beyond the schema


def _join(prefix: str, tail: str) -> str:
    if not prefix:
        return tail
    return prefix + tail if tail.startswith("[") else f"{prefix}.{tail}"


def _unique_ids(
    items: Iterable[Mapping[str, Any]], field: str, list_path: str
) -> Iterator[DocumentError]:
    """Report ids that repeat in a list (OCPI ids compare case-insensitively)."""
    first_seen: dict[str, int] = {}
    for index, item in enumerate(items):
        key = str(item[field]).lower()
        if key in first_seen:
            yield DocumentError(
                _join(list_path, f"[{index}].{field}"),
                f"duplicate {field} {item[field]!r}: {list_path}[{first_seen[key]}] has the same"
                " (ids compare case-insensitively)",
            )
        else:
            first_seen[key] = index


def _hours_rules(doc: Mapping[str, Any], path: str) -> Iterator[DocumentError]:
    for index, hours in enumerate(doc.get("regular_hours") or []):
        if hours["period_end"] <= hours["period_begin"]:
            yield DocumentError(
                _join(path, f"regular_hours[{index}].period_end"),
                f"must be later than period_begin {hours['period_begin']!r},"
                f" got {hours['period_end']!r}",
            )


def _evse_rules(doc: Mapping[str, Any], path: str) -> Iterator[DocumentError]:
    yield from _unique_ids(doc["connectors"], "id", _join(path, "connectors"))


def _location_rules(doc: Mapping[str, Any], path: str) -> Iterator[DocumentError]:
    evses = doc.get("evses") or []
    yield from _unique_ids(evses, "uid", _join(path, "evses"))
    for index, evse in enumerate(evses):
        yield from _evse_rules(evse, _join(path, f"evses[{index}]"))
    if doc.get("opening_times") is not None:
        yield from _hours_rules(doc["opening_times"], _join(path, "opening_times"))


_RESERVATION_DIMENSIONS = ("FLAT", "TIME")


def _tariff_element_rules(doc: Mapping[str, Any], path: str) -> Iterator[DocumentError]:
    if (doc.get("restrictions") or {}).get("reservation") is None:
        return
    for index, component in enumerate(doc["price_components"]):
        if component["type"] not in _RESERVATION_DIMENSIONS:
            yield DocumentError(
                _join(path, f"price_components[{index}].type"),
                f"{component['type']} is not allowed in a reservation element"
                " (only FLAT and TIME are)",
            )


def _tariff_rules(doc: Mapping[str, Any], path: str) -> Iterator[DocumentError]:
    start, end = doc.get("start_date_time"), doc.get("end_date_time")
    if (
        start is not None
        and end is not None
        and parse_datetime(end, "end_date_time") <= parse_datetime(start, "start_date_time")
    ):
        yield DocumentError(
            _join(path, "end_date_time"),
            f"must be later than start_date_time {start!r}, got {end!r}",
        )
    for index, element in enumerate(doc["elements"]):
        yield from _tariff_element_rules(element, _join(path, f"elements[{index}]"))


def _charging_period_order_rules(
    periods: Sequence[Mapping[str, Any]], path: str
) -> Iterator[DocumentError]:
    """Report a charging period that starts before the one listed before it.

    A period ends where the next one starts, so the list must be in time order; equal
    starts are allowed (a zero-length period is odd but not contradictory).
    """
    for index in range(1, len(periods)):
        before = periods[index - 1]["start_date_time"]
        start = periods[index]["start_date_time"]
        here = _join(path, f"[{index}].start_date_time")
        if parse_datetime(start, here) < parse_datetime(before, here):
            yield DocumentError(
                here,
                f"must not be earlier than the previous period's start {before!r}, got {start!r}"
                " (periods are listed in time order)",
            )


def _session_rules(doc: Mapping[str, Any], path: str) -> Iterator[DocumentError]:
    periods = doc.get("charging_periods") or []
    yield from _charging_period_order_rules(periods, _join(path, "charging_periods"))


# Measured for live feedback only: the spec says they SHALL NOT appear in a CDR.
_SESSION_ONLY_DIMENSIONS = frozenset(
    {"CURRENT", "ENERGY_EXPORT", "ENERGY_IMPORT", "POWER", "STATE_OF_CHARGE"}
)


def _cdr_rules(doc: Mapping[str, Any], path: str) -> Iterator[DocumentError]:
    periods_path = _join(path, "charging_periods")
    yield from _charging_period_order_rules(doc["charging_periods"], periods_path)
    for index, period in enumerate(doc["charging_periods"]):
        for slot, dimension in enumerate(period["dimensions"]):
            if dimension["type"] in _SESSION_ONLY_DIMENSIONS:
                yield DocumentError(
                    _join(periods_path, f"[{index}].dimensions[{slot}].type"),
                    f"{dimension['type']} is a Session-only dimension type, not allowed in a CDR",
                )
    for index, tariff in enumerate(doc.get("tariffs") or []):
        yield from _tariff_rules(tariff, _join(path, f"tariffs[{index}]"))


_RULES: Final[Mapping[str, Callable[[Any, str], Iterator[DocumentError]]]] = {
    "Location": _location_rules,
    "EVSE": _evse_rules,
    "Hours": _hours_rules,
    "Tariff": _tariff_rules,
    "TariffElement": _tariff_element_rules,
    "Session": _session_rules,
    "CDR": _cdr_rules,
}
