"""Pure logic of the scheduled tasks: report aggregation, dead-letter counting, lateness,
metric log fields."""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta

import pytest

from shared import metrics
from shared.scheduling import lateness
from shared.services.deadletters import count_dead_letters, watch_dead_letters
from shared.services.reports import DailySales, canonical_json, day_bounds, report_name

DAY = date(2026, 11, 20)


def test_report_names_and_bounds() -> None:
    assert report_name(DAY) == "daily/2026-11-20.json"
    assert day_bounds(DAY) == ("2026-11-20T00:00:00.000000Z", "2026-11-21T00:00:00.000000Z")


def test_aggregation_counts_sales_and_skips_hostile_rows() -> None:
    sales = DailySales(DAY)
    sales.add_all(
        [
            {"status": "paid", "currency": "EUR", "total": "10.10"},
            {"status": "fulfilled", "currency": "EUR", "total": "0.20"},
            {"status": "paid", "currency": "JPY", "total": "1000"},
            {"status": "pending", "currency": "EUR", "total": "5.00"},
            {"status": "cancelled", "currency": "EUR", "total": "5.00"},
            {"status": "paid", "currency": "eur", "total": "1.00"},  # bad currency
            {"status": "paid", "currency": "EUR", "total": "NaN"},  # bad total
            {"status": "paid", "currency": "EUR", "total": 3.5},  # a float: not money
            {"status": "paid", "currency": "EUR", "total": "1" * 40},  # absurd
            {"status": "shipped", "currency": "EUR", "total": "1.00"},  # unknown status
            {"currency": "EUR"},
        ]
    )
    document = sales.document(datetime(2026, 11, 21, 1, 30, tzinfo=UTC))

    assert document["countsByStatus"] == {
        "pending": 1,
        "paid": 6,
        "fulfilled": 1,
        "backordered": 0,
        "cancelled": 1,
        "expired": 0,
    }
    assert document["salesByCurrency"]["EUR"]["total"] == "10.30"
    assert document["salesByCurrency"]["EUR"]["orders"] == 2
    assert document["salesByCurrency"]["JPY"]["total"] == "1000.00"
    assert document["skippedInvalid"] == 6
    assert document["generatedAt"] == "2026-11-21T01:30:00.000000Z"


def test_same_data_gives_the_same_bytes_whatever_the_order() -> None:
    rows = [
        {"status": "paid", "currency": c, "total": t}
        for c, t in [("USD", "1.00"), ("EUR", "2.00"), ("GBP", "3.00"), ("EUR", "4.00")]
    ]
    at = datetime(2026, 11, 21, 1, 30, tzinfo=UTC)
    first, second = DailySales(DAY), DailySales(DAY)
    first.add_all(rows)
    second.add_all(reversed(rows))

    data = canonical_json(first.document(at))
    assert data == canonical_json(second.document(at))
    assert data.endswith(b"\n")
    assert list(json.loads(data)["salesByCurrency"]) == ["EUR", "GBP", "USD"]


class Peeker:
    """A dead-letter sub-queue holding the given sequence numbers (sparse, like a real one)."""

    def __init__(self, sequence_numbers: Sequence[int]) -> None:
        self.sequence_numbers = sorted(sequence_numbers)
        self.calls = 0

    def peek(self, from_sequence_number: int, max_count: int) -> Sequence[int]:
        self.calls += 1
        eligible = [n for n in self.sequence_numbers if n >= from_sequence_number]
        return eligible[:max_count]


def test_dead_letters_are_counted_in_pages() -> None:
    peeker = Peeker([3, 5, *range(100, 1100)])

    depth = count_dead_letters(peeker, "fulfillment", page_size=250)

    assert (depth.count, depth.capped) == (1002, False)
    assert peeker.calls == 6  # 5 pages and the empty answer that ends the scan


def test_dead_letter_count_is_capped() -> None:
    depth = count_dead_letters(Peeker(range(1, 501)), "fulfillment", page_size=100, limit=250)

    assert (depth.count, depth.capped, depth.display) == (250, True, ">=250")


def test_a_broker_going_backwards_is_an_error_not_a_loop() -> None:
    class Backwards:
        def peek(self, from_sequence_number: int, max_count: int) -> Sequence[int]:
            return [1]

    with pytest.raises(RuntimeError, match="before the requested"):
        count_dead_letters(Backwards(), "fulfillment")


def test_watch_warns_with_the_metric_as_log_fields(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="orderflow"):
        watch_dead_letters(Peeker([7, 8]), "fulfillment")
        watch_dead_letters(Peeker([]), "fulfillment")

    warning, info = [r for r in caplog.records if getattr(r, "metric", None)]
    assert warning.levelno == logging.WARNING
    assert (warning.metric, warning.value, warning.queue) == (  # type: ignore[attr-defined]
        metrics.DEAD_LETTER_DEPTH,
        2,
        "fulfillment",
    )
    assert info.levelno == logging.INFO
    assert info.value == 0  # type: ignore[attr-defined]


def test_metric_names_are_stable() -> None:
    assert metrics.METRIC_NAMES == (
        "orderflow.servicebus.dead_letter_depth",
        "orderflow.orders.expired",
        "orderflow.reports.daily_written",
        "orderflow.orders.transitioned",
        "orderflow.fulfillment.latency_seconds",
        "orderflow.imports.rows_accepted",
        "orderflow.imports.rows_rejected",
        "orderflow.imports.reconciled",
        "orderflow.storage.poison_queue_depth",
        "orderflow.host.cold_starts",
    )


def test_lateness_of_a_past_due_run() -> None:
    now = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)
    status = {"Last": "2026-11-21T11:00:00+00:00", "Next": "2026-11-21T11:05:00+00:00"}

    assert lateness(status, now) == timedelta(minutes=55)
    assert lateness({"Next": "2026-11-21T11:05:00Z"}, now) == timedelta(minutes=55)
    assert lateness({"Next": "soon"}, now) is None
    assert lateness({"Next": 12}, now) is None
    assert lateness(None, now) is None
    assert lateness({"Next": "2026-11-21T13:00:00+00:00"}, now) == timedelta(0)
