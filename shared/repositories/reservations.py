"""Stock reservations, recorded on the SKU's inventory document.

An inventory document (``inventory`` container, partition key ``/sku``, id = sku) carries
``available`` and a ``reservations`` object keyed by *holder* (one order):

    {"id": "SKU-1", "sku": "SKU-1", "available": 7,
     "reservations": {"alice:4f0c...": {"quantity": 3, "at": "2026-11-21T12:00:00.000000Z"}}}

Reserving subtracts from ``available`` and adds the holder's entry in one ETag-guarded replace,
so the stock count and the record of who holds it can never disagree, and a second reservation
by the same holder (a redelivered or duplicate command) finds its entry and changes nothing.
Releasing removes the entry and gives its quantity back, again in one guarded write, and does
nothing when the holder has no entry. ``available`` never goes below zero: a reservation that
does not fit is refused before anything is written.

A concurrent writer makes the replace fail (412); the operation then re-reads and tries again
with a short, jittered backoff, a bounded number of times, and finally raises
DependencyUnavailableError so the message is retried later rather than failed.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Final, Protocol

from shared.errors import DependencyUnavailableError, NotFoundError, PreconditionFailedError
from shared.names import INVENTORY_CONTAINER

if TYPE_CHECKING:
    from azure.cosmos import ContainerProxy

INVENTORY = "inventory item"
MAX_ATTEMPTS: Final = 40
BACKOFF_BASE_SECONDS: Final = 0.005
BACKOFF_MAX_SECONDS: Final = 0.25


class Reservation(StrEnum):
    RESERVED = "reserved"  # this call took the stock
    ALREADY_HELD = "already-held"  # the holder had it already (redelivery)
    INSUFFICIENT = "insufficient"  # not enough stock (or no such SKU); nothing written


@dataclass(frozen=True, slots=True)
class ReserveResult:
    outcome: Reservation
    sku: str
    quantity: int
    available: int  # the stock left after this call (or seen, when refused)


def holder_key(customer_id: str, order_id: str) -> str:
    """The reservation holder for an order (ids never contain ':')."""
    return f"{customer_id}:{order_id}"


class StockReservations(Protocol):
    def reserve(self, sku: str, holder: str, quantity: int, at: str) -> ReserveResult: ...

    def release(self, sku: str, holder: str) -> int:
        """Give back what ``holder`` holds of ``sku``; the quantity released (0 if none)."""
        ...

    def held(self, sku: str, holder: str) -> int:
        """What ``holder`` holds of ``sku`` (0 if nothing)."""
        ...


class CosmosStockReservations:
    """StockReservations on the inventory container (read + ETag-guarded replace)."""

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

    def _read(self, sku: str) -> dict[str, Any] | None:
        from shared.repositories.cosmos_errors import cosmos_errors

        try:
            with cosmos_errors(INVENTORY, sku):
                document: dict[str, Any] = self._container.read_item(sku, partition_key=sku)
                return document
        except NotFoundError:
            return None

    def _replace(self, document: dict[str, Any]) -> None:
        from azure.core import MatchConditions

        from shared.repositories.cosmos_errors import cosmos_errors

        body = {k: v for k, v in document.items() if not k.startswith("_")}
        with cosmos_errors(INVENTORY, str(document["id"])):
            self._container.replace_item(
                document["id"],
                body,
                etag=document["_etag"],
                match_condition=MatchConditions.IfNotModified,
            )

    def _backoff(self, attempt: int) -> None:
        ceiling = min(BACKOFF_MAX_SECONDS, BACKOFF_BASE_SECONDS * 2**attempt)
        self._sleep(random.uniform(0, ceiling))  # noqa: S311 - jitter, not security

    def _contended(self, sku: str) -> DependencyUnavailableError:
        return DependencyUnavailableError(
            "Cosmos DB", f"inventory {sku!r} stayed contended for {MAX_ATTEMPTS} attempts", 1
        )

    def reserve(self, sku: str, holder: str, quantity: int, at: str) -> ReserveResult:
        if quantity < 1:
            raise ValueError("quantity must be at least 1")
        for attempt in range(MAX_ATTEMPTS):
            document = self._read(sku)
            if document is None:
                return ReserveResult(Reservation.INSUFFICIENT, sku, quantity, 0)
            available = int(document.get("available", 0))
            reservations = dict(document.get("reservations") or {})
            if holder in reservations:
                return ReserveResult(Reservation.ALREADY_HELD, sku, quantity, available)
            if available < quantity:
                return ReserveResult(Reservation.INSUFFICIENT, sku, quantity, available)
            reservations[holder] = {"quantity": quantity, "at": at}
            document["available"] = available - quantity
            document["reservations"] = reservations
            try:
                self._replace(document)
            except PreconditionFailedError:
                self._backoff(attempt)
                continue
            return ReserveResult(Reservation.RESERVED, sku, quantity, available - quantity)
        raise self._contended(sku)

    def release(self, sku: str, holder: str) -> int:
        for attempt in range(MAX_ATTEMPTS):
            document = self._read(sku)
            reservations = dict((document or {}).get("reservations") or {})
            entry = reservations.pop(holder, None)
            if document is None or entry is None:
                return 0
            quantity = int(entry.get("quantity", 0))
            document["available"] = int(document.get("available", 0)) + quantity
            document["reservations"] = reservations
            try:
                self._replace(document)
            except PreconditionFailedError:
                self._backoff(attempt)
                continue
            return quantity
        raise self._contended(sku)

    def held(self, sku: str, holder: str) -> int:
        document = self._read(sku) or {}
        entry = (document.get("reservations") or {}).get(holder)
        return int(entry.get("quantity", 0)) if entry else 0
