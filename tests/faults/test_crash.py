"""Durability against real crashes: ``kill -9`` the real broker while publishers wait for confirms.

RELIABILITY.md row D1: lost must be 0 for every confirmed message,
nothing unexpected appears, and duplicates may only be messages that were
unconfirmed when the broker died.
"""

from __future__ import annotations

import random
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from amqplike.client import BasicProperties
from amqplike.client.exceptions import ChannelClosedByBroker
from amqplike.client.sync import BlockingConnection
from amqplike.errors import NOT_FOUND
from tests.e2e.broker import running_broker
from tests.faults.checker import check

PUBLISHER = str(Path(__file__).with_name("publisher.py"))
PERSISTENT = BasicProperties(delivery_mode=2)
QUEUES = [f"crash-{k}" for k in range(3)]


def _drain(
    url: str, queue: str, arguments: dict[str, object] | None = None
) -> list[tuple[str, bool]]:
    connection = BlockingConnection(url)
    channel = connection.channel()
    channel.queue_declare(queue, durable=True, arguments=arguments)
    got = []
    while True:
        method, _props, body = channel.basic_get(queue, auto_ack=True)
        if method is None:
            break
        got.append((body.decode(), method.redelivered))
    connection.close()
    return got


def test_kill_9_loses_no_confirmed_message(
    tmp_path: Path, record_property: Callable[[str, object], None]
) -> None:
    """Three kills during confirmed persistent publishing lose nothing that was confirmed (D1)."""
    rng = random.Random()
    data_dir = tmp_path / "data"
    attempted: set[str] = set()
    confirmed: set[str] = set()
    unconfirmed_at_kill: set[str] = set()
    restart_seconds = []
    for round_ in range(3):
        started = time.monotonic()
        with running_broker(data_dir) as broker:
            restart_seconds.append(time.monotonic() - started)
            publishers = [
                subprocess.Popen(
                    [sys.executable, PUBLISHER, broker.url, queue, f"r{round_}q{k}", "1000000"],
                    stdout=subprocess.PIPE,
                    text=True,
                )
                for k, queue in enumerate(QUEUES)
            ]
            # the kill lands at a random moment of the publishing
            time.sleep(rng.uniform(0.5, 1.5))
            broker.kill()
            for publisher in publishers:
                out, _ = publisher.communicate(timeout=60)
                round_attempted = {line[2:] for line in out.splitlines() if line.startswith("A ")}
                round_confirmed = {line[2:] for line in out.splitlines() if line.startswith("C ")}
                attempted |= round_attempted
                confirmed |= round_confirmed
                unconfirmed_at_kill |= round_attempted - round_confirmed
    with running_broker(data_dir) as broker:
        received = [body for queue in QUEUES for body, _ in _drain(broker.url, queue)]
    verdict = check(attempted, confirmed, received)
    assert verdict.confirmed > 100, verdict.summary()
    assert verdict.lost == frozenset(), verdict.summary()
    assert verdict.unexpected == frozenset(), verdict.summary()
    assert verdict.duplicated <= unconfirmed_at_kill, verdict.summary()
    record_property("verdict", verdict.summary())
    record_property("restart_seconds", [round(s, 2) for s in restart_seconds])


def _publish_confirmed(url: str, queue: str, bodies: list[bytes]) -> None:
    connection = BlockingConnection(url)
    channel = connection.channel()
    channel.queue_declare(queue, durable=True)
    channel.confirm_delivery()
    for body in bodies:
        channel.basic_publish("", queue, body, properties=PERSISTENT)
    connection.close()


def test_unacked_at_crash_come_back_redelivered(tmp_path: Path) -> None:
    """Delivered but unacked persistent messages survive a kill -9 and return with redelivered=True."""
    data_dir = tmp_path / "data"
    bodies = [f"m{i}".encode() for i in range(6)]
    with running_broker(data_dir) as broker:
        _publish_confirmed(broker.url, "held", bodies)
        connection = BlockingConnection(broker.url)
        channel = connection.channel()
        got = []
        for method, _props, body in channel.consume("held", inactivity_timeout=2):
            assert method is not None
            got.append(body)
            if len(got) == len(bodies):
                break
        assert got == bodies
        broker.kill()
    with running_broker(data_dir) as broker:
        assert _drain(broker.url, "held") == [(b.decode(), True) for b in bodies]


def test_acked_messages_do_not_come_back_after_clean_restart(tmp_path: Path) -> None:
    """Acked persistent messages are gone after a restart; the unacked rest returns, in order."""
    data_dir = tmp_path / "data"
    bodies = [f"m{i}".encode() for i in range(10)]
    with running_broker(data_dir) as broker:
        _publish_confirmed(broker.url, "half", bodies)
        connection = BlockingConnection(broker.url)
        channel = connection.channel()
        for _ in range(4):
            method, _props, _body = channel.basic_get("half")
            assert method is not None
            channel.basic_ack(method.delivery_tag)
        channel.queue_declare("half", passive=True)  # a round trip: the acks were read
        assert broker.stop() == 0
    with running_broker(data_dir) as broker:
        assert [body for body, _ in _drain(broker.url, "half")] == [b.decode() for b in bodies[4:]]


def test_topology_survives_restart(tmp_path: Path) -> None:
    """Durable exchanges, queues and bindings (with arguments, and exchange to exchange) survive;
    transient and exclusive ones do not."""
    data_dir = tmp_path / "data"
    with running_broker(data_dir) as broker:
        connection = BlockingConnection(broker.url)
        channel = connection.channel()
        channel.exchange_declare("events", exchange_type="topic", durable=True)
        channel.exchange_declare("front", exchange_type="direct", durable=True)
        channel.exchange_bind("events", "front", routing_key="order.paid")
        channel.exchange_declare("by-header", exchange_type="headers", durable=True)
        channel.queue_declare("orders", durable=True, arguments={"x-custom": 1})
        channel.queue_bind("orders", "events", routing_key="order.*")
        channel.queue_bind("orders", "by-header", arguments={"x-match": "any", "kind": "order"})
        channel.queue_declare("scratch", durable=False)
        channel.exchange_declare("temp", durable=False)
        exclusive = channel.queue_declare("", exclusive=True).method.queue
        connection.close()
        assert broker.stop() == 0
    with running_broker(data_dir) as broker:
        connection = BlockingConnection(broker.url)
        channel = connection.channel()
        ok = channel.queue_declare("orders", durable=True, arguments={"x-custom": 1})
        assert ok.method.queue == "orders"
        channel.confirm_delivery()
        channel.basic_publish("events", "order.new", b"via-topic", mandatory=True)
        channel.basic_publish("front", "order.paid", b"via-exchange-binding", mandatory=True)
        channel.basic_publish(
            "by-header", "", b"via-headers", mandatory=True,
            properties=BasicProperties(headers={"kind": "order"}),
        )
        assert [body for body, _ in _drain(broker.url, "orders", {"x-custom": 1})] == [
            "via-topic",
            "via-exchange-binding",
            "via-headers",
        ]
        for kind, name in [("queue", "scratch"), ("queue", exclusive), ("exchange", "temp")]:
            check_channel = connection.channel()
            with pytest.raises(ChannelClosedByBroker) as info:
                if kind == "queue":
                    check_channel.queue_declare(name, passive=True)
                else:
                    check_channel.exchange_declare(name, passive=True)
            assert info.value.reply_code == NOT_FOUND
        connection.close()
