"""The local host's timer delivery with a controlled clock: NCRONTAB occurrences, the schedule
monitor, and past-due runs (stopped through an occurrence, or busy past the next ones)."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from localdev.host.invoker import InvocationRequest
from localdev.host.loader import IndexedFunction
from localdev.host.ncrontab_schedule import CronSchedule, ScheduleError
from localdev.host.settings import read_host_json
from localdev.host.sources import HostServices
from localdev.host.timer_trigger import (
    Fire,
    MemoryStatusStore,
    ScheduleStatus,
    TimerTriggerSource,
    plan_first,
    plan_next,
    resolve_schedule,
    status_blob_name,
)

T0 = datetime(2026, 11, 21, 11, 52, 13, 250_000, tzinfo=UTC)


@pytest.mark.parametrize(
    ("expression", "after", "expected"),
    [
        ("0 */5 * * * *", T0, datetime(2026, 11, 21, 11, 55, tzinfo=UTC)),
        ("0 30 1 * * *", T0, datetime(2026, 11, 22, 1, 30, tzinfo=UTC)),
        ("0 */15 * * * *", T0, datetime(2026, 11, 21, 12, 0, tzinfo=UTC)),
        ("30 * * * * *", T0, datetime(2026, 11, 21, 11, 52, 30, tzinfo=UTC)),
        ("* * * * * *", T0, datetime(2026, 11, 21, 11, 52, 14, tzinfo=UTC)),
        ("0 5/10 * * * *", T0, datetime(2026, 11, 21, 11, 55, tzinfo=UTC)),
        # 2026-11-21 is a Saturday: the next weekday 09:00 is Monday.
        ("0 0 9-17/2 * * MON-FRI", T0, datetime(2026, 11, 23, 9, 0, tzinfo=UTC)),
        ("0 0 0 29 FEB *", T0, datetime(2028, 2, 29, tzinfo=UTC)),
        # Day of month AND day of week (NCrontab), not OR: the next Friday the 13th.
        ("0 0 12 13 * FRI", T0, datetime(2027, 8, 13, 12, tzinfo=UTC)),
        # Strictly after: an exact occurrence gives the following one.
        (
            "0 */5 * * * *",
            datetime(2026, 1, 1, 0, 5, tzinfo=UTC),
            datetime(2026, 1, 1, 0, 10, tzinfo=UTC),
        ),
        ("59 59 23 31 12 *", T0, datetime(2026, 12, 31, 23, 59, 59, tzinfo=UTC)),
    ],
)
def test_next_occurrence(expression: str, after: datetime, expected: datetime) -> None:
    assert CronSchedule.parse(expression).next_after(after) == expected


def test_impossible_and_invalid_schedules() -> None:
    assert CronSchedule.parse("0 0 0 31 2 *").next_after(T0) is None
    with pytest.raises(ScheduleError, match="needs 6"):
        CronSchedule.parse("*/5 * * * *")
    with pytest.raises(ScheduleError, match="not set"):
        resolve_schedule({"schedule": "%MISSING%"}, {})
    assert resolve_schedule({"schedule": "%S%"}, {"S": "0 0 * * * *"}).expression == "0 0 * * * *"


EVERY_5_MIN = CronSchedule.parse("0 */5 * * * *")


def test_plan_without_status_waits_for_the_next_occurrence() -> None:
    fire = plan_first(EVERY_5_MIN, None, T0)
    assert fire == Fire(
        datetime(2026, 11, 21, 11, 55, tzinfo=UTC),
        datetime(2026, 11, 21, 11, 55, tzinfo=UTC),
        False,
    )


def test_plan_after_downtime_runs_once_past_due() -> None:
    missed = T0 - timedelta(hours=3)  # 36 occurrences were missed
    status = ScheduleStatus(missed - timedelta(minutes=5), missed, missed - timedelta(minutes=5))

    fire = plan_first(EVERY_5_MIN, status, T0)

    assert fire == Fire(missed, T0, past_due=True)
    following = plan_next(EVERY_5_MIN, fire, T0 + timedelta(seconds=2))
    assert following == Fire(
        datetime(2026, 11, 21, 11, 55, tzinfo=UTC),
        datetime(2026, 11, 21, 11, 55, tzinfo=UTC),
        False,
    )


def test_plan_when_busy_runs_once_past_due_then_back_on_schedule() -> None:
    started = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)
    fire = Fire(started, started, past_due=False)
    busy_until = started + timedelta(minutes=17, seconds=3)  # missed 12:05, 12:10, 12:15

    late = plan_next(EVERY_5_MIN, fire, busy_until)

    assert late == Fire(datetime(2026, 11, 21, 12, 5, tzinfo=UTC), busy_until, past_due=True)
    assert plan_next(EVERY_5_MIN, late, busy_until + timedelta(seconds=1)) == Fire(
        datetime(2026, 11, 21, 12, 20, tzinfo=UTC),
        datetime(2026, 11, 21, 12, 20, tzinfo=UTC),
        False,
    )


def test_status_round_trip_and_hostile_blobs() -> None:
    status = ScheduleStatus(T0, T0 + timedelta(minutes=5), T0)
    assert ScheduleStatus.from_json(__import__("json").dumps(status.to_json()).encode()) == status
    assert ScheduleStatus.from_json(b"\xff\xfe") is None
    assert ScheduleStatus.from_json(b"[1, 2]") is None
    assert ScheduleStatus.from_json(b'{"Next": 5, "Last": "yesterday"}') == ScheduleStatus(
        None, None, None
    )
    never = ScheduleStatus.from_json(b'{"Last": "0001-01-01T00:00:00+00:00"}')
    assert never is not None
    assert never.last is None
    assert status_blob_name("myhost", "expire_unpaid_orders") == (
        "timers/myhost/Host.Functions.expire_unpaid_orders/status"
    )


class ControlledClock:
    """Virtual time: sleeping jumps the clock forward at once."""

    def __init__(self, now: datetime) -> None:
        self.current = now

    def now(self) -> datetime:
        return self.current

    async def sleep_until(self, moment: datetime) -> None:
        self.current = max(self.current, moment)
        await asyncio.sleep(0)


@dataclass
class Run:
    at: datetime
    past_due: bool
    status: dict[str, Any]


class RecordingInvoker:
    """Stands in for the invoker: records each run and can keep the "function" busy."""

    def __init__(self, clock: ControlledClock, stop_after: int, busy: dict[int, timedelta]) -> None:
        self.clock = clock
        self.runs: list[Run] = []
        self.stop_after = stop_after
        self.busy = busy
        self.done = asyncio.Event()

    async def invoke(self, function: IndexedFunction, request: InvocationRequest) -> None:
        timer = request.inputs[function.trigger_parameter]
        self.runs.append(Run(self.clock.now(), timer.past_due, dict(timer.schedule_status)))
        self.clock.current += self.busy.get(len(self.runs), timedelta(0))
        if len(self.runs) >= self.stop_after:
            self.done.set()
            await asyncio.sleep(3600)  # parked until the source is stopped


def timer_function(schedule: str = "%TIMER_SCHEDULE%", **options: Any) -> IndexedFunction:
    binding = {"type": "timerTrigger", "direction": "in", "name": "timer", "schedule": schedule}
    binding.update(options)
    return IndexedFunction(name="sweep", bindings=(binding,), info=None)


async def run_source(
    tmp_path: Path,
    *,
    clock: ControlledClock,
    runs: int,
    busy: dict[int, timedelta] | None = None,
    store: MemoryStatusStore | None = None,
    function: IndexedFunction | None = None,
) -> list[Run]:
    invoker = RecordingInvoker(clock, runs, busy or {})
    services = HostServices(
        invoker=invoker,  # type: ignore[arg-type]
        app_dir=tmp_path,
        host_json=read_host_json(tmp_path),
        environ={"TIMER_SCHEDULE": "0 */5 * * * *"},
        base_url="http://127.0.0.1:0",
        logger=logging.getLogger("test.timers"),
    )
    source = TimerTriggerSource(services, [function or timer_function()])
    source.clock = clock
    source.status_store = store or MemoryStatusStore()
    await source.start()
    try:
        await asyncio.wait_for(invoker.done.wait(), timeout=5)
    finally:
        await source.stop()
    return invoker.runs


def test_fires_on_schedule_and_records_status(tmp_path: Path) -> None:
    clock = ControlledClock(T0)
    store = MemoryStatusStore()

    runs = asyncio.run(run_source(tmp_path, clock=clock, runs=3, store=store))

    assert [(r.at, r.past_due) for r in runs] == [
        (datetime(2026, 11, 21, 11, 55, tzinfo=UTC), False),
        (datetime(2026, 11, 21, 12, 0, tzinfo=UTC), False),
        (datetime(2026, 11, 21, 12, 5, tzinfo=UTC), False),
    ]
    assert runs[1].status["Last"] == "2026-11-21T11:55:00+00:00"
    assert runs[1].status["Next"] == "2026-11-21T12:00:00+00:00"
    saved = store.statuses["sweep"]
    assert (saved.last, saved.next) == (
        datetime(2026, 11, 21, 12, 0, tzinfo=UTC),
        datetime(2026, 11, 21, 12, 5, tzinfo=UTC),
    )


def test_stopped_through_occurrences_runs_once_past_due(tmp_path: Path) -> None:
    missed = datetime(2026, 11, 21, 8, 0, tzinfo=UTC)
    store = MemoryStatusStore()
    store.statuses["sweep"] = ScheduleStatus(missed - timedelta(minutes=5), missed, missed)
    clock = ControlledClock(T0)

    runs = asyncio.run(run_source(tmp_path, clock=clock, runs=3, store=store))

    assert [(r.at, r.past_due) for r in runs] == [
        (T0, True),  # at start-up, once for the 47 missed occurrences
        (datetime(2026, 11, 21, 11, 55, tzinfo=UTC), False),
        (datetime(2026, 11, 21, 12, 0, tzinfo=UTC), False),
    ]
    assert runs[0].status["Next"] == "2026-11-21T08:00:00+00:00", "Next is the missed occurrence"


def test_busy_through_occurrences_runs_once_past_due(tmp_path: Path) -> None:
    clock = ControlledClock(T0)

    runs = asyncio.run(
        run_source(tmp_path, clock=clock, runs=4, busy={1: timedelta(minutes=12, seconds=30)})
    )

    assert [(r.at, r.past_due) for r in runs] == [
        (datetime(2026, 11, 21, 11, 55, tzinfo=UTC), False),
        (datetime(2026, 11, 21, 12, 7, 30, tzinfo=UTC), True),  # 12:00 and 12:05 missed: once
        (datetime(2026, 11, 21, 12, 10, tzinfo=UTC), False),
        (datetime(2026, 11, 21, 12, 15, tzinfo=UTC), False),
    ]
    assert runs[1].status["Next"] == "2026-11-21T12:00:00+00:00"


def test_without_monitor_a_recorded_status_is_ignored(tmp_path: Path) -> None:
    store = MemoryStatusStore()
    store.statuses["sweep"] = ScheduleStatus(None, T0 - timedelta(hours=1), None)
    clock = ControlledClock(T0)

    runs = asyncio.run(
        run_source(
            tmp_path, clock=clock, runs=1, store=store, function=timer_function(useMonitor=False)
        )
    )

    assert [(r.at, r.past_due) for r in runs] == [
        (datetime(2026, 11, 21, 11, 55, tzinfo=UTC), False)
    ]


def test_run_on_startup_runs_first(tmp_path: Path) -> None:
    clock = ControlledClock(T0)

    runs = asyncio.run(
        run_source(tmp_path, clock=clock, runs=2, function=timer_function(runOnStartup=True))
    )

    assert [(r.at, r.past_due) for r in runs] == [
        (T0, False),
        (datetime(2026, 11, 21, 11, 55, tzinfo=UTC), False),
    ]
