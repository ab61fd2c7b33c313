"""Liveness and readiness.

Readiness probes every configured dependency concurrently, each bounded by a short timeout, and
reports per-dependency status without secrets or connection details: only the dependency's name,
``up``/``down``/``not_configured``, the probe's duration and, when down, a short reason (an error
class or HTTP status, or ``timeout``). A probe that hangs is abandoned at the deadline; its thread
finishes in the background on the SDK's own timeouts.

What each probe touches (the narrowest call the app's identity is allowed to make):
- cosmos: reads the database's metadata.
- storage: reads the imports blob container's and the import queue's properties.
- keyVault (when ``KEY_VAULT_URL`` is set): the webhook secret, through the secrets cache.
- serviceBus (when configured): peeks the fulfillment queue (nothing is consumed).
Event Grid has no side-effect-free read for a topic publisher, so it is not probed: a publish
failure is handled where events are published.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from typing import Literal

from shared.config import Settings
from shared.errors import ConfigurationError

ProbeStatus = Literal["up", "down", "not_configured"]


@dataclass(frozen=True, slots=True)
class Probe:
    """A named readiness check; ``check(timeout_seconds)`` raises when the dependency is down."""

    name: str
    check: Callable[[float], None] | None  # None: the dependency is not configured


@dataclass(frozen=True, slots=True)
class ProbeResult:
    name: str
    status: ProbeStatus
    duration_ms: int = 0
    reason: str | None = None

    def to_json(self) -> dict[str, object]:
        body: dict[str, object] = {"status": self.status}
        if self.status != "not_configured":
            body["durationMs"] = self.duration_ms
        if self.reason:
            body["reason"] = self.reason
        return body


@dataclass(frozen=True, slots=True)
class Readiness:
    checks: tuple[ProbeResult, ...] = field(default_factory=tuple)

    @property
    def ready(self) -> bool:
        return all(check.status != "down" for check in self.checks)

    @property
    def unavailable(self) -> tuple[str, ...]:
        return tuple(check.name for check in self.checks if check.status == "down")

    def to_json(self) -> dict[str, object]:
        return {
            "status": "ready" if self.ready else "unavailable",
            "checks": {check.name: check.to_json() for check in self.checks},
        }


def describe_failure(exc: BaseException) -> str:
    """A short reason that never includes URLs, keys or messages from the SDK."""
    from shared.errors import CircuitOpenError

    if isinstance(exc, ConfigurationError):
        return f"configuration: setting {exc.setting} {exc.problem}"
    if isinstance(exc, CircuitOpenError):
        return "circuit open"
    status = getattr(exc, "status_code", None)
    if isinstance(status, int):
        return f"HTTP {status}"
    return type(exc).__name__


# Probes run on their own small pool so a slow dependency cannot starve request threads.
_executor: ThreadPoolExecutor | None = None


def _pool() -> ThreadPoolExecutor:
    global _executor
    if _executor is None:
        _executor = ThreadPoolExecutor(max_workers=8, thread_name_prefix="readiness")
    return _executor


def check_readiness(probes: Sequence[Probe], timeout_seconds: float) -> Readiness:
    """Run every probe concurrently; each gets ``timeout_seconds`` (all share one deadline)."""
    started = time.perf_counter()
    futures: dict[str, Future[None]] = {}
    for probe in probes:
        if probe.check is not None:
            futures[probe.name] = _pool().submit(_bounded, probe.check, timeout_seconds)
    deadline = started + timeout_seconds
    results: list[ProbeResult] = []
    for probe in probes:
        future = futures.get(probe.name)
        if future is None:
            results.append(ProbeResult(probe.name, "not_configured"))
            continue
        try:
            future.result(timeout=max(0.0, deadline - time.perf_counter()))
        except FutureTimeout:
            future.cancel()
            results.append(ProbeResult(probe.name, "down", _elapsed_ms(started), "timeout"))
        except Exception as exc:
            results.append(
                ProbeResult(probe.name, "down", _elapsed_ms(started), describe_failure(exc))
            )
        else:
            results.append(ProbeResult(probe.name, "up", _elapsed_ms(started)))
    return Readiness(tuple(results))


def _bounded(check: Callable[[float], None], timeout_seconds: float) -> None:
    """Run a probe within its own deadline, so every call it makes (and each retry) ends
    with it and an abandoned probe does not keep one of the pool's threads for long."""
    from shared.resilience import deadline

    with deadline(timeout_seconds):
        check(timeout_seconds)


def _elapsed_ms(started: float) -> int:
    return round((time.perf_counter() - started) * 1000)


def _probe_cosmos(timeout: float) -> None:
    from shared.clients import get_cosmos_database

    get_cosmos_database().read(timeout=timeout)


def _probe_storage(timeout: float) -> None:
    from shared.clients import get_blob_service, get_queue
    from shared.names import IMPORT_CHUNKS_QUEUE, IMPORTS_BLOB_CONTAINER

    per_call = max(1, round(timeout))
    get_blob_service().get_container_client(IMPORTS_BLOB_CONTAINER).get_container_properties(
        timeout=per_call, retry_total=0
    )
    get_queue(IMPORT_CHUNKS_QUEUE).get_queue_properties(timeout=per_call, retry_total=0)


def _probe_key_vault(timeout: float) -> None:
    from shared.secrets import get_secret_store

    get_secret_store().probe()


_service_bus_probe_lock = threading.Lock()


def _probe_service_bus(timeout: float) -> None:
    """Peek through a receiver kept open between probes: a fresh one costs an AMQP connection
    (about a second here) and ~50 SDK log records each time. A receiver that failed is closed
    and dropped, so the next probe connects anew."""
    from shared.clients import forget_service_bus_peeker, get_service_bus_peeker
    from shared.config import get_settings

    queue = get_settings().fulfillment_queue
    # One probe at a time uses the receiver (it is not thread-safe); a second waits at most
    # its own timeout.
    if not _service_bus_probe_lock.acquire(timeout=timeout):
        raise TimeoutError("another readiness probe is still waiting for Service Bus")
    started = time.perf_counter()
    try:
        try:
            get_service_bus_peeker(queue).peek_messages(max_message_count=1, timeout=timeout)
        except Exception:
            # The kept connection may have died (Service Bus closes idle ones): one more try on
            # a new receiver while the deadline allows, so a stale connection is not "down".
            forget_service_bus_peeker(queue)
            left = timeout - (time.perf_counter() - started)
            if left < timeout / 2:
                raise
            try:
                get_service_bus_peeker(queue).peek_messages(max_message_count=1, timeout=left)
            except BaseException:
                forget_service_bus_peeker(queue)
                raise
    finally:
        _service_bus_probe_lock.release()


def default_probes(settings: Settings) -> list[Probe]:
    """The dependencies this deployment is configured to use."""
    return [
        Probe("cosmos", _probe_cosmos),
        Probe("storage", _probe_storage),
        Probe("keyVault", _probe_key_vault if settings.key_vault_url else None),
        Probe("serviceBus", _probe_service_bus if settings.service_bus else None),
    ]


def readiness(settings: Settings | None = None) -> Readiness:
    """Readiness of this instance with its configured dependencies.

    Invalid configuration makes the instance unready (with the setting named) rather than crash.
    """
    if settings is None:
        from shared.config import get_settings

        try:
            settings = get_settings()
        except ConfigurationError as exc:
            return Readiness((ProbeResult("configuration", "down", 0, describe_failure(exc)),))
    return check_readiness(default_probes(settings), settings.health_probe_timeout_seconds)


def liveness_version() -> str:
    """The running version: ``ORDERFLOW_VERSION`` when the deployment sets it, else the code's."""
    from shared import __version__
    from shared.config import get_settings

    try:
        return get_settings().version
    except ConfigurationError:
        return __version__
