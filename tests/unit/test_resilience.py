"""Deadlines, the circuit breaker and the bulkhead (shared.resilience), with a fake clock."""

from __future__ import annotations

import threading
import time

import pytest

from shared.errors import BulkheadFullError, CircuitOpenError, DeadlineExceededError
from shared.resilience import (
    FAILURE_THRESHOLD,
    Bulkhead,
    CircuitBreaker,
    Dependency,
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
