"""The common recipes of expiry, dead-lettering, limits, priorities and delays (issue 5),
end to end against the real ``twistd amqplike`` process through the blocking client.

Each test asserts what a user of the recipe relies on (``docs/queue-arguments.md``,
``docs/recipes.md``; RELIABILITY.md rows D8, D9, D11).  Nothing sleeps to synchronise: the
tests wait for the event they need with ``process_data_events`` loops bounded by generous
deadlines, so a slow machine does not fail them.  Lower bounds on time are asserted only
where the semantics demand them ("not before the delay").
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import pytest

from amqplike.client import BasicProperties
from amqplike.client.exceptions import ChannelClosedByBroker, NackError, RpcTimeout
from amqplike.client.rpc import RpcClient, RpcServer
from amqplike.client.sync import BlockingChannel, BlockingConnection
from amqplike.errors import PRECONDITION_FAILED
from amqplike.wire import methods as m
from tests.e2e.broker import BrokerProcess

#: Upper bound for anything that should happen "soon": generous, a loaded machine must pass.
SOON_SECONDS = 5.0
#: The broker's deadlines are whole milliseconds on its own clock and the client measures
#: with ``time.monotonic``: this much slack on lower bounds covers rounding, not lateness.
CLOCK_SLACK_SECONDS = 0.005


def _name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def connection(broker: BrokerProcess) -> Iterator[BlockingConnection]:
    """A connection of the test's own, closed at its end."""
    conn = BlockingConnection(broker.url)
    yield conn
    if conn.is_open:
        conn.close()


@pytest.fixture
def channel(connection: BlockingConnection) -> BlockingChannel:
    """A channel on the test's connection."""
    return connection.channel()


@pytest.fixture
def shared_queue(broker: BrokerProcess) -> Iterator[Callable[..., str]]:
    """Declare a non-exclusive queue (other connections use it too), deleted after the test."""
    names: list[str] = []

    def declare(prefix: str, arguments: dict[str, Any] | None = None) -> str:
        name = _name(prefix)
        with BlockingConnection(broker.url) as conn:
            conn.channel().queue_declare(name, arguments=arguments)
        names.append(name)
        return name

    yield declare
    with BlockingConnection(broker.url) as conn:
        ch = conn.channel()
        for name in names:
            ch.queue_delete(name)


@pytest.fixture(autouse=True)
def _broker_logged_no_traceback(broker: BrokerProcess) -> Iterator[None]:
    """Fail a test during which the broker logged a traceback (a bug on its side)."""
    start = len(broker.lines)
    yield
    logged = "".join(broker.lines[start:])
    assert "Traceback" not in logged, logged


class Received:
    """A consumer callback that records each delivery with the time it arrived."""

    def __init__(
        self, on_message: Callable[[BlockingChannel, m.BasicDeliver], object] | None = None
    ) -> None:
        self.messages: list[tuple[float, m.BasicDeliver, BasicProperties, bytes]] = []
        self._on_message = on_message

    def __call__(
        self, ch: BlockingChannel, method: m.BasicDeliver, properties: BasicProperties, body: bytes
    ) -> None:
        self.messages.append((time.monotonic(), method, properties, body))
        if self._on_message is not None:
            self._on_message(ch, method)

    def __len__(self) -> int:
        return len(self.messages)

    @property
    def bodies(self) -> list[bytes]:
        """The bodies received, in arrival order."""
        return [body for _t, _m, _p, body in self.messages]


def _wait_until(
    connection: BlockingConnection, done: Callable[[], bool], timeout: float = SOON_SECONDS
) -> bool:
    """Run the connection's I/O and callbacks until ``done()`` or ``timeout`` seconds passed."""
    deadline = time.monotonic() + timeout
    while not done():
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return False
        connection.process_data_events(time_limit=remaining)
    return True


def _settle(connection: BlockingConnection, seconds: float = 0.3) -> None:
    """Run I/O for a while: only used to show that something does *not* arrive."""
    deadline = time.monotonic() + seconds
    while (remaining := deadline - time.monotonic()) > 0:
        connection.process_data_events(time_limit=remaining)


def _dead_letter_queue(channel: BlockingChannel) -> str:
    """A fresh queue for dead letters, reached through the default exchange by its name."""
    queue = _name("dlq")
    channel.queue_declare(queue, exclusive=True)
    return queue


def _ready(channel: BlockingChannel, queue: str) -> int:
    """The queue's ready message count (passive declare)."""
    return int(channel.queue_declare(queue, passive=True).method.message_count)


def _headers(properties: BasicProperties | None) -> Mapping[str, Any]:
    """A message's headers, ``{}`` when it has none."""
    return (properties.headers if properties is not None else None) or {}


def _death(properties: BasicProperties | None) -> dict[str, Any]:
    """The most recent ``x-death`` table of a dead-lettered message."""
    headers = _headers(properties)
    deaths = headers["x-death"]
    assert isinstance(deaths, (list, tuple)) and deaths, headers
    return dict(deaths[0])


# -- 1. retry queue with backoff ---------------------------------------------------------------


def test_retry_backoff_holds_nacked_message_then_redelivers_with_delivery_count(
    connection: BlockingConnection, channel: BlockingChannel
) -> None:
    """A nacked message on an ``x-retry-backoff`` queue comes back after the (exponential)
    backoff, not before, with ``redelivered`` and an increasing ``x-delivery-count``."""
    queue = _name("retry-work")
    backoff = {"type": "exponential", "min": 200, "max": 10_000, "multiplier": 2}
    channel.queue_declare(queue, exclusive=True, arguments={"x-retry-backoff": backoff})
    nacked_at: list[float] = []

    def nack_twice_then_ack(ch: BlockingChannel, method: m.BasicDeliver) -> None:
        if len(nacked_at) < 2:
            nacked_at.append(time.monotonic())
            ch.basic_nack(method.delivery_tag, requeue=True)
        else:
            ch.basic_ack(method.delivery_tag)

    got = Received(nack_twice_then_ack)
    channel.basic_consume(queue, got)
    channel.basic_publish("", queue, b"flaky job")
    assert _wait_until(connection, lambda: len(got) == 3, timeout=0.6 + 2 * SOON_SECONDS)

    assert got.bodies == [b"flaky job"] * 3
    first, second, third = got.messages
    assert not first[1].redelivered
    assert "x-delivery-count" not in _headers(first[2])
    assert second[1].redelivered and third[1].redelivered
    assert _headers(second[2])["x-delivery-count"] == 1
    assert _headers(third[2])["x-delivery-count"] == 2
    # 200 ms after the first nack, 200 * 2 = 400 ms after the second: never earlier.
    for (arrived, *_), nacked, delay in zip((second, third), nacked_at, (0.2, 0.4)):
        assert arrived - nacked >= delay - CLOCK_SLACK_SECONDS
        assert arrived - nacked < delay + SOON_SECONDS
    _settle(connection, 0.1)
    assert len(got) == 3  # acked: gone for good
    assert _ready(channel, queue) == 0


def test_retry_backoff_held_message_does_not_block_later_messages(
    connection: BlockingConnection, channel: BlockingChannel
) -> None:
    """While a nacked message is held back, messages published after it are delivered."""
    queue = _name("retry-flow")
    channel.queue_declare(queue, exclusive=True, arguments={"x-retry-backoff": 1_000})

    def nack_first_delivery_of_a(ch: BlockingChannel, method: m.BasicDeliver) -> None:
        if got.bodies[-1] == b"a" and not method.redelivered:
            ch.basic_nack(method.delivery_tag, requeue=True)
        else:
            ch.basic_ack(method.delivery_tag)

    got = Received(nack_first_delivery_of_a)
    channel.basic_consume(queue, got)
    channel.basic_publish("", queue, b"a")
    assert _wait_until(connection, lambda: len(got) == 1)
    channel.basic_publish("", queue, b"b")
    assert _wait_until(connection, lambda: len(got) == 3, timeout=1.0 + SOON_SECONDS)
    # b did not wait behind the held a; a came back afterwards.
    assert got.bodies == [b"a", b"b", b"a"]
    assert got.messages[2][1].redelivered


def test_retry_backoff_with_delivery_limit_gives_up_into_dlq(
    connection: BlockingConnection, channel: BlockingChannel
) -> None:
    """The documented combination: ``x-retry-backoff`` spaces the retries and
    ``x-delivery-limit`` then dead-letters the message ``delivery_limit`` instead of retrying."""
    queue = _name("retry-limited")
    dlq = _dead_letter_queue(channel)
    channel.queue_declare(
        queue,
        exclusive=True,
        arguments={
            "x-retry-backoff": {"type": "fixed", "min": 100},
            "x-delivery-limit": 2,
            "x-dead-letter-exchange": "",
            "x-dead-letter-routing-key": dlq,
        },
    )
    nacked_at: list[float] = []

    def always_nack(ch: BlockingChannel, method: m.BasicDeliver) -> None:
        nacked_at.append(time.monotonic())
        ch.basic_nack(method.delivery_tag, requeue=True)

    got = Received(always_nack)
    channel.basic_consume(queue, got)
    dead = Received()
    channel.basic_consume(dlq, dead, auto_ack=True)
    channel.basic_publish("", queue, b"hopeless")
    assert _wait_until(connection, lambda: len(dead) == 1, timeout=0.2 + 2 * SOON_SECONDS)

    assert got.bodies == [b"hopeless"] * 3
    for (arrived, *_), nacked in zip(got.messages[1:], nacked_at):
        assert arrived - nacked >= 0.1 - CLOCK_SLACK_SECONDS
    _t, _method, props, body = dead.messages[0]
    assert body == b"hopeless"
    assert _death(props)["reason"] == "delivery_limit"
    _settle(connection, 0.2)
    assert len(got) == 3  # not redelivered once dead-lettered


def test_message_held_by_backoff_still_expires_on_its_ttl(
    connection: BlockingConnection, channel: BlockingChannel
) -> None:
    """A nacked message held back by ``x-retry-backoff`` expires on its TTL during the hold
    (dead-lettered ``expired``), rather than waiting for the backoff to end."""
    queue = _name("retry-ttl")
    dlq = _dead_letter_queue(channel)
    channel.queue_declare(
        queue,
        exclusive=True,
        arguments={
            "x-retry-backoff": 60_000,
            "x-message-ttl": 300,
            "x-dead-letter-exchange": "",
            "x-dead-letter-routing-key": dlq,
        },
    )
    got = Received(lambda ch, method: ch.basic_nack(method.delivery_tag, requeue=True))
    channel.basic_consume(queue, got)
    dead = Received()
    channel.basic_consume(dlq, dead, auto_ack=True)
    published = time.monotonic()
    channel.basic_publish("", queue, b"stale soon")
    assert _wait_until(connection, lambda: len(dead) == 1)

    assert got.bodies == [b"stale soon"]
    assert dead.messages[0][0] - published >= 0.3 - CLOCK_SLACK_SECONDS
    assert _death(dead.messages[0][2])["reason"] == "expired"
    assert _ready(channel, queue) == 0


# -- 2. poison message to a DLQ (D9) -----------------------------------------------------------


def test_poison_message_dead_lettered_after_delivery_limit_and_queue_keeps_flowing(
    connection: BlockingConnection, channel: BlockingChannel
) -> None:
    """A message nacked with requeue forever is dead-lettered ``delivery_limit`` after
    ``x-delivery-limit`` redeliveries, with RabbitMQ's ``x-death``; good messages published
    before and after it are consumed (D9)."""
    exchange, key, queue = _name("jobs"), _name("job"), _name("work")
    dlq = _dead_letter_queue(channel)
    channel.exchange_declare(exchange, "direct", auto_delete=True)
    channel.queue_declare(
        queue,
        exclusive=True,
        arguments={
            "x-delivery-limit": 2,
            "x-dead-letter-exchange": "",
            "x-dead-letter-routing-key": dlq,
        },
    )
    channel.queue_bind(queue, exchange, key)

    def nack_poison_ack_rest(ch: BlockingChannel, method: m.BasicDeliver) -> None:
        if got.bodies[-1] == b"poison":
            ch.basic_nack(method.delivery_tag, requeue=True)
        else:
            ch.basic_ack(method.delivery_tag)

    got = Received(nack_poison_ack_rest)
    channel.basic_consume(queue, got)
    dead = Received()
    dlq_channel = connection.channel()
    dlq_channel.basic_consume(dlq, dead, auto_ack=True)

    channel.basic_publish(exchange, key, b"poison", BasicProperties(message_id="p-1"))
    channel.basic_publish(exchange, key, b"good-1")
    assert _wait_until(connection, lambda: len(dead) == 1 and b"good-1" in got.bodies)
    channel.basic_publish(exchange, key, b"good-2")
    assert _wait_until(connection, lambda: b"good-2" in got.bodies)

    # Delivered once plus x-delivery-limit (2) redeliveries, then given up on.
    assert got.bodies.count(b"poison") == 3
    assert got.bodies.count(b"good-1") == 1 and got.bodies.count(b"good-2") == 1
    counts = [_headers(p).get("x-delivery-count") for _t, _m, p, b in got.messages
              if b == b"poison"]
    assert counts == [None, 1, 2]
    _t, method, properties, body = dead.messages[0]
    assert body == b"poison" and properties.message_id == "p-1"
    assert method.routing_key == dlq
    death = _death(properties)
    assert death["reason"] == "delivery_limit"
    assert death["count"] == 1
    assert death["queue"] == queue
    assert death["exchange"] == exchange
    assert list(death["routing-keys"]) == [key]
    assert isinstance(death["time"], int)
    assert _headers(properties)["x-first-death-reason"] == "delivery_limit"
    assert _headers(properties)["x-first-death-queue"] == queue
    assert _ready(channel, queue) == 0


# -- 3. rejected -> DLX --------------------------------------------------------------------------


def test_reject_without_requeue_dead_letters_with_reason_rejected(
    connection: BlockingConnection, channel: BlockingChannel
) -> None:
    """``basic.reject(requeue=False)`` republishes the message to the DLX with its own routing
    key, its properties kept, an ``x-death`` table and the ``x-first/last-death-*`` headers."""
    exchange, key, queue, dlx = _name("orders"), _name("order"), _name("orders-q"), _name("dlx")
    dlq = _dead_letter_queue(channel)
    channel.exchange_declare(exchange, "direct", auto_delete=True)
    channel.exchange_declare(dlx, "fanout", auto_delete=True)
    channel.queue_bind(dlq, dlx)
    channel.queue_declare(queue, exclusive=True, arguments={"x-dead-letter-exchange": dlx})
    channel.queue_bind(queue, exchange, key)
    props = BasicProperties(correlation_id="c-7", headers={"tenant": "acme"})
    channel.basic_publish(exchange, key, b"bad order", props)

    method, _props, body = channel.basic_get(queue)
    assert method is not None and body == b"bad order"
    channel.basic_reject(method.delivery_tag, requeue=False)
    dead = Received()
    channel.basic_consume(dlq, dead, auto_ack=True)
    assert _wait_until(connection, lambda: len(dead) == 1)

    _t, dead_method, dead_props, dead_body = dead.messages[0]
    assert dead_body == b"bad order"
    assert dead_method.exchange == dlx and dead_method.routing_key == key
    assert dead_props.correlation_id == "c-7"
    headers = _headers(dead_props)
    assert headers["tenant"] == "acme"
    assert len(headers["x-death"]) == 1
    death = _death(dead_props)
    assert {k: death[k] for k in ("reason", "count", "queue", "exchange")} == {
        "reason": "rejected", "count": 1, "queue": queue, "exchange": exchange,
    }
    assert list(death["routing-keys"]) == [key]
    assert "original-expiration" not in death
    assert headers["x-first-death-reason"] == "rejected"
    assert headers["x-first-death-queue"] == queue
    assert headers["x-first-death-exchange"] == exchange
    assert headers["x-last-death-reason"] == "rejected"
    assert headers["x-last-death-queue"] == queue
    assert headers["x-last-death-exchange"] == exchange
    assert _ready(channel, queue) == 0


def test_hand_built_retry_loop_counts_deaths_in_x_death(
    connection: BlockingConnection, channel: BlockingChannel
) -> None:
    """The classic TTL + DLX retry loop (work rejects into a wait queue whose TTL dead-letters
    back to work) goes round as intended: a consumer rejects each time, so it is no cycle, and
    ``x-death`` keeps one table per (queue, reason) with its ``count``."""
    work, wait = _name("work"), _name("wait")
    channel.queue_declare(
        work, exclusive=True,
        arguments={"x-dead-letter-exchange": "", "x-dead-letter-routing-key": wait},
    )
    channel.queue_declare(
        wait, exclusive=True,
        arguments={
            "x-message-ttl": 100,
            "x-dead-letter-exchange": "",
            "x-dead-letter-routing-key": work,
        },
    )

    def reject_twice(ch: BlockingChannel, method: m.BasicDeliver) -> None:
        if len(got) <= 2:
            ch.basic_reject(method.delivery_tag, requeue=False)
        else:
            ch.basic_ack(method.delivery_tag)

    got = Received(reject_twice)
    channel.basic_consume(work, got)
    channel.basic_publish("", work, b"try me")
    assert _wait_until(connection, lambda: len(got) == 3, timeout=0.2 + 2 * SOON_SECONDS)

    assert got.bodies == [b"try me"] * 3
    headers = _headers(got.messages[2][2])
    deaths = [
        (d["queue"], d["reason"], d["count"], d["exchange"], list(d["routing-keys"]))
        for d in headers["x-death"]
    ]
    assert deaths == [(wait, "expired", 2, "", [wait]), (work, "rejected", 2, "", [work])]
    assert (headers["x-first-death-queue"], headers["x-first-death-reason"]) == (work, "rejected")
    assert (headers["x-last-death-queue"], headers["x-last-death-reason"]) == (wait, "expired")


def test_queue_dead_lettering_expired_messages_to_itself_drops_them(
    connection: BlockingConnection, channel: BlockingChannel
) -> None:
    """A queue whose DLX routes its expired messages back to itself drops them (RabbitMQ's
    cycle detection) instead of looping forever."""
    queue = _name("self-dlx")
    channel.queue_declare(
        queue, exclusive=True,
        arguments={"x-message-ttl": 50, "x-dead-letter-exchange": "", "x-dead-letter-routing-key": queue},
    )
    channel.basic_publish("", queue, b"round and round")
    _settle(connection, 0.5)  # ten TTLs: a looping message would be back in the queue
    assert _ready(channel, queue) == 0
    assert channel.basic_get(queue) == (None, None, None)


# -- 4. expiring RPC requests -----------------------------------------------------------------


@pytest.mark.parametrize("ttl_from", ["queue", "message"])
def test_unserved_rpc_request_times_out_and_is_dead_lettered_expired(
    connection: BlockingConnection, channel: BlockingChannel, ttl_from: str
) -> None:
    """With nobody serving, an RPC call raises ``RpcTimeout`` and its request expires after
    its TTL (``x-message-ttl`` or ``expiration``, not before) into the DLQ, reason ``expired``."""
    queue = _name("rpc")
    dlq = _dead_letter_queue(channel)
    arguments: dict[str, Any] = {"x-dead-letter-exchange": "", "x-dead-letter-routing-key": dlq}
    request_props = None
    if ttl_from == "queue":
        arguments["x-message-ttl"] = 300
    else:
        arguments["x-message-ttl"] = 60_000  # the shorter (the message's own) wins
        request_props = BasicProperties(expiration="300")
    channel.queue_declare(queue, exclusive=True, arguments=arguments)
    dead = Received()
    channel.basic_consume(dlq, dead, auto_ack=True)
    client = RpcClient(connection)

    sent = time.monotonic()
    with pytest.raises(RpcTimeout):
        client.call(queue, b"what time is it?", timeout=1.0, properties=request_props)
    assert time.monotonic() - sent >= 1.0 - CLOCK_SLACK_SECONDS
    assert _wait_until(connection, lambda: len(dead) == 1)

    arrived, _method, props, body = dead.messages[0]
    assert body == b"what time is it?"
    assert arrived - sent >= 0.3 - CLOCK_SLACK_SECONDS
    # Direct reply-to: the broker rewrote reply_to to the client's own pseudo-queue name.
    assert (props.reply_to or "").startswith(client.reply_to) and props.correlation_id
    assert props.expiration is None  # removed, so it does not expire again
    death = _death(props)
    assert death["reason"] == "expired" and death["queue"] == queue and death["count"] == 1
    if ttl_from == "message":
        assert death["original-expiration"] == "300"
    else:
        assert "original-expiration" not in death
    assert _ready(channel, queue) == 0
    assert client.in_flight == 0


@pytest.mark.parametrize("returned_by", ["nack", "channel-close"])
def test_delivered_request_returned_after_its_ttl_is_expired_not_redelivered(
    connection: BlockingConnection,
    channel: BlockingChannel,
    shared_queue: Callable[..., str],
    returned_by: str,
) -> None:
    """A request taken before its TTL and returned (nack with requeue, or its channel closed)
    after it is dead-lettered ``expired`` on the way back, never delivered again."""
    dlq = _dead_letter_queue(channel)
    queue = shared_queue(
        "rpc-requeue",
        {"x-message-ttl": 300, "x-dead-letter-exchange": "", "x-dead-letter-routing-key": dlq},
    )
    worker = connection.channel()
    channel.basic_publish("", queue, b"slow request")
    method, _props, body = worker.basic_get(queue)
    assert method is not None and body == b"slow request"
    _settle(connection, 0.4)  # the worker is slow: the TTL passes while it holds the request
    if returned_by == "nack":
        worker.basic_nack(method.delivery_tag, requeue=True)
    else:
        worker.close()
    dead = Received()
    channel.basic_consume(dlq, dead, auto_ack=True)
    assert _wait_until(connection, lambda: len(dead) == 1)

    assert dead.bodies == [b"slow request"]
    assert _death(dead.messages[0][2])["reason"] == "expired"
    assert channel.basic_get(queue) == (None, None, None)


def test_late_rpc_server_never_gets_expired_requests(
    broker: BrokerProcess,
    connection: BlockingConnection,
    channel: BlockingChannel,
    shared_queue: Callable[..., str],
) -> None:
    """A server that starts after the requests expired serves only fresh requests: the
    stale ones, queued ahead, are never delivered to it."""
    dlq = _dead_letter_queue(channel)
    queue = shared_queue(
        "rpc-late",
        {"x-message-ttl": 200, "x-dead-letter-exchange": "", "x-dead-letter-routing-key": dlq},
    )
    dead = Received()
    channel.basic_consume(dlq, dead, auto_ack=True)
    client = RpcClient(connection)
    stale = [client.call_async(queue, f"stale-{i}".encode(), timeout=0.5) for i in range(5)]
    for call in stale:
        with pytest.raises(RpcTimeout):
            call.result()
    assert _wait_until(connection, lambda: len(dead) == 5)

    seen: list[bytes] = []

    def handler(body: bytes, _props: BasicProperties) -> bytes:
        seen.append(body)
        return b"reply to " + body

    server_connection = BlockingConnection(broker.url)
    try:
        RpcServer(server_connection.channel(), queue, handler)
        fresh = client.call_async(queue, b"fresh", timeout=SOON_SECONDS)
        assert _wait_until(server_connection, lambda: bool(seen))
        assert fresh.result() == b"reply to fresh"
    finally:
        server_connection.close()
    assert seen == [b"fresh"]
    assert sorted(b for b in dead.bodies) == sorted(f"stale-{i}".encode() for i in range(5))


# -- 5. TTL + DLX on many messages (D11) ----------------------------------------------------------


def test_ttl_dlx_many_messages_each_delivered_or_dead_lettered_exactly_once(
    broker: BrokerProcess, connection: BlockingConnection, channel: BlockingChannel
) -> None:
    """2,000 messages with a 200 ms TTL and a slow consumer: every message is either
    delivered or dead-lettered ``expired``, exactly once; none is delivered long after its
    expiry, none goes missing, none is dead-lettered twice (D11, scaled down)."""
    total, ttl = 2_000, 0.2
    queue = _name("ttl-many")
    dlq = _dead_letter_queue(channel)
    channel.queue_declare(
        queue,
        exclusive=True,
        arguments={
            "x-message-ttl": int(ttl * 1000),
            "x-dead-letter-exchange": "",
            "x-dead-letter-routing-key": dlq,
        },
    )
    dead = Received()
    channel.basic_consume(dlq, dead, auto_ack=True)
    # A slow consumer: each message takes 20 ms to "process" before its ack.
    work_channel = connection.channel()
    work_channel.basic_qos(prefetch_count=1)
    acked_at: list[float] = []

    def ack(ch: BlockingChannel, tag: int) -> None:
        ch.basic_ack(tag)
        acked_at.append(time.monotonic())

    delivered = Received(
        lambda ch, method: connection.call_later(0.02, lambda: ack(ch, method.delivery_tag))
    )
    work_channel.basic_consume(queue, delivered)

    publisher = BlockingConnection(broker.url)
    try:
        pub_channel = publisher.channel()
        published_at: dict[bytes, float] = {}
        for i in range(total):
            body = b"m%d" % i
            published_at[body] = time.monotonic()
            pub_channel.basic_publish("", queue, body)
        # A round trip on the channel: every publish before it has been handled.
        pub_channel.exchange_declare("amq.direct", "direct", passive=True)
        # Every message entered the queue by now, so every one has expired by this + TTL.
        all_expired_at = time.monotonic() + ttl
    finally:
        publisher.close()

    assert _wait_until(
        connection, lambda: len(dead) + len(delivered) >= total, timeout=ttl + 3 * SOON_SECONDS
    )
    _settle(connection)  # a duplicate, if any, would come now

    delivered_bodies, dead_bodies = delivered.bodies, dead.bodies
    assert len(dead_bodies) == len(set(dead_bodies)), "dead-lettered twice"
    assert len(delivered_bodies) == len(set(delivered_bodies)), "delivered twice"
    assert not set(dead_bodies) & set(delivered_bodies), "delivered and dead-lettered"
    assert set(dead_bodies) | set(delivered_bodies) == set(published_at), "missing"
    assert len(dead_bodies) > total // 2  # the consumer was slow: most expired
    for arrived, method, _props, body in delivered.messages:
        assert not method.redelivered
        # Delivered before its expiry, so received within the TTL plus transit time.
        assert arrived - published_at[body] < ttl + SOON_SECONDS, body
    # With prefetch 1, delivery i+1 is sent in answer to ack i: an ack sent once every
    # message had expired must not be answered with a delivery.
    late = [i for i in range(1, len(delivered)) if acked_at[i - 1] > all_expired_at + CLOCK_SLACK_SECONDS]
    assert not late, f"deliveries after every message expired: {[delivered.bodies[i] for i in late]}"
    for _t, _method, props, _body in dead.messages:
        death = _death(props)
        assert (death["reason"], death["count"], death["queue"]) == ("expired", 1, queue)
        assert _headers(props)["x-first-death-reason"] == "expired"
    assert _ready(channel, queue) == 0


def test_short_ttl_message_expires_on_time_behind_a_long_ttl_one(
    connection: BlockingConnection, channel: BlockingChannel
) -> None:
    """A message expires at its own deadline wherever it sits: a short-TTL message behind a
    long-TTL one is dead-lettered on time (unlike RabbitMQ's classic queues)."""
    queue = _name("mixed-ttl")
    dlq = _dead_letter_queue(channel)
    channel.queue_declare(
        queue, exclusive=True,
        arguments={"x-dead-letter-exchange": "", "x-dead-letter-routing-key": dlq},
    )
    dead = Received()
    channel.basic_consume(dlq, dead, auto_ack=True)
    channel.basic_publish("", queue, b"long", BasicProperties(expiration="60000"))
    published = time.monotonic()
    channel.basic_publish("", queue, b"short", BasicProperties(expiration="200"))
    assert _wait_until(connection, lambda: len(dead) == 1)

    assert dead.bodies == [b"short"]
    assert dead.messages[0][0] - published >= 0.2 - CLOCK_SLACK_SECONDS
    assert _death(dead.messages[0][2])["original-expiration"] == "200"
    assert _ready(channel, queue) == 1
    assert channel.basic_get(queue, auto_ack=True)[2] == b"long"


# -- 6. max-length --------------------------------------------------------------------------------


def test_max_length_drop_head_dead_letters_oldest_with_reason_maxlen(
    connection: BlockingConnection, channel: BlockingChannel
) -> None:
    """On a full ``x-max-length`` queue (default ``drop-head``) the oldest messages make room
    and are dead-lettered ``maxlen`` in order; the newest stay."""
    queue = _name("latest")
    dlq = _dead_letter_queue(channel)
    channel.queue_declare(
        queue,
        exclusive=True,
        arguments={"x-max-length": 3, "x-dead-letter-exchange": "", "x-dead-letter-routing-key": dlq},
    )
    for i in range(5):
        channel.basic_publish("", queue, b"m%d" % i)
    dead = Received()
    channel.basic_consume(dlq, dead, auto_ack=True)
    assert _wait_until(connection, lambda: len(dead) == 2)

    assert dead.bodies == [b"m0", b"m1"]
    for _t, _method, props, _body in dead.messages:
        assert _death(props)["reason"] == "maxlen"
        assert _death(props)["queue"] == queue
    assert _ready(channel, queue) == 3
    kept = [channel.basic_get(queue, auto_ack=True)[2] for _ in range(3)]
    assert kept == [b"m2", b"m3", b"m4"]


def test_max_length_reject_publish_nacks_publisher_and_does_not_dead_letter(
    channel: BlockingChannel,
) -> None:
    """With ``x-overflow: reject-publish`` a publish to a full queue raises ``NackError`` in
    confirm mode and is not dead-lettered; once there is room publishing works again."""
    queue = _name("bounded")
    dlq = _dead_letter_queue(channel)
    channel.queue_declare(
        queue,
        exclusive=True,
        arguments={
            "x-max-length": 2,
            "x-overflow": "reject-publish",
            "x-dead-letter-exchange": "",
            "x-dead-letter-routing-key": dlq,
        },
    )
    channel.confirm_delivery()
    channel.basic_publish("", queue, b"one")
    channel.basic_publish("", queue, b"two")
    with pytest.raises(NackError):
        channel.basic_publish("", queue, b"three")
    assert _ready(channel, queue) == 2
    assert _ready(channel, dlq) == 0
    assert channel.basic_get(queue, auto_ack=True)[2] == b"one"
    channel.basic_publish("", queue, b"four")
    assert [channel.basic_get(queue, auto_ack=True)[2] for _ in range(2)] == [b"two", b"four"]


def test_max_length_reject_publish_dlx_nacks_and_dead_letters_maxlen(
    connection: BlockingConnection, channel: BlockingChannel
) -> None:
    """With ``x-overflow: reject-publish-dlx`` the refused message is nacked and
    dead-lettered ``maxlen``."""
    queue = _name("bounded-dlx")
    dlq = _dead_letter_queue(channel)
    channel.queue_declare(
        queue,
        exclusive=True,
        arguments={
            "x-max-length": 1,
            "x-overflow": "reject-publish-dlx",
            "x-dead-letter-exchange": "",
            "x-dead-letter-routing-key": dlq,
        },
    )
    channel.confirm_delivery()
    channel.basic_publish("", queue, b"kept")
    with pytest.raises(NackError):
        channel.basic_publish("", queue, b"refused")
    _method, props, body = channel.basic_get(dlq, auto_ack=True)
    assert body == b"refused"
    assert _death(props)["reason"] == "maxlen"
    assert channel.basic_get(queue, auto_ack=True)[2] == b"kept"


# -- 7. delayed delivery ------------------------------------------------------------------------


def test_delayed_exchange_delivers_in_due_order_not_before_delay(
    connection: BlockingConnection, channel: BlockingChannel
) -> None:
    """Messages published to an ``x-delayed-message`` exchange with ``x-delay`` arrive in due
    order (not publish order), each no earlier than its delay; without ``x-delay`` at once."""
    exchange, queue = _name("delayed"), _name("reminders")
    channel.exchange_declare(
        exchange, "x-delayed-message", auto_delete=True, arguments={"x-delayed-type": "direct"}
    )
    channel.queue_declare(queue, exclusive=True)
    channel.queue_bind(queue, exchange, "remind")
    got = Received()
    channel.basic_consume(queue, got, auto_ack=True)

    delays = {b"late": 0.6, b"early": 0.2, b"middle": 0.4, b"now": None}
    published_at: dict[bytes, float] = {}
    for body, delay in delays.items():
        headers = {} if delay is None else {"x-delay": int(delay * 1000)}
        published_at[body] = time.monotonic()
        channel.basic_publish(exchange, "remind", body, BasicProperties(headers=headers))
    # Not routed elsewhere: a key nobody bound gets nothing, delayed or not.
    channel.basic_publish(exchange, "nobody", b"lost", BasicProperties(headers={"x-delay": 100}))
    assert _wait_until(connection, lambda: len(got) == 4, timeout=0.6 + SOON_SECONDS)

    assert got.bodies == [b"now", b"early", b"middle", b"late"]
    for arrived, _method, _props, body in got.messages:
        delay = delays[body] or 0.0
        assert arrived - published_at[body] >= delay - CLOCK_SLACK_SECONDS, body
        assert arrived - published_at[body] < delay + SOON_SECONDS, body
    _settle(connection, 0.2)
    assert len(got) == 4


# -- 8. priority queue --------------------------------------------------------------------------


def test_priority_queue_delivers_highest_first_fifo_within_priority(
    connection: BlockingConnection, channel: BlockingChannel
) -> None:
    """On an ``x-max-priority`` queue higher priorities are consumed first, publish order within
    a priority; no priority counts as 0 and one above the maximum as the maximum."""
    queue = _name("tasks")
    channel.queue_declare(queue, exclusive=True, arguments={"x-max-priority": 10})
    published = [
        (b"low-1", 1), (b"mid-1", 5), (b"none-1", None), (b"low-2", 1), (b"top-1", 9),
        (b"mid-2", 5), (b"over-1", 200), (b"none-2", None), (b"top-2", 9), (b"over-2", 11),
    ]
    for body, priority in published:
        channel.basic_publish("", queue, body, BasicProperties(priority=priority))
    channel.queue_declare(queue, passive=True)  # all enqueued before the consumer starts
    got = Received(lambda ch, method: ch.basic_ack(method.delivery_tag))
    channel.basic_consume(queue, got)
    assert _wait_until(connection, lambda: len(got) == len(published))

    assert got.bodies == [
        b"over-1", b"over-2", b"top-1", b"top-2", b"mid-1", b"mid-2",
        b"low-1", b"low-2", b"none-1", b"none-2",
    ]


# -- 9. consumer ack timeout (D8) -----------------------------------------------------------------


def test_consumer_that_never_acks_holds_prefetch_then_channel_closed_406(
    broker: BrokerProcess, connection: BlockingConnection, channel: BlockingChannel
) -> None:
    """A consumer that never acks holds at most its prefetch (2); after ``x-consumer-timeout``
    its channel is closed with 406 and its messages go to another consumer, redelivered (D8)."""
    queue = _name("reports")
    timeout_ms = 500
    channel.queue_declare(queue, arguments={"x-consumer-timeout": timeout_ms}, auto_delete=False)
    try:
        for i in range(5):
            channel.basic_publish("", queue, b"r%d" % i)

        stuck_connection = BlockingConnection(broker.url)
        try:
            stuck = stuck_connection.channel()
            stuck.basic_qos(prefetch_count=2)
            held: list[bytes] = []
            started = time.monotonic()
            with pytest.raises(ChannelClosedByBroker) as info:
                for method, _props, body in stuck.consume(queue, inactivity_timeout=SOON_SECONDS):
                    assert method is not None and body is not None, "no delivery, no timeout"
                    held.append(body)  # and never acked
                    assert len(held) <= 2
                    if len(held) == 2:
                        assert _ready(channel, queue) == 3  # the rest stay ready
            closed = time.monotonic()
            assert held == [b"r0", b"r1"]
            assert info.value.reply_code == PRECONDITION_FAILED
            assert "timed out" in info.value.reply_text
            assert f"Timeout value used: {timeout_ms} ms" in info.value.reply_text
            assert closed - started >= timeout_ms / 1000 - CLOCK_SLACK_SECONDS
            assert closed - started < timeout_ms / 1000 + SOON_SECONDS
            assert stuck_connection.is_open  # a soft error: only the channel closed
        finally:
            stuck_connection.close()

        got = Received(lambda ch, method: ch.basic_ack(method.delivery_tag))
        channel.basic_consume(queue, got)
        assert _wait_until(connection, lambda: len(got) == 5)
        delivered = {body: method.redelivered for _t, method, _p, body in got.messages}
        assert delivered == {b"r0": True, b"r1": True, b"r2": False, b"r3": False, b"r4": False}
        assert [b for b in got.bodies] == [b"r0", b"r1", b"r2", b"r3", b"r4"]
    finally:
        if channel.is_open:
            channel.queue_delete(queue)
