"""The deadline sweeper: one ``callLater`` for the core's earliest deadline.

Policy lives in the core (what expires, where dead letters go, when a
channel's ack timeout is up); this service only keeps one timer armed for
:meth:`Broker.next_deadline` on the injected clock, calls
:meth:`Broker.expire` when it fires, and writes the deliveries that caused
(``BrokerFactory.flush_if_idle``).  When the core gets a deadline earlier
than the armed one (a short TTL, a delayed message due sooner), the
schedule's ``on_earlier`` hook re-arms the timer.  So there is never a timer
per message, and a sweep costs what falls due.

The timer body logs and survives its own failure: a deadline task that
raises is logged with ``log.failure`` and dropped, and the timer is re-armed
for what is left.
"""

from __future__ import annotations

from typing import Protocol

from twisted.application.service import Service
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger

from amqplike.core import Broker


class Batcher(Protocol):
    """What the service needs of ``BrokerFactory`` to write what a sweep delivered."""

    batch_depth: int

    def flush_if_idle(self) -> None:
        """Write pending output unless a batch is still running; never raises."""


class DeadlineService(Service):
    """Runs the broker core's deadlines with a single timer on ``clock``.

    ``batcher`` (the server's ``BrokerFactory``) makes each sweep one output
    batch, flushed at its end; without one (tests of the core alone) the
    sinks are left to themselves.
    """

    log = Logger()

    def __init__(self, broker: Broker, clock: IReactorTime, batcher: Batcher | None = None) -> None:
        self._broker = broker
        self._clock = clock
        self._batcher = batcher
        self._call: IDelayedCall | None = None
        #: The deadline the armed call is for.
        self._armed_for = 0.0
        self._sweeping = False

    @property
    def armed_for(self) -> float | None:
        """The deadline the timer is armed for, None when idle (for tests and management)."""
        call = self._call
        return self._armed_for if call is not None and call.active() else None

    def startService(self) -> None:
        """Listen for earlier deadlines and arm the timer for the first one."""
        super().startService()
        self._broker.schedule.on_earlier = self._earlier
        self._arm()

    def stopService(self) -> None:
        """Cancel the timer; deadlines are kept in the core for a restart of the service."""
        super().stopService()
        if self._broker.schedule.on_earlier == self._earlier:
            self._broker.schedule.on_earlier = None
        self._cancel()

    def _cancel(self) -> None:
        call, self._call = self._call, None
        if call is not None and call.active():
            call.cancel()

    def _earlier(self, deadline: float) -> None:
        """The core has a deadline earlier than any before: re-arm if it beats the timer."""
        if self.running and not self._sweeping:
            self._arm_at(deadline)

    def _arm(self) -> None:
        """Arm the timer for the core's next deadline (or disarm when there is none)."""
        if not self.running:
            return
        try:
            deadline = self._broker.next_deadline()
        except Exception:
            self.log.failure("Finding the next deadline failed")
            deadline = None
        if deadline is None:
            self._cancel()
        else:
            self._arm_at(deadline)

    def _arm_at(self, deadline: float) -> None:
        call = self._call
        if call is not None and call.active():
            if self._armed_for <= deadline:
                return
            call.cancel()
        self._armed_for = deadline
        self._call = self._clock.callLater(max(0.0, deadline - self._clock.seconds()), self._sweep)

    def _sweep(self) -> None:
        """The timer fired: run what is due, write what it delivered, re-arm; never raises."""
        self._call = None
        batcher = self._batcher
        self._sweeping = True
        if batcher is not None:
            batcher.batch_depth += 1
        try:
            with self.log.failuresHandled("Running due deadlines failed"):
                self._broker.expire(self._clock.seconds())
        finally:
            self._sweeping = False
            if batcher is not None:
                batcher.batch_depth -= 1
                batcher.flush_if_idle()
            self._arm()
