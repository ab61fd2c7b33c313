"""The Service Bus broker restarted in the middle of the fulfillment flow, over the running local
host: orders paid before the restart (their commands queued or in flight), while the broker is
down (Event Grid's delivery to the router fails and is retried) and after it is back all end
fulfilled exactly once: none lost, none fulfilled twice, stock taken once per order, nothing
dead-lettered or parked.

The broker keeps its messages on disk like Service Bus (localdev/servicebus/journal.py); locks
held at the restart are lost, so commands that were in flight are delivered again and must be
recognised as done. The stack and host are this module's own: stopping the broker must not
disturb the session's.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from azure.cosmos import CosmosClient
from azure.servicebus import ServiceBusClient, ServiceBusSubQueue

from shared.names import FULFILLMENT_PARKED_QUEUE, FULFILLMENT_QUEUE, INVENTORY_CONTAINER
from shared.repositories.reservations import CosmosStockReservations, holder_key
from shared.webhooks import signed_payment_succeeded
from tests.fixtures.app import (
    REPO_ROOT,
    SAMPLE_SETTINGS,
    WEBHOOK_SECRET,
    IsolatedApp,
    app_environment,
)
from tests.fixtures.host import HostProcess, run_local_host
from tests.fixtures.stack import start_stack_on_free_ports

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]

JSON = {"Content-Type": "application/json"}
ORDERS_PER_PHASE = 8
STOCK = 100
SKUS_PER_ORDER = 12
DOWNTIME_SECONDS = 2.0
# Event Grid keeps retrying the router's delivery well past the broker's downtime.
EVENTGRID_RETRY_DELAYS = "0.5,1,2,4,8,15"


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[IsolatedApp]:
    workdir = tmp_path_factory.mktemp("servicebus-restart")
    stack = start_stack_on_free_ports(workdir, eventgrid_retry_delays=EVENTGRID_RETRY_DELAYS)
    try:
        stack.provision()
        with run_local_host(
            REPO_ROOT,
            workdir / "host.log",
            env=app_environment(stack, None),
            args=["--settings", str(SAMPLE_SETTINGS)],
            port=stack.ports.functions,
        ) as host:
            yield IsolatedApp(stack, host)
    finally:
        stack.stop()


def place(host: HostProcess, skus: list[str], quantity: int) -> dict[str, Any]:
    """An order with a line for each SKU: fulfilling it takes a while (a reservation per
    line), so its command is still in the broker when the broker stops."""
    lines = [{"sku": sku, "quantity": quantity, "unitPrice": "3.00"} for sku in skus]
    response = host.request(
        "POST",
        f"/api/v1/customers/sb-{uuid.uuid4().hex[:8]}/orders",
        body=json.dumps({"lines": lines, "currency": "EUR"}).encode(),
        headers=JSON,
    )
    assert response.status == 201, response.body
    order: dict[str, Any] = response.json()
    return order


def pay(host: HostProcess, order: dict[str, Any]) -> None:
    body, headers = signed_payment_succeeded(order, WEBHOOK_SECRET)
    response = host.request("POST", "/api/v1/payments/webhook", body=body, headers=headers)
    assert response.status == 200, response.body


def pay_all(host: HostProcess, orders: list[dict[str, Any]]) -> None:
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda order: pay(host, order), orders))


def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"{what} not within {timeout:.0f} s"
        time.sleep(0.1)


def test_orders_paid_around_a_broker_restart_are_all_fulfilled_exactly_once(
    app: IsolatedApp,
) -> None:
    host, stack = app.host, app.stack
    settings = stack.app_settings()
    cosmos = CosmosClient(
        settings["COSMOS_ENDPOINT"], settings["COSMOS_KEY"], enable_endpoint_discovery=False
    )
    database = cosmos.get_database_client("orderflow")
    orders_container = database.get_container_client("orders")
    inventory = database.get_container_client(INVENTORY_CONTAINER)
    skus = [f"SKU-{uuid.uuid4().hex[:10]}" for _ in range(SKUS_PER_ORDER)]
    for sku in skus:
        response = host.request(
            "PUT",
            f"/api/v1/inventory/{sku}",
            body=json.dumps({"available": STOCK}).encode(),
            headers=JSON,
        )
        assert response.status == 200, response.body
    phases = {
        phase: [place(host, skus, 1 + i % 2) for i in range(ORDERS_PER_PHASE)]
        for phase in ("before", "during", "after")
    }
    everything = [order for orders in phases.values() for order in orders]

    def statuses() -> dict[str, str]:
        found = orders_container.query_items(
            "SELECT c.id, c.status FROM c WHERE ARRAY_CONTAINS(@ids, c.id)",
            parameters=[{"name": "@ids", "value": [o["id"] for o in everything]}],
            enable_cross_partition_query=True,
        )
        return {item["id"]: item["status"] for item in found}

    with (
        ServiceBusClient.from_connection_string(stack.servicebus_connection_string) as bus,
        bus.get_queue_receiver(FULFILLMENT_QUEUE) as watcher,
    ):
        pay_all(host, phases["before"])
        # Stop the broker as soon as it holds commands (queued, or locked while being fulfilled).
        wait_until(lambda: bool(watcher.peek_messages(50, sequence_number=1)), 30, "commands")
        stack.stop_service("servicebus")
        fulfilled_at_stop = list(statuses().values()).count("fulfilled")
    pay_all(host, phases["during"])
    time.sleep(DOWNTIME_SECONDS)
    stack.start_service("servicebus")
    pay_all(host, phases["after"])

    wait_until(
        lambda: list(statuses().values()).count("fulfilled") == len(everything),
        150,
        "every order fulfilled",
    )
    with ServiceBusClient.from_connection_string(stack.servicebus_connection_string) as bus:

        def peek(queue: str, **options: Any) -> list[Any]:
            with bus.get_queue_receiver(queue, **options) as receiver:
                return list(receiver.peek_messages(max_message_count=500, sequence_number=1))

        wait_until(lambda: not peek(FULFILLMENT_QUEUE), 60, "the fulfillment queue drained")
        dead = peek(FULFILLMENT_QUEUE, sub_queue=ServiceBusSubQueue.DEAD_LETTER)
        parked = peek(FULFILLMENT_PARKED_QUEUE)
    broker_log = stack.log_path("servicebus").read_text(encoding="utf-8", errors="replace")
    restored = int(broker_log.rsplit("restored ", 1)[-1].split(" ", 1)[0])
    print(
        f"\nbroker restart: {len(everything)} orders; when the broker stopped "
        f"{fulfilled_at_stop} of the {ORDERS_PER_PHASE} paid before were fulfilled and it held "
        f"{restored} commands, which it still had after the restart"
    )

    assert restored >= 1, "the broker held no command when it stopped: not mid-flow"
    assert dead == []
    assert parked == []
    for sku in skus:
        document = inventory.read_item(sku, partition_key=sku)
        expected = {
            holder_key(o["customerId"], o["id"]): o["lines"][0]["quantity"] for o in everything
        }
        holdings = CosmosStockReservations(inventory).holdings(sku)
        held = {holder: h.quantity for holder, h in holdings.items()}
        assert held == expected, sku
        assert document["available"] == STOCK - sum(expected.values())
    for order in everything:
        document = orders_container.read_item(order["id"], partition_key=order["customerId"])
        history = [entry["status"] for entry in document["history"]]
        assert history == ["pending", "paid", "fulfilled"], (order["id"], history)
        quantity = order["lines"][0]["quantity"]
        assert document["fulfillment"]["reserved"] == dict.fromkeys(skus, quantity)
        assert document["outbox"] == []
