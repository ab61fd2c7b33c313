"""NCRONTAB expressions: what the Functions host accepts and refuses."""

from __future__ import annotations

import pytest

from shared.ncrontab import ncrontab_problems

VALID_SCHEDULES = [
    "0 */5 * * * *",
    "0 30 1 * * *",
    "0 */15 * * * *",
    "*/10 * * * * *",
    "0 0 9-17 * * MON-FRI",
    "0 0 9-17/2 * * 1-5",
    "5,35 0 0 1,15 jan,Jul sun",
    "0 0 0 31 DECEMBER SATURDAY",
    "0 5/10 * * * *",
    "59 59 23 31 12 6",
    "  0  0  *  *  *  *  ",
]


INVALID_SCHEDULES = {
    "*/5 * * * *": "6: second minute hour",  # 5-field Unix cron: no seconds
    "0 */5 * * * * 2026": "has 7 fields",
    "": "has 0 fields",
    "00:05:00": "has 1 fields",  # TimeSpan form: App Service plans only, not Flex Consumption
    "60 * * * * *": "second: 60 is outside 0-59",
    "0 60 * * * *": "minute: 60 is outside 0-59",
    "0 0 24 * * *": "hour: 24 is outside 0-23",
    "0 0 0 0 * *": "day of month: 0 is outside 1-31",
    "0 0 0 32 * *": "day of month: 32 is outside 1-31",
    "0 0 0 * 13 *": "month: 13 is outside 1-12",
    "0 0 0 * 0 *": "month: 0 is outside 1-12",
    "0 0 0 * * 7": "day of week: 7 is outside 0-6",
    "0 0 0 * FOO *": "'FOO' is neither a number nor a month name",
    "0 0 0 * * MO": "'MO' is neither a number nor a day of week name",
    "0 */0 * * * *": "step in '*/0' must be at least 1",
    "0 30-10 * * * *": "range '30-10' is reversed",
    "0 0 0 L * *": "'L' is neither a number nor a day of month name",
    "0 0 0 ? * MON": "'?' is not *, n, a-b",
    "0 0 0 * * MON#2": "'MON#2' is not *, n, a-b",
    "0 1,,2 * * * *": "empty list item",
    "0 -5 * * * *": "'-5' is not *, n, a-b",
    "0 1-2-3 * * * *": "'1-2-3' is not *, n, a-b",
    "0 */5/2 * * * *": "'*/5/2' is not *, n, a-b",
}


@pytest.mark.parametrize("expression", VALID_SCHEDULES)
def test_valid_ncrontab_is_accepted(expression: str) -> None:
    assert ncrontab_problems(expression) == []


@pytest.mark.parametrize(("expression", "reason"), INVALID_SCHEDULES.items(), ids=INVALID_SCHEDULES)
def test_invalid_ncrontab_is_rejected(expression: str, reason: str) -> None:
    problems = ncrontab_problems(expression)

    assert any(reason in problem for problem in problems), problems
