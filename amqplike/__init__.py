"""amqplike: an AMQP-style message broker on Twisted.

The package is layered (see ``docs/architecture.md``): a sans-IO broker
core (:mod:`amqplike.core`) and wire codec (:mod:`amqplike.wire`), a Twisted
server (:mod:`amqplike.server`), clients (:mod:`amqplike.client`) and the
``twistd amqplike`` plugin (:mod:`amqplike.tap`).
"""

from __future__ import annotations

__version__ = "0.1.0"
