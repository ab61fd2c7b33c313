"""What each API operation and each imported row costs in Cosmos DB requests and Event Grid
publishes, beside the fewest raw SDK calls that make the same change.

    .venv/bin/python -m benchmarks.cost [--quick] [--rows 2000]

Starts its own stack and a local Event Grid topic endpoint (free ports; stopped at the end),
makes this process the app (the worker's view: settings in the environment) and calls the
blueprints' function objects, as the host does, while :mod:`benchmarks.request_counter`
counts the SDK requests at the transport in front of the real stand-ins.

Operations: POST order (with ``Idempotency-Key``), GET order, list page, cancel, payment
webhook, PUT inventory; then an import of a ``--rows`` CSV (two lines per order): the file
pass (blob -> chunks on the storage queue) and every chunk (queue -> orders), per row.

The floor of each is measured the same way on the raw SDKs: create_item, read_item, one
query page, a conditional patch (cancel, pay), upsert_item, one ``send`` of one event per
change; for imports, create_item and one publish per order of the file. The floor has none
of the app's guarantees (idempotent retries, an outbox so no event is lost, lifecycle and
ETag checks, import status); the goals are the budgets docs/ARCHITECTURE.md sets for them.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.app_calls import WEBHOOK_SECRET, AppApi
from benchmarks.local_app import (
    configure_this_process,
    quiet_local_tls_warnings,
    running_stack,
    stop_on_sigterm,
)
from benchmarks.request_counter import COSMOS, EVENT_GRID, RequestCounter
from benchmarks.table import Figure, add_arguments, report
from tests.fixtures.eventgrid import EventGridSink

CSV_HEADER = "external_id,customer_id,sku,quantity,unit_price,currency\n"
FLOOR_SAMPLE_ORDERS = 10

# The design's budgets (docs/ARCHITECTURE.md): (Cosmos requests, Event Grid publishes).
# POST: create + outbox clear; cancel: read + conditional replace + outbox clear; webhook: the
# processed-event check, read, conditional replace, outbox clear, the processed-event record;
# PUT inventory: one patch of the stock level, a create when the SKU is new (the patch misses).
BUDGETS: dict[str, tuple[float, float]] = {
    "POST order": (2, 1),
    "GET order": (1, 0),
    "list page": (1, 0),
    "cancel": (3, 1),
    "payment webhook": (5, 1),
    "PUT inventory": (1, 0),
    "PUT inventory, new SKU": (2, 0),
}
# Per imported row, two rows an order: create + outbox clear per order (1 a row), plus the
# import status writes per chunk; one Order.Placed event per order.
IMPORT_ROW_BUDGET = (1.1, 0.5)


@dataclass(frozen=True)
class Cost:
    cosmos: float
    eventgrid: float

    @classmethod
    def of(cls, counts: Counter[str], per: float = 1) -> Cost:
        return cls(counts[COSMOS] / per, counts[EVENT_GRID] / per)


class RawSdk:
    """The floor: the fewest SDK calls that make each change, no guarantees attached."""

    def __init__(self, cosmos_endpoint: str, topic_endpoint: str, topic_key: str) -> None:
        from azure.core.credentials import AzureKeyCredential
        from azure.cosmos import CosmosClient
        from azure.eventgrid import EventGridPublisherClient

        from localdev.stack import COSMOS_EMULATOR_KEY
        from shared.names import COSMOS_DATABASE_DEFAULT, INVENTORY_CONTAINER, ORDERS_CONTAINER

        database = CosmosClient(
            cosmos_endpoint, credential=COSMOS_EMULATOR_KEY, enable_endpoint_discovery=False
        ).get_database_client(COSMOS_DATABASE_DEFAULT)
        self.orders = database.get_container_client(ORDERS_CONTAINER)
        self.inventory = database.get_container_client(INVENTORY_CONTAINER)
        self.topic = EventGridPublisherClient(topic_endpoint, AzureKeyCredential(topic_key))

    def publish(self, subject: str) -> None:
        from azure.core.messaging import CloudEvent

        self.topic.send(
            [
                CloudEvent(
                    source="/orderflow", type="Orderflow.Order.Changed", subject=subject, data={}
                )
            ]
        )

    def create(self, customer: str) -> dict[str, Any]:
        document = {"id": uuid.uuid4().hex, "customerId": customer, "status": "pending"}
        created: dict[str, Any] = self.orders.create_item(body=document)
        self.publish(f"customers/{customer}/orders/{document['id']}")
        return created

    def read(self, order: dict[str, Any]) -> None:
        self.orders.read_item(item=order["id"], partition_key=order["customerId"])

    def first_page(self, customer: str) -> None:
        pages = self.orders.query_items(
            "SELECT * FROM c ORDER BY c._ts DESC", partition_key=customer, max_item_count=25
        ).by_page()
        list(next(pages))

    def set_status(self, order: dict[str, Any], status: str, required: str) -> None:
        self.orders.patch_item(
            item=order["id"],
            partition_key=order["customerId"],
            patch_operations=[{"op": "set", "path": "/status", "value": status}],
            filter_predicate=f"FROM c WHERE c.status = '{required}'",
        )
        self.publish(f"customers/{order['customerId']}/orders/{order['id']}")

    def set_stock(self, sku: str) -> None:
        self.inventory.upsert_item(body={"id": sku, "sku": sku, "available": 10})


def counted(counter: RequestCounter | None, action: Callable[[], object]) -> Cost:
    """Run ``action``; its cost when a counter is given (``None`` warms clients up)."""
    if counter is None:
        action()
        return Cost(0, 0)
    return Cost.of(counter.measure(action))


def api_round(api: AppApi, counter: RequestCounter | None) -> dict[str, Cost]:
    """Each operation once, on fresh objects."""

    def measure(action: Callable[[], object]) -> Cost:
        return counted(counter, action)

    customer = f"cost-{uuid.uuid4().hex[:10]}"
    created: list[dict[str, Any]] = []
    costs = {"POST order": measure(lambda: created.append(api.post_order(customer)))}
    order = created[0]
    costs["GET order"] = measure(lambda: api.get_order(order))
    costs["list page"] = measure(lambda: api.list_page(customer))
    costs["cancel"] = measure(lambda: api.cancel(order))
    unpaid = api.post_order(customer)
    costs["payment webhook"] = measure(lambda: api.pay(unpaid))
    sku = f"SKU-{uuid.uuid4().hex[:8]}"
    costs["PUT inventory, new SKU"] = measure(lambda: api.put_inventory(sku))
    costs["PUT inventory"] = measure(lambda: api.put_inventory(sku))
    return costs


def raw_round(raw: RawSdk, counter: RequestCounter | None) -> dict[str, Cost]:
    """The floor of each operation in :func:`api_round`."""

    def measure(action: Callable[[], object]) -> Cost:
        return counted(counter, action)

    customer = f"raw-{uuid.uuid4().hex[:10]}"
    created: list[dict[str, Any]] = []
    costs = {"POST order": measure(lambda: created.append(raw.create(customer)))}
    order = created[0]
    costs["GET order"] = measure(lambda: raw.read(order))
    costs["list page"] = measure(lambda: raw.first_page(customer))
    costs["cancel"] = measure(lambda: raw.set_status(order, "cancelled", "pending"))
    unpaid = raw.create(customer)
    costs["payment webhook"] = measure(lambda: raw.set_status(unpaid, "paid", "pending"))
    sku = f"SKU-{uuid.uuid4().hex[:8]}"
    costs["PUT inventory, new SKU"] = measure(lambda: raw.set_stock(sku))
    costs["PUT inventory"] = measure(lambda: raw.set_stock(sku))
    return costs


def average(rounds: list[dict[str, Cost]]) -> dict[str, Cost]:
    return {
        name: Cost(
            sum(r[name].cosmos for r in rounds) / len(rounds),
            sum(r[name].eventgrid for r in rounds) / len(rounds),
        )
        for name in rounds[0]
    }


def partner_file(rows: int, tag: str) -> bytes:
    """A CSV like a partner's: two lines an order, 50 customers, 20 SKUs."""
    lines = [CSV_HEADER]
    for row in range(rows):
        order = row // 2
        lines.append(
            f"{tag}-{order:06d},imp-{tag}-{order % 50:02d},SKU-{row % 20:02d},"
            f"{1 + row % 3},{(row % 90) + 1}.50,EUR\n"
        )
    return "".join(lines).encode()


def run_import(name: str) -> int:
    """The file pass (for the BlobCreated event of the upload), then every chunk it queued,
    through the blueprint's two functions."""
    import json

    import azure.functions as func

    from blueprints import imports
    from localdev.eventgrid.storage_events import blob_created_event
    from shared.clients import get_blob_service, get_queue
    from shared.names import IMPORT_CHUNKS_QUEUE, IMPORTS_BLOB_CONTAINER

    import_file = imports.import_order_file.build().get_user_function()
    create_orders = imports.create_imported_orders.build().get_user_function()
    service = get_blob_service()
    properties = service.get_blob_client(IMPORTS_BLOB_CONTAINER, name).get_blob_properties()
    event = blob_created_event(properties, IMPORTS_BLOB_CONTAINER, service.url, 1)
    import_file(func.QueueMessage(body=json.dumps(event).encode()), None)
    queue = get_queue(IMPORT_CHUNKS_QUEUE)
    chunks = 0
    while batch := list(queue.receive_messages(max_messages=32, visibility_timeout=300)):
        for message in batch:
            create_orders(func.QueueMessage(body=message.content), None)
            queue.delete_message(message)
            chunks += 1
    return chunks


def import_cost(api_counter: RequestCounter, raw: RawSdk, rows: int) -> tuple[Cost, Cost]:
    from shared.clients import get_blob_service
    from shared.names import IMPORTS_BLOB_CONTAINER
    from shared.repositories.import_runs import CosmosImportRunRepository

    tag = uuid.uuid4().hex[:6]
    name = f"cost-{tag}.csv"
    get_blob_service().get_blob_client(IMPORTS_BLOB_CONTAINER, name).upload_blob(
        partner_file(rows, tag), overwrite=True
    )
    chunks: list[int] = []
    counts = api_counter.measure(lambda: chunks.append(run_import(name)))
    status = CosmosImportRunRepository().read(name)
    document = status.document if status is not None else {}
    if (document.get("state"), document.get("accepted")) != ("completed", rows):
        raise RuntimeError(f"import {name} did not complete with {rows} rows: {document}")
    print(
        f"  import of {rows:,} rows: {chunks[0]} chunks, {counts[COSMOS]} Cosmos requests, "
        f"{counts[EVENT_GRID]} publishes",
        flush=True,
    )
    sample_rows = 2 * FLOOR_SAMPLE_ORDERS

    def raw_orders() -> None:
        for number in range(FLOOR_SAMPLE_ORDERS):
            raw.create(f"rawimp-{tag}-{number}")

    floor = api_counter.measure(raw_orders)
    return Cost.of(counts, rows), Cost.of(floor, sample_rows)


def figures(
    app: dict[str, Cost], floor: dict[str, Cost], row: Cost, row_floor: Cost
) -> list[Figure]:
    result: list[Figure] = []
    entries = [(f"{name}", app[name], floor[name], BUDGETS[name]) for name in BUDGETS]
    entries.append(("imported row", row, row_floor, IMPORT_ROW_BUDGET))
    for name, cost, cost_floor, (cosmos_budget, eventgrid_budget) in entries:
        result.append(
            Figure(
                f"{name}: Cosmos requests",
                cost.cosmos,
                cost_floor.cosmos,
                "req",
                cosmos_budget,
                "value",
            )
        )
        result.append(
            Figure(
                f"{name}: Event Grid publishes",
                cost.eventgrid,
                cost_floor.eventgrid,
                "pub",
                eventgrid_budget,
                "value",
            )
        )
    return result


def run(rounds: int, rows: int) -> list[Figure]:
    quiet_local_tls_warnings()
    sink = EventGridSink()
    sink.start()
    try:
        with (
            tempfile.TemporaryDirectory(prefix="orderflow-bench-cost-") as directory,
            running_stack(Path(directory)) as stack,
        ):
            configure_this_process(
                {
                    **stack.app_settings(),
                    **sink.app_settings(),
                    "PAYMENT_WEBHOOK_SECRET": WEBHOOK_SECRET,
                    "PAYMENT_WEBHOOK_SECRET_PREVIOUS": "",
                    "KEY_VAULT_URL": "",
                }
            )
            api = AppApi()
            raw = RawSdk(stack.cosmos_endpoint, sink.endpoint, sink.key)
            # First use reads account and container metadata; not an operation's cost.
            api_round(api, None)
            raw_round(raw, None)
            counter = RequestCounter(
                cosmos_port=stack.ports.cosmos, eventgrid_port=_port(sink.endpoint)
            )
            with counter.installed():
                app_costs = average([api_round(api, counter) for _ in range(rounds)])
                floor_costs = average([raw_round(raw, counter) for _ in range(rounds)])
                row, row_floor = import_cost(counter, raw, rows)
    finally:
        sink.stop()
    print(f"  API operations: {rounds} rounds each, app and raw SDK", flush=True)
    return figures(app_costs, floor_costs, row, row_floor)


def _port(url: str) -> int:
    from urllib.parse import urlsplit

    port = urlsplit(url).port
    if port is None:
        raise ValueError(f"no port in {url}")
    return port


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    add_arguments(parser)
    parser.add_argument("--rows", type=int, default=None, help="rows of the imported file")
    args = parser.parse_args(argv)
    stop_on_sigterm()
    rows = args.rows or (200 if args.quick else 2000)
    report(run(rounds=1 if args.quick else 3, rows=rows), args.figures_out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
