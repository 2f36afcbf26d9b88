"""Station templates (``simulator.templates``) and the outlet layout each OCPP version makes.

Every shipped template loads; OCPP 1.6 turns each connector into its own outlet (one OCPI EVSE
each), 2.0.1 keeps the template's EVSEs (checked through ``simulator.fleet.build_station``, which
builds without connecting); and each way a template file can be wrong raises ``TemplateError``
naming the file and the field.
"""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path
from typing import Any

import pytest

from simulator.fleet import build_station
from simulator.station import StationOptions
from simulator.templates import Template, TemplateError, load_template, shipped_templates

OPTIONS = StationOptions(url="ws://127.0.0.1:9/ocpp")
"""Nothing listens there: building a station must not try."""

VALID: dict[str, Any] = {
    "name": "test-model",
    "vendor": "Testco",
    "model": "T-1",
    "ocpp": ["1.6"],
    "evses": [
        {
            "connectors": [
                {"standard": "IEC_62196_T2", "power_type": "AC_3_PHASE", "max_power_w": 11000}
            ]
        }
    ],
}


def _write(tmp_path: Path, doc: Any, name: str = "model.json") -> Path:
    path = tmp_path / name
    path.write_text(doc if isinstance(doc, str) else json.dumps(doc), encoding="utf-8")
    return path


def _connector(**changes: Any) -> dict[str, Any]:
    return {**VALID["evses"][0]["connectors"][0], **changes}


# Shipped templates


def test_every_shipped_template_file_loads() -> None:
    files = [
        entry
        for entry in resources.files("simulator").joinpath("templates").iterdir()
        if entry.name.endswith(".json")
    ]
    shipped = shipped_templates()
    assert len(shipped) == len(files) >= 1
    for entry in files:
        template = load_template(Path(str(entry)))
        assert shipped[template.name] == template
        assert template.connector_count >= 1
        assert set(template.versions) <= {"1.6", "2.0.1"}
        assert len(template.vendor) <= 20  # 1.6 CiString20
        assert len(template.model) <= 20


def test_shipped_templates_cover_both_versions_ac_and_dc_and_signing() -> None:
    templates = list(shipped_templates().values())
    connectors = [c for t in templates for e in t.evses for c in e.connectors]
    assert any("1.6" in t.versions for t in templates)
    assert any("2.0.1" in t.versions for t in templates)
    assert any(c.is_dc for c in connectors)
    assert any(not c.is_dc for c in connectors)
    assert any(t.signed_meter_values for t in templates)


def test_load_template_applies_defaults(tmp_path: Path) -> None:
    template = load_template(_write(tmp_path, VALID))
    [evse] = template.evses
    [connector] = evse.connectors
    assert template.firmware == "1.0.0"
    assert template.meter_interval == 60.0
    assert not template.signed_meter_values
    assert template.versions == ("1.6",)
    assert connector.format == "SOCKET"
    assert connector.voltage_v == 230
    assert connector.phases == 3
    assert connector.max_current_a == pytest.approx(11000 / (230 * 3))


def test_dc_connector_defaults_to_a_cable_at_400_volts(tmp_path: Path) -> None:
    doc = {**VALID, "evses": [{"connectors": [_connector(power_type="DC", max_power_w=50000)]}]}
    [evse] = load_template(_write(tmp_path, doc)).evses
    [connector] = evse.connectors
    assert connector.is_dc
    assert connector.phases == 0
    assert connector.format == "CABLE"
    assert connector.max_current_a == pytest.approx(50000 / 400)


# The layout each version makes


def _by_name(name: str) -> Template:
    return shipped_templates()[name]


def test_v16_station_has_one_outlet_per_connector_in_template_order() -> None:
    template = _by_name("dc-fast-150")  # two EVSEs: one with two connectors, one with one
    station = build_station("LAYOUT-16", "1.6", template, OPTIONS)
    expected = [c for evse in template.evses for c in evse.connectors]
    assert list(station.outlets) == [1, 2, 3]
    assert [outlet.connectors for outlet in station.outlets.values()] == [(c,) for c in expected]
    assert station.version == "1.6"
    assert station.link is None
    assert not station.booted.is_set()


def test_v201_station_keeps_the_template_evses() -> None:
    template = _by_name("dc-fast-150")
    station = build_station("LAYOUT-201", "2.0.1", template, OPTIONS)
    assert list(station.outlets) == [1, 2]
    assert [o.connectors for o in station.outlets.values()] == [
        e.connectors for e in template.evses
    ]
    assert station.version == "2.0.1"
    assert station.link is None
    assert not station.booted.is_set()


def test_build_station_refuses_a_version_the_template_does_not_speak() -> None:
    with pytest.raises(ValueError, match="hpc-350"):
        build_station("NOPE", "1.6", _by_name("hpc-350"), OPTIONS)


def test_same_seed_builds_the_same_station_and_another_seed_another() -> None:
    template = _by_name("ac-duo-22")
    one = build_station("SEEDED", "1.6", template, OPTIONS, seed=5)
    again = build_station("SEEDED", "1.6", template, OPTIONS, seed=5)
    other = build_station("SEEDED", "1.6", template, OPTIONS, seed=6)
    registers = [o.register_wh for o in one.outlets.values()]
    assert one.serial == again.serial
    assert registers == [o.register_wh for o in again.outlets.values()]
    assert (other.serial, [o.register_wh for o in other.outlets.values()]) != (
        one.serial,
        registers,
    )


# What a broken template file says


@pytest.mark.parametrize(
    ("doc", "field"),
    [
        pytest.param({k: v for k, v in VALID.items() if k != "evses"}, "'evses'", id="no-evses"),
        pytest.param({**VALID, "evses": []}, "'evses'", id="empty-evses"),
        pytest.param({**VALID, "evses": {"connectors": []}}, "'evses'", id="evses-not-list"),
        pytest.param({**VALID, "evses": [{"connectors": []}]}, "evses[1]", id="no-connectors"),
        pytest.param({**VALID, "evses": ["x"]}, "evses[1]", id="evse-not-object"),
        pytest.param(
            {**VALID, "evses": [{"connectors": ["x"]}]},
            "evses[1].connectors[1]",
            id="connector-not-object",
        ),
        pytest.param(
            {**VALID, "evses": [{"connectors": [_connector(power_type="AC_4_PHASE")]}]},
            "power_type",
            id="bad-power-type",
        ),
        pytest.param(
            {**VALID, "evses": [{"connectors": [_connector(max_power_w=-7400)]}]},
            "max_power_w",
            id="negative-power",
        ),
        pytest.param(
            {**VALID, "evses": [{"connectors": [_connector(max_power_w="22 kW")]}]},
            "max_power_w",
            id="power-not-number",
        ),
        pytest.param(
            {**VALID, "evses": [{"connectors": [_connector(max_power_w=True)]}]},
            "max_power_w",
            id="power-boolean",
        ),
        pytest.param(
            {**VALID, "evses": [{"connectors": [_connector(voltage_v=0)]}]},
            "voltage_v",
            id="zero-voltage",
        ),
        pytest.param(
            {**VALID, "evses": [{"connectors": [{"power_type": "DC", "max_power_w": 1}]}]},
            "'standard'",
            id="no-standard",
        ),
        pytest.param({**VALID, "ocpp": ["1.5"]}, "'ocpp'", id="bad-ocpp-version"),
        pytest.param({**VALID, "ocpp": []}, "'ocpp'", id="no-ocpp-version"),
        pytest.param({**VALID, "meter_interval": 0}, "meter_interval", id="zero-interval"),
        pytest.param({k: v for k, v in VALID.items() if k != "name"}, "'name'", id="no-name"),
        pytest.param({**VALID, "vendor": 7}, "'vendor'", id="vendor-not-string"),
        pytest.param([VALID], "JSON object", id="not-an-object"),
    ],
)
def test_broken_template_names_the_file_and_the_field(tmp_path: Path, doc: Any, field: str) -> None:
    path = _write(tmp_path, doc)
    with pytest.raises(TemplateError) as raised:
        load_template(path)
    message = str(raised.value)
    assert message.startswith(str(path))
    assert field in message


def test_connector_errors_name_the_evse_and_connector(tmp_path: Path) -> None:
    doc = {
        **VALID,
        "evses": [
            VALID["evses"][0],
            {"connectors": [_connector(), _connector(power_type="ACDC")]},
        ],
    }
    with pytest.raises(TemplateError, match=r"evses\[2\]\.connectors\[2\].*power_type"):
        load_template(_write(tmp_path, doc))


def test_text_that_is_not_json_is_named(tmp_path: Path) -> None:
    path = _write(tmp_path, '{"name": "half', name="broken.json")
    with pytest.raises(TemplateError) as raised:
        load_template(path)
    assert str(raised.value).startswith(str(path))
    assert "not JSON" in str(raised.value)


def test_unreadable_file_is_named(tmp_path: Path) -> None:
    missing = tmp_path / "missing.json"
    with pytest.raises(TemplateError) as raised:
        load_template(missing)
    assert str(raised.value).startswith(str(missing))
    assert "cannot read" in str(raised.value)
    with pytest.raises(TemplateError, match="cannot read"):
        load_template(tmp_path)  # a directory
