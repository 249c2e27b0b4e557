"""The ``x-delayed-message`` exchange and ``x-retry-backoff``."""

from __future__ import annotations

import pytest

from amqplike.core import Broker, Channel, RetryBackoff
from amqplike.errors import PRECONDITION_FAILED, ChannelError

from .conftest import RecordingSink, send


def _delayed(ch: Channel, name: str = "delayed", type_: str = "direct") -> None:
    ch.exchange_declare(name, "x-delayed-message", arguments={"x-delayed-type": type_})
    ch.queue_declare("q")
    ch.queue_bind("q", name, "k")


def _count(ch: Channel, queue: str = "q") -> int:
    return ch.queue_declare(queue, passive=True)[1]


# -- x-delayed-message --------------------------------------------------------------------


@pytest.mark.parametrize("arguments", [None, {"x-delayed-type": "nope"}, {"x-delayed-type": 1}])
def test_delayed_exchange_needs_a_type(ch: Channel, arguments: dict[str, object] | None) -> None:
    """x-delayed-type must name an existing exchange type (the plugin's 406)."""
    with pytest.raises(ChannelError) as e:
        ch.exchange_declare("d", "x-delayed-message", arguments=arguments)
    assert e.value.reply_code == PRECONDITION_FAILED
    assert "'x-delayed-type' must be an existing exchange type" in e.value.reply_text


def test_delayed_message_routed_when_due(broker: Broker, ch: Channel) -> None:
    """A message with x-delay is held, then routed by the delayed type at its due time."""
    _delayed(ch)
    send(ch, "k", b"later", exchange="delayed", now=100.0, headers={"x-delay": 5000})
    send(ch, "other-key", b"unrouted", exchange="delayed", now=100.0, headers={"x-delay": 1})
    assert _count(ch) == 0
    assert broker.next_deadline() == pytest.approx(100.001)
    broker.expire(104.999)
    assert _count(ch) == 0
    broker.expire(105.0)
    assert _count(ch) == 1
    assert ch.vhost.delayed == {}


def test_no_delay_routes_at_once(ch: Channel) -> None:
    """Without a positive integer x-delay the message is routed immediately."""
    _delayed(ch)
    send(ch, "k", exchange="delayed")
    send(ch, "k", exchange="delayed", headers={"x-delay": 0})
    send(ch, "k", exchange="delayed", headers={"x-delay": -10})
    send(ch, "k", exchange="delayed", headers={"x-delay": "1000"})
    assert _count(ch) == 4


def test_delayed_order_and_fanout_type(broker: Broker, ch: Channel, sink: RecordingSink) -> None:
    """Delayed messages come out in due order, routed by any delayed type; no cap on delay."""
    _delayed(ch, "d", "fanout")
    ch.basic_consume("q", "c", no_ack=True)
    day_ms = 86_400_000
    for body, delay in [(b"year", 365 * day_ms), (b"3s", 3000), (b"1s", 1000), (b"2s", 2000)]:
        send(ch, "any", body, exchange="d", headers={"x-delay": delay})
    broker.expire(3.0)
    assert sink.bodies == [b"1s", b"2s", b"3s"]
    broker.expire(365 * 86_400.0)
    assert sink.bodies[-1] == b"year"


def test_delayed_publish_confirmed_not_returned(ch: Channel, sink: RecordingSink) -> None:
    """A held message is confirmed at once and never returned, even with mandatory (plugin)."""
    _delayed(ch)
    ch.confirm_select()
    send(ch, "no-such-key", exchange="delayed", headers={"x-delay": 10}, mandatory=True)
    assert [e[0] for e in sink.events] == ["confirmed"]


def test_deleting_the_exchange_drops_held_messages(broker: Broker, ch: Channel) -> None:
    """Messages held by a deleted delayed exchange are gone with it."""
    _delayed(ch)
    send(ch, "k", exchange="delayed", headers={"x-delay": 10})
    ch.exchange_delete("delayed")
    assert ch.vhost.delayed == {}
    broker.expire(1.0)
    assert _count(ch) == 0


def test_delayed_message_ttl_starts_in_the_queue(broker: Broker, ch: Channel) -> None:
    """A delayed message's own TTL counts from when it reaches the queue."""
    _delayed(ch)
    send(ch, "k", exchange="delayed", headers={"x-delay": 1000}, expiration="500")
    broker.expire(1.0)
    assert _count(ch) == 1
    broker.expire(1.5)
    assert _count(ch) == 0


# -- x-retry-backoff ----------------------------------------------------------------------------


def test_backoff_holds_nacked_message_then_restores_its_place(
    broker: Broker, ch: Channel, sink: RecordingSink
) -> None:
    """nack(requeue) holds the message for the backoff, then it is first in line again."""
    ch.queue_declare("q", arguments={"x-retry-backoff": {"type": "fixed", "min": 2000}})
    send(ch, "q", b"first")
    send(ch, "q", b"second")
    got = ch.basic_get("q")
    assert got is not None
    ch.basic_nack(got.delivery_tag, requeue=True)
    assert _count(ch) == 2  # held messages are still in the queue
    ch.basic_qos(prefetch_count=1)
    ch.basic_consume("q", "c")
    assert sink.bodies == [b"second"]
    sink.clear()
    send(ch, "q", b"third")
    ch.basic_ack(2)  # "second"; only "third" is ready
    assert sink.bodies == [b"third"]
    ch.basic_ack(3)
    sink.clear()
    broker.expire(1.999)
    assert sink.bodies == []
    broker.expire(2.0)
    assert sink.bodies == [b"first"]
    assert sink.events[-1][3] is True  # redelivered


def test_backoff_returns_ahead_of_newer_messages(broker: Broker, ch: Channel) -> None:
    """A held message comes back at its original position, before later publishes."""
    ch.queue_declare("q", arguments={"x-retry-backoff": 1000})
    send(ch, "q", b"old")
    got = ch.basic_get("q")
    assert got is not None
    ch.basic_reject(got.delivery_tag, requeue=True)
    send(ch, "q", b"new")
    broker.expire(1.0)
    bodies = []
    while (g := ch.basic_get("q", no_ack=True)) is not None:
        bodies.append(g.message.body)
    assert bodies == [b"old", b"new"]


def test_exponential_backoff_grows_and_caps(broker: Broker, ch: Channel) -> None:
    """Exponential backoff: min, min*m, min*m^2 ... up to max, by delivery count."""
    ch.queue_declare(
        "q",
        arguments={
            "x-retry-backoff": {"type": "exponential", "min": 100, "max": 350, "multiplier": 2}
        },
    )
    send(ch, "q")
    now = 0.0
    waits = []
    for _ in range(4):
        got = ch.basic_get("q")
        assert got is not None
        ch.basic_nack(got.delivery_tag, requeue=True)
        due = broker.next_deadline()
        assert due is not None
        waits.append(round((due - now) * 1000))
        now = due
        broker.expire(now)
    assert waits == [100, 200, 350, 350]


def test_channel_close_is_not_held(broker: Broker, ch: Channel) -> None:
    """Deliveries returned by a closing channel are ready at once (backoff is for nacks)."""
    ch.queue_declare("q", arguments={"x-retry-backoff": 60_000})
    send(ch, "q")
    ch.basic_consume("q", "c")
    ch.close()
    other = ch.connection.open_channel(2, RecordingSink())
    got = other.basic_get("q", no_ack=True)
    assert got is not None and got.redelivered
    assert broker.next_deadline() is None


def test_held_message_still_expires(broker: Broker, ch: Channel) -> None:
    """TTL runs while a message is held back."""
    ch.queue_declare("dlq")
    ch.queue_declare(
        "q",
        arguments={
            "x-retry-backoff": 5000,
            "x-message-ttl": 1000,
            "x-dead-letter-exchange": "",
            "x-dead-letter-routing-key": "dlq",
        },
    )
    send(ch, "q")
    got = ch.basic_get("q")
    assert got is not None
    ch.basic_nack(got.delivery_tag, requeue=True)
    broker.expire(1.0)
    assert (_count(ch), _count(ch, "dlq")) == (0, 1)
    broker.expire(5.0)
    assert _count(ch) == 0


def test_purge_drops_held_messages(broker: Broker, ch: Channel) -> None:
    """queue.purge removes held messages too; they never come back."""
    ch.queue_declare("q", arguments={"x-retry-backoff": 1000})
    send(ch, "q")
    got = ch.basic_get("q")
    assert got is not None
    ch.basic_nack(got.delivery_tag, requeue=True)
    assert ch.queue_purge("q") == 1
    broker.expire(2.0)
    assert _count(ch) == 0


@pytest.mark.parametrize(
    ("backoff", "delays"),
    [
        (RetryBackoff("fixed", 500, 500), [500, 500, 500]),
        (RetryBackoff("linear", 100, 250), [100, 200, 250]),
        (RetryBackoff("exponential", 10, 10_000, 3.0), [10, 30, 90]),
    ],
)
def test_backoff_formulas(backoff: RetryBackoff, delays: list[int]) -> None:
    """delay_ms by delivery count for each kind."""
    assert [backoff.delay_ms(n) for n in (1, 2, 3)] == delays


def test_huge_delivery_count_does_not_overflow() -> None:
    """A message nacked very many times still gets the capped delay."""
    assert RetryBackoff("exponential", 1, 60_000).delay_ms(10**9) == 60_000
