"""The clients' import rules (docs/architecture.md): no core or server, Twisted only where needed."""

from __future__ import annotations

import subprocess
import sys

import pytest

_PROBE = """
import sys
import {module}
twisted = sorted(m for m in sys.modules if m == 'twisted' or m.startswith('twisted.'))
layers = sorted(m for m in sys.modules if m.split('.')[:2] in (['amqplike', 'core'], ['amqplike', 'server']))
print(repr((twisted, layers, 'twisted.internet.reactor' in sys.modules)))
"""


def _probe(module: str) -> tuple[list[str], list[str], bool]:
    out = subprocess.run(
        [sys.executable, "-c", _PROBE.format(module=module)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    result: tuple[list[str], list[str], bool] = eval(out)
    return result


@pytest.mark.parametrize(
    "module",
    ["amqplike.client", "amqplike.client._engine", "amqplike.client.sync", "amqplike.client.rpc"],
)
def test_engine_and_blocking_client_load_without_twisted(module: str) -> None:
    """The engine, the blocking client and its RPC helpers never import Twisted, core or server."""
    twisted, layers, _reactor = _probe(module)
    assert twisted == []
    assert layers == []


@pytest.mark.parametrize("module", ["amqplike.client.twisted", "amqplike.client.twisted_rpc"])
def test_twisted_client_does_not_install_the_reactor(module: str) -> None:
    """Importing the Twisted client neither imports the global reactor nor the broker layers."""
    _twisted, layers, reactor_loaded = _probe(module)
    assert layers == []
    assert not reactor_loaded
