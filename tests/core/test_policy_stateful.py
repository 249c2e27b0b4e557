"""A hypothesis state machine: a policy queue (priority, TTL, max-length, DLX) against a model.

The model is a plain list; the queue uses lazy deletion, a priority heap and
the broker's schedule.  They must agree on what ``basic.get`` returns, on
the ready count after every sweep, and on where every message ends
(consumed, dead-lettered with which reason, or still queued).
"""

from __future__ import annotations

from collections import Counter

from attrs import define
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from amqplike.core import Broker, Channel
from amqplike.properties import BasicProperties

from .conftest import RecordingSink


@define
class _Msg:
    seq: int
    priority: int
    expires_at: float | None
    deliveries: int = 0

    @property
    def body(self) -> bytes:
        return str(self.seq).encode()


class PolicyQueueMachine(RuleBasedStateMachine):
    """Publish, sweep, get, ack, requeue and reject against a reference list."""

    def __init__(self) -> None:
        super().__init__()
        self.broker = Broker()
        self.ch: Channel = self.broker.connect().open_channel(1, RecordingSink())
        self.now = 0.0
        self.ready: list[_Msg] = []
        self.out: dict[int, _Msg] = {}
        self.fates: Counter[tuple[bytes, str]] = Counter()
        self.seq = 0
        self.max_priority: int | None = None
        self.queue_ttl: int | None = None
        self.max_length: int | None = None

    @initialize(
        max_priority=st.none() | st.integers(1, 3),
        queue_ttl=st.none() | st.sampled_from([0, 100, 300]),
        max_length=st.none() | st.integers(0, 4),
    )
    def declare(
        self, max_priority: int | None, queue_ttl: int | None, max_length: int | None
    ) -> None:
        self.max_priority, self.queue_ttl, self.max_length = max_priority, queue_ttl, max_length
        arguments: dict[str, object] = {
            "x-dead-letter-exchange": "",
            "x-dead-letter-routing-key": "dlq",
        }
        if max_priority is not None:
            arguments["x-max-priority"] = max_priority
        if queue_ttl is not None:
            arguments["x-message-ttl"] = queue_ttl
        if max_length is not None:
            arguments["x-max-length"] = max_length
        self.ch.queue_declare("dlq")
        self.ch.queue_declare("q", arguments=arguments)

    # -- the model's rules ------------------------------------------------------------

    def _order(self) -> list[_Msg]:
        return sorted(self.ready, key=lambda m: (-m.priority, m.seq))

    def _expired(self, m: _Msg) -> bool:
        return m.expires_at is not None and m.expires_at <= self.now

    def _drop(self, m: _Msg, reason: str) -> None:
        self.ready.remove(m)
        self.fates[(m.body, reason)] += 1

    def _enforce_max_length(self) -> None:
        while self.max_length is not None and len(self.ready) > self.max_length:
            head = self._order()[0]
            self._drop(head, "expired" if self._expired(head) else "maxlen")

    # -- rules --------------------------------------------------------------------------

    @rule(
        priority=st.none() | st.integers(0, 5),
        expiration=st.none() | st.sampled_from([0, 50, 100, 250, 1000]),
    )
    def publish(self, priority: int | None, expiration: int | None) -> None:
        self.seq += 1
        ttls = [t for t in (self.queue_ttl, expiration) if t is not None]
        ttl = min(ttls) if ttls else None
        level = 0 if self.max_priority is None else min(priority or 0, self.max_priority)
        m = _Msg(self.seq, level, None if ttl is None else self.now + ttl / 1000)
        properties = BasicProperties(
            priority=priority, expiration=None if expiration is None else str(expiration)
        )
        self.ch.basic_publish("", "q", properties, m.body, now=self.now)
        if ttl == 0:
            self.fates[(m.body, "expired")] += 1  # nobody could take it at once
            return
        self.ready.append(m)
        self._enforce_max_length()

    @rule(dt=st.sampled_from([0.0, 0.05, 0.1, 0.3]))
    def sweep(self, dt: float) -> None:
        self.now += dt
        self.broker.expire(self.now)
        for m in [m for m in self._order() if self._expired(m)]:
            self._drop(m, "expired")

    @rule(dt=st.sampled_from([0.05, 0.1, 0.3]))
    def time_passes(self, dt: float) -> None:
        """The clock moves without a sweep (the sweeper is late): gets must still skip."""
        self.now += dt
        self.broker.advance(self.now)

    @rule(no_ack=st.booleans())
    def get(self, no_ack: bool) -> None:
        got = self.ch.basic_get("q", no_ack=no_ack)
        expected = None
        for m in self._order():
            if self._expired(m):
                self._drop(m, "expired")
            else:
                expected = m
                break
        if expected is None:
            assert got is None
            return
        assert got is not None
        assert got.message.body == expected.body
        assert got.redelivered == (expected.deliveries > 0)
        self.ready.remove(expected)
        expected.deliveries += 1
        if no_ack:
            self.fates[(expected.body, "consumed")] += 1
        else:
            self.out[got.delivery_tag] = expected

    @precondition(lambda self: self.out)
    @rule(data=st.data(), action=st.sampled_from(["ack", "requeue", "reject"]))
    def settle(self, data: st.DataObject, action: str) -> None:
        tag = data.draw(st.sampled_from(sorted(self.out)))
        m = self.out.pop(tag)
        if action == "ack":
            self.ch.basic_ack(tag)
            self.fates[(m.body, "consumed")] += 1
        elif action == "reject":
            self.ch.basic_reject(tag, requeue=False)
            self.fates[(m.body, "rejected")] += 1
        else:
            self.ch.basic_reject(tag, requeue=True)
            if self._expired(m):
                self.fates[(m.body, "expired")] += 1
            else:
                self.ready.append(m)
                self._enforce_max_length()

    # -- invariants ---------------------------------------------------------------------

    @invariant()
    def counts_agree_where_the_model_is_exact(self) -> None:
        if not any(self._expired(m) for m in self.ready):
            assert self.ch.queue_declare("q", passive=True)[1] == len(self.ready)

    def teardown(self) -> None:
        """Everything published is accounted for exactly once."""
        if not hasattr(self, "ch") or "q" not in self.ch.vhost.queues:
            return
        for tag in sorted(self.out):
            self.ch.basic_ack(tag)
            self.fates[(self.out[tag].body, "consumed")] += 1
        dead: Counter[tuple[bytes, str]] = Counter()
        while (got := self.ch.basic_get("dlq", no_ack=True)) is not None:
            reason = (got.message.properties.headers or {})["x-death"][0]["reason"]
            dead[(got.message.body, reason)] += 1
        expected_dead = Counter({k: v for k, v in self.fates.items() if k[1] != "consumed"})
        assert dead == expected_dead


TestPolicyQueue = PolicyQueueMachine.TestCase
