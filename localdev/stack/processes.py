"""Child processes of the local stack: start in their own session, log to a file, stop for sure.

Every service runs in its own process group (``start_new_session=True``) so that stopping it
reaches anything it spawned. Stopping sends SIGTERM to the group, waits a short grace period,
then SIGKILLs the group and reaps the child. Processes started by another Python process (a
stack brought ``up`` in another shell) are only ever signalled after their command line in
``/proc/<pid>/cmdline`` proved that they still are the processes that were recorded.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from pathlib import Path

STOP_GRACE_SECONDS = 5.0
_POLL_SECONDS = 0.05
_PR_SET_PDEATHSIG = 1


class StackError(RuntimeError):
    """The local stack cannot do what was asked; the message says what to do about it."""


class ServiceStartError(StackError):
    """A service did not become ready. Names the service and points at its log file."""

    def __init__(self, service: str, problem: str, log_path: Path) -> None:
        self.service = service
        self.log_path = log_path
        tail = log_tail(log_path)
        # Another process took the port between the free-port check and the service's bind.
        self.port_conflict = "EADDRINUSE" in tail
        details = f"\n--- last lines of {log_path} ---\n{tail}" if tail else ""
        super().__init__(f"{service} {problem}; see its log: {log_path}{details}")


def log_tail(path: Path, lines: int = 15) -> str:
    try:
        with path.open(encoding="utf-8", errors="replace") as log:
            return "".join(deque(log, maxlen=lines)).rstrip()
    except OSError:
        return ""


def free_ports(count: int) -> list[int]:
    """``count`` distinct ports that are free on 127.0.0.1 right now (all bound at once, so the
    kernel cannot hand out the same one twice)."""
    sockets = [socket.socket(socket.AF_INET, socket.SOCK_STREAM) for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def port_is_free(port: int) -> bool:
    """True if a server could listen on 127.0.0.1:port. SO_REUSEADDR as Node sets it, so sockets
    of earlier connections in TIME_WAIT do not count as "in use"."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def read_cmdline(pid: int) -> list[str] | None:
    """The command line of a live process, or None if it is gone (or a zombie, whose cmdline is
    empty)."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None
    if not raw:
        return None
    return raw.rstrip(b"\0").decode(errors="replace").split("\0")


def is_same_process(pid: int, cmdline: Sequence[str]) -> bool:
    """True if ``pid`` is alive and still runs exactly ``cmdline`` (guards against pid reuse)."""
    return read_cmdline(pid) == list(cmdline)


def stop_foreign_process_group(
    pid: int, cmdline: Sequence[str], grace: float = STOP_GRACE_SECONDS
) -> bool:
    """Stop a process group led by ``pid`` that another process started. Signals it only while
    ``pid`` still runs ``cmdline``. Returns True if it was ours and is gone now."""
    if not is_same_process(pid, cmdline):
        return False
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, grace)):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, sig)
            # A paused (SIGSTOPped) service would only see the SIGTERM once continued.
            os.killpg(pid, signal.SIGCONT)
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if not is_same_process(pid, cmdline):
                return True
            time.sleep(_POLL_SECONDS)
    return not is_same_process(pid, cmdline)


def is_paused(pid: int) -> bool:
    """True if ``pid`` is stopped by a signal (SIGSTOP): state ``T`` in ``/proc/<pid>/stat``."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="ascii", errors="replace")
    except OSError:
        return False
    # "pid (comm) state ...": comm may contain spaces or parentheses, so split at the last ")".
    fields = stat.rsplit(")", 1)[-1].split()
    return bool(fields) and fields[0] == "T"


def signal_foreign_process_group(pid: int, cmdline: Sequence[str], sig: signal.Signals) -> bool:
    """Send ``sig`` to the process group led by ``pid`` (started by another process), only while
    ``pid`` still runs ``cmdline``. Returns True if the signal was sent."""
    if not is_same_process(pid, cmdline):
        return False
    try:
        os.killpg(pid, sig)
    except ProcessLookupError:
        return False
    return True


def _die_with_parent_hook() -> Callable[[], None] | None:
    """A preexec hook asking Linux to SIGTERM the child when the thread that started it dies, so
    even a SIGKILLed test run leaves no service behind. prctl is looked up here, before the fork:
    the child only makes the call."""
    # PDEATHSIG is tied to the starting *thread*: only use it from the main thread, where it
    # means "the process that owns the stack".
    if sys.platform != "linux" or threading.current_thread() is not threading.main_thread():
        return None
    prctl = ctypes.CDLL(None, use_errno=True).prctl

    def die_with_parent() -> None:  # pragma: no cover - runs in the forked child
        prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)

    return die_with_parent


class ManagedProcess:
    """One service process: started in a new session with its output appended to a log file."""

    def __init__(self, name: str, argv: Sequence[str], log_path: Path) -> None:
        self.name = name
        self.argv = list(argv)
        self.log_path = log_path
        self._popen: subprocess.Popen[bytes] | None = None
        self._log_offset = 0

    @property
    def pid(self) -> int | None:
        return self._popen.pid if self._popen is not None else None

    def is_running(self) -> bool:
        return self._popen is not None and self._popen.poll() is None

    def exit_code(self) -> int | None:
        return self._popen.poll() if self._popen is not None else None

    def cmdline(self) -> list[str] | None:
        """The command line as the kernel reports it (what ``down`` later compares against)."""
        return read_cmdline(self._popen.pid) if self._popen is not None else None

    def output_since_start(self) -> str:
        """What the current run has written to the log (earlier runs' output excluded)."""
        try:
            with self.log_path.open("rb") as log:
                log.seek(self._log_offset)
                return log.read().decode(errors="replace")
        except OSError:
            return ""

    def start(self) -> None:
        if self.is_running():
            return
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        preexec = _die_with_parent_hook()
        with self.log_path.open("ab") as log:
            log.write(f"--- {time.strftime('%Y-%m-%d %H:%M:%S')} {' '.join(self.argv)}\n".encode())
            log.flush()
            self._log_offset = log.tell()
            self._popen = subprocess.Popen(
                self.argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=preexec,  # noqa: PLW1509 - it only calls prctl, no locks or imports
            )

    def signal_group(self, sig: signal.Signals) -> None:
        """Send ``sig`` to the service's process group (e.g. SIGSTOP / SIGCONT to freeze it)."""
        popen = self._popen
        if popen is None or popen.poll() is not None:
            raise StackError(f"{self.name} is not running")
        os.killpg(popen.pid, sig)

    def stop(self, grace: float = STOP_GRACE_SECONDS) -> None:
        """SIGTERM the process group, SIGKILL it after ``grace`` seconds, reap the child."""
        popen = self._popen
        if popen is None:
            return
        if popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(popen.pid, signal.SIGTERM)
                # A paused (SIGSTOPped) service would only see the SIGTERM once continued.
                os.killpg(popen.pid, signal.SIGCONT)
            try:
                popen.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(popen.pid, signal.SIGKILL)
                popen.wait(timeout=grace)
        self._popen = None
