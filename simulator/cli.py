"""``cpms simulate`` (also ``python -m simulator``): run a fleet of simulated stations.

Prints live progress on stderr while it runs and a table of figures at the end (``--json``: one
JSON object on stdout instead). Ctrl+C ends the run early; stations still finish their
transactions and deliver what they queued. Exit status: 0 when the run made no errors, 1 when
it did (connections refused, CALLERRORs, timeouts), 2 for bad arguments.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import logging
import resource
import signal
import sys
from collections.abc import Callable, Sequence
from typing import Any

from simulator.faults import Faults
from simulator.fleet import VERSIONS, Fleet, FleetOptions, Progress, Scenario
from simulator.scenarios import AutoTransactions, ScriptError, load_script, parse_tokens
from simulator.templates import Template, TemplateError, load_template, shipped_templates

__all__ = ["add_arguments", "build_parser", "fleet_options", "main", "run"]

DESCRIPTION = (
    "Run a fleet of simulated OCPP 1.6J / 2.0.1 charging stations against a CSMS: they boot, "
    "heartbeat, and drivers arrive, authorize, charge and leave. Live progress goes to stderr, "
    "the figures (messages by action, ack latency p50/p99, errors, sessions, energy) to stdout."
)


def _range(text: str) -> tuple[float, float]:
    low, _, high = text.partition("-")
    try:
        pair = (float(low), float(high or low))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not SECONDS or MIN-MAX") from None
    if not 0 < pair[0] <= pair[1]:
        raise argparse.ArgumentTypeError(f"{text!r}: need 0 < MIN <= MAX")
    return pair


def _number(
    kind: Callable[[str], float], fits: Callable[[float], bool], wanted: str
) -> Callable[[str], Any]:
    """An argparse type: ``kind`` of the text, refused with ``wanted`` unless it ``fits``."""

    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {wanted}") from None
        if not fits(value):
            raise argparse.ArgumentTypeError(f"{text} is not {wanted}")
        return value

    return parse


_share = _number(float, lambda v: 0.0 <= v <= 1.0, "a share between 0 and 1")
_positive = _number(float, lambda v: v >= 0, "a number of seconds, 0 or more")
_count = _number(int, lambda v: v >= 1, "a whole number of at least 1")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The fleet's options, for this module's parser and for ``cpms simulate``."""
    target = parser.add_argument_group("target")
    target.add_argument(
        "--url",
        default="ws://127.0.0.1:9000/ocpp",
        help="the CSMS's station endpoint; the station id is appended (default: %(default)s)",
    )
    target.add_argument(
        "--password", help="HTTP Basic password every station sends (OCPP Security Profile 1)"
    )
    target.add_argument(
        "--timeout",
        type=_positive,
        default=30.0,
        metavar="S",
        help="seconds to wait for an answer or a connection (default: 30)",
    )

    fleet = parser.add_argument_group("fleet")
    fleet.add_argument(
        "--stations", type=_count, default=10, metavar="N", help="number of stations (default: 10)"
    )
    fleet.add_argument(
        "--ocpp",
        choices=VERSIONS,
        default="1.6",
        help="OCPP version of the stations; mix: every other one (default: 1.6)",
    )
    fleet.add_argument(
        "--template",
        action="append",
        metavar="NAME|FILE",
        help="station model: a shipped template name or a JSON file; repeat to "
        f"mix (default: all shipped: {', '.join(shipped_templates())})",
    )
    fleet.add_argument("--prefix", default="SIM-", help="station id prefix (default: SIM-)")
    fleet.add_argument(
        "--first",
        type=_count,
        default=1,
        metavar="K",
        help="number of the first station (default: 1): SIM-00001",
    )
    fleet.add_argument(
        "--duration",
        type=_positive,
        default=60.0,
        metavar="S",
        help="seconds to run once all stations started; 0: until Ctrl+C (default: 60)",
    )
    fleet.add_argument(
        "--ramp",
        type=_positive,
        metavar="S",
        help="spread station starts over S seconds (default: 10 ms per station, at most 30 s)",
    )
    fleet.add_argument(
        "--seed",
        type=int,
        default=1,
        metavar="K",
        help="seed of every random choice: the same seed, the same run (default: 1)",
    )
    fleet.add_argument(
        "--meter-interval",
        type=_positive,
        metavar="S",
        help="seconds between meter samples, overriding the templates",
    )

    drivers = parser.add_argument_group("drivers (automatic transactions)")
    drivers.add_argument(
        "--tokens",
        default="SIMTOKEN0001",
        metavar="A,B:W,...",
        help="tokens drivers present, with optional weights (default: SIMTOKEN0001)",
    )
    drivers.add_argument(
        "--arrival-gap",
        type=_positive,
        default=60.0,
        metavar="S",
        help="mean seconds between drivers at an outlet (default: 60)",
    )
    drivers.add_argument(
        "--charge-time",
        type=_range,
        default=(120.0, 600.0),
        metavar="MIN-MAX",
        help="seconds a driver charges (default: 120-600)",
    )
    drivers.add_argument(
        "--start-probability",
        type=_share,
        default=1.0,
        metavar="P",
        help="share of drivers who start charging (default: 1)",
    )
    drivers.add_argument(
        "--scenario",
        metavar="FILE",
        help="run a scripted scenario (JSON steps) instead of random drivers",
    )
    drivers.add_argument(
        "--no-transactions",
        action="store_true",
        help="no drivers: stations only boot, report and heartbeat",
    )

    faults = parser.add_argument_group("faults")
    faults.add_argument(
        "--duplicate-rate",
        type=_share,
        default=0.0,
        metavar="P",
        help="share of transaction messages sent twice",
    )
    faults.add_argument(
        "--malformed-rate",
        type=_share,
        default=0.0,
        metavar="P",
        help="share of CALLs preceded by a malformed frame",
    )
    faults.add_argument(
        "--reply-delay",
        type=_positive,
        default=0.0,
        metavar="S",
        help="seconds before answering the CSMS",
    )
    faults.add_argument(
        "--missing-reply-rate",
        type=_share,
        default=0.0,
        metavar="P",
        help="share of CSMS calls never answered",
    )
    faults.add_argument(
        "--clock-skew",
        type=float,
        default=0.0,
        metavar="S",
        help="seconds the stations' clocks are ahead (negative: behind)",
    )
    faults.add_argument(
        "--out-of-order",
        action="store_true",
        help="replay queued transaction messages partly out of order",
    )

    output = parser.add_argument_group("output")
    output.add_argument(
        "--json",
        action="store_true",
        help="print the figures as one JSON object instead of a table",
    )
    output.add_argument("--quiet", action="store_true", help="no live progress on stderr")
    output.add_argument("--progress-every", type=_positive, default=2.0, metavar="S",
                        help="seconds between progress lines (default: 2)")  # fmt: skip


def build_parser(prog: str = "python -m simulator") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description=DESCRIPTION)
    add_arguments(parser)
    return parser


def _templates(names: Sequence[str] | None, meter_interval: float | None) -> tuple[Template, ...]:
    shipped = shipped_templates()
    chosen: list[Template] = []
    for name in names or list(shipped):
        if name in shipped:
            chosen.append(shipped[name])
        elif name.endswith(".json"):
            chosen.append(load_template(name))
        else:
            raise TemplateError(
                f"no template {name!r}: one of {', '.join(shipped)} or a .json file"
            )
    if meter_interval:
        chosen = [dataclasses.replace(t, meter_interval=meter_interval) for t in chosen]
    return tuple(chosen)


def fleet_options(args: argparse.Namespace) -> FleetOptions:
    """The run the arguments describe; raises ``ValueError`` saying which one is wrong."""
    scenario: Scenario | None = None
    if args.scenario:
        scenario = load_script(args.scenario)
    elif not args.no_transactions:
        scenario = AutoTransactions(
            tokens=parse_tokens(args.tokens),
            mean_arrival_gap=args.arrival_gap or 60.0,
            duration=args.charge_time,
            start_probability=args.start_probability,
        )
    faults = Faults(
        duplicate_rate=args.duplicate_rate,
        malformed_rate=args.malformed_rate,
        reply_delay=args.reply_delay,
        missing_reply_rate=args.missing_reply_rate,
        clock_skew=args.clock_skew,
        out_of_order=args.out_of_order,
    )
    return FleetOptions(
        url=args.url,
        stations=args.stations,
        ocpp=args.ocpp,
        templates=_templates(args.template, args.meter_interval),
        duration=args.duration or None,
        seed=args.seed,
        id_prefix=args.prefix,
        first_number=args.first,
        password=args.password,
        ramp=args.ramp,
        scenario=scenario,
        faults=faults,
        call_timeout=args.timeout or 30.0,
        remote_visit=args.charge_time,
    )


def raise_open_files_limit() -> None:
    """A thousand stations need a thousand sockets: lift the soft limit to the hard one."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


async def run(args: argparse.Namespace) -> int:
    """Run the fleet the arguments describe; print progress and figures; return the exit code."""
    options = fleet_options(args)
    raise_open_files_limit()
    fleet = Fleet(options)
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, fleet.stop)

    def progress(p: Progress) -> None:
        print(p.line(), file=sys.stderr, flush=True)

    if not args.quiet:
        versions = "mixed 1.6/2.0.1" if options.ocpp == "mix" else f"OCPP {options.ocpp}"
        until = f"{options.duration:g} s" if options.duration else "Ctrl+C"
        print(
            f"simulating {options.stations} {versions} stations against {options.url} "
            f"until {until} (seed {options.seed})",
            file=sys.stderr,
            flush=True,
        )
    try:
        report = await fleet.run(
            on_progress=None if args.quiet else progress, progress_every=args.progress_every
        )
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)
    if args.json:
        print(json.dumps(report.as_dict()))
    else:
        print(report.table())
    return 1 if report.figures["errors"] else 0


def main(argv: Sequence[str] | None = None, *, prog: str = "python -m simulator") -> int:
    """Run the command line ``argv``; return the exit code."""
    args = build_parser(prog).parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(message)s")
    try:
        return asyncio.run(run(args))
    except (TemplateError, ScriptError, ValueError) as error:
        print(f"{prog}: {error}", file=sys.stderr)
        return 2
