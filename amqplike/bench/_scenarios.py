"""The scenarios: which cases each one measures, and how one case is run and timed.

The orchestrating process declares the topology, starts the worker processes
(:mod:`amqplike.bench._roles`), releases them, and turns their timestamps and the
broker's CPU and memory figures into one measurement dict per case.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from attrs import frozen

from amqplike.bench._kits import get_kit
from amqplike.bench._stats import latency_summary
from amqplike.bench._targets import BrokerMonitor, Target
from amqplike.bench._workers import Workers

#: Every scenario, in the order they run.
SCENARIOS: tuple[str, ...] = (
    "publish", "confirm", "e2e", "rpc", "fanout", "backlog", "connections",
)
DEFAULT_SIZES: tuple[int, ...] = (100, 1024, 65536)
#: Above this body size, counts shrink in proportion, so 64 KiB cases move as many
#: bytes as 4 KiB ones would and a run stays short.
FULL_COUNT_MAX_BYTES = 4096
FANOUT_QUEUES = 4
#: The body size whose backlog measures RSS per queued message (the issue's figure is
#: for 1 KiB); the first size given stands in when it is not among them.
MEMORY_PROBE_SIZE = 1024
#: Settling time before reading the RSS of idle connections.
SETTLE_SECONDS = 0.5

EXCHANGE = "bench.direct"
FANOUT_EXCHANGE = "bench.fanout"
ROUTING_KEY = "bench"


@frozen
class Settings:
    """Run-wide knobs: the base message count and what the scenarios derive from it."""

    count: int = 10_000
    backlog_count: int = 50_000
    connections: int = 1000
    confirm_window: int = 256
    rpc_concurrency: int = 100
    timeout: float = 300.0


@frozen
class Case:
    """One measured case: a scenario's variant at one body size, with its count."""

    scenario: str
    variant: str
    size: int
    count: int
    #: Measures memory, so runs on a freshly started broker: a heap that earlier cases
    #: grew would take new messages or connections without growing.  Restarting a
    #: broker (RabbitMQ takes ~10 s) for every case would double a run's length.
    fresh_broker: bool = False

    @property
    def key(self) -> str:
        """``scenario/variant/size``, as in the report."""
        return f"{self.scenario}/{self.variant}/{self.size}"


def _scaled(count: int, size: int) -> int:
    if size > FULL_COUNT_MAX_BYTES:
        count = count * FULL_COUNT_MAX_BYTES // size
    return max(1, count)


def plan(scenarios: Iterable[str], sizes: Sequence[int], settings: Settings) -> list[Case]:
    """The cases to run for ``scenarios`` at ``sizes``, in a stable order.

    Raises ``ValueError`` for an unknown scenario.
    """
    wanted = list(scenarios)
    unknown = sorted(set(wanted) - set(SCENARIOS))
    if unknown:
        raise ValueError(f"unknown scenario(s) {unknown}; known: {', '.join(SCENARIOS)}")
    n = settings.count
    per_size: dict[str, list[tuple[str, int]]] = {
        "publish": [("blocking", n), ("async", n)],
        "confirm": [("single", n // 10), (f"window{settings.confirm_window}", n)],
        "e2e": [("prefetch1", n // 4), ("prefetch100", n)],
        "rpc": [("sequential", n // 10), (f"concurrent{settings.rpc_concurrency}", n // 5)],
        "fanout": [(f"{FANOUT_QUEUES}x{FANOUT_QUEUES}", n // 2)],
        "backlog": [("publish-drain", settings.backlog_count)],
    }
    cases: list[Case] = []
    for scenario in SCENARIOS:
        if scenario not in wanted:
            continue
        if scenario == "connections":
            cases.append(Case("connections", "idle", 0, settings.connections, True))
            continue
        probe = MEMORY_PROBE_SIZE if MEMORY_PROBE_SIZE in sizes else sizes[0]
        for size in sizes:
            for variant, count in per_size[scenario]:
                fresh = scenario == "backlog" and size == probe
                cases.append(Case(scenario, variant, size, _scaled(count, size), fresh))
    return cases


class _Admin:
    """A blocking connection of the orchestrator, for topology only."""

    def __init__(self, target: Target) -> None:
        self._kit = get_kit(target.kit)
        self._connection = self._kit.connect(target.url or "")

    def channel(self) -> Any:
        return self._connection.channel()

    def declare_queue(self, queue: str, *, durable: bool = False) -> None:
        channel = self.channel()
        channel.queue_declare(queue=queue, durable=durable)
        channel.queue_purge(queue=queue)
        channel.close()

    def declare_exchange(self, exchange: str, exchange_type: str) -> None:
        channel = self.channel()
        channel.exchange_declare(exchange=exchange, exchange_type=exchange_type)
        channel.close()

    def bind(self, queue: str, exchange: str, routing_key: str) -> None:
        channel = self.channel()
        channel.queue_bind(queue=queue, exchange=exchange, routing_key=routing_key)
        channel.close()

    def delete(self, queues: Iterable[str] = (), exchanges: Iterable[str] = ()) -> None:
        for name in queues:
            self._quietly("queue_delete", queue=name)
        for name in exchanges:
            self._quietly("exchange_delete", exchange=name)

    def _quietly(self, method: str, **kwargs: str) -> None:
        # Cleaning up after a failed case must not hide why it failed.
        try:
            channel = self.channel()
            getattr(channel, method)(**kwargs)
            channel.close()
        except Exception:
            pass

    def close(self) -> None:
        try:
            self._connection.close()
        except Exception:
            pass


class _Meter:
    """Broker CPU and RSS around the timed part of a case."""

    def __init__(self, monitor: BrokerMonitor) -> None:
        self.monitor = monitor
        self.rss_base = monitor.rss()
        self._cpu0: float | None = None
        self.cpu: float | None = None

    def start(self) -> None:
        self._cpu0 = self.monitor.cpu_seconds()

    def stop(self) -> None:
        cpu1 = self.monitor.cpu_seconds()
        if cpu1 is not None and self._cpu0 is not None:
            self.cpu = cpu1 - self._cpu0


def _seconds(start_ns: int, end_ns: int) -> float:
    return max(end_ns - start_ns, 1) / 1e9


def run_case(target: Target, case: Case, settings: Settings) -> dict[str, Any]:
    """Run one case against ``target`` and return its measurement.

    Raises :class:`amqplike.bench._workers.WorkerError` when a worker fails or the
    case exceeds ``settings.timeout``.
    """
    runner = _RUNNERS[case.scenario]
    monitor = target.monitor()
    admin = _Admin(target)
    try:
        with Workers(target.kit, settings.timeout) as workers:
            meter = _Meter(monitor)
            with monitor.peak_rss() as rss:
                figures = runner(admin, workers, meter, target, case, settings)
        measurement: dict[str, Any] = {
            "scenario": case.scenario,
            "variant": case.variant,
            "size": case.size,
            "count": case.count,
            "unit": "msg/s",
            "broker_rss_base_bytes": meter.rss_base,
            "broker_rss_peak_bytes": rss["peak"],
            "broker_cpu_seconds": meter.cpu,
            "broker_cpu_us_per_msg": (
                meter.cpu / case.count * 1e6 if meter.cpu is not None and case.count else None
            ),
        }
        latencies = figures.pop("latencies_ns", None)
        if latencies:
            summary = latency_summary(latencies)
            measurement["p50_ms"] = summary["p50_ms"]
            measurement["p99_ms"] = summary["p99_ms"]
            measurement["latency"] = summary
        measurement.update(figures)
        return measurement
    finally:
        admin.close()


Runner = Callable[[_Admin, Workers, _Meter, Target, Case, Settings], dict[str, Any]]


def _run_publish(
    admin: _Admin, workers: Workers, meter: _Meter, target: Target, case: Case, _s: Settings
) -> dict[str, Any]:
    queue = "bench.publish"
    admin.declare_exchange(EXCHANGE, "direct")
    admin.declare_queue(queue)
    admin.bind(queue, EXCHANGE, ROUTING_KEY)
    spec = {
        "url": target.url, "exchange": EXCHANGE, "routing_key": ROUTING_KEY,
        "size": case.size, "count": case.count, "queue": queue, "wait_for_go": True,
    }
    result = _timed(workers, meter, "publisher", f"publish_{case.variant}", spec)
    admin.delete(queues=[queue])
    seconds = _seconds(result["t0_ns"], result["t1_ns"])
    return {"seconds": seconds, "rate": case.count / seconds}


def _timed(
    workers: Workers, meter: _Meter, worker_id: str, role: str, spec: dict[str, Any]
) -> dict[str, Any]:
    """Start ``worker_id`` as ``role``, release it with the meter running; return its result."""
    workers.start(worker_id, role, spec)
    workers.wait_ready([worker_id])
    meter.start()
    workers.go()
    result = workers.result(worker_id)
    meter.stop()
    return result


def _run_confirm(
    admin: _Admin, workers: Workers, meter: _Meter, target: Target, case: Case, s: Settings
) -> dict[str, Any]:
    queue = "bench.confirm"
    admin.declare_queue(queue, durable=True)
    spec = {
        "url": target.url, "exchange": "", "routing_key": queue, "size": case.size,
        "count": case.count, "window": s.confirm_window, "wait_for_go": True,
    }
    role = "confirm_single" if case.variant == "single" else "confirm_window"
    result = _timed(workers, meter, "publisher", role, spec)
    admin.delete(queues=[queue])
    seconds = _seconds(result["t0_ns"], result["t1_ns"])
    return {"seconds": seconds, "rate": case.count / seconds, "latencies_ns": result["latencies_ns"]}


def _consumers_then_publisher(
    workers: Workers, meter: _Meter, target: Target, case: Case, *, queues: Sequence[str],
    exchange: str, routing_key: str, prefetch: int,
) -> dict[str, Any]:
    consumer_ids = [f"consumer{i}" for i in range(len(queues))]
    for worker_id, queue in zip(consumer_ids, queues):
        workers.start(worker_id, "consume", {
            "url": target.url, "queue": queue, "prefetch": prefetch,
            "count": case.count, "stamped": True,
        })
    workers.wait_ready(consumer_ids)
    workers.start("publisher", "publish_blocking", {
        "url": target.url, "exchange": exchange, "routing_key": routing_key,
        "size": max(case.size, 8), "count": case.count, "stamped": True, "wait_for_go": True,
    })
    workers.wait_ready(["publisher"])
    meter.start()
    workers.go()
    results = workers.results()
    meter.stop()
    t0 = results["publisher"]["t0_ns"]
    last = max(results[c]["last_ns"] for c in consumer_ids)
    latencies = [lat for c in consumer_ids for lat in results[c]["latencies_ns"]]
    seconds = _seconds(t0, last)
    return {
        "seconds": seconds,
        "rate": case.count * len(queues) / seconds,
        "latencies_ns": latencies,
    }


def _run_e2e(
    admin: _Admin, workers: Workers, meter: _Meter, target: Target, case: Case, _s: Settings
) -> dict[str, Any]:
    queue = "bench.e2e"
    admin.declare_queue(queue)
    prefetch = int(case.variant.removeprefix("prefetch"))
    figures = _consumers_then_publisher(
        workers, meter, target, case, queues=[queue], exchange="", routing_key=queue,
        prefetch=prefetch,
    )
    admin.delete(queues=[queue])
    return figures


def _run_fanout(
    admin: _Admin, workers: Workers, meter: _Meter, target: Target, case: Case, _s: Settings
) -> dict[str, Any]:
    queues = [f"bench.fanout.{i}" for i in range(FANOUT_QUEUES)]
    admin.declare_exchange(FANOUT_EXCHANGE, "fanout")
    for queue in queues:
        admin.declare_queue(queue)
        admin.bind(queue, FANOUT_EXCHANGE, "")
    figures = _consumers_then_publisher(
        workers, meter, target, case, queues=queues, exchange=FANOUT_EXCHANGE,
        routing_key="", prefetch=100,
    )
    figures["unit"] = "deliveries/s"
    admin.delete(queues=queues)
    return figures


def _run_rpc(
    admin: _Admin, workers: Workers, meter: _Meter, target: Target, case: Case, _s: Settings
) -> dict[str, Any]:
    queue = "bench.rpc"
    admin.declare_queue(queue)
    workers.start("server", "rpc_server", {"url": target.url, "queue": queue})
    workers.wait_ready(["server"])
    concurrency = 1 if case.variant == "sequential" else int(case.variant.removeprefix("concurrent"))
    result = _timed(workers, meter, "caller", "rpc_caller", {
        "url": target.url, "queue": queue, "size": case.size, "count": case.count,
        "concurrency": concurrency, "wait_for_go": True,
    })
    workers.result("server")
    admin.delete(queues=[queue])
    seconds = _seconds(result["t0_ns"], result["t1_ns"])
    return {
        "seconds": seconds,
        "rate": case.count / seconds,
        "unit": "calls/s",
        "latencies_ns": result["latencies_ns"],
    }


def _run_backlog(
    admin: _Admin, workers: Workers, meter: _Meter, target: Target, case: Case, _s: Settings
) -> dict[str, Any]:
    queue = "bench.backlog"
    admin.declare_queue(queue)
    workers.start("publisher", "publish_async", {
        "url": target.url, "exchange": "", "routing_key": queue, "size": case.size,
        "count": case.count, "queue": queue, "wait_for_go": True,
    })
    workers.wait_ready(["publisher"])
    meter.start()
    workers.go()
    published = workers.result("publisher")
    rss_full = meter.monitor.rss()
    workers.start("consumer", "consume", {
        "url": target.url, "queue": queue, "prefetch": 1000, "ack_every": 100,
        "count": case.count,
    })
    drained = workers.result("consumer")
    meter.stop()
    admin.delete(queues=[queue])
    publish_seconds = _seconds(published["t0_ns"], published["t1_ns"])
    drain_seconds = _seconds(drained["t_ready_ns"], drained["last_ns"])
    rss_per_msg = (
        (rss_full - meter.rss_base) / case.count
        if rss_full is not None and meter.rss_base is not None and case.fresh_broker
        else None
    )
    return {
        "seconds": publish_seconds + drain_seconds,
        "rate": case.count / publish_seconds,
        "drain_rate": case.count / drain_seconds,
        "broker_rss_full_bytes": rss_full,
        "rss_per_msg_bytes": rss_per_msg,
    }


def _run_connections(
    _admin: _Admin, workers: Workers, meter: _Meter, target: Target, case: Case, _s: Settings
) -> dict[str, Any]:
    workers.start("holder", "idle_connections", {
        "url": target.url, "count": case.count, "wait_for_go": True,
    })
    workers.wait_ready(["holder"])
    time.sleep(SETTLE_SECONDS)
    rss_open = meter.monitor.rss()
    workers.go()
    result = workers.result("holder")
    per_connection = (
        (rss_open - meter.rss_base) / case.count
        if rss_open is not None and meter.rss_base is not None
        else None
    )
    return {
        "seconds": result["open_seconds"],
        "rate": case.count / max(result["open_seconds"], 1e-9),
        "unit": "connections/s",
        "rss_per_connection_bytes": per_connection,
    }


_RUNNERS: dict[str, Runner] = {
    "publish": _run_publish,
    "confirm": _run_confirm,
    "e2e": _run_e2e,
    "rpc": _run_rpc,
    "fanout": _run_fanout,
    "backlog": _run_backlog,
    "connections": _run_connections,
}
