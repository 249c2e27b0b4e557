"""The benchmark tool cannot rot: every scenario runs with a tiny count against amqplike.

No figure is judged here (a loaded machine would make that flaky), only that each case
ran, produced its figures and landed in the table and the JSON.  RabbitMQ is never
started by the test suite.
"""

from __future__ import annotations

import contextlib
import io
import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from amqplike.bench.__main__ import build_parser, main
from amqplike.bench._report import format_table
from amqplike.bench._scenarios import SCENARIOS, Settings, plan
from amqplike.bench._stats import latency_summary, percentile, summarize
from amqplike.bench._targets import default_rabbitmq_script

TINY = [
    "--count", "40", "--backlog-count", "200", "--connections", "10",
    "--sizes", "100", "--rounds", "1", "--progress", "never", "--timeout", "60",
]
LATENCY_SCENARIOS = {"confirm", "e2e", "rpc", "fanout"}


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[int, dict[str, Any], str]:
    """One tiny run of every scenario against a broker the tool starts itself."""
    out = tmp_path_factory.mktemp("bench") / "bench.json"
    table = io.StringIO()
    with contextlib.redirect_stdout(table):
        code = main([*TINY, "--json", str(out)])
    return code, json.loads(out.read_text()), table.getvalue()


@pytest.mark.timeout(90)
def test_every_scenario_succeeds(smoke_run: tuple[int, dict[str, Any], str]) -> None:
    """A tiny run of all scenarios against amqplike exits 0 with no failed case."""
    code, document, _table = smoke_run
    errors = [m["error"] for m in document["measurements"] if m.get("error")]
    assert errors == []
    assert code == 0


def test_json_has_one_measurement_per_case(smoke_run: tuple[int, dict[str, Any], str]) -> None:
    """The JSON holds one measurement per planned case, with a positive rate each."""
    _code, document, _table = smoke_run
    expected = plan(SCENARIOS, [100], Settings(count=40, backlog_count=200, connections=10))
    got = [(m["scenario"], m["variant"], m["size"]) for m in document["measurements"]]
    assert got == [(c.scenario, c.variant, c.size) for c in expected]
    for m in document["measurements"]:
        assert m["target"] == "amqplike"
        assert m["round"] == 0
        assert m["rate"] > 0
        assert m["broker_rss_peak_bytes"] > 0
        if m["scenario"] in LATENCY_SCENARIOS:
            assert 0 < m["p50_ms"] <= m["p99_ms"]
        if m["scenario"] == "backlog":
            assert m["drain_rate"] > 0
            assert "rss_per_msg_bytes" in m
        if m["scenario"] == "connections":
            assert "rss_per_connection_bytes" in m


def test_json_describes_run(smoke_run: tuple[int, dict[str, Any], str]) -> None:
    """The JSON names the format, the machine, the target and a summary row per case."""
    _code, document, _table = smoke_run
    assert document["format"] == "amqplike-bench/1"
    assert {"date", "python", "cpus"} <= set(document["machine"])
    assert [t["name"] for t in document["targets"]] == ["amqplike"]
    assert document["targets"][0]["url"].startswith("amqplike://")
    assert len(document["summary"]) == len(document["measurements"])
    assert all(row["targets"]["amqplike"]["rounds"] == 1 for row in document["summary"])


def test_table_lists_every_scenario(smoke_run: tuple[int, dict[str, Any], str]) -> None:
    """The printed table has a line for every scenario."""
    _code, _document, table = smoke_run
    for scenario in SCENARIOS:
        assert f"\n{scenario}/" in table


def test_plan_derives_counts_and_shrinks_large_bodies() -> None:
    """Counts derive from the base count, and 64 KiB bodies move 4 KiB's worth of bytes."""
    cases = {c.key: c.count for c in plan(["publish", "confirm"], [100, 65536], Settings(count=1000))}
    assert cases["publish/async/100"] == 1000
    assert cases["confirm/single/100"] == 100
    assert cases["publish/async/65536"] == 1000 * 4096 // 65536


def test_plan_rejects_unknown_scenario() -> None:
    """An unknown scenario name is a ValueError naming it."""
    with pytest.raises(ValueError, match="nope"):
        plan(["nope"], [100], Settings())


def test_percentiles_interpolate() -> None:
    """Percentiles interpolate between samples; the summary converts ns to ms."""
    assert percentile([1.0, 2.0, 3.0, 4.0], 50) == 2.5
    summary = latency_summary([1_000_000, 3_000_000])
    assert summary["p50_ms"] == 2.0
    assert summary["samples"] == 2


def _fake(target: str, rate: float, round_index: int) -> dict[str, Any]:
    return {
        "scenario": "publish", "variant": "async", "size": 100, "unit": "msg/s",
        "target": target, "round": round_index, "rate": rate, "p50_ms": rate / 1000,
    }


def test_compare_summary_has_medians_spread_and_ratio() -> None:
    """Per case and target: median, min and max over rounds, and amqplike/RabbitMQ."""
    measurements = [
        _fake("amqplike", r, i) for i, r in enumerate((100.0, 300.0, 200.0))
    ] + [_fake("rabbitmq", r, i) for i, r in enumerate((100.0, 100.0, 400.0))]
    (row,) = summarize(measurements)
    assert row["targets"]["amqplike"]["rate"] == {"median": 200.0, "min": 100.0, "max": 300.0}
    assert row["ratio"]["rate"] == 2.0
    table = format_table([row], ["amqplike", "rabbitmq"])
    assert "200 [100–300]" in table
    assert "2.00x" in table


def test_failed_round_is_reported_not_summarised() -> None:
    """A failed round shows as FAILED in the table and is left out of the medians."""
    failed = dict(_fake("amqplike", 0.0, 1), error="boom")
    del failed["rate"]
    (row,) = summarize([_fake("amqplike", 100.0, 0), failed])
    assert row["targets"]["amqplike"]["rounds"] == 1
    assert row["targets"]["amqplike"]["errors"] == ["boom"]
    assert "amqplike FAILED" in format_table([row], ["amqplike"])


def test_broker_url_and_compare_are_exclusive(capsys: pytest.CaptureFixture[str]) -> None:
    """--broker-url names one broker, so --compare refuses it."""
    with pytest.raises(SystemExit) as exit_info:
        main(["--compare", "--broker-url", "amqplike://127.0.0.1:1/"])
    assert exit_info.value.code == 2
    assert "--broker-url" in capsys.readouterr().err


def test_parser_rejects_unknown_scenario() -> None:
    """--scenarios accepts only known names."""
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--scenarios", "publish,bogus"])


def test_plot_writes_png(tmp_path: Path, smoke_run: tuple[int, dict[str, Any], str]) -> None:
    """--plot's drawing code turns a run's document into a PNG file."""
    pytest.importorskip("matplotlib")
    from amqplike.bench._report import plot

    path = tmp_path / "bench.png"
    plot(smoke_run[1], path)
    assert path.read_bytes().startswith(b"\x89PNG")


def test_rabbitmq_script_is_valid_shell() -> None:
    """scripts/rabbitmq.sh parses, and refuses an unknown command without touching anything."""
    script = default_rabbitmq_script()
    subprocess.run(["bash", "-n", str(script)], check=True)
    done = subprocess.run(["bash", str(script), "bogus"], capture_output=True, text=True)
    assert done.returncode == 2
    assert "start|stop|status" in done.stderr
