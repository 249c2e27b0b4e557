"""Dead-lettering: reasons, the x-death header as RabbitMQ keeps it, and cycle cuts."""

from __future__ import annotations

from typing import Any

from amqplike.core import Broker, Channel, Connection, Message
from amqplike.properties import BasicProperties

from .conftest import RecordingSink, send


def _dlq(ch: Channel, queue: str = "q", dlx: str = "dlx", **extra: Any) -> None:
    """Declare ``queue`` dead-lettering to fanout ``dlx`` bound to queue ``dlq``."""
    ch.exchange_declare(dlx, "fanout")
    ch.queue_declare("dlq")
    ch.queue_bind("dlq", dlx)
    ch.queue_declare(queue, arguments={"x-dead-letter-exchange": dlx, **extra})


def _dead(ch: Channel, queue: str = "dlq") -> Message:
    got = ch.basic_get(queue, no_ack=True)
    assert got is not None
    return got.message


def _headers(message: Message) -> dict[str, Any]:
    return dict(message.properties.headers or {})


def test_rejected_message_dead_lettered_with_x_death(broker: Broker, ch: Channel) -> None:
    """reject(requeue=False) republishes to the DLX with RabbitMQ's x-death and first/last headers."""
    _dlq(ch)
    send(ch, "q", b"m", now=1234.5, headers={"app": 1})
    got = ch.basic_get("q")
    assert got is not None
    ch.basic_reject(got.delivery_tag, requeue=False)
    dead = _dead(ch)
    assert (dead.exchange, dead.routing_key, dead.body) == ("dlx", "q", b"m")
    assert _headers(dead) == {
        "app": 1,
        "x-death": [
            {
                "count": 1,
                "reason": "rejected",
                "queue": "q",
                "time": 1234,
                "exchange": "",
                "routing-keys": ["q"],
            }
        ],
        "x-first-death-exchange": "",
        "x-first-death-queue": "q",
        "x-first-death-reason": "rejected",
        "x-last-death-exchange": "",
        "x-last-death-queue": "q",
        "x-last-death-reason": "rejected",
    }


def test_nack_without_requeue_dead_letters(ch: Channel) -> None:
    """basic.nack with requeue=False is a rejection too."""
    _dlq(ch)
    send(ch, "q")
    got = ch.basic_get("q")
    assert got is not None
    ch.basic_nack(got.delivery_tag, requeue=False)
    assert _headers(_dead(ch))["x-death"][0]["reason"] == "rejected"


def test_dead_letter_routing_key(ch: Channel) -> None:
    """x-dead-letter-routing-key replaces the routing key (and drops CC)."""
    ch.exchange_declare("dlx", "direct")
    ch.queue_declare("dlq")
    ch.queue_bind("dlq", "dlx", "dead")
    ch.queue_declare(
        "q", arguments={"x-dead-letter-exchange": "dlx", "x-dead-letter-routing-key": "dead"}
    )
    send(ch, "q", headers={"CC": ["other"]})
    got = ch.basic_get("q")
    assert got is not None
    ch.basic_reject(got.delivery_tag, requeue=False)
    dead = _dead(ch)
    assert dead.routing_key == "dead"
    assert "CC" not in _headers(dead)
    assert _headers(dead)["x-death"][0]["routing-keys"] == ["q"]


def test_expired_dead_lettered_without_expiration(broker: Broker, ch: Channel) -> None:
    """An expired message is dead-lettered 'expired'; its expiration is removed and recorded."""
    _dlq(ch)
    send(ch, "q", expiration="100")
    broker.expire(0.1)
    dead = _dead(ch)
    assert dead.properties.expiration is None
    death = _headers(dead)["x-death"][0]
    assert (death["reason"], death["original-expiration"]) == ("expired", "100")


def test_queue_ttl_dead_letter_has_no_original_expiration(broker: Broker, ch: Channel) -> None:
    """Only a per-message TTL is recorded as original-expiration (as RabbitMQ)."""
    _dlq(ch, **{"x-message-ttl": 50})
    send(ch, "q")
    broker.expire(0.05)
    assert "original-expiration" not in _headers(_dead(ch))["x-death"][0]


def test_x_death_counts_and_order(broker: Broker, ch: Channel) -> None:
    """A second death in the same (queue, reason) increments count and moves the entry first."""
    # work --reject--> retry (TTL) --expire--> work ...: the classic retry loop.
    ch.queue_declare(
        "work",
        arguments={"x-dead-letter-exchange": "", "x-dead-letter-routing-key": "retry"},
    )
    ch.queue_declare(
        "retry",
        arguments={
            "x-dead-letter-exchange": "",
            "x-dead-letter-routing-key": "work",
            "x-message-ttl": 1000,
        },
    )
    send(ch, "work", b"job", now=0.0)
    for round_ in range(3):
        got = ch.basic_get("work")
        assert got is not None, round_
        ch.basic_reject(got.delivery_tag, requeue=False)
        broker.expire(float(round_ + 1))
    got = ch.basic_get("work")
    assert got is not None
    headers = _headers(got.message)
    deaths = headers["x-death"]
    assert [(d["queue"], d["reason"], d["count"]) for d in deaths] == [
        ("retry", "expired", 3),
        ("work", "rejected", 3),
    ]
    # The kept entry is the first death's (time 0), as RabbitMQ 3.x keeps it.
    assert deaths[1]["time"] == 0
    assert (headers["x-first-death-queue"], headers["x-first-death-reason"]) == ("work", "rejected")
    assert (headers["x-last-death-queue"], headers["x-last-death-reason"]) == ("retry", "expired")


def test_expiry_cycle_is_cut(broker: Broker, ch: Channel) -> None:
    """A message that would expire round a cycle with no rejection is dropped (RabbitMQ)."""
    ch.queue_declare(
        "a",
        arguments={
            "x-dead-letter-exchange": "",
            "x-dead-letter-routing-key": "b",
            "x-message-ttl": 10,
        },
    )
    ch.queue_declare(
        "b",
        arguments={
            "x-dead-letter-exchange": "",
            "x-dead-letter-routing-key": "a",
            "x-message-ttl": 10,
        },
    )
    send(ch, "a")
    broker.expire(0.01)
    assert (ch.vhost.queues["a"].message_count, ch.vhost.queues["b"].message_count) == (0, 1)
    broker.expire(0.02)
    assert (ch.vhost.queues["a"].message_count, ch.vhost.queues["b"].message_count) == (0, 0)
    assert broker.next_deadline() is None


def test_self_dead_lettering_on_expiry_is_a_cycle(broker: Broker, ch: Channel) -> None:
    """A queue dead-lettering expired messages to itself drops them."""
    ch.queue_declare("q", arguments={"x-dead-letter-exchange": "", "x-message-ttl": 10})
    send(ch, "q")
    broker.expire(1.0)
    assert ch.queue_declare("q", passive=True)[1] == 0


def test_rejection_is_never_a_cycle(ch: Channel) -> None:
    """A rejected message may be dead-lettered back into its own queue."""
    ch.queue_declare("q", arguments={"x-dead-letter-exchange": ""})
    send(ch, "q")
    for _ in range(3):
        got = ch.basic_get("q")
        assert got is not None
        ch.basic_reject(got.delivery_tag, requeue=False)
    got = ch.basic_get("q")
    assert got is not None
    assert _headers(got.message)["x-death"][0]["count"] == 3


def test_missing_dead_letter_exchange_drops(ch: Channel) -> None:
    """With the DLX missing the message is simply dropped."""
    ch.queue_declare("q", arguments={"x-dead-letter-exchange": "nowhere"})
    send(ch, "q")
    got = ch.basic_get("q")
    assert got is not None
    ch.basic_reject(got.delivery_tag, requeue=False)
    assert ch.queue_declare("q", passive=True)[1] == 0


def test_shared_message_not_mutated(ch: Channel) -> None:
    """Dead-lettering a fanned-out message leaves the copy in the other queue untouched."""
    _dlq(ch)
    ch.queue_declare("other")
    ch.queue_bind("q", "amq.fanout")
    ch.queue_bind("other", "amq.fanout")
    send(ch, "", b"m", exchange="amq.fanout", headers={"k": "v"})
    got = ch.basic_get("q")
    assert got is not None
    ch.basic_reject(got.delivery_tag, requeue=False)
    other = ch.basic_get("other")
    assert other is not None
    assert other.message.properties.headers == {"k": "v"}
    assert other.message is got.message


def test_ttl_and_dlx_on_10k_messages(broker: Broker, conn: Connection) -> None:
    """D11: none of 10,000 expired messages is delivered; each is dead-lettered once, 'expired'."""
    publisher = conn.open_channel(1, RecordingSink())
    consumer_sink = RecordingSink()
    consumer = conn.open_channel(2, consumer_sink)
    dead_sink = RecordingSink()
    dead = conn.open_channel(3, dead_sink)
    _dlq(publisher, **{"x-message-ttl": 1000})
    for i in range(10_000):
        send(publisher, "q", str(i).encode(), now=i / 10_000)
    dead.basic_consume("dlq", "d", no_ack=True)
    for step in range(1, 21):
        broker.expire(1.0 + step / 20)
    consumer.basic_consume("q", "c", no_ack=True)
    assert consumer_sink.bodies == []
    assert sorted(int(b) for b in dead_sink.bodies) == list(range(10_000))
    for message in dead_sink.messages:
        (death,) = (message.properties.headers or {})["x-death"]
        assert (death["reason"], death["count"]) == ("expired", 1)


def test_properties_kept_on_dead_letter(ch: Channel) -> None:
    """Dead-lettered messages keep their properties except expiration."""
    _dlq(ch)
    props = BasicProperties(
        content_type="text/plain",
        delivery_mode=2,
        correlation_id="c1",
        expiration="60000",
        priority=3,
    )
    ch.basic_publish("", "q", props, b"m", now=0.0)
    got = ch.basic_get("q")
    assert got is not None
    ch.basic_reject(got.delivery_tag, requeue=False)
    dead = _dead(ch).properties
    assert (dead.content_type, dead.delivery_mode, dead.correlation_id, dead.priority) == (
        "text/plain",
        2,
        "c1",
        3,
    )
    assert dead.expiration is None
