"""The Store contract, run against every backend (see ``conftest.BACKENDS``).

Most tests write through one store, close it, open a new one on the same
data and check what came back: what a broker restart sees.
"""

from __future__ import annotations

import errno
import sqlite3
from collections.abc import Iterable

import pytest

from amqplike.properties import EMPTY_PROPERTIES, BasicProperties
from amqplike.store import (
    BindingRecord,
    ExchangeRecord,
    LoadedState,
    QueueRecord,
    Store,
    StoreClosedError,
    StoreState,
)
from tests.store.conftest import Backend, Recorder

PERSISTENT = BasicProperties(delivery_mode=2)
FULL_PROPERTIES = BasicProperties(
    content_type="application/json",
    content_encoding="utf-8",
    headers={"x-trace": "abc", "n": 3, "nested": {"list": [1, "two", b"3"], "f": 1.5}},
    delivery_mode=2,
    priority=4,
    correlation_id="corr-1",
    reply_to="replies",
    expiration="60000",
    message_id="m-1",
    timestamp=1_700_000_000,
    type="order.created",
    user_id="guest",
    app_id="tests",
    cluster_id="c1",
)
ENOSPC = OSError(errno.ENOSPC, "No space left on device")
EIO = sqlite3.OperationalError("disk I/O error")


def restart(backend: Backend, store: Store) -> tuple[Store, Recorder, LoadedState]:
    """Close ``store`` cleanly, open a new one on the same data, return what it loaded."""
    store.close()
    return backend.open()


def ids(loaded: LoadedState, queue: str, vhost: str = "/") -> list[int]:
    """The message ids recovered for one queue, in queue order."""
    return list(loaded.messages[(vhost, queue)].message_ids)


def counts(loaded: LoadedState, queue: str) -> list[int]:
    """The delivery counts recovered for one queue, in queue order."""
    return list(loaded.messages[("/", queue)].delivery_counts)


def with_queues(backend: Backend, *names: str) -> tuple[Store, Recorder]:
    """A store with durable queues ``names`` in vhost "/"."""
    store, recorder, _ = backend.open()
    for name in names:
        store.put_queue(QueueRecord("/", name))
    return store, recorder


def publish(store: Store, queues: Iterable[str], n: int, token_base: int = 0) -> list[int]:
    """Append ``n`` small persistent messages to ``queues``; tokens are token_base+i."""
    return [
        store.append("/", tuple(queues), "", "rk", PERSISTENT, b"body-%d" % i, token_base + i)
        for i in range(n)
    ]


# -- start and topology -----------------------------------------------------------


def test_new_store_is_empty_and_clean(backend: Backend) -> None:
    """A store on new data loads nothing and reports a clean previous shut-down."""
    _, _, loaded = backend.open()
    assert (loaded.exchanges, loaded.queues, loaded.bindings) == ((), (), ())
    assert loaded.messages == {}
    assert loaded.message_count == 0
    assert loaded.clean_shutdown
    assert loaded.warnings == ()


def test_topology_round_trip(backend: Backend) -> None:
    """Exchanges, queues and bindings (queue and exchange-to-exchange) come back with
    their flags and argument tables."""
    store, _, _ = backend.open()
    exchanges = [
        ExchangeRecord("/", "orders", "topic"),
        ExchangeRecord("/", "ae", "fanout", auto_delete=True, internal=True),
        ExchangeRecord("/", "h", "headers", arguments={"alternate-exchange": "ae"}),
        ExchangeRecord("other", "orders", "direct"),
    ]
    queues = [
        QueueRecord("/", "q1"),
        QueueRecord("/", "q2", auto_delete=True, arguments={"x-max-length": 10,
                                                             "x-dead-letter-exchange": "dlx"}),
        QueueRecord("other", "q1"),
    ]
    bindings = [
        BindingRecord("/", "orders", "q1", "queue", "order.#"),
        BindingRecord("/", "orders", "q1", "queue", "order.*.eu"),
        BindingRecord("/", "h", "q2", "queue", "", {"x-match": "all", "kind": "a", "n": 1}),
        BindingRecord("/", "h", "q2", "queue", "", {"x-match": "any", "kind": "b"}),
        BindingRecord("/", "orders", "h", "exchange", "order.#"),
        BindingRecord("other", "orders", "q1", "queue", "k"),
    ]
    for x in exchanges:
        store.put_exchange(x)
    for q in queues:
        store.put_queue(q)
    for b in bindings:
        store.put_binding(b)
    store.put_binding(bindings[0])  # binding twice is a no-op (AMQP 0-9-1, 1.7.2.3)
    _, _, loaded = restart(backend, store)
    assert list(loaded.exchanges) == exchanges
    assert list(loaded.queues) == queues
    assert list(loaded.bindings) == bindings
    assert set(loaded.messages) == {("/", "q1"), ("/", "q2"), ("other", "q1")}


def test_put_replaces_flags(backend: Backend) -> None:
    """Putting an existing exchange or queue again replaces its flags and arguments."""
    store, _, _ = backend.open()
    store.put_exchange(ExchangeRecord("/", "x", "direct"))
    store.put_exchange(ExchangeRecord("/", "x", "topic", arguments={"a": 1}))
    store.put_queue(QueueRecord("/", "q"))
    publish(store, ["q"], 1)
    store.put_queue(QueueRecord("/", "q", arguments={"x-max-length": 5}))
    _, _, loaded = restart(backend, store)
    assert loaded.exchanges == (ExchangeRecord("/", "x", "topic", arguments={"a": 1}),)
    assert loaded.queues == (QueueRecord("/", "q", arguments={"x-max-length": 5}),)
    assert len(ids(loaded, "q")) == 1


def test_delete_binding(backend: Backend) -> None:
    """Deleting a binding forgets only the one with equal key and arguments."""
    store, _, _ = backend.open()
    a = BindingRecord("/", "x", "q", "queue", "k", {"x-match": "all"})
    b = BindingRecord("/", "x", "q", "queue", "k", {"x-match": "any"})
    store.put_binding(a)
    store.put_binding(b)
    store.delete_binding(a)
    store.delete_binding(BindingRecord("/", "x", "q", "queue", "nope"))
    _, _, loaded = restart(backend, store)
    assert loaded.bindings == (b,)


def test_delete_exchange_drops_its_bindings(backend: Backend) -> None:
    """Deleting an exchange forgets the bindings from it and those to it."""
    store, _, _ = backend.open()
    store.put_exchange(ExchangeRecord("/", "a", "direct"))
    store.put_exchange(ExchangeRecord("/", "b", "direct"))
    store.put_exchange(ExchangeRecord("/", "c", "direct"))
    keep = BindingRecord("/", "a", "c", "exchange", "k")
    store.put_binding(BindingRecord("/", "a", "b", "exchange", "k"))
    store.put_binding(BindingRecord("/", "b", "q", "queue", "k"))
    store.put_binding(keep)
    store.delete_exchange("/", "b")
    _, _, loaded = restart(backend, store)
    assert [x.name for x in loaded.exchanges] == ["a", "c"]
    assert loaded.bindings == (keep,)


def test_delete_queue_drops_bindings_and_messages(backend: Backend) -> None:
    """Deleting a queue forgets its bindings and its messages (bodies included)."""
    store, _, _ = backend.open()
    store.put_queue(QueueRecord("/", "q"))
    store.put_queue(QueueRecord("/", "other"))
    store.put_binding(BindingRecord("/", "x", "q", "queue", "k"))
    kept = BindingRecord("/", "x", "other", "queue", "k")
    store.put_binding(kept)
    gone = publish(store, ["q"], 3)
    store.delete_queue("/", "q")
    store, _, loaded = restart(backend, store)
    assert loaded.queues == (QueueRecord("/", "other"),)
    assert loaded.bindings == (kept,)
    assert store.read_messages(gone) == {}
    assert backend.body_count(store) == 0


def test_queue_deleted_and_declared_again_is_empty(backend: Backend) -> None:
    """A queue deleted and declared again in one batch starts empty."""
    store, _ = with_queues(backend, "q")
    publish(store, ["q"], 2)
    store.delete_queue("/", "q")
    store.put_queue(QueueRecord("/", "q"))
    new = publish(store, ["q"], 1)
    _, _, loaded = restart(backend, store)
    assert ids(loaded, "q") == new


# -- messages ---------------------------------------------------------------------


def test_message_round_trip(backend: Backend) -> None:
    """A persistent message comes back with its exchange, key, every property and body."""
    store, _ = with_queues(backend, "q")
    message_id = store.append("/", ["q"], "orders", "order.created.eu", FULL_PROPERTIES,
                              bytes(range(256)) * 4)
    plain = store.append("/", ["q"], "", "q", EMPTY_PROPERTIES, b"")
    store, _, loaded = restart(backend, store)
    assert ids(loaded, "q") == [message_id, plain]
    assert counts(loaded, "q") == [0, 0]
    assert loaded.message_count == 2
    read = store.read_messages([message_id, plain])
    got = read[message_id]
    assert (got.message_id, got.exchange, got.routing_key) == (
        message_id, "orders", "order.created.eu")
    assert got.properties == FULL_PROPERTIES
    assert got.body == bytes(range(256)) * 4
    assert read[plain].properties == EMPTY_PROPERTIES
    assert read[plain].body == b""


def test_queue_order_is_publish_order(backend: Backend) -> None:
    """Each queue's index comes back oldest first, and ids keep growing after a restart."""
    store, _ = with_queues(backend, "q1", "q2")
    first = publish(store, ["q1"], 50)
    both = publish(store, ["q1", "q2"], 50)
    store, _, loaded = restart(backend, store)
    assert ids(loaded, "q1") == first + both
    assert ids(loaded, "q2") == both
    later = publish(store, ["q1"], 1)
    assert later[0] > max(first + both)
    _, _, loaded = restart(backend, store)
    assert ids(loaded, "q1") == first + both + later


def test_acked_message_never_comes_back(backend: Backend) -> None:
    """A removed (acked) message is not recovered, and its body is gone."""
    store, _ = with_queues(backend, "q")
    a, b, c = publish(store, ["q"], 3)
    store.remove("/", "q", b)
    store, _, loaded = restart(backend, store)
    assert ids(loaded, "q") == [a, c]
    assert set(store.read_messages([a, b, c])) == {a, c}
    assert backend.body_count(store) == 2


def test_ack_in_a_later_batch(backend: Backend) -> None:
    """An ack written in a batch after the publish's removes it too."""
    store, recorder = with_queues(backend, "q")
    (a,) = publish(store, ["q"], 1)
    backend.settle(store, recorder)
    store.remove("/", "q", a)
    _, _, loaded = restart(backend, store)
    assert ids(loaded, "q") == []


def test_delivery_count_round_trip(backend: Backend) -> None:
    """Recorded delivery counts come back, so delivered-unacked messages are redelivered."""
    store, recorder = with_queues(backend, "q")
    a, b, c = publish(store, ["q"], 3)
    store.record_delivery("/", "q", a, 1)
    backend.settle(store, recorder)
    store.record_delivery("/", "q", a, 2)
    store.record_delivery("/", "q", c, 1)
    _, _, loaded = restart(backend, store)
    assert ids(loaded, "q") == [a, b, c]
    assert counts(loaded, "q") == [2, 0, 1]


def test_requeued_message_keeps_its_place(backend: Backend) -> None:
    """A delivered then requeued message is still at its original place, with its count."""
    store, _ = with_queues(backend, "q")
    a, b = publish(store, ["q"], 2)
    store.record_delivery("/", "q", a, 1)  # delivered, then requeued: nothing else to write
    store.record_delivery("/", "q", b, 1)
    store.remove("/", "q", b)
    store, _, loaded = restart(backend, store)
    assert list(loaded.messages[("/", "q")]) == [(a, 1)]


def test_shared_body_stored_once_until_last_reference(backend: Backend) -> None:
    """A message routed to several queues is stored once and deleted with its last entry."""
    store, recorder = with_queues(backend, "q1", "q2", "q3")
    (m,) = publish(store, ["q1", "q2", "q3"], 1)
    backend.settle(store, recorder)
    assert backend.body_count(store) == 1
    store.remove("/", "q1", m)
    store.remove("/", "q1", m)  # twice: the second is a no-op, not a lost reference
    store.record_delivery("/", "q2", m, 3)
    store, recorder, loaded = restart(backend, store)
    assert ids(loaded, "q1") == []
    assert list(loaded.messages[("/", "q2")]) == [(m, 3)]
    assert list(loaded.messages[("/", "q3")]) == [(m, 0)]
    assert set(store.read_messages([m])) == {m}
    store.delete_queue("/", "q3")
    store.remove("/", "q2", m)
    backend.settle(store, recorder)
    assert store.read_messages([m]) == {}
    assert backend.body_count(store) == 0


def test_published_and_acked_in_one_batch(backend: Backend) -> None:
    """A message acked before its batch commits is confirmed but leaves nothing behind."""
    store, recorder = with_queues(backend, "q1", "q2")
    (m,) = publish(store, ["q1", "q2"], 1, token_base=7)
    store.record_delivery("/", "q1", m, 1)
    store.remove("/", "q1", m)
    (n,) = publish(store, ["q1"], 1, token_base=8)
    store.remove("/", "q1", n)
    backend.settle(store, recorder)
    assert 7 in recorder.committed and 8 in recorder.committed
    assert backend.body_count(store) == 1
    _, _, loaded = restart(backend, store)
    assert ids(loaded, "q1") == []
    assert ids(loaded, "q2") == [m]


def test_purge_keeps_unacked(backend: Backend) -> None:
    """Purging removes a queue's messages but those named in ``keep`` (delivered, unacked)."""
    store, _ = with_queues(backend, "q", "other")
    a, b, c, d = publish(store, ["q"], 4)
    (shared,) = publish(store, ["q", "other"], 1)
    store.purge_queue("/", "q", keep=[b])
    store.purge_queue("/", "nope")
    e = publish(store, ["q"], 1)[0]
    store, _, loaded = restart(backend, store)
    assert ids(loaded, "q") == [b, e]
    assert ids(loaded, "other") == [shared]
    assert set(store.read_messages([a, b, c, d, shared])) == {b, shared}


def test_purge_everything(backend: Backend) -> None:
    """Purging with nothing to keep empties the queue."""
    store, _ = with_queues(backend, "q")
    publish(store, ["q"], 10)
    store.purge_queue("/", "q")
    store, _, loaded = restart(backend, store)
    assert ids(loaded, "q") == []
    assert backend.body_count(store) == 0


def test_unknown_queues_are_skipped(backend: Backend) -> None:
    """Publishes, acks and deliveries naming queues the store does not hold change nothing."""
    store, recorder = with_queues(backend, "q")
    (m,) = publish(store, ["transient", "q"], 1, token_base=1)
    (n,) = publish(store, ["transient"], 1, token_base=2)
    store.remove("/", "transient", m)
    store.record_delivery("other-vhost", "q", m, 5)
    backend.settle(store, recorder)
    assert {1, 2} <= set(recorder.committed)
    store, _, loaded = restart(backend, store)
    assert list(loaded.messages[("/", "q")]) == [(m, 0)]
    assert store.read_messages([n]) == {}


def test_vhosts_are_separate(backend: Backend) -> None:
    """Queues of the same name in two vhosts hold their own messages."""
    store, _, _ = backend.open()
    store.put_queue(QueueRecord("/", "q"))
    store.put_queue(QueueRecord("v2", "q"))
    a = store.append("/", ["q"], "", "q", PERSISTENT, b"a")
    b = store.append("v2", ["q"], "", "q", PERSISTENT, b"b")
    store.remove("v2", "q", a)
    _, _, loaded = restart(backend, store)
    assert ids(loaded, "q") == [a]
    assert ids(loaded, "q", vhost="v2") == [b]


# -- confirms and batches ------------------------------------------------------------


def test_tokens_reported_in_order_after_commit(backend: Backend) -> None:
    """Every token comes back once, in call order, barrier tokens included."""
    store, recorder = with_queues(backend, "q")
    publish(store, ["q"], 100, token_base=1)
    store.barrier("b1")
    publish(store, ["q"], 100, token_base=101)
    backend.settle(store, recorder)
    assert recorder.committed[:201] == [*range(1, 101), "b1", *range(101, 201)]
    assert recorder.failed == []


def test_no_token_means_no_report(backend: Backend) -> None:
    """A publish without a token (no confirm mode) is written but reports nothing."""
    store, recorder = with_queues(backend, "q")
    store.append("/", ["q"], "", "q", PERSISTENT, b"x")
    backend.settle(store, recorder)
    assert len(recorder.committed) == 1  # the barrier's token only


def test_group_commit(backend: Backend) -> None:
    """Many appends queued together are committed in few transactions."""
    store, recorder = with_queues(backend, "q")
    before = store.stats.commits
    publish(store, ["q"], 5000, token_base=1)
    backend.settle(store, recorder)
    stats = store.stats
    assert stats.commits - before <= 50
    assert stats.largest_batch >= 100
    assert recorder.committed[:5000] == list(range(1, 5001))


def test_clean_shutdown_flag(backend: Backend) -> None:
    """A store closed cleanly says so to the next load."""
    store, _, _ = backend.open()
    _, _, loaded = restart(backend, store)
    assert loaded.clean_shutdown


def test_closed_store_refuses_operations(backend: Backend) -> None:
    """Operations after close raise StoreClosedError; close is idempotent."""
    store, _ = with_queues(backend, "q")
    store.close()
    store.close()
    with pytest.raises(StoreClosedError):
        store.append("/", ["q"], "", "q", PERSISTENT, b"x")
    with pytest.raises(StoreClosedError):
        store.put_queue(QueueRecord("/", "q2"))
    with pytest.raises(StoreClosedError):
        store.read_messages([1])


# -- failures --------------------------------------------------------------------------


def test_disk_full_fails_tokens_blocks_then_resumes(backend: Backend) -> None:
    """ENOSPC: the batch's tokens are failed, the store blocks, and the next write that
    succeeds unblocks it; the failed publishes are not stored, acks are retried."""
    store, recorder = with_queues(backend, "q")
    (kept,) = publish(store, ["q"], 1, token_base=1)
    backend.settle(store, recorder)
    backend.fail_commits(store, ENOSPC, times=2)
    (lost,) = publish(store, ["q"], 1, token_base=2)
    store.remove("/", "q", kept)  # an ack in the failing batch: retried, not dropped
    backend.commit(store)
    recorder.wait_until(lambda: 2 in recorder.failed)
    assert recorder.states[0] is StoreState.BLOCKED
    assert recorder.errors[0].disk_full and not recorder.errors[0].fatal
    (later,) = publish(store, ["q"], 1, token_base=3)
    backend.commit(store)
    backend.commit(store)
    recorder.wait_until(lambda: 3 in recorder.committed or 3 in recorder.failed)
    recorder.wait_until(lambda: recorder.states[-1] is StoreState.OK)
    assert 2 not in recorder.committed
    assert store.state is StoreState.OK
    store, _, loaded = restart(backend, store)
    assert kept not in ids(loaded, "q")
    assert lost not in ids(loaded, "q")
    assert (later in ids(loaded, "q")) == (3 in recorder.committed)


def test_io_error_is_fatal(backend: Backend) -> None:
    """EIO: the batch's tokens are failed, the store goes FAILED and fails every later
    token; what was committed before is still there after a restart."""
    store, recorder = with_queues(backend, "q")
    (kept,) = publish(store, ["q"], 1, token_base=1)
    backend.settle(store, recorder)
    backend.fail_commits(store, EIO, times=1)
    publish(store, ["q"], 1, token_base=2)
    backend.commit(store)
    recorder.wait_until(lambda: StoreState.FAILED in recorder.states)
    assert store.state is StoreState.FAILED
    assert recorder.errors[0].fatal
    publish(store, ["q"], 1, token_base=3)
    store.barrier("after")
    backend.commit(store)
    recorder.wait_until(lambda: "after" in recorder.failed)
    assert [t for t in recorder.committed if isinstance(t, int)] == [1]
    assert recorder.failed == [2, 3, "after"]
    _, _, loaded = restart(backend, store)
    assert kept in ids(loaded, "q")


# -- entry deadlines ----------------------------------------------------------------


def test_entry_expiry_times_round_trip(backend: Backend) -> None:
    """Each entry's absolute expiry time comes back per queue; None where it has none."""
    store, recorder = with_queues(backend, "a", "b", "plain")
    m1 = store.append("/", ("a", "b"), "", "rk", PERSISTENT, b"1", expires=(1000.5, None))
    m2 = store.append("/", ("a",), "", "rk", PERSISTENT, b"2")
    m3 = store.append("/", ("b",), "", "rk", PERSISTENT, b"3", expires=(2000.25,))
    store.append("/", ("plain",), "", "rk", PERSISTENT, b"4")
    backend.settle(store, recorder)
    _, _, loaded = restart(backend, store)
    a, b = loaded.messages[("/", "a")], loaded.messages[("/", "b")]
    assert list(a.message_ids) == [m1, m2]
    assert [a.expiry(i) for i in range(len(a))] == [1000.5, None]
    assert list(b.message_ids) == [m1, m3]
    assert [b.expiry(i) for i in range(len(b))] == [None, 2000.25]
    assert loaded.messages[("/", "plain")].expires is None
