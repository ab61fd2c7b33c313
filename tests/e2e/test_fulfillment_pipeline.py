"""Event processing end to end, over the running local host: an order created and paid over
HTTP is fulfilled (or backordered) through Event Grid and Service Bus with no manual step; 200
orders race for 50 units with every command delivered twice, some out of order; poison
messages are parked at their first delivery with a readable reason."""

from __future__ import annotations

import json
import random
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from azure.cosmos import ContainerProxy, CosmosClient
from azure.servicebus import ServiceBusClient, ServiceBusMessage, ServiceBusSubQueue

from shared.events import event_id
from shared.models import OrderStatus
from shared.names import (
    FULFILLMENT_PARKED_QUEUE,
    FULFILLMENT_QUEUE,
    INVENTORY_CONTAINER,
    ORDERS_CONTAINER,
)
from shared.repositories.reservations import CosmosStockReservations
from shared.services.fulfillment import FULFIL_ORDER
from shared.webhooks import signed_payment_succeeded
from tests.fixtures.app import WEBHOOK_SECRET, IsolatedApp
from tests.fixtures.host import HostProcess, HttpResult

pytestmark = pytest.mark.e2e

JSON = {"Content-Type": "application/json"}
TERMINAL = {"fulfilled", "backordered"}


@pytest.fixture(scope="module")
def host(pipeline_app: IsolatedApp) -> HostProcess:
    return pipeline_app.host


@pytest.fixture(scope="module")
def servicebus(pipeline_app: IsolatedApp) -> Iterator[ServiceBusClient]:
    client = ServiceBusClient.from_connection_string(
        pipeline_app.stack.servicebus_connection_string
    )
    with client:
        yield client


@pytest.fixture(scope="module")
def cosmos(pipeline_app: IsolatedApp) -> Iterator[CosmosClient]:
    settings = pipeline_app.stack.app_settings()
    client = CosmosClient(
        settings["COSMOS_ENDPOINT"], settings["COSMOS_KEY"], enable_endpoint_discovery=False
    )
    with client:
        yield client


def container(cosmos: CosmosClient, name: str) -> ContainerProxy:
    return cosmos.get_database_client("orderflow").get_container_client(name)


def set_stock(host: HostProcess, sku: str, available: int) -> None:
    response = host.request(
        "PUT",
        f"/api/v1/inventory/{sku}",
        body=json.dumps({"available": available}).encode(),
        headers=JSON,
    )
    assert response.status == 200, response.body


def stock(host: HostProcess, sku: str) -> int:
    available: int = host.request("GET", f"/api/v1/inventory/{sku}").json()["available"]
    return available


def place(host: HostProcess, customer: str, lines: list[tuple[str, int]]) -> dict[str, Any]:
    body = {
        "lines": [{"sku": sku, "quantity": q, "unitPrice": "2.50"} for sku, q in lines],
        "currency": "EUR",
    }
    response = host.request(
        "POST", f"/api/v1/customers/{customer}/orders", body=json.dumps(body).encode(), headers=JSON
    )
    assert response.status == 201, response.body
    order: dict[str, Any] = response.json()
    return order


def pay(host: HostProcess, order: dict[str, Any], traceparent: str | None = None) -> HttpResult:
    body, headers = signed_payment_succeeded(order, WEBHOOK_SECRET)
    if traceparent:
        headers["traceparent"] = traceparent
    response = host.request("POST", "/api/v1/payments/webhook", body=body, headers=headers)
    assert response.status == 200, response.body
    return response


def status_of(host: HostProcess, order: dict[str, Any]) -> str:
    path = f"/api/v1/customers/{order['customerId']}/orders/{order['id']}"
    status: str = host.request("GET", path).json()["status"]
    return status


def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> float:
    started = time.monotonic()
    while not condition():
        assert time.monotonic() - started < timeout, f"{what} not within {timeout:.0f} s"
        time.sleep(0.05)
    return time.monotonic() - started


def peek_all(client: ServiceBusClient, queue: str, **options: Any) -> list[Any]:
    with client.get_queue_receiver(queue, **options) as receiver:
        return list(receiver.peek_messages(max_message_count=500))


def new_sku() -> str:
    return f"SKU-{uuid.uuid4().hex[:10]}"


def test_a_paid_order_is_fulfilled_within_seconds_in_the_payments_trace(
    host: HostProcess, cosmos: CosmosClient
) -> None:
    sku = new_sku()
    set_stock(host, sku, 5)
    order = place(host, f"c-{uuid.uuid4().hex[:10]}", [(sku, 2)])
    trace_id = uuid.uuid4().hex
    pay(host, order, traceparent=f"00-{trace_id}-{uuid.uuid4().hex[:16]}-01")

    took = wait_until(lambda: status_of(host, order) == "fulfilled", 15, "fulfillment")

    print(f"\npaid -> fulfilled over the local host in {took:.2f} s")
    assert stock(host, sku) == 3
    document = container(cosmos, ORDERS_CONTAINER).read_item(
        order["id"], partition_key=order["customerId"]
    )
    # The fulfillment ran in the trace the payment request started (HTTP -> Event Grid ->
    # Service Bus -> fulfillment).
    assert document["fulfillment"]["traceparent"].split("-")[1] == trace_id
    assert document["fulfillment"]["reserved"] == {sku: 2}


def test_an_order_without_enough_stock_is_backordered_and_stock_is_unchanged(
    host: HostProcess,
) -> None:
    plenty, scarce = new_sku(), new_sku()
    set_stock(host, plenty, 10)
    set_stock(host, scarce, 1)
    order = place(host, f"c-{uuid.uuid4().hex[:10]}", [(plenty, 3), (scarce, 2)])
    pay(host, order)

    wait_until(lambda: status_of(host, order) == "backordered", 15, "backorder")

    assert (stock(host, plenty), stock(host, scarce)) == (10, 1)


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"{not json", "MalformedCommand"),
        (b'{"type": "Orderflow.Fulfillment.FulfilOrder", "version": 2}', "MalformedCommand"),
        (
            json.dumps(
                {
                    "type": FULFIL_ORDER,
                    "version": 1,
                    "customerId": "nobody",
                    "orderId": "no-such-order",
                    "eventId": "e",
                }
            ).encode(),
            "UnknownOrder",
        ),
    ],
)
def test_a_poison_message_is_parked_at_its_first_delivery_with_a_readable_reason(
    host: HostProcess, servicebus: ServiceBusClient, body: bytes, reason: str
) -> None:
    message_id = f"poison-{uuid.uuid4().hex}"
    with servicebus.get_queue_sender(FULFILLMENT_QUEUE) as sender:
        sender.send_messages(ServiceBusMessage(body, message_id=message_id))

    def parked() -> list[Any]:
        return [
            m for m in peek_all(servicebus, FULFILLMENT_PARKED_QUEUE) if m.message_id == message_id
        ]

    wait_until(lambda: bool(parked()), 15, "parking")

    [message] = parked()
    properties = {
        (k.decode() if isinstance(k, bytes) else k): (v.decode() if isinstance(v, bytes) else v)
        for k, v in (message.application_properties or {}).items()
    }
    assert properties["DeadLetterReason"] == reason
    assert properties["DeadLetterErrorDescription"]
    assert properties["OriginalDeliveryCount"] == 1, "parked at its first delivery"
    assert b"".join(message.body) == body
    dead = peek_all(servicebus, FULFILLMENT_QUEUE, sub_queue=ServiceBusSubQueue.DEAD_LETTER)
    assert message_id not in {m.message_id for m in dead}


def test_200_orders_for_50_units_paid_concurrently_with_duplicates_out_of_order(
    host: HostProcess, servicebus: ServiceBusClient, cosmos: CosmosClient
) -> None:
    sku = new_sku()
    set_stock(host, sku, 50)
    started = time.perf_counter()
    with ThreadPoolExecutor(8) as pool:
        orders = list(pool.map(lambda i: place(host, f"load-{i % 20}", [(sku, 1)]), range(200)))
    placed = time.perf_counter()
    # A second copy of every command, with another message id so duplicate detection lets it
    # through, sent in random order while the pipeline's own commands are still flowing: every
    # order is fulfilled twice, in an order unrelated to the payments.
    copies = []
    for order in orders:
        paid_event = event_id(order["customerId"], order["id"], OrderStatus.PAID)
        copies.append(
            ServiceBusMessage(
                json.dumps(
                    {
                        "type": FULFIL_ORDER,
                        "version": 1,
                        "customerId": order["customerId"],
                        "orderId": order["id"],
                        "eventId": paid_event,
                    }
                ),
                message_id=f"copy-{paid_event}",
            )
        )
    random.Random(11).shuffle(copies)
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda order: pay(host, order), orders))
    with servicebus.get_queue_sender(FULFILLMENT_QUEUE) as sender:
        for start in range(0, len(copies), 25):
            sender.send_messages(copies[start : start + 25])
    paid = time.perf_counter()

    def statuses() -> list[str]:
        query = "SELECT VALUE c.status FROM c WHERE ARRAY_CONTAINS(@ids, c.id)"
        return [
            str(status)
            for status in container(cosmos, ORDERS_CONTAINER).query_items(
                query,
                parameters=[{"name": "@ids", "value": [o["id"] for o in orders]}],
                enable_cross_partition_query=True,
            )
        ]

    wait_until(lambda: sum(s in TERMINAL for s in statuses()) == 200, 180, "all orders terminal")
    done = time.perf_counter()
    # Let the duplicates drain, then check nothing is left, parked or dead-lettered.
    wait_until(lambda: not peek_all(servicebus, FULFILLMENT_QUEUE), 60, "queue drained")
    final = statuses()
    inventory = container(cosmos, INVENTORY_CONTAINER).read_item(sku, partition_key=sku)
    dead = peek_all(servicebus, FULFILLMENT_QUEUE, sub_queue=ServiceBusSubQueue.DEAD_LETTER)
    ids = {str(c.message_id) for c in copies}
    ids |= {i.removeprefix("copy-") for i in ids}
    parked = [m for m in peek_all(servicebus, FULFILLMENT_PARKED_QUEUE) if m.message_id in ids]
    holdings = CosmosStockReservations(container(cosmos, INVENTORY_CONTAINER)).holdings(sku)
    reserved = sum(held.quantity for held in holdings.values())
    print(
        f"\nreliability (end to end): 200 orders, 50 in stock, 400 commands: "
        f"fulfilled={final.count('fulfilled')} backordered={final.count('backordered')} "
        f"final stock={inventory['available']} reserved={reserved} "
        f"dead-lettered={len(dead)} parked={len(parked)}; "
        f"placed in {placed - started:.1f} s, paid in {paid - placed:.1f} s, "
        f"all terminal {done - paid:.1f} s after the last payment"
    )
    assert final.count("fulfilled") == 50
    assert final.count("backordered") == 150
    assert inventory["available"] == 0
    assert reserved == 50
    assert dead == []
    assert parked == []
