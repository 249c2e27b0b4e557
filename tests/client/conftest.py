"""Fixtures for the client tests: a real broker for the blocking client.

The blocking client needs a server that runs while the test blocks, so the
broker lives in a subprocess (``tests/client/_server.py``) on a free
loopback port, one per test session.  The Twisted client's tests run the
broker in-process instead (see ``test_twisted_tcp.py``).
"""

from __future__ import annotations

import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from amqplike.client.sync import BlockingConnection

_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def broker_url() -> Iterator[str]:
    """URL of a broker subprocess that lives for the whole test session."""
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.client._server"],
        cwd=_ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None and process.stdin is not None
    line = process.stdout.readline()  # blocks until the server listens (or dies)
    if not line.startswith("PORT "):
        process.kill()
        pytest.fail(f"the test broker did not start: {line!r}")
    try:
        yield f"amqplike://guest:guest@127.0.0.1:{int(line.split()[1])}/%2F"
    finally:
        process.stdin.close()  # the server stops when its stdin closes
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)
        process.stdout.close()


@pytest.fixture
def connection(broker_url: str) -> Iterator[BlockingConnection]:
    """An open blocking connection, closed after the test."""
    conn = BlockingConnection(broker_url)
    try:
        yield conn
    finally:
        if conn.is_open:
            conn.close()


@pytest.fixture
def qname() -> str:
    """A queue name no other test uses."""
    return f"test-{uuid.uuid4().hex[:12]}"
