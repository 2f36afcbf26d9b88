"""End-to-end tests of the management verbs of `cpms`, run the way an operator runs them.

Most tests call ``cpms.cli.main`` in this process (argv in, exit code and printed output
out), which is the very function the ``cpms`` console script runs; a few run the real
``python -m cpms`` process to pin what only a process shows: stdin, the exit status, and
exactly what reaches stderr. Every command works on the ``database_url`` fixture's database,
named by ``CPMS_DATABASE_URL`` as a user would; no inherited ``CPMS_*`` variable leaks in.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from cpms.cli import main
from cpms.config import OPTIONS
from cpms.database import head_revision

from conftest import TIME_UNIT

PROCESS_TIMEOUT = 30 * TIME_UNIT
"""Seconds one real `cpms` process may take."""
PASSWORD = "correct-horse-battery"

EVSE = {
    "uid": "CP1-1",
    "evse_id": "NL*CPM*E0001*1",
    "status": "AVAILABLE",
    "connectors": [
        {
            "id": "1",
            "standard": "IEC_62196_T2",
            "format": "SOCKET",
            "power_type": "AC_3_PHASE",
            "max_voltage": 230,
            "max_amperage": 16,
            "last_updated": "2024-01-01T00:00:00Z",
        }
    ],
    "last_updated": "2024-01-01T00:00:00Z",
}
CONNECTOR = {
    "id": "2",
    "standard": "IEC_62196_T2_COMBO",
    "format": "CABLE",
    "power_type": "DC",
    "max_voltage": 500,
    "max_amperage": 125,
    "last_updated": "2024-01-01T00:00:00Z",
}


@dataclass
class Outcome:
    """What one `cpms` command did: its exit code and what it printed."""

    code: int
    out: str
    err: str

    def json(self) -> Any:
        assert self.code == 0, self.err
        return json.loads(self.out)

    def refusal(self) -> str:
        """The one-line refusal message of a command that exited with 1."""
        assert self.code == 1, (self.out, self.err)
        lines = self.err.strip().splitlines()
        assert len(lines) == 1, self.err
        assert lines[0].startswith("cpms: "), self.err
        return lines[0]


Cpms = Callable[..., Outcome]


def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in list(os.environ):
        if key.startswith("CPMS_"):
            monkeypatch.delenv(key)


@pytest.fixture
def cpms(
    database_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> Cpms:
    """Run ``cpms ARGS`` in this process on the test database; return its ``Outcome``."""
    _clean_environment(monkeypatch)
    monkeypatch.setenv("CPMS_DATABASE_URL", database_url)

    def run(*argv: str) -> Outcome:
        capsys.readouterr()
        try:
            code = main(list(argv))
        except SystemExit as exit_:  # argparse: --help, --version, usage errors
            code = int(exit_.code or 0)
        captured = capsys.readouterr()
        return Outcome(code, captured.out, captured.err)

    return run


@pytest.fixture
def cpms_process(database_url: str, tmp_path: Path) -> Callable[..., Outcome]:
    """Run the real ``python -m cpms ARGS`` process on the test database."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("CPMS_")}
    env["CPMS_DATABASE_URL"] = database_url

    def run(*argv: str, stdin: str | None = None, **variables: str) -> Outcome:
        result = subprocess.run(
            [sys.executable, "-m", "cpms", *argv],
            cwd=tmp_path, env=env | variables, input=stdin, capture_output=True, text=True,
            timeout=PROCESS_TIMEOUT, check=False,
        )  # fmt: skip
        return Outcome(result.returncode, result.stdout, result.stderr)

    return run


@pytest.fixture
def write(tmp_path: Path) -> Callable[[str, Any], str]:
    """Write a JSON document to a file in the test's directory; return its path."""

    def write_json(name: str, document: Any) -> str:
        path = tmp_path / name
        path.write_text(json.dumps(document), encoding="utf-8")
        return str(path)

    return write_json


@pytest.fixture
def loc1(cpms: Cpms, examples_dir: Path) -> None:
    """Location LOC1, imported from the official location example."""
    assert cpms("locations", "import", str(examples_dir / "location_example.json")).code == 0


@pytest.fixture
def cp1_evse(cpms: Cpms, loc1: None, write: Callable[[str, Any], str]) -> str:
    """Station CP1 at LOC1 serving EVSE ``CP1-1`` as its OCPP EVSE 1; return the EVSE uid."""
    assert cpms("stations", "create", "CP1", "--location", "LOC1").code == 0
    evse_file = write("evse.json", EVSE)
    added = cpms("evses", "add", "LOC1", evse_file, "--station", "CP1", "--ocpp-evse-id", "1")
    assert added.code == 0, added.err
    return str(EVSE["uid"])


def official_tariffs(examples_dir: Path) -> list[Path]:
    """The official tariff examples that are valid (DEFECTS.md 2: tariff_put_example)."""
    files = sorted(examples_dir.glob("tariff_*.json"))
    return [path for path in files if path.name != "tariff_put_example.json"]


# Locations ----------------------------------------------------------------------------------


def test_importing_the_official_location_example_creates_loc1_with_its_evses(
    cpms: Cpms, examples_dir: Path
) -> None:
    example = examples_dir / "location_example.json"

    imported = cpms("locations", "import", str(example), "--json").json()
    assert imported == {"created": ["LOC1"], "updated": []}

    shown = cpms("locations", "show", "LOC1", "--json").json()
    assert shown["name"] == "Gent Zuid"
    assert shown["coordinates"] == {"latitude": "51.047599", "longitude": "3.729944"}
    assert [evse["uid"] for evse in shown["evses"]] == ["3256", "3257"]
    assert [c["id"] for c in shown["evses"][0]["connectors"]] == ["1", "2"]

    again = cpms("locations", "import", str(example), "--json").json()
    assert again == {"created": [], "updated": ["LOC1"]}


def test_importing_a_list_file_creates_every_location_in_it(
    cpms: Cpms, examples_dir: Path, write: Callable[[str, Any], str]
) -> None:
    names = [
        "location_example.json",
        "location_example_parking_garage_opening_hours.json",
        "location_example_uc4_limited_visibility.json",
    ]
    documents = [json.loads((examples_dir / name).read_text()) for name in names]

    imported = cpms("locations", "import", write("locations.json", documents), "--json").json()

    assert imported["created"] == [document["id"] for document in documents]
    listed = cpms("locations", "list", "--json").json()
    assert listed["total"] == 3
    assert {item["id"] for item in listed["items"]} == set(imported["created"])


def test_a_list_file_with_one_invalid_location_imports_nothing_and_names_the_item(
    cpms: Cpms, examples_dir: Path, write: Callable[[str, Any], str]
) -> None:
    good = json.loads((examples_dir / "location_example.json").read_text())
    bad = dict(good, id="LOC2", evses=[])
    del bad["coordinates"]

    message = cpms("locations", "import", write("locations.json", [good, bad])).refusal()

    assert "[1]" in message
    assert "coordinates" in message
    assert cpms("locations", "list", "--json").json()["total"] == 0


def test_locations_list_prints_ids_and_names_and_pages(cpms: Cpms, loc1: None) -> None:
    listed = cpms("locations", "list", "--json").json()
    assert listed["total"] == 1
    assert listed["offset"] == 0
    assert [item["id"] for item in listed["items"]] == ["LOC1"]

    plain = cpms("locations", "list")
    assert plain.code == 0
    assert plain.out.splitlines() == ["LOC1\tGent Zuid"]
    assert "1 of 1" in plain.err

    past_the_end = cpms("locations", "list", "--offset", "1", "--json").json()
    assert past_the_end["items"] == []
    assert past_the_end["total"] == 1


def test_locations_update_takes_a_json_value_or_a_plain_string(cpms: Cpms, loc1: None) -> None:
    as_json = cpms("locations", "update", "LOC1", "--set", 'name="X"', "--json").json()
    assert as_json["name"] == "X"

    plain = cpms("locations", "update", "LOC1", "--set", "name=Gent Noord", "--json").json()
    assert plain["name"] == "Gent Noord"
    assert cpms("locations", "show", "LOC1", "--json").json()["name"] == "Gent Noord"

    unpublished = cpms("locations", "update", "LOC1", "--set", "publish=false", "--json").json()
    assert unpublished["publish"] is False
    assert len(unpublished["evses"]) == 2  # a field change leaves the EVSEs alone


def test_locations_update_refuses_a_value_that_does_not_validate_and_names_the_field(
    cpms: Cpms, loc1: None
) -> None:
    message = cpms("locations", "update", "LOC1", "--set", "country=Belgium").refusal()
    assert "country" in message
    assert cpms("locations", "show", "LOC1", "--json").json()["country"] == "BEL"


def test_locations_update_refuses_a_set_without_a_value(cpms: Cpms, loc1: None) -> None:
    assert "KEY=VALUE" in cpms("locations", "update", "LOC1", "--set", "name").refusal()


def test_showing_or_updating_an_unknown_location_is_refused(cpms: Cpms) -> None:
    assert "NOPE" in cpms("locations", "show", "NOPE").refusal()
    assert "NOPE" in cpms("locations", "update", "NOPE", "--set", "name=X").refusal()


def test_importing_a_missing_file_or_invalid_json_is_refused(cpms: Cpms, tmp_path: Path) -> None:
    missing = tmp_path / "absent.json"
    assert str(missing) in cpms("locations", "import", str(missing)).refusal()

    broken = tmp_path / "broken.json"
    broken.write_text('{"id": "LOC1",', encoding="utf-8")
    assert "JSON" in cpms("locations", "import", str(broken)).refusal()


def test_a_location_with_an_active_station_cannot_be_retired_until_the_station_is(
    cpms: Cpms, loc1: None
) -> None:
    assert cpms("stations", "create", "CP1", "--location", "LOC1").code == 0
    assert "CP1" in cpms("locations", "retire", "LOC1").refusal()

    assert cpms("stations", "retire", "CP1").code == 0
    retired = cpms("locations", "retire", "LOC1", "--json").json()
    assert retired["publish"] is False
    assert {evse["status"] for evse in retired["evses"]} == {"REMOVED"}


# Stations -----------------------------------------------------------------------------------


def test_a_station_created_with_a_password_shows_that_it_has_one_but_never_the_password(
    cpms: Cpms, loc1: None
) -> None:
    created = cpms("stations", "create", "CP1", "--location", "LOC1", "--password", PASSWORD)
    assert created.code == 0, created.err

    shown = cpms("stations", "show", "CP1", "--json")
    station = shown.json()
    assert station["id"] == "CP1"
    assert station["location_id"] == "LOC1"
    assert station["has_password"] is True
    assert station["registered_by"] == "operator"
    assert station["retired"] is False
    assert not [key for key in station if "hash" in key or key == "password"]
    assert PASSWORD not in shown.out
    assert "$" not in shown.out  # no hash of any common format either


def test_stations_update_no_password_removes_the_password(cpms: Cpms, loc1: None) -> None:
    assert cpms("stations", "create", "CP1", "--location", "LOC1", "--password", PASSWORD).code == 0

    updated = cpms("stations", "update", "CP1", "--no-password", "--json").json()

    assert updated["has_password"] is False
    assert cpms("stations", "show", "CP1", "--json").json()["has_password"] is False


def test_stations_create_refuses_a_duplicate_an_unknown_location_and_a_short_password(
    cpms: Cpms, loc1: None
) -> None:
    assert cpms("stations", "create", "CP1", "--location", "LOC1").code == 0

    assert "exists already" in cpms("stations", "create", "CP1", "--location", "LOC1").refusal()
    assert "NOWHERE" in cpms("stations", "create", "CP2", "--location", "NOWHERE").refusal()
    short = cpms("stations", "create", "CP3", "--location", "LOC1", "--password", "short")
    assert "password" in short.refusal()
    assert [s["id"] for s in cpms("stations", "list", "--json").json()["items"]] == ["CP1"]


def test_stations_create_refuses_an_id_that_cannot_be_a_websocket_path(
    cpms: Cpms, loc1: None
) -> None:
    assert "station id" in cpms("stations", "create", "CP:1", "--location", "LOC1").refusal()


def test_stations_list_filters_by_location(cpms: Cpms, loc1: None, examples_dir: Path) -> None:
    other = examples_dir / "location_example_uc4_limited_visibility.json"
    other_id = json.loads(other.read_text())["id"]
    assert cpms("locations", "import", str(other)).code == 0
    assert cpms("stations", "create", "CP1", "--location", "LOC1").code == 0
    assert cpms("stations", "create", "CP2", "--location", other_id).code == 0

    at_loc1 = cpms("stations", "list", "--location", "LOC1", "--json").json()

    assert [s["id"] for s in at_loc1["items"]] == ["CP1"]
    assert cpms("stations", "list", "--json").json()["total"] == 2


def test_retiring_a_station_removes_the_evses_it_served(cpms: Cpms, cp1_evse: str) -> None:
    retired = cpms("stations", "retire", "CP1", "--json").json()

    assert retired["retired"] is True
    assert retired["retired_at"] is not None
    assert cpms("evses", "show", "LOC1", cp1_evse, "--json").json()["status"] == "REMOVED"


def test_retiring_an_unknown_station_is_refused(cpms: Cpms) -> None:
    assert "GHOST" in cpms("stations", "retire", "GHOST").refusal()


# EVSEs and connectors -----------------------------------------------------------------------


def test_evses_add_wires_the_evse_to_its_station(cpms: Cpms, cp1_evse: str) -> None:
    evse = cpms("evses", "show", "LOC1", cp1_evse, "--json").json()

    assert evse["uid"] == "CP1-1"
    assert evse["evse_id"] == "NL*CPM*E0001*1"
    assert evse["station_id"] == "CP1"
    assert evse["ocpp_evse_id"] == 1
    location = cpms("locations", "show", "LOC1", "--json").json()
    assert [e["uid"] for e in location["evses"]] == ["3256", "3257", "CP1-1"]


def test_evses_add_refuses_a_used_uid_and_a_used_station_evse_number(
    cpms: Cpms, cp1_evse: str, write: Callable[[str, Any], str]
) -> None:
    same_uid = write("same.json", EVSE)
    assert "CP1-1" in cpms("evses", "add", "LOC1", same_uid).refusal()

    second = write("second.json", dict(EVSE, uid="CP1-2", evse_id="NL*CPM*E0001*2"))
    taken = cpms("evses", "add", "LOC1", second, "--station", "CP1", "--ocpp-evse-id", "1")
    assert "CP1-1" in taken.refusal()


def test_evses_add_refuses_an_invalid_evse_document_and_names_the_field(
    cpms: Cpms, loc1: None, write: Callable[[str, Any], str]
) -> None:
    broken = dict(EVSE, status="SPARKLING")
    message = cpms("evses", "add", "LOC1", write("broken.json", broken)).refusal()
    assert "status" in message


def test_evses_retire_sets_the_evse_removed_and_keeps_it(cpms: Cpms, cp1_evse: str) -> None:
    retired = cpms("evses", "retire", "LOC1", cp1_evse, "--json").json()

    assert retired["status"] == "REMOVED"
    assert cpms("evses", "show", "LOC1", cp1_evse, "--json").json()["status"] == "REMOVED"


def test_connectors_add_adds_a_connector_to_an_evse(
    cpms: Cpms, cp1_evse: str, write: Callable[[str, Any], str]
) -> None:
    added = cpms("connectors", "add", "LOC1", cp1_evse, write("c.json", CONNECTOR), "--json")

    assert added.json()["id"] == "2"
    evse = cpms("evses", "show", "LOC1", cp1_evse, "--json").json()
    assert [c["id"] for c in evse["connectors"]] == ["1", "2"]
    assert evse["connectors"][1]["power_type"] == "DC"


def test_connectors_update_changes_one_field(cpms: Cpms, loc1: None) -> None:
    changed = cpms(
        "connectors", "update", "LOC1", "3256", "2", "--set", "max_amperage=32", "--json"
    ).json()

    assert changed["max_amperage"] == 32
    assert changed["format"] == "SOCKET"
    shown = cpms("connectors", "show", "LOC1", "3256", "2", "--json").json()
    assert shown["max_amperage"] == 32


def test_connectors_tariffs_sets_and_clears_the_tariffs(
    cpms: Cpms, loc1: None, examples_dir: Path
) -> None:
    assert cpms("tariffs", "import", str(examples_dir / "tariff_1_simple_2hour.json")).code == 0

    priced = cpms("connectors", "tariffs", "LOC1", "3256", "1", "12", "--json").json()
    assert priced["tariff_ids"] == ["12"]
    shown = cpms("connectors", "show", "LOC1", "3256", "1", "--json").json()
    assert shown["tariff_ids"] == ["12"]

    cleared = cpms("connectors", "tariffs", "LOC1", "3256", "1", "--json").json()
    assert not cleared.get("tariff_ids")


def test_connectors_remove_removes_one_of_two_connectors(cpms: Cpms, loc1: None) -> None:
    removed = cpms("connectors", "remove", "LOC1", "3256", "2", "--json").json()

    assert removed == {"removed": "LOC1/3256/2"}
    evse = cpms("evses", "show", "LOC1", "3256", "--json").json()
    assert [c["id"] for c in evse["connectors"]] == ["1"]


def test_connectors_refuse_an_unknown_tariff_and_removing_the_last_connector(
    cpms: Cpms, cp1_evse: str
) -> None:
    assert (
        "NO-SUCH-TARIFF"
        in cpms("connectors", "tariffs", "LOC1", cp1_evse, "1", "NO-SUCH-TARIFF").refusal()
    )
    assert "at least one" in cpms("connectors", "remove", "LOC1", cp1_evse, "1").refusal()
    assert "9" in cpms("connectors", "show", "LOC1", cp1_evse, "9").refusal()


# Tariffs ------------------------------------------------------------------------------------


def test_every_valid_official_tariff_example_imports(cpms: Cpms, examples_dir: Path) -> None:
    files = official_tariffs(examples_dir)
    assert len(files) == 17
    ids = set()
    for path in files:
        outcome = cpms("tariffs", "import", str(path), "--json")
        assert outcome.code == 0, f"{path.name}: {outcome.err}"
        ids.add(json.loads(path.read_text())["id"])

    listed = cpms("tariffs", "list", "--json", "--limit", "50").json()
    assert listed["total"] == len(ids) == 11  # several examples share an id: later ones replace
    assert {item["id"] for item in listed["items"]} == ids
    last_20 = json.loads((examples_dir / "tariff_18_reservation_with_expire_time.json").read_text())
    shown = cpms("tariffs", "show", "20", "--json").json()
    assert shown["elements"] == last_20["elements"]


def test_a_list_file_of_all_valid_official_tariff_examples_imports(
    cpms: Cpms, examples_dir: Path, write: Callable[[str, Any], str]
) -> None:
    documents = [json.loads(path.read_text()) for path in official_tariffs(examples_dir)]

    imported = cpms("tariffs", "import", write("tariffs.json", documents), "--json").json()

    assert set(imported["created"]) | set(imported["updated"]) == {d["id"] for d in documents}
    assert cpms("tariffs", "list", "--json").json()["total"] == 11
    last_20 = next(d for d in reversed(documents) if d["id"] == "20")  # the list's order wins
    assert cpms("tariffs", "show", "20", "--json").json()["elements"] == last_20["elements"]


def test_the_official_tariff_put_example_is_refused_for_its_missing_last_updated(
    cpms: Cpms, examples_dir: Path
) -> None:
    message = cpms("tariffs", "import", str(examples_dir / "tariff_put_example.json")).refusal()

    assert "last_updated" in message
    assert cpms("tariffs", "list", "--json").json()["total"] == 0


def test_a_retired_tariff_leaves_the_list_and_every_connector(
    cpms: Cpms, loc1: None, examples_dir: Path
) -> None:
    # LOC1's EVSE 3257 connector 1 lists tariff "12", 3256 connector 2 lists "13".
    for name in ("tariff_1_simple_2hour.json", "tariff_3_alt_url.json"):
        assert cpms("tariffs", "import", str(examples_dir / name)).code == 0
    before = cpms("connectors", "show", "LOC1", "3257", "1", "--json").json()
    assert before["tariff_ids"] == ["12"]

    retired = cpms("tariffs", "retire", "12", "--json")

    assert retired.code == 0, retired.err
    assert [t["id"] for t in cpms("tariffs", "list", "--json").json()["items"]] == ["13"]
    everything = cpms("tariffs", "list", "--all", "--json").json()["items"]
    assert sorted(t["id"] for t in everything) == ["12", "13"]
    after = cpms("connectors", "show", "LOC1", "3257", "1", "--json").json()
    assert not after.get("tariff_ids")
    untouched = cpms("connectors", "show", "LOC1", "3256", "2", "--json").json()
    assert untouched["tariff_ids"] == ["13"]


def test_retiring_an_unknown_tariff_is_refused(cpms: Cpms) -> None:
    assert "99" in cpms("tariffs", "retire", "99").refusal()


# Tokens -------------------------------------------------------------------------------------


def test_a_token_can_be_created_shown_changed_and_retired(cpms: Cpms) -> None:
    created = cpms("tokens", "create", "04A1B2C3", "--whitelist", "ALLOWED", "--json").json()
    assert created["uid"] == "04A1B2C3"
    assert created["type"] == "RFID"
    assert created["whitelist"] == "ALLOWED"
    assert created["valid"] is True
    assert (created["country_code"], created["party_id"]) == ("NL", "CPM")

    shown = cpms("tokens", "show", "04A1B2C3", "--json").json()
    assert shown == created

    changed = cpms("tokens", "update", "04A1B2C3", "--set", "valid=false", "--json").json()
    assert changed["valid"] is False
    assert cpms("tokens", "update", "04A1B2C3", "--set", "valid=true").code == 0

    retired = cpms("tokens", "retire", "04A1B2C3", "--json").json()
    assert retired["valid"] is False
    listed = cpms("tokens", "list", "--json").json()
    assert [(t["uid"], t["valid"]) for t in listed["items"]] == [("04A1B2C3", False)]


def test_tokens_are_refused_when_duplicate_unknown_or_invalid(cpms: Cpms) -> None:
    assert cpms("tokens", "create", "04A1B2C3").code == 0

    assert "exists already" in cpms("tokens", "create", "04A1B2C3").refusal()
    assert "DEADBEEF" in cpms("tokens", "show", "DEADBEEF").refusal()
    assert "whitelist" in cpms("tokens", "create", "0BAD", "--whitelist", "SOMETIMES").refusal()
    assert "valid" in cpms("tokens", "update", "04A1B2C3", "--set", "valid=maybe").refusal()
    assert cpms("tokens", "show", "04A1B2C3", "--json").json()["valid"] is True


def test_tokens_use_the_configured_party(cpms: Cpms) -> None:
    created = cpms(
        "tokens", "create", "04A1B2C3", "--country-code", "BE", "--party-id", "BEC", "--json"
    ).json()
    assert (created["country_code"], created["party_id"]) == ("BE", "BEC")
    assert "04A1B2C3" in cpms("tokens", "show", "04A1B2C3").refusal()  # not ours as NL*CPM


# The database schema ------------------------------------------------------------------------


@pytest.mark.empty_database
def test_db_upgrade_brings_a_fresh_database_to_the_head_revision(cpms: Cpms) -> None:
    upgraded = cpms("db", "upgrade", "--json").json()
    assert upgraded == {"revision": head_revision(), "head": head_revision()}

    assert cpms("db", "status", "--json").json() == upgraded
    plain = cpms("db", "status")
    assert plain.code == 0
    assert head_revision() in plain.out


@pytest.mark.empty_database
def test_db_status_reports_an_empty_database_without_changing_it(cpms: Cpms) -> None:
    status = cpms("db", "status", "--json").json()
    assert status == {"revision": None, "head": head_revision()}


@pytest.mark.empty_database
def test_db_upgrade_works_where_servers_may_not_migrate(
    cpms: Cpms, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CPMS_AUTO_MIGRATE", "false")
    upgraded = cpms("db", "upgrade", "--json")
    assert upgraded.json() == {"revision": head_revision(), "head": head_revision()}


@pytest.mark.empty_database
def test_a_verb_on_an_empty_database_refuses_when_migrating_is_not_allowed(
    cpms: Cpms, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CPMS_AUTO_MIGRATE", "false")
    refused = cpms("locations", "list")
    assert refused.code == 2
    assert "CPMS_AUTO_MIGRATE" in refused.err


# Usage and configuration errors (exit 2) ----------------------------------------------------


def test_a_bad_database_url_flag_exits_2_and_names_the_flag(cpms: Cpms) -> None:
    outcome = cpms("db", "status", "--database-url", "mysql://x")
    assert outcome.code == 2
    assert outcome.err.startswith("cpms: ")
    assert "--database-url" in outcome.err
    assert "postgresql" in outcome.err.lower()


def test_a_bad_database_url_variable_exits_2_and_names_the_variable(
    cpms: Cpms, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CPMS_DATABASE_URL", "mysql://x")
    outcome = cpms("locations", "list")
    assert outcome.code == 2
    assert "CPMS_DATABASE_URL" in outcome.err


def test_a_bad_party_id_exits_2(cpms: Cpms) -> None:
    outcome = cpms("tokens", "create", "04A1B2C3", "--party-id", "toolong")
    assert outcome.code == 2
    assert "--party-id" in outcome.err


@pytest.mark.parametrize(
    "argv",
    [[], ["locations"], ["locations", "explode"], ["stations", "create", "CP1"], ["frobnicate"]],
    ids=["nothing", "no verb", "unknown verb", "missing --location", "unknown command"],
)
def test_incomplete_or_unknown_commands_exit_2_with_usage(cpms: Cpms, argv: list[str]) -> None:
    outcome = cpms(*argv)
    assert outcome.code == 2
    assert "usage: cpms" in outcome.err


# Help ----------------------------------------------------------------------------------------


def test_serve_help_names_every_setting_with_its_flag_and_variable(cpms: Cpms) -> None:
    shown = cpms("serve", "--help")
    assert shown.code == 0
    for option in OPTIONS:
        assert option.env in shown.out, option.env
        assert option.flag in shown.out, option.flag


def test_verb_help_names_the_database_url_variable(cpms: Cpms) -> None:
    shown = cpms("locations", "import", "--help")
    assert shown.code == 0
    assert "CPMS_DATABASE_URL" in shown.out
    assert "--database-url" in shown.out


def test_top_level_help_names_the_setting_variables(cpms: Cpms) -> None:
    shown = cpms("--help")
    assert shown.code == 0
    for variable in ("CPMS_DATABASE_URL", "CPMS_OCPP_PORT", "CPMS_STATION_ADMISSION"):
        assert variable in shown.out


def test_top_level_help_lists_the_commands_and_exit_codes(cpms: Cpms) -> None:
    shown = cpms("--help")
    assert shown.code == 0
    commands = ("serve", "db", "locations", "evses", "connectors", "stations", "tariffs", "tokens")
    for command in commands:
        assert command in shown.out
    assert "Exit codes" in shown.out


# The real process ---------------------------------------------------------------------------


def test_the_real_command_imports_from_stdin_and_shows_json(
    cpms_process: Callable[..., Outcome], examples_dir: Path
) -> None:
    document = (examples_dir / "location_example.json").read_text()

    imported = cpms_process("locations", "import", "-", "--json", stdin=document)
    assert imported.json() == {"created": ["LOC1"], "updated": []}

    shown = cpms_process("locations", "show", "LOC1", "--json")
    assert shown.json()["id"] == "LOC1"


def test_the_real_command_reads_a_station_password_from_stdin(
    cpms_process: Callable[..., Outcome], examples_dir: Path
) -> None:
    example = str(examples_dir / "location_example.json")
    assert cpms_process("locations", "import", example).code == 0

    created = cpms_process(
        "stations", "create", "CP1", "--location", "LOC1", "--password-stdin", "--json",
        stdin=PASSWORD + "\n",
    )  # fmt: skip

    assert created.json()["has_password"] is True
    assert PASSWORD not in created.out + created.err


def test_the_real_command_exits_1_with_a_cpms_message_when_refused(
    cpms_process: Callable[..., Outcome],
) -> None:
    refused = cpms_process("locations", "show", "NOPE")
    assert refused.code == 1
    assert refused.out == ""
    assert refused.err.strip().splitlines()[-1] == "cpms: location 'NOPE' not found"
    assert "Traceback" not in refused.err


def test_the_real_command_prints_only_its_one_line_message_on_stderr_when_refused(
    cpms_process: Callable[..., Outcome],
) -> None:
    refused = cpms_process("locations", "show", "NOPE")
    assert refused.code == 1
    assert refused.err == "cpms: location 'NOPE' not found\n"


def test_the_real_command_exits_2_for_a_bad_database_url(
    cpms_process: Callable[..., Outcome],
) -> None:
    outcome = cpms_process("db", "status", "--database-url", "mysql://x")
    assert outcome.code == 2
    lines = outcome.err.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("cpms: configuration error: --database-url='mysql://x'")


def test_the_real_command_help_names_the_settings(
    cpms_process: Callable[..., Outcome],
) -> None:
    shown = cpms_process("serve", "--help")
    assert shown.code == 0
    for variable in ("CPMS_DATABASE_URL", "CPMS_OCPP_PORT", "CPMS_STATION_ADMISSION"):
        assert variable in shown.out
