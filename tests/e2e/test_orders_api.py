"""The orders API over real HTTP: the local host running function_app.py against the Cosmos
stand-in, Azurite and a recording Event Grid endpoint."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest

from tests.fixtures.eventgrid import EventGridSink
from tests.fixtures.host import HostProcess, HttpResult

pytestmark = pytest.mark.e2e

JSON = {"Content-Type": "application/json"}
TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


def order_body(price: object = "10.25", quantity: int = 2, **extra: Any) -> dict[str, Any]:
    return {
        "lines": [{"sku": "SKU-1", "quantity": quantity, "unitPrice": price}],
        "currency": "EUR",
        **extra,
    }


def post(
    host: HostProcess, path: str, body: object, headers: dict[str, str] | None = None
) -> HttpResult:
    return host.request(
        "POST", path, body=json.dumps(body).encode(), headers={**JSON, **(headers or {})}
    )


@pytest.fixture
def customer() -> str:
    return f"c-{uuid.uuid4().hex[:12]}"


def orders_path(customer: str) -> str:
    return f"/api/v1/customers/{customer}/orders"


def assert_problem(response: HttpResult, status: int) -> dict[str, Any]:
    assert response.status == status, response.body
    assert (
        response.header(
            "Content-Type",
        )
        is not None
    )
    assert (response.header("Content-Type") or "").startswith("application/problem+json")
    problem: dict[str, Any] = response.json()
    assert problem["status"] == status
    assert problem["title"]
    assert problem["type"]
    assert problem["traceId"]
    assert "Traceback" not in response.body.decode()
    return problem


def test_create_read_and_conditional_get(
    app_host: HostProcess, events: EventGridSink, customer: str
) -> None:
    created = post(app_host, orders_path(customer), order_body(), {"traceparent": TRACEPARENT})
    assert created.status == 201, created.body
    order = created.json()
    assert order["status"] == "pending"
    assert order["total"] == "20.50"
    assert order["lines"] == [{"sku": "SKU-1", "quantity": 2, "unitPrice": "10.25"}]
    assert order["customerId"] == customer
    assert set(order) == {
        "id", "customerId", "status", "lines", "currency", "total", "source", "createdAt",
        "updatedAt",
    }  # fmt: skip
    location = created.header("Location")
    assert location == f"{orders_path(customer)}/{order['id']}"
    etag = created.header("ETag")
    assert etag
    assert etag.startswith('"')
    assert etag.endswith('"')  # a quoted entity tag, as RFC 9110 requires

    read = app_host.request("GET", location)
    assert read.status == 200
    assert read.json() == order
    assert read.header("ETag") == etag

    not_modified = app_host.request("GET", location, headers={"If-None-Match": etag})
    assert not_modified.status == 304
    assert not_modified.body == b""
    assert app_host.request("GET", location, headers={"If-None-Match": '"x"'}).status == 200

    (placed,) = [
        e for e in events.of_type("Orderflow.Order.Placed") if e["data"]["orderId"] == order["id"]
    ]
    assert placed["subject"] == f"customers/{customer}/orders/{order['id']}"
    # Same trace as the caller's request (the host starts a child span for the invocation).
    assert placed["traceparent"].split("-")[1] == TRACEPARENT.split("-")[1]


def test_idempotent_replay_and_key_reuse(
    app_host: HostProcess, events: EventGridSink, customer: str
) -> None:
    headers = {"Idempotency-Key": "checkout-1"}
    first = post(app_host, orders_path(customer), order_body(), headers)
    replay = post(app_host, orders_path(customer), order_body(), headers)
    assert first.status == replay.status == 201
    assert replay.json() == first.json()
    assert replay.header("Location") == first.header("Location")
    assert replay.header("Idempotent-Replayed") == "true"
    placed = [
        e for e in events.of_type("Orderflow.Order.Placed") if e["data"]["customerId"] == customer
    ]
    assert len(placed) == 1

    reused = post(app_host, orders_path(customer), order_body(price="99.00"), headers)
    problem = assert_problem(reused, 422)
    assert "Idempotency-Key" in problem["detail"]

    bad_key = post(app_host, orders_path(customer), order_body(), {"Idempotency-Key": "has space"})
    assert_problem(bad_key, 400)


def test_replay_returns_the_first_response_after_the_order_changed(
    app_host: HostProcess, customer: str
) -> None:
    headers = {"Idempotency-Key": "k-2"}
    first = post(app_host, orders_path(customer), order_body(), headers)
    cancel = app_host.request("POST", f"{first.header('Location')}/cancel")
    assert cancel.status == 200
    replay = post(app_host, orders_path(customer), order_body(), headers)
    assert replay.status == 201
    assert replay.json() == first.json()
    assert replay.json()["status"] == "pending"


@pytest.mark.parametrize(
    ("body", "headers", "status", "pointer"),
    [
        (b"{not json", JSON, 400, None),
        (b'{"currency": "EUR", "currency": "USD", "lines": []}', JSON, 400, None),
        (b"[]", JSON, 400, None),
        (json.dumps(order_body()).encode(), {"Content-Type": "text/plain"}, 415, None),
        (json.dumps(order_body()).encode(), {}, 415, None),
        (json.dumps(order_body(price="1.005")).encode(), JSON, 422, "#/lines/0/unitPrice"),
        (json.dumps(order_body(price=1.5)).encode(), JSON, 422, "#/lines/0/unitPrice"),
        (json.dumps(order_body(quantity=0)).encode(), JSON, 422, "#/lines/0/quantity"),
        (json.dumps({**order_body(), "currency": "XYZ"}).encode(), JSON, 422, "#/currency"),
        (json.dumps({**order_body(), "lines": []}).encode(), JSON, 422, "#/lines"),
        (json.dumps(order_body(coupon="FREE")).encode(), JSON, 422, "#/coupon"),
        (
            json.dumps({"currency": "EUR", "lines": [
                {"sku": f"S{i}", "quantity": 1, "unitPrice": "1.00"} for i in range(101)
            ]}).encode(),
            JSON, 422, "#/lines",
        ),
    ],
)  # fmt: skip
def test_bad_requests_are_problems_not_crashes(  # noqa: PLR0917 - parametrized
    app_host: HostProcess,
    customer: str,
    body: bytes,
    headers: dict[str, str],
    status: int,
    pointer: str | None,
) -> None:
    response = app_host.request("POST", orders_path(customer), body=body, headers=headers)
    problem = assert_problem(response, status)
    if pointer is not None:
        assert pointer in [error["pointer"] for error in problem["errors"]]


def test_body_over_256_kib_is_413(app_host: HostProcess, customer: str) -> None:
    body = json.dumps({**order_body(), "padding": "x" * (256 * 1024)}).encode()
    assert_problem(app_host.request("POST", orders_path(customer), body=body, headers=JSON), 413)


def test_unknown_order_and_bad_identifiers(app_host: HostProcess, customer: str) -> None:
    assert_problem(app_host.request("GET", f"{orders_path(customer)}/{'0' * 32}"), 404)
    assert_problem(app_host.request("GET", f"{orders_path(customer)}/bad%20id"), 400)


def test_pagination_newest_first_across_pages(app_host: HostProcess, customer: str) -> None:
    ids = [
        post(app_host, orders_path(customer), order_body(quantity=n)).json()["id"]
        for n in range(1, 8)
    ]
    seen: list[str] = []
    path: str | None = f"{orders_path(customer)}?limit=3"
    pages = 0
    while path:
        page = app_host.request("GET", path)
        assert page.status == 200, page.body
        body = page.json()
        pages += 1
        seen += [item["id"] for item in body["items"]]
        link = page.header("Link")
        if body["continuation"] is None:
            assert link is None
            path = None
        else:
            assert link is not None
            assert link.endswith('>; rel="next"')
            path = link[1 : link.index(">")]
        assert pages <= 5
    assert pages == 3
    assert seen == list(reversed(ids))


def test_list_parameters_are_validated(app_host: HostProcess, customer: str) -> None:
    assert_problem(app_host.request("GET", f"{orders_path(customer)}?limit=0"), 400)
    assert_problem(app_host.request("GET", f"{orders_path(customer)}?limit=101"), 400)
    assert_problem(app_host.request("GET", f"{orders_path(customer)}?limit=abc"), 400)
    assert_problem(app_host.request("GET", f"{orders_path(customer)}?status=shipped"), 400)
    assert_problem(app_host.request("GET", f"{orders_path(customer)}?continuation=garbage"), 400)
    empty = app_host.request("GET", orders_path(customer))
    assert empty.status == 200
    assert empty.json() == {"items": [], "continuation": None}


def test_status_filter(app_host: HostProcess, customer: str) -> None:
    keep = post(app_host, orders_path(customer), order_body()).json()
    gone = post(app_host, orders_path(customer), order_body()).json()
    app_host.request("POST", f"{orders_path(customer)}/{gone['id']}/cancel")
    page = app_host.request("GET", f"{orders_path(customer)}?status=cancelled").json()
    assert [item["id"] for item in page["items"]] == [gone["id"]]
    page = app_host.request("GET", f"{orders_path(customer)}?status=pending").json()
    assert [item["id"] for item in page["items"]] == [keep["id"]]


def test_cancel_with_if_match(app_host: HostProcess, events: EventGridSink, customer: str) -> None:
    created = post(app_host, orders_path(customer), order_body())
    cancel_path = f"{created.header('Location')}/cancel"
    assert_problem(app_host.request("POST", cancel_path, headers={"If-Match": '"stale"'}), 412)
    cancelled = app_host.request(
        "POST", cancel_path, headers={"If-Match": created.header("ETag") or ""}
    )
    assert cancelled.status == 200, cancelled.body
    assert cancelled.json()["status"] == "cancelled"
    fresh = app_host.request("GET", created.header("Location") or "")
    assert fresh.header("ETag") == cancelled.header("ETag")
    problem = assert_problem(app_host.request("POST", cancel_path), 409)
    assert "cancelled" in problem["detail"]
    order_id = created.json()["id"]
    assert [e["data"]["orderId"] for e in events.of_type("Orderflow.Order.Cancelled")].count(
        order_id
    ) == 1


def test_inventory_set_and_read(app_host: HostProcess) -> None:
    sku = f"SKU-{uuid.uuid4().hex[:8]}"
    assert_problem(app_host.request("GET", f"/api/v1/inventory/{sku}"), 404)
    put = app_host.request(
        "PUT", f"/api/v1/inventory/{sku}", body=b'{"available": 7}', headers=JSON
    )
    assert put.status == 200, put.body
    assert put.json() == {"sku": sku, "available": 7}
    again = app_host.request(
        "PUT", f"/api/v1/inventory/{sku}", body=b'{"available": 3}', headers=JSON
    )
    assert again.json() == {"sku": sku, "available": 3}
    assert app_host.request("GET", f"/api/v1/inventory/{sku}").json() == {
        "sku": sku,
        "available": 3,
    }
    for bad in (b'{"available": -1}', b'{"available": "5"}', b'{"available": 1, "x": 1}', b"{}"):
        response = app_host.request("PUT", f"/api/v1/inventory/{sku}", body=bad, headers=JSON)
        assert_problem(response, 422)


def test_import_status(app_host: HostProcess, app_settings: dict[str, str]) -> None:
    from shared.clients import get_container

    assert_problem(app_host.request("GET", "/api/v1/imports/never-uploaded.csv"), 404)
    import_id = f"partner-{uuid.uuid4().hex[:6]}.csv"
    get_container("imports").create_item(
        {"id": import_id, "importId": import_id, "state": "completed", "rowsRead": 10,
         "accepted": 8, "rejected": 2, "chunksDone": 1,
         "reportLocation": f"order-imports-rejected/{import_id}.csv"}
    )  # fmt: skip
    response = app_host.request("GET", f"/api/v1/imports/{import_id}")
    assert response.status == 200, response.body
    status = response.json()
    assert status["importId"] == import_id
    assert (status["rowsRead"], status["accepted"], status["rejected"]) == (10, 8, 2)
    assert status["reportLocation"] == f"order-imports-rejected/{import_id}.csv"


def test_openapi_document_is_served_and_matches_the_committed_copy(app_host: HostProcess) -> None:
    from pathlib import Path

    response = app_host.request("GET", "/api/openapi.json")
    assert response.status == 200
    committed = Path(__file__).resolve().parents[2] / "docs" / "openapi.json"
    assert response.json() == json.loads(committed.read_text())
