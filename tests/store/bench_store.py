"""Measure the embedded store: group-commit throughput, bytes per message, load time and RSS.

Run from the repository root (figures quoted in ``docs/durability.md``)::

    .venv/bin/python -m tests.store.bench_store publish --messages 200000 --body 1024
    .venv/bin/python -m tests.store.bench_store publish-ack --messages 200000 --body 1024
    .venv/bin/python -m tests.store.bench_store fill --messages 1000000 DIR
    .venv/bin/python -m tests.store.bench_store load DIR

``load`` is meant to run in a fresh process: it reports the process's peak
RSS after loading, as the broker's start-up would see it.
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import resource
import sys
import tempfile
import time
from collections.abc import Sequence
from typing import Literal

from amqplike.properties import BasicProperties
from amqplike.store import (
    LoadedState,
    QueueRecord,
    SQLiteStore,
    StoreState,
    StoreWriteError,
)
from amqplike.store._schema import DEFAULT_PAGE_SIZE


class _Listener:
    """Hands committed tokens to the main thread."""

    def __init__(self) -> None:
        self.committed: queue.SimpleQueue[Sequence[object]] = queue.SimpleQueue()

    def batch_committed(self, tokens: Sequence[object]) -> None:
        self.committed.put(tokens)

    def batch_failed(self, tokens: Sequence[object], error: StoreWriteError) -> None:
        raise AssertionError(f"batch failed: {error}")

    def state_changed(self, state: StoreState, error: StoreWriteError | None) -> None:
        pass


def _open(
    path: str, page_size: int, interval: float | None = None
) -> tuple[SQLiteStore, _Listener, LoadedState]:
    listener = _Listener()
    store = SQLiteStore(path, listener, page_size=page_size, sync_interval_seconds=interval)
    return store, listener, store.load()


def _report(result: dict[str, object]) -> None:
    sys.stdout.write(json.dumps(result) + "\n")


def publish(
    messages: int, body_bytes: int, page_size: int, ack: bool, interval: float | None
) -> None:
    """Publish (and, with ``ack``, remove once committed) ``messages`` messages."""
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "store.sqlite3")
        store, listener, _ = _open(path, page_size, interval)
        store.put_queue(QueueRecord("/", "q"))
        properties = BasicProperties(delivery_mode=2)
        body = os.urandom(body_bytes)
        confirmed = acked = 0
        window = 10_000  # confirms in flight, as several publishers would have
        start = time.perf_counter()
        sent = 0
        while confirmed < messages:
            while sent < messages and sent - confirmed < window:
                sent += 1
                store.append("/", ("q",), "", "q", properties, body, token=sent)
            for token in listener.committed.get():
                confirmed += 1
                if ack:
                    store.remove("/", "q", token)  # type: ignore[arg-type]
                    acked += 1
        if ack:
            store.barrier("acks")
            while "acks" not in listener.committed.get():
                pass
        seconds = time.perf_counter() - start
        stats = store.stats
        store.close()
        size = os.path.getsize(path)
        _report(
            {
                "mode": "publish-ack" if ack else "publish",
                "messages": messages,
                "body_bytes": body_bytes,
                "page_size": page_size,
                "sync_interval_seconds": interval,
                "seconds": round(seconds, 3),
                "messages_per_second": round(messages / seconds),
                "records_per_second": round((messages + acked) / seconds),
                "commits": stats.commits,
                "largest_batch": stats.largest_batch,
                "file_bytes_per_message": None if ack else round(size / messages, 1),
            }
        )


def fill(directory: str, messages: int, body_bytes: int, page_size: int) -> None:
    """Create a store in ``directory`` with ``messages`` persistent messages in one queue."""
    path = os.path.join(directory, "amqplike.sqlite3")
    store, listener, _ = _open(path, page_size)
    store.put_queue(QueueRecord("/", "deep"))
    properties = BasicProperties(delivery_mode=2, content_type="application/octet-stream")
    body = os.urandom(body_bytes)
    start = time.perf_counter()
    for n in range(messages):
        store.append("/", ("deep",), "", "deep", properties, body)
        if n % 50_000 == 0:
            store.barrier(n)
            # Keep the backlog bounded, as publisher confirms would.
            if n >= 100_000:
                listener.committed.get()
    store.barrier("end")
    while "end" not in listener.committed.get():
        pass
    seconds = time.perf_counter() - start
    store.close()
    _report(
        {
            "mode": "fill",
            "messages": messages,
            "seconds": round(seconds, 3),
            "messages_per_second": round(messages / seconds),
            "file_bytes_per_message": round(os.path.getsize(path) / messages, 1),
        }
    )


def load(directory: str, integrity_check: Literal["quick", "full", "none"]) -> None:
    """Load the store in ``directory`` and report time and peak RSS."""
    path = os.path.join(directory, "amqplike.sqlite3")
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter()
    store = SQLiteStore(path, _Listener(), integrity_check=integrity_check)
    state = store.load()
    seconds = time.perf_counter() - start
    first = state.messages[("/", "deep")].message_ids[:1000]
    read_start = time.perf_counter()
    bodies = store.read_messages(first)
    read_seconds = time.perf_counter() - read_start
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    store.close()
    _report(
        {
            "mode": "load",
            "integrity_check": integrity_check,
            "messages": state.message_count,
            "seconds": round(seconds, 3),
            "read_first_1000_seconds": round(read_seconds, 4),
            "read": len(bodies),
            "peak_rss_mib": round(rss / 1024, 1),
            "rss_before_load_mib": round(rss_before / 1024, 1),
        }
    )


def main(argv: Sequence[str] | None = None) -> None:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("mode", choices=["publish", "publish-ack", "fill", "load"])
    parser.add_argument("directory", nargs="?")
    parser.add_argument("--messages", type=int, default=200_000)
    parser.add_argument("--body", type=int, default=1024)
    parser.add_argument("--page-size", type=int, default=DEFAULT_PAGE_SIZE,
                        help="page size of the new store file")
    parser.add_argument("--integrity-check", default="quick",
                        choices=["quick", "full", "none"])
    parser.add_argument("--sync-interval", type=float, default=None,
                        help="relaxed mode: commit at most every SECONDS, no fsync")
    args = parser.parse_intermixed_args(argv)
    if args.mode in ("publish", "publish-ack"):
        publish(args.messages, args.body, args.page_size, ack=args.mode == "publish-ack",
                interval=args.sync_interval)
    elif args.mode == "fill":
        fill(args.directory, args.messages, args.body, args.page_size)
    else:
        load(args.directory, args.integrity_check)


if __name__ == "__main__":
    main()
