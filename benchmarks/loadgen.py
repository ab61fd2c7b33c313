"""A closed-loop load generator: N threads, each repeating one operation for a fixed duration.

It does what ``locust --headless -u N -r N --run-time T`` does with a ``constant(0)`` wait
time: N users, each sending its next request as soon as the previous answer is read, over its
own keep-alive connection, for a fixed time; throughput is completed requests over the
measured wall time, latency percentiles come from every single request. Locust would add
gevent and ~40 packages for no extra figure; this is ~100 lines on ``http.client`` and
``threading``, and the same loop drives the raw SDK floor, so both sides run at exactly the
same concurrency with the same client overhead.

Every thread counts only what it completed inside the window; an error (exception or
unexpected status) is counted, not timed, and a benchmark treats any error as a failed run.
"""

from __future__ import annotations

import http.client
import statistics
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

Operation = Callable[[], None]
# Builds one thread's operation (its own connection or client state); gets the thread index.
OperationFactory = Callable[[int], Operation]


class UnexpectedResponseError(RuntimeError):
    pass


@dataclass(frozen=True)
class LoadResult:
    latencies: tuple[float, ...]  # seconds, one per completed operation
    errors: int
    elapsed: float  # seconds measured, over all windows
    # (start, end) of each measured window on the system-wide monotonic clock, so another
    # process's timings (the host's handler times) can be matched to them.
    windows: tuple[tuple[float, float], ...]
    first_error: str | None

    @property
    def throughput(self) -> float:
        return len(self.latencies) / self.elapsed

    def covers(self, moment: float) -> bool:
        return any(start <= moment <= end for start, end in self.windows)

    def merged(self, other: LoadResult) -> LoadResult:
        return LoadResult(
            latencies=self.latencies + other.latencies,
            errors=self.errors + other.errors,
            elapsed=self.elapsed + other.elapsed,
            windows=self.windows + other.windows,
            first_error=self.first_error or other.first_error,
        )

    def percentile_ms(self, percent: int) -> float:
        if len(self.latencies) < 2:
            raise ValueError("too few operations for a percentile")
        cuts = statistics.quantiles(self.latencies, n=100, method="inclusive")
        return cuts[percent - 1] * 1000


def run_load(make_operation: OperationFactory, concurrency: int, duration: float) -> LoadResult:
    """Run ``concurrency`` threads for ``duration`` seconds; each thread's operation is built
    before the clock starts."""
    operations = [make_operation(index) for index in range(concurrency)]
    start_line = threading.Barrier(concurrency + 1)
    lock = threading.Lock()
    latencies: list[float] = []
    errors: list[str] = []
    window: dict[str, float] = {}

    def worker(operation: Operation) -> None:
        own: list[float] = []
        own_errors: list[str] = []
        start_line.wait()
        deadline = window["deadline"]
        while True:
            started = time.perf_counter()
            if started >= deadline:
                break
            try:
                operation()
            except Exception as error:  # counted and reported by the caller
                own_errors.append(f"{type(error).__name__}: {error}")
                continue
            finished = time.perf_counter()
            if finished <= deadline:
                own.append(finished - started)
        with lock:
            latencies.extend(own)
            errors.extend(own_errors)

    threads = [
        threading.Thread(target=worker, args=(operation,), daemon=True) for operation in operations
    ]
    for thread in threads:
        thread.start()
    window["deadline"] = time.perf_counter() + duration
    started_at = time.monotonic()
    start_line.wait()
    for thread in threads:
        thread.join()
    return LoadResult(
        latencies=tuple(latencies),
        errors=len(errors),
        elapsed=duration,
        windows=((started_at, started_at + duration),),
        first_error=errors[0] if errors else None,
    )


class KeepAliveClient:
    """One keep-alive HTTP/1.1 connection; reconnects if the server closed it."""

    def __init__(
        self, port: int, timeout: float = 30.0, *, headers: Mapping[str, str] | None = None
    ) -> None:
        """``headers`` go with every request (e.g. ``Authorization``)."""
        self._port = port
        self._timeout = timeout
        self._headers = dict(headers or {})
        self._connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)

    def request(
        self,
        method: str,
        path: str,
        *,
        body: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        expect: int = 200,
    ) -> bytes:
        for attempt in (1, 2):
            try:
                self._connection.request(
                    method, path, body=body, headers={**self._headers, **(headers or {})}
                )
                response = self._connection.getresponse()
                payload = response.read()
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                self._connection.close()
                if attempt == 2:
                    raise
                continue
            if response.status != expect:
                raise UnexpectedResponseError(f"{method} {path}: {response.status} {payload!r}")
            return payload
        raise AssertionError("unreachable")

    def close(self) -> None:
        self._connection.close()
