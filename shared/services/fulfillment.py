"""Fulfillment: reserve stock for every line of a paid order, then mark it fulfilled, or give
back what was reserved and mark it backordered (docs/ARCHITECTURE.md, Order lifecycle).

The command (a Service Bus message on the ``fulfillment`` queue, see
``shared.services.event_routing``) may arrive twice, late, out of order, or concurrently with
its own duplicate, and the process may die after any step. What keeps it correct:

- **Reservations are per order and idempotent** (``shared.repositories.reservations``): each
  is an item of its own beside the SKU's stock item, created together with the stock change in
  one transactional batch, so reserving again changes nothing (409) and releasing gives back
  exactly what this order took, once.
- **The order records the decision and the progress.** ``fulfillment.state`` on the order goes
  ``reserving`` (written before the first reservation) -> ``fulfilled`` (all lines reserved) or
  ``released`` (a line was short; what was reserved has been given back first); the status
  change goes through ``OrderService.transition`` (ETag-guarded, event in the outbox, trace
  context kept in ``fulfillment.traceparent``). Of two racing deliveries only one can make the
  ETag-guarded change; the other re-reads and follows what was decided.
- **Redelivery resumes or compensates**: ``paid`` -> run again (reservations already made are
  found, not repeated); ``fulfilled`` -> nothing to do but publish a pending event;
  ``backordered`` or ``cancelled`` after payment -> release whatever the order still holds
  (idempotent), so a duplicate that reserved while another delivery backordered the order
  never leaks stock; a crash after releasing but before backordering simply decides again.

Stock reserved for an order whose status is not ``fulfilled`` is always on its way back: the
handler that reserved it either fulfils the order or releases it, and if it dies first, the
redelivery of its message does.

A command that can never succeed raises :class:`PoisonMessageError` with a reason (bad schema,
unknown order, an order that was never paid); anything transient raises
DependencyUnavailableError (or the SDK's error) and is retried.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from logging import ERROR
from typing import Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from shared.errors import (
    INTERNAL_DETAIL,
    UNAVAILABLE_TITLE,
    IllegalTransitionError,
    MessageOutcome,
    NotFoundError,
    OrderflowError,
    PreconditionFailedError,
    Problem,
)
from shared.metrics import FULFILLMENT_LATENCY_SECONDS, record_histogram
from shared.models import Identifier, OrderStatus
from shared.observability import get_logger
from shared.publisher import EventPublisher
from shared.repositories.orders import OrderRepository, StoredOrder
from shared.repositories.reservations import ReservationOutcome, StockReservations, holder_key
from shared.services.orders import OrderService, timestamp, utc_now
from shared.services.outbox import publish_outbox

FULFIL_ORDER: Final = "Orderflow.Fulfillment.FulfilOrder"
COMMAND_VERSION: Final = 1
MAX_COMMAND_BYTES: Final = 64 * 1024
MAX_ROUNDS: Final = 5  # re-reads after losing an ETag race before giving up (retried later)

log = get_logger("fulfillment")


class PoisonReason(StrEnum):
    MALFORMED = "MalformedCommand"
    UNKNOWN_ORDER = "UnknownOrder"
    ILLEGAL_TRANSITION = "IllegalTransition"


class PoisonMessageError(OrderflowError):
    """The message can never succeed: dead-letter (or park) it now, with this reason."""

    # Only a message handler raises it; should an HTTP handler ever do, it is a bug there.
    http_problem = Problem(
        500, "Internal error", "internal", detail=INTERNAL_DETAIL, log_level=ERROR
    )
    on_message = MessageOutcome.PARK

    def __init__(self, reason: PoisonReason, description: str) -> None:
        self.reason = reason
        self.description = description[:1000]
        super().__init__(f"{reason.value}: {self.description}")


class OrderNotReadyError(OrderflowError):
    """The order is not paid yet as seen by this reader (a stale read): retry later."""

    http_problem = Problem(503, UNAVAILABLE_TITLE, "unavailable", retry_after_seconds=1)
    on_message = MessageOutcome.RETRY


class FulfilOrderCommand(BaseModel):
    """The body of a fulfillment message. ``eventId`` is the ``Order.Paid`` event's id, which is
    also the message id, so repeats are dropped by Service Bus duplicate detection."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    type: Literal["Orderflow.Fulfillment.FulfilOrder"]
    version: Literal[1]
    customer_id: Identifier = Field(alias="customerId")
    order_id: Identifier = Field(alias="orderId")
    event_id: str = Field(alias="eventId", pattern=r"^[\x21-\x7e]{1,128}$")

    def to_json(self) -> str:
        return self.model_dump_json(by_alias=True)


def parse_command(body: bytes) -> FulfilOrderCommand:
    """The command in a message body, or PoisonMessageError(MalformedCommand) saying why not."""
    if len(body) > MAX_COMMAND_BYTES:
        raise PoisonMessageError(PoisonReason.MALFORMED, f"body is {len(body)} bytes")
    try:
        document = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise PoisonMessageError(PoisonReason.MALFORMED, f"body is not JSON: {error}") from None
    except RecursionError:
        raise PoisonMessageError(PoisonReason.MALFORMED, "body is nested too deeply") from None
    try:
        return FulfilOrderCommand.model_validate(document)
    except ValidationError as error:
        problems = "; ".join(
            f"{'.'.join(map(str, e['loc'])) or 'body'}: {e['msg']}" for e in error.errors()[:5]
        )
        raise PoisonMessageError(PoisonReason.MALFORMED, problems) from None


class FulfillmentOutcome(StrEnum):
    FULFILLED = "fulfilled"
    BACKORDERED = "backordered"
    ALREADY_FULFILLED = "already-fulfilled"
    RELEASED = "released"  # a redelivery for an order already backordered or cancelled


@dataclass(frozen=True, slots=True)
class FulfillmentResult:
    outcome: FulfillmentOutcome
    order: StoredOrder


Checkpoint = Callable[[str], None]


def _no_checkpoint(step: str) -> None:
    return None


def demand_of(document: Mapping[str, Any]) -> list[tuple[str, int]]:
    """Quantity per SKU (lines of the same SKU added up), in a fixed order (SKU)."""
    totals: dict[str, int] = {}
    for line in document.get("lines") or []:
        totals[str(line["sku"])] = totals.get(str(line["sku"]), 0) + int(line["quantity"])
    return sorted(totals.items())


def was_paid(document: Mapping[str, Any]) -> bool:
    return any(entry.get("status") == "paid" for entry in document.get("history") or [])


def paid_at(document: Mapping[str, Any]) -> datetime | None:
    """When the order became paid (its history entry), or None when it never was."""
    for entry in document.get("history") or []:
        if entry.get("status") == "paid" and entry.get("at"):
            return datetime.fromisoformat(str(entry["at"]))
    return None


class FulfillmentService:
    def __init__(
        self,
        orders: OrderService,
        repository: OrderRepository,
        publisher: EventPublisher,
        reservations: StockReservations,
        *,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self._orders = orders
        self._repository = repository
        self._publisher = publisher
        self._reservations = reservations
        self._clock = clock

    def fulfil(
        self,
        command: FulfilOrderCommand,
        *,
        traceparent: str | None = None,
        checkpoint: Checkpoint = _no_checkpoint,
    ) -> FulfillmentResult:
        """Run (or resume) fulfillment of one order. ``checkpoint(step)`` is called after each
        step that changed something, so tests can crash the process exactly there."""
        for _ in range(MAX_ROUNDS):
            try:
                stored = self._orders.get(command.customer_id, command.order_id)
            except NotFoundError:
                raise PoisonMessageError(
                    PoisonReason.UNKNOWN_ORDER,
                    f"order {command.order_id!r} of customer {command.customer_id!r} "
                    "does not exist",
                ) from None
            try:
                return self._advance(stored, command, traceparent, checkpoint)
            except (PreconditionFailedError, IllegalTransitionError):
                # A concurrent delivery changed the order first: re-read and follow it.
                continue
        raise PreconditionFailedError("order", command.order_id)

    def _advance(
        self,
        stored: StoredOrder,
        command: FulfilOrderCommand,
        traceparent: str | None,
        checkpoint: Checkpoint,
    ) -> FulfillmentResult:
        status = OrderStatus(stored.document["status"])
        if status is OrderStatus.FULFILLED:
            # Done before; an event a crash left in the outbox goes out now.
            published = publish_outbox(stored, self._repository, self._publisher)
            return FulfillmentResult(FulfillmentOutcome.ALREADY_FULFILLED, published)
        if status in (OrderStatus.BACKORDERED, OrderStatus.CANCELLED) and was_paid(stored.document):
            released = self._release_all(stored, checkpoint)
            return FulfillmentResult(FulfillmentOutcome.RELEASED, released)
        if status is OrderStatus.PENDING:
            raise OrderNotReadyError(f"order {stored.id!r} is not paid yet")
        if status is not OrderStatus.PAID:
            raise PoisonMessageError(
                PoisonReason.ILLEGAL_TRANSITION,
                f"order {stored.id!r} is {status.value} and was never paid; it cannot be fulfilled",
            )
        stored = self._mark_reserving(stored, command)
        checkpoint("marked")
        holder = holder_key(stored.customer_id, stored.id)
        at = timestamp(self._clock())
        reserved: dict[str, int] = {}
        shortages: list[dict[str, Any]] = []
        for sku, quantity in demand_of(stored.document):
            result = self._reservations.reserve(sku, holder, quantity, at)
            if result.outcome is ReservationOutcome.INSUFFICIENT:
                shortages.append({"sku": sku, "requested": quantity, "available": result.available})
                break  # one short line is enough to backorder; do not take more stock
            reserved[sku] = quantity
            checkpoint(f"reserved:{sku}")
        if not shortages:
            fulfilled = self._orders.transition(
                stored,
                OrderStatus.FULFILLED,
                traceparent=traceparent,
                changes={
                    "fulfillment": {
                        **stored.document.get("fulfillment", {}),
                        "state": "fulfilled",
                        "reserved": reserved,
                        "traceparent": traceparent,
                        "completedAt": at,
                    }
                },
            )
            checkpoint("transitioned")
            self._record_latency(stored, self._clock())
            return FulfillmentResult(FulfillmentOutcome.FULFILLED, fulfilled)
        # Give back what this delivery (or an earlier one) took before saying "backordered",
        # so the status never shows while stock is still held for the order.
        self._release_holdings(stored, checkpoint)
        backordered = self._orders.transition(
            stored,
            OrderStatus.BACKORDERED,
            traceparent=traceparent,
            changes={
                "fulfillment": {
                    **stored.document.get("fulfillment", {}),
                    "state": "released",
                    "shortages": shortages,
                    "traceparent": traceparent,
                    "completedAt": at,
                }
            },
        )
        checkpoint("transitioned")
        log.info(
            "order %s backordered: %s",
            stored.id,
            ", ".join(f"{s['sku']} {s['requested']}>{s['available']}" for s in shortages),
            extra={"orderId": stored.id},
        )
        return FulfillmentResult(FulfillmentOutcome.BACKORDERED, backordered)

    @staticmethod
    def _record_latency(stored: StoredOrder, fulfilled_at: datetime) -> None:
        """Seconds from payment to fulfilment: what a customer waits once they have paid."""
        paid = paid_at(stored.document)
        if paid is None:
            log.info("order %s fulfilled", stored.id, extra={"orderId": stored.id})
            return
        seconds = round(max(0.0, (fulfilled_at - paid).total_seconds()), 3)
        record_histogram(
            FULFILLMENT_LATENCY_SECONDS,
            seconds,
            f"order {stored.id} fulfilled {seconds} s after payment",
            fields={"orderId": stored.id},
            logger=log,
        )

    def _mark_reserving(self, stored: StoredOrder, command: FulfilOrderCommand) -> StoredOrder:
        """Record on the order that fulfillment has begun (once: a redelivery that finds the
        mark writes nothing, so duplicates racing each other do not keep changing the ETag)."""
        if (stored.document.get("fulfillment") or {}).get("state") == "reserving":
            return stored
        document = copy.deepcopy(stored.document)
        document["fulfillment"] = {
            "state": "reserving",
            "commandId": command.event_id,
            "startedAt": timestamp(self._clock()),
        }
        return self._repository.replace(document, stored.etag)

    def _release_holdings(self, stored: StoredOrder, checkpoint: Checkpoint) -> None:
        """Give back everything the order holds (idempotent: only reads when it holds none)."""
        holder = holder_key(stored.customer_id, stored.id)
        for sku, _ in demand_of(stored.document):
            if self._reservations.release(sku, holder):
                checkpoint(f"released:{sku}")

    def _release_all(self, stored: StoredOrder, checkpoint: Checkpoint) -> StoredOrder:
        """For an order already decided: release what it holds, publish a pending event."""
        self._release_holdings(stored, checkpoint)
        return publish_outbox(stored, self._repository, self._publisher)
