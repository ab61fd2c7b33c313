"""Run the local stack from a shell.

python -m localdev.stack up [--workdir .localdev] [--ports standard|free]
    Start Azurite, the Cosmos stand-in, the Service Bus broker and the Event Grid stand-in,
    provision the app's resources, print the app settings (JSON, the ``Values`` of
    local.settings.json) and stay in the foreground until Ctrl+C / SIGTERM, then stop
    everything. Event Grid delivers to the Functions host on 7071 (``func start`` or
    ``python -m localdev.host``). Exits 1 if a service dies on its own.
python -m localdev.stack down [--workdir .localdev]
    Stop the stack recorded in the work directory (from another shell).
python -m localdev.stack status [--workdir .localdev]
    Show the recorded stack; exit code 0 only if every service is running.
python -m localdev.stack reset [--workdir .localdev]
    Forget what every stand-in stored (Azurite's blobs and queues, the Cosmos stand-in's items,
    the broker's messages, Event Grid's published events), all together; refused while the stack
    runs. The next `up` (or `make run`) starts empty.
python -m localdev.stack pause <service> [--workdir .localdev]
python -m localdev.stack resume <service> [--workdir .localdev]
    Freeze a service of the recorded stack (SIGSTOP: it accepts connections and never answers,
    like a hung dependency) and continue it again (SIGCONT). Services: azurite, cosmos,
    servicebus, eventgrid.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
import time
from pathlib import Path
from types import FrameType

from localdev.stack.processes import StackError
from localdev.stack.services import SERVICE_NAMES
from localdev.stack.stack import LocalStack, StackPorts
from localdev.stack.state import (
    pause_recorded_service,
    read_state,
    reset_stack_data,
    resume_recorded_service,
    running_services,
    service_is_paused,
    state_path,
    stop_recorded_stack,
)

READY_LINE = "stack ready; Ctrl+C or `python -m localdev.stack down` stops it"
_WATCH_SECONDS = 0.5


def _up(workdir: Path, ports_choice: str) -> int:
    ports = StackPorts.free() if ports_choice == "free" else StackPorts.standard()
    stop_requested = threading.Event()

    def request_stop(signum: int, _frame: FrameType | None) -> None:
        print(f"{signal.Signals(signum).name} received, stopping the stack", flush=True)
        stop_requested.set()

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)

    stack = LocalStack(ports, workdir, foreground=True)
    try:
        began = time.perf_counter()
        stack.start()
        stack.provision()
        elapsed = time.perf_counter() - began
        print(json.dumps(stack.app_settings(), indent=2))
        print(f"started and provisioned in {elapsed:.2f} s; logs in {stack.log_dir}")
        print(f"Event Grid delivers to the Functions host at {stack.functions_url}")
        print(READY_LINE, flush=True)
        # Wait for a signal, but notice a service that dies on its own.
        while not stop_requested.wait(_WATCH_SECONDS):
            running = stack.pids()
            crashed = [name for name in SERVICE_NAMES if name not in running]
            if crashed:
                print(
                    f"{', '.join(crashed)} stopped unexpectedly; see {stack.log_dir}",
                    file=sys.stderr,
                )
                return 1
        return 0
    finally:
        stack.stop()


def _down(workdir: Path) -> int:
    for action in stop_recorded_stack(workdir):
        print(action)
    return 0


def _reset(workdir: Path) -> int:
    for action in reset_stack_data(workdir):
        print(action)
    return 0


def _status(workdir: Path) -> int:
    state = read_state(workdir)
    if state is None:
        print(f"no stack recorded in {state_path(workdir)}")
        return 1
    alive = running_services(state)
    for name, service in state["services"].items():
        status = "not running"
        if name in alive:
            status = "paused" if service_is_paused(service) else "running"
        print(f"{name}: {status} (pid {service['pid']}, log {service['log']})")
    print("ports: " + ", ".join(f"{label} {port}" for label, port in state["ports"].items()))
    print(f"provisioned: {'yes' if state['provisioned'] else 'no'}")
    return 0 if state["services"] and len(alive) == len(state["services"]) else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m localdev.stack", description=__doc__)
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    commands = parser.add_subparsers(dest="command", required=True)
    for name in ("up", "down", "status", "reset", "pause", "resume"):
        command = commands.add_parser(name)
        command.add_argument("--workdir", type=Path, default=Path(".localdev"))
        if name == "up":
            command.add_argument("--ports", choices=("standard", "free"), default="standard")
        if name in ("pause", "resume"):
            command.add_argument("service", choices=SERVICE_NAMES)
    args = parser.parse_args(argv)
    workdir: Path = args.workdir.resolve()
    simple = {"down": _down, "reset": _reset, "status": _status}
    try:
        if args.command == "up":
            return _up(workdir, args.ports)
        if args.command in simple:
            return simple[args.command](workdir)
        if args.command == "pause":
            print(pause_recorded_service(workdir, args.service))
        else:
            print(resume_recorded_service(workdir, args.service))
        return 0
    except StackError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
