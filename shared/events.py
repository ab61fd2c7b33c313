"""Order events: CloudEvents 1.0, one per state change, with deterministic ids.

Each status is entered at most once in an order's life (the lifecycle has no cycles), so
``(customerId, orderId, status)`` identifies a transition; its uuid5 is the event id, and a
consumer that has seen an id has seen that transition, however often it is delivered.

The event is built *before* the state change is stored and saved in the order document's
``outbox`` in the same write (see ``shared.services.outbox``), so a publish failure never loses it.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Final

from shared.models import OrderStatus

EVENT_SOURCE: Final = "/orderflow/orders"
EVENT_TYPES: Final[dict[OrderStatus, str]] = {
    OrderStatus.PENDING: "Orderflow.Order.Placed",
    OrderStatus.PAID: "Orderflow.Order.Paid",
    OrderStatus.CANCELLED: "Orderflow.Order.Cancelled",
    OrderStatus.EXPIRED: "Orderflow.Order.Expired",
    OrderStatus.FULFILLED: "Orderflow.Order.Fulfilled",
    OrderStatus.BACKORDERED: "Orderflow.Order.Backordered",
}
_EVENT_NAMESPACE: Final = uuid.UUID("6f1d4a52-8c1e-4f4b-9a57-3b0c2f1e7d10")


def event_id(customer_id: str, order_id: str, status: OrderStatus) -> str:
    return str(uuid.uuid5(_EVENT_NAMESPACE, f"{customer_id}/{order_id}/{status.value}"))


def subject_of(customer_id: str, order_id: str) -> str:
    return f"customers/{customer_id}/orders/{order_id}"


def order_event(
    order: dict[str, Any],
    status: OrderStatus,
    at: datetime,
    *,
    traceparent: str | None = None,
) -> dict[str, Any]:
    """The CloudEvent (structured JSON form) for ``order`` entering ``status`` at ``at``."""
    customer_id, order_id = order["customerId"], order["id"]
    event: dict[str, Any] = {
        "specversion": "1.0",
        "id": event_id(customer_id, order_id, status),
        "source": EVENT_SOURCE,
        "type": EVENT_TYPES[status],
        "subject": subject_of(customer_id, order_id),
        "time": at.isoformat().replace("+00:00", "Z"),
        "datacontenttype": "application/json",
        "data": {
            "customerId": customer_id,
            "orderId": order_id,
            "status": status.value,
            "currency": order["currency"],
            "total": order["total"],
            "source": order.get("source", "api"),
        },
    }
    if traceparent:
        event["traceparent"] = traceparent  # W3C distributed tracing extension
    return event
