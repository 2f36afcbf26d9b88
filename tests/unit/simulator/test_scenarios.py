"""Scenario inputs (``simulator.scenarios``): token lists, generator parameters, script files.

``parse_tokens`` reads ``A,B:3,C``; ``AutoTransactions`` refuses parameters that cannot run;
``load_script`` reads a scenario file and, when a step is wrong, says which step of which file
and what is wrong with it; ``Script.for_station`` picks the steps of one station.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from simulator.scenarios import (
    VERBS,
    AutoTransactions,
    Script,
    ScriptError,
    Step,
    load_script,
    parse_tokens,
)

# Tokens


def test_tokens_with_and_without_weights() -> None:
    assert parse_tokens("A,B:3,C") == (("A", 1.0), ("B", 3.0), ("C", 1.0))
    assert parse_tokens(" A , B:0.5 ,") == (("A", 1.0), ("B", 0.5))
    assert parse_tokens("ONLY") == (("ONLY", 1.0),)


@pytest.mark.parametrize("text", ["", " , ,", ","])
def test_no_tokens_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match="no tokens"):
        parse_tokens(text)


def test_a_weight_that_is_not_a_number_names_the_token() -> None:
    with pytest.raises(ValueError, match=r"'heavy'.*'B'"):
        parse_tokens("A,B:heavy")


# The generator's parameters


def test_generator_defaults_are_valid() -> None:
    generator = AutoTransactions()
    assert generator.tokens
    assert generator.mean_arrival_gap > 0


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        pytest.param({"tokens": ()}, "tokens", id="no-tokens"),
        pytest.param({"tokens": (("A", 1.0), ("B", 0.0))}, "tokens", id="zero-weight"),
        pytest.param({"tokens": (("A", -1.0),)}, "tokens", id="negative-weight"),
        pytest.param({"mean_arrival_gap": 0}, "mean_arrival_gap", id="zero-gap"),
        pytest.param({"mean_arrival_gap": -5}, "mean_arrival_gap", id="negative-gap"),
        pytest.param({"duration": (0, 10)}, "duration", id="zero-duration"),
        pytest.param({"duration": (20, 10)}, "duration", id="min-above-max"),
        pytest.param({"start_probability": 1.5}, "start_probability", id="probability-high"),
        pytest.param({"start_probability": -0.1}, "start_probability", id="probability-low"),
    ],
)
def test_generator_refuses_parameters_that_cannot_run(
    changes: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        AutoTransactions(**changes)


def test_generator_takes_edge_values() -> None:
    generator = AutoTransactions(duration=(5, 5), start_probability=0.0)
    assert generator.duration == (5, 5)


# Script files


def _write(tmp_path: Path, doc: Any) -> Path:
    path = tmp_path / "scenario.json"
    path.write_text(doc if isinstance(doc, str) else json.dumps(doc), encoding="utf-8")
    return path


def test_a_script_is_read_with_its_defaults(tmp_path: Path) -> None:
    doc = {
        "steps": [
            {"at": 0, "do": "plug", "outlet": 2, "ev": "sedan", "soc": 40},
            {"at": 1.5, "station": "SIM-00001", "do": "start", "token": "DEMO0001"},
            {"do": "offline"},
            {"at": 80, "do": "charge", "token": "DEMO0002", "duration": 60},
        ]
    }
    script = load_script(_write(tmp_path, doc))
    assert script.steps == (
        Step(0.0, "*", "plug", {"outlet": 2, "ev": "sedan", "soc": 40}),
        Step(1.5, "SIM-00001", "start", {"token": "DEMO0001"}),
        Step(0.0, "*", "offline", {}),
        Step(80.0, "*", "charge", {"token": "DEMO0002", "duration": 60}),
    )


def test_every_verb_is_accepted(tmp_path: Path) -> None:
    steps = [{"do": verb, "token": "T"} for verb in VERBS]
    assert [s.do for s in load_script(_write(tmp_path, {"steps": steps})).steps] == list(VERBS)


@pytest.mark.parametrize(
    ("step", "words"),
    [
        pytest.param("plug", ["a step is an object"], id="not-object"),
        pytest.param({"at": 1}, ["'do'", "None"], id="no-verb"),
        pytest.param({"do": "dance"}, ["'do'", "'dance'"], id="unknown-verb"),
        pytest.param({"do": "plug", "at": -1}, ["'at'", "-1"], id="negative-time"),
        pytest.param({"do": "plug", "at": "soon"}, ["'at'", "'soon'"], id="time-not-number"),
        pytest.param({"do": "plug", "at": True}, ["'at'", "True"], id="time-boolean"),
        pytest.param({"do": "start"}, ["'start'", "'token'"], id="start-without-token"),
        pytest.param({"do": "charge", "token": 7}, ["'charge'", "'token'"], id="token-number"),
        pytest.param({"do": "authorize"}, ["'authorize'", "'token'"], id="authorize-no-token"),
        pytest.param({"do": "plug", "ev": "tractor"}, ["'ev'", "'tractor'"], id="unknown-ev"),
        pytest.param({"do": "plug", "outlet": 0}, ["'outlet'", "0"], id="outlet-zero"),
        pytest.param({"do": "plug", "outlet": "1"}, ["'outlet'", "'1'"], id="outlet-string"),
    ],
)
def test_a_bad_step_is_named_by_file_and_index(tmp_path: Path, step: Any, words: list[str]) -> None:
    good = {"at": 0, "do": "plug"}
    path = _write(tmp_path, {"steps": [good, good, step]})
    with pytest.raises(ScriptError) as raised:
        load_script(path)
    message = str(raised.value)
    assert message.startswith(f"{path}: steps[2]:")
    for word in words:
        assert word in message


@pytest.mark.parametrize(
    "doc",
    [
        pytest.param({}, id="no-steps"),
        pytest.param({"steps": {"do": "plug"}}, id="steps-not-list"),
        pytest.param([{"do": "plug"}], id="a-list"),
    ],
)
def test_a_document_without_a_steps_list_is_refused(tmp_path: Path, doc: Any) -> None:
    path = _write(tmp_path, doc)
    with pytest.raises(ScriptError, match="'steps' list") as raised:
        load_script(path)
    assert str(raised.value).startswith(str(path))


def test_a_file_that_is_not_json_or_not_there_is_named(tmp_path: Path) -> None:
    broken = _write(tmp_path, '{"steps": [')
    with pytest.raises(ScriptError, match="not JSON") as raised:
        load_script(broken)
    assert str(raised.value).startswith(str(broken))
    missing = tmp_path / "none.json"
    with pytest.raises(ScriptError, match="cannot read") as raised:
        load_script(missing)
    assert str(raised.value).startswith(str(missing))


def test_script_errors_are_value_errors() -> None:
    assert issubclass(ScriptError, ValueError)


# Steps of one station


def test_for_station_keeps_the_steps_for_everyone_and_for_that_station() -> None:
    everyone = Step(0.0, "*", "plug", {})
    mine = Step(1.0, "SIM-00001", "start", {"token": "T"})
    theirs = Step(2.0, "SIM-00002", "stop", {})
    later_everyone = Step(3.0, "*", "unplug", {})
    script = Script((everyone, mine, theirs, later_everyone))
    assert script.for_station("SIM-00001") == [everyone, mine, later_everyone]
    assert script.for_station("SIM-00002") == [everyone, theirs, later_everyone]
    assert script.for_station("SIM-00003") == [everyone, later_everyone]
    assert Script(()).for_station("SIM-00001") == []


@pytest.mark.parametrize(
    "step",
    [
        pytest.param({"do": "charge", "token": "T", "duration": "long"}, id="duration-text"),
        pytest.param({"do": "charge", "token": "T", "duration": -5}, id="duration-negative"),
        pytest.param({"do": "plug", "ev": "city", "soc": 150}, id="soc-above-100"),
    ],
)
def test_a_step_that_could_not_run_is_refused_when_loaded(tmp_path: Path, step: Any) -> None:
    with pytest.raises(ScriptError, match=r"steps\[0\]"):
        load_script(_write(tmp_path, {"steps": [step]}))
