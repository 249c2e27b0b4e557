"""A random walk over consume/publish/ack/nack/qos/flow checking the dispatch invariants.

After every step: no delivery ever exceeded a consumer's or a channel's
prefetch window; no message is lost or duplicated; and no queue holds ready
messages while one of its consumers could take them (no missed wake-up).
"""

from __future__ import annotations

from typing import Any

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from amqplike.core import Broker, Channel, Message
from amqplike.properties import EMPTY_PROPERTIES

QUEUES = ("q", "r")


class CheckingSink:
    """Records deliveries and checks the prefetch windows as each one happens."""

    def __init__(self, machine: PrefetchMachine, index: int) -> None:
        self.machine = machine
        self.index = index

    def deliver(
        self, consumer_tag: str, delivery_tag: int, redelivered: bool, message: Message
    ) -> None:
        self.machine.on_deliver(self.index, consumer_tag, delivery_tag, message)

    def returned(self, reply_code: int, reply_text: str, message: Message) -> None:
        raise AssertionError("nothing is published mandatory")

    def confirmed(self, delivery_tag: int, multiple: bool, ack: bool) -> None:
        pass

    def consumer_cancelled(self, consumer_tag: str) -> None:
        raise AssertionError("queues are never deleted here")


class PrefetchMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.broker = Broker()
        conn = self.broker.connect()
        self.channels: list[Channel] = [conn.open_channel(i + 1, CheckingSink(self, i)) for i in range(2)]
        for q in QUEUES:
            self.channels[0].queue_declare(q)
        # Start with windows set, so short random walks hit the limits often.
        self.channels[0].basic_qos(prefetch_count=2)
        self.channels[1].basic_qos(prefetch_count=2)
        self.channels[1].basic_qos(prefetch_count=3, global_=True)
        #: (channel index, delivery tag) -> (consumer tag or None, body)
        self.outstanding: dict[tuple[int, int], tuple[str | None, bytes]] = {}
        self.consumer_limits: dict[tuple[int, str], int] = {}
        self.no_ack: set[tuple[int, str]] = set()
        self.published = 0
        self.consumed: list[bytes] = []
        self.counter = 0

    # -- the checks made at delivery time ------------------------------------

    def on_deliver(self, index: int, ctag: str, tag: int, message: Message) -> None:
        key = (index, tag)
        assert key not in self.outstanding
        if (index, ctag) in self.no_ack:
            self.consumed.append(message.body)
            return
        self.outstanding[key] = (ctag, message.body)
        mine = sum(1 for (i, _), (c, _) in self.outstanding.items() if i == index and c == ctag)
        limit = self.consumer_limits[(index, ctag)]
        assert not limit or mine <= limit, "per-consumer prefetch exceeded"
        channel_total = sum(
            1 for (i, _), (c, _) in self.outstanding.items() if i == index and c is not None
        )
        glimit = self.channels[index].global_prefetch
        assert not glimit or channel_total <= glimit, "global prefetch exceeded"

    # -- rules ----------------------------------------------------------------

    @rule(queue=st.sampled_from(QUEUES), n=st.integers(1, 4))
    def publish(self, queue: str, n: int) -> None:
        for _ in range(n):
            self.published += 1
            self.channels[0].basic_publish("", queue, EMPTY_PROPERTIES, str(self.published).encode())

    @rule(index=st.integers(0, 1), queue=st.sampled_from(QUEUES), no_ack=st.booleans())
    def consume(self, index: int, queue: str, no_ack: bool) -> None:
        self.counter += 1
        ctag = f"c{self.counter}"
        ch = self.channels[index]
        self.consumer_limits[(index, ctag)] = ch.prefetch_count
        if no_ack:
            self.no_ack.add((index, ctag))
        ch.basic_consume(queue, ctag, no_ack=no_ack)

    @rule(data=st.data())
    def cancel(self, data: st.DataObject) -> None:
        live = [(i, t) for i, ch in enumerate(self.channels) for t in ch.consumers]
        if live:
            i, tag = data.draw(st.sampled_from(live))
            self.channels[i].basic_cancel(tag)

    @rule(index=st.integers(0, 1), count=st.integers(0, 3), global_=st.booleans())
    def qos(self, index: int, count: int, global_: bool) -> None:
        self.channels[index].basic_qos(prefetch_count=count, global_=global_)

    @rule(index=st.integers(0, 1), active=st.booleans())
    def flow(self, index: int, active: bool) -> None:
        self.channels[index].flow(active)

    @precondition(lambda self: self.outstanding)
    @rule(data=st.data(), how=st.sampled_from(["ack", "ack-multi", "nack", "reject-drop"]))
    def settle(self, data: st.DataObject, how: str) -> None:
        index, tag = data.draw(st.sampled_from(sorted(self.outstanding)))
        ch = self.channels[index]
        if how == "ack-multi":
            settled = [k for k in self.outstanding if k[0] == index and k[1] <= tag]
        else:
            settled = [(index, tag)]
        records = [self.outstanding.pop(k) for k in settled]
        if how == "ack":
            ch.basic_ack(tag)
        elif how == "ack-multi":
            ch.basic_ack(tag, multiple=True)
        elif how == "nack":
            ch.basic_nack(tag, requeue=True)
        else:
            ch.basic_reject(tag, requeue=False)
        if how != "nack":
            self.consumed.extend(body for _, body in records)

    @rule(index=st.integers(0, 1), queue=st.sampled_from(QUEUES))
    def get(self, index: int, queue: str) -> None:
        got = self.channels[index].basic_get(queue)
        if got is not None:
            self.outstanding[(index, got.delivery_tag)] = (None, got.message.body)

    @rule(index=st.integers(0, 1))
    def recover(self, index: int) -> None:
        for key in [k for k in self.outstanding if k[0] == index]:
            del self.outstanding[key]
        self.channels[index].basic_recover()

    # -- invariants -------------------------------------------------------------

    @invariant()
    def no_missed_wakeup(self) -> None:
        for q in self.broker.vhosts["/"].queues.values():
            if q.message_count:
                assert not any(c.has_credit() for c in q.consumers), "consumer left idle"

    @invariant()
    def conservation(self) -> None:
        ready = sum(q.message_count for q in self.broker.vhosts["/"].queues.values())
        assert ready + len(self.outstanding) + len(self.consumed) == self.published
        bodies: list[Any] = [b for _, b in self.outstanding.values()] + self.consumed
        assert len(set(bodies)) == len(bodies), "a message was handed out twice"

    @invariant()
    def unacked_counts_agree(self) -> None:
        for i, ch in enumerate(self.channels):
            assert ch.unacked_count == sum(1 for k in self.outstanding if k[0] == i)


PrefetchMachine.TestCase.settings = settings(max_examples=200, stateful_step_count=30)
TestPrefetchMachine = PrefetchMachine.TestCase
TestPrefetchMachine.__doc__ = "Prefetch windows hold, nothing is lost or duplicated, no consumer idles."
