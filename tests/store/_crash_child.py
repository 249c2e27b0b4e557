"""The process the kill -9 test kills: a publisher with confirms, acks and deliveries.

Run as ``python -m tests.store._crash_child PATH RUN [INTERVAL_SECONDS]`` (with
an interval, the store runs in its relaxed ``--sync interval`` mode).  It loads the store
at PATH and then, until killed, appends messages with the store's ids as
confirm tokens, and prints one line per event *after* the store reported
it committed:

- ``C <id>``: message ``<id>`` is on disk (it went to q1, and to q2 if the
  id is even); its body is ``r<RUN>-m<id>`` repeated.
- ``A <id>``: its removal from q1 (an ack; ids divisible by 3) is on disk.
- ``D <id>``: its delivery count 1 in q1 (ids divisible by 5, not by 3) is on disk.

Lines are written by the writer thread (the listener runs there), so a line
is only ever printed after the commit it reports returned.
"""

from __future__ import annotations

import queue
import sys
from collections.abc import Sequence

from amqplike.properties import BasicProperties
from amqplike.store import QueueRecord, SQLiteStore, StoreState, StoreWriteError

WINDOW = 2000  # unconfirmed publishes in flight, as a confirming publisher keeps


def body(run: int, message_id: int) -> bytes:
    """The body of message ``message_id`` of run ``run`` (the parent checks it)."""
    return (b"r%d-m%d;" % (run, message_id)) * 8


class _Listener:
    def __init__(self) -> None:
        self.confirmed: queue.SimpleQueue[int] = queue.SimpleQueue()

    def batch_committed(self, tokens: Sequence[object]) -> None:
        lines = []
        for token in tokens:
            if isinstance(token, int):
                lines.append(f"C {token}\n")
                self.confirmed.put(token)
            else:
                lines.append(f"{token}\n")
        sys.stdout.write("".join(lines))
        sys.stdout.flush()

    def batch_failed(self, tokens: Sequence[object], error: StoreWriteError) -> None:
        raise SystemExit(f"batch failed: {error}")

    def state_changed(self, state: StoreState, error: StoreWriteError | None) -> None:
        raise SystemExit(f"store went {state}: {error}")


def main(path: str, run: int, interval: float | None) -> None:
    """Publish, ack and record deliveries until killed."""
    listener = _Listener()
    store = SQLiteStore(path, listener, sync_interval_seconds=interval)
    store.load()
    store.put_queue(QueueRecord("/", "q1"))
    store.put_queue(QueueRecord("/", "q2"))
    properties = BasicProperties(delivery_mode=2)
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    outstanding = 0
    while True:
        while outstanding < WINDOW:
            # The id is only known once appended, so the body is set from the next id.
            expected = store._next_id
            queues = ("q1", "q2") if expected % 2 == 0 else ("q1",)
            message_id = store.append(
                "/", queues, "", "k", properties, body(run, expected), token=expected
            )
            assert message_id == expected
            outstanding += 1
        message_id = listener.confirmed.get()
        outstanding -= 1
        if message_id % 3 == 0:
            store.remove("/", "q1", message_id)
            store.barrier(f"A {message_id}")
        elif message_id % 5 == 0:
            store.record_delivery("/", "q1", message_id, 1)
            store.barrier(f"D {message_id}")


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), float(sys.argv[3]) if len(sys.argv) > 3 else None)
