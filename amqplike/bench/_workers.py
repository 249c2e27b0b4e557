"""Worker processes: start roles apart from the broker, wait for them, collect results.

Workers come from a ``forkserver`` with the client libraries preloaded: a fork is
cheap, yet no worker inherits the orchestrator's threads, sockets or reactor.
"""

from __future__ import annotations

import multiprocessing
import queue as queue_module
import time
from collections.abc import Iterable, Mapping
from typing import Any

from amqplike.bench._roles import worker_main

#: Modules the fork server imports once, so that every worker starts warm.  None of
#: them installs a reactor (a reactor's epoll descriptor must not be shared).
_PRELOAD = ["amqplike.bench._roles", "pika", "amqplike.client.sync", "twisted.internet.defer"]


class WorkerError(RuntimeError):
    """A worker failed, timed out or died; the message says which and why."""


class Workers:
    """The worker processes of one measured case.

    ``start`` launches roles, ``wait_ready`` blocks until they are connected, ``go``
    releases the publishers, ``results`` collects every worker's dict.  Leaving the
    ``with`` block terminates whatever is still running.
    """

    def __init__(self, kit_name: str, timeout: float) -> None:
        self._context = _context()
        self._kit_name = kit_name
        self._timeout = timeout
        self._outbox: Any = self._context.Queue()
        self._go = self._context.Event()
        self._processes: dict[str, Any] = {}
        self._ready: set[str] = set()
        self._results: dict[str, dict[str, Any]] = {}

    def __enter__(self) -> Workers:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def start(self, worker_id: str, role: str, spec: Mapping[str, Any]) -> None:
        """Start ``role`` in a new process; publishers should set ``wait_for_go``."""
        full = dict(spec, worker_id=worker_id)
        process = self._context.Process(
            target=worker_main,
            args=(role, self._kit_name, full, self._outbox, self._go),
            name=f"bench-{worker_id}",
            daemon=True,
        )
        process.start()
        self._processes[worker_id] = process

    def wait_ready(self, worker_ids: Iterable[str]) -> None:
        """Block until every one of ``worker_ids`` said it is ready."""
        wanted = set(worker_ids)
        self._pump(lambda: wanted <= self._ready, f"workers {sorted(wanted)} to get ready")

    def go(self) -> None:
        """Release every worker waiting for the go signal."""
        self._go.set()

    def result(self, worker_id: str) -> dict[str, Any]:
        """Wait for and return one worker's result."""
        self._pump(lambda: worker_id in self._results, f"worker {worker_id}")
        return self._results[worker_id]

    def results(self) -> dict[str, dict[str, Any]]:
        """Wait for every started worker and return their results by id."""
        for worker_id in self._processes:
            self.result(worker_id)
        return dict(self._results)

    def close(self) -> None:
        """Terminate workers still running and release the queue."""
        for worker_id, process in self._processes.items():
            if process.is_alive():
                # One that reported is closing its connection: let it finish.
                process.join(2.0 if worker_id in self._results else 0)
            if process.is_alive():
                process.terminate()
                process.join(5)
            if process.is_alive():
                process.kill()
                process.join(5)
        self._outbox.close()
        self._outbox.join_thread()

    def _pump(self, done: Any, what: str) -> None:
        deadline = time.monotonic() + self._timeout
        while not done():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise WorkerError(f"timed out after {self._timeout:.0f} s waiting for {what}")
            try:
                kind, worker_id, payload = self._outbox.get(timeout=min(remaining, 0.5))
            except queue_module.Empty:
                dead = [
                    wid
                    for wid, p in self._processes.items()
                    if not p.is_alive() and wid not in self._results
                ]
                if dead and self._outbox.empty():
                    raise WorkerError(f"worker(s) {dead} died without a result") from None
                continue
            if kind == "ready":
                self._ready.add(worker_id)
            elif kind == "result":
                self._results[worker_id] = payload
            else:
                raise WorkerError(f"worker {worker_id} failed:\n{payload}")


_CONTEXT: Any = None


def _context() -> Any:
    global _CONTEXT
    if _CONTEXT is None:
        if "forkserver" in multiprocessing.get_all_start_methods():
            _CONTEXT = multiprocessing.get_context("forkserver")
            _CONTEXT.set_forkserver_preload(_PRELOAD)
        else:
            _CONTEXT = multiprocessing.get_context("spawn")
    return _CONTEXT
