"""Start the real ``twistd amqplike`` the way a user does, on a free loopback port."""

from __future__ import annotations

import os
import queue
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from attrs import define, field

TWISTD = str(Path(sys.executable).with_name("twistd"))
_LISTENING = re.compile(r"starting on (\d+)")
START_TIMEOUT_SECONDS = 30.0


@define
class BrokerProcess:
    """A running broker process and what it logged."""

    process: subprocess.Popen[str]
    port: int
    data_dir: Path
    lines: list[str] = field(factory=list)

    @property
    def url(self) -> str:
        """The client URL of this broker."""
        return f"amqplike://guest:guest@127.0.0.1:{self.port}/%2F"

    def log_text(self) -> str:
        """Everything the broker logged so far."""
        return "".join(self.lines)

    def kill(self) -> None:
        """``kill -9`` the broker, as a crash would."""
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(10)

    def stop(self) -> int:
        """Stop the broker with SIGTERM, as an operator would, and return its exit code."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait(10)


def _pump(stream: object, sink: queue.Queue[str | None], lines: list[str]) -> None:
    for line in stream:  # type: ignore[attr-defined]
        lines.append(line)
        sink.put(line)
    sink.put(None)


@contextmanager
def running_broker(data_dir: Path, *extra: str, port: int = 0) -> Iterator[BrokerProcess]:
    """Run ``twistd -n amqplike`` on ``port`` (0: a free one) until the block ends."""
    argv = [
        TWISTD,
        "--nodaemon",
        "--pidfile=",
        "--logfile=-",
        "amqplike",
        "--listen",
        f"tcp:{port}:interface=127.0.0.1",
        "--data-dir",
        str(data_dir),
        *extra,
    ]
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    process = subprocess.Popen(
        argv,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
        cwd=data_dir.parent,
    )
    lines: list[str] = []
    sink: queue.Queue[str | None] = queue.Queue()
    threading.Thread(target=_pump, args=(process.stdout, sink, lines), daemon=True).start()
    found = None
    try:
        while found is None:
            line = sink.get(timeout=START_TIMEOUT_SECONDS)
            if line is None:
                raise RuntimeError("broker exited during start-up:\n" + "".join(lines))
            match = _LISTENING.search(line)
            if match:
                found = int(match.group(1))
    except queue.Empty:
        process.kill()
        raise RuntimeError("broker did not start listening:\n" + "".join(lines)) from None
    broker = BrokerProcess(process, found, data_dir, lines)
    try:
        yield broker
    finally:
        broker.stop()
