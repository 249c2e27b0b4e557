"""Presenting results: the text table, the JSON document and the optional plot."""

from __future__ import annotations

import datetime
import json
import os
import platform
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from amqplike.bench._stats import summarize

#: Figures shown in the table, with their label and formatter key.
_TABLE_FIGURES: tuple[tuple[str, str, str], ...] = (
    ("rate", "rate", "rate"),
    ("p50_ms", "p50 ms", "ms"),
    ("p99_ms", "p99 ms", "ms"),
    ("drain_rate", "drain msg/s", "rate"),
    ("broker_cpu_us_per_msg", "broker CPU µs/msg", "us"),
    ("rss_per_msg_bytes", "RSS B/queued msg", "bytes"),
    ("rss_per_connection_bytes", "RSS B/idle conn", "bytes"),
    ("broker_rss_peak_bytes", "broker peak RSS", "bytes"),
)


def _format(value: float, kind: str) -> str:
    if kind == "rate":
        return f"{value:,.0f}"
    if kind == "ms":
        return f"{value:.3f}"
    if kind == "us":
        return f"{value:.1f}"
    if abs(value) >= 1 << 20:
        return f"{value / (1 << 20):.1f}Mi"
    if abs(value) >= 10 << 10:
        return f"{value / (1 << 10):.1f}Ki"
    return f"{value:,.0f}"


def _cell(figures: Mapping[str, Any] | None, figure: str, kind: str) -> str:
    if not figures or figure not in figures:
        return "-"
    s = figures[figure]
    if s["min"] == s["max"]:
        return _format(s["median"], kind)
    return f"{_format(s['median'], kind)} [{_format(s['min'], kind)}–{_format(s['max'], kind)}]"


def _size(size: int) -> str:
    if size == 0:
        return "-"
    if size % 1024 == 0:
        return f"{size // 1024} KiB"
    return f"{size} B"


def format_table(summary: Sequence[Mapping[str, Any]], targets: Sequence[str]) -> str:
    """Render the summary as a text table: medians with [min–max], and the ratio.

    The ratio is amqplike/RabbitMQ of the medians; for rates higher is better, for
    latencies, CPU and memory lower is better.
    """
    header = ["case", "size", "figure", *(f"{t} median [min–max]" for t in targets)]
    compare = "amqplike" in targets and "rabbitmq" in targets
    if compare:
        header.append("amqplike/rabbitmq")
    rows: list[list[str]] = []
    for row in summary:
        name = f"{row['scenario']}/{row['variant']}"
        first = True
        for figure, label, kind in _TABLE_FIGURES:
            cells = [_cell(row["targets"].get(t), figure, kind) for t in targets]
            if all(c == "-" for c in cells):
                continue
            if figure == "broker_rss_peak_bytes" and row["scenario"] != "backlog":
                continue
            if figure == "rate":
                label = row["unit"]
            line = [name if first else "", _size(row["size"]) if first else "", label, *cells]
            if compare:
                ratio = row["ratio"].get(figure)
                line.append(f"{ratio:.2f}x" if ratio is not None else "-")
            rows.append(line)
            first = False
        for t in targets:
            errors = row["targets"].get(t, {}).get("errors")
            if errors:
                rows.append([name if first else "", "", f"{t} FAILED", f"{len(errors)} round(s)"])
                first = False
    widths = [max(len(r[i]) for r in [header, *rows] if i < len(r)) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(header, widths)).rstrip()]
    lines.append("  ".join("-" * w for w in widths))
    lines.extend("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows)
    return "\n".join(lines)


def format_markdown(summary: Sequence[Mapping[str, Any]], targets: Sequence[str]) -> str:
    """A compact Markdown table for the docs: throughput, p50 and broker CPU per case.

    Each cell is the median with its [min–max] over rounds; the last columns are the
    ratios amqplike/RabbitMQ when both were measured.
    """
    compare = "amqplike" in targets and "rabbitmq" in targets
    header = ["case", "size", "unit"]
    for t in targets:
        header += [f"{t} throughput", f"{t} p50 ms", f"{t} CPU µs/msg"]
    if compare:
        header += ["throughput ratio", "CPU ratio"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in summary:
        cells = [f"{row['scenario']}/{row['variant']}", _size(row["size"]), row["unit"]]
        for t in targets:
            figures = row["targets"].get(t)
            cells += [
                _cell(figures, "rate", "rate"),
                _cell(figures, "p50_ms", "ms"),
                _cell(figures, "broker_cpu_us_per_msg", "us"),
            ]
        if compare:
            for figure in ("rate", "broker_cpu_us_per_msg"):
                ratio = row["ratio"].get(figure)
                cells.append(f"{ratio:.2f}x" if ratio is not None else "-")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def machine_description() -> dict[str, Any]:
    """The machine and software a run measured, for the JSON and the docs."""
    info: dict[str, Any] = {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "cpus": os.cpu_count(),
        "load_average_after": os.getloadavg() if hasattr(os, "getloadavg") else None,
    }
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    info["cpu_model"] = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        import psutil  # type: ignore[import-untyped, unused-ignore]

        info["memory_bytes"] = psutil.virtual_memory().total
    except ImportError:
        pass
    for package in ("twisted", "pika", "cbor2"):
        try:
            from importlib.metadata import version

            info[package] = version(package)
        except Exception:
            info[package] = None
    return info


def build_document(
    measurements: Sequence[Mapping[str, Any]], *, targets: Sequence[Mapping[str, Any]],
    arguments: Mapping[str, Any], machine: Mapping[str, Any],
) -> dict[str, Any]:
    """The JSON document of a run: machine, targets, arguments, raw rounds and summary."""
    return {
        "format": "amqplike-bench/1",
        "machine": dict(machine),
        "targets": list(targets),
        "arguments": dict(arguments),
        "measurements": [dict(m) for m in measurements],
        "summary": summarize(measurements),
    }


def write_json(document: Mapping[str, Any], path: Path) -> None:
    """Write the document, pretty-printed, to ``path``."""
    path.write_text(json.dumps(document, indent=2, sort_keys=False) + "\n")


def plot(document: Mapping[str, Any], path: Path) -> None:
    """Draw the rate ratios (or rates) and the latency distributions into a PNG.

    matplotlib is imported here only, so the tool runs without it until asked to plot.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    summary = document["summary"]
    names = [t["name"] for t in document["targets"]]
    compare = "amqplike" in names and "rabbitmq" in names
    fig, (bars, curves) = plt.subplots(1, 2, figsize=(15, max(5.0, 0.28 * len(summary) + 2)))

    labels = [f"{r['scenario']}/{r['variant']} {_size(r['size'])}" for r in summary]
    if compare:
        values = [r["ratio"].get("rate", 0.0) for r in summary]
        colors = ["tab:green" if v >= 1.0 else "tab:red" for v in values]
        bars.barh(labels, values, color=colors)
        bars.axvline(1.0, color="black", linewidth=1)
        bars.set_xlabel("throughput ratio amqplike / RabbitMQ (median; > 1 is faster)")
    else:
        target = names[0]
        values = [
            r["targets"].get(target, {}).get("rate", {}).get("median", 0.0) for r in summary
        ]
        bars.barh(labels, values)
        bars.set_xscale("log")
        bars.set_xlabel(f"{target}: throughput (median, per unit in the table)")
    bars.invert_yaxis()
    bars.tick_params(axis="y", labelsize=8)

    styles = {name: style for name, style in zip(names, ("-", "--", ":"))}
    smallest = min((r["size"] for r in summary if r["size"]), default=0)
    color_index = 0
    for row in summary:
        if row["size"] != smallest:
            continue
        case = f"{row['scenario']}/{row['variant']}"
        drawn = False
        for name in names:
            sample = _median_round_latency(document["measurements"], row["case"], name)
            if not sample:
                continue
            xs = [float(q) for q in sample]
            ys = [sample[q] for q in sample]
            curves.plot(
                xs, ys, styles.get(name, "-"), color=f"C{color_index % 10}",
                label=f"{case} ({name})",
            )
            drawn = True
        if drawn:
            color_index += 1
    curves.set_yscale("log")
    curves.set_xlabel("percentile")
    curves.set_ylabel("latency, ms")
    curves.set_title(f"latency distributions, {_size(smallest)} bodies (median round)")
    if color_index:
        curves.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _median_round_latency(
    measurements: Sequence[Mapping[str, Any]], case: str, target: str
) -> dict[str, float]:
    rounds = [
        m for m in measurements
        if m["target"] == target and not m.get("error") and m.get("latency")
        and f"{m['scenario']}/{m['variant']}/{m['size']}" == case
    ]
    if not rounds:
        return {}
    rounds.sort(key=lambda m: m["p50_ms"])
    quantiles: dict[str, float] = rounds[len(rounds) // 2]["latency"]["quantiles_ms"]
    return quantiles
