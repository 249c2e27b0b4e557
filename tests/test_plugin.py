"""The twistd plugin is visible the way `make run` uses it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

TWISTD = str(Path(sys.executable).with_name("twistd"))


def test_twistd_lists_amqplike() -> None:
    """`twistd --help` lists the amqplike plugin after `make` set-up."""
    out = subprocess.run([TWISTD, "--help"], capture_output=True, text=True, check=True).stdout
    assert "amqplike" in out


def test_twistd_amqplike_rejects_bad_option() -> None:
    """A wrong option value stops twistd with a usage error naming the option."""
    result = subprocess.run(
        [TWISTD, "--nodaemon", "--pidfile=", "amqplike", "--frame-max", "12"],
        capture_output=True,
        text=True,
    )
    assert result.returncode != 0
    assert "frame-max" in (result.stdout + result.stderr)
