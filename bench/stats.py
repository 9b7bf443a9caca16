"""Samples, percentiles and the markdown tables the bench prints."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100); p99 of 50 samples is the maximum, honestly."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


@dataclass
class Measurement:
    """One subject of one case: latency samples (seconds) or a single figure."""

    case: str
    subject: str
    samples: list[float] = field(default_factory=list)
    value: float | None = None  # for throughput and memory rows
    unit: str = "ms"
    note: str = ""

    @property
    def n(self) -> int:
        return len(self.samples) if self.samples else (1 if self.value is not None else 0)

    @property
    def p50(self) -> float:
        return self.value if self.value is not None else percentile(self.samples, 50)

    @property
    def p99(self) -> float | None:
        return None if self.value is not None else percentile(self.samples, 99)


@dataclass
class Ratio:
    """A comparison the issue sets a target for; ``ok`` is None when it could not be measured."""

    name: str
    shown: str  # the measured figure as printed: "312x", "41.2 MB", "not measured: ..."
    target: str
    ok: bool | None


def ratio(name: str, value: float | None, target: str, ok_if: Any, why_missing: str = "") -> Ratio:
    """A ratio row; ``ok_if(value)`` decides whether the target is met."""
    if value is None or math.isnan(value):
        return Ratio(name, why_missing or "not measured", target, None)
    shown = f"{value:,.0f}x" if value >= 100 else f"{value:.2f}x"
    return Ratio(name, shown, target, bool(ok_if(value)))


def absolute(name: str, value: float | None, unit: str, target: str, ok_if: Any,
             why_missing: str = "") -> Ratio:
    """A target on an absolute figure (MB, seconds)."""
    if value is None or math.isnan(value):
        return Ratio(name, why_missing or "not measured", target, None)
    return Ratio(name, f"{fmt_number(value, unit)} {unit}", target, bool(ok_if(value)))


def fmt_number(value: float | None, unit: str) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if unit == "ms":
        value *= 1000
        return f"{value:.3f}" if value < 10 else f"{value:.1f}"
    if unit in ("req/s", "runs/s"):
        return f"{value:,.0f}" if value >= 100 else f"{value:.2f}"
    if unit == "MB":
        return f"{value:.1f}"
    if unit == "s":
        return f"{value:.3f}"
    return f"{value:g}"


def measurements_table(rows: list[Measurement]) -> str:
    lines = ["| case | subject | n | p50 | p99 | unit | note |",
             "|---|---|---:|---:|---:|---|---|"]
    for row in rows:
        note = " ".join(row.note.split()).replace("|", "/")  # one table row, whatever the text
        lines.append(f"| {row.case} | {row.subject} | {row.n} | {fmt_number(row.p50, row.unit)} | "
                     f"{fmt_number(row.p99, row.unit)} | {row.unit} | {note} |")
    return "\n".join(lines)


def ratio_table(ratios: list[Ratio]) -> str:
    lines = ["| comparison | measured | target | met |", "|---|---:|---|:---:|"]
    for row in ratios:
        met = {True: "yes", False: "**no**", None: "n/a"}[row.ok]
        lines.append(f"| {row.name} | {row.shown} | {row.target} | {met} |")
    return "\n".join(lines)


def as_dict(rows: list[Measurement]) -> list[dict[str, Any]]:
    return [{"case": r.case, "subject": r.subject, "n": r.n, "p50": r.p50, "p99": r.p99,
             "unit": r.unit, "note": r.note} for r in rows]
