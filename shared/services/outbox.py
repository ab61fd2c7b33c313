"""The transactional outbox: events are stored with the state change, then published.

Every state change writes the new status *and* its CloudEvent (in the order's ``outbox`` array)
in one conditional write, which Cosmos applies atomically to the single document. Then:

1. The request that made the change publishes the outbox right away and clears it (one patch,
   guarded by the ETag it wrote). Cost of a change: 2 Cosmos requests + 1 publish.
2. If publishing fails (Event Grid down, process killed), the event stays in the outbox. The
   ``publish_pending_events`` timer relays every order with a non-empty outbox; a client's retry
   of the same request (same Idempotency-Key) also publishes again. If only the clearing fails
   (Cosmos throttled), the change still succeeds: the stored change must not be reported as a
   failure, and the relay publishes the events again.

Delivery is at least once; duplicates carry the same deterministic event id, so consumers (and
Service Bus duplicate detection downstream) drop them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from shared.errors import DependencyUnavailableError
from shared.observability import get_logger
from shared.publisher import EventPublisher
from shared.repositories.orders import OrderRepository, StoredOrder

log = get_logger("outbox")


def publish_outbox(
    stored: StoredOrder, orders: OrderRepository, publisher: EventPublisher
) -> StoredOrder:
    """Publish the order's pending events and clear them.

    Returns the order's newest known state (clearing the outbox changes its ETag); its outbox is
    still non-empty when publishing failed.
    """
    events = stored.document.get("outbox") or []
    if not events:
        return stored
    try:
        publisher.publish(events)
    except DependencyUnavailableError as error:
        log.warning(
            "events of order %s left in the outbox: %s",
            stored.id,
            error,
            extra={"orderId": stored.id, "pendingEvents": len(events)},
        )
        return stored
    try:
        cleared = orders.clear_outbox(stored)
        if cleared is None:
            log.info("order %s changed while publishing; its writer publishes the rest", stored.id)
            return orders.get(stored.customer_id, stored.id)
    except DependencyUnavailableError as error:
        # The change is stored and its events are out: failing now would make a client retry
        # a done change (and, without an Idempotency-Key, create a second order). The relay
        # publishes the outbox again later; the events' ids make the repeat harmless.
        log.warning(
            "events of order %s published but left in the outbox: %s",
            stored.id,
            error,
            extra={"orderId": stored.id, "pendingEvents": len(events)},
        )
        return stored
    return cleared


def publish_outboxes(
    orders: Sequence[StoredOrder], repository: OrderRepository, publisher: EventPublisher
) -> int:
    """Publish the pending events of many orders in one ``publish`` (the publisher sends as few
    requests as Event Grid's size limit allows), then clear each outbox. Returns the number of
    events published; 0 when publishing failed (they stay in the outboxes; the relay sends them)."""
    waiting = [stored for stored in orders if stored.document.get("outbox")]
    events = [event for stored in waiting for event in stored.document["outbox"]]
    if not events:
        return 0
    try:
        publisher.publish(events)
    except DependencyUnavailableError as error:
        log.warning(
            "events of %d orders left in the outbox: %s",
            len(waiting),
            error,
            extra={"pendingEvents": len(events)},
        )
        return 0
    for stored in waiting:
        try:
            # None: the order changed meanwhile; its writer publishes or clears what remains.
            repository.clear_outbox(stored)
        except DependencyUnavailableError as error:
            log.warning(
                "events of order %s published but left in the outbox: %s",
                stored.id,
                error,
                extra={"orderId": stored.id, "pendingEvents": len(stored.document["outbox"])},
            )
    return len(events)


@dataclass(frozen=True, slots=True)
class RelayResult:
    orders_seen: int
    published: int
    still_pending: int


def relay_pending_events(
    orders: OrderRepository, publisher: EventPublisher, *, limit: int = 500
) -> RelayResult:
    """Publish what earlier requests could not (timer). Bounded per run by ``limit``."""
    seen = published = pending = 0
    for stored in orders.with_pending_events(limit):
        seen += 1
        try:
            left = publish_outbox(stored, orders, publisher).document.get("outbox")
        except ValueError as error:
            # A stored event that is no CloudEvent (written by hand or by an older version)
            # must not stop the relay for every order after it: it stays for an operator.
            log.error(
                "order %s has a malformed event in its outbox, left in place: %s",
                stored.id,
                error,
                extra={"orderId": stored.id, "pendingEvents": len(stored.document["outbox"])},
            )
            left = stored.document["outbox"]
        if left:
            pending += 1
        else:
            published += 1
    if seen:
        log.info(
            "outbox relay: %d orders, %d published, %d still pending",
            seen,
            published,
            pending,
            extra={"relayed": published, "stillPending": pending},
        )
    return RelayResult(seen, published, pending)
