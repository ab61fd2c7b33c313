"""Fulfillment on the real Cosmos stand-in: reservations, backorders, duplicates, poison
commands, a crash after every step, and 60 concurrent orders for 15 units of one SKU (the
200-for-50 run is end to end: tests/e2e/test_fulfillment_pipeline.py)."""

from __future__ import annotations

import random
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any
from unittest.mock import ANY

import pytest

from shared.errors import OrderflowError
from shared.events import event_id
from shared.models import OrderDraft, OrderStatus
from shared.publisher import EventGridPublisher
from shared.repositories.inventory import CosmosInventoryRepository
from shared.repositories.orders import CosmosOrderRepository, StoredOrder
from shared.repositories.reservations import CosmosStockReservations, holder_key
from shared.services.fulfillment import (
    FULFIL_ORDER,
    FulfillmentOutcome,
    FulfillmentService,
    FulfilOrderCommand,
    OrderNotReadyError,
    PoisonMessageError,
    PoisonReason,
    parse_command,
)
from shared.services.orders import OrderService
from tests.fixtures.eventgrid import EventGridSink

pytestmark = pytest.mark.integration


class SimulatedCrash(Exception):  # noqa: N818 - it is what it simulates
    """The process dies here (nothing after this step runs)."""


@dataclass
class World:
    orders: OrderService
    repository: CosmosOrderRepository
    reservations: CosmosStockReservations
    inventory: CosmosInventoryRepository
    fulfillment: FulfillmentService
    events: EventGridSink

    def sku(self, available: int, name: str | None = None) -> str:
        sku = f"SKU-{name or uuid.uuid4().hex[:10]}"
        self.inventory.set_available(sku, available, "2026-11-21T12:00:00Z")
        return sku

    def paid_order(self, lines: list[tuple[str, int]]) -> StoredOrder:
        draft = OrderDraft.model_validate(
            {
                "lines": [{"sku": s, "quantity": q, "unitPrice": "1.00"} for s, q in lines],
                "currency": "EUR",
            }
        )
        placed = self.orders.place(f"c-{uuid.uuid4().hex[:12]}", draft).order
        return self.orders.transition(placed, OrderStatus.PAID)

    def stock(self, sku: str) -> tuple[int, dict[str, Any]]:
        container = self.inventory._container
        document = container.read_item(sku, partition_key=sku)
        holdings = self.reservations.holdings(sku)  # reservation items beside the stock item
        return int(document["available"]), {
            holder: {"quantity": held.quantity, "at": held.at} for holder, held in holdings.items()
        }

    def status(self, order: StoredOrder) -> str:
        return str(self.repository.get(order.customer_id, order.id).document["status"])


def command_for(order: StoredOrder) -> FulfilOrderCommand:
    return FulfilOrderCommand.model_validate(
        {
            "type": FULFIL_ORDER,
            "version": 1,
            "customerId": order.customer_id,
            "orderId": order.id,
            "eventId": event_id(order.customer_id, order.id, OrderStatus.PAID),
        }
    )


@pytest.fixture
def world(
    app_settings: dict[str, str], events: EventGridSink, monkeypatch: pytest.MonkeyPatch
) -> World:
    for name, value in events.app_settings().items():
        monkeypatch.setenv(name, value)
    repository = CosmosOrderRepository()
    publisher = EventGridPublisher()
    orders = OrderService(repository, publisher)
    reservations = CosmosStockReservations()
    return World(
        orders,
        repository,
        reservations,
        CosmosInventoryRepository(),
        FulfillmentService(orders, repository, publisher, reservations),
        events,
    )


def held_by(world: World, order: StoredOrder, sku: str) -> int:
    return world.reservations.held(sku, holder_key(order.customer_id, order.id))


def test_a_paid_order_with_stock_is_fulfilled_and_its_stock_reserved(world: World) -> None:
    a, b = world.sku(5), world.sku(3)
    order = world.paid_order([(a, 2), (b, 3), (a, 1)])  # two lines of `a` add up
    traceparent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"

    result = world.fulfillment.fulfil(command_for(order), traceparent=traceparent)

    assert result.outcome is FulfillmentOutcome.FULFILLED
    assert world.status(order) == "fulfilled"
    holder = holder_key(order.customer_id, order.id)
    assert world.stock(a) == (2, {holder: {"quantity": 3, "at": ANY}})
    assert world.stock(b) == (0, {holder: {"quantity": 3, "at": ANY}})
    stored = world.repository.get(order.customer_id, order.id).document
    assert stored["fulfillment"]["state"] == "fulfilled"
    assert stored["fulfillment"]["reserved"] == {a: 3, b: 3}
    assert stored["outbox"] == []
    fulfilled = [
        e
        for e in world.events.of_type("Orderflow.Order.Fulfilled")
        if e["subject"].endswith(order.id)
    ]
    assert len(fulfilled) == 1
    assert fulfilled[0]["traceparent"] == traceparent


def test_a_short_line_backorders_the_order_and_gives_back_what_was_reserved(
    world: World,
) -> None:
    a, b = world.sku(5), world.sku(1)
    order = world.paid_order([(a, 4), (b, 2)])

    result = world.fulfillment.fulfil(command_for(order))

    assert result.outcome is FulfillmentOutcome.BACKORDERED
    assert world.status(order) == "backordered"
    assert world.stock(a) == (5, {})
    assert world.stock(b) == (1, {})
    progress = world.repository.get(order.customer_id, order.id).document["fulfillment"]
    assert progress["state"] == "released"
    assert progress["commandId"] == command_for(order).event_id
    assert progress["shortages"] == [{"sku": b, "requested": 2, "available": 1}]
    assert any(
        e["subject"].endswith(order.id) for e in world.events.of_type("Orderflow.Order.Backordered")
    )


def test_an_unknown_sku_backorders_the_order(world: World) -> None:
    order = world.paid_order([(f"SKU-missing-{uuid.uuid4().hex[:8]}", 1)])
    assert world.fulfillment.fulfil(command_for(order)).outcome is FulfillmentOutcome.BACKORDERED


def test_a_duplicate_command_changes_nothing(world: World) -> None:
    a = world.sku(3)
    order = world.paid_order([(a, 2)])
    world.fulfillment.fulfil(command_for(order))
    world.events.clear()

    again = world.fulfillment.fulfil(command_for(order))

    assert again.outcome is FulfillmentOutcome.ALREADY_FULFILLED
    assert world.stock(a)[0] == 1
    assert world.events.events == []


def test_a_duplicate_for_a_backordered_order_releases_nothing_twice(world: World) -> None:
    a, b = world.sku(5), world.sku(0)
    order = world.paid_order([(a, 1), (b, 1)])
    world.fulfillment.fulfil(command_for(order))

    again = world.fulfillment.fulfil(command_for(order))

    assert again.outcome is FulfillmentOutcome.RELEASED
    assert world.stock(a) == (5, {})


def test_an_unknown_order_is_poison(world: World) -> None:
    command = FulfilOrderCommand.model_validate(
        {
            "type": FULFIL_ORDER,
            "version": 1,
            "customerId": "nobody",
            "orderId": "no-such-order",
            "eventId": "e-1",
        }
    )
    with pytest.raises(PoisonMessageError) as caught:
        world.fulfillment.fulfil(command)
    assert caught.value.reason is PoisonReason.UNKNOWN_ORDER
    assert "no-such-order" in caught.value.description


def test_an_order_that_was_never_paid_is_poison_and_a_pending_one_is_retried(
    world: World,
) -> None:
    draft = OrderDraft.model_validate(
        {"lines": [{"sku": "SKU-1", "quantity": 1, "unitPrice": "1.00"}], "currency": "EUR"}
    )
    pending = world.orders.place(f"c-{uuid.uuid4().hex[:12]}", draft).order
    with pytest.raises(OrderNotReadyError):
        world.fulfillment.fulfil(command_for(pending))
    cancelled = world.orders.transition(pending, OrderStatus.CANCELLED)
    with pytest.raises(PoisonMessageError) as caught:
        world.fulfillment.fulfil(command_for(cancelled))
    assert caught.value.reason is PoisonReason.ILLEGAL_TRANSITION


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"not json",
        b"\xff\xfe",
        b"[]",
        b'{"type": "Orderflow.Fulfillment.FulfilOrder"}',
        b'{"type": "x", "version": 1, "customerId": "a", "orderId": "b", "eventId": "c"}',
        b'{"type": "Orderflow.Fulfillment.FulfilOrder", "version": 1, "customerId": "../a",'
        b' "orderId": "b", "eventId": "c"}',
        b'{"type": "Orderflow.Fulfillment.FulfilOrder", "version": 1, "customerId": "a",'
        b' "orderId": "b", "eventId": "c", "extra": 1}',
        b"{" + b'"a": ' * 5000 + b"1" + b"}" * 5000,
        b" " * (65 * 1024),
        b"[" * 60_000,
    ],
)
def test_malformed_commands_are_poison_with_a_readable_reason(body: bytes) -> None:
    with pytest.raises(PoisonMessageError) as caught:
        parse_command(body)
    assert caught.value.reason is PoisonReason.MALFORMED
    assert caught.value.description
    assert len(caught.value.description) <= 1000


# ------------------------------------------------------------------------- crash injection

FULFILLED_STEPS = ["marked", "reserved:A", "reserved:B", "transitioned", "publish"]
BACKORDERED_STEPS = ["marked", "reserved:A", "released:A", "transitioned", "publish"]


class CrashingPublisher:
    """Dies after the state change was written, before its event was published."""

    def __init__(self, inner: EventGridPublisher) -> None:
        self.inner = inner
        self.armed = False

    def publish(self, events: Any) -> None:
        if self.armed:
            self.armed = False
            raise SimulatedCrash("publish")
        self.inner.publish(events)


@pytest.mark.parametrize(
    ("scenario", "step"),
    [("fulfilled", s) for s in FULFILLED_STEPS] + [("backordered", s) for s in BACKORDERED_STEPS],
)
def test_a_crash_after_any_step_then_redelivery_keeps_the_invariants(
    world: World, scenario: str, step: str
) -> None:
    stem = uuid.uuid4().hex[:10]
    a = world.sku(4, f"{stem}-a")  # reserved first (lines are reserved in SKU order)
    b = world.sku(4 if scenario == "fulfilled" else 1, f"{stem}-b")
    order = world.paid_order([(a, 3), (b, 2)])
    publisher = CrashingPublisher(EventGridPublisher())
    orders = OrderService(world.repository, publisher)
    crashing = FulfillmentService(orders, world.repository, publisher, world.reservations)
    target = step.replace(":A", f":{a}").replace(":B", f":{b}")
    last_step_before_transition = f"reserved:{b}" if scenario == "fulfilled" else f"released:{a}"

    def checkpoint(reached: str) -> None:
        if step == "publish":
            # The next publish is the status change's: the process dies right after the write.
            publisher.armed = publisher.armed or reached == last_step_before_transition
        elif reached == target:
            raise SimulatedCrash(reached)

    with pytest.raises(SimulatedCrash):
        crashing.fulfil(command_for(order), checkpoint=checkpoint)

    # Redelivery (a healthy process), twice for good measure.
    first = world.fulfillment.fulfil(command_for(order))
    second = world.fulfillment.fulfil(command_for(order))

    stored = world.repository.get(order.customer_id, order.id).document
    if scenario == "fulfilled":
        assert stored["status"] == "fulfilled"
        assert first.outcome in (FulfillmentOutcome.FULFILLED, FulfillmentOutcome.ALREADY_FULFILLED)
        assert second.outcome is FulfillmentOutcome.ALREADY_FULFILLED
        assert (world.stock(a)[0], world.stock(b)[0]) == (1, 2)
        assert (held_by(world, order, a), held_by(world, order, b)) == (3, 2)
    else:
        assert stored["status"] == "backordered"
        assert second.outcome is FulfillmentOutcome.RELEASED
        assert world.stock(a) == (4, {})
        assert world.stock(b) == (1, {})
    statuses = [entry["status"] for entry in stored["history"]]
    assert not {"fulfilled", "backordered"} <= set(statuses)
    assert stored["outbox"] == [], "the redelivery publishes what the crash left behind"
    final_type = (
        "Orderflow.Order.Fulfilled" if scenario == "fulfilled" else ("Orderflow.Order.Backordered")
    )
    assert [e for e in world.events.of_type(final_type) if e["subject"].endswith(order.id)]


# ------------------------------------------------------------------------- reliability


def test_concurrent_orders_for_scarce_stock_with_duplicates_out_of_order(world: World) -> None:
    sku = world.sku(15)
    started = time.perf_counter()
    with ThreadPoolExecutor(8) as pool:
        orders = list(pool.map(lambda _: world.paid_order([(sku, 1)]), range(60)))
    deliveries = [command_for(order) for order in orders] * 2  # every command twice
    random.Random(7).shuffle(deliveries)  # and out of order
    failures: list[BaseException] = []
    lock = threading.Lock()

    def deliver(command: FulfilOrderCommand) -> None:
        for _ in range(10):  # a transient failure is redelivered, as the broker would
            try:
                world.fulfillment.fulfil(command)
                return
            except OrderflowError as error:
                last = error
        with lock:
            failures.append(last)

    placed = time.perf_counter()
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(deliver, deliveries))
    elapsed = time.perf_counter() - placed

    statuses = [world.status(order) for order in orders]
    available, reservations = world.stock(sku)
    fulfilled = statuses.count("fulfilled")
    backordered = statuses.count("backordered")
    print(
        f"\nreliability (service level): 60 orders, 15 in stock, 120 deliveries: "
        f"fulfilled={fulfilled} backordered={backordered} final stock={available} "
        f"reserved={sum(r['quantity'] for r in reservations.values())} "
        f"failed deliveries={len(failures)}; placing {placed - started:.1f} s, "
        f"fulfilling {elapsed:.1f} s"
    )
    assert failures == []
    assert (fulfilled, backordered, available) == (15, 45, 0)
    fulfilled_holders = {
        holder_key(o.customer_id, o.id)
        for o, s in zip(orders, statuses, strict=True)
        if s == "fulfilled"
    }
    assert set(reservations) == fulfilled_holders
