"""A hypothesis state machine: publish/get/ack/nack/reject/commit/restart/crash/page-out
against a simple model of what the queue and the disk hold (RELIABILITY.md C1).

The batch sizes of reading back and paging out are made tiny so that cold
runs, their thawing and live paging happen within a few dozen steps.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

import amqplike.core.queues as queues_module
from amqplike.properties import BasicProperties
from tests.services.test_persistence import Harness

PERSISTENT = BasicProperties(delivery_mode=2)


class _Message:
    """The model of one published message."""

    def __init__(self, seq: int) -> None:
        self.seq = seq
        self.body = b"%d" % seq
        self.live_count = 0  # deliveries the broker knows of
        self.disk_count = 0  # deliveries the disk knows of
        self.on_disk = False


class PersistenceMachine(RuleBasedStateMachine):
    """Drive a broker with a memory store; compare each answer with the model."""

    def __init__(self) -> None:
        super().__init__()
        self.h = Harness(page_out_seconds=0)
        self.ch, _ = self.h.channel()
        self.ch.queue_declare("q", durable=True)
        self.h.commit()
        self.next_seq = 0
        self.messages: dict[int, _Message] = {}
        self.ready: list[int] = []  # seqs, queue order = seq order
        self.out: dict[int, int] = {}  # delivery tag -> seq
        self.pending: list[tuple[str, int, int]] = []  # ops not committed: (kind, seq, count)
        self.channel_number = 1

    # -- operations -------------------------------------------------------------------

    @rule()
    def publish(self) -> None:
        seq = self.next_seq
        self.next_seq += 1
        self.messages[seq] = _Message(seq)
        self.ready.append(seq)
        self.ch.basic_publish("", "q", PERSISTENT, b"%d" % seq)
        self.pending.append(("append", seq, 0))

    @rule()
    def get(self) -> None:
        result = self.ch.basic_get("q")
        if not self.ready:
            assert result is None
            return
        seq = min(self.ready)
        self.ready.remove(seq)
        message = self.messages[seq]
        assert result is not None
        assert result.message.body == message.body
        assert result.redelivered == (message.live_count > 0)
        message.live_count += 1
        self.out[result.delivery_tag] = seq
        self.pending.append(("delivered", seq, message.live_count))

    @precondition(lambda self: self.out)
    @rule(data=st.data(), how=st.sampled_from(["ack", "requeue", "reject"]))
    def settle(self, data: Any, how: str) -> None:
        tag = data.draw(st.sampled_from(sorted(self.out)))
        seq = self.out.pop(tag)
        if how == "ack":
            self.ch.basic_ack(tag)
        elif how == "requeue":
            self.ch.basic_nack(tag, requeue=True)
            self.ready.append(seq)
            return
        else:
            self.ch.basic_reject(tag, requeue=False)
        self.pending.append(("remove", seq, 0))

    @rule()
    def commit(self) -> None:
        self.h.commit()
        self._apply_pending()

    @rule()
    def page_out(self) -> None:
        self.h.service.page_out()

    @rule()
    def restart(self) -> None:
        self.h.restart()
        self._apply_pending()
        self._recover(crashed=False)

    @rule()
    def crash(self) -> None:
        self.h.restart(crash=True)
        self.pending.clear()
        self._recover(crashed=True)

    # -- the model ---------------------------------------------------------------------

    def _apply_pending(self) -> None:
        for kind, seq, count in self.pending:
            message = self.messages[seq]
            if kind == "append":
                message.on_disk = True
            elif kind == "delivered":
                message.disk_count = count
            else:
                message.on_disk = False
        self.pending.clear()

    def _recover(self, *, crashed: bool) -> None:
        survivors = {}
        for seq, message in self.messages.items():
            if not message.on_disk:
                continue
            # After a crash every recovered message counts as delivered once (the
            # crash rule of docs/durability.md); the disk keeps its own count.
            message.live_count = max(message.disk_count, 1) if crashed else message.disk_count
            survivors[seq] = message
        self.messages = survivors
        self.ready = sorted(survivors)
        self.out.clear()
        self.channel_number += 1
        self.ch, _ = self.h.channel(self.channel_number)

    @invariant()
    def counts_agree(self) -> None:
        queue = self.h.broker.vhosts["/"].queues["q"]
        assert queue.message_count == len(self.ready)


@pytest.fixture(autouse=True)
def _tiny_batches(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(queues_module, "THAW_BATCH", 2)
    monkeypatch.setattr(queues_module, "PAGE_KEEP_HOT", 2)
    monkeypatch.setattr(queues_module, "PAGE_MIN", 1)


TestPersistenceMachine = PersistenceMachine.TestCase
TestPersistenceMachine.settings = settings(max_examples=150, stateful_step_count=40)
