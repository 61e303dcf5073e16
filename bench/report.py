"""How a benchmark prints: aligned text tables with a target and a met / NOT MET column.

Every table also keeps the raw figures it measured (``figures``), so later tables (the cost
table) compute from measurements, not from constants.
"""

from __future__ import annotations

import math
import os
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

NO_TARGET = "—"


def scale() -> float:
    """``BENCH_SCALE`` (default 1.0) shrinks every size for a quick run."""
    return float(os.environ.get("BENCH_SCALE", "1.0"))


def scaled(n: int, minimum: int = 1) -> int:
    return max(minimum, round(n * scale()))


def verdict(ok: bool | None) -> str:
    if ok is None:
        return NO_TARGET
    return "met" if ok else "NOT MET"


def percentile(values: Sequence[float], p: float) -> float:
    """The p-th percentile (nearest rank), 0 for no values."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(1, math.ceil(p / 100 * len(ordered)))
    return ordered[rank - 1]


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else 0.0


def ms(seconds: float) -> str:
    return f"{seconds * 1000:,.1f} ms"


def num(value: float, digits: int = 0) -> str:
    return f"{value:,.{digits}f}"


@dataclass
class Table:
    name: str  # the command-line name: initial, incremental, ...
    title: str
    columns: list[str]
    rows: list[list[str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    figures: dict[str, Any] = field(default_factory=dict)

    def add(self, *cells: object) -> None:
        row = [str(c) for c in cells]
        row += [""] * (len(self.columns) - len(row))
        self.rows.append(row)

    def note(self, text: str) -> None:
        self.notes.append(text)

    @property
    def shortfalls(self) -> list[list[str]]:
        return [r for r in self.rows if any("NOT MET" in cell for cell in r)]

    def render(self) -> str:
        widths = [len(c) for c in self.columns]
        for row in self.rows:
            widths = [max(w, len(cell)) for w, cell in zip(widths, row, strict=True)]

        def line(cells: Sequence[str]) -> str:
            return "  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip()

        out = [f"== {self.title} ==", line(self.columns), line(["-" * w for w in widths])]
        out += [line(r) for r in self.rows]
        out += [f"  * {n}" for n in self.notes]
        return "\n".join(out)
