"""How late a past-due timer run is."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from shared.scheduling import lateness


def test_lateness_of_a_past_due_run() -> None:
    now = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)
    status = {"Last": "2026-11-21T11:00:00+00:00", "Next": "2026-11-21T11:05:00+00:00"}

    assert lateness(status, now) == timedelta(minutes=55)
    assert lateness({"Next": "2026-11-21T11:05:00Z"}, now) == timedelta(minutes=55)
    assert lateness({"Next": "soon"}, now) is None
    assert lateness({"Next": 12}, now) is None
    assert lateness(None, now) is None
    assert lateness({"Next": "2026-11-21T13:00:00+00:00"}, now) == timedelta(0)
