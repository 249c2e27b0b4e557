"""Numbers: percentiles of latency samples and per-scenario summaries across rounds.

Plain functions over plain values, so the report, the JSON and the tests share them.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

#: Percentiles kept from every latency sample (enough to draw a distribution).
QUANTILE_POINTS: tuple[float, ...] = (
    0, 1, 5, 10, 20, 25, 30, 40, 50, 60, 70, 75, 80, 90, 95, 99, 99.9, 100,
)


def percentile(sorted_values: Sequence[float], pct: float) -> float:
    """Return the ``pct`` percentile (0-100) of already sorted values, interpolated.

    Raises ``ValueError`` for an empty sequence.
    """
    if not sorted_values:
        raise ValueError("percentile of no values")
    if len(sorted_values) == 1:
        return float(sorted_values[0])
    rank = (len(sorted_values) - 1) * pct / 100.0
    low = math.floor(rank)
    high = min(low + 1, len(sorted_values) - 1)
    fraction = rank - low
    return float(sorted_values[low] + (sorted_values[high] - sorted_values[low]) * fraction)


def latency_summary(latencies_ns: Iterable[int]) -> dict[str, Any]:
    """Summarise latencies in nanoseconds as milliseconds: p50, p99 and the quantile curve.

    Returns an empty dict when there are no samples.
    """
    values = sorted(latencies_ns)
    if not values:
        return {}
    ms = [v / 1e6 for v in values]
    return {
        "p50_ms": percentile(ms, 50),
        "p99_ms": percentile(ms, 99),
        "max_ms": ms[-1],
        "samples": len(ms),
        "quantiles_ms": {str(q): percentile(ms, q) for q in QUANTILE_POINTS},
    }


def spread(values: Sequence[float]) -> dict[str, float]:
    """Return the median, min and max of one figure over rounds."""
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


#: Figures compared between targets, with whether a higher value is better.
COMPARED_FIGURES: Mapping[str, bool] = {
    "rate": True,
    "p50_ms": False,
    "p99_ms": False,
    "broker_cpu_us_per_msg": False,
    "rss_per_msg_bytes": False,
    "rss_per_connection_bytes": False,
    "drain_rate": True,
    "broker_rss_peak_bytes": False,
}


def measurement_key(measurement: Mapping[str, Any]) -> str:
    """Name one measured case, e.g. ``"publish/async/100"`` (size 0: size-independent)."""
    return f"{measurement['scenario']}/{measurement['variant']}/{measurement['size']}"


def summarize(measurements: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Group measurements by case and target, then compute median/min/max per figure.

    A ratio ``amqplike/rabbitmq`` of the medians is added for every figure both targets
    have.  Failed measurements (with an ``error``) are counted but not summarised.
    Cases keep the order in which they were first measured.
    """
    groups: dict[str, dict[str, list[Mapping[str, Any]]]] = {}
    for m in measurements:
        groups.setdefault(measurement_key(m), {}).setdefault(m["target"], []).append(m)
    rows: list[dict[str, Any]] = []
    for key, by_target in groups.items():
        everything = [m for items in by_target.values() for m in items]
        first = next((m for m in everything if not m.get("error")), everything[0])
        row: dict[str, Any] = {
            "case": key,
            "scenario": first["scenario"],
            "variant": first["variant"],
            "size": first["size"],
            "unit": first.get("unit", "msg/s"),
            "targets": {},
            "ratio": {},
        }
        for target, items in by_target.items():
            ok = [m for m in items if not m.get("error")]
            figures: dict[str, Any] = {
                "rounds": len(ok),
                "errors": [m["error"] for m in items if m.get("error")],
            }
            for figure in COMPARED_FIGURES:
                values = [float(m[figure]) for m in ok if m.get(figure) is not None]
                if values:
                    figures[figure] = spread(values)
            row["targets"][target] = figures
        ours, theirs = row["targets"].get("amqplike"), row["targets"].get("rabbitmq")
        if ours and theirs:
            for figure in COMPARED_FIGURES:
                if figure in ours and figure in theirs and theirs[figure]["median"]:
                    row["ratio"][figure] = ours[figure]["median"] / theirs[figure]["median"]
        rows.append(row)
    return rows
