"""What each API operation costs, and how it fails when Cosmos DB throttles or is down.

The handlers run in-process with a Cosmos client whose azure-core transport counts requests or
injects faults in front of the real stand-in: throttling (429 with ``x-ms-retry-after-ms``) and
outages are the faults the stand-in cannot produce itself. Everything else is real.
"""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import azure.functions as func
import pytest
from azure.core.exceptions import ServiceRequestError

from blueprints import http_api
from tests.fixtures.eventgrid import EventGridSink
from tests.fixtures.stack import bearer_headers
from tests.fixtures.transport import (
    ForwardingTransport,
    cosmos_through,
    document_path,
    throttled_response,
)

pytestmark = pytest.mark.integration


class CosmosTransport(ForwardingTransport):
    """Counts data-plane requests; optionally answers some of them with a fault instead."""

    def __init__(self) -> None:
        super().__init__()
        self._lock = threading.Lock()
        self.requests: list[tuple[str, str]] = []
        self.fault: Callable[[Any], Any] | None = None

    def send(self, request: Any, **kwargs: Any) -> Any:
        path = document_path(request)
        if path is not None:
            with self._lock:
                self.requests.append((request.method, path))
            if self.fault is not None:
                return self.fault(request)
        return self.forward(request, **kwargs)

    def reset(self) -> None:
        with self._lock:
            self.requests.clear()


def throttle(request: Any) -> Any:
    return throttled_response(request, retry_after_ms=1200)


def outage(request: Any) -> Any:
    raise ServiceRequestError("connection refused")


@pytest.fixture
def cosmos_transport(
    app_settings: dict[str, str], events: EventGridSink, monkeypatch: pytest.MonkeyPatch
) -> Iterator[CosmosTransport]:
    for name, value in events.app_settings().items():
        monkeypatch.setenv(name, value)
    transport = CosmosTransport()
    with cosmos_through(
        transport, app_settings, retry_total=2, retry_backoff_max=3, enable_endpoint_discovery=False
    ):
        yield transport


def call(  # noqa: PLR0917 - mirrors func.HttpRequest's own arguments
    function: Any,
    method: str,
    url: str,
    route_params: dict[str, str],
    body: object | None = None,
    headers: dict[str, str] | None = None,
) -> func.HttpResponse:
    handler = function.build().get_user_function()
    request = func.HttpRequest(
        method,
        url,
        headers={"Content-Type": "application/json", **bearer_headers(), **(headers or {})},
        route_params=route_params,
        params={},
        body=json.dumps(body).encode() if body is not None else b"",
    )
    response: func.HttpResponse = handler(request, None)
    return response


BODY = {"lines": [{"sku": "SKU-1", "quantity": 1, "unitPrice": "5.00"}], "currency": "EUR"}


def create(customer: str, key: str | None = None) -> func.HttpResponse:
    headers = {"Idempotency-Key": key} if key else {}
    return call(
        http_api.create_order,
        "POST",
        f"http://localhost/api/v1/customers/{customer}/orders",
        {"customerId": customer},
        BODY,
        headers,
    )


def test_cost_per_operation(cosmos_transport: CosmosTransport, events: EventGridSink) -> None:
    customer = f"c-{uuid.uuid4().hex[:12]}"
    warm = create(customer)  # first use reads account metadata; not an operation's cost
    assert warm.status_code == 201

    cosmos_transport.reset()
    events.clear()
    created = create(customer, key="cost-1")
    assert created.status_code == 201
    post_requests = len(cosmos_transport.requests)
    assert post_requests <= 2, cosmos_transport.requests
    assert events.requests == 1
    order_id = json.loads(created.get_body())["id"]

    cosmos_transport.reset()
    read = call(
        http_api.get_order,
        "GET",
        f"http://localhost/api/v1/customers/{customer}/orders/{order_id}",
        {"customerId": customer, "orderId": order_id},
    )
    assert read.status_code == 200
    assert len(cosmos_transport.requests) == 1, cosmos_transport.requests

    cosmos_transport.reset()
    page = call(
        http_api.list_orders,
        "GET",
        f"http://localhost/api/v1/customers/{customer}/orders",
        {"customerId": customer},
    )
    assert page.status_code == 200
    assert len(json.loads(page.get_body())["items"]) == 2
    assert len(cosmos_transport.requests) == 1, cosmos_transport.requests
    print(f"\nCosmos requests: POST order {post_requests}, GET order 1, list page 1")


@pytest.mark.parametrize(("fault", "retry_after"), [(throttle, "2"), (outage, "5")])
def test_throttling_or_outage_is_503_with_retry_after_and_nothing_half_written(
    cosmos_transport: CosmosTransport,
    events: EventGridSink,
    fault: Callable[[Any], Any],
    retry_after: str,
) -> None:
    customer = f"c-{uuid.uuid4().hex[:12]}"
    assert create(customer).status_code == 201  # warm up the client before the fault
    events.clear()

    cosmos_transport.fault = fault
    response = create(customer, key="during-fault")
    assert response.status_code == 503
    assert response.headers["Retry-After"] == retry_after
    problem = json.loads(response.get_body())
    assert problem["status"] == 503
    assert "Cosmos DB" in problem["detail"]
    assert response.mimetype == "application/problem+json"

    read = call(
        http_api.list_orders,
        "GET",
        f"http://localhost/api/v1/customers/{customer}/orders",
        {"customerId": customer},
    )
    assert read.status_code == 503

    cosmos_transport.fault = None
    page = json.loads(
        call(
            http_api.list_orders,
            "GET",
            f"http://localhost/api/v1/customers/{customer}/orders",
            {"customerId": customer},
        ).get_body()
    )
    assert len(page["items"]) == 1  # only the warm-up order: nothing from the failed create
    assert events.events == []  # and no event for an order that does not exist

    retried = create(customer, key="during-fault")  # the client's retry after Retry-After
    assert retried.status_code == 201
    assert retried.headers.get("Idempotent-Replayed") is None
