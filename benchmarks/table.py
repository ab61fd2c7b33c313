"""One figure per line: name, value, floor, ratio, goal, verdict; shared by every benchmark.

The ratio is always "what the app costs / what the floor costs", so lower is better everywhere:
time over time, memory over memory, requests over requests, and for rates (requests or rows
per second) the floor's rate over the app's. A goal applies to that ratio ("<= 1.5x"), to the
value itself ("<= 2", for counts whose budget the design fixes) or to the value's excess over
the floor ("<= +64", for memory that must not grow with the input).

Benchmark modules print their own table when run alone; under the runner they write their
figures as JSON (``--figures-out``) and the runner prints one table for all of them.
"""

from __future__ import annotations

import argparse
import json
import math
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

NAME_WIDTH = 50
CELL_WIDTH = 18
RATIO_WIDTH = 8
GOAL_WIDTH = 10
# Floating-point noise must not turn an exact budget (2 requests of a "<= 2" goal) into a MISS.
_TOLERANCE = 1e-9


@dataclass(frozen=True)
class Figure:
    name: str
    value: float
    floor: float
    unit: str
    goal_limit: float
    goal_on: Literal["ratio", "value", "excess"] = "ratio"
    higher_is_better: bool = False  # rates: the ratio is floor / value

    @property
    def ratio(self) -> float | None:
        """App cost over floor cost; None when the floor is zero (nothing to compare with)."""
        numerator, denominator = (
            (self.floor, self.value) if self.higher_is_better else (self.value, self.floor)
        )
        if denominator == 0:
            return None
        return numerator / denominator

    @property
    def passed(self) -> bool:
        if self.goal_on == "value":
            measured: float | None = self.value
        elif self.goal_on == "excess":
            measured = self.value - self.floor
        else:
            measured = self.ratio
        if measured is None:  # a zero floor: only a zero value meets a ratio goal
            return self.value == 0
        return measured <= self.goal_limit + _TOLERANCE

    @property
    def verdict(self) -> str:
        return "PASS" if self.passed else "MISS"

    @property
    def goal_text(self) -> str:
        limit = _number(self.goal_limit)
        if self.goal_on == "ratio":
            return f"<= {limit}x"
        return f"<= +{limit}" if self.goal_on == "excess" else f"<= {limit}"


def _number(value: float) -> str:
    if not math.isfinite(value):
        return str(value)
    magnitude = abs(value)
    if magnitude >= 1000:
        return f"{value:,.0f}"
    if magnitude >= 100 or value == int(value):
        return f"{value:.0f}"
    if magnitude >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def _cell(value: float, unit: str) -> str:
    return f"{_number(value)} {unit}"


def header() -> str:
    return (
        f"{'figure':<{NAME_WIDTH}}{'value':>{CELL_WIDTH}}{'floor':>{CELL_WIDTH}}"
        f"{'ratio':>{RATIO_WIDTH}}  {'goal':<{GOAL_WIDTH}}verdict"
    )


def line(figure: Figure) -> str:
    ratio = figure.ratio
    ratio_text = "-" if ratio is None else f"{ratio:.2f}x"
    return (
        f"{figure.name:<{NAME_WIDTH}}{_cell(figure.value, figure.unit):>{CELL_WIDTH}}"
        f"{_cell(figure.floor, figure.unit):>{CELL_WIDTH}}{ratio_text:>{RATIO_WIDTH}}  "
        f"{figure.goal_text:<{GOAL_WIDTH}}{figure.verdict}"
    )


def render(figures: Sequence[Figure]) -> str:
    rule = "-" * len(header())
    return "\n".join([header(), rule, *(line(figure) for figure in figures)])


_LINE = re.compile(
    r"^(?P<name>\S.*?)\s{2,}(?P<value>-?[\d,.]+) (?P<unit>\S+)\s+(?P<floor>-?[\d,.]+) \S+"
    r"\s+(?P<ratio>[\d.]+x|-)\s+(?P<goal><= \+?[\d,.]+x?)\s+(?P<verdict>PASS|MISS)$"
)


@dataclass(frozen=True)
class ParsedLine:
    name: str
    value: float
    floor: float
    unit: str
    ratio: float | None
    verdict: str


def parse(text: str) -> dict[str, ParsedLine]:
    """The table lines in ``text`` by figure name (other lines are ignored)."""
    rows: dict[str, ParsedLine] = {}
    for raw in text.splitlines():
        found = _LINE.match(raw.rstrip())
        if found is None:
            continue
        ratio = found["ratio"]
        rows[found["name"]] = ParsedLine(
            name=found["name"],
            value=float(found["value"].replace(",", "")),
            floor=float(found["floor"].replace(",", "")),
            unit=found["unit"],
            ratio=None if ratio == "-" else float(ratio.rstrip("x")),
            verdict=found["verdict"],
        )
    return rows


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options every benchmark module shares."""
    parser.add_argument("--quick", action="store_true", help="a short run (smaller, noisier)")
    parser.add_argument(
        "--figures-out",
        type=Path,
        default=None,
        help="write the figures as JSON here instead of printing the table (the runner does)",
    )


def report(figures: Sequence[Figure], figures_out: Path | None) -> None:
    if figures_out is not None:
        figures_out.write_text(json.dumps([asdict(figure) for figure in figures]))
    else:
        print(render(figures), flush=True)


def read_figures(path: Path) -> list[Figure]:
    return [Figure(**item) for item in json.loads(path.read_text())]
