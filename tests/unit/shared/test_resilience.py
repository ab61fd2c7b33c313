"""Deadlines, the circuit breaker and the bulkhead (shared.resilience), with a fake clock."""

from __future__ import annotations

import json
import threading
import time

import pytest

from shared.errors import BulkheadFullError, CircuitOpenError, DeadlineExceededError
from shared.resilience import (
    FAILURE_THRESHOLD,
    PROBE_TIMEOUT_SECONDS,
    Bulkhead,
    CircuitBreaker,
    Dependency,
    ProbeOutcome,
    bulkhead_slots,
    call_timeout,
    deadline,
    remaining,
)


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_call_timeout_is_what_is_left_of_the_deadline_and_refuses_when_nothing_is() -> None:
    assert remaining() is None
    assert call_timeout(30, "Cosmos DB") == 30
    with deadline(2.0):
        assert 1.5 < call_timeout(30, "Cosmos DB") < 2.0
        assert call_timeout(0.5, "Cosmos DB") == 0.5
        with deadline(60):  # an enclosing, earlier deadline wins
            assert (remaining() or 0) <= 2.0
    with deadline(0.1), pytest.raises(DeadlineExceededError) as raised:
        call_timeout(30, "Cosmos DB")
    assert raised.value.retry_after_seconds >= 1
    assert remaining() is None


def test_the_breaker_opens_after_consecutive_timeouts_and_lets_one_probe_through() -> None:
    clock = Clock()
    breaker = CircuitBreaker("Cosmos DB", open_seconds=1.0, clock=clock)
    for _ in range(FAILURE_THRESHOLD - 1):
        assert breaker.admit() is False
        breaker.record_timeout(False)
    breaker.record_success(False)  # a success resets the count
    for _ in range(FAILURE_THRESHOLD):
        breaker.admit()
        breaker.record_timeout(False)
    assert breaker.state == "open"
    with pytest.raises(CircuitOpenError) as raised:
        breaker.admit()
    assert raised.value.retry_after_seconds == 1

    clock.now += 1.0
    assert breaker.admit() is True  # the probe
    with pytest.raises(CircuitOpenError):
        breaker.admit()  # only one at a time
    breaker.record_timeout(True)  # the probe timed out: open again
    assert breaker.state == "open"
    clock.now += 1.0
    assert breaker.admit() is True
    breaker.record_success(True)
    assert breaker.state == "closed"  # type: ignore[comparison-overlap]
    assert breaker.admit() is False


def test_refused_connections_do_not_open_the_breaker() -> None:
    breaker = CircuitBreaker("Storage", clock=Clock())
    for _ in range(10 * FAILURE_THRESHOLD):
        breaker.admit()
        breaker.record_unreachable(False)
    assert breaker.state == "closed"


def test_the_bulkhead_waits_while_calls_complete_and_refuses_when_they_are_stuck() -> None:
    bulkhead = Bulkhead("Cosmos DB", 2, stall_seconds=0.3)
    first, second = bulkhead.acquire(1.0), bulkhead.acquire(1.0)
    threading.Timer(0.05, bulkhead.release, args=(first,)).start()
    began = time.monotonic()
    third = bulkhead.acquire(1.0)  # the dependency is moving: worth waiting for
    assert time.monotonic() - began < 0.3
    time.sleep(0.35)  # now both calls in flight are older than the stall time
    began = time.monotonic()
    with pytest.raises(BulkheadFullError):
        bulkhead.acquire(5.0)
    assert time.monotonic() - began < 0.05
    assert bulkhead.rejected == 1
    bulkhead.release(second)
    bulkhead.release(third)
    assert bulkhead.in_use == 0


def test_a_dependency_call_classifies_timeouts_and_always_frees_its_slot() -> None:
    clock = Clock()
    dependency = Dependency("cosmos", CircuitBreaker("Cosmos DB", clock=clock), Bulkhead("x", 1))

    def hang(timeout: float) -> None:
        raise TimeoutError

    for _ in range(FAILURE_THRESHOLD):
        with pytest.raises(TimeoutError):
            dependency.call(
                hang, cap=5, is_timeout=lambda e: isinstance(e, TimeoutError), is_unreachable=bool
            )
    assert dependency.bulkhead.in_use == 0
    with pytest.raises(CircuitOpenError):
        dependency.call(lambda t: t, cap=5, is_timeout=bool, is_unreachable=bool)
    clock.now += 10
    assert dependency.call(lambda t: t, cap=5, is_timeout=bool, is_unreachable=bool) == 1.0
    assert dependency.status() == {"circuit": "closed", "inFlight": 0, "slots": 1}


@pytest.mark.parametrize(
    ("threads", "share", "slots"),
    [("6", "0.67", 4), ("32", "0.67", 21), ("6", "0.5", 3), ("6", "1", 5), ("6", "0.01", 1)],
)
def test_the_bulkhead_share_of_the_worker_threads_is_a_setting_and_leaves_one_thread(
    monkeypatch: pytest.MonkeyPatch, threads: str, share: str, slots: int
) -> None:
    from shared.config import clear_settings_cache
    from tests.fixtures.app import SAMPLE_SETTINGS

    for name, value in json.loads(SAMPLE_SETTINGS.read_text())["Values"].items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("PYTHON_THREADPOOL_THREAD_COUNT", threads)
    monkeypatch.setenv("BULKHEAD_THREAD_SHARE", share)
    clear_settings_cache()
    try:
        assert bulkhead_slots() == slots
    finally:
        clear_settings_cache()


def test_with_a_prober_the_half_open_probe_runs_on_its_own_thread_and_callers_fail_fast() -> None:
    clock = Clock()
    outcomes = ["timeout", "answered"]
    probed = threading.Event()
    seen: list[float] = []

    def prober(timeout: float) -> ProbeOutcome:
        seen.append(timeout)
        outcome = outcomes.pop(0)
        probed.set()
        return outcome  # type: ignore[return-value]

    dependency = Dependency("cosmos", CircuitBreaker("Cosmos DB", clock=clock), Bulkhead("x", 1))
    dependency.prober = prober
    for _ in range(FAILURE_THRESHOLD):
        dependency.breaker.admit()
        dependency.breaker.record_timeout(False)
    for _ in ("timeout", "answered"):
        clock.now += 10
        probed.clear()
        began = time.monotonic()
        with pytest.raises(CircuitOpenError):  # the caller does not wait for the probe
            dependency.call(lambda t: t, cap=5, is_timeout=bool, is_unreachable=bool)
        assert time.monotonic() - began < 0.05
        assert probed.wait(5)
        deadline_at = time.monotonic() + 5
        while dependency.breaker.state == "half_open" and time.monotonic() < deadline_at:
            time.sleep(0.01)
    assert seen == [PROBE_TIMEOUT_SECONDS, PROBE_TIMEOUT_SECONDS]
    assert dependency.breaker.state == "closed"
    assert dependency.call(lambda t: t, cap=5, is_timeout=bool, is_unreachable=bool) == 5


def test_the_transport_probe_is_a_get_of_the_root_any_answer_counts_and_silence_is_a_timeout() -> (
    None
):
    import http.server
    import socket

    from azure.core.rest import HttpRequest

    from shared.guarded_transport import GuardedTransport

    class Unauthorized(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(401 if self.path == "/" else 200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Unauthorized)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    silent = socket.socket()  # accepts connections (the backlog) and never answers
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)
    try:
        for port, expected in (
            (server.server_address[1], "answered"),
            (silent.getsockname()[1], "timeout"),
        ):
            dependency = Dependency("x", CircuitBreaker("X"), Bulkhead("X", 2))
            with GuardedTransport(dependency, connection_timeout=1, read_timeout=1) as transport:
                if expected == "answered":
                    response = transport.send(HttpRequest("GET", f"http://127.0.0.1:{port}/items"))
                    assert response.status_code == 200
                else:
                    with pytest.raises(Exception):  # noqa: B017, PT011 (the SDK's timeout)
                        transport.send(HttpRequest("GET", f"http://127.0.0.1:{port}/items"))
                assert dependency.prober is not None
                began = time.monotonic()
                assert dependency.prober(0.3) == expected
                assert time.monotonic() - began < 2
    finally:
        server.shutdown()
        server.server_close()
        silent.close()
