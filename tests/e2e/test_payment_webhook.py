"""The payment webhook over real HTTP: signatures, replay, rotation, mismatches."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

import pytest

from shared.webhooks import signature_header
from tests.fixtures.app import WEBHOOK_SECRET, WEBHOOK_SECRET_PREVIOUS
from tests.fixtures.eventgrid import EventGridSink
from tests.fixtures.host import HostProcess, HttpResult

pytestmark = pytest.mark.e2e

WEBHOOK = "/api/v1/payments/webhook"
JSON = {"Content-Type": "application/json"}


def place_order(host: HostProcess, customer: str) -> dict[str, Any]:
    body = {"lines": [{"sku": "SKU-1", "quantity": 2, "unitPrice": "10.25"}], "currency": "EUR"}
    response = host.request(
        "POST", f"/api/v1/customers/{customer}/orders", body=json.dumps(body).encode(), headers=JSON
    )
    assert response.status == 201, response.body
    order: dict[str, Any] = response.json()
    return order


def payment(
    order: dict[str, Any],
    *,
    amount: str | None = None,
    currency: str = "EUR",
    event_id: str | None = None,
    event_type: str = "payment.succeeded",
) -> bytes:
    return json.dumps(
        {
            "id": event_id or f"evt_{uuid.uuid4().hex}",
            "type": event_type,
            "data": {
                "customerId": order["customerId"],
                "orderId": order["id"],
                "amount": amount or order["total"],
                "currency": currency,
            },
        }
    ).encode()


def deliver(
    host: HostProcess,
    body: bytes,
    *,
    secret: str = WEBHOOK_SECRET,
    at: int | None = None,
    signature: str | None = None,
) -> HttpResult:
    header = signature or signature_header(body, secret, at if at is not None else int(time.time()))
    return host.request("POST", WEBHOOK, body=body, headers={**JSON, "X-Signature": header})


def order_status(host: HostProcess, order: dict[str, Any]) -> str:
    path = f"/api/v1/customers/{order['customerId']}/orders/{order['id']}"
    status: str = host.request("GET", path).json()["status"]
    return status


@pytest.fixture
def order(app_host: HostProcess) -> dict[str, Any]:
    return place_order(app_host, f"c-{uuid.uuid4().hex[:12]}")


def test_valid_payment_marks_the_order_paid_once(
    app_host: HostProcess, events: EventGridSink, order: dict[str, Any]
) -> None:
    body = payment(order)
    first = deliver(app_host, body)
    assert first.status == 200, first.body
    assert first.json() == {"status": "applied"}
    assert order_status(app_host, order) == "paid"
    replay = deliver(app_host, body)
    assert replay.status == 200
    assert replay.json() == {"status": "duplicate"}
    paid = [
        e for e in events.of_type("Orderflow.Order.Paid") if e["data"]["orderId"] == order["id"]
    ]
    assert len(paid) == 1


def test_previous_secret_version_is_accepted_during_rotation(
    app_host: HostProcess, order: dict[str, Any]
) -> None:
    response = deliver(app_host, payment(order), secret=WEBHOOK_SECRET_PREVIOUS)
    assert response.status == 200, response.body
    assert order_status(app_host, order) == "paid"


@pytest.mark.parametrize(
    "case",
    ["wrong secret", "stale timestamp", "future timestamp", "missing", "malformed", "tampered"],
)
def test_bad_signatures_are_401_and_change_nothing(
    app_host: HostProcess, order: dict[str, Any], case: str
) -> None:
    body = payment(order)
    now = int(time.time())
    if case == "wrong secret":
        response = deliver(app_host, body, secret="not-the-secret")
    elif case == "stale timestamp":
        response = deliver(app_host, body, at=now - 301)
    elif case == "future timestamp":
        response = deliver(app_host, body, at=now + 301)
    elif case == "missing":
        response = app_host.request("POST", WEBHOOK, body=body, headers=JSON)
    elif case == "malformed":
        response = deliver(app_host, body, signature="v1=abc")
    else:
        header = signature_header(body, WEBHOOK_SECRET, now)
        response = deliver(app_host, body.replace(b'"EUR"', b'"USD"'), signature=header)
    assert response.status == 401, response.body
    assert response.header(
        "Content-Type",
    ).startswith("application/problem+json")  # type: ignore[union-attr]
    assert order_status(app_host, order) == "pending"


def test_amount_or_currency_mismatch_is_rejected_not_applied(
    app_host: HostProcess, order: dict[str, Any]
) -> None:
    for body in (payment(order, amount="20.49"), payment(order, currency="USD")):
        response = deliver(app_host, body)
        assert response.status == 422, response.body
        assert response.json()["type"].endswith("payment-mismatch")
    assert order_status(app_host, order) == "pending"


def test_unknown_order_is_404_and_other_event_types_are_ignored(
    app_host: HostProcess, order: dict[str, Any]
) -> None:
    ghost = {**order, "id": "0" * 32}
    assert deliver(app_host, payment(ghost)).status == 404
    ignored = deliver(app_host, payment(order, event_type="payment.refunded"))
    assert ignored.status == 200
    assert ignored.json() == {"status": "ignored"}
    assert order_status(app_host, order) == "pending"


def test_payment_for_a_cancelled_order_is_409(app_host: HostProcess, order: dict[str, Any]) -> None:
    cancel = app_host.request(
        "POST", f"/api/v1/customers/{order['customerId']}/orders/{order['id']}/cancel"
    )
    assert cancel.status == 200
    response = deliver(app_host, payment(order))
    assert response.status == 409
    assert order_status(app_host, order) == "cancelled"


def test_signed_garbage_is_400_and_signed_invalid_event_is_422(app_host: HostProcess) -> None:
    assert deliver(app_host, b"{not json").status == 400
    invalid = deliver(
        app_host, json.dumps({"id": "e1", "type": "payment.succeeded", "data": {}}).encode()
    )
    assert invalid.status == 422
    # JSON pointers into the body: the fields are inside "data".
    pointers = {error["pointer"] for error in invalid.json()["errors"]}
    assert pointers == {"#/data/customerId", "#/data/orderId", "#/data/amount", "#/data/currency"}
