"""Connection parameters and URL parsing."""

from __future__ import annotations

import pytest

from amqplike.client.parameters import (
    ConnectionParameters,
    PlainCredentials,
    URLParameters,
    as_parameters,
)


def test_full_url() -> None:
    """User, password, host, port and the %-encoded vhost are all read."""
    p = URLParameters("amqplike://bob:p%40ss@broker.example:5999/%2Fprod")
    assert (p.host, p.port, p.virtual_host) == ("broker.example", 5999, "/prod")
    assert p.credentials == PlainCredentials("bob", "p@ss")


def test_quickstart_url_is_the_default_vhost() -> None:
    """amqplike://guest:guest@127.0.0.1:5680/%2F names vhost '/'."""
    p = URLParameters("amqplike://guest:guest@127.0.0.1:5680/%2F")
    assert (p.host, p.port, p.virtual_host) == ("127.0.0.1", 5680, "/")


@pytest.mark.parametrize("url", ["amqplike://localhost", "amqplike://localhost/", "amqp://localhost"])
def test_defaults(url: str) -> None:
    """Without port, path or credentials: 5680, vhost '/', guest/guest."""
    p = URLParameters(url)
    assert (p.port, p.virtual_host, p.credentials) == (5680, "/", PlainCredentials("guest", "guest"))


def test_query_options() -> None:
    """pika's query options set the matching fields."""
    p = URLParameters(
        "amqplike://h/?heartbeat=30&frame_max=8192&channel_max=8&socket_timeout=2.5"
        "&connection_attempts=3&retry_delay=0.5"
    )
    assert (p.heartbeat, p.frame_max, p.channel_max, p.socket_timeout) == (30, 8192, 8, 2.5)
    assert (p.connection_attempts, p.retry_delay) == (3, 0.5)


@pytest.mark.parametrize(
    "url",
    ["http://h/", "amqplike://h/?bogus=1", "amqplike://h/?heartbeat=soon", "amqplike://h/?heartbeat=-1"],
)
def test_bad_urls_raise_value_error(url: str) -> None:
    """Unknown schemes, unknown options and bad values are refused."""
    with pytest.raises(ValueError):
        URLParameters(url)


def test_as_parameters_accepts_url_object_or_none() -> None:
    """Both clients take parameters, a URL string, or nothing."""
    params = ConnectionParameters(host="x")
    assert as_parameters(params) is params
    assert as_parameters("amqplike://y").host == "y"
    assert as_parameters(None) == ConnectionParameters()
    with pytest.raises(TypeError):
        as_parameters(5)  # type: ignore[arg-type]


def test_password_is_not_in_repr() -> None:
    """Credentials never leak into logs through repr()."""
    assert "hunter2" not in repr(ConnectionParameters(credentials=PlainCredentials("u", "hunter2")))
