"""The outbox relay: what a request stored but could not publish goes out later, and one stored
event that is no CloudEvent does not stop the relay for the orders after it."""

from __future__ import annotations

from typing import Any

from shared.publisher import EventGridPublisher
from shared.services.outbox import relay_pending_events
from tests.fixtures.fakes import InMemoryOrders


class SentEvents:
    """Stands in for EventGridPublisherClient.send only: the publisher's own conversion of
    stored events to CloudEvents runs for real before it."""

    def __init__(self) -> None:
        self.ids: list[str] = []

    def send(self, events: list[Any], **_options: Any) -> None:
        self.ids.extend(event.id for event in events)


def stored_order(order_id: str, outbox: list[dict[str, Any]]) -> dict[str, Any]:
    return {"id": order_id, "customerId": "c-1", "status": "pending", "outbox": outbox}


def cloud_event(event_id: str) -> dict[str, Any]:
    return {
        "id": event_id,
        "source": "/orderflow",
        "type": "Orderflow.Order.Placed",
        "specversion": "1.0",
        "subject": "customers/c-1/orders/o",
        "data": {},
    }


def test_a_malformed_stored_event_is_left_and_the_relay_goes_on() -> None:
    orders = InMemoryOrders()
    orders.put(stored_order("bad", [{"id": "evt-bad"}]))  # no source, no type
    orders.put(stored_order("good", [cloud_event("evt-good")]))
    sent = SentEvents()

    result = relay_pending_events(orders, EventGridPublisher(client=sent))

    assert (result.orders_seen, result.published, result.still_pending) == (2, 1, 1)
    assert sent.ids == ["evt-good"]
    assert orders.get("c-1", "good").document["outbox"] == []
    assert orders.get("c-1", "bad").document["outbox"] == [{"id": "evt-bad"}]
