"""Stock reservations: one small item per holder beside the SKU's stock item.

The ``inventory`` container (partition key ``/sku``) holds, per SKU, one **stock item** whose size
never changes, and one **reservation item** per holder (one order) in the same logical
partition:

    {"id": "SKU-1", "sku": "SKU-1", "available": 7, "updatedAt": "..."}
    {"id": "reservation:alice:4f0c...", "sku": "SKU-1", "kind": "reservation",
     "holder": "alice:4f0c...", "quantity": 3, "at": "2026-11-21T12:00:00.000000Z",
     "ttl": 2592000}

**Reserve** is one transactional batch in the SKU's partition, with no read before it:

1. create the reservation item (its id comes from the holder, so a redelivered or duplicate
   command hits 409 Conflict and the whole batch changes nothing: ``ALREADY_HELD``);
2. patch the stock item with ``incr /available -quantity`` under the filter predicate
   ``available >= quantity`` (412 = not enough stock, and again nothing is written).

The stock count and the record of who holds it are written together or not at all, so they can
never disagree, and ``available`` never goes below zero. Only a refusal reads the stock item (to
report what is left, and to tell "not enough" from a stock level that rose meanwhile).

**Release** reads the holder's reservation (what it holds) and then, in one batch, deletes it
(if-match on its ETag) and gives the quantity back with ``incr``. A holder with no reservation
releases nothing.

**Reservations do not stay forever.** Each is created with a ``ttl`` of
``RESERVATION_TTL_SECONDS`` (30 days; the container has TTL on with no default, so stock items
never expire). The reservation is what makes a redelivered command harmless and what a release
gives back, and both can only happen while a fulfillment command for the order can still be
delivered: Service Bus keeps a message at most 14 days (``defaultMessageTimeToLive`` in
infra/modules/servicebus.bicep). After that the order itself (``fulfillment.reserved``) is the
record. So a SKU's partition holds at most the reservations of 30 days' orders, each of a few
hundred bytes, and no item in it grows with traffic.

**Contention.** Concurrent patches of one item may be answered 449 (retry with) by Cosmos DB, and
the Python SDK does not retry it; a release can lose an if-match race (412). Both are retried here
with jittered exponential backoff, a bounded number of times, and then surface as
DependencyUnavailableError, so the message is retried later instead of being lost.

**Items written by the previous design** (a stock item that carries a ``reservations`` object,
one entry per holder, which grew with every order) are converted on first touch: the reserve
predicate also requires ``NOT IS_DEFINED(c.reservations)``, so an old item is never written by
the new path; the refusal reads it, and its entries become reservation items, up to 99 per batch
with the shrinking ``reservations`` written by an if-match patch in the same batch. Release and
``held`` look at the stock item only when the holder has no reservation item, and convert it
the same way. docs/ARCHITECTURE.md explains the choice.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Final, Protocol

from shared.errors import DependencyUnavailableError
from shared.names import INVENTORY_CONTAINER
from shared.repositories.cosmos_batch import (
    BatchResult,
    LostRace,
    RaceCounter,
    execute_batch,
    read_item,
    retry_lost_races,
)

if TYPE_CHECKING:
    from azure.cosmos import ContainerProxy

INVENTORY = "inventory item"
RESERVATION_KIND: Final = "reservation"
RESERVATION_TTL_SECONDS: Final = 30 * 24 * 60 * 60
MIGRATION_BATCH: Final = 99  # + the stock item's patch = Cosmos DB's 100 operations per batch


class ReservationOutcome(StrEnum):
    RESERVED = "reserved"  # this call took the stock
    ALREADY_HELD = "already-held"  # the holder had it already (redelivery)
    INSUFFICIENT = "insufficient"  # not enough stock (or no such SKU); nothing written


@dataclass(frozen=True, slots=True)
class ReserveResult:
    outcome: ReservationOutcome
    sku: str
    quantity: int
    # The stock left after this call, or seen when refused; None when knowing it would cost a
    # read nobody needs (a redelivery that finds its reservation).
    available: int | None


@dataclass(frozen=True, slots=True)
class Holding:
    quantity: int
    at: str


def holder_key(customer_id: str, order_id: str) -> str:
    """The reservation holder for an order (ids never contain ':')."""
    return f"{customer_id}:{order_id}"


def reservation_id(holder: str) -> str:
    return f"{RESERVATION_KIND}:{holder}"


def reservation_item(sku: str, holder: str, quantity: int, at: str) -> dict[str, Any]:
    return {
        "id": reservation_id(holder),
        "sku": sku,
        "kind": RESERVATION_KIND,
        "holder": holder,
        "quantity": quantity,
        "at": at,
        "ttl": RESERVATION_TTL_SECONDS,
    }


def reserve_predicate(quantity: int) -> str:
    # ``quantity`` is an int the service computed, never caller text: nothing to escape.
    return f"FROM c WHERE c.available >= {int(quantity)} AND NOT IS_DEFINED(c.reservations)"


class StockReservations(Protocol):
    def reserve(self, sku: str, holder: str, quantity: int, at: str) -> ReserveResult: ...

    def release(self, sku: str, holder: str) -> int:
        """Give back what ``holder`` holds of ``sku``; the quantity released (0 if none)."""
        ...

    def held(self, sku: str, holder: str) -> int:
        """What ``holder`` holds of ``sku`` (0 if nothing)."""
        ...


class CosmosStockReservations:
    """StockReservations on the inventory container (transactional batches)."""

    def __init__(
        self,
        container: ContainerProxy | None = None,
        *,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if container is None:
            from shared.clients import get_container

            container = get_container(INVENTORY_CONTAINER)
        self._container = container
        self._sleep = sleep
        self._races = RaceCounter()

    @property
    def retries(self) -> int:
        """Attempts repeated after a lost race (449, if-match), since this object was made."""
        return self._races.count

    # --- the operations ------------------------------------------------------------------------

    def reserve(self, sku: str, holder: str, quantity: int, at: str) -> ReserveResult:
        if quantity < 1:
            raise ValueError("quantity must be at least 1")
        return self._with_retries(sku, lambda: self._try_reserve(sku, holder, quantity, at))

    def release(self, sku: str, holder: str) -> int:
        return self._with_retries(sku, lambda: self._try_release(sku, holder))

    def held(self, sku: str, holder: str) -> int:
        reservation = self._read(sku, reservation_id(holder))
        if reservation is not None:
            return int(reservation["quantity"])
        legacy = self._legacy_stock(sku)
        entry = (legacy or {}).get("reservations", {}).get(holder)
        return int(entry.get("quantity", 0)) if entry else 0

    def holdings(self, sku: str) -> dict[str, Holding]:
        """Who holds what of ``sku`` (one single-partition query; for operators and tests)."""
        from shared.repositories.cosmos_errors import cosmos_errors

        with cosmos_errors(INVENTORY, sku):
            rows = list(
                self._container.query_items(
                    "SELECT c.holder, c.quantity, c.at FROM c WHERE c.kind = @kind",
                    parameters=[{"name": "@kind", "value": RESERVATION_KIND}],
                    partition_key=sku,
                )
            )
        found = {str(r["holder"]): Holding(int(r["quantity"]), str(r["at"])) for r in rows}
        legacy = self._legacy_stock(sku) or {}
        for holder, entry in (legacy.get("reservations") or {}).items():
            found.setdefault(holder, Holding(int(entry["quantity"]), str(entry.get("at", ""))))
        return found

    # --- one attempt each ----------------------------------------------------------------------

    def _try_reserve(self, sku: str, holder: str, quantity: int, at: str) -> ReserveResult:
        operations: list[Any] = [
            ("create", (reservation_item(sku, holder, quantity, at),)),
            (
                "patch",
                (sku, [{"op": "incr", "path": "/available", "value": -quantity}]),
                {"filter_predicate": reserve_predicate(quantity)},
            ),
        ]
        batch = self._batch(sku, operations)
        if batch.failure is None:
            return ReserveResult(
                ReservationOutcome.RESERVED, sku, quantity, int(batch.body(1)["available"])
            )
        index, status = batch.failure
        if index == 0 and status == 409:
            return ReserveResult(ReservationOutcome.ALREADY_HELD, sku, quantity, None)
        if index == 1 and status == 404:
            return ReserveResult(ReservationOutcome.INSUFFICIENT, sku, quantity, 0)
        if index == 1 and status == 412:
            stock = self._read(sku, sku)
            if stock is None:  # deleted in between
                return ReserveResult(ReservationOutcome.INSUFFICIENT, sku, quantity, 0)
            if "reservations" in stock:
                self._migrate(stock)
                raise LostRace
            available = int(stock.get("available", 0))
            if available >= quantity:
                raise LostRace  # stock rose between the batch and the read: try again
            return ReserveResult(ReservationOutcome.INSUFFICIENT, sku, quantity, available)
        raise self._unexpected(sku, status)

    def _try_release(self, sku: str, holder: str) -> int:
        reservation = self._read(sku, reservation_id(holder))
        if reservation is None:
            legacy = self._legacy_stock(sku)
            if legacy is not None and holder in legacy["reservations"]:
                self._migrate(legacy)
                raise LostRace
            return 0
        quantity = int(reservation["quantity"])
        operations: list[Any] = [
            ("delete", (reservation["id"],), {"if_match_etag": reservation["_etag"]}),
            ("patch", (sku, [{"op": "incr", "path": "/available", "value": quantity}])),
        ]
        batch = self._batch(sku, operations)
        if batch.failure is None:
            return quantity
        index, status = batch.failure
        if index == 0 and status in (404, 412):
            raise LostRace  # released (or replaced) concurrently: look again
        raise self._unexpected(sku, status)

    # --- migration of the previous design ------------------------------------------------------

    def _migrate(self, stock: dict[str, Any]) -> None:
        """Move a legacy stock item's ``reservations`` entries into reservation items."""
        sku = str(stock["sku"])
        etag = str(stock["_etag"])
        remaining = dict(stock.get("reservations") or {})
        while True:
            holders = list(remaining)[:MIGRATION_BATCH]
            for holder in holders:
                del remaining[holder]
            patch = (
                {"op": "set", "path": "/reservations", "value": remaining}
                if remaining
                else {"op": "remove", "path": "/reservations"}
            )
            entries = stock["reservations"]
            operations: list[Any] = [
                (
                    "upsert",
                    (
                        reservation_item(
                            sku,
                            holder,
                            int(entries[holder]["quantity"]),
                            str(entries[holder].get("at", "")),
                        ),
                    ),
                )
                for holder in holders
            ]
            operations.append(("patch", (sku, [patch]), {"if_match_etag": etag}))
            batch = self._batch(sku, operations)
            if batch.failure is not None:
                if batch.failure[1] in (404, 409, 412):
                    return  # changed meanwhile (another migration): the caller reads again
                raise self._unexpected(sku, batch.failure[1])
            etag = str(batch.body(len(operations) - 1)["_etag"])
            if not remaining:
                return

    def _legacy_stock(self, sku: str) -> dict[str, Any] | None:
        stock = self._read(sku, sku)
        return stock if stock is not None and "reservations" in stock else None

    # --- Cosmos plumbing -----------------------------------------------------------------------

    def _with_retries[T](self, sku: str, attempt: Callable[[], T]) -> T:
        return retry_lost_races(
            attempt, f"inventory {sku!r}", sleep=self._sleep, counter=self._races
        )

    def _read(self, sku: str, item_id: str) -> dict[str, Any] | None:
        return read_item(self._container, item_id, sku, INVENTORY)

    def _batch(self, sku: str, operations: Sequence[Any]) -> BatchResult:
        return execute_batch(self._container, sku, operations, INVENTORY)

    @staticmethod
    def _unexpected(sku: str, status: int) -> DependencyUnavailableError:
        return DependencyUnavailableError(
            "Cosmos DB", f"inventory {sku!r} batch failed with HTTP {status}", 1
        )
