"""Fixtures for server protocol tests: a broker, a fake clock and a factory."""

from __future__ import annotations

import pytest
from twisted.internet.task import Clock

from amqplike.core import Broker
from amqplike.server import BrokerFactory, ServerLimits
from tests.server._client import TestClient


@pytest.fixture
def factory(broker: Broker, clock: Clock) -> BrokerFactory:
    """A server factory with default limits."""
    return BrokerFactory(broker, clock, ServerLimits())


@pytest.fixture
def client(factory: BrokerFactory) -> TestClient:
    """A connected (not yet handshaken) loopback client."""
    return TestClient(factory)


@pytest.fixture
def opened(client: TestClient) -> TestClient:
    """A client past the handshake with channel 1 open."""
    client.handshake()
    client.open_channel(1)
    return client
