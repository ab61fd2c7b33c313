"""Daily sales report: ``reports/daily/YYYY-MM-DD.json`` for each UTC day.

For one day (orders whose ``createdAt`` falls in ``[day 00:00Z, next day 00:00Z)``) the report
holds the number of orders per status and, per currency, the count and total of the orders that
were paid or fulfilled (with the split between the two), aggregated while the scan streams pages,
so memory does not grow with the number of orders.

Idempotent by construction: a day's report is written once, with ``If-None-Match: *``, and
never rewritten; a second run (or a concurrent one) leaves the stored bytes as they are. The
report is a snapshot of the day's orders as of ``generatedAt``, the time it was first written.
To rebuild a day, delete its blob and run the function. The JSON is canonical (sorted keys,
fixed indentation, money as decimal strings), so the same data always gives the same bytes.

Catch-up: each run looks at the last ``CATCH_UP_DAYS`` days before today (UTC) and writes every
one whose report is missing, oldest first, and only those.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any, Final

from shared.metrics import DAILY_REPORTS_WRITTEN, add_to_counter
from shared.models import MONEY_PLACES, OrderStatus
from shared.observability import get_logger
from shared.repositories.order_scans import OrderScans
from shared.repositories.reports import ReportStore
from shared.services.orders import timestamp, utc_now

log = get_logger("reports")

REPORT_PREFIX: Final = "daily/"
REPORT_CONTENT_TYPE: Final = "application/json"
REPORT_KIND: Final = "orderflow.daily-sales"
REPORT_VERSION: Final = 1
CATCH_UP_DAYS: Final = 7
PAGE_SIZE: Final = 500
SALES_STATUSES: Final = (OrderStatus.PAID, OrderStatus.FULFILLED)
_CURRENCY = re.compile(r"^[A-Z]{3}$")
_MAX_ABS_TOTAL = Decimal("1e15")


def report_name(day: date) -> str:
    return f"{REPORT_PREFIX}{day.isoformat()}.json"


def day_bounds(day: date) -> tuple[str, str]:
    start = datetime.combine(day, time(0), tzinfo=UTC)
    return timestamp(start), timestamp(start + timedelta(days=1))


@dataclass
class _Sales:
    orders: int = 0
    total: Decimal = Decimal(0)

    def view(self) -> dict[str, Any]:
        return {"orders": self.orders, "total": str(self.total.quantize(MONEY_PLACES))}


@dataclass
class DailySales:
    """Running totals for one day; :meth:`add` one order at a time."""

    day: date
    by_status: Counter[str] = field(default_factory=Counter)
    sales: dict[str, dict[str, _Sales]] = field(default_factory=dict)
    skipped: int = 0

    def add(self, order: Mapping[str, Any]) -> None:
        status = order.get("status")
        if status not in OrderStatus.__members__.values():
            self.skipped += 1
            return
        self.by_status[str(status)] += 1
        if status not in SALES_STATUSES:
            return
        currency, amount = order.get("currency"), _amount(order.get("total"))
        if not isinstance(currency, str) or not _CURRENCY.match(currency) or amount is None:
            # A stored order the models would refuse: counted by status, left out of the money.
            self.skipped += 1
            return
        per_status = self.sales.setdefault(currency, {})
        entry = per_status.setdefault(str(status), _Sales())
        entry.orders += 1
        entry.total += amount

    def add_all(self, orders: Iterable[Mapping[str, Any]]) -> None:
        for order in orders:
            self.add(order)

    def document(self, generated_at: datetime) -> dict[str, Any]:
        start, end = day_bounds(self.day)
        currencies: dict[str, Any] = {}
        for currency, per_status in self.sales.items():
            combined = _Sales(
                sum(s.orders for s in per_status.values()),
                sum((s.total for s in per_status.values()), Decimal(0)),
            )
            currencies[currency] = {
                **combined.view(),
                "byStatus": {
                    status: per_status.get(status, _Sales()).view()
                    for status in (s.value for s in SALES_STATUSES)
                },
            }
        return {
            "kind": REPORT_KIND,
            "version": REPORT_VERSION,
            "date": self.day.isoformat(),
            "from": start,
            "to": end,
            "generatedAt": timestamp(generated_at),
            "orders": sum(self.by_status.values()),
            "countsByStatus": {
                status.value: self.by_status.get(status.value, 0) for status in OrderStatus
            },
            "salesByCurrency": currencies,
            "salesStatuses": [status.value for status in SALES_STATUSES],
            "skippedInvalid": self.skipped,
        }


def _amount(value: object) -> Decimal | None:
    if not isinstance(value, str) or len(value) > 32:
        return None
    try:
        amount = Decimal(value)
    except InvalidOperation:
        return None
    if not amount.is_finite() or abs(amount) >= _MAX_ABS_TOTAL:
        return None
    return amount


def canonical_json(document: Mapping[str, Any]) -> bytes:
    return (json.dumps(document, sort_keys=True, indent=2, ensure_ascii=False) + "\n").encode()


@dataclass(frozen=True, slots=True)
class ReportRunResult:
    written: tuple[date, ...]
    already_present: tuple[date, ...]


class DailySalesReportService:
    def __init__(
        self,
        scans: OrderScans,
        store: ReportStore,
        *,
        clock: Callable[[], datetime] = utc_now,
        catch_up_days: int = CATCH_UP_DAYS,
        page_size: int = PAGE_SIZE,
    ) -> None:
        if not 1 <= catch_up_days <= 31:
            raise ValueError("catch_up_days must be between 1 and 31")
        self._scans = scans
        self._store = store
        self._clock = clock
        self._catch_up_days = catch_up_days
        self._page_size = page_size

    def due_days(self) -> list[date]:
        """The days the run covers, oldest first: the last ``catch_up_days`` before today."""
        today = self._clock().astimezone(UTC).date()
        return [today - timedelta(days=n) for n in range(self._catch_up_days, 0, -1)]

    def build(self, day: date) -> DailySales:
        sales = DailySales(day)
        start, end = day_bounds(day)
        for page in self._scans.created_between_pages(start, end, self._page_size):
            sales.add_all(page)
        return sales

    def run(self) -> ReportRunResult:
        """Write the report of every due day that has none; leave existing reports alone."""
        written: list[date] = []
        present: list[date] = []
        for day in self.due_days():
            name = report_name(day)
            if self._store.exists(name):
                present.append(day)
                continue
            sales = self.build(day)
            data = canonical_json(sales.document(self._clock()))
            if self._store.create(name, data, REPORT_CONTENT_TYPE):
                written.append(day)
                add_to_counter(
                    DAILY_REPORTS_WRITTEN,
                    1,
                    f"daily sales report {name} written",
                    attributes={"day": day.isoformat()},
                    logger=log,
                )
                if sales.skipped:
                    log.warning(
                        "report %s left out %d stored orders with invalid fields",
                        name,
                        sales.skipped,
                        extra={"skippedInvalid": sales.skipped},
                    )
            else:
                present.append(day)  # written by a concurrent run meanwhile
        return ReportRunResult(tuple(written), tuple(present))
