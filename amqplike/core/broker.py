"""The broker: virtual hosts, users, client connections, and the core's sense of time.

The core never reads a clock.  Its driver tells it the time with
:meth:`Broker.advance` (the server does at the start of every batch of
work), and a service runs what fell due with :meth:`Broker.expire`, arming
one timer for :meth:`Broker.next_deadline` (see ``amqplike/core/schedule.py``).
"""

from __future__ import annotations

import hmac
from collections.abc import Callable

from attrs import define, field

from amqplike.core.channel import Channel, ChannelSink
from amqplike.core.persistence import NO_PERSISTENCE, Persistence
from amqplike.core.queues import Queue
from amqplike.core.schedule import Schedule
from amqplike.core.vhost import DEFAULT_CONSUMER_TIMEOUT_SECONDS, VirtualHost
from amqplike.errors import CHANNEL_ERROR, NOT_ALLOWED, HardError

#: The vhost and user a fresh broker has, as RabbitMQ's defaults.
DEFAULT_VHOST = "/"
DEFAULT_USER = "guest"
DEFAULT_PASSWORD = "guest"


@define(eq=False, slots=True)
class Connection:
    """A client connection opened on one virtual host: its channels and exclusive queues."""

    broker: Broker
    vhost: VirtualHost
    user: str
    channels: dict[int, Channel] = field(factory=dict)
    #: Queues declared exclusive on this connection; deleted when it closes.
    exclusive_queues: dict[Queue, None] = field(factory=dict)
    is_open: bool = True

    def __repr__(self) -> str:
        return f"<Connection {self.user}@{self.vhost.name} open={self.is_open}>"

    def open_channel(self, number: int, sink: ChannelSink) -> Channel:
        """``channel.open``: a new channel delivering through ``sink``.

        504 (hard) if the number is already open or the connection is closed
        (RabbitMQ: "second 'channel.open' seen").
        """
        if not self.is_open:
            raise HardError(CHANNEL_ERROR, "connection is closed")
        if number in self.channels:
            raise HardError(CHANNEL_ERROR, f"second 'channel.open' seen on channel {number}")
        channel = Channel(number=number, connection=self, sink=sink, vhost=self.vhost)
        self.channels[number] = channel
        return channel

    def close(self) -> None:
        """Close every channel (requeueing unacked deliveries), then delete exclusive queues.

        Idempotent; never raises.
        """
        if not self.is_open:
            return
        self.is_open = False
        for channel in list(self.channels.values()):
            channel.close()
        for queue in list(self.exclusive_queues):
            self.vhost.delete_queue(queue)
        self.exclusive_queues.clear()


@define(eq=False, slots=True)
class Broker:
    """The whole broker state: virtual hosts and users.

    A fresh broker has vhost ``/`` (with the ``amq.*`` exchanges) and user
    ``guest``/``guest``.  ``consumer_timeout`` is the ack timeout in seconds
    of deliveries whose queue and consumer set none (RabbitMQ's
    ``consumer_timeout``, 30 minutes); 0 disables it.
    """

    vhosts: dict[str, VirtualHost] = field(factory=dict)
    _users: dict[str, str] = field(factory=dict)
    consumer_timeout: float = DEFAULT_CONSUMER_TIMEOUT_SECONDS
    #: Every deadline of every virtual host, and the current time.
    schedule: Schedule = field(factory=Schedule)
    #: Where durable state goes (:meth:`use_persistence`); nothing is stored by default.
    persistence: Persistence = NO_PERSISTENCE

    def __attrs_post_init__(self) -> None:
        if not self.vhosts:
            self.add_vhost(DEFAULT_VHOST)
        if not self._users:
            self.add_user(DEFAULT_USER, DEFAULT_PASSWORD)

    def add_vhost(self, name: str) -> VirtualHost:
        """Create a virtual host (or return the existing one of that name)."""
        vhost = self.vhosts.get(name)
        if vhost is None:
            vhost = self.vhosts[name] = VirtualHost(
                name,
                schedule=self.schedule,
                consumer_timeout=self.consumer_timeout,
                persistence=self.persistence,
            )
        return vhost

    def page_out(self, committed: int, unsafe: Callable[[int], bool] | None = None) -> int:
        """Page out committed stored messages far from the heads of durable queues.

        See :meth:`Queue.page_out`; return how many bodies left memory.
        """
        return sum(
            queue.page_out(committed, unsafe)
            for vhost in self.vhosts.values()
            for queue in vhost.queues.values()
        )

    def use_persistence(self, persistence: Persistence) -> None:
        """Make every virtual host (and those added later) tell ``persistence`` of durable state.

        Set it after rebuilding from the store, so that the rebuild is not
        written back.
        """
        self.persistence = persistence
        for vhost in self.vhosts.values():
            vhost.persistence = persistence

    # -- time ------------------------------------------------------------------

    @property
    def now(self) -> float:
        """The latest time the core was told (seconds on the driver's clock)."""
        return self.schedule.now

    def advance(self, now: float) -> None:
        """Tell the core the time (it never goes back); nothing runs here."""
        schedule = self.schedule
        if now > schedule.now:
            schedule.now = now

    def next_deadline(self) -> float | None:
        """When :meth:`expire` next has something to do, or None."""
        return self.schedule.next_deadline()

    def expire(self, now: float) -> int:
        """Run everything due by ``now``: message TTLs, ``x-expires``, retry hold-backs,
        delayed messages, consumer ack timeouts.  Return how many deadlines were handled.

        Deliveries it causes go to the channel sinks as usual; a driver flushes
        them afterwards.
        """
        return self.schedule.run(now)

    def add_user(self, name: str, password: str) -> None:
        """Add a user, or change the password of an existing one."""
        self._users[name] = password

    def authenticate(self, user: str, password: str) -> bool:
        """Check a password in constant time (no timing hint about which byte differs)."""
        expected = self._users.get(user)
        # Compare against something even for an unknown user so both paths cost the same.
        ok = hmac.compare_digest(
            (expected if expected is not None else password + "\0").encode(),
            password.encode(),
        )
        return ok and expected is not None

    def connect(self, vhost: str = DEFAULT_VHOST, user: str = DEFAULT_USER) -> Connection:
        """``connection.open``: attach an authenticated user to a vhost.

        530 NOT_ALLOWED (hard) for an unknown vhost or user.
        """
        host = self.vhosts.get(vhost)
        if host is None:
            raise HardError(NOT_ALLOWED, f"vhost {vhost} not found")
        if user not in self._users:
            raise HardError(NOT_ALLOWED, f"access to vhost '{vhost}' refused for user '{user}'")
        return Connection(broker=self, vhost=host, user=user)
