"""Station models: what a simulated station is made of, read from JSON templates.

A template names the vendor, model and firmware a station boots with, its EVSEs and their
connectors (OCPI connector standard and format, AC or DC, phases, voltage, the most power it
gives), how often it samples its meter, and whether it signs its meter values. Several ship in
``simulator/templates/``; ``--template FILE`` adds more.

OCPP 1.6 has no EVSE: each connector of a template becomes its own 1.6 connector, numbered
from 1 in template order, as one OCPI EVSE each (how the server maps 1.6). OCPP 2.0.1 keeps the
EVSEs and numbers connectors within them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

__all__ = [
    "ConnectorSpec",
    "EvseSpec",
    "Template",
    "TemplateError",
    "load_template",
    "shipped_templates",
]

_POWER_TYPES = {"AC_1_PHASE": 1, "AC_2_PHASE": 2, "AC_3_PHASE": 3, "DC": 0}


class TemplateError(ValueError):
    """A template that does not describe a station; the message names the file and field."""


@dataclass(frozen=True, slots=True)
class ConnectorSpec:
    standard: str
    format: str
    power_type: str
    max_power_w: float
    voltage_v: float
    """Phase-to-neutral voltage for AC, the nominal pack-side voltage for DC."""

    @property
    def phases(self) -> int:
        """Phases drawn on AC; 0 for DC."""
        return _POWER_TYPES[self.power_type]

    @property
    def is_dc(self) -> bool:
        return self.power_type == "DC"

    @property
    def max_current_a(self) -> float:
        return self.max_power_w / (self.voltage_v * max(self.phases, 1))


@dataclass(frozen=True, slots=True)
class EvseSpec:
    connectors: tuple[ConnectorSpec, ...]


@dataclass(frozen=True, slots=True)
class Template:
    name: str
    vendor: str
    model: str
    firmware: str
    evses: tuple[EvseSpec, ...]
    meter_interval: float = 60.0
    """Seconds between two meter samples of a running transaction."""
    signed_meter_values: bool = False
    versions: tuple[str, ...] = ("1.6", "2.0.1")
    """OCPP versions this model speaks."""

    @property
    def connector_count(self) -> int:
        return sum(len(evse.connectors) for evse in self.evses)


def _field(doc: dict[str, Any], key: str, kind: type | tuple[type, ...], where: str) -> Any:
    if key not in doc:
        raise TemplateError(f"{where}: missing {key!r}")
    value = doc[key]
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
        raise TemplateError(
            f"{where}: {key!r} is {value!r}, not a {getattr(kind, '__name__', kind)}"
        )
    return value


def _connector(doc: Any, where: str) -> ConnectorSpec:
    if not isinstance(doc, dict):
        raise TemplateError(f"{where}: a connector is an object")
    power_type = _field(doc, "power_type", str, where)
    if power_type not in _POWER_TYPES:
        raise TemplateError(
            f"{where}: power_type {power_type!r} is not one of {sorted(_POWER_TYPES)}"
        )
    power = float(_field(doc, "max_power_w", (int, float), where))
    voltage = float(doc.get("voltage_v", 400 if power_type == "DC" else 230))
    if power <= 0 or voltage <= 0:
        raise TemplateError(f"{where}: max_power_w and voltage_v must be positive")
    return ConnectorSpec(
        standard=_field(doc, "standard", str, where),
        format=str(doc.get("format", "CABLE" if power_type == "DC" else "SOCKET")),
        power_type=power_type,
        max_power_w=power,
        voltage_v=voltage,
    )


def parse_template(doc: Any, where: str) -> Template:
    """Read a template document; ``where`` names it in errors."""
    if not isinstance(doc, dict):
        raise TemplateError(f"{where}: a template is a JSON object")
    evses_doc = _field(doc, "evses", list, where)
    if not evses_doc:
        raise TemplateError(f"{where}: 'evses' is empty")
    evses = []
    for n, evse in enumerate(evses_doc, 1):
        connectors = (
            _field(evse, "connectors", list, f"{where}: evses[{n}]")
            if isinstance(evse, dict)
            else None
        )
        if not connectors:
            raise TemplateError(f"{where}: evses[{n}] needs at least one connector")
        evses.append(
            EvseSpec(
                tuple(
                    _connector(c, f"{where}: evses[{n}].connectors[{i}]")
                    for i, c in enumerate(connectors, 1)
                )
            )
        )
    versions = tuple(doc.get("ocpp", ("1.6", "2.0.1")))
    if not versions or any(v not in ("1.6", "2.0.1") for v in versions):
        raise TemplateError(
            f"{where}: 'ocpp' lists versions among '1.6' and '2.0.1', not {versions!r}"
        )
    interval = float(doc.get("meter_interval", 60))
    if interval <= 0:
        raise TemplateError(f"{where}: meter_interval must be positive")
    return Template(
        name=_field(doc, "name", str, where),
        vendor=_field(doc, "vendor", str, where)[:20],
        model=_field(doc, "model", str, where)[:20],
        firmware=str(doc.get("firmware", "1.0.0"))[:50],
        evses=tuple(evses),
        meter_interval=interval,
        signed_meter_values=bool(doc.get("signed_meter_values", False)),
        versions=versions,
    )


def load_template(path: str | Path) -> Template:
    """Read a template file; raise ``TemplateError`` naming the file and what is wrong."""
    try:
        doc = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as error:
        raise TemplateError(f"{path}: cannot read ({error.strerror})") from None
    except ValueError as error:
        raise TemplateError(f"{path}: not JSON ({error})") from None
    return parse_template(doc, str(path))


def shipped_templates() -> dict[str, Template]:
    """The templates that ship in ``simulator/templates``, by name."""
    found: dict[str, Template] = {}
    for entry in sorted(resources.files("simulator").joinpath("templates").iterdir(), key=str):
        if entry.name.endswith(".json"):
            template = parse_template(json.loads(entry.read_text(encoding="utf-8")), entry.name)
            found[template.name] = template
    return found
