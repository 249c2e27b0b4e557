"""The layering rules of docs/architecture.md, checked mechanically."""

from __future__ import annotations

import subprocess
import sys

import pytest

_PROBE = """
import sys
import {module}
loaded = sorted(m for m in sys.modules if m == 'twisted' or m.startswith('twisted.'))
bad = sorted(m for m in sys.modules if m.split('.')[:2] in {forbidden!r})
print(repr((loaded, bad)))
"""


@pytest.mark.parametrize(
    ("module", "forbidden"),
    [
        ("amqplike.core", [["amqplike", "wire"], ["amqplike", "server"], ["amqplike", "client"]]),
        ("amqplike.wire", [["amqplike", "core"], ["amqplike", "server"], ["amqplike", "client"]]),
        ("amqplike.client.sync", [["amqplike", "core"], ["amqplike", "server"]]),
    ],
)
def test_sans_io_layers_import_no_twisted(module: str, forbidden: list[list[str]]) -> None:
    """The core, the wire codec and the sync client load without Twisted or the layers above."""
    out = subprocess.run(
        [sys.executable, "-c", _PROBE.format(module=module, forbidden=forbidden)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    loaded, bad = eval(out)
    assert loaded == []
    assert bad == []
