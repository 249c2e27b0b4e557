"""A broker for the sync client's tests: ``python -m tests.client._server``.

It listens on a free loopback port, prints ``PORT <n>`` on stdout, and runs
until its stdin closes, so a test's fixture owns its whole life and a
crashed test run leaves no broker behind.
"""

from __future__ import annotations

import sys
from typing import Any

from twisted.internet import reactor as _reactor
from twisted.internet.endpoints import TCP4ServerEndpoint
from twisted.internet.interfaces import IListeningPort
from twisted.internet.protocol import Protocol
from twisted.internet.stdio import StandardIO
from twisted.python.failure import Failure

from amqplike.core import Broker
from amqplike.server import BrokerFactory


class _StopOnEOF(Protocol):
    """Stops the reactor when the parent closes our stdin."""

    def connectionLost(self, reason: Failure | None = None) -> None:
        reactor.stop()


reactor: Any = _reactor


def main() -> None:
    """Listen, announce the port, serve until stdin closes."""
    factory = BrokerFactory(Broker(), reactor)

    def announce(port: IListeningPort) -> None:
        address: Any = port.getHost()
        sys.stdout.write(f"PORT {address.port}\n")
        sys.stdout.flush()

    TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(factory).addCallback(announce)
    StandardIO(_StopOnEOF())
    reactor.run()


if __name__ == "__main__":
    main()
