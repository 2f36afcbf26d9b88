"""The benchmark harness (bench/) imports, parses its flags and drives a real server.

Smoke tests only, fast and without timing asserts: each scenario module imports and its
argument parser reads ``--quick``; the pure helpers (percentiles, the session check of the
reconnect storm, OCPI documents) give what they promise; and the load generator's own
websocket client (``bench.load.Link``) and generator (``bench.load.generate``) talk to the
limit server's handler on loopback. The figures themselves are the benchmarks' business.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from websockets.asyncio.server import serve

# bench/ is not an installed package: it runs from the checkout (`python -m bench`), which
# `python -m pytest` puts on the path and the `pytest` script does not.
_CHECKOUT = str(Path(__file__).resolve().parents[2])
if _CHECKOUT not in sys.path:
    sys.path.insert(0, _CHECKOUT)

from bench import limit_server  # noqa: E402
from bench.load import LoadSpec, connect, generate, status  # noqa: E402
from bench.measure import percentile, sample_process, summarize  # noqa: E402
from bench.ocpi import location_document  # noqa: E402
from bench.reconnect_storm import sessions_check  # noqa: E402
from bench.report import Table, judge  # noqa: E402

SCENARIOS = (
    "bench.gateway_throughput",
    "bench.meter_values",
    "bench.idle_capacity",
    "bench.reconnect_storm",
    "bench.ocpi",
)


@pytest.mark.parametrize("name", SCENARIOS)
def test_every_scenario_imports_and_reads_its_quick_flag(name: str) -> None:
    """A scenario module parses ``--quick`` and ``--only`` and has run/tables/main."""
    module = importlib.import_module(name)
    args = module.build_parser().parse_args(["--quick", "--only", "cpms"])
    assert args.quick is True
    assert args.only == ["cpms"]
    assert callable(module.run)
    assert callable(module.tables)
    assert callable(module.main)


def test_the_runner_and_the_servers_parse_their_flags() -> None:
    """``python -m bench``, the baselines and the generator accept their documented flags."""
    runner = importlib.import_module("bench.__main__")
    assert runner.build_parser().parse_args(["--full"]).full is True
    for name in ("bench.limit_server", "bench.ocpp_lib_server"):
        assert importlib.import_module(name).build_parser().parse_args(["--port", "0"]).port == 0
    load = importlib.import_module("bench.load")
    args = load.build_parser().parse_args(["--url", "ws://x/ocpp", "--workload", "meter"])
    spec = load.spec_from_args(args)
    assert spec.workload == "meter"
    assert spec.url == "ws://x/ocpp"


def test_a_load_spec_refuses_what_it_cannot_run() -> None:
    """Unknown workloads, empty fleets and impossible shares are refused at once."""
    with pytest.raises(ValueError, match="workload"):
        LoadSpec(url="ws://x", workload="nap")
    with pytest.raises(ValueError, match="stations"):
        LoadSpec(url="ws://x", stations=0)
    with pytest.raises(ValueError, match="status_share"):
        LoadSpec(url="ws://x", status_share=1.5)


def test_percentiles_and_summaries_use_the_nearest_rank() -> None:
    """p50 and p99 of 1..100 ms are 50 and 99 ms; an empty run summarises to nothing."""
    values = [x / 1000 for x in range(1, 101)]
    assert percentile(sorted(values), 0.5) == 0.05
    summary = summarize(values)
    assert (summary.count, summary.p50_ms, summary.p99_ms, summary.max_ms) == (100, 50, 99, 100)
    assert summarize([]).as_dict() == {"count": 0, "p50_ms": None, "p99_ms": None, "max_ms": None}
    assert judge(None, 1.0) == "n/a"
    assert judge(0.2, 0.3) == "missed"
    assert judge(40.0, 50.0, at_least=False) == "met"
    assert sample_process(2**22 + 12345) is None  # no such process


def test_the_storm_check_tells_lost_doubled_and_open_sessions_apart() -> None:
    """Sessions are compared with the transaction ids each station was told."""
    told = {"S1": [1, 2], "S2": [3, 4]}
    rows = [
        ("S1", "1", "COMPLETED"),
        ("S1", "2", "ACTIVE"),  # its Stop was answered, yet still open
        ("S2", "3", "COMPLETED"),
        ("S2", "3", "COMPLETED"),  # a second session for one transaction
        ("S2", "9", "COMPLETED"),  # a session no station started
    ]  # transaction 4 is missing: lost
    check = sessions_check(rows, told)
    assert check["sessions_lost"] == 1
    assert check["sessions_doubled"] == 2
    assert check["sessions_expected"] == 4
    assert check["sessions_not_completed"] == 1
    unsettled = sessions_check(rows, told, unfinished=["S1"])  # S1 had not finished its replay
    assert unsettled["sessions_not_completed"] == 0
    assert unsettled["sessions_unsettled"] == 1
    intact = [(station, str(tx), "COMPLETED") for station, txs in told.items() for tx in txs]
    assert sessions_check(intact, told)["sessions_doubled"] == 0


def test_tables_align_and_location_documents_have_their_evses() -> None:
    """A table renders its title, header and rows; a bench location has unique EVSE uids."""
    table = Table("Title", ("server", "msg/s"))
    table.add("limit", "1,000")
    table.note("a note")
    text = table.render()
    assert text.splitlines()[0] == "Title"
    assert "limit   1,000" in text  # aligned under "server"
    assert text.endswith("a note")
    document = location_document(7, 3)
    assert document["id"] == "BENCH00007"
    assert document["publish"] is True
    assert [e["uid"] for e in document["evses"]] == ["BENCH00007-1", "BENCH00007-2", "BENCH00007-3"]


@pytest.fixture
async def limit_url() -> AsyncIterator[str]:
    """The limit server's handler on a free loopback port (in this process)."""
    async with serve(
        limit_server._station,
        "127.0.0.1",
        0,
        subprotocols=["ocpp1.6"],  # type: ignore[list-item]
    ) as server:
        yield f"ws://127.0.0.1:{server.sockets[0].getsockname()[1]}/ocpp"


async def test_a_link_frames_calls_and_reads_their_results(limit_url: str) -> None:
    """The generator's own websocket client gets a CALLRESULT for its CALL, with a latency."""
    link = await connect(limit_url, "UNIT-1")
    try:
        frame, latency = await link.call("Heartbeat", {})
        assert frame[0] == 3
        assert "currentTime" in frame[2]
        assert latency > 0
        frame, _ = await link.call("StatusNotification", status(1, "Available"))
        assert frame[0] == 3
        assert frame[2] == {}
    finally:
        link.close()
    await link.closed


@pytest.mark.parametrize("workload", ["mix", "meter"])
async def test_the_generator_prepares_its_stations_and_measures(
    limit_url: str, workload: str
) -> None:
    """A tiny run boots every station, measures answered CALLs and counts no errors."""
    spec = LoadSpec(url=limit_url, stations=3, workload=workload, duration=0.3, warmup=0.05)
    result = await generate(spec)
    assert result["ready"] == 3
    assert result["setup_errors"] == {}
    assert result["errors"] == {}
    assert result["calls"] > 0
    assert result["acked"]["BootNotification"] == 3
    action = "MeterValues" if workload == "meter" else "Heartbeat"
    assert action in result["by_action"]
