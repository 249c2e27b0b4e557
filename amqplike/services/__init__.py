"""twistd services around the broker core: they schedule, the core decides.

:class:`DeadlineService` runs the core's deadlines (message TTL,
``x-expires``, ``x-retry-backoff`` hold-backs, delayed messages, consumer
ack timeouts) with a single timer.
"""

from __future__ import annotations

from amqplike.services.deadlines import DeadlineService

__all__ = ["DeadlineService"]
