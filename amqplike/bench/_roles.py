"""What each worker process does: publish, consume, serve or call, then report.

Every role runs in its own process, apart from the broker and from the other roles,
and talks to the orchestrator through :func:`worker_main`: it says ``ready`` once it
is connected (a publisher then waits for the go signal, so connecting is never
timed), and finally sends back a small dict of timestamps (``CLOCK_MONOTONIC``
nanoseconds, comparable across processes) and latency samples.
"""

from __future__ import annotations

import resource
import traceback
from collections.abc import Callable, Mapping
from typing import Any

from amqplike.bench._kits import (
    DIRECT_REPLY_TO,
    RPC_STOP,
    ClientKit,
    get_kit,
    now_ns,
    stamp,
    stamped_age_ns,
    wait_for_depth,
)

#: Longest a publisher waits for the go signal after saying it is ready.
GO_TIMEOUT_SECONDS = 120.0

Spec = Mapping[str, Any]
Role = Callable[[ClientKit, Spec, Callable[[], None]], dict[str, Any]]


def _persistent(kit: ClientKit, spec: Spec) -> Any:
    return kit.properties(delivery_mode=2) if spec.get("persistent") else None


def publish_blocking(kit: ClientKit, spec: Spec, ready: Callable[[], None]) -> dict[str, Any]:
    """Publish ``count`` bodies with the blocking API, then wait for the queue to hold them.

    With ``stamped`` each body carries its send time (for end-to-end latency) and the
    queue depth is not awaited (a consumer is draining it).
    """
    connection = kit.connect(spec["url"])
    channel = connection.channel()
    body = bytearray(spec["size"])
    frozen_body = bytes(body)
    properties = _persistent(kit, spec)
    exchange, routing_key, count = spec["exchange"], spec["routing_key"], spec["count"]
    stamped = spec.get("stamped", False)
    ready()
    t0 = now_ns()
    if stamped:
        for _ in range(count):
            channel.basic_publish(exchange, routing_key, stamp(body), properties)
    else:
        for _ in range(count):
            channel.basic_publish(exchange, routing_key, frozen_body, properties)
    t_sent = now_ns()
    if spec.get("queue") and not stamped:
        wait_for_depth(channel, spec["queue"], count)
    t1 = now_ns()
    connection.close()
    return {"t0_ns": t0, "t_sent_ns": t_sent, "t1_ns": t1}


def publish_async(kit: ClientKit, spec: Spec, ready: Callable[[], None]) -> dict[str, Any]:
    """Publish ``count`` bodies with the kit's fastest asynchronous client."""
    return kit.publish_async(
        spec["url"],
        exchange=spec["exchange"],
        routing_key=spec["routing_key"],
        body=bytes(spec["size"]),
        count=spec["count"],
        queue=spec["queue"],
        properties=_persistent(kit, spec),
        ready=ready,
    )


def confirm_single(kit: ClientKit, spec: Spec, ready: Callable[[], None]) -> dict[str, Any]:
    """Publish persistent messages one at a time, each waiting for its confirm."""
    connection = kit.connect(spec["url"])
    channel = connection.channel()
    channel.confirm_delivery()
    body = bytes(spec["size"])
    properties = kit.properties(delivery_mode=2)
    exchange, routing_key = spec["exchange"], spec["routing_key"]
    latencies: list[int] = []
    ready()
    t0 = now_ns()
    for _ in range(spec["count"]):
        sent = now_ns()
        channel.basic_publish(exchange, routing_key, body, properties)
        latencies.append(now_ns() - sent)
    t1 = now_ns()
    connection.close()
    return {"t0_ns": t0, "t1_ns": t1, "latencies_ns": latencies}


def confirm_window(kit: ClientKit, spec: Spec, ready: Callable[[], None]) -> dict[str, Any]:
    """Publish persistent messages with up to ``window`` confirms outstanding."""
    return kit.confirm_window(
        spec["url"],
        exchange=spec["exchange"],
        routing_key=spec["routing_key"],
        body=bytes(spec["size"]),
        count=spec["count"],
        window=spec["window"],
        properties=kit.properties(delivery_mode=2),
        ready=ready,
    )


def consume(kit: ClientKit, spec: Spec, ready: Callable[[], None]) -> dict[str, Any]:
    """Consume ``count`` messages from ``queue`` with ``prefetch`` and manual acks.

    ``ack_every`` > 1 acknowledges with ``multiple=True`` once per that many messages.
    With ``stamped`` the latency of every message is taken from its body.
    """
    connection = kit.connect(spec["url"])
    channel = connection.channel()
    channel.basic_qos(prefetch_count=spec["prefetch"])
    count, stamped = spec["count"], spec.get("stamped", False)
    ack_every = spec.get("ack_every", 1)
    latencies: list[int] = []
    state = {"received": 0, "first": 0, "last": 0}

    def on_message(ch: Any, method: Any, _properties: Any, body: bytes) -> None:
        now = now_ns()
        received = state["received"] = state["received"] + 1
        if received == 1:
            state["first"] = now
        if stamped:
            latencies.append(stamped_age_ns(body, now))
        if ack_every == 1:
            ch.basic_ack(method.delivery_tag)
        elif received % ack_every == 0 or received == count:
            ch.basic_ack(method.delivery_tag, multiple=True)
        if received >= count:
            state["last"] = now
            ch.stop_consuming()

    channel.basic_consume(queue=spec["queue"], on_message_callback=on_message)
    ready()
    t_ready = now_ns()
    channel.start_consuming()
    connection.close()
    return {
        "t_ready_ns": t_ready,
        "first_ns": state["first"],
        "last_ns": state["last"],
        "received": state["received"],
        "latencies_ns": latencies,
    }


def rpc_server(kit: ClientKit, spec: Spec, ready: Callable[[], None]) -> dict[str, Any]:
    """Answer every request on ``queue`` with its own body until told to stop."""
    connection = kit.connect(spec["url"])
    channel = connection.channel()
    channel.basic_qos(prefetch_count=spec.get("prefetch", 100))
    served = kit.serve_rpc(channel, spec["queue"], ready)
    connection.close()
    return {"served": served}


def rpc_caller(kit: ClientKit, spec: Spec, ready: Callable[[], None]) -> dict[str, Any]:
    """Make ``count`` request-reply round trips, ``concurrency`` of them in flight at once.

    One call at a time goes through the kit's RPC client; many at once pipeline over
    one connection with direct reply-to, matching replies by ``correlation_id``.  The
    RPC server is told to stop at the end.
    """
    connection = kit.connect(spec["url"])
    channel = connection.channel()
    count, concurrency, queue = spec["count"], spec["concurrency"], spec["queue"]
    body = bytes(spec["size"])
    latencies: list[int] = []
    if concurrency == 1:
        client = kit.rpc_client(connection, channel, queue)
        ready()
        t0 = now_ns()
        for _ in range(count):
            sent = now_ns()
            client.call(body)
            latencies.append(now_ns() - sent)
        t1 = now_ns()
    else:
        pending: dict[str, int] = {}
        state = {"sent": 0}

        def send() -> None:
            state["sent"] += 1
            correlation_id = str(state["sent"])
            pending[correlation_id] = now_ns()
            channel.basic_publish(
                "",
                queue,
                body,
                kit.properties(reply_to=DIRECT_REPLY_TO, correlation_id=correlation_id),
            )

        def on_reply(ch: Any, _method: Any, properties: Any, _body: bytes) -> None:
            sent = pending.pop(properties.correlation_id, None)
            if sent is None:
                return
            latencies.append(now_ns() - sent)
            if state["sent"] < count:
                send()
            elif not pending:
                ch.stop_consuming()

        channel.basic_consume(queue=DIRECT_REPLY_TO, on_message_callback=on_reply, auto_ack=True)
        ready()
        t0 = now_ns()
        for _ in range(min(concurrency, count)):
            send()
        channel.start_consuming()
        t1 = now_ns()
    channel.basic_publish("", queue, b"", kit.properties(correlation_id=RPC_STOP))
    connection.close()
    return {"t0_ns": t0, "t1_ns": t1, "latencies_ns": latencies}


def idle_connections(kit: ClientKit, spec: Spec, ready: Callable[[], None]) -> dict[str, Any]:
    """Open ``count`` connections and hold them, idle, until the orchestrator has looked."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = spec["count"] + 64
    if soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(wanted, soft)), hard))
    return kit.hold_connections(spec["url"], spec["count"], ready)


ROLES: dict[str, Role] = {
    "publish_blocking": publish_blocking,
    "publish_async": publish_async,
    "confirm_single": confirm_single,
    "confirm_window": confirm_window,
    "consume": consume,
    "rpc_server": rpc_server,
    "rpc_caller": rpc_caller,
    "idle_connections": idle_connections,
}


def worker_main(role: str, kit_name: str, spec: Spec, outbox: Any, go: Any) -> None:
    """Entry point of a worker process: run ``role`` and report to ``outbox``.

    Messages are ``("ready", worker_id, None)``, then ``("result", worker_id, dict)``
    or ``("error", worker_id, traceback_text)``.  ``ready`` blocks on the ``go``
    event when the spec says ``wait_for_go``.
    """
    worker_id = spec["worker_id"]

    def ready() -> None:
        outbox.put(("ready", worker_id, None))
        if spec.get("wait_for_go") and not go.wait(GO_TIMEOUT_SECONDS):
            raise TimeoutError("no go signal from the orchestrator")

    try:
        result = ROLES[role](get_kit(kit_name), spec, ready)
    except BaseException:
        outbox.put(("error", worker_id, traceback.format_exc()))
    else:
        outbox.put(("result", worker_id, result))
