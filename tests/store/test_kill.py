"""kill -9 a process writing to the store at random moments; nothing it confirmed is lost.

The child (``_crash_child.py``) prints each confirm, ack and delivery only
after the store reported its batch committed.  After each SIGKILL the test
loads the store and checks, as RabbitMQ's Jepsen checker does: lost = 0
(every confirmed message is there, with its body, unless its ack was
confirmed), unexpected = 0 (nothing there that was not published, every
body intact), acked-and-confirmed messages absent, confirmed deliveries
counted.  The same store is killed several times in a row.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from amqplike.store import SQLiteStore
from tests.store._crash_child import body
from tests.store.conftest import Recorder

REPO = Path(__file__).resolve().parents[2]


class _Child:
    """One child process and the lines it printed, read by a thread."""

    def __init__(self, path: str, run: int, interval: float | None) -> None:
        extra = [] if interval is None else [str(interval)]
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tests.store._crash_child", path, str(run), *extra],
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        self.lines: list[str] = []
        self.ready = threading.Event()
        self._reader = threading.Thread(target=self._read)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for raw in self.process.stdout:
            if not raw.endswith(b"\n"):
                break  # a line cut by the kill reports nothing
            line = raw.decode().strip()
            if line == "ready":
                self.ready.set()
            else:
                self.lines.append(line)

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()
        self._reader.join()
        assert self.process.stderr is not None
        err = self.process.stderr.read().decode()
        self.process.stderr.close()
        assert self.process.stdout is not None
        self.process.stdout.close()
        assert self.process.returncode == -signal.SIGKILL, err


@pytest.mark.parametrize(("interval", "runs"), [(None, 4), (0.002, 2)], ids=["full", "interval"])
def test_kill_9_loses_nothing_confirmed(
    tmp_path: Path, interval: float | None, runs: int
) -> None:
    """Across several kill -9s at random moments: lost = 0, unexpected = 0, confirmed acks
    stay acked, confirmed deliveries come back as redeliveries.  The relaxed sync mode
    survives a killed process too (not an OS crash, which this does not test)."""
    path = str(tmp_path / "store.sqlite3")
    rng = random.Random(os.getpid())
    # (run, id) -> facts reported by the child before it died
    confirmed: set[tuple[int, int]] = set()
    acked: set[tuple[int, int]] = set()
    delivered: set[tuple[int, int]] = set()
    totals = []
    for run in range(runs):
        child = _Child(path, run, interval)
        assert child.ready.wait(10), "child did not start"
        time.sleep(rng.uniform(0.05, 0.4))
        child.kill()
        for line in child.lines:
            kind, _, number = line.partition(" ")
            key = (run, int(number))
            {"C": confirmed, "A": acked, "D": delivered}[kind].add(key)
        store = SQLiteStore(path, Recorder())
        loaded = store.load()
        try:
            assert not loaded.clean_shutdown
            # A kill in the middle of a transaction leaves uncommitted WAL frames: one warning.
            assert len(loaded.warnings) <= 1, loaded.warnings
            found: dict[str, dict[tuple[int, int], int]] = {}
            for queue in ("q1", "q2"):
                index = loaded.messages[("/", queue)]
                ids = list(index.message_ids)
                messages = store.read_messages(ids)
                assert set(messages) == set(ids), "an indexed message has no body"
                present: dict[tuple[int, int], int] = {}
                for (message_id, count) in index:
                    text = messages[message_id].body.split(b";")[0].decode()
                    r, m = (int(part[1:]) for part in text.split("-"))
                    assert messages[message_id].body == body(r, m), "unexpected bytes"
                    assert m == message_id or r < run, "id of a message changed"
                    present[(r, m)] = count
                found[queue] = present
        finally:
            store.close()
        q1, q2 = found["q1"], found["q2"]
        lost_q1 = {k for k in confirmed if k not in q1 and k not in acked and k[1] % 3 != 0}
        lost_q2 = {k for k in confirmed if k[1] % 2 == 0 and k not in q2}
        unexpected = {k for k in q2 if k[1] % 2 != 0}
        assert not lost_q1 and not lost_q2, f"lost: {sorted(lost_q1 | lost_q2)[:10]}"
        assert not unexpected, f"unexpected: {sorted(unexpected)[:10]}"
        assert not (acked & set(q1)), "a message whose ack was confirmed came back"
        undelivered = {k for k in delivered if k in q1 and q1[k] < 1}
        assert not undelivered, f"confirmed deliveries not counted: {sorted(undelivered)[:10]}"
        totals.append(len(child.lines))
    assert sum(totals) > 0
