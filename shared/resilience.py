"""Deadlines, circuit breakers and bulkheads: every outbound call bounded in time, a hung
dependency short-circuited, and no dependency able to take all of the worker's threads.

- **Deadline**: each invocation runs inside :func:`deadline` (HTTP: ``HTTP_DEADLINE_SECONDS``;
  the other triggers: :data:`TRIGGER_BUDGET_SECONDS`). Every attempt of every outbound call gets
  what is left of it as its timeout (:func:`call_timeout`); an attempt that would start with
  less than :data:`MIN_ATTEMPT_SECONDS` left raises :class:`DeadlineExceededError` instead, which
  no SDK retry policy retries (it is not an ``AzureError``), so retries happen only while time
  remains. The deadline is a ``ContextVar``: it follows the invocation's thread and nothing else.
- **Circuit breaker** (per dependency): after :data:`FAILURE_THRESHOLD` consecutive timeouts
  the circuit opens and calls fail at once with :class:`CircuitOpenError` (503 + Retry-After)
  for :data:`OPEN_SECONDS`; then one probe, with a timeout of at most
  :data:`PROBE_TIMEOUT_SECONDS`: a cheap request of its own on a thread of its own when the
  dependency has a :attr:`Dependency.prober` (the guarded transport gives one), so callers
  keep failing fast meanwhile, else the next call; its success closes the circuit, its timeout
  opens it again. Any answer from the dependency (whatever its status) counts as a success:
  throttling and errors are the SDKs' and the services' business, only silence trips the
  breaker.
- **Bulkhead** (per dependency): at most :func:`bulkhead_slots` attempts in flight at once
  (``BULKHEAD_THREAD_SHARE`` of the worker's threads); the rest stay free for liveness,
  OpenAPI and other dependencies. A caller finding every slot taken waits for one only while
  the dependency is moving (its oldest call is younger than :data:`STALL_SECONDS`); when it is
  stuck, the caller fails at once with :class:`BulkheadFullError`, since a thread waiting for
  a slot is a thread lost as well.

Why not a library: pybreaker (threads) lets every concurrent caller through while half-open
and classifies outcomes by the exceptions of a wrapped call, where here the outcome is seen in
the transport beneath the SDKs' retry policies; purgatory and aiobreaker are asyncio-only; none
has a bulkhead. What is needed is about a hundred lines (docs/RELIABILITY.md).

This module imports no SDK: :mod:`shared.clients` plugs it in as an azure-core transport
(:class:`GuardedTransport`) for Cosmos DB, Storage, Key Vault and Event Grid; the Service Bus
sender uses :func:`call_timeout` for its AMQP sends.
"""

from __future__ import annotations

import math
import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, Final, Literal

from shared.errors import BulkheadFullError, CircuitOpenError, DeadlineExceededError

DEFAULT_HTTP_DEADLINE_SECONDS: Final = 8.0
# Left at the end of an HTTP deadline for answering (the 503 itself, logs).
RESPONSE_RESERVE_SECONDS: Final = 0.15
MIN_ATTEMPT_SECONDS: Final = 0.05

FAILURE_THRESHOLD: Final = 3
OPEN_SECONDS: Final = 1.0
PROBE_TIMEOUT_SECONDS: Final = 1.0
STALL_SECONDS: Final = 0.5
DEFAULT_BULKHEAD_THREAD_SHARE: Final = 0.67

# Budgets of the triggers other than HTTP, each below the time after which the platform gives
# the message or event to someone else (docs/RELIABILITY.md, "Deadlines"):
TRIGGER_BUDGET_SECONDS: Final[dict[str, float]] = {
    # Service Bus peek-lock: 60 s in Azure (30 s locally), renewed while the function runs.
    "serviceBus": 20.0,
    # Event Grid waits 30 s for the answer, then delivers again.
    "eventGrid": 10.0,
    # Storage queue: the message stays invisible 10 minutes, renewed while the function runs.
    "queue": 120.0,
    # Blob trigger: streams the whole file; the host's functionTimeout is 10 minutes.
    "blob": 300.0,
    # Timers: each run must end before the next occurrence (the shortest schedule is 5 min).
    "timer": 240.0,
}

CircuitState = Literal["closed", "open", "half_open"]
# What a background probe saw: any answer, silence, or a refused or reset connection.
ProbeOutcome = Literal["answered", "timeout", "unreachable"]

_deadline: ContextVar[float | None] = ContextVar("orderflow_deadline", default=None)


@contextmanager
def deadline(seconds: float | None) -> Iterator[None]:
    """Run the block with a deadline ``seconds`` from now (an enclosing, earlier one wins)."""
    if seconds is None:
        yield
        return
    ends = time.monotonic() + seconds
    current = _deadline.get()
    token = _deadline.set(ends if current is None else min(current, ends))
    try:
        yield
    finally:
        _deadline.reset(token)


def remaining() -> float | None:
    """Seconds left of the current invocation's deadline (None: no deadline)."""
    ends = _deadline.get()
    return None if ends is None else ends - time.monotonic()


def call_timeout(cap: float, dependency: str) -> float:
    """The timeout for one attempt of a call: ``cap``, or less when the deadline is nearer.
    Raises :class:`DeadlineExceededError` when too little time is left to try."""
    left = remaining()
    if left is None:
        return cap
    left -= RESPONSE_RESERVE_SECONDS
    if left < MIN_ATTEMPT_SECONDS:
        raise DeadlineExceededError(dependency)
    return min(cap, left)


def worker_threads() -> int:
    """The worker's thread count: ``PYTHON_THREADPOOL_THREAD_COUNT`` or Python's default."""
    raw = os.environ.get("PYTHON_THREADPOOL_THREAD_COUNT", "")
    if raw.isdigit() and int(raw) > 0:
        return int(raw)
    return min(32, (os.cpu_count() or 1) + 4)


def bulkhead_slots(share: float | None = None) -> int:
    """Concurrent calls one dependency may have: ``BULKHEAD_THREAD_SHARE`` (default 0.67) of
    the worker's threads, rounded down (4 of 6 on a 2-core instance), at least one and always
    one fewer than the worker has, so a hung dependency never holds every thread."""
    threads = worker_threads()
    if threads <= 1:
        return 1
    share = _bulkhead_share() if share is None else share
    return max(1, min(threads - 1, math.floor(threads * share + 1e-9)))


def _bulkhead_share() -> float:
    from shared.config import get_settings
    from shared.errors import ConfigurationError

    try:
        return get_settings().bulkhead_thread_share
    except ConfigurationError:
        return DEFAULT_BULKHEAD_THREAD_SHARE  # the handler reports the bad setting


class CircuitBreaker:
    """Consecutive-timeout circuit breaker with a single half-open probe. Thread-safe."""

    def __init__(
        self,
        name: str,
        *,
        failure_threshold: int = FAILURE_THRESHOLD,
        open_seconds: float = OPEN_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.name = name
        self.failure_threshold = failure_threshold
        self.open_seconds = open_seconds
        self._clock = clock
        self._lock = threading.Lock()
        self._state: CircuitState = "closed"
        self._failures = 0
        self._opened_at = 0.0
        self._probing = False
        self.times_opened = 0

    @property
    def state(self) -> CircuitState:
        with self._lock:
            if self._state == "open" and self._clock() - self._opened_at >= self.open_seconds:
                return "half_open"
            return self._state

    def admit(self) -> bool:
        """Let a call through (returns True when it is the half-open probe) or raise
        :class:`CircuitOpenError`."""
        with self._lock:
            if self._state == "closed":
                return False
            now = self._clock()
            if self._state == "open" and now - self._opened_at >= self.open_seconds:
                self._state = "half_open"
            if self._state == "half_open" and not self._probing:
                self._probing = True
                return True
            wait = self.open_seconds - (now - self._opened_at)
            raise CircuitOpenError(self.name, max(1, math.ceil(wait)))

    def record_success(self, probe: bool) -> None:
        with self._lock:
            self._failures = 0
            if probe or self._state != "closed":
                self._state = "closed"
                self._probing = False

    def record_timeout(self, probe: bool) -> None:
        with self._lock:
            self._failures += 1
            if probe or (self._state == "closed" and self._failures >= self.failure_threshold):
                self._open()

    def record_unreachable(self, probe: bool) -> None:
        """Connection refused or reset: fails fast by itself, so it does not count; a probe
        that gets it keeps the circuit open."""
        with self._lock:
            if probe:
                self._open()

    def release_probe(self, probe: bool) -> None:
        """The admitted call never reached the dependency (deadline, bulkhead, a bug)."""
        if probe:
            with self._lock:
                self._probing = False

    def _open(self) -> None:
        if self._state != "open":
            self.times_opened += 1
        self._state = "open"
        self._opened_at = self._clock()
        self._probing = False


class Bulkhead:
    """At most ``slots`` calls in flight; waits for a slot only while calls are completing."""

    def __init__(
        self,
        name: str,
        slots: int,
        *,
        stall_seconds: float = STALL_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.name = name
        self.slots = slots
        self.stall_seconds = stall_seconds
        self._clock = clock
        self._condition = threading.Condition()
        self._started: dict[int, float] = {}
        self._next = 0
        self.rejected = 0

    @property
    def in_use(self) -> int:
        with self._condition:
            return len(self._started)

    def acquire(self, wait_limit: float) -> int:
        """A slot token for :meth:`release`, or :class:`BulkheadFullError`."""
        with self._condition:
            give_up = self._clock() + max(0.0, wait_limit)
            while len(self._started) >= self.slots:
                now = self._clock()
                stuck_at = min(self._started.values()) + self.stall_seconds
                if now >= stuck_at or now >= give_up:
                    self.rejected += 1
                    raise BulkheadFullError(self.name)
                self._condition.wait(min(stuck_at, give_up) - now)
            self._next += 1
            self._started[self._next] = self._clock()
            return self._next

    def release(self, token: int) -> None:
        with self._condition:
            self._started.pop(token, None)
            self._condition.notify()


@dataclass
class Dependency:
    """The breaker and the bulkhead of one dependency (``cosmos``, ``storage``, ...)."""

    name: str
    breaker: CircuitBreaker
    bulkhead: Bulkhead
    # A cheap request to the dependency (its transport sets it: a GET of the endpoint's root,
    # where any answer, even a 401, shows it is back). With one, the half-open probe runs on a
    # thread of its own and every caller fails fast meanwhile: no request of a client waits
    # the probe's timeout, which at one probe a second is the p99 of a busy route.
    prober: Callable[[float], ProbeOutcome] | None = None

    def call[T](
        self,
        attempt: Callable[[float], T],
        *,
        cap: float,
        is_timeout: Callable[[BaseException], bool],
        is_unreachable: Callable[[BaseException], bool],
    ) -> T:
        """Run one attempt ``attempt(timeout)`` under the breaker, the bulkhead and the
        deadline. ``is_timeout`` / ``is_unreachable`` classify what it raised."""
        probe = self.breaker.admit()
        prober = self.prober
        if probe and prober is not None:
            self._probe_in_background(prober)
            raise CircuitOpenError(self.breaker.name, max(1, math.ceil(PROBE_TIMEOUT_SECONDS)))
        token: int | None = None
        try:
            timeout = call_timeout(
                min(cap, PROBE_TIMEOUT_SECONDS) if probe else cap, self.breaker.name
            )
            token = self.bulkhead.acquire(wait_limit=timeout)
            result = attempt(timeout)
        except BaseException as error:
            if token is not None and is_timeout(error):
                self.breaker.record_timeout(probe)
            elif token is not None and is_unreachable(error):
                self.breaker.record_unreachable(probe)
            else:
                self.breaker.release_probe(probe)
            raise
        finally:
            if token is not None:
                self.bulkhead.release(token)
        self.breaker.record_success(probe)
        return result

    def _probe_in_background(self, prober: Callable[[float], ProbeOutcome]) -> None:
        breaker = self.breaker

        def probe() -> None:
            try:
                outcome = prober(PROBE_TIMEOUT_SECONDS)
            except Exception:  # a bug or a closed client: the next caller probes again
                breaker.release_probe(probe=True)
                return
            if outcome == "answered":
                breaker.record_success(probe=True)
            elif outcome == "timeout":
                breaker.record_timeout(probe=True)
            else:
                breaker.record_unreachable(probe=True)

        threading.Thread(target=probe, name=f"probe-{self.name}", daemon=True).start()

    def status(self) -> dict[str, Any]:
        return {
            "circuit": self.breaker.state,
            "inFlight": self.bulkhead.in_use,
            "slots": self.bulkhead.slots,
        }


# Internal name -> the name errors and logs use (as in DependencyUnavailableError).
DEPENDENCY_NAMES: Final[dict[str, str]] = {
    "cosmos": "Cosmos DB",
    "storage": "Storage",
    "keyVault": "Key Vault",
    "eventGrid": "Event Grid",
    "serviceBus": "Service Bus",
    "identity": "identity provider",  # the token issuer's discovery and JWKS (shared.auth)
}

_dependencies: dict[str, Dependency] = {}
_registry_lock = threading.Lock()


def dependency(name: str) -> Dependency:
    """The process-wide breaker and bulkhead of ``name``."""
    found = _dependencies.get(name)
    if found is None:
        with _registry_lock:
            found = _dependencies.get(name)
            if found is None:
                label = DEPENDENCY_NAMES.get(name, name)
                found = Dependency(name, CircuitBreaker(label), Bulkhead(label, bulkhead_slots()))
                _dependencies[name] = found
    return found


def open_circuits() -> tuple[str, ...]:
    """Dependencies whose circuit is open or half-open right now (readiness reports them)."""
    return tuple(name for name, dep in _dependencies.items() if dep.breaker.state != "closed")


def reset_dependencies() -> None:
    """Forget every breaker and bulkhead (tests; with ``shared.clients.reset_clients``)."""
    with _registry_lock:
        _dependencies.clear()
