"""Items that do not grow, contention without retries, and what logging costs: the figures of
issue 13, each beside the previous design (or the SDKs' default logging) measured in the same
process against the same local stack.

    .venv/bin/python -m benchmarks.scale [--quick]

1. One hot SKU, 16 concurrent reservers: reservations/s of the reservation-item design
   (shared/repositories/reservations.py: one transactional batch) vs the previous read +
   ETag-guarded replace (benchmarks/legacy_reservations.py); lost-race retries and Cosmos
   requests per reserved line.
2. Fulfillment (FulfillmentService, 16 workers, orders of one SKU): Cosmos requests per order
   and the paid -> fulfilled p50/p95 of the service call, both designs.
3. Many orders on one SKU through the fulfillment service (30,000; 3,000 with --quick): every
   invariant checked, and the largest item in the SKU's partition beside the size the previous
   design's stock item would have reached (it would exceed Cosmos DB's 2 MB).
4. An import of 1,000,000 rows (100,000 with --quick): the file pass over the whole file, the
   first and last chunks through the chunk pass (orders created, events published), the chunks
   in between counted through the same repository call without creating their orders (that call
   is what made the run item grow): the run item's size at the end beside the previous design's,
   and Event Grid publishes per 1,000 imported orders.
5. Log records per readiness probe and per order lifecycle (placed -> paid -> fulfilled), beside
   the same with the SDKs' loggers at INFO and a fresh Service Bus connection per probe (before).

The Cosmos DB stand-in serialises requests on one Node.js thread: rates describe the local
stack, ratios the designs. docs/PERFORMANCE.md has the figures and the real-Cosmos arithmetic.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import statistics
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from benchmarks.local_app import (
    configure_this_process,
    quiet_local_tls_warnings,
    running_stack,
    stop_on_sigterm,
)
from benchmarks.request_counter import COSMOS, RequestCounter
from benchmarks.table import Figure, add_arguments, report

WORKERS = 16
AT = "2026-12-04T00:00:00.000000Z"


class NullPublisher:
    """Events are not what these figures measure; publishing them would only add noise."""

    def __init__(self) -> None:
        self.calls = 0
        self.events = 0
        self._lock = threading.Lock()

    def publish(self, events: Sequence[dict[str, Any]]) -> None:
        from shared.publisher import event_batches

        # One call per request EventGridPublisher would send (it splits at 1 MB).
        sends = len(event_batches(events))
        with self._lock:
            self.calls += sends
            self.events += len(events)


class ListQueue:
    def __init__(self) -> None:
        self.messages: list[str] = []

    def send(self, message: str) -> None:
        self.messages.append(message)


def percentile(values: Sequence[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


def redelivered[T](action: Callable[[], T], attempts: int = 20) -> T:
    """Run ``action`` as a message would be: a transient failure (DependencyUnavailableError:
    contention that outlasted its retries, a full bulkhead) is delivered again."""
    from shared.errors import DependencyUnavailableError

    for _ in range(attempts - 1):
        try:
            return action()
        except DependencyUnavailableError:
            time.sleep(0.05)
    return action()


def new_sku(available: int) -> str:
    from shared.repositories.inventory import CosmosInventoryRepository

    sku = f"SKU-{uuid.uuid4().hex[:10]}"
    CosmosInventoryRepository().set_available(sku, available, AT)
    return sku


def inventory_container() -> Any:
    from shared.clients import get_container
    from shared.names import INVENTORY_CONTAINER

    return get_container(INVENTORY_CONTAINER)


# ----------------------------------------------------------------------------- 1. hot SKU


def hot_sku(counter: RequestCounter, reservations: int) -> list[Figure]:
    from benchmarks.legacy_reservations import ReadReplaceReservations
    from shared.repositories.reservations import CosmosStockReservations

    def run(design: Any) -> tuple[float, float, float]:
        sku = new_sku(reservations)
        holders = [f"c{n}:o{n}" for n in range(reservations)]

        def reserve(holder: str) -> Any:
            return design.reserve(sku, holder, 1, AT)

        def all_of_them() -> None:
            with ThreadPoolExecutor(WORKERS) as pool:
                list(
                    pool.map(lambda h: redelivered(lambda: design.reserve(sku, h, 1, AT)), holders)
                )

        started = time.perf_counter()
        requests = counter.measure(all_of_them)[COSMOS]
        elapsed = time.perf_counter() - started
        left = int(inventory_container().read_item(sku, partition_key=sku)["available"])
        if left != 0:
            raise RuntimeError(f"{type(design).__name__}: {left} units left, expected 0")
        return reservations / elapsed, design.retries / reservations, requests / reservations

    new_rate, new_retries, new_requests = run(CosmosStockReservations())
    old_rate, old_retries, old_requests = run(ReadReplaceReservations(inventory_container()))
    print(
        f"  hot SKU, {WORKERS} reservers, {reservations} reservations: {new_rate:.0f}/s "
        f"(read+replace {old_rate:.0f}/s); retries {new_retries:.2f} vs {old_retries:.2f} per "
        f"reservation; requests {new_requests:.2f} vs {old_requests:.2f}",
        flush=True,
    )
    return [
        Figure(
            f"hot SKU, {WORKERS} reservers: reservations/s",
            new_rate,
            old_rate,
            "res/s",
            0.2,  # the previous design's rate is at most a fifth: >= 5x
            higher_is_better=True,
        ),
        Figure(
            "hot SKU: lost-race retries per reservation",
            new_retries,
            old_retries,
            "retry",
            0,
            "value",
        ),
        Figure(
            "hot SKU: Cosmos requests per reserved line",
            new_requests,
            old_requests,
            "req",
            1,
            "value",
        ),
    ]


# ------------------------------------------------------------------------ 2. fulfillment


def paid_orders(service: Any, sku: str, count: int) -> list[Any]:
    from shared.models import OrderDraft, OrderStatus

    draft = OrderDraft.model_validate(
        {"lines": [{"sku": sku, "quantity": 1, "unitPrice": "1.00"}], "currency": "EUR"}
    )

    def one(n: int) -> Any:
        # Events stay in the outbox (fulfillment publishes and clears it with its own change):
        # two requests per order, so the figures are about fulfillment.
        placed = service.place(f"c-{uuid.uuid4().hex[:12]}", draft, publish=False).order
        return service.transition(placed, OrderStatus.PAID, publish=False)

    with ThreadPoolExecutor(WORKERS) as pool:
        return list(pool.map(one, range(count)))


def command_for(order: Any) -> Any:
    from shared.events import event_id
    from shared.models import OrderStatus
    from shared.services.fulfillment import FULFIL_ORDER, FulfilOrderCommand

    return FulfilOrderCommand.model_validate(
        {
            "type": FULFIL_ORDER,
            "version": 1,
            "customerId": order.customer_id,
            "orderId": order.id,
            "eventId": event_id(order.customer_id, order.id, OrderStatus.PAID),
        }
    )


def fulfil_all(
    fulfillment: Any, orders: Sequence[Any], counter: RequestCounter | None = None
) -> tuple[list[float], int, list[Any]]:
    """Fulfil every order from WORKERS threads: (seconds per call, Cosmos requests, outcomes)."""
    durations: list[float] = []
    outcomes: list[Any] = []
    lock = threading.Lock()

    def one(order: Any) -> None:
        started = time.perf_counter()
        result = redelivered(lambda: fulfillment.fulfil(command_for(order)))
        with lock:
            durations.append(time.perf_counter() - started)
            outcomes.append(result.outcome)

    def everything() -> None:
        with ThreadPoolExecutor(WORKERS) as pool:
            list(pool.map(one, orders))

    requests = counter.measure(everything)[COSMOS] if counter is not None else 0
    if counter is None:
        everything()
    return durations, requests, outcomes


def fulfillment_figures(counter: RequestCounter, orders: int) -> list[Figure]:
    from benchmarks.legacy_reservations import ReadReplaceReservations
    from shared.repositories.orders import CosmosOrderRepository
    from shared.repositories.reservations import CosmosStockReservations
    from shared.services.fulfillment import FulfillmentService
    from shared.services.orders import OrderService

    repository = CosmosOrderRepository()
    publisher = NullPublisher()
    service = OrderService(repository, publisher)
    results: dict[str, tuple[float, float, float]] = {}
    for name, design in (
        ("new", CosmosStockReservations()),
        ("old", ReadReplaceReservations(inventory_container())),
    ):
        sku = new_sku(orders)
        batch = paid_orders(service, sku, orders)
        fulfillment = FulfillmentService(service, repository, publisher, design)
        durations, requests, _ = fulfil_all(fulfillment, batch, counter)
        results[name] = (
            requests / orders,
            statistics.median(durations) * 1000,
            percentile(durations, 0.95) * 1000,
        )
    (new_req, new_p50, new_p95), (old_req, old_p50, old_p95) = results["new"], results["old"]
    print(
        f"  fulfillment, {orders} orders of one SKU, {WORKERS} workers: {new_req:.2f} Cosmos "
        f"requests/order (read+replace {old_req:.2f}); paid -> fulfilled p50 {new_p50:.0f} ms "
        f"p95 {new_p95:.0f} ms (read+replace {old_p50:.0f} / {old_p95:.0f} ms)",
        flush=True,
    )
    return [
        Figure("fulfillment: Cosmos requests per order", new_req, old_req, "req", 1.0),
        Figure("fulfillment: paid -> fulfilled p50 (service)", new_p50, old_p50, "ms", 1.0),
        Figure("fulfillment: paid -> fulfilled p95 (service)", new_p95, old_p95, "ms", 1.0),
    ]


# ------------------------------------------------------------- 3. many orders on one SKU


def many_orders_one_sku(orders: int) -> list[Figure]:
    from shared.repositories.orders import CosmosOrderRepository
    from shared.repositories.reservations import CosmosStockReservations, holder_key
    from shared.services.fulfillment import FulfillmentOutcome, FulfillmentService
    from shared.services.orders import OrderService

    repository = CosmosOrderRepository()
    publisher = NullPublisher()
    service = OrderService(repository, publisher)
    reservations = CosmosStockReservations()
    fulfillment = FulfillmentService(service, repository, publisher, reservations)
    stock = orders * 2 // 3
    sku = new_sku(stock)
    started = time.perf_counter()
    batch = paid_orders(service, sku, orders)
    placed = time.perf_counter()
    _, _, outcomes = fulfil_all(fulfillment, batch)
    # Commands again, as a redelivery would (every one in a quick run, a sample otherwise):
    # nothing may change.
    _, _, repeats = fulfil_all(fulfillment, batch[:: max(1, orders // 3000)])
    done = time.perf_counter()

    container = inventory_container()
    items = list(container.query_items("SELECT * FROM c", partition_key=sku, max_item_count=1000))
    largest = max(len(json.dumps(item, separators=(",", ":"))) for item in items)
    stock_item = next(item for item in items if item["id"] == sku)
    holdings = reservations.holdings(sku)
    fulfilled = outcomes.count(FulfillmentOutcome.FULFILLED)
    problems = []
    if fulfilled != stock or stock_item["available"] != 0:
        problems.append(f"fulfilled {fulfilled}, left {stock_item['available']}, stock {stock}")
    if outcomes.count(FulfillmentOutcome.BACKORDERED) != orders - stock:
        problems.append("backordered count")
    if sum(h.quantity for h in holdings.values()) != fulfilled:
        problems.append("reserved != fulfilled")
    if set(repeats) - {FulfillmentOutcome.ALREADY_FULFILLED, FulfillmentOutcome.RELEASED}:
        problems.append(f"redelivery changed something: {set(repeats)}")
    if problems:
        raise RuntimeError(f"invariants broken after {orders} orders: {'; '.join(problems)}")
    # The previous design's stock item after the same orders: one entry per fulfilled order.
    legacy = {
        "id": sku,
        "sku": sku,
        "available": 0,
        "updatedAt": AT,
        "reservations": {
            holder_key(o.customer_id, o.id): {"quantity": 1, "at": AT} for o in batch[:fulfilled]
        },
        "_rid": "x" * 28,
        "_self": "x" * 60,
        "_etag": '"' + "x" * 36 + '"',
        "_attachments": "attachments/",
        "_ts": 1_800_000_000,
    }
    legacy_bytes = len(json.dumps(legacy, separators=(",", ":")))
    print(
        f"  {orders:,} orders on one SKU ({stock:,} in stock): {fulfilled:,} fulfilled, "
        f"{orders - stock:,} backordered, stock 0, {len(repeats):,} commands redelivered "
        f"without effect; "
        f"{len(items):,} items in the partition, largest {largest} B (the previous design's "
        f"stock item: {legacy_bytes / 1024:,.0f} KiB); placing {placed - started:.0f} s, "
        f"fulfilling twice {done - placed:.0f} s",
        flush=True,
    )
    return [
        Figure(
            f"{orders:,} orders, one SKU: largest item in its partition",
            largest,
            legacy_bytes,
            "B",
            2048,
            "value",
        )
    ]


# --------------------------------------------------------------------------- 4. import


def generate_single_lines(path: Path, rows: int) -> None:
    """Like benchmarks.imports.generate, with one line per order."""
    with path.open("w", encoding="utf-8", newline="") as out:
        out.write("external_id,customer_id,sku,quantity,unit_price,currency\n")
        for i in range(rows):
            out.write(f"ONE-{i:08d},cust1-{i % 5000:05d},SKU-{i % 200:04d},{1 + i % 7},3.10,EUR\n")


def import_run(rows: int, directory: Path, *, lines_per_order: int = 2) -> list[Figure]:
    from azure.core.exceptions import ResourceExistsError

    from benchmarks.imports import generate
    from shared.clients import get_blob_service
    from shared.repositories.import_runs import CosmosImportRunRepository
    from shared.repositories.import_storage import AzureImportFiles, AzureReportBlob
    from shared.repositories.orders import CosmosOrderRepository
    from shared.services.import_files import parse_chunk
    from shared.services.import_pipeline import ImportPipeline
    from shared.services.orders import OrderService

    container, name = "bench-imports", f"scale-{uuid.uuid4().hex[:8]}.csv"
    path = directory / name
    (generate if lines_per_order == 2 else generate_single_lines)(path, rows)
    blobs = get_blob_service()
    with contextlib.suppress(ResourceExistsError):
        blobs.create_container(container)
    with path.open("rb") as data:
        blobs.get_blob_client(container, name).upload_blob(data, overwrite=True)
    runs = CosmosImportRunRepository()
    publisher = NullPublisher()
    service = OrderService(CosmosOrderRepository(), publisher)
    queue = ListQueue()
    pipeline = ImportPipeline(
        runs, AzureImportFiles(container), AzureReportBlob(), queue, lambda: service
    )
    started = time.perf_counter()
    pipeline.import_file(name)
    file_pass = time.perf_counter() - started
    chunks = [parse_chunk(message) for message in queue.messages]
    full = [0, 1, len(chunks) - 1]  # through the chunk pass: orders created, events published
    orders_placed = 0
    for index, (message, chunk) in enumerate(zip(queue.messages, chunks, strict=True)):
        if index in full:
            pipeline.process_chunk(message)
            orders_placed += len(chunk.orders)
        else:
            rows_in_chunk = sum(len(order.rows) for order in chunk.orders)
            runs.record_chunk(
                name, chunk.run_id, chunk.number, accepted=rows_in_chunk, rejected=0, at=AT
            )
    stored = runs.read(name)
    if stored is None or stored.document["state"] != "completed":
        raise RuntimeError(f"the import did not complete: {stored}")
    if stored.document["accepted"] + stored.document["rejected"] != rows:
        raise RuntimeError(f"counts off: {stored.document}")
    raw = inventory_free_read(name)
    size = len(json.dumps(raw, separators=(",", ":")))
    # The previous design: the same item with an entry per chunk ("<n>": [accepted, rejected]).
    legacy = dict(raw)
    legacy["chunks"] = {str(c.number): [sum(len(o.rows) for o in c.orders), 0] for c in chunks}
    legacy_size = len(json.dumps(legacy, separators=(",", ":")))
    # One Order.Placed event per order created (an order found again publishes nothing new).
    per_thousand = publisher.calls * 1000 / max(1, publisher.events)
    print(
        f"  import of {rows:,} rows: file pass {file_pass:.0f} s, {len(chunks):,} chunks; run "
        f"item {size} B at the end (the previous design: {legacy_size:,} B); {publisher.calls} "
        f"publishes for the {orders_placed:,} orders of {len(full)} chunks "
        f"({publisher.events:,} events)",
        flush=True,
    )
    shape = f"{lines_per_order}-line orders"
    publishes = Figure(
        f"import, {shape}: publishes per 1,000 orders",
        per_thousand,
        1000,
        "pub",
        2,
        "value",
    )
    if lines_per_order != 2:
        return [publishes]
    return [
        Figure(f"import {rows:,} rows: run item at the end", size, legacy_size, "B", 4096, "value"),
        publishes,
    ]


def inventory_free_read(import_id: str) -> dict[str, Any]:
    """The run item as Cosmos stores it (system fields included: they count towards its size)."""
    from shared.clients import get_container
    from shared.names import IMPORTS_CONTAINER

    item: dict[str, Any] = get_container(IMPORTS_CONTAINER).read_item(
        import_id, partition_key=import_id
    )
    return item


# ------------------------------------------------------------------------------ 5. logs


class Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.NOTSET)
        self.records: list[logging.LogRecord] = []
        self._lock = threading.Lock()

    def emit(self, record: logging.LogRecord) -> None:
        with self._lock:
            self.records.append(record)

    def during(self, action: Callable[[], object]) -> list[logging.LogRecord]:
        with self._lock:
            self.records.clear()
        action()
        with self._lock:
            return list(self.records)


def log_volume(probes: int) -> list[Figure]:
    from shared.clients import forget_service_bus_peeker
    from shared.config import get_settings
    from shared.observability import configure_logging, set_sdk_log_level
    from shared.repositories.orders import CosmosOrderRepository
    from shared.repositories.reservations import CosmosStockReservations
    from shared.services.fulfillment import FulfillmentService
    from shared.services.health import readiness
    from shared.services.orders import OrderService

    configure_logging()
    handler = Records()
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(logging.INFO)  # what the Functions host ships by default (Information)
    queue = get_settings().fulfillment_queue
    repository = CosmosOrderRepository()
    publisher = NullPublisher()
    service = OrderService(repository, publisher)
    fulfillment = FulfillmentService(service, repository, publisher, CosmosStockReservations())
    sku = new_sku(10)

    def lifecycle() -> None:
        [order] = paid_orders(service, sku, 1)
        fulfillment.fulfil(command_for(order))

    def probe(fresh: bool) -> Callable[[], object]:
        def run() -> None:
            if fresh:
                forget_service_bus_peeker(queue)  # before: a new connection per probe
            if not readiness().ready:
                raise RuntimeError("readiness reported a dependency down")

        return run

    try:
        set_sdk_log_level("WARNING")
        probe(False)()  # connect once
        now = [len(handler.during(probe(False))) for _ in range(probes)]
        life = handler.during(lifecycle)
        set_sdk_log_level("INFO")
        before = [len(handler.during(probe(True))) for _ in range(probes)]
        life_before = handler.during(lifecycle)
    finally:
        set_sdk_log_level("WARNING")
        root.removeHandler(handler)
    per_probe, per_probe_before = statistics.mean(now), statistics.mean(before)
    print(
        f"  log records per readiness probe: {per_probe:.1f} (SDKs at INFO, new connection "
        f"each time: {per_probe_before:.1f}); per order lifecycle: {len(life)} "
        f"(SDKs at INFO: {len(life_before)}):",
        flush=True,
    )
    for record in life:
        print(f"    {record.levelname} {record.name}: {record.getMessage()[:110]}", flush=True)
    return [
        Figure("log records per readiness probe", per_probe, per_probe_before, "rec", 3, "value"),
        Figure("log records per order lifecycle", len(life), len(life_before), "rec", 6, "value"),
    ]


# ------------------------------------------------------------------------------- runner


def run(quick: bool, sizes: dict[str, int | None]) -> list[Figure]:
    def size(name: str, quick_value: int, full_value: int) -> int:
        chosen = sizes.get(name)
        return chosen if chosen is not None else (quick_value if quick else full_value)

    from tests.fixtures.eventgrid import EventGridSink

    quiet_local_tls_warnings()
    sink = EventGridSink()
    sink.start()
    try:
        with (
            tempfile.TemporaryDirectory(prefix="orderflow-bench-scale-") as directory,
            running_stack(Path(directory)) as stack,
        ):
            configure_this_process(
                {
                    **stack.app_settings(),
                    **sink.app_settings(),
                    "PAYMENT_WEBHOOK_SECRET": "bench-secret",  # pragma: allowlist secret
                    "PAYMENT_WEBHOOK_SECRET_PREVIOUS": "",
                    "KEY_VAULT_URL": "",
                    # A worker with threads for 16 concurrent callers: the Cosmos bulkhead
                    # (shared.resilience, two thirds of the threads) then admits all of them.
                    "PYTHON_THREADPOOL_THREAD_COUNT": str(WORKERS * 3 // 2 + 1),
                }
            )
            new_sku(1)  # the clients read account and container metadata once
            counter = RequestCounter(
                cosmos_port=stack.ports.cosmos, eventgrid_port=urlsplit(sink.endpoint).port or 0
            )
            figures: list[Figure] = []
            with counter.installed():
                figures += hot_sku(counter, size("reservations", 200, 800))
                figures += fulfillment_figures(counter, size("fulfilments", 100, 400))
            figures += many_orders_one_sku(size("orders", 3_000, 30_000))
            rows = size("rows", 100_000, 1_000_000)
            figures += import_run(rows, Path(directory))
            figures += import_run(min(rows, 10_000), Path(directory), lines_per_order=1)
            figures += log_volume(size("probes", 3, 10))
            return figures
    finally:
        sink.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    add_arguments(parser)
    for name, what in (
        ("reservations", "hot-SKU reservations per design"),
        ("fulfilments", "orders fulfilled per design for requests and latency"),
        ("orders", "orders on one SKU for the item-size run (30,000; 3,000 quick)"),
        ("rows", "rows of the imported file (1,000,000; 100,000 quick)"),
        ("probes", "readiness probes counted"),
    ):
        parser.add_argument(f"--{name}", type=int, default=None, help=what)
    args = parser.parse_args(argv)
    stop_on_sigterm()
    sizes = {
        name: getattr(args, name)
        for name in ("reservations", "fulfilments", "orders", "rows", "probes")
    }
    report(run(args.quick, sizes), args.figures_out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
