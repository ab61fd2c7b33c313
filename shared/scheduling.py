"""What a timer invocation knows about its schedule, without ``azure.functions``.

The Functions host passes a ``ScheduleStatus`` (``Last``, ``Next``, ``LastUpdated``, ISO 8601)
with each timer invocation when the schedule monitor is on; for a past-due run ``Next`` is the
occurrence that was missed. Values are parsed defensively: a missing or malformed status gives
``None``, never an exception in the timer.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any


def parse_instant(value: object) -> datetime | None:
    if not isinstance(value, str) or not 10 <= len(value) <= 40:
        return None
    try:
        parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def lateness(schedule_status: Mapping[str, Any] | None, now: datetime) -> timedelta | None:
    """How long after the missed occurrence (``ScheduleStatus.Next``) this run started."""
    if not isinstance(schedule_status, Mapping):
        return None
    missed = parse_instant(schedule_status.get("Next"))
    if missed is None:
        return None
    late = now - missed
    return late if late > timedelta(0) else timedelta(0)
