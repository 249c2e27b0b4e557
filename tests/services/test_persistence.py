"""The broker with a store: confirms after commit, writes, recovery, cold queues, alarms.

Everything runs on the in-memory store (``MemoryStore`` over a ``MemoryDisk``
that outlives it): it commits when the test says so, crashes on demand and
fails commits on request, so each behaviour is checked without threads or
files.  The real process is tested in ``tests/faults/``.
"""

from __future__ import annotations

import errno
from collections.abc import Sequence
from typing import Any

import pytest
from twisted.internet.task import Clock

from amqplike.core import Broker, Channel, DropReason
from amqplike.errors import ChannelError
from amqplike.properties import BasicProperties
from amqplike.server import BrokerFactory
from amqplike.services.persistence import (
    DELAYED_QUEUE,
    DISK_FREE_LIMIT,
    EXIT_STORE_FAILED,
    EXIT_STORE_UNUSABLE,
    PersistenceService,
)
from amqplike.store import (
    LoadedState,
    MemoryStore,
    StoreCorruptError,
    StoredMessage,
    StoreListener,
    StoreWriteError,
)
from amqplike.store._memory import MemoryDisk
from amqplike.wire import PROTOCOL_HEADER
from amqplike.wire.methods import (
    BasicAck,
    BasicNack,
    ConfirmSelect,
    ConfirmSelectOk,
    ConnectionBlocked,
    ConnectionOpen,
    ConnectionOpenOk,
    ConnectionStartOk,
    ConnectionTuneOk,
    ConnectionUnblocked,
    QueueDeclare,
    QueueDeclareOk,
)
from tests.core.conftest import RecordingSink
from tests.server._client import TestClient, plain

PERSISTENT = BasicProperties(delivery_mode=2)
TRANSIENT = BasicProperties()
DISK_FULL = StoreWriteError("disk full", disk_full=True, cause=OSError(errno.ENOSPC, "full"))
EIO = StoreWriteError("write failed: disk I/O error", disk_full=False, cause=OSError(errno.EIO, ""))


class CountingStore(MemoryStore):
    """A memory store that counts :meth:`read_messages` calls and the ids they asked for."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.reads: list[int] = []

    def read_messages(self, message_ids: Sequence[int]) -> dict[int, StoredMessage]:
        self.reads.append(len(message_ids))
        return super().read_messages(message_ids)


class Harness:
    """One broker with a store over a disk that survives restarts and crashes."""

    def __init__(self, **service_options: Any) -> None:
        self.disk = MemoryDisk()
        self.clock = Clock()
        self.fatal: list[int] = []
        self.options = service_options
        self.start()

    def start(self, notifier: Any = None) -> None:
        self.broker = Broker()
        self.service = PersistenceService(
            self.broker,
            self._open,
            self.clock,
            notifier=notifier,
            on_fatal=self.fatal.append,
            **self.options,
        )
        self.service.startService()

    def _open(self, listener: StoreListener) -> CountingStore:
        return CountingStore(self.disk, listener)

    @property
    def store(self) -> CountingStore:
        store = self.service.adapter.store
        assert isinstance(store, CountingStore)
        return store

    @property
    def loaded(self) -> LoadedState:
        assert self.service.loaded is not None
        return self.service.loaded

    def commit(self) -> None:
        self.store.commit()

    def restart(self, *, crash: bool = False, notifier: Any = None) -> None:
        """Stop cleanly (the store commits what is queued) or crash (it is lost); start again."""
        if crash:
            self.store.crash()
        else:
            self.service.stopService()
        self.start(notifier)

    def channel(self, number: int = 1) -> tuple[Channel, RecordingSink]:
        sink = RecordingSink()
        return self.broker.connect().open_channel(number, sink), sink


@pytest.fixture
def h() -> Harness:
    """A fresh broker on a fresh memory disk."""
    return Harness()


def publish(ch: Channel, queue: str, body: bytes, properties: BasicProperties = PERSISTENT) -> None:
    ch.basic_publish("", queue, properties, body)


def drain(ch: Channel, queue: str) -> list[tuple[bytes, bool]]:
    """Take every message of a queue with auto-ack: ``(body, redelivered)`` in order."""
    got = []
    while (result := ch.basic_get(queue, no_ack=True)) is not None:
        got.append((result.message.body, result.redelivered))
    return got


def pending_ops(h: Harness) -> list[tuple[Any, ...]]:
    """What the store has queued and not committed, as ``(kind, ...)`` tuples."""
    return list(h.store._pending)


# -- publisher confirms ------------------------------------------------------------------


def test_confirm_of_a_stored_publish_waits_for_the_commit(h: Harness) -> None:
    """A persistent message to a durable queue is acked only once its batch committed."""
    ch, sink = h.channel()
    ch.queue_declare("q", durable=True)
    ch.confirm_select()
    publish(ch, "q", b"m1")
    publish(ch, "q", b"m2")
    assert sink.confirms == []
    h.commit()
    assert sink.confirms == [(1, True), (2, True)]
    assert len(h.disk.messages) == 2


def test_unstored_publishes_are_confirmed_at_once(h: Harness) -> None:
    """Transient messages, and persistent ones to transient or exclusive queues, are not
    stored and are confirmed at once, even ahead of a stored one (RabbitMQ's order)."""
    ch, sink = h.channel()
    ch.queue_declare("durable", durable=True)
    ch.queue_declare("transient")
    ch.queue_declare("mine", durable=True, exclusive=True)
    ch.confirm_select()
    publish(ch, "durable", b"stored")
    publish(ch, "durable", b"t", TRANSIENT)
    publish(ch, "transient", b"p")
    publish(ch, "mine", b"p")
    assert sink.confirms == [(2, True), (3, True), (4, True)]
    h.commit()
    assert sink.confirms[-1] == (1, True)
    assert [m[1].body for m in h.disk.messages.values()] == [b"stored"]


def test_failed_batch_nacks_its_publishes(h: Harness) -> None:
    """A batch the store could not write nacks the publishes it held."""
    ch, sink = h.channel()
    ch.queue_declare("q", durable=True)
    ch.confirm_select()
    publish(ch, "q", b"m1")
    h.store.fail_next_commits(DISK_FULL)
    h.commit()
    assert sink.confirms == [(1, False)]


def test_closed_channel_gets_no_late_confirm(h: Harness) -> None:
    """A confirm released after its channel closed is dropped."""
    ch, sink = h.channel()
    ch.queue_declare("q", durable=True)
    ch.confirm_select()
    publish(ch, "q", b"m1")
    ch.close()
    h.commit()
    assert sink.confirms == []


def test_refused_by_a_full_queue_is_nacked_after_the_write_and_not_kept(h: Harness) -> None:
    """reject-publish on a full durable queue: nack (after the write), nothing stays stored."""
    ch, sink = h.channel()
    ch.queue_declare(
        "q", durable=True, arguments={"x-max-length": 1, "x-overflow": "reject-publish"}
    )
    ch.confirm_select()
    publish(ch, "q", b"m1")
    publish(ch, "q", b"m2")
    h.commit()
    assert sink.confirms == [(1, True), (2, False)]
    assert [m[1].body for m in h.disk.messages.values()] == [b"m1"]


# -- what is written ------------------------------------------------------------------------


def test_message_to_several_durable_queues_is_stored_once(h: Harness) -> None:
    """A fanout to two durable queues and a transient one stores one body, two entries."""
    ch, _ = h.channel()
    ch.exchange_declare("fan", "fanout", durable=True)
    for name, durable in (("a", True), ("b", True), ("c", False)):
        ch.queue_declare(name, durable=durable)
        ch.queue_bind(name, "fan")
    ch.basic_publish("fan", "", PERSISTENT, b"m")
    h.commit()
    assert [refs for refs, _ in h.disk.messages.values()] == [2]
    assert {key[1] for key, entries in h.disk.entries.items() if entries} == {"a", "b"}


@pytest.mark.parametrize("how", ["ack", "auto-ack", "reject", "get-ack"])
def test_settling_removes_from_the_store(h: Harness, how: str) -> None:
    """Acks, auto-acks and rejects without requeue remove the stored message."""
    ch, sink = h.channel()
    ch.queue_declare("q", durable=True)
    publish(ch, "q", b"m")
    h.commit()
    if how == "get-ack":
        result = ch.basic_get("q")
        assert result is not None
        ch.basic_ack(result.delivery_tag)
    else:
        ch.basic_consume("q", no_ack=how == "auto-ack")
        if how == "ack":
            ch.basic_ack(sink.tags()[0])
        elif how == "reject":
            ch.basic_reject(sink.tags()[0], requeue=False)
    h.commit()
    assert h.disk.messages == {}


def test_deliveries_are_counted_and_requeues_write_nothing(h: Harness) -> None:
    """A delivery records its count; a requeue (nack, close) writes nothing."""
    ch, sink = h.channel()
    ch.queue_declare("q", durable=True)
    publish(ch, "q", b"m")
    h.commit()
    ch.basic_consume("q")
    assert [op[0] for op in pending_ops(h)] == ["delivered"]
    h.commit()
    ch.basic_nack(sink.tags()[0], requeue=True)
    ops = pending_ops(h)
    assert [op[0] for op in ops] == ["delivered"]  # the redelivery, not the requeue
    assert ops[0][-1] == 2


def test_dead_letter_copy_is_appended_before_the_original_is_removed(h: Harness) -> None:
    """A rejected message dead-lettered to a durable queue: append the copy, then remove."""
    ch, sink = h.channel()
    ch.exchange_declare("dlx", "fanout", durable=True)
    ch.queue_declare("dead", durable=True)
    ch.queue_bind("dead", "dlx")
    ch.queue_declare("q", durable=True, arguments={"x-dead-letter-exchange": "dlx"})
    publish(ch, "q", b"m")
    h.commit()
    ch.basic_consume("q")
    ch.basic_reject(sink.tags()[0], requeue=False)
    kinds = [(op[0], op[2]) for op in pending_ops(h)]
    assert kinds == [("delivered", "q"), ("append", ("dead",)), ("remove", "q")]
    h.commit()
    assert [m[1].body for m in h.disk.messages.values()] == [b"m"]
    assert {key[1] for key, entries in h.disk.entries.items() if entries} == {"dead"}


@pytest.mark.parametrize("reason", [DropReason.EXPIRED, DropReason.MAXLEN])
def test_expiry_and_max_length_remove_from_the_store(h: Harness, reason: DropReason) -> None:
    """A message dropped by its TTL or by x-max-length leaves the store too."""
    ch, _ = h.channel()
    arguments = {"x-message-ttl": 1000} if reason is DropReason.EXPIRED else {"x-max-length": 1}
    ch.queue_declare("q", durable=True, arguments=arguments)
    publish(ch, "q", b"m1")
    publish(ch, "q", b"m2")
    h.commit()
    h.broker.expire(5.0)
    h.commit()
    left = [m[1].body for m in h.disk.messages.values()]
    assert left == ([] if reason is DropReason.EXPIRED else [b"m2"])


def test_purge_keeps_unacked_messages_in_the_store(h: Harness) -> None:
    """queue.purge drops ready messages from the store but not delivered, unacked ones."""
    ch, _sink = h.channel()
    ch.queue_declare("q", durable=True)
    for body in (b"m1", b"m2", b"m3"):
        publish(ch, "q", body)
    h.commit()
    assert ch.basic_get("q") is not None
    assert ch.queue_purge("q") == 2
    h.commit()
    assert [m[1].body for m in h.disk.messages.values()] == [b"m1"]


def test_queue_delete_forgets_it_in_the_store(h: Harness) -> None:
    """Deleting a durable queue deletes it and its messages from the store."""
    ch, _ = h.channel()
    ch.queue_declare("q", durable=True)
    publish(ch, "q", b"m")
    ch.queue_delete("q")
    h.commit()
    assert h.disk.queues == {} and h.disk.messages == {}


# -- recovery ------------------------------------------------------------------------------------


def test_topology_is_rebuilt_and_transient_things_are_not(h: Harness) -> None:
    """Durable exchanges, queues (with arguments) and bindings (with arguments, and
    exchange to exchange) come back; transient and exclusive ones do not."""
    ch, _ = h.channel()
    ch.exchange_declare("events", "topic", durable=True)
    ch.exchange_declare("front", "direct", durable=True)
    ch.exchange_bind("events", "front", "order.paid")
    ch.exchange_declare("hdr", "headers", durable=True, arguments={"alternate-exchange": "x"})
    ch.queue_declare("orders", durable=True, arguments={"x-custom": 1})
    ch.queue_bind("orders", "events", "order.*")
    ch.queue_bind("orders", "hdr", arguments={"x-match": "any", "kind": "order"})
    ch.queue_bind("orders", "amq.direct", "direct-key")
    ch.queue_declare("scratch")
    ch.exchange_declare("temp", "fanout")
    ch.queue_bind("orders", "temp")
    ch.queue_declare("gone", durable=True)
    ch.queue_bind("gone", "events", "#")
    ch.queue_bind("orders", "events", "unbound.*")
    ch.queue_unbind("orders", "events", "unbound.*")
    ch.queue_delete("gone")
    exclusive, _, _ = ch.queue_declare("", durable=True, exclusive=True)
    h.restart()
    vhost = h.broker.vhosts["/"]
    assert set(vhost.queues) == {"orders"}
    assert vhost.queues["orders"].arguments == {"x-custom": 1}
    assert {"events", "front", "hdr"} <= set(vhost.exchanges)
    assert "temp" not in vhost.exchanges and exclusive not in vhost.queues
    assert vhost.exchanges["hdr"].arguments == {"alternate-exchange": "x"}
    ch, _ = h.channel()
    ch.basic_publish("front", "order.paid", TRANSIENT, b"via-e2e")
    ch.basic_publish("events", "order.new", TRANSIENT, b"via-topic")
    ch.basic_publish("events", "unbound.x", TRANSIENT, b"unbound")
    ch.basic_publish(
        "hdr", "", BasicProperties(headers={"kind": "order"}), b"via-headers"
    )
    ch.basic_publish("amq.direct", "direct-key", TRANSIENT, b"via-amq")
    assert [b for b, _ in drain(ch, "orders")] == [
        b"via-e2e",
        b"via-topic",
        b"via-headers",
        b"via-amq",
    ]


def test_server_named_durable_queue_is_recovered(h: Harness) -> None:
    """A durable, non-exclusive queue named by the server (amq.gen-…) comes back too."""
    ch, _ = h.channel()
    name, _, _ = ch.queue_declare("", durable=True)
    h.restart()
    assert name in h.broker.vhosts["/"].queues


def test_messages_come_back_in_order_with_their_delivery_counts(h: Harness) -> None:
    """After a clean restart: same order; only messages delivered before are redelivered."""
    ch, sink = h.channel()
    ch.queue_declare("q", durable=True)
    for i in range(5):
        publish(ch, "q", b"m%d" % i)
    ch.basic_qos(prefetch_count=2)
    ch.basic_consume("q")
    ch.basic_ack(sink.tags()[0])  # m0 acked, m1 delivered and unacked, m2 delivered then
    ch.basic_nack(sink.tags()[1], requeue=True)
    h.restart()
    ch, _ = h.channel()
    assert drain(ch, "q") == [
        (b"m1", True),
        (b"m2", True),
        (b"m3", False),
        (b"m4", False),
    ]


def test_after_a_crash_every_recovered_message_is_redelivered(h: Harness) -> None:
    """Unclean shut-down: every recovered message has redelivered=True (the crash rule);
    what was not committed is lost."""
    ch, _ = h.channel()
    ch.queue_declare("q", durable=True)
    publish(ch, "q", b"m1")
    publish(ch, "q", b"m2")
    h.commit()
    publish(ch, "q", b"uncommitted")
    h.restart(crash=True)
    assert not h.loaded.clean_shutdown
    ch, _ = h.channel()
    assert drain(ch, "q") == [(b"m1", True), (b"m2", True)]


def test_recovered_messages_stay_on_disk_until_consumers_reach_them(h: Harness) -> None:
    """A recovered plain queue holds ids only; bodies are read back in batches of 1000."""
    ch, _ = h.channel()
    ch.queue_declare("q", durable=True)
    for i in range(2500):
        publish(ch, "q", b"%d" % i)
    h.restart()
    queue = h.broker.vhosts["/"].queues["q"]
    assert queue.cold_count == 2500 and queue.message_count == 2500
    assert h.store.reads == []
    ch, sink = h.channel()
    ch.basic_qos(prefetch_count=10)
    ch.basic_consume("q")
    assert sink.bodies == [b"%d" % i for i in range(10)]
    assert h.store.reads == [1000]
    assert queue.cold_count == 1500 and queue.message_count == 2490
    for tag in sink.tags():
        ch.basic_ack(tag)
    ch.close()
    ch, _ = h.channel(2)
    got = drain(ch, "q")
    assert [b for b, _ in got] == [b"%d" % i for i in range(10, 2500)]
    assert h.store.reads == [1000, 1000, 500]


def test_requeued_recovered_messages_keep_their_place(h: Harness) -> None:
    """Messages read back and requeued go back in front of newer publishes, in order."""
    ch, _ = h.channel()
    ch.queue_declare("q", durable=True)
    publish(ch, "q", b"old1")
    publish(ch, "q", b"old2")
    h.restart()
    ch, _sink = h.channel()
    publish(ch, "q", b"new")
    ch.basic_consume("q")
    ch.basic_recover(requeue=True)
    ch.close()
    ch, _ = h.channel(2)
    assert [b for b, _ in drain(ch, "q")] == [b"old1", b"old2", b"new"]


def test_recovered_policy_queue_is_loaded_and_keeps_its_policy(h: Harness) -> None:
    """A priority queue needs its messages' properties: it is read back at start, in order."""
    ch, _ = h.channel()
    ch.queue_declare("p", durable=True, arguments={"x-max-priority": 5})
    for body, priority in ((b"low", 1), (b"high", 5), (b"mid", 3)):
        publish(ch, "p", body, BasicProperties(delivery_mode=2, priority=priority))
    h.restart()
    assert h.broker.vhosts["/"].queues["p"].cold_count == 0
    ch, _ = h.channel()
    assert [b for b, _ in drain(ch, "p")] == [b"high", b"mid", b"low"]


def test_a_message_missing_from_the_store_is_skipped(h: Harness) -> None:
    """An id the store no longer has (a salvaged corruption) is dropped, not delivered."""
    ch, _ = h.channel()
    ch.queue_declare("q", durable=True)
    for body in (b"m1", b"m2", b"m3"):
        publish(ch, "q", body)
    h.restart()
    lost = sorted(h.disk.messages)[1]
    del h.disk.messages[lost]
    ch, _ = h.channel()
    assert [b for b, _ in drain(ch, "q")] == [b"m1", b"m3"]


def test_delayed_messages_survive_a_restart(h: Harness) -> None:
    """A persistent message held by a durable delayed exchange is stored, recovered with its
    due time, routed when due, and then leaves the store's delayed queue."""
    ch, sink = h.channel()
    ch.exchange_declare(
        "later", "x-delayed-message", durable=True, arguments={"x-delayed-type": "direct"}
    )
    ch.queue_declare("q", durable=True)
    ch.queue_bind("q", "later", "k")
    ch.confirm_select()
    props = BasicProperties(delivery_mode=2, headers={"x-delay": 5000})
    ch.basic_publish("later", "k", props, b"delayed", now=0.0)
    assert sink.confirms == []
    h.commit()
    assert sink.confirms == [(1, True)]
    h.restart()
    vhost = h.broker.vhosts["/"]
    assert [d.message.body for d in vhost.delayed.values()] == [b"delayed"]
    held = next(iter(vhost.delayed.values()))
    assert held.due == 5.0 and held.message.properties.headers == {"x-delay": 5000}
    h.broker.expire(4.0)
    assert vhost.queues["q"].message_count == 0
    h.broker.expire(5.0)
    h.commit()
    assert vhost.queues["q"].message_count == 1
    assert h.disk.entries[("/", DELAYED_QUEUE)] == {}
    h.restart()
    ch, _ = h.channel()
    assert [b for b, _ in drain(ch, "q")] == [b"delayed"]


# -- alarms and failures ---------------------------------------------------------------------


def test_blocked_store_refuses_stored_publishes_only(h: Harness) -> None:
    """While blocked, persistent publishes to durable queues are nacked and not enqueued;
    transient ones still flow."""
    ch, sink = h.channel()
    ch.queue_declare("q", durable=True)
    ch.confirm_select()
    h.service.adapter.set_blocked(DISK_FREE_LIMIT, True)
    publish(ch, "q", b"refused")
    publish(ch, "q", b"transient", TRANSIENT)
    assert sink.confirms == [(1, False), (2, True)]
    assert h.broker.vhosts["/"].queues["q"].message_count == 1
    h.service.adapter.set_blocked(DISK_FREE_LIMIT, False)
    publish(ch, "q", b"accepted")
    h.commit()
    assert sink.confirms[-1] == (3, True)


def test_fatal_store_error_stops_the_broker(h: Harness) -> None:
    """A fatal write error nacks the batch and asks for a non-zero exit."""
    ch, sink = h.channel()
    ch.queue_declare("q", durable=True)
    ch.confirm_select()
    publish(ch, "q", b"m")
    h.store.fail_next_commits(EIO)
    h.commit()
    assert sink.confirms == [(1, False)]
    assert h.fatal == [EXIT_STORE_FAILED]
    publish(ch, "q", b"after")
    assert sink.confirms[-1] == (2, False)


def test_unusable_store_refuses_to_start() -> None:
    """A corrupt store is logged with its file and position, and start-up exits non-zero."""

    class Corrupt(MemoryStore):
        def load(self) -> LoadedState:
            raise StoreCorruptError("/data/amqplike.sqlite3", "malformed", pages=(7,), offsets=(8192 * 6,))

    service = PersistenceService(Broker(), lambda listener: Corrupt(MemoryDisk(), listener), Clock())
    with pytest.raises(SystemExit) as info:
        service.privilegedStartService()
    assert info.value.code == EXIT_STORE_UNUSABLE


CAPABLE = {"capabilities": {"connection.blocked": True}}


def _client(factory: BrokerFactory) -> TestClient:
    client = TestClient(factory)
    client.handshake(client_properties=CAPABLE)
    return client


def test_disk_full_blocks_publishers_and_unblocks_them(h: Harness) -> None:
    """ENOSPC: the batch is nacked and clients that asked get connection.blocked; the next
    successful write sends connection.unblocked."""
    factory = BrokerFactory(h.broker, h.clock)
    h.restart(notifier=factory)
    factory = BrokerFactory(h.broker, h.clock)
    h.service.adapter._notifier = factory
    client = _client(factory)
    incapable = TestClient(factory)
    incapable.handshake()
    client.open_channel(1)
    client.send(1, QueueDeclare("q", durable=True))
    client.expect(QueueDeclareOk, 1)
    client.send(1, ConfirmSelect())
    client.expect(ConfirmSelectOk, 1)
    client.publish(1, b"m", "q", properties=PERSISTENT)
    h.store.fail_next_commits(DISK_FULL)
    h.commit()
    assert client.methods() == [BasicNack(1, False, False), ConnectionBlocked(
        "low on disk space: the store's disk is full")]
    assert incapable.methods() == []
    late = TestClient(factory)
    late.send_raw(PROTOCOL_HEADER)
    late.send(0, ConnectionStartOk(CAPABLE, "PLAIN", plain("guest", "guest"), "en_US"))
    late.send(0, ConnectionTuneOk(0, 131072, 0))
    late.send(0, ConnectionOpen("/"))
    assert late.methods()[-2:] == [
        ConnectionOpenOk(),
        ConnectionBlocked("low on disk space: the store's disk is full"),
    ]
    client.publish(1, b"m2", "q", properties=PERSISTENT)
    assert client.methods() == [BasicNack(2, False, False)]
    h.store.barrier(object())
    h.commit()
    assert client.methods() == [ConnectionUnblocked()]
    client.publish(1, b"m3", "q", properties=PERSISTENT)
    h.commit()
    assert client.methods() == [BasicAck(3, False)]


def test_confirms_committed_together_are_one_multiple_ack(h: Harness) -> None:
    """The server coalesces confirms released by one commit into one basic.ack multiple."""
    factory = BrokerFactory(h.broker, h.clock)
    h.service.adapter._notifier = factory
    client = _client(factory)
    client.open_channel(1)
    client.send(1, QueueDeclare("q", durable=True))
    client.expect(QueueDeclareOk, 1)
    client.send(1, ConfirmSelect())
    client.expect(ConfirmSelectOk, 1)
    client.send_raw(b"".join(client.encode_publish(1, b"m", "q", properties=PERSISTENT)
                             for _ in range(3)))
    client.publish(1, b"t", "q")
    assert client.methods() == [BasicAck(4, False)]
    h.commit()
    assert client.methods() == [BasicAck(3, True)]


def test_free_disk_limit_blocks_below_and_unblocks_above() -> None:
    """--disk-free-limit: checked on the clock; below the limit publishers are blocked."""

    class Usage:
        free = 10_000

    usage = Usage()
    h = Harness(
        data_dir="/data",
        disk_free_limit=50_000,
        disk_check_seconds=1.0,
        disk_usage=lambda path: usage,
    )
    assert h.service.adapter.blocked_reason == DISK_FREE_LIMIT
    ch, sink = h.channel()
    ch.queue_declare("q", durable=True)
    ch.confirm_select()
    publish(ch, "q", b"m")
    assert sink.confirms == [(1, False)]
    usage.free = 100_000
    h.clock.advance(1.0)
    assert h.service.adapter.blocked_reason is None
    h.service.stopService()
    assert h.clock.getDelayedCalls() == []


def test_stopped_service_closes_the_store_cleanly(h: Harness) -> None:
    """stopService commits what is queued and marks a clean shut-down; later writes are
    ignored and stored publishes refused."""
    ch, sink = h.channel()
    ch.queue_declare("q", durable=True)
    publish(ch, "q", b"m")
    h.service.stopService()
    assert h.disk.clean and len(h.disk.messages) == 1
    ch.confirm_select()
    publish(ch, "q", b"late")
    assert sink.confirms == [(1, False)]
    with pytest.raises(ChannelError):
        ch.queue_declare("q", durable=False)


# -- paging out live messages --------------------------------------------------------------


def test_committed_messages_deep_in_a_queue_leave_memory(h: Harness) -> None:
    """Bodies of committed messages more than PAGE_KEEP_HOT behind the head are paged out
    (after a barrier reports them committed) and read back in order when consumed."""
    from amqplike.core.queues import PAGE_KEEP_HOT

    ch, _ = h.channel()
    ch.queue_declare("q", durable=True)
    total = PAGE_KEEP_HOT + 2500
    for i in range(total):
        publish(ch, "q", b"%d" % i)
    queue = h.broker.vhosts["/"].queues["q"]
    assert h.service.page_out() == 0  # nothing known committed yet: only a barrier is sent
    h.commit()
    assert h.service.page_out() == 2500
    assert queue.cold_count == 2500 and queue.message_count == total
    publish(ch, "q", b"transient", TRANSIENT)  # not stored: stays in memory
    publish(ch, "q", b"last")
    h.commit()
    h.service.page_out()
    h.commit()
    assert h.service.page_out() == 0  # the transient message breaks the run; "last" is alone
    got = [b for b, _ in drain(ch, "q")]
    assert got == [b"%d" % i for i in range(total)] + [b"transient", b"last"]
    assert h.store.reads == [1000, 1000, 500]


def test_messages_of_a_failed_batch_are_never_paged_out(h: Harness) -> None:
    """Publishes of a batch that failed (disk full) are not on disk: they stay in memory."""
    from amqplike.core.queues import PAGE_KEEP_HOT

    ch, _ = h.channel()
    ch.queue_declare("q", durable=True)
    total = PAGE_KEEP_HOT + 1500
    for i in range(total):
        publish(ch, "q", b"%d" % i)
    h.service.page_out()
    h.store.fail_next_commits(DISK_FULL)
    h.commit()
    h.commit()  # the store retries what it kept (not the publishes) and unblocks
    h.service.page_out()
    h.commit()
    assert h.service.page_out() == 0
    assert [b for b, _ in drain(ch, "q")] == [b"%d" % i for i in range(total)]
    assert h.store.reads == []


def test_paging_out_looks_only_at_what_is_new(h: Harness) -> None:
    """Transient messages behind the hot head are looked at once, not on every run."""
    from amqplike.core.queues import PAGE_KEEP_HOT

    ch, _ = h.channel()
    ch.queue_declare("q", durable=True)
    for i in range(PAGE_KEEP_HOT + 2000):
        publish(ch, "q", b"%d" % i, TRANSIENT)
    queue = h.broker.vhosts["/"].queues["q"]
    publish(ch, "q", b"stored")
    h.service.page_out()
    h.commit()
    scanned = queue._scan_seq
    assert h.service.page_out() == 1  # the stored one; the transient ones stay
    assert queue._scan_seq > scanned
    popped = []
    real_pop = queue._ready.pop

    def pop() -> object:
        popped.append(1)
        return real_pop()

    ready = queue._ready

    class Spy:
        def __getattr__(self, name: str) -> object:
            return pop if name == "pop" else getattr(ready, name)

        def __len__(self) -> int:
            return len(ready)

        def __getitem__(self, index: int) -> object:
            return ready[index]

    queue._ready = Spy()  # type: ignore[assignment]
    try:
        assert h.service.page_out() == 0
    finally:
        queue._ready = ready
    assert popped == []


def test_recovered_deadlines_count_from_the_start_up_time(h: Harness) -> None:
    """An x-expires queue recovered at time T expires at T + expires, not at once."""
    ch, _ = h.channel()
    ch.queue_declare("idle", durable=True, arguments={"x-expires": 10_000})
    h.clock.advance(1000)
    h.restart()
    assert h.broker.now == 1000
    h.broker.expire(1005)
    assert "idle" in h.broker.vhosts["/"].queues
    h.broker.expire(1010)
    assert "idle" not in h.broker.vhosts["/"].queues


# -- TTL deadlines across restarts ---------------------------------------------------------


def test_stored_ttl_deadlines_survive_a_restart(h: Harness) -> None:
    """A TTL counts from the original publish, not from recovery: messages whose
    deadline passed while the broker was down are dead-lettered "expired" at start
    (once each), the others keep their original deadline."""
    ch, _ = h.channel()
    ch.exchange_declare("dlx", "fanout", durable=True)
    ch.queue_declare("dead", durable=True)
    ch.queue_bind("dead", "dlx")
    ch.queue_declare(
        "work", durable=True,
        arguments={"x-dead-letter-exchange": "dlx", "x-message-ttl": 1500},
    )
    ch.queue_declare("own", durable=True, arguments={"x-dead-letter-exchange": "dlx"})
    ch.queue_declare("long", durable=True)
    ch.basic_publish("", "work", PERSISTENT, b"w1", now=100.0)
    ch.basic_publish(
        "", "own", BasicProperties(delivery_mode=2, expiration="1000"), b"o1", now=100.0
    )
    ch.basic_publish(
        "", "long", BasicProperties(delivery_mode=2, expiration="60000"), b"l1", now=100.0
    )
    h.commit()
    h.clock.advance(102.0)
    h.restart()
    ch, _ = h.channel()
    assert drain(ch, "work") == [] and drain(ch, "own") == []
    dead = []
    while (result := ch.basic_get("dead", no_ack=True)) is not None:
        dead.append(result.message)
    assert sorted(m.body for m in dead) == [b"o1", b"w1"]
    for m in dead:
        headers = m.properties.headers or {}
        (death,) = headers["x-death"]
        assert death["reason"] == "expired"
    # The long TTL keeps its original deadline (publish at 100 s + 60 s), not 102 + 60.
    (entry,) = h.broker.vhosts["/"].queues["long"]._ready_entries()
    assert entry.expires_at == 160.0
    h.restart()  # a second restart does not restart it either
    (entry,) = h.broker.vhosts["/"].queues["long"]._ready_entries()
    assert entry.expires_at == 160.0
    h.broker.expire(160.0)
    ch, _ = h.channel()
    assert drain(ch, "long") == []
