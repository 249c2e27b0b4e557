"""Queue limits and overflow modes, delivery limits, and queue argument validation."""

from __future__ import annotations

from typing import Any

import pytest

from amqplike.core import Broker, Channel
from amqplike.errors import PRECONDITION_FAILED, ChannelError

from .conftest import RecordingSink, send


def _with_dlq(ch: Channel, queue: str, **arguments: Any) -> None:
    ch.queue_declare("dlq")
    ch.queue_declare(
        queue,
        arguments={"x-dead-letter-exchange": "", "x-dead-letter-routing-key": "dlq", **arguments},
    )


def _drain(ch: Channel, queue: str) -> list[tuple[bytes, str]]:
    """``(body, last death reason)`` of everything in ``queue``."""
    out = []
    while (got := ch.basic_get(queue, no_ack=True)) is not None:
        headers = got.message.properties.headers or {}
        out.append((got.message.body, headers.get("x-last-death-reason", "")))
    return out


# -- x-max-length / x-max-length-bytes / x-overflow ------------------------------------


def test_drop_head_dead_letters_the_oldest(ch: Channel) -> None:
    """x-max-length with drop-head (default): the head goes, dead-lettered 'maxlen'."""
    _with_dlq(ch, "q", **{"x-max-length": 2})
    for body in (b"1", b"2", b"3"):
        send(ch, "q", body)
    assert _drain(ch, "q") == [(b"2", ""), (b"3", "")]
    assert _drain(ch, "dlq") == [(b"1", "maxlen")]


def test_max_length_bytes(ch: Channel) -> None:
    """x-max-length-bytes counts ready body bytes."""
    ch.queue_declare("q", arguments={"x-max-length-bytes": 10})
    send(ch, "q", b"aaaa")
    send(ch, "q", b"bbbb")
    send(ch, "q", b"cccc")
    assert [b for b, _ in _drain(ch, "q")] == [b"bbbb", b"cccc"]


def test_unacked_messages_do_not_count(ch: Channel, sink: RecordingSink) -> None:
    """Only ready messages count toward x-max-length (RabbitMQ)."""
    ch.queue_declare("q", arguments={"x-max-length": 1})
    ch.basic_qos(prefetch_count=1)
    ch.basic_consume("q", "c")
    send(ch, "q", b"1")
    send(ch, "q", b"2")
    assert sink.bodies == [b"1"]
    assert ch.queue_declare("q", passive=True)[1] == 1


def test_delivered_at_once_not_dropped(ch: Channel, sink: RecordingSink) -> None:
    """x-max-length 0 with drop-head still lets a message through to a waiting consumer."""
    ch.queue_declare("q", arguments={"x-max-length": 0})
    ch.basic_consume("q", "c", no_ack=True)
    send(ch, "q", b"1")
    assert sink.bodies == [b"1"]


def test_reject_publish_nacks_the_publisher(ch: Channel, sink: RecordingSink) -> None:
    """x-overflow reject-publish: the new message is refused and nacked in confirm mode."""
    ch.queue_declare("q", arguments={"x-max-length": 1, "x-overflow": "reject-publish"})
    ch.confirm_select()
    send(ch, "q", b"1")
    send(ch, "q", b"2")
    assert sink.confirms == [(1, True), (2, False)]
    assert [b for b, _ in _drain(ch, "q")] == [b"1"]
    send(ch, "q", b"3")
    assert sink.confirms[-1] == (3, True)


def test_reject_publish_dlx(ch: Channel, sink: RecordingSink) -> None:
    """reject-publish-dlx: the refused message is nacked and dead-lettered 'maxlen'."""
    _with_dlq(ch, "q", **{"x-max-length": 1, "x-overflow": "reject-publish-dlx"})
    ch.confirm_select()
    send(ch, "q", b"1")
    send(ch, "q", b"2")
    assert sink.confirms == [(1, True), (2, False)]
    assert _drain(ch, "dlq") == [(b"2", "maxlen")]


def test_reject_publish_plain_reject_is_not_dead_lettered(ch: Channel) -> None:
    """reject-publish drops the refused message even with a DLX."""
    _with_dlq(ch, "q", **{"x-max-length": 0, "x-overflow": "reject-publish"})
    send(ch, "q", b"1")
    assert _drain(ch, "dlq") == []


def test_nack_if_any_queue_refuses(ch: Channel, sink: RecordingSink) -> None:
    """A message routed to several queues is nacked when one of them refuses it."""
    ch.queue_declare("full", arguments={"x-max-length": 0, "x-overflow": "reject-publish"})
    ch.queue_declare("open")
    ch.queue_bind("full", "amq.fanout")
    ch.queue_bind("open", "amq.fanout")
    ch.confirm_select()
    send(ch, "", exchange="amq.fanout")
    assert sink.confirms == [(1, False)]
    assert ch.queue_declare("open", passive=True)[1] == 1


def test_requeue_over_the_limit_drops_head(ch: Channel) -> None:
    """A requeue that takes the queue over x-max-length drops from the head (RabbitMQ)."""
    ch.queue_declare("q", arguments={"x-max-length": 1})
    send(ch, "q", b"1")
    got = ch.basic_get("q")
    send(ch, "q", b"2")
    assert got is not None
    ch.basic_reject(got.delivery_tag, requeue=True)
    assert [b for b, _ in _drain(ch, "q")] == [b"2"]


# -- x-delivery-limit and x-delivery-count -------------------------------------------------


def test_delivery_limit_dead_letters_poison_message(ch: Channel, sink: RecordingSink) -> None:
    """D9: redelivered more than x-delivery-limit times, the message is dead-lettered."""
    _with_dlq(ch, "q", **{"x-delivery-limit": 2})
    send(ch, "q", b"poison")
    send(ch, "q", b"good")
    ch.basic_qos(prefetch_count=1)
    ch.basic_consume("q", "c")
    seen = []
    while sink.events:
        event = sink.events.pop(0)
        if event[0] != "deliver":
            continue
        message = event[4]
        seen.append((message.body, (message.properties.headers or {}).get("x-delivery-count")))
        if message.body == b"poison":
            ch.basic_nack(event[2], requeue=True)
        else:
            ch.basic_ack(event[2])
    assert seen == [(b"poison", None), (b"poison", 1), (b"poison", 2), (b"good", None)]
    dead = _drain(ch, "dlq")
    assert dead == [(b"poison", "delivery_limit")]


def test_delivery_limit_zero(ch: Channel) -> None:
    """x-delivery-limit 0: the first return dead-letters."""
    _with_dlq(ch, "q", **{"x-delivery-limit": 0})
    send(ch, "q")
    got = ch.basic_get("q")
    assert got is not None
    ch.basic_reject(got.delivery_tag, requeue=True)
    assert ch.queue_declare("q", passive=True)[1] == 0
    assert _drain(ch, "dlq") == [(b"x", "delivery_limit")]


def test_delivery_limit_counts_channel_close_returns(conn: Any) -> None:
    """Messages returned by a closing channel count as deliveries too (quorum queues)."""
    ch = conn.open_channel(1, RecordingSink())
    _with_dlq(ch, "q", **{"x-delivery-limit": 0})
    send(ch, "q")
    ch.basic_consume("q", "c")
    ch.close()
    other = conn.open_channel(2, RecordingSink())
    assert other.queue_declare("q", passive=True)[1] == 0
    assert other.queue_declare("dlq", passive=True)[1] == 1


def test_delivery_count_header_on_plain_queue(ch: Channel, sink: RecordingSink) -> None:
    """Redeliveries carry x-delivery-count on any queue; first deliveries are the shared message."""
    ch.queue_declare("q")
    send(ch, "q", headers={"app": "kept"})
    ch.basic_consume("q", "c")
    ch.basic_recover()
    first, second = sink.messages
    assert first.properties.headers == {"app": "kept"}
    assert second.properties.headers == {"app": "kept", "x-delivery-count": 1}


# -- argument validation ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "value", "reason"),
    [
        ("x-max-length", "10", "{unacceptable_type,longstr}"),
        ("x-max-length", -1, "{value_negative,-1}"),
        ("x-max-length", True, "{unacceptable_type,bool}"),
        ("x-max-length-bytes", 1.5, "{unacceptable_type,double}"),
        ("x-message-ttl", -5, "{value_negative,-5}"),
        ("x-expires", 0, "{value_zero,0}"),
        ("x-overflow", "drop-tail", '{invalid_overflow,<<"drop-tail">>}'),
        ("x-dead-letter-exchange", 5, "{unacceptable_type,long}"),
        ("x-delivery-limit", "3", "{unacceptable_type,longstr}"),
        ("x-consumer-timeout", -1, "{value_negative,-1}"),
        ("x-max-priority", 0, "{value_zero,0}"),
        ("x-max-priority", 256, "{max_value_exceeded,256}"),
        ("x-retry-backoff", "fast", "{unacceptable_type,longstr}"),
        ("x-retry-backoff", {"type": "cubic", "min": 1}, '{invalid_type,<<"cubic">>}'),
        ("x-retry-backoff", {"type": "linear"}, '{missing_field,<<"min">>}'),
        ("x-retry-backoff", {"min": 100, "max": 10}, "{max_below_min,10}"),
        ("x-retry-backoff", {"min": 1, "multiplier": 0.5}, "{invalid_multiplier,0.5}"),
        ("x-retry-backoff", {"min": 1, "jitter": 1}, '{unknown_field,<<"jitter">>}'),
    ],
)
def test_invalid_queue_arguments(ch: Channel, key: str, value: Any, reason: str) -> None:
    """Bad argument values are 406 with RabbitMQ's 'invalid arg' text; nothing is declared."""
    with pytest.raises(ChannelError) as e:
        ch.queue_declare("q", arguments={key: value})
    assert e.value.reply_code == PRECONDITION_FAILED
    assert e.value.reply_text == (
        f"PRECONDITION_FAILED - invalid arg '{key}' for queue 'q' in vhost '/': {reason}"
    )
    assert "q" not in ch.vhost.queues


def test_dead_letter_routing_key_needs_exchange(ch: Channel) -> None:
    """x-dead-letter-routing-key without x-dead-letter-exchange is refused."""
    with pytest.raises(ChannelError) as e:
        ch.queue_declare("q", arguments={"x-dead-letter-routing-key": "k"})
    assert e.value.reply_text.endswith(": routing_key_but_no_dlx_defined")


def test_unknown_arguments_keep_the_fast_path(ch: Channel) -> None:
    """Arguments we do not know are accepted and give no policy, as in RabbitMQ."""
    ch.queue_declare("q", arguments={"x-queue-type": "classic", "x-custom": [1, 2]})
    queue = ch.vhost.queues["q"]
    assert queue.policy is None
    assert queue._plain


def test_policy_parsed(broker: Broker, ch: Channel) -> None:
    """A queue's arguments become its policy."""
    ch.queue_declare(
        "q", arguments={"x-max-length": 5, "x-overflow": "reject-publish", "x-retry-backoff": 250}
    )
    policy = ch.vhost.queues["q"].policy
    assert policy is not None
    assert (policy.max_length, policy.overflow) == (5, "reject-publish")
    assert policy.retry_backoff is not None
    assert policy.retry_backoff.delay_ms(7) == 250
