"""Stock reservations (shared/repositories/reservations.py) on the Cosmos stand-in: one
transactional batch per reservation, a stock item that never grows, exactly-once under
redelivery and concurrency, 449/412 races retried with bounded jittered backoff (faults made at
the azure-core transport, since the stand-in never answers 449), and items of the previous
design converted on first touch."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from azure.cosmos import ContainerProxy

from shared import clients
from shared.errors import DependencyUnavailableError
from shared.names import INVENTORY_CONTAINER
from shared.repositories.cosmos_batch import BACKOFF_MAX_SECONDS, MAX_ATTEMPTS
from shared.repositories.inventory import CosmosInventoryRepository
from shared.repositories.reservations import (
    RESERVATION_TTL_SECONDS,
    CosmosStockReservations,
    Holding,
    ReservationOutcome,
    reservation_id,
)
from tests.fixtures.transport import (
    ForwardingTransport,
    canned_response,
    cosmos_through,
    document_path,
    is_batch,
    retry_with_response,
)

pytestmark = pytest.mark.integration

AT = "2026-12-04T03:00:00.000000Z"
Fault = Callable[[Any], Any]  # request -> a made-up response, or None to forward


class FaultTransport(ForwardingTransport):
    """Forwards to the stand-in, counts data-plane requests, and lets a test answer some."""

    def __init__(self) -> None:
        super().__init__()
        self.lock = threading.Lock()
        self.requests = 0
        self.fault: Fault = lambda request: None

    def send(self, request: Any, **kwargs: Any) -> Any:
        if document_path(request) is None:
            return self.forward(request, **kwargs)
        with self.lock:
            self.requests += 1
        made_up = self.fault(request)
        return made_up if made_up is not None else self.forward(request, **kwargs)


@pytest.fixture
def transport(app_settings: dict[str, str]) -> Iterator[FaultTransport]:
    faults = FaultTransport()
    with cosmos_through(faults, app_settings, **clients.cosmos_client_options()):
        yield faults


@pytest.fixture
def sleeps() -> list[float]:
    return []


@pytest.fixture
def reservations(transport: FaultTransport, sleeps: list[float]) -> CosmosStockReservations:
    return CosmosStockReservations(sleep=sleeps.append)


@pytest.fixture
def inventory(transport: FaultTransport) -> ContainerProxy:
    return clients.get_container(INVENTORY_CONTAINER)


def new_sku(available: int) -> str:
    sku = f"SKU-{uuid.uuid4().hex[:10]}"
    CosmosInventoryRepository().set_available(sku, available, AT)
    return sku


def user_fields(document: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in document.items() if not k.startswith("_")}


def first_n(count: int, fault: Fault) -> Fault:
    """``fault`` for the first ``count`` batch requests, then the stand-in answers."""
    remaining = [count]

    def answer(request: Any) -> Any:
        if is_batch(request) and remaining[0] > 0:
            remaining[0] -= 1
            return fault(request)
        return None

    return answer


def batch_failure(statuses: list[int]) -> Fault:
    """A failed atomic batch as Cosmos DB answers it: 207, one status per operation."""
    body = [{"statusCode": s, "requestCharge": 0} for s in statuses]
    return lambda request: canned_response(request, 207, body, {"x-ms-substatus": "0"})


# ------------------------------------------------------------------------ the design


def test_a_reservation_is_one_request_and_the_stock_item_never_grows(
    reservations: CosmosStockReservations, transport: FaultTransport, inventory: ContainerProxy
) -> None:
    sku = new_sku(1000)
    before = user_fields(inventory.read_item(sku, partition_key=sku))

    for n in range(50):
        requests = transport.requests
        result = reservations.reserve(sku, f"c{n}:o{n}", 2, AT)
        assert result.outcome is ReservationOutcome.RESERVED
        assert result.available == 1000 - 2 * (n + 1)
        assert transport.requests - requests == 1, "a reservation is one transactional batch"

    stock = user_fields(inventory.read_item(sku, partition_key=sku))
    assert stock == {**before, "available": 900}  # the same fields, nothing added per order
    reservation = inventory.read_item(reservation_id("c7:o7"), partition_key=sku)
    assert user_fields(reservation) == {
        "id": "reservation:c7:o7",
        "sku": sku,
        "kind": "reservation",
        "holder": "c7:o7",
        "quantity": 2,
        "at": AT,
        "ttl": RESERVATION_TTL_SECONDS,
    }
    assert len(reservations.holdings(sku)) == 50


def test_a_redelivered_reservation_changes_nothing_in_one_request(
    reservations: CosmosStockReservations, transport: FaultTransport
) -> None:
    sku = new_sku(5)
    reservations.reserve(sku, "c:o", 3, AT)
    requests = transport.requests

    again = reservations.reserve(sku, "c:o", 3, AT)

    assert again.outcome is ReservationOutcome.ALREADY_HELD
    assert transport.requests - requests == 1
    assert CosmosInventoryRepository().get(sku).available == 2
    assert reservations.held(sku, "c:o") == 3


def test_not_enough_stock_writes_nothing_and_says_what_is_left(
    reservations: CosmosStockReservations, inventory: ContainerProxy
) -> None:
    sku = new_sku(2)

    refused = reservations.reserve(sku, "c:o", 3, AT)

    assert (refused.outcome, refused.available) == (ReservationOutcome.INSUFFICIENT, 2)
    assert reservations.holdings(sku) == {}
    assert inventory.read_item(sku, partition_key=sku)["available"] == 2
    missing = reservations.reserve(f"SKU-missing-{uuid.uuid4().hex[:8]}", "c:o", 1, AT)
    assert (missing.outcome, missing.available) == (ReservationOutcome.INSUFFICIENT, 0)


def test_a_release_gives_back_once(reservations: CosmosStockReservations) -> None:
    sku = new_sku(5)
    reservations.reserve(sku, "c:o", 4, AT)

    assert reservations.release(sku, "c:o") == 4
    assert reservations.release(sku, "c:o") == 0
    assert reservations.release(sku, "c:never") == 0
    assert CosmosInventoryRepository().get(sku).available == 5
    assert reservations.holdings(sku) == {}


def test_concurrent_reservers_of_one_sku_take_exactly_the_stock(
    reservations: CosmosStockReservations,
) -> None:
    sku = new_sku(150)
    holders = [f"c{n}:o{n}" for n in range(200)]

    with ThreadPoolExecutor(16) as pool:
        outcomes = list(pool.map(lambda h: reservations.reserve(sku, h, 1, AT).outcome, holders))
        # and every one of them delivered twice
        again = list(pool.map(lambda h: reservations.reserve(sku, h, 1, AT).outcome, holders))

    assert outcomes.count(ReservationOutcome.RESERVED) == 150
    assert outcomes.count(ReservationOutcome.INSUFFICIENT) == 50
    assert again.count(ReservationOutcome.ALREADY_HELD) == 150
    assert CosmosInventoryRepository().get(sku).available == 0
    held = reservations.holdings(sku)
    assert len(held) == 150
    assert {
        h for h, o in zip(holders, outcomes, strict=True) if o is ReservationOutcome.RESERVED
    } == set(held)


# ------------------------------------------------------------------- races (transport)


@pytest.mark.parametrize(
    "answer",
    [retry_with_response, batch_failure([449, 424])],
    ids=["449-for-the-request", "449-inside-the-batch"],
)
def test_a_449_is_retried_with_jittered_backoff(
    reservations: CosmosStockReservations,
    transport: FaultTransport,
    sleeps: list[float],
    answer: Fault,
) -> None:
    sku = new_sku(5)
    transport.fault = first_n(3, answer)

    result = reservations.reserve(sku, "c:o", 2, AT)

    assert result.outcome is ReservationOutcome.RESERVED
    assert reservations.retries == 3
    assert len(sleeps) == 3
    assert all(0 <= s <= BACKOFF_MAX_SECONDS for s in sleeps)
    assert CosmosInventoryRepository().get(sku).available == 3  # taken once


def test_a_449_that_does_not_end_is_a_retryable_failure_and_writes_nothing(
    reservations: CosmosStockReservations, transport: FaultTransport, sleeps: list[float]
) -> None:
    sku = new_sku(5)
    transport.fault = lambda request: retry_with_response(request) if is_batch(request) else None

    with pytest.raises(DependencyUnavailableError) as caught:
        reservations.reserve(sku, "c:o", 2, AT)

    assert caught.value.retry_after_seconds >= 1  # the message is redelivered, not lost
    assert len(sleeps) == MAX_ATTEMPTS
    assert sum(sleeps) <= MAX_ATTEMPTS * BACKOFF_MAX_SECONDS
    transport.fault = lambda request: None
    assert CosmosInventoryRepository().get(sku).available == 5
    assert reservations.holdings(sku) == {}


def test_a_release_that_loses_an_if_match_race_looks_again(
    reservations: CosmosStockReservations, transport: FaultTransport
) -> None:
    sku = new_sku(5)
    reservations.reserve(sku, "c:o", 4, AT)
    transport.fault = first_n(1, batch_failure([412, 424]))

    assert reservations.release(sku, "c:o") == 4
    assert reservations.retries == 1
    assert CosmosInventoryRepository().get(sku).available == 5


def test_stock_that_rises_between_a_refusal_and_its_read_is_tried_again(
    reservations: CosmosStockReservations, transport: FaultTransport
) -> None:
    sku = new_sku(5)  # enough: the made-up 412 stands for a refusal just before a restock
    transport.fault = first_n(1, batch_failure([424, 412]))

    result = reservations.reserve(sku, "c:o", 2, AT)

    assert result.outcome is ReservationOutcome.RESERVED
    assert reservations.retries == 1
    assert CosmosInventoryRepository().get(sku).available == 3


# -------------------------------------------------------------- the previous design


def legacy_stock(inventory: ContainerProxy, available: int, holders: int) -> str:
    """A stock item as the previous design wrote it: one entry per holder, growing."""
    sku = f"SKU-legacy-{uuid.uuid4().hex[:8]}"
    inventory.create_item(
        {
            "id": sku,
            "sku": sku,
            "available": available,
            "reservations": {f"old{n}:o{n}": {"quantity": 1, "at": AT} for n in range(holders)},
        }
    )
    return sku


def test_an_item_of_the_previous_design_is_converted_on_first_reservation(
    reservations: CosmosStockReservations, inventory: ContainerProxy
) -> None:
    sku = legacy_stock(inventory, available=10, holders=150)  # more than one batch holds

    result = reservations.reserve(sku, "new:o", 2, AT)

    assert (result.outcome, result.available) == (ReservationOutcome.RESERVED, 8)
    stock = inventory.read_item(sku, partition_key=sku)
    assert "reservations" not in stock
    held = reservations.holdings(sku)
    assert len(held) == 151
    assert held["old42:o42"] == Holding(1, AT)
    assert held["new:o"] == Holding(2, AT)
    # Exactly once across the conversion: an old holder's redelivery finds its reservation.
    assert reservations.reserve(sku, "old42:o42", 1, AT).outcome is ReservationOutcome.ALREADY_HELD
    assert reservations.release(sku, "old42:o42") == 1
    assert inventory.read_item(sku, partition_key=sku)["available"] == 9


def test_release_and_held_convert_an_item_of_the_previous_design(
    reservations: CosmosStockReservations, inventory: ContainerProxy
) -> None:
    sku = legacy_stock(inventory, available=3, holders=2)
    assert reservations.held(sku, "old1:o1") == 1  # read as it is
    assert reservations.holdings(sku) == {"old0:o0": Holding(1, AT), "old1:o1": Holding(1, AT)}

    assert reservations.release(sku, "old1:o1") == 1

    stock = inventory.read_item(sku, partition_key=sku)
    assert "reservations" not in stock
    assert stock["available"] == 4
    assert reservations.holdings(sku) == {"old0:o0": Holding(1, AT)}
    assert reservations.release(sku, "nobody:o") == 0
