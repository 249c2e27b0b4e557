"""Suite-wide fixtures.

As trial does, a test fails when something logged a failure it did not
expect: ``log.failure`` is for bugs, so a test that provokes one on purpose
says so with the ``expected_failures`` fixture.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from twisted.internet.task import Clock
from twisted.logger import globalLogPublisher

from amqplike.core import Broker

# Shared machines are noisy: never fail a property test for being slow.
settings.register_profile(
    "amqplike", deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile("amqplike")


@pytest.fixture
def clock() -> Clock:
    """Fake time for timers, heartbeats and timeouts (the core's times are its seconds)."""
    return Clock()


@pytest.fixture
def broker() -> Broker:
    """A fresh broker core: vhost ``/`` and user guest/guest (the e2e tests' is a process)."""
    return Broker()


class _FailureRecorder:
    """Collects logged failures during one test."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        self.expected: list[type[BaseException]] = []

    def __call__(self, event: dict[str, Any]) -> None:
        if "log_failure" in event:
            self.events.append(event)

    def unexpected(self) -> list[dict[str, Any]]:
        return [
            e
            for e in self.events
            if not any(e["log_failure"].check(t) for t in self.expected)
        ]


@pytest.fixture(autouse=True)
def _fail_on_logged_failures() -> Iterator[_FailureRecorder]:
    recorder = _FailureRecorder()
    globalLogPublisher.addObserver(recorder)
    try:
        yield recorder
    finally:
        globalLogPublisher.removeObserver(recorder)
    unexpected = recorder.unexpected()
    if unexpected:
        lines = [e["log_failure"].getTraceback() for e in unexpected]
        pytest.fail("unexpected logged failures:\n" + "\n".join(lines), pytrace=False)


@pytest.fixture
def expected_failures(_fail_on_logged_failures: _FailureRecorder) -> list[type[BaseException]]:
    """Append exception types a test provokes on purpose; they are not reported."""
    return _fail_on_logged_failures.expected
