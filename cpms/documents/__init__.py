"""OCPI 2.2.1 documents of Locations, EVSEs, Connectors and Tariffs: check, read, write.

Pure code, no I/O: a document (a ``dict`` from JSON) is validated against strict JSON
Schemas, read onto the ORM model (``*_from_ocpi``, ``apply_*``) and rendered back
(``*_to_ocpi``). Every problem is a ``cpms.errors.DocumentError`` naming where it is.
"""

from cpms.documents.datetimes import format_datetime, parse_datetime
from cpms.documents.files import item_of, load_documents
from cpms.documents.locations import (
    apply_connector,
    apply_evse,
    apply_location,
    connector_from_ocpi,
    connector_to_ocpi,
    evse_from_ocpi,
    evse_to_ocpi,
    location_from_ocpi,
    location_to_ocpi,
)
from cpms.documents.schema import (
    DocumentKind,
    SubschemaName,
    find_problems,
    validate,
    validate_subschema,
)
from cpms.documents.sessions import charging_period_to_ocpi, session_to_ocpi
from cpms.documents.tariffs import apply_tariff, tariff_from_ocpi, tariff_to_ocpi

__all__ = [
    "DocumentKind",
    "SubschemaName",
    "apply_connector",
    "apply_evse",
    "apply_location",
    "apply_tariff",
    "charging_period_to_ocpi",
    "connector_from_ocpi",
    "connector_to_ocpi",
    "evse_from_ocpi",
    "evse_to_ocpi",
    "find_problems",
    "format_datetime",
    "item_of",
    "load_documents",
    "location_from_ocpi",
    "location_to_ocpi",
    "parse_datetime",
    "session_to_ocpi",
    "tariff_from_ocpi",
    "tariff_to_ocpi",
    "validate",
    "validate_subschema",
]
