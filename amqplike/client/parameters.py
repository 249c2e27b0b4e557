"""Connection parameters with pika's names: ``ConnectionParameters``, ``URLParameters``.

``URLParameters("amqplike://guest:guest@127.0.0.1:5680/%2F")`` reads the same
URL form as pika (the vhost is the URL-decoded path, ``/`` when the path is
empty or a bare slash) plus pika's query options (``?heartbeat=30``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Final
from urllib.parse import parse_qs, unquote, urlsplit

from attrs import field, frozen

#: The port ``twistd amqplike`` listens on unless told otherwise.
DEFAULT_PORT: Final = 5680
#: URL schemes accepted by :func:`URLParameters`.
URL_SCHEMES: Final = frozenset({"amqplike", "amqp"})


@frozen
class PlainCredentials:
    """A user name and password sent with SASL PLAIN (``\\0user\\0password``)."""

    username: str
    password: str = field(repr=False)

    def response(self) -> bytes:
        """Return the ``connection.start-ok`` response bytes for PLAIN."""
        return b"\0" + self.username.encode() + b"\0" + self.password.encode()


def _positive(_instance: object, attribute: Any, value: float | None) -> None:
    if value is not None and value <= 0:
        raise ValueError(f"{attribute.name} must be positive, got {value!r}")


def _non_negative(_instance: object, attribute: Any, value: float | None) -> None:
    if value is not None and value < 0:
        raise ValueError(f"{attribute.name} must not be negative, got {value!r}")


@frozen
class ConnectionParameters:
    """Where and how to connect, under pika's argument names.

    ``heartbeat`` is the client's preference in seconds: ``None`` accepts the
    server's value, ``0`` turns heartbeats off; otherwise the smaller of the
    two is used.  ``channel_max`` and ``frame_max`` are upper bounds the
    client asks for (0 for ``channel_max`` means "the server's").
    ``socket_timeout`` bounds the TCP connect and the handshake, in seconds.
    """

    host: str = "localhost"
    port: int = DEFAULT_PORT
    virtual_host: str = "/"
    credentials: PlainCredentials = PlainCredentials("guest", "guest")
    channel_max: int = field(default=65535, validator=_non_negative)
    frame_max: int = field(default=131072, validator=_non_negative)
    heartbeat: int | None = field(default=None, validator=_non_negative)
    connection_attempts: int = field(default=1, validator=_positive)
    retry_delay: float = field(default=2.0, validator=_non_negative)
    socket_timeout: float = field(default=10.0, validator=_positive)
    blocked_connection_timeout: float | None = field(default=None, validator=_positive)
    client_properties: Mapping[str, Any] | None = None
    locale: str = "en_US"

    @classmethod
    def from_url(cls, url: str) -> ConnectionParameters:
        """Parse ``amqplike://user:password@host:port/vhost?option=value``.

        Raises ``ValueError`` for another scheme or an unknown or malformed option.
        """
        parts = urlsplit(url)
        if parts.scheme not in URL_SCHEMES:
            raise ValueError(
                f"URL scheme must be one of {sorted(URL_SCHEMES)}, got {parts.scheme!r}"
            )
        kwargs: dict[str, Any] = {}
        if parts.hostname:
            kwargs["host"] = parts.hostname
        if parts.port is not None:
            kwargs["port"] = parts.port
        if parts.username is not None or parts.password is not None:
            kwargs["credentials"] = PlainCredentials(
                unquote(parts.username or ""), unquote(parts.password or "")
            )
        if parts.path and parts.path != "/":
            kwargs["virtual_host"] = unquote(parts.path[1:])
        for name, values in parse_qs(parts.query, keep_blank_values=True).items():
            convert = _URL_OPTIONS.get(name)
            if convert is None:
                raise ValueError(f"unknown connection option {name!r} in URL")
            try:
                kwargs[name] = convert(values[-1])
            except ValueError as e:
                raise ValueError(f"bad value for URL option {name!r}: {values[-1]!r}") from e
        return cls(**kwargs)


def _int_or_none(text: str) -> int | None:
    return None if text in ("", "none", "None") else int(text)


def _float_or_none(text: str) -> float | None:
    return None if text in ("", "none", "None") else float(text)


_URL_OPTIONS: Final[dict[str, Callable[[str], Any]]] = {
    "heartbeat": _int_or_none,
    "channel_max": int,
    "frame_max": int,
    "connection_attempts": int,
    "retry_delay": float,
    "socket_timeout": float,
    "blocked_connection_timeout": _float_or_none,
    "locale": str,
}


def URLParameters(url: str) -> ConnectionParameters:
    """Return the :class:`ConnectionParameters` a URL describes (pika's ``URLParameters``)."""
    return ConnectionParameters.from_url(url)


def as_parameters(
    parameters: ConnectionParameters | str | None,
) -> ConnectionParameters:
    """Accept parameters, a URL string or ``None`` (``localhost:5680`` as guest)."""
    if parameters is None:
        return ConnectionParameters()
    if isinstance(parameters, str):
        return ConnectionParameters.from_url(parameters)
    if isinstance(parameters, ConnectionParameters):
        return parameters
    raise TypeError(
        f"expected ConnectionParameters or a URL string, got {type(parameters).__name__}"
    )


__all__ = [
    "DEFAULT_PORT",
    "ConnectionParameters",
    "PlainCredentials",
    "URLParameters",
    "as_parameters",
]
