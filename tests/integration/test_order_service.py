"""Order service on the real Cosmos stand-in and a recording Event Grid endpoint."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from shared.errors import (
    IdempotencyKeyReusedError,
    IllegalTransitionError,
    InvalidContinuationError,
    NotFoundError,
    PreconditionFailedError,
)
from shared.events import event_id
from shared.models import OrderDraft, OrderStatus
from shared.publisher import EventGridPublisher
from shared.repositories.orders import CosmosOrderRepository
from shared.services.orders import OrderService
from shared.services.outbox import relay_pending_events
from tests.fixtures.eventgrid import EventGridSink

pytestmark = pytest.mark.integration


def draft(price: str = "10.00", quantity: int = 2) -> OrderDraft:
    return OrderDraft.model_validate(
        {"lines": [{"sku": "SKU-1", "quantity": quantity, "unitPrice": price}], "currency": "EUR"}
    )


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        self.now += timedelta(seconds=1)
        return self.now


@pytest.fixture
def service(
    app_settings: dict[str, str], events: EventGridSink, monkeypatch: pytest.MonkeyPatch
) -> OrderService:
    for name, value in events.app_settings().items():
        monkeypatch.setenv(name, value)
    return OrderService(CosmosOrderRepository(), EventGridPublisher(), clock=Clock())


@pytest.fixture
def customer() -> str:
    return f"c-{uuid.uuid4().hex[:12]}"


def test_place_stores_publishes_and_clears_the_outbox(
    service: OrderService, events: EventGridSink, customer: str
) -> None:
    result = service.place(customer, draft(), idempotency_key="k1")
    assert not result.replayed
    stored = service.get(customer, result.order.id)
    assert stored.etag == result.order.etag  # the ETag returned is the current one
    assert stored.document["outbox"] == []
    assert stored.document["total"] == "20.00"
    (placed,) = events.of_type("Orderflow.Order.Placed")
    assert placed["id"] == event_id(customer, result.order.id, OrderStatus.PENDING)
    assert placed["subject"] == f"customers/{customer}/orders/{result.order.id}"
    assert placed["data"]["total"] == "20.00"


def test_same_key_same_body_replays_other_body_is_refused(
    service: OrderService, events: EventGridSink, customer: str
) -> None:
    first = service.place(customer, draft(), idempotency_key="same")
    again = service.place(customer, draft(), idempotency_key="same")
    assert again.replayed
    assert again.order.id == first.order.id
    assert len(events.of_type("Orderflow.Order.Placed")) == 1
    with pytest.raises(IdempotencyKeyReusedError):
        service.place(customer, draft(price="11.00"), idempotency_key="same")
    # The key is scoped to the customer.
    other = service.place(customer + "x", draft(), idempotency_key="same")
    assert other.order.id != first.order.id


def test_event_survives_a_publish_outage_and_the_relay_sends_it(
    service: OrderService, events: EventGridSink, customer: str
) -> None:
    events.failing = True
    result = service.place(customer, draft())
    pending = service.get(customer, result.order.id)
    assert [e["type"] for e in pending.document["outbox"]] == ["Orderflow.Order.Placed"]
    assert events.events == []

    events.failing = False
    relay = relay_pending_events(CosmosOrderRepository(), EventGridPublisher())
    assert relay.published >= 1
    assert service.get(customer, result.order.id).document["outbox"] == []
    assert len(events.of_type("Orderflow.Order.Placed")) >= 1
    ids = {e["id"] for e in events.of_type("Orderflow.Order.Placed")}
    assert event_id(customer, result.order.id, OrderStatus.PENDING) in ids


def test_a_retry_with_the_same_key_publishes_what_an_outage_left(
    service: OrderService, events: EventGridSink, customer: str
) -> None:
    events.failing = True
    first = service.place(customer, draft(), idempotency_key="retry")
    events.failing = False
    again = service.place(customer, draft(), idempotency_key="retry")
    assert again.replayed
    assert again.order.document["outbox"] == []
    assert [e["id"] for e in events.of_type("Orderflow.Order.Placed")] == [
        event_id(customer, first.order.id, OrderStatus.PENDING)
    ]


def test_cancel_honours_if_match_and_the_lifecycle(
    service: OrderService, events: EventGridSink, customer: str
) -> None:
    placed = service.place(customer, draft()).order
    with pytest.raises(PreconditionFailedError):
        service.cancel(customer, placed.id, if_match='"stale"')
    cancelled = service.cancel(customer, placed.id, if_match=placed.etag)
    assert cancelled.document["status"] == "cancelled"
    assert [h["status"] for h in cancelled.document["history"]] == ["pending", "cancelled"]
    assert len(events.of_type("Orderflow.Order.Cancelled")) == 1
    with pytest.raises(IllegalTransitionError):
        service.cancel(customer, placed.id)


def test_concurrent_changes_from_one_read_let_exactly_one_win(
    service: OrderService, customer: str
) -> None:
    placed = service.place(customer, draft()).order
    service.transition(placed, OrderStatus.PAID)
    with pytest.raises(PreconditionFailedError):
        service.transition(placed, OrderStatus.EXPIRED)
    assert service.get(customer, placed.id).document["status"] == "paid"


def test_list_pages_newest_first_with_opaque_tokens(service: OrderService, customer: str) -> None:
    ids = [service.place(customer, draft(quantity=n)).order.id for n in range(1, 8)]
    service.place(customer + "-other", draft())
    seen: list[str] = []
    token = None
    pages = 0
    while True:
        page = service.list(customer, limit=3, continuation=token)
        pages += 1
        seen += [item.id for item in page.items]
        token = page.continuation
        if token is None:
            break
        assert pages < 10
    assert pages >= 3
    assert seen == list(reversed(ids))
    with pytest.raises(InvalidContinuationError):
        service.list(
            customer + "-other", limit=3, continuation=service.list(customer, limit=3).continuation
        )
    with pytest.raises(InvalidContinuationError):
        service.list(customer, limit=3, continuation="not-a-token")


def test_status_filter(service: OrderService, customer: str) -> None:
    keep = service.place(customer, draft()).order
    gone = service.place(customer, draft()).order
    service.cancel(customer, gone.id)
    page = service.list(customer, status=OrderStatus.PENDING)
    assert [item.id for item in page.items] == [keep.id]


def test_missing_order_is_not_found(service: OrderService, customer: str) -> None:
    with pytest.raises(NotFoundError):
        service.get(customer, "0" * 32)
