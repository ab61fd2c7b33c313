"""Expire unpaid orders: pending orders older than the payment timeout become ``expired``.

Per order the change is the lifecycle's one way (``OrderService.transition``): ETag-guarded, so
a payment that lands between the scan and the write makes the write fail with 412; the order is
then read again and expired only if it is *still* pending. Either the payment or the expiry is
stored, never both, and only the winner's event is published.

Cost and memory: the scan is paged (``page_size`` orders in memory at a time). Each page's
writes run on a few threads; their ``Order.Expired`` events (with anything else waiting in those
orders' outboxes) are published in one Event Grid request per page, then each outbox is cleared.
If publishing fails the events stay in the outboxes and the outbox relay publishes them later.
A run stops after ``time_budget_seconds`` (the next run continues), so runs never pile up.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, Final

from shared.errors import (
    DependencyUnavailableError,
    IllegalTransitionError,
    NotFoundError,
    PreconditionFailedError,
)
from shared.metrics import ORDERS_EXPIRED, add_to_counter
from shared.models import OrderStatus
from shared.observability import get_logger
from shared.publisher import EventPublisher
from shared.repositories.order_scans import OrderScans
from shared.repositories.orders import OrderRepository, StoredOrder
from shared.services.orders import OrderService, timestamp, utc_now

log = get_logger("expiry")

DEFAULT_PAGE_SIZE: Final = 100
DEFAULT_WORKERS: Final = 4  # measured: more threads only add contention on 2 cores
DEFAULT_TIME_BUDGET_SECONDS: Final = 240.0  # the default schedule runs every 5 minutes
MAX_ATTEMPTS: Final = 3


def _still_stale(stored: StoredOrder, cutoff: str) -> bool:
    created = stored.document.get("createdAt")
    return (
        stored.document.get("status") == OrderStatus.PENDING.value
        and isinstance(created, str)
        and created <= cutoff
    )


class Outcome(StrEnum):
    EXPIRED = "expired"
    SKIPPED = "skipped"  # paid, cancelled or deleted meanwhile: the other writer won
    FAILED = "failed"  # still pending after retries, or a dependency failed: next run retries


@dataclass(frozen=True, slots=True)
class ExpiryResult:
    cutoff: str
    examined: int
    expired: int
    skipped: int
    failed: int
    events_published: int
    events_left_in_outbox: int
    pages: int
    complete: bool  # False when the time budget ended the run early


class OrderExpiryService:
    def __init__(
        self,
        orders: OrderService,
        repository: OrderRepository,
        scans: OrderScans,
        publisher: EventPublisher,
        *,
        payment_timeout: timedelta,
        clock: Callable[[], datetime] = utc_now,
        page_size: int = DEFAULT_PAGE_SIZE,
        workers: int = DEFAULT_WORKERS,
        time_budget_seconds: float = DEFAULT_TIME_BUDGET_SECONDS,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        if payment_timeout <= timedelta(0):
            raise ValueError("payment_timeout must be positive")
        if not 1 <= page_size <= 1000:
            raise ValueError("page_size must be between 1 and 1000")
        self._orders = orders
        self._repository = repository
        self._scans = scans
        self._publisher = publisher
        self._timeout = payment_timeout
        self._clock = clock
        self._page_size = page_size
        self._workers = max(1, workers)
        self._budget = time_budget_seconds
        self._monotonic = monotonic

    def cutoff(self) -> str:
        """Orders created at or before this instant are unpaid too long (30:00 old expires,
        29:59 does not)."""
        return timestamp(self._clock() - self._timeout)

    def expire_unpaid(self) -> ExpiryResult:
        cutoff = self.cutoff()
        deadline = self._monotonic() + self._budget
        examined = expired = skipped = failed = published = left = pages = 0
        complete = True
        with ThreadPoolExecutor(self._workers, thread_name_prefix="expiry") as pool:
            for page in self._scans.stale_pending_pages(cutoff, self._page_size):
                pages += 1
                examined += len(page)
                results = list(pool.map(lambda order: self._expire_one(order, cutoff), page))
                saved = [stored for outcome, stored in results if outcome is Outcome.EXPIRED]
                expired += len(saved)
                skipped += sum(1 for outcome, _ in results if outcome is Outcome.SKIPPED)
                failed += sum(1 for outcome, _ in results if outcome is Outcome.FAILED)
                sent, waiting = self._publish(saved, pool)
                published += sent
                left += waiting
                if self._monotonic() >= deadline:
                    complete = False
                    break
        result = ExpiryResult(
            cutoff, examined, expired, skipped, failed, published, left, pages, complete
        )
        if expired:
            add_to_counter(
                ORDERS_EXPIRED,
                expired,
                f"expired {expired} unpaid orders created before {cutoff}",
                logger=log,
            )
        if failed or left or not complete:
            log.warning(
                "expiry run incomplete: %d failed, %d events left in the outbox, budget %s",
                failed,
                left,
                "exhausted" if not complete else "not exhausted",
                extra={"failed": failed, "eventsLeftInOutbox": left, "complete": complete},
            )
        return result

    def _expire_one(self, stored: StoredOrder, cutoff: str) -> tuple[Outcome, StoredOrder | None]:
        try:
            return self._try_expire(stored, cutoff)
        except DependencyUnavailableError as error:
            log.warning("order %s not expired this run: %s", stored.id, error)
            return Outcome.FAILED, None

    def _try_expire(self, stored: StoredOrder, cutoff: str) -> tuple[Outcome, StoredOrder | None]:
        current: StoredOrder | None = stored
        for _ in range(MAX_ATTEMPTS):
            if current is None or not _still_stale(current, cutoff):
                return Outcome.SKIPPED, None
            try:
                return Outcome.EXPIRED, self._orders.transition(
                    current, OrderStatus.EXPIRED, publish=False
                )
            except PreconditionFailedError:
                # Changed since the scan read it (a payment, a cancel, an outbox clear): look
                # again; only a still-pending order is expired.
                current = self._reread(current)
            except (IllegalTransitionError, NotFoundError):
                return Outcome.SKIPPED, None
        return Outcome.FAILED, None

    def _reread(self, stored: StoredOrder) -> StoredOrder | None:
        try:
            return self._repository.get(stored.customer_id, stored.id)
        except NotFoundError:
            return None

    def _publish(
        self, saved: Sequence[StoredOrder | None], pool: ThreadPoolExecutor
    ) -> tuple[int, int]:
        """Publish the page's outboxes in one request, then clear them: (published, left)."""
        orders = [stored for stored in saved if stored is not None]
        events: list[dict[str, Any]] = [
            event for stored in orders for event in stored.document.get("outbox") or []
        ]
        if not events:
            return 0, 0
        try:
            self._publisher.publish(events)
        except DependencyUnavailableError as error:
            log.warning(
                "events of %d expired orders left in the outbox: %s",
                len(orders),
                error,
                extra={"pendingEvents": len(events)},
            )
            return 0, len(events)
        # A None result means the order changed after the expiry (only the relay or another
        # run can touch an expired order); its writer publishes or clears what remains.
        list(pool.map(self._repository.clear_outbox, orders))
        return len(events), 0
