"""Delayed and dead-lettered persistent messages across crashes of the real broker (issue 5)."""

from __future__ import annotations

import time
from pathlib import Path

from amqplike.client import BasicProperties
from amqplike.client.sync import BlockingChannel, BlockingConnection
from tests.e2e.broker import running_broker

PERSISTENT = BasicProperties(delivery_mode=2)
DLQ_ARGS = {"x-dead-letter-exchange": "dlx"}


def _settle(channel: BlockingChannel) -> None:
    """Wait until everything this connection did so far is on disk.

    The store commits in order, so the confirm of a later persistent
    publish means every earlier operation is committed.
    """
    channel.queue_declare("settle", durable=True)
    channel.confirm_delivery()
    channel.basic_publish("", "settle", b"barrier", properties=PERSISTENT)


def _get_all(channel: BlockingChannel, queue: str) -> list[tuple[bytes, BasicProperties]]:
    out = []
    while True:
        method, props, body = channel.basic_get(queue, auto_ack=True)
        if method is None:
            return out
        out.append((body, props))


def test_delayed_persistent_message_survives_kill_9(tmp_path: Path) -> None:
    """A confirmed persistent delayed message is delivered after a crash, not before its due time."""
    data_dir = tmp_path / "data"
    with running_broker(data_dir) as broker:
        channel = BlockingConnection(broker.url).channel()
        channel.exchange_declare(
            "later", exchange_type="x-delayed-message", durable=True,
            arguments={"x-delayed-type": "direct"},
        )
        channel.queue_declare("due", durable=True)
        channel.queue_bind("due", "later", routing_key="due")
        channel.confirm_delivery()
        published = time.monotonic()
        channel.basic_publish(
            "later", "due", b"wake up",
            properties=BasicProperties(delivery_mode=2, headers={"x-delay": 1500}),
        )
        broker.kill()
    with running_broker(data_dir) as broker:
        connection = BlockingConnection(broker.url)
        channel = connection.channel()
        arrived = None
        for method, _props, body in channel.consume("due", auto_ack=True, inactivity_timeout=10):
            assert method is not None, "the delayed message never arrived"
            arrived = (body, time.monotonic() - published)
            break
        assert arrived is not None
        assert arrived[0] == b"wake up"
        assert arrived[1] >= 1.5
        connection.close()


def test_dead_lettered_persistent_message_survives_kill_9(tmp_path: Path) -> None:
    """A rejected persistent message moved to a durable DLQ is there after a crash, exactly once."""
    data_dir = tmp_path / "data"
    with running_broker(data_dir) as broker:
        channel = BlockingConnection(broker.url).channel()
        channel.exchange_declare("dlx", exchange_type="fanout", durable=True)
        channel.queue_declare("dead", durable=True)
        channel.queue_bind("dead", "dlx")
        channel.queue_declare("work", durable=True, arguments=DLQ_ARGS)
        channel.basic_publish("", "work", b"poison", properties=PERSISTENT)
        method, _props, _body = channel.basic_get("work")
        assert method is not None
        channel.basic_reject(method.delivery_tag, requeue=False)
        _settle(channel)
        broker.kill()
    with running_broker(data_dir) as broker:
        channel = BlockingConnection(broker.url).channel()
        channel.queue_declare("work", durable=True, arguments=DLQ_ARGS)
        assert _get_all(channel, "work") == []
        dead = _get_all(channel, "dead")
        assert [body for body, _ in dead] == [b"poison"]
        (death,) = dead[0][1].headers["x-death"]
        assert (death["reason"], death["queue"], death["count"]) == ("rejected", "work", 1)


def test_ttl_counts_from_the_publish_across_a_restart(tmp_path: Path) -> None:
    """A persistent message's TTL does not restart with the broker: one whose deadline
    passed while it was down is dead-lettered "expired" at start, once; a long one survives."""
    data_dir = tmp_path / "data"
    work_args = {"x-dead-letter-exchange": "dlx", "x-message-ttl": 1500}
    with running_broker(data_dir) as broker:
        channel = BlockingConnection(broker.url).channel()
        channel.exchange_declare("dlx", exchange_type="fanout", durable=True)
        channel.queue_declare("dead", durable=True)
        channel.queue_bind("dead", "dlx")
        channel.queue_declare("work", durable=True, arguments=work_args)
        channel.queue_declare("own", durable=True, arguments=DLQ_ARGS)
        channel.queue_declare("long", durable=True)
        channel.confirm_delivery()
        published = time.monotonic()
        for i in range(3):
            channel.basic_publish("", "work", b"queue-ttl-%d" % i, properties=PERSISTENT)
        channel.basic_publish(
            "", "own", b"own-ttl",
            properties=BasicProperties(delivery_mode=2, expiration="1500"),
        )
        channel.basic_publish(
            "", "long", b"long-ttl",
            properties=BasicProperties(delivery_mode=2, expiration="600000"),
        )
    # The block's exit stopped the broker with SIGTERM (a clean shut-down).
    time.sleep(max(0.0, published + 2.0 - time.monotonic()))
    with running_broker(data_dir) as broker:
        channel = BlockingConnection(broker.url).channel()
        assert _get_all(channel, "work") == []
        assert _get_all(channel, "own") == []
        dead = _get_all(channel, "dead")
        assert sorted(body for body, _ in dead) == [
            b"own-ttl", b"queue-ttl-0", b"queue-ttl-1", b"queue-ttl-2",
        ]
        for body, props in dead:
            (death,) = props.headers["x-death"]
            assert death["reason"] == "expired", body
            assert death["queue"] == ("own" if body == b"own-ttl" else "work")
        assert [body for body, _ in _get_all(channel, "long")] == [b"long-ttl"]
