"""The core's one timer structure: a heap of deadlines, and the latest known time.

Everything in the core that must happen at a given time (a message's TTL, a
queue's ``x-expires``, a held retry coming back, a delayed message falling
due, a channel's consumer ack timeout) is a :class:`Task` pushed on the
broker's :class:`Schedule`.  The core never reads a clock: the driver tells
it the time with :meth:`Schedule.advance` (the server at the start of each
batch of work, a publish with its ``now``) and runs what fell due with
:meth:`Schedule.run`.  A service arms *one* timer for
:meth:`Schedule.next_deadline` and re-arms it when :attr:`Schedule.on_earlier`
reports an earlier one, so there is never a ``callLater`` per message.

Deletion is lazy: a task that no longer matters (its message was consumed,
its queue deleted) stays in the heap and is skipped when it surfaces
(:meth:`Task.live`).  So that long deadlines of messages consumed early do
not pile up, the heap is compacted when it has doubled since the last
compaction, which keeps the cost amortised O(log n) per push; a sweep costs
what falls due, not what is queued.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable
from typing import Final, Protocol

#: Below this many tasks compaction is not worth a pass over the heap.
_COMPACT_MIN_TASKS: Final = 1024


class Task(Protocol):
    """Something to do at a deadline."""

    def live(self) -> bool:
        """False once the task has become pointless; it is then skipped and dropped."""

    def fire(self, now: float) -> None:
        """Do the work, ``now`` being at or after the deadline."""


class Schedule:
    """A heap of ``(deadline, seq, task)`` and the latest time the core was told.

    Deadlines and ``now`` are seconds on the driver's clock (the reactor's
    ``seconds()``).  ``seq`` keeps tasks with equal deadlines in push order.
    """

    __slots__ = ("_compacted_size", "_heap", "_seq", "now", "on_earlier")

    def __init__(self, now: float = 0.0) -> None:
        #: The latest time the driver reported (never goes back).
        self.now = now
        #: Called with the new earliest deadline when a push makes it earlier
        #: (a service re-arms its single timer there); None when nobody listens.
        self.on_earlier: Callable[[float], object] | None = None
        self._heap: list[tuple[float, int, Task]] = []
        self._seq = 0
        self._compacted_size = 0

    def __len__(self) -> int:
        return len(self._heap)

    def advance(self, now: float) -> None:
        """Tell the core the time; it never goes back (a clock stepped back is ignored)."""
        if now > self.now:
            self.now = now

    def push(self, deadline: float, task: Task) -> None:
        """Run ``task`` at ``deadline`` (or at the first :meth:`run` after it)."""
        heap = self._heap
        earlier = not heap or deadline < heap[0][0]
        self._seq += 1
        heapq.heappush(heap, (deadline, self._seq, task))
        if len(heap) > 2 * self._compacted_size + _COMPACT_MIN_TASKS:
            self._compact()
        if earlier and self.on_earlier is not None:
            self.on_earlier(deadline)

    def next_deadline(self) -> float | None:
        """The earliest deadline of a live task, or None when there is nothing to do."""
        heap = self._heap
        while heap:
            deadline, _, task = heap[0]
            if task.live():
                return deadline
            heapq.heappop(heap)
        return None

    def run(self, now: float) -> int:
        """Advance to ``now`` and fire every live task due by then; return how many fired.

        A task pushed while running with a deadline already passed runs in the
        same call.  A task that raises is dropped and the exception propagates;
        the tasks still due stay in the heap for the next call.
        """
        self.advance(now)
        now = self.now
        heap = self._heap
        fired = 0
        while heap and heap[0][0] <= now:
            task = heapq.heappop(heap)[2]
            if task.live():
                fired += 1
                task.fire(now)
        return fired

    def _compact(self) -> None:
        """Drop the tasks that are no longer live (amortised: runs when the heap doubled)."""
        heap = [item for item in self._heap if item[2].live()]
        heapq.heapify(heap)
        self._heap = heap
        self._compacted_size = len(heap)
