"""Exchange declare/delete, bindings, exchange-to-exchange routing, through a channel."""

from __future__ import annotations

import pytest

from amqplike.core import Broker, Channel, Connection
from amqplike.errors import ChannelError, HardError
from amqplike.properties import BasicProperties

from .conftest import RecordingSink, publish


def declare_bound(ch: Channel, queue: str, exchange: str, key: str = "") -> None:
    ch.queue_declare(queue)
    ch.queue_bind(queue, exchange, key)


def counts(ch: Channel, *queues: str) -> list[int]:
    return [ch.queue_declare(q, passive=True)[1] for q in queues]


def test_predefined_exchanges_exist(ch: Channel) -> None:
    """Every vhost has amq.direct, amq.fanout, amq.topic, amq.headers and amq.match."""
    for name in ("amq.direct", "amq.fanout", "amq.topic", "amq.headers", "amq.match"):
        ch.exchange_declare(name, passive=True)


def test_new_vhost_has_predefined_exchanges(broker: Broker) -> None:
    """A vhost added later gets its own default and amq.* exchanges."""
    vhost = broker.add_vhost("other")
    assert {"", "amq.direct", "amq.topic"} <= set(vhost.exchanges)


def test_default_exchange_routes_by_queue_name(ch: Channel) -> None:
    """Publishing to "" puts the message in the queue named by the routing key."""
    ch.queue_declare("q")
    publish(ch, "q")
    assert counts(ch, "q") == [1]


def test_default_exchange_cannot_be_declared(ch: Channel) -> None:
    """Declaring the default exchange is 403 ACCESS_REFUSED."""
    with pytest.raises(ChannelError) as e:
        ch.exchange_declare("")
    assert e.value.reply_code == 403


def test_default_exchange_cannot_be_deleted(ch: Channel) -> None:
    """Deleting the default exchange is 403."""
    with pytest.raises(ChannelError) as e:
        ch.exchange_delete("")
    assert e.value.reply_code == 403


def test_default_exchange_cannot_be_bound(ch: Channel) -> None:
    """Binding a queue to the default exchange is 403."""
    ch.queue_declare("q")
    with pytest.raises(ChannelError) as e:
        ch.queue_bind("q", "", "q")
    assert e.value.reply_text == "ACCESS_REFUSED - operation not permitted on the default exchange"


def test_amq_prefix_refused_for_new_exchange(ch: Channel) -> None:
    """A new exchange named amq.* is 403, with RabbitMQ's text."""
    with pytest.raises(ChannelError) as e:
        ch.exchange_declare("amq.mine", "direct")
    assert e.value.reply_code == 403
    assert "contains reserved prefix 'amq.*'" in e.value.reply_text


def test_equivalent_redeclare_of_predefined_exchange_ok(ch: Channel) -> None:
    """Redeclaring amq.direct with its own (durable) settings is allowed."""
    ch.exchange_declare("amq.direct", "direct", durable=True)


def test_delete_predefined_exchange_refused(ch: Channel) -> None:
    """Deleting an amq.* exchange is 403."""
    with pytest.raises(ChannelError) as e:
        ch.exchange_delete("amq.topic")
    assert e.value.reply_code == 403
    assert e.value.reply_text == (
        "ACCESS_REFUSED - deletion of system exchange 'amq.topic' in vhost '/' not allowed"
    )


def test_unknown_exchange_type_is_hard_503(ch: Channel) -> None:
    """An unknown exchange type closes the connection: HardError 503."""
    with pytest.raises(HardError) as e:
        ch.exchange_declare("x", "x-bogus")
    assert e.value.reply_code == 503
    assert e.value.reply_text == "COMMAND_INVALID - unknown exchange type 'x-bogus'"


def test_redeclare_with_other_type_is_406(ch: Channel) -> None:
    """Redeclaring with a different type is 406 with RabbitMQ's inequivalent-arg text."""
    ch.exchange_declare("x", "direct")
    with pytest.raises(ChannelError) as e:
        ch.exchange_declare("x", "fanout")
    assert e.value.reply_code == 406
    assert e.value.reply_text == (
        "PRECONDITION_FAILED - inequivalent arg 'type' for exchange 'x' in vhost '/':"
        " received 'fanout' but current is 'direct'"
    )


@pytest.mark.parametrize(
    ("flag", "kwargs"),
    [
        ("durable", {"durable": True}),
        ("auto_delete", {"auto_delete": True}),
        ("internal", {"internal": True}),
        ("alternate-exchange", {"arguments": {"alternate-exchange": "ae"}}),
    ],
)
def test_redeclare_with_other_flags_is_406(ch: Channel, flag: str, kwargs: dict[str, object]) -> None:
    """Redeclaring with different durable/auto_delete/internal/arguments is 406 naming the field."""
    ch.exchange_declare("x", "direct")
    with pytest.raises(ChannelError) as e:
        ch.exchange_declare("x", "direct", **kwargs)  # type: ignore[arg-type]
    assert e.value.reply_code == 406
    assert f"inequivalent arg '{flag}'" in e.value.reply_text


def test_equivalent_redeclare_ok(ch: Channel) -> None:
    """Redeclaring with the same settings succeeds and keeps bindings."""
    ch.exchange_declare("x", "fanout", arguments={"a": 1})
    declare_bound(ch, "q", "x")
    ch.exchange_declare("x", "fanout", arguments={"a": 1})
    publish(ch, "", exchange="x")
    assert counts(ch, "q") == [1]


def test_passive_declare_of_missing_exchange_is_404(ch: Channel) -> None:
    """A passive declare of a missing exchange is 404 "no exchange 'x' in vhost '/'"."""
    with pytest.raises(ChannelError) as e:
        ch.exchange_declare("nope", passive=True)
    assert e.value.reply_text == "NOT_FOUND - no exchange 'nope' in vhost '/'"


def test_passive_declare_ignores_type(ch: Channel) -> None:
    """A passive declare of an existing exchange does not compare its settings."""
    ch.exchange_declare("x", "topic")
    ch.exchange_declare("x", "fanout", passive=True)


def test_delete_missing_exchange_is_ok(ch: Channel) -> None:
    """Deleting an exchange that does not exist succeeds (RabbitMQ 3.x)."""
    ch.exchange_delete("nope")


def test_delete_if_unused_with_bindings_is_406(ch: Channel) -> None:
    """exchange.delete(if_unused) on an exchange with bindings is 406 and keeps it."""
    ch.exchange_declare("x", "direct")
    declare_bound(ch, "q", "x", "k")
    with pytest.raises(ChannelError) as e:
        ch.exchange_delete("x", if_unused=True)
    assert e.value.reply_text == "PRECONDITION_FAILED - exchange 'x' in vhost '/' in use"
    ch.exchange_declare("x", passive=True)


def test_delete_removes_bindings(broker: Broker, ch: Channel) -> None:
    """Deleting an exchange removes its bindings from the queues too."""
    ch.exchange_declare("x", "direct")
    declare_bound(ch, "q", "x", "k")
    ch.exchange_delete("x")
    assert broker.vhosts["/"].queues["q"].bindings == {}
    with pytest.raises(ChannelError):
        ch.exchange_declare("x", passive=True)


def test_publish_to_missing_exchange_is_404(ch: Channel) -> None:
    """basic.publish to a missing exchange is 404."""
    with pytest.raises(ChannelError) as e:
        publish(ch, "k", exchange="nope")
    assert e.value.reply_text == "NOT_FOUND - no exchange 'nope' in vhost '/'"


def test_publish_to_internal_exchange_is_403(ch: Channel) -> None:
    """An internal exchange cannot be published to directly."""
    ch.exchange_declare("i", "fanout", internal=True)
    with pytest.raises(ChannelError) as e:
        publish(ch, "", exchange="i")
    assert e.value.reply_code == 403


def test_internal_exchange_receives_through_exchange_binding(ch: Channel) -> None:
    """An internal exchange still routes what another exchange forwards to it."""
    ch.exchange_declare("i", "fanout", internal=True)
    ch.exchange_declare("front", "direct")
    ch.exchange_bind("i", "front", "k")
    declare_bound(ch, "q", "i")
    publish(ch, "k", exchange="front")
    assert counts(ch, "q") == [1]


def test_bind_to_missing_exchange_is_404(ch: Channel) -> None:
    """queue.bind to a missing exchange is 404."""
    ch.queue_declare("q")
    with pytest.raises(ChannelError) as e:
        ch.queue_bind("q", "nope")
    assert e.value.reply_code == 404


def test_bind_missing_queue_is_404(ch: Channel) -> None:
    """queue.bind of a missing queue is 404 "no queue ..."."""
    with pytest.raises(ChannelError) as e:
        ch.queue_bind("nope", "amq.direct")
    assert e.value.reply_text == "NOT_FOUND - no queue 'nope' in vhost '/'"


def test_unbind_missing_binding_is_ok(ch: Channel) -> None:
    """Unbinding a binding that does not exist is not an error."""
    ch.queue_declare("q")
    ch.queue_unbind("q", "amq.direct", "never")


def test_unbind_stops_routing(ch: Channel) -> None:
    """After queue.unbind the queue no longer gets that key's messages."""
    declare_bound(ch, "q", "amq.direct", "k")
    ch.queue_unbind("q", "amq.direct", "k")
    publish(ch, "k", exchange="amq.direct")
    assert counts(ch, "q") == [0]


def test_bind_twice_is_one_binding(ch: Channel) -> None:
    """Binding the same queue, key and arguments twice is one binding: one unbind removes it."""
    declare_bound(ch, "q", "amq.direct", "k")
    ch.queue_bind("q", "amq.direct", "k")
    ch.queue_unbind("q", "amq.direct", "k")
    publish(ch, "k", exchange="amq.direct")
    assert counts(ch, "q") == [0]


def test_auto_delete_exchange_deleted_with_last_binding(ch: Channel) -> None:
    """An auto-delete exchange disappears when its last binding is removed."""
    ch.exchange_declare("ad", "fanout", auto_delete=True)
    declare_bound(ch, "q1", "ad")
    declare_bound(ch, "q2", "ad")
    ch.queue_unbind("q1", "ad")
    ch.exchange_declare("ad", passive=True)
    ch.queue_unbind("q2", "ad")
    with pytest.raises(ChannelError):
        ch.exchange_declare("ad", passive=True)


def test_auto_delete_exchange_deleted_when_bound_queue_deleted(ch: Channel) -> None:
    """Deleting the only bound queue removes its binding and so the auto-delete exchange."""
    ch.exchange_declare("ad", "fanout", auto_delete=True)
    declare_bound(ch, "q", "ad")
    ch.queue_delete("q")
    with pytest.raises(ChannelError):
        ch.exchange_declare("ad", passive=True)


def test_auto_delete_exchange_without_bindings_stays(ch: Channel) -> None:
    """An auto-delete exchange that never had a binding is not deleted."""
    ch.exchange_declare("ad", "fanout", auto_delete=True)
    ch.exchange_declare("ad", passive=True)


def test_direct_exchange_routing(ch: Channel) -> None:
    """A direct exchange routes on key equality."""
    ch.exchange_declare("d", "direct")
    declare_bound(ch, "q1", "d", "a")
    declare_bound(ch, "q2", "d", "b")
    publish(ch, "a", exchange="d")
    assert counts(ch, "q1", "q2") == [1, 0]


def test_fanout_exchange_routing(ch: Channel) -> None:
    """A fanout exchange copies to every bound queue."""
    declare_bound(ch, "q1", "amq.fanout", "a")
    declare_bound(ch, "q2", "amq.fanout", "b")
    publish(ch, "zzz", exchange="amq.fanout")
    assert counts(ch, "q1", "q2") == [1, 1]


def test_topic_exchange_routing(ch: Channel) -> None:
    """A topic exchange routes on patterns."""
    declare_bound(ch, "q1", "amq.topic", "stock.*.nyse")
    declare_bound(ch, "q2", "amq.topic", "stock.#")
    publish(ch, "stock.ibm.nyse", exchange="amq.topic")
    publish(ch, "stock.ibm", exchange="amq.topic")
    assert counts(ch, "q1", "q2") == [1, 2]


def test_headers_exchange_routing(ch: Channel) -> None:
    """A headers exchange routes on message headers and ignores keys."""
    ch.queue_declare("q1")
    ch.queue_bind("q1", "amq.headers", "", {"x-match": "any", "a": 1, "b": 2})
    ch.queue_declare("q2")
    ch.queue_bind("q2", "amq.headers", "", {"a": 1, "b": 2})
    props = BasicProperties(headers={"a": 1})
    ch.basic_publish("amq.headers", "whatever", props, b"m")
    assert counts(ch, "q1", "q2") == [1, 0]


def test_queue_with_several_matching_bindings_gets_one_copy(ch: Channel) -> None:
    """A queue bound by two matching patterns receives the message once."""
    declare_bound(ch, "q", "amq.topic", "a.*")
    ch.queue_bind("q", "amq.topic", "#")
    publish(ch, "a.b", exchange="amq.topic")
    assert counts(ch, "q") == [1]


def test_exchange_to_exchange_routing(ch: Channel) -> None:
    """exchange.bind forwards matching messages to the destination exchange, keeping the key."""
    ch.exchange_declare("src", "topic")
    ch.exchange_declare("dst", "direct")
    ch.exchange_bind("dst", "src", "a.#")
    declare_bound(ch, "q", "dst", "a.b")
    declare_bound(ch, "other", "dst", "zzz")
    publish(ch, "a.b", exchange="src")
    publish(ch, "b.b", exchange="src")
    assert counts(ch, "q", "other") == [1, 0]


def test_exchange_binding_cycle_terminates_and_delivers_once(ch: Channel) -> None:
    """Exchanges bound in a cycle route each message once to each queue."""
    ch.exchange_declare("x1", "fanout")
    ch.exchange_declare("x2", "fanout")
    ch.exchange_declare("x3", "fanout")
    ch.exchange_bind("x2", "x1")
    ch.exchange_bind("x3", "x2")
    ch.exchange_bind("x1", "x3")
    declare_bound(ch, "q", "x2")
    ch.queue_bind("q", "x3")
    publish(ch, "", exchange="x1")
    assert counts(ch, "q") == [1]


def test_exchange_self_binding(ch: Channel) -> None:
    """An exchange bound to itself does not loop."""
    ch.exchange_declare("x", "fanout")
    ch.exchange_bind("x", "x")
    declare_bound(ch, "q", "x")
    publish(ch, "", exchange="x")
    assert counts(ch, "q") == [1]


def test_diamond_of_exchanges_delivers_once(ch: Channel) -> None:
    """A queue reached by two exchange paths (a diamond) gets one copy."""
    for name in ("top", "left", "right"):
        ch.exchange_declare(name, "fanout")
    ch.exchange_bind("left", "top")
    ch.exchange_bind("right", "top")
    declare_bound(ch, "q", "left")
    ch.queue_bind("q", "right")
    publish(ch, "", exchange="top")
    assert counts(ch, "q") == [1]


def test_exchange_bind_missing_is_404(ch: Channel) -> None:
    """exchange.bind with a missing source or destination is 404."""
    ch.exchange_declare("x", "fanout")
    with pytest.raises(ChannelError) as e:
        ch.exchange_bind("x", "nope")
    assert e.value.reply_code == 404
    with pytest.raises(ChannelError) as e:
        ch.exchange_bind("nope", "x")
    assert e.value.reply_code == 404


def test_exchange_bind_default_exchange_is_403(ch: Channel) -> None:
    """The default exchange can be neither end of an exchange binding."""
    ch.exchange_declare("x", "fanout")
    for dst, src in (("", "x"), ("x", "")):
        with pytest.raises(ChannelError) as e:
            ch.exchange_bind(dst, src)
        assert e.value.reply_code == 403


def test_exchange_unbind_stops_forwarding(ch: Channel) -> None:
    """exchange.unbind removes the forwarding."""
    ch.exchange_declare("src", "fanout")
    ch.exchange_declare("dst", "fanout")
    ch.exchange_bind("dst", "src")
    declare_bound(ch, "q", "dst")
    ch.exchange_unbind("dst", "src")
    publish(ch, "", exchange="src")
    assert counts(ch, "q") == [0]


def test_deleting_destination_exchange_removes_incoming_binding(ch: Channel) -> None:
    """Deleting an exchange removes bindings to it, so auto-delete sources go too."""
    ch.exchange_declare("src", "fanout", auto_delete=True)
    ch.exchange_declare("dst", "fanout")
    ch.exchange_bind("dst", "src")
    ch.exchange_delete("dst")
    with pytest.raises(ChannelError):
        ch.exchange_declare("src", passive=True)


def test_exchange_used_as_source_is_in_use(ch: Channel) -> None:
    """An exchange-to-exchange binding makes the source in use for if_unused."""
    ch.exchange_declare("src", "fanout")
    ch.exchange_declare("dst", "fanout")
    ch.exchange_bind("dst", "src")
    with pytest.raises(ChannelError):
        ch.exchange_delete("src", if_unused=True)
    ch.exchange_delete("dst", if_unused=True)


def test_vhosts_are_separate_namespaces(broker: Broker, conn: Connection) -> None:
    """An exchange declared in one vhost does not exist in another."""
    broker.add_vhost("v2")
    other = broker.connect("v2").open_channel(1, RecordingSink())
    conn.open_channel(1, RecordingSink()).exchange_declare("x", "fanout")
    with pytest.raises(ChannelError) as e:
        other.exchange_declare("x", passive=True)
    assert e.value.reply_text == "NOT_FOUND - no exchange 'x' in vhost 'v2'"
