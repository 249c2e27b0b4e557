"""``amqplike-bench``: measure amqplike, RabbitMQ, or both side by side.

    amqplike-bench                          # amqplike, every scenario, one round
    amqplike-bench --target rabbitmq        # RabbitMQ on loopback via scripts/rabbitmq.sh
    amqplike-bench --compare --rounds 3 --json bench.json --plot bench.png

The brokers run apart from the producers and consumers, which are worker processes.
A table goes to stdout; progress goes to stderr when it is a terminal.
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import time
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from amqplike.bench._report import (
    build_document,
    format_markdown,
    format_table,
    machine_description,
    plot,
    write_json,
)
from amqplike.bench._scenarios import (
    DEFAULT_SIZES,
    SCENARIOS,
    Case,
    Settings,
    plan,
    run_case,
)
from amqplike.bench._stats import summarize
from amqplike.bench._targets import AmqplikeTarget, RabbitmqTarget, Target, TargetError
from amqplike.bench._workers import WorkerError

#: Scenarios run when ``--scenarios`` is not given.
DEFAULT_SCENARIOS = SCENARIOS
_DEFAULTS = Settings()


def _csv(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def _sizes(text: str) -> list[int]:
    try:
        sizes = [int(part) for part in _csv(text)]
    except ValueError:
        raise argparse.ArgumentTypeError(f"sizes must be integers, got {text!r}") from None
    if not sizes or any(s < 8 for s in sizes):
        raise argparse.ArgumentTypeError("sizes must be at least 8 bytes (room for a timestamp)")
    return sizes


def _scenarios(text: str) -> list[str]:
    names = _csv(text)
    unknown = sorted(set(names) - set(SCENARIOS))
    if unknown or not names:
        raise argparse.ArgumentTypeError(
            f"unknown scenario(s) {unknown}; choose from {','.join(SCENARIOS)}"
        )
    return names


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    """The command line, documented in ``docs/performance.md``."""
    parser = argparse.ArgumentParser(
        prog="amqplike-bench",
        description="Benchmark amqplike and RabbitMQ with the same scenarios.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "--target", choices=("amqplike", "rabbitmq"), default="amqplike",
        help="broker to measure (ignored with --compare)",
    )
    parser.add_argument(
        "--compare", action="store_true",
        help="measure both, alternating amqplike and RabbitMQ every round",
    )
    parser.add_argument("--rounds", type=_positive, default=None,
                        help="rounds per target (default 1, or 3 with --compare)")
    parser.add_argument("--scenarios", type=_scenarios, default=list(DEFAULT_SCENARIOS),
                        metavar="LIST", help=f"comma-separated, from {','.join(SCENARIOS)}")
    parser.add_argument("--sizes", type=_sizes, default=list(DEFAULT_SIZES), metavar="LIST",
                        help="comma-separated body sizes in bytes")
    parser.add_argument("--count", type=_positive, default=_DEFAULTS.count, metavar="N",
                        help="base message count (publish); other scenarios derive theirs")
    parser.add_argument("--backlog-count", type=_positive, default=_DEFAULTS.backlog_count,
                        metavar="N", help="messages queued by the backlog scenario")
    parser.add_argument("--connections", type=_positive, default=_DEFAULTS.connections,
                        metavar="N", help="idle connections opened by the connections scenario")
    parser.add_argument("--timeout", type=float, default=_DEFAULTS.timeout, metavar="SECONDS",
                        help="give up on a case after this long")
    parser.add_argument("--json", type=Path, metavar="FILE", help="write every result here")
    parser.add_argument("--markdown", type=Path, metavar="FILE",
                        help="also write a compact Markdown table (for docs/performance.md)")
    parser.add_argument("--plot", type=Path, metavar="FILE.png",
                        help="draw ratios and latency distributions (needs matplotlib)")
    parser.add_argument("--broker-url", metavar="URL",
                        help="use this running broker instead of starting one (not with --compare)")
    parser.add_argument("--broker-pid", type=int, metavar="PID",
                        help="pid of the --broker-url broker, for its CPU and RSS figures")
    parser.add_argument("--rabbitmq-script", type=Path, metavar="PATH",
                        help="script that starts/stops RabbitMQ (default: scripts/rabbitmq.sh)")
    parser.add_argument("--pika-async", choices=("select", "twisted"), default="twisted",
                        help="pika connection type for RabbitMQ's asynchronous cases")
    parser.add_argument("--progress", choices=("auto", "always", "never"), default="auto",
                        help="progress bar on stderr (auto: only on a terminal)")
    return parser


def make_targets(args: argparse.Namespace) -> list[Target]:
    """The targets of this run, in the order each round visits them."""
    kit = "pika" if args.pika_async == "select" else "pika-twisted"

    def rabbitmq(url: str | None = None, pid: int | None = None) -> Target:
        return RabbitmqTarget(url, pid, kit=kit, script=args.rabbitmq_script)

    if args.compare:
        return [AmqplikeTarget(), rabbitmq()]
    if args.target == "rabbitmq":
        return [rabbitmq(args.broker_url, args.broker_pid)]
    return [AmqplikeTarget(args.broker_url, args.broker_pid)]


class _Progress:
    """A tqdm bar on a terminal (or a plain counter without tqdm); silent otherwise."""

    def __init__(self, total: int, enabled: bool) -> None:
        self._bar: Any = None
        self._enabled = enabled
        self._done = 0
        self._total = total
        if enabled:
            try:
                from tqdm import tqdm  # type: ignore[import-untyped, unused-ignore]
            except ImportError:
                return
            self._bar = tqdm(total=total, file=sys.stderr, unit="case", dynamic_ncols=True)

    def describe(self, text: str) -> None:
        if self._bar is not None:
            self._bar.set_description_str(text)
        elif self._enabled:
            print(f"[{self._done + 1}/{self._total}] {text}", file=sys.stderr, flush=True)

    def advance(self) -> None:
        self._done += 1
        if self._bar is not None:
            self._bar.update(1)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()


def run_rounds(
    targets: Sequence[Target], cases: Sequence[Case], rounds: int, settings: Settings,
    progress: _Progress,
) -> list[dict[str, Any]]:
    """Run every case on every target, A B A B, for ``rounds`` rounds.

    A failing case is recorded with its ``error`` and the run goes on.
    """
    measurements: list[dict[str, Any]] = []
    for round_index in range(rounds):
        for target in targets:
            for case in cases:
                progress.describe(f"round {round_index + 1}/{rounds} {target.name} {case.key}")
                started = time.monotonic()
                try:
                    fresh = case.fresh_broker and target.restart()
                    measurement = run_case(target, case, settings)
                    measurement["fresh_broker"] = fresh
                except Exception as exc:
                    error = str(exc) if isinstance(exc, WorkerError) else traceback.format_exc()
                    measurement = {
                        "scenario": case.scenario, "variant": case.variant,
                        "size": case.size, "count": case.count, "error": error,
                    }
                measurement.update(
                    target=target.name, round=round_index,
                    wall_seconds=time.monotonic() - started,
                )
                measurements.append(measurement)
                progress.advance()
    return measurements


def _raise_open_files_limit(wanted: int) -> None:
    """Let the brokers we start (they inherit it) and the workers hold ``wanted`` sockets."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < wanted:
        target = wanted if hard == resource.RLIM_INFINITY else min(hard, wanted)
        resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, target), hard))


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark; return 0, or 1 when any case failed (2 for usage errors)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.compare and args.broker_url:
        parser.error("--broker-url measures one broker; it cannot be used with --compare")
    rounds = args.rounds or (3 if args.compare else 1)
    settings = Settings(
        count=args.count, backlog_count=args.backlog_count, connections=args.connections,
        timeout=args.timeout,
    )
    cases = plan(args.scenarios, args.sizes, settings)
    _raise_open_files_limit(settings.connections + 1024)
    targets = make_targets(args)
    show = args.progress == "always" or (args.progress == "auto" and sys.stderr.isatty())
    progress = _Progress(rounds * len(targets) * len(cases), show)
    # Other work on the machine skews every figure: record how busy it was.
    load_before = os.getloadavg() if hasattr(os, "getloadavg") else None
    started: list[Target] = []
    try:
        for target in targets:
            progress.describe(f"starting {target.name}")
            target.start()
            started.append(target)
        measurements = run_rounds(targets, cases, rounds, settings, progress)
    except TargetError as exc:
        progress.close()
        print(f"amqplike-bench: {exc}", file=sys.stderr)
        return 1
    finally:
        for target in reversed(started):
            target.stop()
    progress.close()

    names = [t.name for t in targets]
    print(format_table(summarize(measurements), names))
    failures = [m for m in measurements if m.get("error")]
    for failure in failures:
        print(
            f"\n{failure['target']} {failure['scenario']}/{failure['variant']}/"
            f"{failure['size']} round {failure['round'] + 1} failed:\n{failure['error']}",
            file=sys.stderr,
        )
    document = build_document(
        measurements,
        targets=[t.describe() for t in targets],
        arguments={
            "argv": list(sys.argv[1:] if argv is None else argv), "rounds": rounds,
            "scenarios": args.scenarios, "sizes": args.sizes, "count": args.count,
            "backlog_count": args.backlog_count, "connections": args.connections,
        },
        machine=dict(machine_description(), load_average_before=load_before),
    )
    if args.json:
        write_json(document, args.json)
    if args.markdown:
        args.markdown.write_text(format_markdown(document["summary"], names) + "\n")
    if args.plot:
        plot(document, args.plot)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
