"""The brokers under test: start and stop them, and watch their CPU and memory.

``amqplike`` runs as ``twistd -n amqplike`` on a free loopback port, as a user would;
``rabbitmq`` is started and stopped by ``scripts/rabbitmq.sh`` (Debian's package, bound
to 127.0.0.1).  Either can instead be an already running broker given by URL, in
which case it is neither started nor stopped.
"""

from __future__ import annotations

import os
import queue
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

#: What ``twistd amqplike`` logs once it listens; the port is the first group.
LISTENING = re.compile(r"starting on (\d+)")
START_TIMEOUT_SECONDS = 60.0
#: How often the broker's RSS is sampled while a case runs.
RSS_SAMPLE_SECONDS = 0.02
_PAGE_BYTES = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


class TargetError(RuntimeError):
    """A broker could not be started or found."""


class BrokerMonitor:
    """CPU time and resident memory of the broker process, from its own accounting.

    On Linux both come straight from ``/proc``; elsewhere from psutil when it is
    installed.  Every figure is ``None`` when the pid is unknown (a broker given by
    URL only) or neither source is available.
    """

    def __init__(self, pid: int | None) -> None:
        self.pid = pid
        self._proc = f"/proc/{pid}" if pid is not None and os.path.isdir(f"/proc/{pid}") else None
        self._process: Any = None
        if pid is not None and self._proc is None:
            try:
                import psutil  # type: ignore[import-untyped, unused-ignore]
            except ImportError:
                return
            self._process = psutil.Process(pid)

    def cpu_seconds(self) -> float | None:
        """CPU seconds the broker has used so far, all its threads together.

        Read from the kernel's nanosecond run-time of each thread
        (``/proc/PID/task/*/schedstat``); user plus system times (``/proc/PID/stat``,
        psutil) tick in 10 ms steps, too coarse for a short case.
        """
        if self._proc is not None:
            total_ns = 0
            try:
                tasks = os.listdir(f"{self._proc}/task")
            except OSError:
                return None
            for task in tasks:
                try:
                    with open(f"{self._proc}/task/{task}/schedstat") as stat:
                        total_ns += int(stat.read().split()[0])
                except (OSError, ValueError, IndexError):
                    continue  # the thread ended between listing and reading
            return total_ns / 1e9
        if self._process is None:
            return None
        times = self._process.cpu_times()
        return float(times.user + times.system)

    def rss(self) -> int | None:
        """The broker's resident set size in bytes, now."""
        if self._proc is not None:
            try:
                with open(f"{self._proc}/statm") as statm:
                    return int(statm.read().split()[1]) * _PAGE_BYTES
            except (OSError, ValueError, IndexError):
                return None
        if self._process is None:
            return None
        return int(self._process.memory_info().rss)

    @contextmanager
    def peak_rss(self) -> Iterator[dict[str, int | None]]:
        """Sample RSS in a thread while the block runs; ``peak`` is in the dict afterwards."""
        figures: dict[str, int | None] = {"peak": self.rss()}
        if self._process is None:
            yield figures
            return
        stop = threading.Event()

        def sample() -> None:
            while not stop.wait(RSS_SAMPLE_SECONDS):
                try:
                    rss = self.rss()
                except Exception:  # the broker went away; the case will say so
                    return
                if rss is not None and rss > (figures["peak"] or 0):
                    figures["peak"] = rss

        thread = threading.Thread(target=sample, name="bench-rss", daemon=True)
        thread.start()
        try:
            yield figures
        finally:
            stop.set()
            thread.join()
            last = self.rss()
            if last is not None and last > (figures["peak"] or 0):
                figures["peak"] = last


class Target:
    """A broker to measure: its name, client kit, URL and (when known) process id."""

    def __init__(self, name: str, kit: str, url: str | None = None, pid: int | None = None):
        self.name = name
        self.kit = kit
        self.url = url
        self.pid = pid
        self.version = "?"

    def start(self) -> None:
        """Make the broker available (no-op for a broker given by URL)."""

    def stop(self) -> None:
        """Stop what :meth:`start` started."""

    def restart(self) -> bool:
        """Give a fresh broker process, for figures that a used heap would skew.

        Returns ``False`` (and does nothing) for a broker this run did not start.
        """
        return False

    def monitor(self) -> BrokerMonitor:
        """A monitor on the broker process."""
        return BrokerMonitor(self.pid)

    def describe(self) -> dict[str, Any]:
        """What the report says about this target."""
        return {"name": self.name, "client": self.kit, "url": self.url, "version": self.version}


class AmqplikeTarget(Target):
    """``twistd -n amqplike`` on a free loopback port, or a running broker by URL."""

    def __init__(self, url: str | None = None, pid: int | None = None) -> None:
        super().__init__("amqplike", "amqplike", url, pid)
        self._own = url is None
        self._process: subprocess.Popen[str] | None = None
        self._data_dir: tempfile.TemporaryDirectory[str] | None = None
        self.lines: list[str] = []
        from amqplike import __version__

        self.version = __version__

    def start(self) -> None:
        """Start the broker (when we own it) and learn its port from its log."""
        if not self._own:
            return
        self._data_dir = tempfile.TemporaryDirectory(prefix="amqplike-bench-")
        twistd = str(Path(sys.executable).with_name("twistd"))
        argv = [
            twistd, "--nodaemon", "--pidfile=", "--logfile=-", "amqplike",
            "--listen", "tcp:0:interface=127.0.0.1",
            "--data-dir", str(Path(self._data_dir.name) / "data"),
        ]
        self._process = subprocess.Popen(
            argv,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=dict(os.environ, PYTHONUNBUFFERED="1"),
            cwd=self._data_dir.name,
        )
        lines: queue.Queue[str | None] = queue.Queue()

        def pump() -> None:
            assert self._process is not None and self._process.stdout is not None
            for line in self._process.stdout:
                self.lines.append(line)
                lines.put(line)
            lines.put(None)

        threading.Thread(target=pump, name="bench-broker-log", daemon=True).start()
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while True:
            try:
                line = lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                self.stop()
                raise TargetError(
                    "amqplike did not start listening:\n" + "".join(self.lines)
                ) from None
            if line is None:
                self.stop()
                raise TargetError("amqplike exited during start-up:\n" + "".join(self.lines))
            match = LISTENING.search(line)
            if match:
                port = int(match.group(1))
                break
        self.url = f"amqplike://guest:guest@127.0.0.1:{port}/%2F"
        self.pid = self._process.pid

    def restart(self) -> bool:
        """Stop and start our broker (on a new port); ``False`` for one given by URL."""
        if not self._own:
            return False
        self.stop()
        self.lines = []
        self.start()
        return True

    def stop(self) -> None:
        """SIGTERM the broker we started and remove its data directory."""
        if self._process is not None:
            if self._process.poll() is None:
                self._process.send_signal(signal.SIGTERM)
            try:
                self._process.wait(15)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait(10)
            self._process = None
        if self._data_dir is not None:
            self._data_dir.cleanup()
            self._data_dir = None


def default_rabbitmq_script() -> Path:
    """``scripts/rabbitmq.sh`` of the checkout this package runs from."""
    return Path(__file__).resolve().parents[2] / "scripts" / "rabbitmq.sh"


class RabbitmqTarget(Target):
    """RabbitMQ on loopback through ``scripts/rabbitmq.sh``, or a running one by URL."""

    def __init__(
        self, url: str | None = None, pid: int | None = None, *, kit: str = "pika",
        script: Path | None = None,
    ) -> None:
        super().__init__("rabbitmq", kit, url, pid)
        self._script = script or default_rabbitmq_script()
        self._started = False

    def _run(self, command: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        if not self._script.exists():
            raise TargetError(
                f"{self._script} not found: run from a checkout or pass --rabbitmq-script"
            )
        done = subprocess.run(
            ["bash", str(self._script), command],
            capture_output=True, text=True, check=False, timeout=600,
        )
        if check and done.returncode != 0:
            raise TargetError(f"rabbitmq.sh {command} failed:\n{done.stderr}")
        return done

    def restart(self) -> bool:
        """Stop and start RabbitMQ when this run started it; ``False`` otherwise."""
        if not self._started:
            return False
        self.stop()
        self.url = None
        self.pid = None
        self.start()
        return True

    def start(self) -> None:
        """Start RabbitMQ unless it already runs (then it is left running afterwards)."""
        if self.url is None:
            already = self._run("status", check=False).returncode == 0
            port = int(self._run("start").stdout.split()[-1])
            self._started = not already
            self.url = f"amqp://guest:guest@127.0.0.1:{port}/%2F"
            if self.pid is None:
                self.pid = int(self._run("pid").stdout.split()[-1])
        self.version = self._server_version()

    def _server_version(self) -> str:
        try:
            from amqplike.bench._kits import get_kit

            connection = get_kit("pika").connect(self.url or "")
        except Exception:
            return "?"
        try:
            properties = connection._impl.server_properties
            version = properties.get("version", b"?")
            return version.decode() if isinstance(version, bytes) else str(version)
        except Exception:
            return "?"
        finally:
            connection.close()

    def stop(self) -> None:
        """Stop RabbitMQ when this run started it."""
        if self._started:
            self._run("stop", check=False)
            self._started = False
