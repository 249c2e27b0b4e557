"""One open channel of a server connection: the core's :class:`ChannelSink`.

The core calls the sink synchronously from inside the operation that caused
the event; the sink only encodes frames and appends them to its
connection's output buffer, which is written once per batch.  Publisher
confirms are held until the batch is written so that a run of acks becomes
one ``basic.ack`` with ``multiple=True``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from amqplike.errors import ChannelError
from amqplike.wire.commands import encode_command, encode_method_frame
from amqplike.wire.methods import BasicAck, BasicCancel, BasicDeliver, BasicNack, BasicReturn

if TYPE_CHECKING:
    from amqplike.core.message import Message
    from amqplike.server._ports import CoreChannel
    from amqplike.server.protocol import AMQPServerProtocol


class ServerChannel:
    """A channel of one connection: its state, its core channel and its sink.

    ``closing`` is true between the server's ``channel.close`` and the
    client's ``channel.close-ok``; the connection ignores the channel's other
    frames meanwhile (AMQP 0-9-1, 2.2.4 "the peer ... MUST discard").
    """

    __slots__ = (
        "_acks",
        "_confirming",
        "_low",
        "_nacks",
        "_next_publish_tag",
        "_protocol",
        "_unconfirmed",
        "client_active",
        "closing",
        "core",
        "number",
    )

    def __init__(self, protocol: AMQPServerProtocol, number: int) -> None:
        self.number = number
        self.core: CoreChannel | None = None
        self.closing = False
        #: The client's ``channel.flow`` wish; deliveries also pause on backpressure.
        self.client_active = True
        self._protocol = protocol
        self._confirming = False
        self._next_publish_tag = 1
        # Publish sequence numbers not yet confirmed, and the smallest tag
        # that may still be unconfirmed (every tag below it is settled).
        self._unconfirmed: set[int] = set()
        self._low = 1
        # Confirms produced in the current batch, written at flush time.
        self._acks: list[int] = []
        self._nacks: list[int] = []

    # -- publisher confirms --------------------------------------------------

    def select_confirms(self) -> None:
        """Enter confirm mode: publishes are numbered from 1 from now on."""
        self._confirming = True

    def count_publish(self) -> None:
        """Number one publish in confirm mode (call before handing it to the core)."""
        if self._confirming:
            self._unconfirmed.add(self._next_publish_tag)
            self._next_publish_tag += 1

    def uncount_publish(self) -> None:
        """Take back the number of a publish the core refused (it raised)."""
        if self._confirming:
            self._next_publish_tag -= 1
            self._unconfirmed.discard(self._next_publish_tag)

    @property
    def has_pending_confirms(self) -> bool:
        """True when confirms of this batch are waiting to be written."""
        return bool(self._acks or self._nacks)

    def confirm_frames(self) -> list[bytes]:
        """Return the batch's confirms as frames, coalescing acks, and forget them.

        As RabbitMQ does: acks below both the smallest still-unconfirmed tag
        and the smallest tag nacked in this batch become one ``basic.ack``
        with ``multiple=True`` for the largest of them; the rest go one by
        one.  Every tag a multiple ack covers is settled, so the client never
        learns less than the truth.
        """
        acks, nacks = self._acks, self._nacks
        self._acks, self._nacks = [], []
        self._advance_low()
        number = self.number
        frames: list[bytes] = []
        if acks:
            acks.sort()
            cutoff = self._low
            if nacks:
                cutoff = min(cutoff, min(nacks))
            covered = 0
            for tag in acks:
                if tag >= cutoff:
                    break
                covered += 1
            if covered:
                frames.append(encode_method_frame(number, BasicAck(acks[covered - 1], covered > 1)))
            for tag in acks[covered:]:
                frames.append(encode_method_frame(number, BasicAck(tag, False)))
        for tag in sorted(nacks):
            frames.append(encode_method_frame(number, BasicNack(tag, False, False)))
        return frames

    def _advance_low(self) -> None:
        unconfirmed = self._unconfirmed
        low, top = self._low, self._next_publish_tag
        while low < top and low not in unconfirmed:
            low += 1
        self._low = low

    def _settle(self, tag: int, ack: bool) -> None:
        self._unconfirmed.discard(tag)
        (self._acks if ack else self._nacks).append(tag)

    # -- ChannelSink ----------------------------------------------------------

    def deliver(
        self, consumer_tag: str, delivery_tag: int, redelivered: bool, message: Message
    ) -> None:
        """Buffer a ``basic.deliver`` with the message's header and body frames."""
        protocol = self._protocol
        protocol.send(
            encode_command(
                self.number,
                BasicDeliver(
                    consumer_tag,
                    delivery_tag,
                    redelivered,
                    message.exchange,
                    message.routing_key,
                ),
                message.properties,
                message.body,
                protocol.frame_max,
            )
        )
        protocol.check_buffered()

    def returned(self, reply_code: int, reply_text: str, message: Message) -> None:
        """Buffer a ``basic.return``; it precedes the message's confirm (written at flush)."""
        protocol = self._protocol
        protocol.send(
            encode_command(
                self.number,
                BasicReturn(reply_code, reply_text, message.exchange, message.routing_key),
                message.properties,
                message.body,
                protocol.frame_max,
            )
        )

    def confirmed(self, delivery_tag: int, multiple: bool, ack: bool) -> None:
        """Record a confirm; the batch's confirms are written, coalesced, at flush."""
        if multiple:
            self._advance_low()
            for tag in range(self._low, delivery_tag + 1):
                if tag in self._unconfirmed:
                    self._settle(tag, ack)
        elif delivery_tag in self._unconfirmed:
            self._settle(delivery_tag, ack)
        else:
            # Not a tag we numbered: pass it on as the core said, after the
            # batch so far, rather than guess.
            self._protocol.send_confirms(self)
            method = BasicAck(delivery_tag, False) if ack else BasicNack(delivery_tag, False, False)
            self._protocol.send(encode_method_frame(self.number, method))
            return
        self._protocol.want_confirm_flush(self)

    def consumer_cancelled(self, consumer_tag: str) -> None:
        """Buffer a server-sent ``basic.cancel`` (RabbitMQ's consumer cancel notification)."""
        self._protocol.send(encode_method_frame(self.number, BasicCancel(consumer_tag, True)))

    def channel_closed(self, reply_code: int, reply_text: str) -> None:
        """The core closed this channel (a consumer ack timeout): send ``channel.close``."""
        self._protocol.close_channel(self.number, ChannelError(reply_code, reply_text))
