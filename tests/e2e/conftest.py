"""Fixtures for end-to-end tests against the real broker process."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.broker import BrokerProcess, running_broker


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrokerProcess]:
    """One ``twistd -n amqplike`` per test module, on a free loopback port."""
    data_dir: Path = tmp_path_factory.mktemp("broker") / "data"
    with running_broker(data_dir) as process:
        yield process
