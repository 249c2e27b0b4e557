"""basic.publish: mandatory returns and publisher confirms, and broker-level entry points."""

from __future__ import annotations

import pytest

from amqplike.core import Broker, Channel
from amqplike.errors import HardError
from amqplike.properties import BasicProperties

from .conftest import RecordingSink, publish


def test_unroutable_mandatory_is_returned(ch: Channel, sink: RecordingSink) -> None:
    """An unroutable mandatory message comes back with 312 NO_ROUTE."""
    publish(ch, "nowhere", b"m", mandatory=True)
    assert [(e[0], e[1], e[2], e[3].body) for e in sink.events] == [
        ("returned", 312, "NO_ROUTE", b"m")
    ]


def test_unroutable_not_mandatory_is_dropped_silently(ch: Channel, sink: RecordingSink) -> None:
    """Without mandatory an unroutable message just disappears."""
    publish(ch, "nowhere")
    assert sink.events == []


def test_routable_mandatory_not_returned(ch: Channel, sink: RecordingSink) -> None:
    """A mandatory message that reaches a queue is not returned."""
    ch.queue_declare("q")
    publish(ch, "q", mandatory=True)
    assert sink.events == []


def test_confirms_numbered_from_one(ch: Channel, sink: RecordingSink) -> None:
    """In confirm mode each publish is acked with sequence numbers 1, 2, 3..."""
    ch.queue_declare("q")
    ch.confirm_select()
    for _ in range(3):
        publish(ch, "q")
    assert sink.events == [
        ("confirmed", 1, False, True),
        ("confirmed", 2, False, True),
        ("confirmed", 3, False, True),
    ]


def test_no_confirms_without_confirm_select(ch: Channel, sink: RecordingSink) -> None:
    """Publishes are not confirmed before confirm.select."""
    ch.queue_declare("q")
    publish(ch, "q")
    assert sink.events == []


def test_unroutable_is_confirmed_too(ch: Channel, sink: RecordingSink) -> None:
    """An unroutable (non-mandatory) publish is still confirmed."""
    ch.confirm_select()
    publish(ch, "nowhere")
    assert sink.events == [("confirmed", 1, False, True)]


def test_return_comes_before_confirm(ch: Channel, sink: RecordingSink) -> None:
    """For a mandatory unroutable message, basic.return precedes its confirm."""
    ch.confirm_select()
    publish(ch, "nowhere", mandatory=True)
    assert [e[0] for e in sink.events] == ["returned", "confirmed"]
    assert sink.events[1] == ("confirmed", 1, False, True)


def test_delivery_to_same_channel_precedes_confirm(ch: Channel, sink: RecordingSink) -> None:
    """A delivery caused by the publish is made before the publish's confirm."""
    ch.queue_declare("q")
    ch.basic_consume("q", "c")
    ch.confirm_select()
    publish(ch, "q")
    assert [e[0] for e in sink.events] == ["deliver", "confirmed"]


def test_message_properties_delivered_unchanged(ch: Channel, sink: RecordingSink) -> None:
    """Properties reach the consumer as published."""
    props = BasicProperties(content_type="text/plain", delivery_mode=2, headers={"a": 1})
    ch.queue_declare("q")
    ch.basic_consume("q", "c")
    ch.basic_publish("", "q", props, b"hi")
    message = sink.events[0][4]
    assert message.properties == props
    assert message.persistent


def test_one_message_object_shared_by_queues(ch: Channel) -> None:
    """A fanned-out message is the same object in every queue (no per-queue copy)."""
    for q in ("a", "b"):
        ch.queue_declare(q)
        ch.queue_bind(q, "amq.fanout")
    publish(ch, "", exchange="amq.fanout")
    ga, gb = ch.basic_get("a"), ch.basic_get("b")
    assert ga is not None and gb is not None
    assert ga.message is gb.message


def test_authenticate(broker: Broker) -> None:
    """guest/guest is accepted; wrong passwords and unknown users are not."""
    assert broker.authenticate("guest", "guest")
    assert not broker.authenticate("guest", "nope")
    assert not broker.authenticate("nobody", "guest")
    broker.add_user("alice", "s3cret")
    assert broker.authenticate("alice", "s3cret")


def test_connect_unknown_vhost_is_530(broker: Broker) -> None:
    """Connecting to a missing vhost is 530 NOT_ALLOWED."""
    with pytest.raises(HardError) as e:
        broker.connect("nope")
    assert e.value.reply_code == 530


def test_core_imports_no_twisted() -> None:
    """The core loads without Twisted, cbor2 or the wire layer (sans-IO layering)."""
    import subprocess
    import sys

    code = (
        "import sys, amqplike.core; "
        "bad = [m for m in sys.modules if m.split('.')[0] in ('twisted', 'cbor2')"
        " or m.startswith('amqplike.wire')]; "
        "print(bad); sys.exit(1 if bad else 0)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
