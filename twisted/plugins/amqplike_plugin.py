"""The ``twistd amqplike`` plugin: the broker as a twistd service."""

from __future__ import annotations

from twisted.application.service import ServiceMaker

amqplike = ServiceMaker("amqplike", "amqplike.tap", "An AMQP-style message broker", "amqplike")
