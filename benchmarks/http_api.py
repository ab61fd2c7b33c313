"""HTTP API under load: GET and POST order through the local host, beside the raw SDK calls
they wrap (``read_item`` / ``create_item``) against the same Cosmos stand-in.

    .venv/bin/python -m benchmarks.http_api [--quick] [--duration 10] [--concurrency 4]

Starts its own stack and host (free ports; both stopped at the end). Each side is a
closed-loop load of ``--concurrency`` keep-alive clients for ``--duration`` seconds in all
(:mod:`benchmarks.loadgen`), after a warm-up, the app and the raw call alternating in slices
of about two seconds:

1. ``GET /api/v1/customers/{c}/orders/{id}`` of seeded orders, and raw ``read_item`` of them;
2. ``POST /api/v1/customers/{c}/orders`` with an ``Idempotency-Key`` (create, publish
   ``Order.Placed`` to the host's local Event Grid topic, clear the outbox: what the design
   budgets for a create), and raw ``create_item`` of the same order document.

Figures: requests per second and p50/p99 latency through the host, each beside the raw call
at the same concurrency; and the app's own handler time (timed inside the host, see
:mod:`benchmarks.timed_host`) beside the raw call's p50. The first two describe the local
host, a stand-in for the Functions host; the handler time is what Azure bills as execution.
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.loadgen import KeepAliveClient, LoadResult, Operation, run_load
from benchmarks.local_app import (
    quiet_local_tls_warnings,
    running_host,
    running_stack,
    stop_on_sigterm,
)
from benchmarks.table import Figure, add_arguments, report
from benchmarks.timed_host import TIMINGS_FILE_SETTING, read_timings

SEED_ORDERS = 40
SLICE_SECONDS = 2.0
# After each slice: the host delivers the Order.Placed events of the last POSTs in the
# background; the next slice should not pay for them.
SETTLE_SECONDS = 0.5
CUSTOMERS = 20
ORDER_BODY = {
    "currency": "EUR",
    "lines": [
        {"sku": "SKU-1", "quantity": 2, "unitPrice": "10.25"},
        {"sku": "SKU-2", "quantity": 1, "unitPrice": "4.99"},
    ],
}
JSON_HEADERS = {"Content-Type": "application/json"}
# Goals as (through the host, handler) ratios to the raw call. The handler may add half of the
# SDK call it wraps to a read; a create makes three calls by design (create, publish, outbox
# clear), so three times one create. Through the host, one more raw call's worth is allowed
# for HTTP, routing, logging and the hand-over to the worker thread.
GET_GOALS = (2.0, 1.5)
POST_GOALS = (4.0, 3.0)
SYSTEM_PROPERTIES = ("_rid", "_self", "_etag", "_attachments", "_ts")


@dataclass(frozen=True)
class LoadSettings:
    concurrency: int
    duration: float  # seconds measured per phase
    warmup: float  # seconds before each, not measured


def _orders_path(customer: str) -> str:
    return f"/api/v1/customers/{customer}/orders"


def seed_orders(port: int, count: int, auth: dict[str, str]) -> list[dict[str, Any]]:
    client = KeepAliveClient(port, headers=auth)
    try:
        body = json.dumps(ORDER_BODY).encode()
        return [
            json.loads(
                client.request(
                    "POST",
                    _orders_path(f"seed-{index % CUSTOMERS}"),
                    body=body,
                    headers=JSON_HEADERS,
                    expect=201,
                )
            )
            for index in range(count)
        ]
    finally:
        client.close()


def http_get(
    port: int, orders: Sequence[dict[str, Any]], auth: dict[str, str]
) -> Callable[[int], Operation]:
    def make(thread: int) -> Operation:
        client = KeepAliveClient(port, headers=auth)
        paths = itertools.cycle(
            f"{_orders_path(order['customerId'])}/{order['id']}"
            for order in [*orders[thread:], *orders[:thread]]
        )

        def get() -> None:
            client.request("GET", next(paths))

        return get

    return make


def http_post(port: int, auth: dict[str, str]) -> Callable[[int], Operation]:
    run = uuid.uuid4().hex[:8]
    body = json.dumps(ORDER_BODY).encode()

    def make(thread: int) -> Operation:
        client = KeepAliveClient(port, headers=auth)
        counter = itertools.count()

        def post() -> None:
            number = next(counter)
            client.request(
                "POST",
                _orders_path(f"load-{thread}-{number % CUSTOMERS}"),
                body=body,
                headers={**JSON_HEADERS, "Idempotency-Key": f"load-{run}-{thread}-{number}"},
                expect=201,
            )

        return post

    return make


def cosmos_orders_container(endpoint: str) -> Any:
    """The orders container through a client configured as the app configures its own."""
    from azure.cosmos import CosmosClient

    from localdev.stack import COSMOS_EMULATOR_KEY
    from shared import clients
    from shared.names import COSMOS_DATABASE_DEFAULT, ORDERS_CONTAINER

    client = CosmosClient(
        endpoint,
        credential=COSMOS_EMULATOR_KEY,
        connection_timeout=clients.CONNECTION_TIMEOUT,
        retry_total=clients.RETRY_TOTAL,
        retry_backoff_max=clients.RETRY_BACKOFF_MAX,
        enable_endpoint_discovery=False,
    )
    return client.get_database_client(COSMOS_DATABASE_DEFAULT).get_container_client(
        ORDERS_CONTAINER
    )


def raw_read(container: Any, orders: Sequence[dict[str, Any]]) -> Callable[[int], Operation]:
    def make(thread: int) -> Operation:
        keys = itertools.cycle(
            (order["id"], order["customerId"]) for order in [*orders[thread:], *orders[:thread]]
        )

        def read() -> None:
            item, partition = next(keys)
            container.read_item(item=item, partition_key=partition)

        return read

    return make


def raw_create(container: Any, template: dict[str, Any]) -> Callable[[int], Operation]:
    document = {key: value for key, value in template.items() if key not in SYSTEM_PROPERTIES}

    def make(thread: int) -> Operation:
        counter = itertools.count()

        def create() -> None:
            number = next(counter)
            container.create_item(
                body={
                    **document,
                    "id": uuid.uuid4().hex,
                    "customerId": f"raw-{thread}-{number % CUSTOMERS}",
                }
            )

        return create

    return make


def measured(label: str, result: LoadResult) -> LoadResult:
    if result.errors or len(result.latencies) < 2:
        raise RuntimeError(
            f"{label}: {result.errors} errors, {len(result.latencies)} completed "
            f"(first error: {result.first_error})"
        )
    print(
        f"  {label}: {len(result.latencies)} requests in {result.elapsed:.1f} s, "
        f"{result.throughput:.0f}/s, p50 {result.percentile_ms(50):.2f} ms, "
        f"p99 {result.percentile_ms(99):.2f} ms",
        flush=True,
    )
    return result


def handler_median_ms(
    timings: dict[str, list[tuple[float, float]]], function: str, window: LoadResult
) -> float:
    inside = [seconds for started, seconds in timings.get(function, []) if window.covers(started)]
    if not inside:
        raise RuntimeError(f"no {function} invocations were timed inside the host")
    print(f"  {function} handler: {len(inside)} invocations timed in the host", flush=True)
    return statistics.median(inside) * 1000


def operation_figures(
    operation: str,
    sdk_call: str,
    *,
    app: LoadResult,
    raw: LoadResult,
    handler_ms: float,
    goals: tuple[float, float],
) -> list[Figure]:
    """Throughput and latency through the host (goal ``goals[0]``), and the handler time
    (goal ``goals[1]``), each beside the raw SDK call."""
    through_host, handler = goals
    return [
        Figure(
            f"{operation}: requests/s via host vs {sdk_call}",
            app.throughput,
            raw.throughput,
            "req/s",
            through_host,
            higher_is_better=True,
        ),
        Figure(
            f"{operation}: p50 via host vs {sdk_call}",
            app.percentile_ms(50),
            raw.percentile_ms(50),
            "ms",
            through_host,
        ),
        Figure(
            f"{operation}: p99 via host vs {sdk_call}",
            app.percentile_ms(99),
            raw.percentile_ms(99),
            "ms",
            through_host,
        ),
        Figure(
            f"{operation}: handler p50 vs {sdk_call} p50",
            handler_ms,
            raw.percentile_ms(50),
            "ms",
            handler,
        ),
    ]


def alternating(
    app: Callable[[int], Operation], raw: Callable[[int], Operation], load: LoadSettings
) -> tuple[LoadResult, LoadResult]:
    """Warm both up, then measure them in alternating slices of about two seconds, so drift
    (other processes' load, the stand-in slowing as its containers grow) hits both alike."""
    run_load(raw, load.concurrency, load.warmup)
    run_load(app, load.concurrency, load.warmup)
    slices = max(1, round(load.duration / SLICE_SECONDS))
    results: dict[str, LoadResult] = {}
    for index in range(slices):
        order = (("raw", raw), ("app", app)) if index % 2 == 0 else (("app", app), ("raw", raw))
        for side, make in order:
            result = run_load(make, load.concurrency, load.duration / slices)
            results[side] = results[side].merged(result) if side in results else result
            time.sleep(SETTLE_SECONDS)
    return results["app"], results["raw"]


def run(load: LoadSettings) -> list[Figure]:
    quiet_local_tls_warnings()
    with tempfile.TemporaryDirectory(prefix="orderflow-bench-http-") as directory:
        workdir = Path(directory)
        timings_file = workdir / "handler-timings.json"
        with running_stack(workdir) as stack:
            with running_host(
                stack, workdir, env={TIMINGS_FILE_SETTING: str(timings_file)}, timed=True
            ) as host:
                # A shop backend's token (every app role): what the app validates per request.
                auth = {"Authorization": f"Bearer {host.token()}"}
                orders = seed_orders(host.port, SEED_ORDERS, auth)
                container = cosmos_orders_container(stack.cosmos_endpoint)
                template = container.read_item(
                    item=orders[0]["id"], partition_key=orders[0]["customerId"]
                )
                print(
                    f"HTTP load: {load.concurrency} keep-alive clients, {load.duration:g} s per "
                    f"phase after a {load.warmup:g} s warm-up",
                    flush=True,
                )
                gets, raw_reads = alternating(
                    http_get(host.port, orders, auth), raw_read(container, orders), load
                )
                measured("raw read_item", raw_reads)
                measured("GET order", gets)
                posts, raw_creates = alternating(
                    http_post(host.port, auth), raw_create(container, template), load
                )
                measured("raw create_item", raw_creates)
                measured("POST order", posts)
            timings = read_timings(timings_file)  # written when the host exits
    return [
        *operation_figures(
            "GET order",
            "read_item",
            app=gets,
            raw=raw_reads,
            handler_ms=handler_median_ms(timings, "get_order", gets),
            goals=GET_GOALS,
        ),
        *operation_figures(
            "POST order",
            "create_item",
            app=posts,
            raw=raw_creates,
            handler_ms=handler_median_ms(timings, "create_order", posts),
            goals=POST_GOALS,
        ),
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    add_arguments(parser)
    parser.add_argument("--duration", type=float, default=None, help="seconds per phase")
    parser.add_argument("--concurrency", type=int, default=4, help="clients at once")
    args = parser.parse_args(argv)
    stop_on_sigterm()
    load = LoadSettings(
        concurrency=args.concurrency,
        duration=args.duration or (1.5 if args.quick else 10.0),
        warmup=0.5 if args.quick else 2.0,
    )
    report(run(load), args.figures_out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
