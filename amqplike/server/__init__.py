"""The Twisted server: AMQP-style connections joining the wire codec and the broker core.

:class:`BrokerFactory` builds one :class:`AMQPServerProtocol` per client
connection; :class:`ServerLimits` holds what the server offers in
``connection.tune`` and enforces.
"""

from __future__ import annotations

from amqplike.server._limits import ServerLimits
from amqplike.server.protocol import AMQPServerProtocol, BrokerFactory

__all__ = ["AMQPServerProtocol", "BrokerFactory", "ServerLimits"]
