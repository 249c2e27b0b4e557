"""Client kits: the small differences between driving amqplike and RabbitMQ.

Every scenario is written once, against pika's ``BlockingConnection`` API, which the
amqplike sync client follows name for name.  A kit supplies what differs:

* how a URL becomes a blocking connection and how properties are built;
* the fastest asynchronous publisher, for the ``publish`` (async) and the windowed
  ``confirm`` cases: pika's ``SelectConnection`` for RabbitMQ, the Twisted client for
  amqplike.  The Twisted driver is written against pika's Twisted adapter API, which
  ``amqplike.client.twisted`` follows, so it also runs against RabbitMQ through
  pika's own adapter (kit ``pika-twisted``) for a like-for-like client comparison;
* the request-reply client: ``amqplike.client.rpc.RpcClient`` when it exists, else
  the portable :class:`BlockingRpcClient` below (what pika users write by hand).

Nothing here runs in the orchestrating process except :func:`get_kit` and the
blocking ``connect`` used to declare topology; the rest runs in worker processes.
"""

from __future__ import annotations

import struct
import time
import uuid
from collections.abc import Callable
from typing import Any, Protocol

#: Publishes handed to an asynchronous client before it gets to write them out.
PUBLISH_BATCH = 256
#: The same for pika's ``SelectConnection``, whose loop turns cost more (measured best).
SELECT_PUBLISH_BATCH = 2048
#: How often a publisher asks the broker for the queue depth once it has sent everything.
POLL_INTERVAL_SECONDS = 0.002
#: Direct reply-to: replies come back without a queue per caller (RabbitMQ's feature,
#: supported by amqplike under the same name).
DIRECT_REPLY_TO = "amq.rabbitmq.reply-to"
#: Longest a single request-reply call may take before the run is declared broken.
RPC_TIMEOUT_SECONDS = 30.0
#: Correlation id that tells the RPC server to stop.
RPC_STOP = "bench-stop"

Ready = Callable[[], None]


def now_ns() -> int:
    """A clock shared by every process on the machine (``CLOCK_MONOTONIC``)."""
    return time.monotonic_ns()


def stamp(body: bytearray) -> bytes:
    """Write the current time into the first 8 bytes of ``body`` and return a copy."""
    struct.pack_into(">q", body, 0, time.monotonic_ns())
    return bytes(body)


def stamped_age_ns(body: bytes, now: int) -> int:
    """How long ago a body made by :func:`stamp` was stamped."""
    (sent,) = struct.unpack_from(">q", body, 0)
    return now - int(sent)


def wait_for_depth(channel: Any, queue: str, count: int, timeout: float = 600.0) -> None:
    """Poll a blocking channel until ``queue`` holds at least ``count`` messages.

    Raises ``TimeoutError`` when it does not within ``timeout`` seconds.
    """
    deadline = time.monotonic() + timeout
    while channel.queue_declare(queue=queue, passive=True).method.message_count < count:
        if time.monotonic() > deadline:
            raise TimeoutError(f"queue {queue!r} did not reach {count} messages")
        time.sleep(POLL_INTERVAL_SECONDS)


class RpcCaller(Protocol):
    """One request-reply caller: ``call`` sends ``body`` and returns the reply body."""

    def call(self, body: bytes) -> bytes:
        """Send one request and wait for its reply."""
        ...


class BlockingRpcClient:
    """Request-reply over pika's blocking API with direct reply-to, one call at a time.

    What pika's own RPC tutorial does, minus the queue per caller.  Works with both
    targets because it only uses the shared blocking API.
    """

    def __init__(self, kit: ClientKit, connection: Any, channel: Any, routing_key: str) -> None:
        self._kit = kit
        self._connection = connection
        self._channel = channel
        self._routing_key = routing_key
        self._reply: bytes | None = None
        self._expected = ""
        channel.basic_consume(
            queue=DIRECT_REPLY_TO, on_message_callback=self._on_reply, auto_ack=True
        )

    def _on_reply(self, _channel: Any, _method: Any, properties: Any, body: bytes) -> None:
        if properties.correlation_id == self._expected:
            self._reply = body

    def call(self, body: bytes) -> bytes:
        """Publish a request and process events until its reply arrives."""
        self._expected = uuid.uuid4().hex
        self._reply = None
        self._channel.basic_publish(
            exchange="",
            routing_key=self._routing_key,
            body=body,
            properties=self._kit.properties(
                reply_to=DIRECT_REPLY_TO, correlation_id=self._expected
            ),
        )
        deadline = time.monotonic() + RPC_TIMEOUT_SECONDS
        while self._reply is None:
            if time.monotonic() > deadline:
                raise TimeoutError("no reply to an RPC call")
            self._connection.process_data_events(time_limit=None)
        return self._reply


class ClientKit:
    """What a target's client does differently; see the module docstring."""

    name = "abstract"

    def connect(self, url: str) -> Any:
        """Open a blocking connection with pika's ``BlockingConnection`` API."""
        raise NotImplementedError

    def properties(self, **kwargs: Any) -> Any:
        """Build message properties under pika's names (``delivery_mode`` ...)."""
        raise NotImplementedError

    def rpc_client(self, connection: Any, channel: Any, routing_key: str) -> RpcCaller:
        """A request-reply caller on ``channel``, sending to ``routing_key``."""
        return BlockingRpcClient(self, connection, channel, routing_key)

    def serve_rpc(self, channel: Any, queue: str, ready: Ready) -> int:
        """Answer each request on ``queue`` with its own body until an :data:`RPC_STOP`.

        Calls ``ready`` once consuming and returns how many requests were
        answered.  The reply is published before the request is acked (the
        order of pika's RPC tutorial).
        """
        served = 0

        def on_request(ch: Any, method: Any, properties: Any, body: bytes) -> None:
            nonlocal served
            if properties.correlation_id == RPC_STOP:
                ch.basic_ack(method.delivery_tag)
                ch.stop_consuming()
                return
            ch.basic_publish(
                "", properties.reply_to, body,
                self.properties(correlation_id=properties.correlation_id),
            )
            ch.basic_ack(method.delivery_tag)
            served += 1

        channel.basic_consume(queue=queue, on_message_callback=on_request)
        ready()
        channel.start_consuming()
        return served

    def hold_connections(self, url: str, count: int, ready: Ready) -> dict[str, Any]:
        """Open ``count`` connections, call ``ready`` (it returns when the broker has been
        measured), close them, and return ``{"opened", "open_seconds"}``."""
        t0 = time.monotonic()
        connections = [self.connect(url) for _ in range(count)]
        opened = time.monotonic() - t0
        ready()
        for connection in connections:
            connection.close()
        return {"opened": len(connections), "open_seconds": opened}

    def publish_async(
        self, url: str, *, exchange: str, routing_key: str, body: bytes, count: int,
        queue: str, properties: Any, ready: Ready,
    ) -> dict[str, Any]:
        """Publish ``count`` messages as fast as the client goes, without confirms.

        Calls ``ready`` once connected (it returns when timing starts) and returns
        ``{"t0_ns", "t1_ns"}``: the start, and when ``queue`` held all of them.
        """
        raise NotImplementedError

    def confirm_window(
        self, url: str, *, exchange: str, routing_key: str, body: bytes, count: int,
        window: int, properties: Any, ready: Ready,
    ) -> dict[str, Any]:
        """Publish ``count`` messages in confirm mode with ``window`` unconfirmed at most.

        Returns ``{"t0_ns", "t1_ns", "latencies_ns"}`` (publish to confirm, per message).
        """
        raise NotImplementedError


# --------------------------------------------------------------------------- Twisted


async def _tx_publish(
    reactor: Any, connection: Any, *, exchange: str, routing_key: str, body: bytes,
    count: int, queue: str, properties: Any, ready: Ready,
) -> dict[str, Any]:
    from twisted.internet.task import deferLater

    channel = await connection.channel()
    ready()
    t0 = now_ns()
    for i in range(count):
        channel.basic_publish(exchange, routing_key, body, properties)
        if i % PUBLISH_BATCH == PUBLISH_BATCH - 1:
            # Give the reactor a turn to write what was buffered.
            await deferLater(reactor, 0, lambda: None)
    while True:
        frame = await channel.queue_declare(queue=queue, passive=True)
        if frame.method.message_count >= count:
            break
        await deferLater(reactor, POLL_INTERVAL_SECONDS, lambda: None)
    return {"t0_ns": t0, "t1_ns": now_ns()}


async def _tx_confirm_window(
    reactor: Any, connection: Any, *, exchange: str, routing_key: str, body: bytes,
    count: int, window: int, properties: Any, ready: Ready,
) -> dict[str, Any]:
    from twisted.internet.defer import Deferred, DeferredSemaphore

    channel = await connection.channel()
    await channel.confirm_delivery()
    semaphore = DeferredSemaphore(window)
    latencies: list[int] = []
    finished: Deferred[None] = Deferred()
    failures: list[Any] = []

    def confirmed(_result: object, sent: int) -> None:
        latencies.append(now_ns() - sent)
        semaphore.release()
        if len(latencies) == count and not finished.called:
            finished.callback(None)

    def failed(failure: Any) -> None:
        failures.append(failure)
        if not finished.called:
            finished.errback(failure)

    ready()
    t0 = now_ns()
    for _ in range(count):
        await semaphore.acquire()
        if failures:
            break
        d = channel.basic_publish(exchange, routing_key, body, properties)
        d.addCallback(confirmed, now_ns())
        d.addErrback(failed)
    await finished
    return {"t0_ns": t0, "t1_ns": now_ns(), "latencies_ns": latencies}


def run_on_reactor(body: Callable[[Any], Any]) -> Any:
    """Run ``body(reactor)`` (a coroutine function) on a fresh reactor; return its result.

    For worker processes only: the reactor runs once per process.  Exceptions from
    ``body`` are re-raised here rather than logged.
    """
    from twisted.internet import task
    from twisted.internet.defer import Deferred

    outcome: dict[str, Any] = {}

    async def main(reactor: Any) -> None:
        try:
            outcome["result"] = await body(reactor)
        except BaseException as exc:  # re-raised outside the reactor
            outcome["error"] = exc

    try:
        task.react(lambda reactor: Deferred.fromCoroutine(main(reactor)))
    except SystemExit:
        pass
    if "error" in outcome:
        raise outcome["error"]
    return outcome["result"]


class _TwistedKit(ClientKit):
    """Asynchronous cases through a Twisted client with pika's Twisted adapter API."""

    async def _tx_connect(self, reactor: Any, url: str) -> Any:
        raise NotImplementedError

    async def _tx_close(self, connection: Any) -> None:
        closed = connection.close()
        if closed is not None and hasattr(closed, "addCallback"):
            await closed

    def hold_connections(self, url: str, count: int, ready: Ready) -> dict[str, Any]:
        """See :meth:`ClientKit.hold_connections`; one reactor holds them all.

        Connections are opened 50 at a time, as a server's clients would arrive.
        """
        from twisted.internet.defer import Deferred, gatherResults

        async def body(reactor: Any) -> dict[str, Any]:
            t0 = time.monotonic()
            connections: list[Any] = []
            for start in range(0, count, 50):
                batch = [
                    Deferred.fromCoroutine(self._tx_connect(reactor, url))
                    for _ in range(start, min(count, start + 50))
                ]
                connections.extend(await gatherResults(batch, consumeErrors=True))
            opened = time.monotonic() - t0
            ready()
            await gatherResults(
                [Deferred.fromCoroutine(self._tx_close(c)) for c in connections],
                consumeErrors=True,
            )
            return {"opened": len(connections), "open_seconds": opened}

        result: dict[str, Any] = run_on_reactor(body)
        return result

    def publish_async(self, url: str, **kwargs: Any) -> dict[str, Any]:
        """See :meth:`ClientKit.publish_async`; runs a reactor in this process."""

        async def body(reactor: Any) -> dict[str, Any]:
            connection = await self._tx_connect(reactor, url)
            result = await _tx_publish(reactor, connection, **kwargs)
            await self._tx_close(connection)
            return result

        result: dict[str, Any] = run_on_reactor(body)
        return result

    def confirm_window(self, url: str, **kwargs: Any) -> dict[str, Any]:
        """See :meth:`ClientKit.confirm_window`; runs a reactor in this process."""

        async def body(reactor: Any) -> dict[str, Any]:
            connection = await self._tx_connect(reactor, url)
            result = await _tx_confirm_window(reactor, connection, **kwargs)
            await self._tx_close(connection)
            return result

        result: dict[str, Any] = run_on_reactor(body)
        return result


# --------------------------------------------------------------------------- pika


class _PikaBlocking(ClientKit):
    def connect(self, url: str) -> Any:
        """Open a ``pika.BlockingConnection`` to an ``amqp://`` URL."""
        import pika  # type: ignore[import-untyped, unused-ignore]

        return pika.BlockingConnection(pika.URLParameters(url))

    def properties(self, **kwargs: Any) -> Any:
        """Build a ``pika.BasicProperties``."""
        import pika  # type: ignore[import-untyped, unused-ignore]

        return pika.BasicProperties(**kwargs)


class PikaKit(_PikaBlocking):
    """RabbitMQ through pika: ``BlockingConnection``, and ``SelectConnection`` when async."""

    name = "pika"

    def publish_async(
        self, url: str, *, exchange: str, routing_key: str, body: bytes, count: int,
        queue: str, properties: Any, ready: Ready,
    ) -> dict[str, Any]:
        """See :meth:`ClientKit.publish_async`, through ``pika.SelectConnection``."""
        import pika  # type: ignore[import-untyped, unused-ignore]

        result: dict[str, Any] = {}
        errors: list[BaseException] = []
        state: dict[str, Any] = {"sent": 0}

        def on_open(connection: Any) -> None:
            connection.channel(on_open_callback=on_channel)

        def on_channel(channel: Any) -> None:
            state["channel"] = channel
            ready()
            result["t0_ns"] = now_ns()
            publish_batch()

        def publish_batch() -> None:
            channel = state["channel"]
            batch = min(SELECT_PUBLISH_BATCH, count - state["sent"])
            for _ in range(batch):
                channel.basic_publish(exchange, routing_key, body, properties)
            state["sent"] += batch
            if state["sent"] < count:
                conn.ioloop.call_later(0, publish_batch)
            else:
                poll()

        def poll() -> None:
            state["channel"].queue_declare(queue, passive=True, callback=on_depth)

        def on_depth(frame: Any) -> None:
            if frame.method.message_count >= count:
                result["t1_ns"] = now_ns()
                conn.close()
            else:
                conn.ioloop.call_later(POLL_INTERVAL_SECONDS, poll)

        conn = _select_connection(pika, url, on_open, errors)
        conn.ioloop.start()
        if errors or "t1_ns" not in result:
            raise RuntimeError(f"SelectConnection publisher failed: {errors!r}")
        return result

    def confirm_window(
        self, url: str, *, exchange: str, routing_key: str, body: bytes, count: int,
        window: int, properties: Any, ready: Ready,
    ) -> dict[str, Any]:
        """See :meth:`ClientKit.confirm_window`, through ``pika.SelectConnection``."""
        import pika  # type: ignore[import-untyped, unused-ignore]

        result: dict[str, Any] = {}
        errors: list[BaseException] = []
        latencies: list[int] = []
        sent_at: dict[int, int] = {}
        state: dict[str, Any] = {"sent": 0, "oldest": 1}

        def on_open(connection: Any) -> None:
            connection.channel(on_open_callback=on_channel)

        def on_channel(channel: Any) -> None:
            state["channel"] = channel
            channel.confirm_delivery(ack_nack_callback=on_confirm, callback=on_select_ok)

        def on_select_ok(_frame: Any) -> None:
            ready()
            result["t0_ns"] = now_ns()
            fill()

        def fill() -> None:
            channel = state["channel"]
            while state["sent"] < count and len(sent_at) < window:
                state["sent"] += 1
                sent_at[state["sent"]] = now_ns()
                channel.basic_publish(exchange, routing_key, body, properties)

        def on_confirm(frame: Any) -> None:
            method = frame.method
            if method.NAME != "Basic.Ack":
                errors.append(RuntimeError(f"broker refused a message: {method!r}"))
                conn.close()
                return
            now = now_ns()
            tag = method.delivery_tag
            first = state["oldest"] if method.multiple else tag
            for t in range(first, tag + 1):
                sent = sent_at.pop(t, None)
                if sent is not None:
                    latencies.append(now - sent)
            while state["oldest"] not in sent_at and state["oldest"] <= state["sent"]:
                state["oldest"] += 1
            if len(latencies) == count:
                result["t1_ns"] = now
                conn.close()
            else:
                fill()

        conn = _select_connection(pika, url, on_open, errors)
        conn.ioloop.start()
        if errors or "t1_ns" not in result:
            raise RuntimeError(f"SelectConnection confirm publisher failed: {errors!r}")
        result["latencies_ns"] = latencies
        return result


def _select_connection(
    pika: Any, url: str, on_open: Callable[[Any], None], errors: list[BaseException]
) -> Any:
    def on_open_error(connection: Any, error: BaseException) -> None:
        errors.append(error)
        connection.ioloop.stop()

    def on_close(connection: Any, reason: BaseException) -> None:
        if not isinstance(reason, pika.exceptions.ConnectionClosedByClient):
            errors.append(reason)
        connection.ioloop.stop()

    return pika.SelectConnection(
        pika.URLParameters(url),
        on_open_callback=on_open,
        on_open_error_callback=on_open_error,
        on_close_callback=on_close,
    )


class PikaTwistedKit(_PikaBlocking, _TwistedKit):
    """RabbitMQ through pika, with pika's Twisted adapter for the asynchronous cases."""

    name = "pika-twisted"

    async def _tx_connect(self, reactor: Any, url: str) -> Any:
        import pika  # type: ignore[import-untyped, unused-ignore]
        from pika.adapters.twisted_connection import TwistedProtocolConnection  # type: ignore[import-untyped, unused-ignore]
        from twisted.internet.protocol import ClientCreator

        parameters = pika.URLParameters(url)
        creator = ClientCreator(reactor, TwistedProtocolConnection, parameters)
        connection = await creator.connectTCP(parameters.host, parameters.port)
        await connection.ready
        return connection


# --------------------------------------------------------------------------- amqplike


class AmqplikeKit(_TwistedKit):
    """amqplike through its own clients: the sync client, and the Twisted one when async."""

    name = "amqplike"

    def connect(self, url: str) -> Any:
        """Open an ``amqplike.client.sync.BlockingConnection``."""
        from amqplike.client.sync import BlockingConnection

        return BlockingConnection(url)

    def properties(self, **kwargs: Any) -> Any:
        """Build an ``amqplike.properties.BasicProperties``."""
        from amqplike.properties import BasicProperties

        return BasicProperties(**kwargs)

    def rpc_client(self, connection: Any, channel: Any, routing_key: str) -> RpcCaller:
        """``amqplike.client.rpc.RpcClient`` (the helper users call), bound to ``routing_key``."""
        try:
            from amqplike.client.rpc import RpcClient
        except ImportError:
            return super().rpc_client(connection, channel, routing_key)
        client = RpcClient(channel)

        class _Bound:
            def call(self, body: bytes) -> bytes:
                reply: bytes = client.call(routing_key, body, timeout=RPC_TIMEOUT_SECONDS)
                return reply

        return _Bound()

    def serve_rpc(self, channel: Any, queue: str, ready: Ready) -> int:
        """``amqplike.client.rpc.RpcServer`` (the helper users call) answering with the body."""
        try:
            from amqplike.client.rpc import RpcServer
        except ImportError:
            return super().serve_rpc(channel, queue, ready)
        served = 0

        def echo(body: bytes, properties: Any) -> bytes:
            nonlocal served
            if properties.correlation_id == RPC_STOP:
                channel.stop_consuming()
            else:
                served += 1
            return body

        server = RpcServer(channel, queue, echo)
        ready()
        server.serve_forever()
        return served

    async def _tx_connect(self, reactor: Any, url: str) -> Any:
        from amqplike.client.twisted import connect

        return await connect(url, reactor)


_KITS: dict[str, type[ClientKit]] = {
    kit.name: kit for kit in (PikaKit, PikaTwistedKit, AmqplikeKit)
}


def get_kit(name: str) -> ClientKit:
    """Return the kit registered under ``name`` (``pika``, ``pika-twisted``, ``amqplike``)."""
    try:
        return _KITS[name]()
    except KeyError:
        raise ValueError(f"unknown client kit {name!r}; known: {sorted(_KITS)}") from None
