"""FulfillmentService's branches and checkpoints, on in-memory fakes of its collaborators
(tests/fixtures/fakes.py). The same service against the Cosmos stand-in, with real
concurrency and crashes: tests/integration/test_fulfillment_service.py and the property tests."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from shared.errors import PreconditionFailedError
from shared.metrics import FULFILLMENT_LATENCY_SECONDS
from shared.models import OrderDraft, OrderStatus
from shared.repositories.orders import StoredOrder
from shared.repositories.reservations import holder_key
from shared.services.fulfillment import (
    FULFIL_ORDER,
    MAX_ROUNDS,
    FulfillmentOutcome,
    FulfillmentService,
    FulfilOrderCommand,
    OrderNotReadyError,
    PoisonMessageError,
    PoisonReason,
    demand_of,
    parse_command,
)
from shared.services.orders import OrderService
from tests.fixtures.fakes import InMemoryOrders, InMemoryStockReservations, RecordingPublisher

NOW = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)
CUSTOMER = "alice"


class Crash(Exception):  # noqa: N818 - the process dying at a checkpoint
    pass


class World:
    """The service wired to fakes, with a fixed clock."""

    def __init__(self, stock: dict[str, int]) -> None:
        self.now = NOW
        self.orders = InMemoryOrders()
        self.publisher = RecordingPublisher()
        self.reservations = InMemoryStockReservations(stock)
        self.order_service = OrderService(self.orders, self.publisher, clock=self.clock)
        self.service = FulfillmentService(
            self.order_service, self.orders, self.publisher, self.reservations, clock=self.clock
        )

    def clock(self) -> datetime:
        return self.now

    def paid_order(self, lines: dict[str, int]) -> StoredOrder:
        draft = OrderDraft.model_validate(
            {
                "currency": "EUR",
                "lines": [
                    {"sku": sku, "quantity": quantity, "unitPrice": "2.50"}
                    for sku, quantity in lines.items()
                ],
            }
        )
        placed = self.order_service.place(CUSTOMER, draft).order
        self.now += timedelta(seconds=30)
        return self.order_service.transition(placed, OrderStatus.PAID)

    def status(self, stored: StoredOrder) -> str:
        return str(self.orders.get(stored.customer_id, stored.id).document["status"])

    def held(self, stored: StoredOrder) -> dict[str, int]:
        holder = holder_key(stored.customer_id, stored.id)
        return {
            sku: quantity
            for (sku, who), quantity in self.reservations.holdings.items()
            if who == holder
        }


def command_for(stored: StoredOrder) -> FulfilOrderCommand:
    return FulfilOrderCommand(
        type=FULFIL_ORDER,
        version=1,
        customer_id=stored.customer_id,
        order_id=stored.id,
        event_id=f"evt-{stored.id}",
    )


def test_all_lines_in_stock_fulfil_the_order_with_a_checkpoint_per_step() -> None:
    world = World({"A": 5, "B": 5})
    order = world.paid_order({"B": 1, "A": 2})
    steps: list[str] = []
    world.now += timedelta(seconds=12)

    result = world.service.fulfil(command_for(order), traceparent=None, checkpoint=steps.append)

    assert result.outcome is FulfillmentOutcome.FULFILLED
    assert steps == ["marked", "reserved:A", "reserved:B", "transitioned"]
    assert world.reservations.stock == {"A": 3, "B": 4}
    stored = world.orders.get(CUSTOMER, order.id).document
    assert stored["status"] == "fulfilled"
    assert stored["fulfillment"]["state"] == "fulfilled"
    assert stored["fulfillment"]["reserved"] == {"A": 2, "B": 1}
    assert stored["outbox"] == []  # the Fulfilled event went out
    assert world.publisher.events[-1]["type"] == "Orderflow.Order.Fulfilled"


def test_a_short_line_gives_back_what_was_taken_before_backordering() -> None:
    world = World({"A": 5, "B": 1})
    order = world.paid_order({"A": 2, "B": 3, "C": 1})
    steps: list[str] = []

    result = world.service.fulfil(command_for(order), checkpoint=steps.append)

    assert result.outcome is FulfillmentOutcome.BACKORDERED
    # B is short: C is never tried, A is released before the status says backordered.
    assert steps == ["marked", "reserved:A", "released:A", "transitioned"]
    assert ("reserve", "C") not in world.reservations.calls
    assert world.reservations.stock == {"A": 5, "B": 1}
    assert world.held(order) == {}
    fulfillment = world.orders.get(CUSTOMER, order.id).document["fulfillment"]
    assert fulfillment["state"] == "released"
    assert fulfillment["shortages"] == [{"sku": "B", "requested": 3, "available": 1}]


def test_an_unknown_sku_is_a_shortage_of_zero() -> None:
    world = World({})
    order = world.paid_order({"GHOST": 1})

    result = world.service.fulfil(command_for(order))

    assert result.outcome is FulfillmentOutcome.BACKORDERED
    shortages = world.orders.get(CUSTOMER, order.id).document["fulfillment"]["shortages"]
    assert shortages == [{"sku": "GHOST", "requested": 1, "available": 0}]


def test_a_redelivery_after_fulfilment_only_publishes_what_is_pending() -> None:
    world = World({"A": 5})
    order = world.paid_order({"A": 1})
    world.publisher.failing = True  # the Fulfilled event stays in the outbox
    assert world.service.fulfil(command_for(order)).outcome is FulfillmentOutcome.FULFILLED
    assert world.orders.get(CUSTOMER, order.id).document["outbox"]
    world.publisher.failing = False
    calls = len(world.reservations.calls)

    result = world.service.fulfil(command_for(order))

    assert result.outcome is FulfillmentOutcome.ALREADY_FULFILLED
    assert len(world.reservations.calls) == calls  # nothing reserved or released again
    assert world.orders.get(CUSTOMER, order.id).document["outbox"] == []
    assert world.publisher.events[-1]["type"] == "Orderflow.Order.Fulfilled"
    assert world.reservations.stock == {"A": 4}


@pytest.mark.parametrize("status", [OrderStatus.BACKORDERED, OrderStatus.CANCELLED])
def test_a_paid_order_already_decided_against_gives_back_what_it_still_holds(
    status: OrderStatus,
) -> None:
    world = World({"A": 5, "B": 0})
    order = world.paid_order({"A": 2, "B": 1})
    backordered = world.order_service.transition(order, OrderStatus.BACKORDERED)
    decided = (
        world.order_service.transition(backordered, OrderStatus.CANCELLED)
        if status is OrderStatus.CANCELLED
        else backordered
    )
    # A duplicate delivery reserved A while another one backordered the order.
    world.reservations.reserve("A", holder_key(CUSTOMER, order.id), 2, "t")
    steps: list[str] = []

    result = world.service.fulfil(command_for(decided), checkpoint=steps.append)

    assert result.outcome is FulfillmentOutcome.RELEASED
    assert steps == ["released:A"]
    assert world.reservations.stock == {"A": 5, "B": 0}
    assert world.status(order) == status.value


def test_a_pending_order_is_not_ready_yet() -> None:
    world = World({"A": 5})
    draft = OrderDraft.model_validate(
        {"currency": "EUR", "lines": [{"sku": "A", "quantity": 1, "unitPrice": "1.00"}]}
    )
    pending = world.order_service.place(CUSTOMER, draft).order

    with pytest.raises(OrderNotReadyError):
        world.service.fulfil(command_for(pending))
    assert world.reservations.calls == []


@pytest.mark.parametrize("status", [OrderStatus.EXPIRED, OrderStatus.CANCELLED])
def test_an_order_that_was_never_paid_is_poison(status: OrderStatus) -> None:
    world = World({"A": 5})
    draft = OrderDraft.model_validate(
        {"currency": "EUR", "lines": [{"sku": "A", "quantity": 1, "unitPrice": "1.00"}]}
    )
    pending = world.order_service.place(CUSTOMER, draft).order
    world.order_service.transition(pending, status)

    with pytest.raises(PoisonMessageError) as raised:
        world.service.fulfil(command_for(pending))
    assert raised.value.reason is PoisonReason.ILLEGAL_TRANSITION
    assert world.reservations.calls == []


def test_an_unknown_order_is_poison() -> None:
    world = World({"A": 5})
    command = FulfilOrderCommand(
        type=FULFIL_ORDER, version=1, customer_id=CUSTOMER, order_id="nope", event_id="evt-1"
    )

    with pytest.raises(PoisonMessageError) as raised:
        world.service.fulfil(command)
    assert raised.value.reason is PoisonReason.UNKNOWN_ORDER


@pytest.mark.parametrize("crash_at", ["marked", "reserved:A", "reserved:B"])
def test_a_crash_after_any_reservation_step_resumes_without_taking_stock_twice(
    crash_at: str,
) -> None:
    world = World({"A": 5, "B": 5})
    order = world.paid_order({"A": 2, "B": 1})

    def crash(step: str) -> None:
        if step == crash_at:
            raise Crash(step)

    with pytest.raises(Crash):
        world.service.fulfil(command_for(order), checkpoint=crash)
    writes_before = world.orders.writes.count("replace")
    steps: list[str] = []

    result = world.service.fulfil(command_for(order), checkpoint=steps.append)

    assert result.outcome is FulfillmentOutcome.FULFILLED
    assert world.reservations.stock == {"A": 3, "B": 4}
    assert steps == ["marked", "reserved:A", "reserved:B", "transitioned"]
    # The mark was found, not written again: the one new replace is the transition.
    assert world.orders.writes.count("replace") == writes_before + 1


def test_a_crash_between_release_and_backorder_decides_again() -> None:
    world = World({"A": 5, "B": 0})
    order = world.paid_order({"A": 2, "B": 1})

    def crash(step: str) -> None:
        if step == "released:A":
            raise Crash(step)

    with pytest.raises(Crash):
        world.service.fulfil(command_for(order), checkpoint=crash)
    assert world.status(order) == "paid"
    assert world.reservations.stock == {"A": 5, "B": 0}  # given back before the crash

    result = world.service.fulfil(command_for(order))

    assert result.outcome is FulfillmentOutcome.BACKORDERED
    assert world.reservations.stock == {"A": 5, "B": 0}
    assert world.held(order) == {}


def test_losing_the_etag_race_re_reads_and_follows_the_winner() -> None:
    world = World({"A": 5})
    order = world.paid_order({"A": 1})
    raced = False

    def concurrent_delivery(operation: str, document: dict[str, object]) -> None:
        nonlocal raced
        if operation == "replace" and not raced:
            raced = True  # another delivery fulfils the order first
            world.service.fulfil(command_for(order))

    world.orders.before_write = concurrent_delivery

    result = world.service.fulfil(command_for(order))

    assert result.outcome is FulfillmentOutcome.ALREADY_FULFILLED
    assert world.reservations.stock == {"A": 4}  # taken once, by the winner


def test_an_order_that_keeps_changing_gives_up_after_max_rounds_as_transient() -> None:
    world = World({"A": 5})
    order = world.paid_order({"A": 1})

    attempts = 0

    def someone_else_writes_first(operation: str, document: dict[str, object]) -> None:
        nonlocal attempts
        if operation == "replace":
            attempts += 1
            current = world.orders.get(CUSTOMER, order.id)
            world.orders.put({**current.document, "touched": True})  # a new ETag

    world.orders.before_write = someone_else_writes_first
    writes_before = list(world.orders.writes)

    with pytest.raises(PreconditionFailedError):
        world.service.fulfil(command_for(order))
    assert world.orders.writes == writes_before  # every attempt lost: nothing written
    assert ("reserve", "A") not in world.reservations.calls
    assert attempts == MAX_ROUNDS


def test_fulfilment_latency_is_seconds_from_payment(caplog: pytest.LogCaptureFixture) -> None:
    world = World({"A": 5})
    order = world.paid_order({"A": 1})
    world.now += timedelta(seconds=42.5)

    with caplog.at_level("INFO", logger="orderflow"):
        world.service.fulfil(command_for(order))

    values = [
        getattr(record, "value", None)
        for record in caplog.records
        if getattr(record, "metric", None) == FULFILLMENT_LATENCY_SECONDS
    ]
    assert values == [42.5]


def test_demand_adds_up_lines_of_the_same_sku_in_sku_order() -> None:
    lines = [
        {"sku": "B", "quantity": 2},
        {"sku": "A", "quantity": 1},
        {"sku": "B", "quantity": 3},
    ]
    assert demand_of({"lines": lines}) == [("A", 1), ("B", 5)]


def test_a_valid_command_round_trips() -> None:
    command = FulfilOrderCommand.model_validate(
        {"type": FULFIL_ORDER, "version": 1, "customerId": "a", "orderId": "o", "eventId": "e"}
    )
    assert parse_command(command.to_json().encode()) == command


@pytest.mark.parametrize(
    "body", [b"[" * 60_000, json.dumps({"type": FULFIL_ORDER, "version": True}).encode()]
)
def test_hostile_command_bodies_are_poison(body: bytes) -> None:
    with pytest.raises(PoisonMessageError):
        parse_command(body)
