"""The unit tests' fakes (tests/fixtures/fakes.py) behave as the Cosmos repositories do where
the services rely on it: the same script of calls runs against each fake and its real
implementation on the Cosmos stand-in, and must give the same answers."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import pytest

from shared.errors import AlreadyExistsError, NotFoundError, PreconditionFailedError
from shared.repositories.inventory import CosmosInventoryRepository
from shared.repositories.orders import CosmosOrderRepository, OrderRepository
from shared.repositories.reservations import CosmosStockReservations, StockReservations
from tests.fixtures.fakes import InMemoryOrders, InMemoryStockReservations

pytestmark = pytest.mark.integration

AT = "2026-12-04T03:00:00.000000Z"
Kinds = ["fake", "cosmos"]


def placed_event(customer: str, order_id: str) -> dict[str, Any]:
    return {
        "id": f"evt-{order_id}",
        "source": "/orderflow",
        "type": "Orderflow.Order.Placed",
        "specversion": "1.0",
        "subject": f"customers/{customer}/orders/{order_id}",
        "data": {},
    }


def order(customer: str, order_id: str, created: str, **fields: Any) -> dict[str, Any]:
    return {
        "id": order_id,
        "customerId": customer,
        "status": "pending",
        "createdAt": created,
        # A CloudEvent as the app stores it: the shared stack's outbox relay may publish it.
        "outbox": [placed_event(customer, order_id)],
        **fields,
    }


@pytest.fixture(params=Kinds)
def orders(request: pytest.FixtureRequest) -> OrderRepository:
    if request.param == "fake":
        return InMemoryOrders()
    request.getfixturevalue("app_settings")
    return CosmosOrderRepository()


@pytest.fixture(params=Kinds)
def stock(request: pytest.FixtureRequest) -> tuple[StockReservations, Callable[[int], str]]:
    if request.param == "fake":
        fake = InMemoryStockReservations()

        def fake_sku(available: int) -> str:
            sku = f"SKU-{uuid.uuid4().hex[:10]}"
            fake.stock[sku] = available
            return sku

        return fake, fake_sku
    request.getfixturevalue("app_settings")

    def real_sku(available: int) -> str:
        sku = f"SKU-{uuid.uuid4().hex[:10]}"
        CosmosInventoryRepository().set_available(sku, available, AT)
        return sku

    return CosmosStockReservations(sleep=lambda seconds: None), real_sku


def test_orders_create_read_and_refuse_as_cosmos_does(orders: OrderRepository) -> None:
    customer = f"c-{uuid.uuid4().hex[:10]}"
    created = orders.create(order(customer, "o-1", "2026-12-04T03:00:00Z"))

    assert orders.get(customer, "o-1") == created
    assert created.document["outbox"] == [placed_event(customer, "o-1")]
    with pytest.raises(AlreadyExistsError):
        orders.create(order(customer, "o-1", "2026-12-04T03:00:00Z"))
    with pytest.raises(NotFoundError):
        orders.get(customer, "o-2")
    with pytest.raises(NotFoundError):
        orders.get("someone-else", "o-1")


def test_orders_replace_only_with_the_current_etag(orders: OrderRepository) -> None:
    customer = f"c-{uuid.uuid4().hex[:10]}"
    first = orders.create(order(customer, "o-1", "2026-12-04T03:00:00Z"))
    second = orders.replace({**first.document, "status": "paid"}, first.etag)

    assert second.etag != first.etag
    assert orders.get(customer, "o-1").document["status"] == "paid"
    with pytest.raises(PreconditionFailedError):
        orders.replace({**first.document, "status": "cancelled"}, first.etag)
    assert orders.get(customer, "o-1").document["status"] == "paid"


def test_orders_clear_the_outbox_only_if_unchanged(orders: OrderRepository) -> None:
    customer = f"c-{uuid.uuid4().hex[:10]}"
    first = orders.create(order(customer, "o-1", "2026-12-04T03:00:00Z"))
    changed = orders.replace({**first.document, "status": "paid"}, first.etag)

    assert orders.clear_outbox(first) is None
    assert orders.get(customer, "o-1").document["outbox"] == [placed_event(customer, "o-1")]
    cleared = orders.clear_outbox(changed)
    assert cleared is not None
    assert cleared.document["outbox"] == []
    assert cleared.etag != changed.etag
    assert orders.get(customer, "o-1") == cleared


def test_orders_list_newest_first_in_pages(orders: OrderRepository) -> None:
    customer = f"c-{uuid.uuid4().hex[:10]}"
    for n in range(5):
        orders.create(order(customer, f"o-{n}", f"2026-12-04T03:00:0{n}Z", status="pending"))
    orders.create(order(customer, "o-paid", "2026-12-04T03:00:09Z", status="paid"))

    first = orders.list_page(customer, "pending", 2, None)
    assert [item.id for item in first.items] == ["o-4", "o-3"]
    assert first.continuation is not None
    second = orders.list_page(customer, "pending", 2, first.continuation)
    third = orders.list_page(customer, "pending", 2, second.continuation)
    assert [item.id for item in second.items + third.items] == ["o-2", "o-1", "o-0"]
    assert third.continuation is None
    everything = orders.list_page(customer, None, 10, None)
    assert [item.id for item in everything.items][:1] == ["o-paid"]


def test_stock_is_reserved_once_per_holder_and_never_oversold(
    stock: tuple[StockReservations, Callable[[int], str]],
) -> None:
    reservations, new_sku = stock
    sku = new_sku(5)

    first = reservations.reserve(sku, "alice:o-1", 3, AT)
    again = reservations.reserve(sku, "alice:o-1", 3, AT)
    short = reservations.reserve(sku, "bob:o-2", 3, AT)

    assert (first.outcome.value, first.available) == ("reserved", 2)
    assert again.outcome.value == "already-held"
    assert (short.outcome.value, short.available) == ("insufficient", 2)
    assert reservations.held(sku, "alice:o-1") == 3
    assert reservations.held(sku, "bob:o-2") == 0


def test_a_release_gives_back_what_the_holder_took_once(
    stock: tuple[StockReservations, Callable[[int], str]],
) -> None:
    reservations, new_sku = stock
    sku = new_sku(5)
    reservations.reserve(sku, "alice:o-1", 3, AT)

    assert reservations.release(sku, "alice:o-1") == 3
    assert reservations.release(sku, "alice:o-1") == 0
    assert reservations.release(sku, "nobody:o-9") == 0
    after = reservations.reserve(sku, "bob:o-2", 5, AT)
    assert (after.outcome.value, after.available) == ("reserved", 0)


def test_an_unknown_sku_cannot_be_reserved(
    stock: tuple[StockReservations, Callable[[int], str]],
) -> None:
    reservations, _ = stock

    result = reservations.reserve(f"SKU-{uuid.uuid4().hex[:10]}", "alice:o-1", 1, AT)

    assert result.outcome.value == "insufficient"
    assert not result.available
