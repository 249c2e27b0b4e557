"""D12 for the store alone: 1,000,000 persistent 1 KiB messages, loaded in a fresh process."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
MESSAGES = 1_000_000


def _bench(*args: str) -> dict[str, object]:
    out = subprocess.run(
        [sys.executable, "-m", "tests.store.bench_store", *args],
        cwd=REPO,
        check=True,
        capture_output=True,
        text=True,
        timeout=600,
    ).stdout
    result: dict[str, object] = json.loads(out.splitlines()[-1])
    return result


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_million_messages_load_fast_in_little_memory(tmp_path: Path) -> None:
    """A store holding 1,000,000 persistent 1 KiB messages in one durable queue loads
    (integrity check included) in under 30 s, with a peak RSS under 300 MiB, and the
    first 1000 bodies are read back in well under a second."""
    fill = _bench("fill", str(tmp_path), "--messages", str(MESSAGES), "--body", "1024")
    assert fill["messages"] == MESSAGES
    load = _bench("load", str(tmp_path))
    assert load["messages"] == MESSAGES
    assert float(load["seconds"]) < 30  # type: ignore[arg-type]
    assert float(load["peak_rss_mib"]) < 300  # type: ignore[arg-type]
    assert load["read"] == 1000
    assert float(load["read_first_1000_seconds"]) < 1  # type: ignore[arg-type]
