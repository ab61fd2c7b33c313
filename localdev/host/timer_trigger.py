"""Timer trigger delivery: NCRONTAB schedules, the schedule monitor and past-due runs.

- Each enabled ``timerTrigger`` function gets its schedule from its binding; ``%NAME%`` is
  resolved from the app settings, as the host does. An invalid schedule (or a missing setting)
  is logged and that timer is not started; the rest of the host runs.
- With ``useMonitor`` on (the default) the schedule status lives where the Functions host keeps
  it, in ``AzureWebJobsStorage``: blob ``azure-webjobs-hosts/timers/<hostId>/Host.Functions.<name>
  /status`` holding ``{"Last", "Next", "LastUpdated"}``. At start-up a recorded ``Next`` that is
  already over means the host was stopped through an occurrence: the function runs once, at
  once, with ``IsPastDue`` true and the recorded status (whose ``Next`` is the missed time).
- Runs of one timer never overlap. When a run ends after the next occurrence(s) (the host was
  busy), the function runs once more at once with ``IsPastDue`` true, however many occurrences
  were missed, and the schedule continues from then.
- ``runOnStartup`` runs the function once when the host starts (the app keeps it off).
- The time source is injectable (:class:`Clock`), so tests control it.

The invocation gets a real ``azure.functions.TimerRequest`` decoded by the worker's converter
from the JSON the host sends (``{"Schedule", "ScheduleStatus", "IsPastDue"}``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar, Final, Protocol

from localdev.host.invoker import FunctionInvocationError, InvocationRequest
from localdev.host.loader import IndexedFunction
from localdev.host.ncrontab_schedule import CronSchedule, ScheduleError
from localdev.host.sources import DeliverySource, HostServices, register_delivery_source

TIMER_TRIGGER: Final = "timerTrigger"
HOSTS_CONTAINER: Final = "azure-webjobs-hosts"
STORAGE_SETTING: Final = "AzureWebJobsStorage"
HOST_ID_SETTING: Final = "AzureFunctionsWebHost__hostid"
# A run that starts later than this after its occurrence is past due (event loop hiccups are not).
PAST_DUE_TOLERANCE: Final = timedelta(seconds=1)
_SETTING_REFERENCE = re.compile(r"^%([A-Za-z_][A-Za-z0-9_:.]*)%$")
SCHEDULED_REASON: Final = "Timer fired at {at}"
PAST_DUE_REASON: Final = "Timer fired at {at} (past due: the occurrence at {missed} was missed)"
STARTUP_REASON: Final = "Timer fired at {at} (runOnStartup)"


class Clock(Protocol):
    def now(self) -> datetime: ...

    async def sleep_until(self, moment: datetime) -> None: ...


class SystemClock:
    # Sleep in slices, so a wall-clock jump (suspend, NTP) is noticed within a minute.
    MAX_SLICE_SECONDS: ClassVar[float] = 60.0

    def now(self) -> datetime:
        return datetime.now(UTC)

    async def sleep_until(self, moment: datetime) -> None:
        while (remaining := (moment - self.now()).total_seconds()) > 0:
            await asyncio.sleep(min(remaining, self.MAX_SLICE_SECONDS))


def _iso(moment: datetime | None) -> str:
    # The host writes .NET round-trip times; the year 1 default means "never".
    return (moment or datetime(1, 1, 1, tzinfo=UTC)).astimezone(UTC).isoformat()


def _parse(value: object) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return None if parsed.year <= 1 else parsed.astimezone(UTC)


@dataclass(frozen=True)
class ScheduleStatus:
    last: datetime | None
    next: datetime | None
    last_updated: datetime | None

    def to_json(self) -> dict[str, str]:
        return {
            "Last": _iso(self.last),
            "Next": _iso(self.next),
            "LastUpdated": _iso(self.last_updated),
        }

    @classmethod
    def from_json(cls, data: bytes) -> ScheduleStatus | None:
        try:
            document = json.loads(data)
        except (ValueError, UnicodeDecodeError):
            return None
        if not isinstance(document, dict):
            return None
        return cls(
            _parse(document.get("Last")),
            _parse(document.get("Next")),
            _parse(document.get("LastUpdated")),
        )


@dataclass(frozen=True)
class Fire:
    """One planned run: the occurrence it stands for, when to start it, and whether late."""

    occurrence: datetime
    at: datetime
    past_due: bool


def plan_first(schedule: CronSchedule, status: ScheduleStatus | None, now: datetime) -> Fire | None:
    """At start-up: a past-due run if the recorded next occurrence is over, else the next one."""
    if status is not None and status.next is not None and status.next < now - PAST_DUE_TOLERANCE:
        return Fire(status.next, now, past_due=True)
    upcoming = schedule.next_after(now)
    return None if upcoming is None else Fire(upcoming, upcoming, past_due=False)


def plan_next(schedule: CronSchedule, previous: Fire, finished: datetime) -> Fire | None:
    """After a run: the next occurrence, or one immediate past-due run if any were missed."""
    anchor = max(previous.occurrence, previous.at)
    upcoming = schedule.next_after(anchor)
    if upcoming is None:
        return None
    if upcoming < finished - PAST_DUE_TOLERANCE:
        return Fire(upcoming, finished, past_due=True)
    return Fire(upcoming, upcoming, past_due=False)


class StatusStore(Protocol):
    async def read(self, function_name: str) -> ScheduleStatus | None: ...

    async def write(self, function_name: str, status: ScheduleStatus) -> None: ...


class MemoryStatusStore:
    def __init__(self) -> None:
        self.statuses: dict[str, ScheduleStatus] = {}

    async def read(self, function_name: str) -> ScheduleStatus | None:
        return self.statuses.get(function_name)

    async def write(self, function_name: str, status: ScheduleStatus) -> None:
        self.statuses[function_name] = status


def status_blob_name(host_id: str, function_name: str) -> str:
    return f"timers/{host_id}/Host.Functions.{function_name}/status"


class BlobStatusStore:
    """Schedule status blobs in ``AzureWebJobsStorage`` (a connection string locally)."""

    def __init__(self, connection_string: str, host_id: str) -> None:
        from azure.storage.blob import BlobServiceClient

        self.host_id = host_id
        self._container = BlobServiceClient.from_connection_string(
            connection_string, connection_timeout=5, read_timeout=10, retry_total=2
        ).get_container_client(HOSTS_CONTAINER)
        self._created = False

    def _read(self, function_name: str) -> ScheduleStatus | None:
        from azure.core.exceptions import ResourceNotFoundError

        blob = self._container.get_blob_client(status_blob_name(self.host_id, function_name))
        try:
            return ScheduleStatus.from_json(blob.download_blob().readall())
        except ResourceNotFoundError:
            return None

    def _write(self, function_name: str, status: ScheduleStatus) -> None:
        from azure.core.exceptions import ResourceExistsError

        if not self._created:
            with contextlib.suppress(ResourceExistsError):
                self._container.create_container()
            self._created = True
        self._container.upload_blob(
            status_blob_name(self.host_id, function_name),
            json.dumps(status.to_json()).encode(),
            overwrite=True,
        )

    async def read(self, function_name: str) -> ScheduleStatus | None:
        return await asyncio.to_thread(self._read, function_name)

    async def write(self, function_name: str, status: ScheduleStatus) -> None:
        await asyncio.to_thread(self._write, function_name, status)

    def close(self) -> None:
        self._container.close()


def host_id_for(services: HostServices) -> str:
    """``AzureFunctionsWebHost__hostid`` if set, else derived from the app folder (<= 32)."""
    configured = services.environ.get(HOST_ID_SETTING, "").strip().lower()
    raw = configured or f"localdev-{services.app_dir.name}".lower()
    cleaned = re.sub(r"[^a-z0-9-]", "-", raw).strip("-")[:32]
    return cleaned or "localdev"


def resolve_schedule(binding: Mapping[str, Any], environ: Mapping[str, str]) -> CronSchedule:
    raw = str(binding.get("schedule") or "")
    reference = _SETTING_REFERENCE.match(raw.strip())
    if reference is not None:
        name = reference.group(1)
        value = environ.get(name)
        if not value:
            raise ScheduleError(f"the app setting {name} (schedule {raw}) is not set")
        raw = value
    return CronSchedule.parse(raw)


def timer_request_json(status: ScheduleStatus | None, past_due: bool) -> str:
    return json.dumps(
        {
            "Schedule": {"AdjustForDST": True},
            "ScheduleStatus": status.to_json() if status is not None else None,
            "IsPastDue": past_due,
        }
    )


def decode_timer_request(payload: str) -> Any:
    """A ``TimerRequest`` decoded by the worker's converter, as the worker would."""
    from azure.functions.meta import Datum
    from azure.functions.timer import TimerRequestConverter

    return TimerRequestConverter.decode(Datum(payload, "json"), trigger_metadata={})


@dataclass
class _Timer:
    function: IndexedFunction
    schedule: CronSchedule
    use_monitor: bool
    run_on_startup: bool
    status: ScheduleStatus | None = None


@register_delivery_source
class TimerTriggerSource(DeliverySource):
    trigger_type: ClassVar[str] = TIMER_TRIGGER
    # Tests and tools may replace these before the host starts.
    clock_factory: ClassVar[Callable[[], Clock]] = SystemClock

    def __init__(self, services: HostServices, functions: Sequence[IndexedFunction]) -> None:
        super().__init__(services, functions)
        self.clock: Clock = type(self).clock_factory()
        self.host_id = host_id_for(services)
        self._timers: dict[str, _Timer] = {}
        self._problems: dict[str, str] = {}
        for function in functions:
            if function.disabled:
                continue
            trigger = function.trigger
            try:
                schedule = resolve_schedule(trigger, services.environ)
            except ScheduleError as error:
                self._problems[function.name] = str(error)
                continue
            self._timers[function.name] = _Timer(
                function,
                schedule,
                use_monitor=trigger.get("useMonitor", True) is not False,
                run_on_startup=bool(trigger.get("runOnStartup", False)),
            )
        # Where schedule status is kept; None: AzureWebJobsStorage (tests may set their own).
        self.status_store: StatusStore | None = None
        self._store: StatusStore = MemoryStatusStore()
        self._tasks: list[asyncio.Task[None]] = []

    def describe(self, function: IndexedFunction) -> str:
        timer = self._timers.get(function.name)
        if timer is None:
            problem = self._problems.get(function.name, "disabled")
            return f"timerTrigger (not scheduled: {problem})"
        return f"timerTrigger ({timer.schedule.expression})"

    def _status_store(self) -> StatusStore:
        connection = self.services.environ.get(STORAGE_SETTING, "")
        if not any(timer.use_monitor for timer in self._timers.values()):
            return MemoryStatusStore()
        if not connection or "=" not in connection:
            self.services.logger.warning(
                "%s is not a connection string: timer schedule status is kept in memory, so "
                "occurrences missed while the host is stopped are not caught up",
                STORAGE_SETTING,
            )
            return MemoryStatusStore()
        return BlobStatusStore(connection, self.host_id)

    async def start(self) -> None:
        for name, problem in self._problems.items():
            self.services.logger.error(
                "The timer function '%s' is not scheduled: %s", name, problem
            )
        if not self._timers:
            return
        self._store = self.status_store or self._status_store()
        for timer in self._timers.values():
            if timer.use_monitor:
                timer.status = await self._read_status(timer)
            self._tasks.append(
                asyncio.create_task(self._run(timer), name=f"timer:{timer.function.name}")
            )

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks.clear()
        close = getattr(self._store, "close", None)
        if callable(close):
            close()

    async def _read_status(self, timer: _Timer) -> ScheduleStatus | None:
        try:
            return await self._store.read(timer.function.name)
        except Exception:
            self.services.logger.exception(
                "Reading the schedule status of '%s' failed", timer.function.name
            )
            return None

    async def _write_status(self, timer: _Timer, status: ScheduleStatus) -> None:
        timer.status = status
        if not timer.use_monitor:
            return
        try:
            await self._store.write(timer.function.name, status)
        except Exception:
            self.services.logger.exception(
                "Writing the schedule status of '%s' failed", timer.function.name
            )

    async def _run(self, timer: _Timer) -> None:
        name = timer.function.name
        now = self.clock.now()
        if timer.run_on_startup:
            await self._invoke(timer, past_due=False, reason=STARTUP_REASON.format(at=_iso(now)))
            now = self.clock.now()
        fire = plan_first(timer.schedule, timer.status if timer.use_monitor else None, now)
        while fire is not None:
            if not fire.past_due:
                await self._write_status(
                    timer, ScheduleStatus(_last_of(timer), fire.occurrence, self.clock.now())
                )
                await self.clock.sleep_until(fire.at)
            started = self.clock.now()
            if not fire.past_due and started - fire.occurrence > PAST_DUE_TOLERANCE:
                fire = Fire(fire.occurrence, started, past_due=True)  # the loop was held up
            if fire.past_due:
                reason = PAST_DUE_REASON.format(at=_iso(started), missed=_iso(fire.occurrence))
                self.services.logger.warning(
                    "Timer '%s' is past due: its occurrence at %s was missed",
                    name,
                    _iso(fire.occurrence),
                )
                # The status the function sees: Next is the occurrence that was missed.
                timer.status = ScheduleStatus(_last_of(timer), fire.occurrence, started)
            else:
                reason = SCHEDULED_REASON.format(at=_iso(started))
            await self._invoke(timer, past_due=fire.past_due, reason=reason)
            finished = self.clock.now()
            upcoming = plan_next(timer.schedule, fire, finished)
            await self._write_status(
                timer,
                ScheduleStatus(
                    fire.occurrence, upcoming.occurrence if upcoming else None, finished
                ),
            )
            fire = upcoming
        self.services.logger.warning("Timer '%s' has no further occurrences", name)

    def timer_input(self, function: IndexedFunction, past_due: bool = False) -> Any:
        timer = self._timers.get(function.name)
        return decode_timer_request(
            timer_request_json(timer.status if timer is not None else None, past_due)
        )

    async def _invoke(self, timer: _Timer, *, past_due: bool, reason: str) -> None:
        function = timer.function
        request = InvocationRequest(
            inputs={function.trigger_parameter: self.timer_input(function, past_due)},
            reason=reason,
        )
        try:
            await self.services.invoker.invoke(function, request)
        except FunctionInvocationError:
            pass  # logged by the invoker; a timer keeps its schedule after a failure
        except Exception:
            self.services.logger.exception("Timer '%s' could not be invoked", function.name)

    def on_demand_inputs(self, function: IndexedFunction, input_text: str) -> Mapping[str, Any]:
        """``POST /admin/functions/<name>``: the input text is ignored, as by the host."""
        return {function.trigger_parameter: self.timer_input(function, past_due=False)}


def _last_of(timer: _Timer) -> datetime | None:
    return timer.status.last if timer.status is not None else None
