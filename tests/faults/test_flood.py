"""A publisher flood against the real ``twistd amqplike`` (RELIABILITY.md P7).

A raw-socket publisher sends persistent 1 KiB messages to a durable queue as
fast as the socket takes them and never waits for a confirm, so it can
outrun the store's writer thread.  Publisher flow control stops reading
from its socket while the store's backlog is above the high watermark: the
broker's resident memory stays bounded, and a consumer on its own
connection keeps receiving meanwhile.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import Any

from amqplike.client import BasicProperties
from amqplike.client.sync import BlockingConnection
from amqplike.wire.commands import encode_command
from amqplike.wire.methods import BasicPublish
from tests.e2e.broker import running_broker
from tests.e2e.rawclient import RawClient

#: Messages in the flood and their body size: 300 MB of bodies.
FLOOD_MESSAGES = int(os.environ.get("AMQPLIKE_FLOOD_MESSAGES", "300000"))
BODY_BYTES = 1024
#: Resident memory the broker may reach.  Without flow control this flood took
#: it to 542 MB (367 MB after 146,000 publishes); with the default watermarks
#: (64/32 MiB of backlog) it peaked at 200-300 MB; with the 16 MiB limit the test sets, 270 MB
#: (most of it committed messages waiting for the page-out timer).
RSS_LIMIT_BYTES = int(os.environ.get("AMQPLIKE_FLOOD_RSS_LIMIT", str(400 * 1024 * 1024)))
#: How long the test may flood before it gives up waiting (the flood may be cut short).
FLOOD_SECONDS = 8.0
#: Frames sent per ``sendall``.
CHUNK_MESSAGES = 500
#: Messages waiting for the consumer on its own queue.
SIDE_MESSAGES = 40_000


def _rss_bytes(pid: int) -> int:
    """Resident set size of ``pid`` from ``/proc/PID/statm`` (in pages)."""
    with open(f"/proc/{pid}/statm") as f:
        resident = int(f.read().split()[1])
    return resident * os.sysconf("SC_PAGE_SIZE")


def _publishes(queue: str, count: int) -> bytes:
    frames = encode_command(
        1,
        BasicPublish(exchange="", routing_key=queue),
        BasicProperties(delivery_mode=2),
        b"x" * BODY_BYTES,
    )
    return frames * count


def _flood(raw: RawClient, stop: threading.Event, sent: list[int]) -> None:
    """Publish persistent messages until the flood is done, the socket fails or ``stop``."""
    chunk = _publishes("flood", CHUNK_MESSAGES)
    try:
        while sent[0] < FLOOD_MESSAGES and not stop.is_set():
            raw.send(chunk)
            sent[0] += CHUNK_MESSAGES
    except OSError:
        pass


def test_flood_of_unconfirmed_publishes_keeps_rss_bounded(tmp_path: Path) -> None:
    """P7: a publisher that never waits for confirms is paused by reading less; RSS stays
    under the bound and a consumer on another connection keeps receiving."""
    with running_broker(tmp_path / "data", "--publisher-flow-limit", "16MiB") as broker:
        consumer = BlockingConnection(broker.url)
        channel = consumer.channel()
        channel.queue_declare("flood", durable=True)
        channel.queue_declare("side", durable=True)
        # The consumer drains its own queue, filled before the flood by a
        # connection that then goes away.
        filler = RawClient(broker.port)
        filler.handshake()
        filler.send(_publishes("side", SIDE_MESSAGES))
        filler.close()
        deadline = time.monotonic() + 10
        while channel.queue_declare("side", passive=True).method.message_count < SIDE_MESSAGES:
            assert time.monotonic() < deadline, "the side queue did not fill"
            consumer.process_data_events(0.05)
        channel.basic_qos(prefetch_count=20)
        received: list[int] = [0]

        def on_message(ch: Any, method: Any, properties: object, body: bytes) -> None:
            received[0] += 1
            ch.basic_ack(method.delivery_tag)

        channel.basic_consume("side", on_message)

        raw = RawClient(broker.port, timeout=FLOOD_SECONDS + 30)
        raw.handshake()
        stop = threading.Event()
        sent = [0]
        publisher = threading.Thread(target=_flood, args=(raw, stop, sent), daemon=True)
        pid = broker.process.pid
        peak = _rss_bytes(pid)
        started = time.monotonic()
        publisher.start()
        received_during_flood: list[int] = []
        try:
            while publisher.is_alive() and time.monotonic() - started < FLOOD_SECONDS:
                consumer.process_data_events(0.1)
                received_during_flood.append(received[0])
                peak = max(peak, _rss_bytes(pid))
                assert peak < RSS_LIMIT_BYTES, (
                    f"broker RSS {peak / 1e6:.0f} MB after {sent[0]} publishes"
                )
        finally:
            stop.set()
            raw.close()
            publisher.join(10)
        print(  # noqa: T201 - the figure the docs quote
            f"\nflood: {sent[0]} publishes in {time.monotonic() - started:.1f} s,"
            f" peak RSS {peak / 1e6:.0f} MB, {received[0]} received"
        )
        assert sent[0] >= 50_000, "the flood did not get going"
        # The consumer was served all along, not only once the flood ended.
        assert received_during_flood[len(received_during_flood) // 2] > 0
        assert received[0] > received_during_flood[len(received_during_flood) // 2]
        consumer.close()
