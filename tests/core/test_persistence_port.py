"""The core's persistence port: the core imports no store, and without one nothing changes."""

from __future__ import annotations

import subprocess
import sys

from amqplike.core import NO_PERSISTENCE, Broker
from amqplike.properties import BasicProperties
from tests.core.conftest import RecordingSink


def test_core_imports_neither_store_nor_services() -> None:
    """The core reaches the store only through its Persistence port (sans-IO, no Twisted)."""
    probe = (
        "import sys, amqplike.core; "
        "print(sorted(m for m in sys.modules if m.startswith(("
        "'amqplike.store', 'amqplike.services', 'twisted'))))"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], check=True, capture_output=True, text=True
    ).stdout
    assert out.strip() == "[]"


def test_without_persistence_stored_publishes_are_confirmed_at_once() -> None:
    """The default port stores nothing: persistent messages to durable queues are confirmed
    at once and their entries carry no store id."""
    broker = Broker()
    assert broker.persistence is NO_PERSISTENCE
    sink = RecordingSink()
    ch = broker.connect().open_channel(1, sink)
    ch.queue_declare("q", durable=True)
    ch.confirm_select()
    ch.basic_publish("", "q", BasicProperties(delivery_mode=2), b"m")
    assert sink.confirms == [(1, True)]
    entry = broker.vhosts["/"].queues["q"].pop()
    assert entry is not None and entry.message_id == 0
