"""The floor of benchmarks/scale.py: stock reservations as they were before the reservation
items (shared/repositories/reservations.py at commit eddea7a), kept here only to be measured
beside the current design in the same process. Every reservation adds an entry to the SKU's
one stock item (which grows with every order) through read + ETag-guarded replace, retried on
412. Not used by the app.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final

from shared.errors import DependencyUnavailableError, NotFoundError, PreconditionFailedError
from shared.repositories.reservations import ReservationOutcome, ReserveResult

if TYPE_CHECKING:
    from azure.cosmos import ContainerProxy

INVENTORY = "inventory item"
MAX_ATTEMPTS: Final = 40
BACKOFF_BASE_SECONDS: Final = 0.005
BACKOFF_MAX_SECONDS: Final = 0.25


class ReadReplaceReservations:
    """The previous design: the reservations map on the stock item, read + ETag-guarded replace."""

    def __init__(
        self,
        container: ContainerProxy,
        *,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._container = container
        self._sleep = sleep
        self._lock = threading.Lock()
        self.retries = 0

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
        self._sleep(random.uniform(0, ceiling))

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
                return ReserveResult(ReservationOutcome.INSUFFICIENT, sku, quantity, 0)
            available = int(document.get("available", 0))
            reservations = dict(document.get("reservations") or {})
            if holder in reservations:
                return ReserveResult(ReservationOutcome.ALREADY_HELD, sku, quantity, available)
            if available < quantity:
                return ReserveResult(ReservationOutcome.INSUFFICIENT, sku, quantity, available)
            reservations[holder] = {"quantity": quantity, "at": at}
            document["available"] = available - quantity
            document["reservations"] = reservations
            try:
                self._replace(document)
            except PreconditionFailedError:
                with self._lock:
                    self.retries += 1
                self._backoff(attempt)
                continue
            return ReserveResult(ReservationOutcome.RESERVED, sku, quantity, available - quantity)
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
                with self._lock:
                    self.retries += 1
                self._backoff(attempt)
                continue
            return quantity
        raise self._contended(sku)

    def held(self, sku: str, holder: str) -> int:
        document = self._read(sku) or {}
        entry = (document.get("reservations") or {}).get(holder)
        return int(entry.get("quantity", 0)) if entry else 0
