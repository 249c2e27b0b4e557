"""The README's quickstart runs as written against the real broker."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from tests.e2e.broker import BrokerProcess

README = Path(__file__).resolve().parents[2] / "README.md"


def _quickstart() -> str:
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    assert blocks, "README has no python block"
    return blocks[0]


def test_readme_starts_with_the_two_commands() -> None:
    """The README opens with `make run` and `make test`."""
    first_block = README.read_text().split("```")[1]
    assert "make run" in first_block
    assert "make test" in first_block


def test_quickstart_runs_as_written(broker: BrokerProcess, tmp_path: Path) -> None:
    """The quickstart publishes, consumes and makes one RPC call, printing what the README says.

    Only the port differs: the test broker listens on a free port instead of 5680.
    """
    code = _quickstart()
    assert "127.0.0.1:5680" in code
    script = tmp_path / "quickstart.py"
    script.write_text(code.replace("127.0.0.1:5680", f"127.0.0.1:{broker.port}"))
    result = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["received b'Hello World!'", "reply b'PING'"]
