"""The local stack and the app's host for one benchmark: free ports, always stopped.

Reuses what tests and ``make run`` use: :class:`localdev.stack.LocalStack` for the stand-ins,
:class:`tests.fixtures.host.HostProcess` for the local Functions host (``--port 0``, its own
process group, SIGTERM then SIGKILL), and the app settings of the test fixtures (timers off, so
nothing runs on a schedule while a figure is measured). Everything started here stops when the
``with`` block ends, also on an exception, Ctrl-C or SIGTERM (:func:`stop_on_sigterm`).
"""

from __future__ import annotations

import os
import signal
import warnings
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from types import FrameType

from localdev.stack import LocalStack
from tests.fixtures.app import SAMPLE_SETTINGS, app_environment, timers_disabled
from tests.fixtures.host import REPO_ROOT, HostProcess


def stop_on_sigterm() -> None:
    """Turn SIGTERM into SystemExit so ``finally`` blocks stop what this process started."""

    def exit_cleanly(signum: int, frame: FrameType | None) -> None:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a second one must not cut the clean-up
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, exit_cleanly)


def quiet_local_tls_warnings() -> None:
    # The Cosmos stand-in's certificate is self-signed (loopback only).
    warnings.filterwarnings("ignore", message="Unverified HTTPS request")


@contextmanager
def running_stack(workdir: Path) -> Iterator[LocalStack]:
    """A provisioned stack on free ports, stopped when the block ends."""
    stack = LocalStack.start_on_free_ports(workdir)
    try:
        stack.provision()
        yield stack
    finally:
        stack.stop()


def configure_this_process(settings: Mapping[str, str]) -> None:
    """Make this process the app, talking to the services ``settings`` point at (settings are
    environment variables, as in the worker); cached settings, clients and services go."""
    from shared.process_state import reset_process_state

    os.environ.update(settings)
    reset_process_state()


class TimedHostProcess(HostProcess):
    """The local host with the app's handler time recorded (see benchmarks.timed_host)."""

    module = "benchmarks.timed_host"


@contextmanager
def running_host(
    stack: LocalStack,
    workdir: Path,
    *,
    env: Mapping[str, str] | None = None,
    timed: bool = False,
) -> Iterator[HostProcess]:
    """The app on the local host against ``stack``, publishing to the host's own local Event
    Grid topic (as ``make run`` does), with timers disabled."""
    host_class = TimedHostProcess if timed else HostProcess
    host = host_class(
        REPO_ROOT,
        workdir / "host.log",
        env={**app_environment(stack, None), **timers_disabled(), **(env or {})},
        args=["--settings", str(SAMPLE_SETTINGS)],
    )
    try:
        yield host.start()
    finally:
        host.stop()
