"""``<workdir>/stack.json``: which processes a running stack consists of, so that another shell can
inspect it (``status``) or stop it (``down``).

``pause`` / ``resume`` freeze and continue one recorded service (SIGSTOP / SIGCONT of its process
group): the fault a hung dependency is, a server that accepts connections and never answers.

``down`` signals only the recorded pids, and only while ``/proc/<pid>/cmdline`` still shows the
recorded command line: a pid reused by an unrelated process is never touched.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import time
from pathlib import Path
from typing import TypedDict

from localdev.stack.processes import (
    StackError,
    is_paused,
    is_same_process,
    signal_foreign_process_group,
    stop_foreign_process_group,
)

STATE_FILE_NAME = "stack.json"
OWNER_EXIT_TIMEOUT_SECONDS = 20.0


class RecordedProcess(TypedDict):
    pid: int
    cmdline: list[str]


class RecordedService(RecordedProcess):
    log: str


class RecordedOwner(RecordedProcess):
    stop_on_down: bool  # True for the foreground `up` command: `down` asks it to stop


class StackState(TypedDict):
    owner: RecordedOwner
    ports: dict[str, int]
    services: dict[str, RecordedService]
    provisioned: bool
    settings: dict[str, str]


def state_path(workdir: Path) -> Path:
    return workdir / STATE_FILE_NAME


def write_state(workdir: Path, state: StackState) -> None:
    path = state_path(workdir)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(".json.tmp")
    temporary.write_text(json.dumps(state, indent=2) + "\n", encoding="utf-8")
    temporary.replace(path)  # atomic: a concurrent `status` never reads half a file


def read_state(workdir: Path) -> StackState | None:
    try:
        raw = state_path(workdir).read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    state: StackState = json.loads(raw)
    return state


def remove_state(workdir: Path) -> None:
    state_path(workdir).unlink(missing_ok=True)


def running_services(state: StackState) -> dict[str, int]:
    """Recorded services that are still the processes the stack started: name -> pid."""
    return {
        name: service["pid"]
        for name, service in state["services"].items()
        if is_same_process(service["pid"], service["cmdline"])
    }


def stop_recorded_stack(workdir: Path) -> list[str]:
    """Stop the stack recorded in ``workdir``. Returns what was done, one line per action."""
    state = read_state(workdir)
    if state is None:
        return [f"no stack recorded in {state_path(workdir)}"]
    actions: list[str] = []
    owner = state["owner"]
    # Ask the foreground `up` command to stop first: it shuts its services down gracefully.
    if (
        owner["stop_on_down"]
        and owner["pid"] != os.getpid()
        and is_same_process(owner["pid"], owner["cmdline"])
    ):
        with contextlib.suppress(ProcessLookupError):
            os.kill(owner["pid"], signal.SIGTERM)
        deadline = time.monotonic() + OWNER_EXIT_TIMEOUT_SECONDS
        while time.monotonic() < deadline and is_same_process(owner["pid"], owner["cmdline"]):
            time.sleep(0.05)
        actions.append(f"asked the `up` process (pid {owner['pid']}) to stop")
    # Whatever is still running (the owner was killed, or is not a foreground command) is
    # stopped here, process group by process group.
    for name, service in state["services"].items():
        if stop_foreign_process_group(service["pid"], service["cmdline"]):
            actions.append(f"stopped {name} (pid {service['pid']})")
    remove_state(workdir)
    if not actions:
        actions.append("nothing was running")
    return actions


def _recorded_service(workdir: Path, name: str) -> RecordedService:
    state = read_state(workdir)
    if state is None:
        raise StackError(f"no stack recorded in {state_path(workdir)}")
    service = state["services"].get(name)
    if service is None or not is_same_process(service["pid"], service["cmdline"]):
        running = ", ".join(running_services(state)) or "none"
        raise StackError(f"{name} is not running in the stack in {workdir} (running: {running})")
    return service


def pause_recorded_service(workdir: Path, name: str) -> str:
    """Freeze ``name`` of the stack recorded in ``workdir`` (SIGSTOP to its process group)."""
    service = _recorded_service(workdir, name)
    if not signal_foreign_process_group(service["pid"], service["cmdline"], signal.SIGSTOP):
        raise StackError(f"{name} (pid {service['pid']}) could not be paused")
    _wait_for_pause_state(service["pid"], paused=True)
    return f"paused {name} (pid {service['pid']}); `resume {name}` continues it"


def resume_recorded_service(workdir: Path, name: str) -> str:
    """Continue ``name`` after :func:`pause_recorded_service` (SIGCONT; harmless if running)."""
    service = _recorded_service(workdir, name)
    if not signal_foreign_process_group(service["pid"], service["cmdline"], signal.SIGCONT):
        raise StackError(f"{name} (pid {service['pid']}) could not be resumed")
    _wait_for_pause_state(service["pid"], paused=False)
    return f"resumed {name} (pid {service['pid']})"


def _wait_for_pause_state(pid: int, *, paused: bool, timeout: float = 2.0) -> None:
    """Signals are delivered asynchronously: wait until the kernel shows the new state."""
    deadline = time.monotonic() + timeout
    while is_paused(pid) != paused and time.monotonic() < deadline:
        time.sleep(0.005)


def service_is_paused(service: RecordedService) -> bool:
    return is_paused(service["pid"])


# What each stand-in keeps in the work directory: blobs, queues and the host's blob receipts
# (Azurite), items (Cosmos), messages (broker), published storage events (Event Grid).
STAND_IN_DATA_DIRS = ("azurite", "cosmos", "servicebus", "eventgrid")


def reset_stack_data(workdir: Path) -> list[str]:
    """Forget what every stand-in stored in ``workdir``, all together, so the local state never
    contradicts itself (blob receipts without the orders they imported, messages for orders
    that no longer exist). Refused while a stack recorded there is running."""
    import shutil

    state = read_state(workdir)
    if state is not None and running_services(state):
        raise StackError(
            f"the stack recorded in {workdir} is running; stop it first "
            f"(python -m localdev.stack down --workdir {workdir})"
        )
    actions = []
    for name in STAND_IN_DATA_DIRS:
        path = workdir / name
        if path.exists():
            shutil.rmtree(path)
            actions.append(f"removed {path}")
    return actions or [f"nothing stored in {workdir}"]
