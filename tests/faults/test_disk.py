"""Disk faults against the real ``twistd amqplike`` (RELIABILITY.md D4, D5, D6).

The write errors are injected with ``AMQPLIKE_STORE_FAULTS`` (read by
``amqplike/tap.py``): while a flag file exists, every commit of the store
fails with ENOSPC ("database or disk is full") or EIO ("disk I/O error").
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from amqplike.client import BasicProperties
from amqplike.client.exceptions import NackError
from amqplike.client.sync import BlockingConnection
from amqplike.services.persistence import EXIT_STORE_FAILED, EXIT_STORE_UNUSABLE
from tests.e2e.broker import TWISTD, running_broker
from tests.store.conftest import database_page_size

PERSISTENT = BasicProperties(delivery_mode=2)


@contextmanager
def _faults(spec: str) -> Iterator[None]:
    """Set ``AMQPLIKE_STORE_FAULTS`` for the brokers started in the block."""
    old = os.environ.get("AMQPLIKE_STORE_FAULTS")
    os.environ["AMQPLIKE_STORE_FAULTS"] = spec
    try:
        yield
    finally:
        if old is None:
            del os.environ["AMQPLIKE_STORE_FAULTS"]
        else:
            os.environ["AMQPLIKE_STORE_FAULTS"] = old


def _wait_for(predicate: Any, connection: BlockingConnection, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        connection.process_data_events(0.05)


def test_disk_full_nacks_blocks_lets_consumers_drain_and_resumes(tmp_path: Path) -> None:
    """ENOSPC (D5): publishes are nacked, publishers get connection.blocked, a consumer
    still drains, and publishing resumes without a restart once space is back."""
    flag = tmp_path / "disk-full"
    with _faults(f"enospc:{flag}"), running_broker(tmp_path / "data") as broker:
        connection = BlockingConnection(broker.url)
        events: list[str] = []
        connection.add_on_connection_blocked_callback(lambda c, m: events.append("blocked"))
        connection.add_on_connection_unblocked_callback(lambda c, m: events.append("unblocked"))
        channel = connection.channel()
        channel.queue_declare("q", durable=True)
        channel.confirm_delivery()
        channel.basic_publish("", "q", b"before", properties=PERSISTENT)
        flag.touch()
        with pytest.raises(NackError):
            channel.basic_publish("", "q", b"refused", properties=PERSISTENT)
        _wait_for(lambda: events == ["blocked"], connection)
        with pytest.raises(NackError):
            channel.basic_publish("", "q", b"refused-too", properties=PERSISTENT)
        consumer = BlockingConnection(broker.url).channel()
        method, _, body = consumer.basic_get("q", auto_ack=True)
        assert method is not None and body == b"before"
        flag.unlink()
        _wait_for(lambda: events == ["blocked", "unblocked"], connection)
        channel.basic_publish("", "q", b"after", properties=PERSISTENT)
        connection.close()
        assert broker.stop() == 0
        assert "disk is full" in broker.log_text()
    with running_broker(tmp_path / "data") as broker:
        channel = BlockingConnection(broker.url).channel()
        method, _, body = channel.basic_get("q", auto_ack=True)
        assert body == b"after"
        assert channel.basic_get("q", auto_ack=True)[0] is None


def test_fsync_error_stops_the_broker_and_keeps_what_was_confirmed(tmp_path: Path) -> None:
    """EIO (D6): no confirm after the failed write, a clear log line, a non-zero exit;
    everything confirmed before is there after a restart."""
    flag = tmp_path / "eio"
    with _faults(f"eio:{flag}"), running_broker(tmp_path / "data") as broker:
        channel = BlockingConnection(broker.url).channel()
        channel.queue_declare("q", durable=True)
        channel.confirm_delivery()
        for i in range(10):
            channel.basic_publish("", "q", b"%d" % i, properties=PERSISTENT)
        flag.touch()
        with pytest.raises(Exception) as info:
            channel.basic_publish("", "q", b"lost", properties=PERSISTENT)
        assert not isinstance(info.value, AssertionError)
        assert broker.process.wait(15) == EXIT_STORE_FAILED
        assert "The store failed and will not write again" in broker.log_text()
    with running_broker(tmp_path / "data") as broker:
        channel = BlockingConnection(broker.url).channel()
        bodies = []
        while (got := channel.basic_get("q", auto_ack=True))[0] is not None:
            bodies.append(got[2])
        assert bodies == [b"%d" % i for i in range(10)]


def test_damaged_store_refuses_to_start_unless_told_to_skip(tmp_path: Path) -> None:
    """Corruption in the middle of the file (D4): the broker logs the file and position and
    exits non-zero; with --skip-corrupt it starts."""
    data = tmp_path / "data"
    with running_broker(data) as broker:
        channel = BlockingConnection(broker.url).channel()
        channel.queue_declare("q", durable=True)
        channel.confirm_delivery()
        for i in range(2000):
            channel.basic_publish("", "q", b"%04d" % i * 256, properties=PERSISTENT)
        assert broker.stop() == 0
    store = data / "amqplike.sqlite3"
    page_size = database_page_size(store)
    page = store.stat().st_size // page_size // 2  # a page in the middle: messages
    with store.open("r+b") as f:
        f.seek(page_size * page)
        f.write(os.urandom(page_size))
    result = subprocess.run(
        [TWISTD, "--nodaemon", "--pidfile=", "--logfile=-", "amqplike", "--listen",
         "tcp:0:interface=127.0.0.1", "--data-dir", str(data)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == EXIT_STORE_UNUSABLE, result.stdout + result.stderr
    assert "Refusing to start" in result.stdout and str(store) in result.stdout
    assert f"page {page + 1} at byte {page_size * page}" in result.stdout
    assert "starting on" not in result.stdout
    with running_broker(data, "--skip-corrupt") as broker:
        channel = BlockingConnection(broker.url).channel()
        ok = channel.queue_declare("q", durable=True)
        assert 0 < ok.method.message_count < 2000, broker.log_text()
