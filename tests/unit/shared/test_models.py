"""Domain models: money as Decimal strings, ISO currencies, limits, and the order lifecycle."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from pydantic import ValidationError

from shared.models import (
    ALLOWED_TRANSITIONS,
    MAX_LINES,
    OrderDraft,
    OrderLine,
    OrderStatus,
    can_transition,
)


def draft(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "lines": [{"sku": "SKU-1", "quantity": 2, "unitPrice": "10.25"}],
        "currency": "EUR",
    }
    body.update(overrides)
    return body


def errors_of(body: dict[str, Any]) -> list[tuple[tuple[str | int, ...], str]]:
    with pytest.raises(ValidationError) as caught:
        OrderDraft.model_validate(body)
    return [(tuple(e["loc"]), e["msg"]) for e in caught.value.errors()]


def test_total_is_exact_decimal() -> None:
    order = OrderDraft.model_validate(
        draft(
            lines=[
                {"sku": "A", "quantity": 3, "unitPrice": "0.10"},
                {"sku": "B", "quantity": 1, "unitPrice": "0.20"},
            ]
        )
    )
    assert order.total() == Decimal("0.50")  # 0.1 * 3 + 0.2 is 0.5000000000000001 in floats


def test_money_serialises_as_two_place_strings() -> None:
    line = OrderLine.model_validate({"sku": "A", "quantity": 1, "unitPrice": "5"})
    assert line.model_dump(by_alias=True, mode="json") == {
        "sku": "A",
        "quantity": 1,
        "unitPrice": "5.00",
    }


@pytest.mark.parametrize(
    ("price", "message"),
    [
        ("1.005", "at most 2 decimal places"),
        (1.5, "decimal string"),
        ("abc", "decimal string"),
        ("NaN", "finite"),
        ("Infinity", "finite"),
        ("-1.00", "not be negative"),
        ("1000000.01", "at most"),
        (True, "decimal string"),
    ],
)
def test_bad_prices_are_refused(price: object, message: str) -> None:
    body = draft(lines=[{"sku": "A", "quantity": 1, "unitPrice": price}])
    (loc, msg), *_ = errors_of(body)
    assert loc == ("lines", 0, "unitPrice")
    assert message in msg


@pytest.mark.parametrize("quantity", [0, -1, 1_000_001, "2", 1.0, None])
def test_bad_quantities_are_refused(quantity: object) -> None:
    body = draft(lines=[{"sku": "A", "quantity": quantity, "unitPrice": "1.00"}])
    assert errors_of(body)[0][0] == ("lines", 0, "quantity")


@pytest.mark.parametrize("currency", ["eur", "EURO", "XXX", "ABC", "", 978])
def test_unknown_currencies_are_refused(currency: object) -> None:
    assert errors_of(draft(currency=currency))[0][0] == ("currency",)


def test_zero_decimal_currency_refuses_fractions() -> None:
    body = draft(currency="JPY", lines=[{"sku": "A", "quantity": 1, "unitPrice": "100.50"}])
    assert "no decimal places" in errors_of(body)[0][1]
    ok = draft(currency="JPY", lines=[{"sku": "A", "quantity": 1, "unitPrice": "100"}])
    assert OrderDraft.model_validate(ok).total() == Decimal("100.00")


def test_line_count_limits() -> None:
    assert errors_of(draft(lines=[]))[0][0] == ("lines",)
    many = [{"sku": f"S{i}", "quantity": 1, "unitPrice": "1.00"} for i in range(MAX_LINES + 1)]
    assert errors_of(draft(lines=many))[0][0] == ("lines",)


def test_unknown_fields_are_errors_not_ignored() -> None:
    locs = [loc for loc, _ in errors_of(draft(discount="10"))]
    assert ("discount",) in locs
    body = draft(lines=[{"sku": "A", "quantity": 1, "unitPrice": "1.00", "colour": "red"}])
    assert ("lines", 0, "colour") in [loc for loc, _ in errors_of(body)]


@pytest.mark.parametrize("sku", ["", "a/b", "a b", "-lead", "x" * 65, "é", "a#b", "a?b"])
def test_hostile_skus_are_refused(sku: str) -> None:
    body = draft(lines=[{"sku": sku, "quantity": 1, "unitPrice": "1.00"}])
    assert errors_of(body)[0][0] == ("lines", 0, "sku")


def test_lifecycle_matches_the_design() -> None:
    pending, paid = OrderStatus.PENDING, OrderStatus.PAID
    assert can_transition(pending, paid)
    assert can_transition(pending, OrderStatus.CANCELLED)
    assert can_transition(pending, OrderStatus.EXPIRED)
    assert can_transition(paid, OrderStatus.FULFILLED)
    assert can_transition(paid, OrderStatus.BACKORDERED)
    assert can_transition(OrderStatus.BACKORDERED, OrderStatus.CANCELLED)
    allowed = sum(len(targets) for targets in ALLOWED_TRANSITIONS.values())
    assert allowed == 6
    for terminal in (OrderStatus.FULFILLED, OrderStatus.CANCELLED, OrderStatus.EXPIRED):
        assert not any(can_transition(terminal, target) for target in OrderStatus)
    assert not can_transition(paid, OrderStatus.CANCELLED)
    assert not can_transition(paid, pending)


@pytest.mark.parametrize(
    ("header", "weak", "expected"),
    [
        ('"abc"', False, True),
        ("abc", False, True),  # tolerate an unquoted copy of the stored value
        ('"other", "abc"', False, True),
        ("*", False, True),
        ('W/"abc"', False, False),  # If-Match uses the strong comparison
        ('W/"abc"', True, True),  # If-None-Match the weak one
        ('"abd"', True, False),
        ("", True, False),
    ],
)
def test_etag_matching(header: str, weak: bool, expected: bool) -> None:
    from shared.services.orders import etag_matches, http_etag

    assert http_etag("abc") == '"abc"'
    assert http_etag('"abc"') == '"abc"'
    assert etag_matches(header, "abc", weak=weak) is expected
