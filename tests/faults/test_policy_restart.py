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
