"""Orders: place, read, list, cancel, and the one way every status change is made.

Idempotent creation without an extra container round trip: with an ``Idempotency-Key`` the
order id is derived from (customerId, key), so a retry collides with the first create (409) and
is answered from the stored order: the same body replays the first response, another body is
refused (IdempotencyKeyReusedError). Orders imported from files derive their id from
(customerId, externalId) the same way.
"""

from __future__ import annotations

import copy
import hashlib
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

from shared.errors import (
    AlreadyExistsError,
    IdempotencyKeyReusedError,
    IllegalTransitionError,
    PreconditionFailedError,
)
from shared.events import order_event
from shared.metrics import ORDERS_TRANSITIONED, add_to_counter
from shared.models import Order, OrderDraft, OrderSource, OrderStatus, can_transition
from shared.observability import get_logger
from shared.publisher import EventPublisher
from shared.repositories.orders import OrderPage, OrderRepository, StoredOrder
from shared.services.outbox import publish_outbox, publish_outboxes

_API_NAMESPACE: Final = uuid.UUID("0d9f4f6e-2b8a-4c55-8f7e-5f3f4a1c2b01")
_IMPORT_NAMESPACE: Final = uuid.UUID("a3c1e2d4-5b6f-4a7e-9c8d-1e2f3a4b5c6d")
DEFAULT_PAGE_SIZE: Final = 25
MAX_PAGE_SIZE: Final = 100

log = get_logger("orders")


def utc_now() -> datetime:
    return datetime.now(UTC)


def timestamp(at: datetime) -> str:
    """ISO 8601 UTC with microseconds: sorts lexicographically in Cosmos queries."""
    return at.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def order_id_for_key(customer_id: str, idempotency_key: str) -> str:
    return uuid.uuid5(_API_NAMESPACE, f"{customer_id}\n{idempotency_key}").hex


def order_id_for_import(customer_id: str, external_id: str) -> str:
    return uuid.uuid5(_IMPORT_NAMESPACE, f"{customer_id}\n{external_id}").hex


def fingerprint(draft: OrderDraft) -> str:
    """Hash of the request's meaning (not its bytes: key order and spacing do not matter)."""
    return hashlib.sha256(draft.model_dump_json(by_alias=True).encode()).hexdigest()


def http_etag(etag: str) -> str:
    """The ETag header value for a stored ETag: always a quoted string (RFC 9110)."""
    return etag if etag.startswith('"') else f'"{etag}"'


def etag_matches(header: str, etag: str, *, weak: bool = False) -> bool:
    """Does an If-Match (strong comparison) or If-None-Match (``weak=True``) header name
    ``etag``? ``*`` matches any current representation (RFC 9110 section 13.1)."""
    wanted = http_etag(etag)
    for raw in header.split(","):
        candidate = raw.strip()
        if candidate == "*":
            return True
        if candidate.startswith("W/"):
            if not weak:
                continue
            candidate = candidate[2:]
        if candidate in (wanted, etag):
            return True
    return False


def order_view(document: dict[str, Any]) -> dict[str, Any]:
    """The API representation of a stored order (no internal fields)."""
    return Order.model_validate(document).model_dump(by_alias=True, mode="json", exclude_none=True)


def first_response_view(document: dict[str, Any]) -> dict[str, Any]:
    """The body the order's create returned, rebuilt for an idempotent replay."""
    view = order_view(document)
    history = document.get("history") or []
    if history:
        view["status"] = history[0]["status"]
    view["updatedAt"] = view["createdAt"]
    return view


def count_transition(stored: StoredOrder, status: OrderStatus) -> None:
    """One order entered ``status``: the orders-by-status metric, and a log record carrying the
    order id, which is how one order's way through the system is found in the logs."""
    add_to_counter(
        ORDERS_TRANSITIONED,
        1,
        f"order {stored.id} is {status.value}",
        attributes={"status": status.value},
        fields={"orderId": stored.id, "customerId": stored.customer_id},
        logger=log,
    )


@dataclass(frozen=True, slots=True)
class PlaceResult:
    order: StoredOrder
    replayed: bool


class OrderService:
    def __init__(
        self,
        orders: OrderRepository,
        publisher: EventPublisher,
        *,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self._orders = orders
        self._publisher = publisher
        self._clock = clock

    def place(
        self,
        customer_id: str,
        draft: OrderDraft,
        *,
        idempotency_key: str | None = None,
        source: OrderSource = OrderSource.API,
        external_id: str | None = None,
        traceparent: str | None = None,
        publish: bool = True,
    ) -> PlaceResult:
        """Create the order (idempotently). ``publish=False`` leaves its event in the outbox for
        a caller that places many orders and publishes their events together
        (:meth:`publish_pending`)."""
        if external_id is not None:
            order_id = order_id_for_import(customer_id, external_id)
        elif idempotency_key is not None:
            order_id = order_id_for_key(customer_id, idempotency_key)
        else:
            order_id = uuid.uuid4().hex
        now = self._clock()
        document: dict[str, Any] = {
            "id": order_id,
            "customerId": customer_id,
            "status": OrderStatus.PENDING.value,
            "lines": [line.model_dump(by_alias=True, mode="json") for line in draft.lines],
            "currency": draft.currency,
            "total": str(draft.total()),
            "source": source.value,
            "externalId": external_id,
            "createdAt": timestamp(now),
            "updatedAt": timestamp(now),
            "requestHash": fingerprint(draft),
            "history": [{"status": OrderStatus.PENDING.value, "at": timestamp(now)}],
        }
        document["outbox"] = [
            order_event(document, OrderStatus.PENDING, now, traceparent=traceparent)
        ]
        try:
            stored = self._orders.create(document)
        except AlreadyExistsError:
            existing = self._orders.get(customer_id, order_id)
            if existing.document.get("requestHash") != document["requestHash"]:
                raise IdempotencyKeyReusedError(idempotency_key or external_id or "") from None
            # An earlier try may have stored the order but not published its event.
            if not publish:
                return PlaceResult(existing, True)
            return PlaceResult(publish_outbox(existing, self._orders, self._publisher), True)
        count_transition(stored, OrderStatus.PENDING)
        if not publish:
            return PlaceResult(stored, False)
        return PlaceResult(publish_outbox(stored, self._orders, self._publisher), False)

    def publish_pending(self, orders: Sequence[StoredOrder]) -> int:
        """Publish the outboxes of ``orders`` together (as few Event Grid requests as its size
        limit allows), then clear each; the number of events published (0 when publishing
        failed: they wait in the outboxes for the relay)."""
        return publish_outboxes(orders, self._orders, self._publisher)

    def get(self, customer_id: str, order_id: str) -> StoredOrder:
        return self._orders.get(customer_id, order_id)

    def list(
        self,
        customer_id: str,
        *,
        status: OrderStatus | None = None,
        limit: int = DEFAULT_PAGE_SIZE,
        continuation: str | None = None,
    ) -> OrderPage:
        if not 1 <= limit <= MAX_PAGE_SIZE:
            raise ValueError(f"limit must be between 1 and {MAX_PAGE_SIZE}")
        return self._orders.list_page(
            customer_id, status.value if status else None, limit, continuation
        )

    def cancel(
        self,
        customer_id: str,
        order_id: str,
        *,
        if_match: str | None = None,
        traceparent: str | None = None,
    ) -> StoredOrder:
        stored = self._orders.get(customer_id, order_id)
        if if_match is not None and not etag_matches(if_match, stored.etag):
            raise PreconditionFailedError("order", order_id)
        return self.transition(stored, OrderStatus.CANCELLED, traceparent=traceparent)

    def transition(
        self,
        stored: StoredOrder,
        target: OrderStatus,
        *,
        traceparent: str | None = None,
        changes: dict[str, Any] | None = None,
        publish: bool = True,
    ) -> StoredOrder:
        """Move ``stored`` to ``target`` if the lifecycle allows it and nobody changed it since
        it was read (ETag), storing the event in the outbox in the same write, then publish.

        ``publish=False`` leaves the event in the outbox for a caller that publishes many
        orders' events in one batch (the expiry timer) and then clears each outbox."""
        current = OrderStatus(stored.document["status"])
        if not can_transition(current, target):
            raise IllegalTransitionError(stored.id, current.value, target.value)
        now = self._clock()
        document = copy.deepcopy(stored.document)
        document.update(changes or {})
        document["status"] = target.value
        document["updatedAt"] = timestamp(now)
        document.setdefault("history", []).append({"status": target.value, "at": timestamp(now)})
        document.setdefault("outbox", []).append(
            order_event(document, target, now, traceparent=traceparent)
        )
        saved = self._orders.replace(document, stored.etag)
        count_transition(saved, target)
        if not publish:
            return saved
        return publish_outbox(saved, self._orders, self._publisher)
