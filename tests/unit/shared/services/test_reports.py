"""The daily sales report's pure logic: names and day bounds, aggregation, canonical bytes."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime

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
