"""NCRONTAB (Azure Functions timer schedules): 6 fields, seconds first.

Nothing below the Functions host validates a schedule: a bad one deploys fine and then the
timer never loads. Settings and tests check schedules with :func:`ncrontab_problems`.

It accepts a strict subset of what NCrontab parses: per field ``*``, ``n``, ``a-b``, ``*/n``,
``a-b/n``, ``a/n`` and comma lists of those, month and weekday names as three-letter
abbreviations or full English names (any case). Where NCrontab silently accepts a likely mistake
(step 0 means every value, a reversed range is swapped) it is rejected here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class CronField:
    label: str
    minimum: int
    maximum: int
    names: tuple[str, ...] = ()

    def value_of(self, token: str) -> int | None:
        if token.isdigit():
            return int(token)
        folded = token.upper()
        for offset, name in enumerate(self.names):
            if folded in (name, name[:3]):
                return self.minimum + offset
        return None


NCRONTAB_FIELDS = (
    CronField("second", 0, 59),
    CronField("minute", 0, 59),
    CronField("hour", 0, 23),
    CronField("day of month", 1, 31),
    CronField(
        "month",
        1,
        12,
        (
            "JANUARY",
            "FEBRUARY",
            "MARCH",
            "APRIL",
            "MAY",
            "JUNE",
            "JULY",
            "AUGUST",
            "SEPTEMBER",
            "OCTOBER",
            "NOVEMBER",
            "DECEMBER",
        ),
    ),
    CronField(
        "day of week",
        0,
        6,
        ("SUNDAY", "MONDAY", "TUESDAY", "WEDNESDAY", "THURSDAY", "FRIDAY", "SATURDAY"),
    ),
)
_PART = re.compile(r"^(?P<base>\*|[A-Za-z0-9]+(?:-[A-Za-z0-9]+)?)(?:/(?P<step>\d+))?$")


def _part_problem(part: str, spec: CronField) -> str | None:
    match = _PART.match(part)
    if match is None:
        return f"{spec.label}: '{part}' is not *, n, a-b or one of those with /step"
    if match["step"] is not None and int(match["step"]) < 1:
        return f"{spec.label}: step in '{part}' must be at least 1"
    if match["base"] == "*":
        return None
    return _values_problem(match["base"], spec)


def _values_problem(single_or_range: str, spec: CronField) -> str | None:
    values = []
    for token in single_or_range.split("-"):
        value = spec.value_of(token)
        if value is None:
            return f"{spec.label}: '{token}' is neither a number nor a {spec.label} name"
        if not spec.minimum <= value <= spec.maximum:
            return f"{spec.label}: {value} is outside {spec.minimum}-{spec.maximum}"
        values.append(value)
    if values != sorted(values):
        return f"{spec.label}: range '{single_or_range}' is reversed"
    return None


def ncrontab_problems(expression: str) -> list[str]:
    """Why ``expression`` is not a valid 6-field NCRONTAB schedule (empty list when it is)."""
    fields = expression.split()
    if len(fields) != len(NCRONTAB_FIELDS):
        return [
            f"'{expression}' has {len(fields)} fields; NCRONTAB needs 6: "
            "second minute hour day-of-month month day-of-week"
        ]
    problems = []
    for text, spec in zip(fields, NCRONTAB_FIELDS, strict=True):
        parts = text.split(",")
        if "" in parts:
            problems.append(f"{spec.label}: '{text}' has an empty list item")
            continue
        problems.extend(p for part in parts if (p := _part_problem(part, spec)) is not None)
    return problems
