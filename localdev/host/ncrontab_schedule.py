"""NCRONTAB schedules (6 fields, seconds first) evaluated the way the Functions host does.

``shared.ncrontab`` says whether an expression is valid (the same strict subset the app's tests
enforce); this module turns a valid one into sets of allowed values and finds the next
occurrence. As in NCrontab, a time matches when *every* field matches (day of month and day of
week are combined with AND, unlike Vixie cron's OR). Times are UTC (``WEBSITE_TIME_ZONE`` is not
supported by the local host).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Final

from shared.ncrontab import NCRONTAB_FIELDS, CronField, ncrontab_problems

# A schedule that matches nothing within this horizon (``0 0 0 31 2 *``) never fires.
SEARCH_HORIZON: Final = timedelta(days=366 * 5)


class ScheduleError(ValueError):
    pass


def _values(text: str, spec: CronField) -> frozenset[int]:
    values: set[int] = set()
    for part in text.split(","):
        base, _, step_text = part.partition("/")
        step = int(step_text) if step_text else 1
        if base == "*":
            low, high = spec.minimum, spec.maximum
        else:
            bounds = [spec.value_of(token) for token in base.split("-")]
            numbers = [bound for bound in bounds if bound is not None]
            if len(numbers) != len(bounds):  # pragma: no cover - validated before
                raise ScheduleError(f"{spec.label}: '{part}'")
            low = numbers[0]
            # 'a-b' and 'a-b/n' end at b; 'a/n' runs to the field's maximum; 'a' is just a.
            high = numbers[-1] if len(numbers) > 1 else (spec.maximum if step_text else low)
        values.update(range(low, high + 1, step))
    return frozenset(values)


@dataclass(frozen=True)
class CronSchedule:
    expression: str
    seconds: frozenset[int]
    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]  # 0 = Sunday

    @classmethod
    def parse(cls, expression: str) -> CronSchedule:
        problems = ncrontab_problems(expression)
        if problems:
            raise ScheduleError("; ".join(problems))
        fields = [
            _values(text, spec)
            for text, spec in zip(expression.split(), NCRONTAB_FIELDS, strict=True)
        ]
        return cls(expression.strip(), *fields)

    def _day_matches(self, moment: datetime) -> bool:
        weekday = (moment.weekday() + 1) % 7  # Python: Monday 0; NCRONTAB: Sunday 0
        return moment.month in self.months and moment.day in self.days and weekday in self.weekdays

    def next_after(self, after: datetime) -> datetime | None:
        """The first occurrence strictly after ``after`` (UTC), or None within the horizon."""
        moment = after.astimezone(UTC).replace(microsecond=0) + timedelta(seconds=1)
        limit = moment + SEARCH_HORIZON
        while moment <= limit:
            if not self._day_matches(moment):
                moment = (moment + timedelta(days=1)).replace(hour=0, minute=0, second=0)
            elif moment.hour not in self.hours:
                moment = (moment + timedelta(hours=1)).replace(minute=0, second=0)
            elif moment.minute not in self.minutes:
                moment = (moment + timedelta(minutes=1)).replace(second=0)
            elif moment.second not in self.seconds:
                moment += timedelta(seconds=1)
            else:
                return moment
        return None
