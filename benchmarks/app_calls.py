"""The app's HTTP functions called in this process, the way the host calls them.

A real ``func.HttpRequest`` goes into the blueprint's function object (as
tests/integration/test_api_cost_and_faults.py does); the response must have the expected
status. The process must first be made the app (:func:`benchmarks.local_app.configure_this_process`)
with ``PAYMENT_WEBHOOK_SECRET`` set to :data:`WEBHOOK_SECRET`. Every call carries a bearer
token with every app role from the stack's issuer (``AUTH_ISSUER``), as a shop backend sends.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

# The webhook secret of the benchmark's own local app: a made-up value, not a real secret.
WEBHOOK_SECRET = "benchmark-webhook-secret"  # noqa: S105  # pragma: allowlist secret
ORDER_BODY = {"currency": "EUR", "lines": [{"sku": "SKU-1", "quantity": 2, "unitPrice": "5.00"}]}


class AppApi:
    """The HTTP functions called as the host calls them: a real ``func.HttpRequest`` in."""

    def __init__(self) -> None:
        import os

        from localdev.tokens import all_roles_token

        token = all_roles_token(os.environ["AUTH_ISSUER"], sub="orderflow-bench")
        self.authorization = {"Authorization": f"Bearer {token}"}

    def call(
        self,
        function_name: str,
        method: str,
        path: str,
        route_params: dict[str, str],
        *,
        body: bytes = b"",
        headers: dict[str, str] | None = None,
        expect: int = 200,
    ) -> Any:
        import azure.functions as func

        from blueprints import http_api

        handler = getattr(http_api, function_name).build().get_user_function()
        request = func.HttpRequest(
            method,
            f"http://127.0.0.1/api{path}",
            headers={"Content-Type": "application/json", **self.authorization, **(headers or {})},
            route_params=route_params,
            params={},
            body=body,
        )
        response = handler(request, None)
        if response.status_code != expect:
            raise RuntimeError(
                f"{method} {path}: {response.status_code} {response.get_body()!r} (want {expect})"
            )
        return json.loads(response.get_body())

    def post_order(self, customer: str) -> dict[str, Any]:
        order: dict[str, Any] = self.call(
            "create_order",
            "POST",
            f"/v1/customers/{customer}/orders",
            {"customerId": customer},
            body=json.dumps(ORDER_BODY).encode(),
            headers={"Idempotency-Key": uuid.uuid4().hex},
            expect=201,
        )
        return order

    def get_order(self, order: dict[str, Any]) -> None:
        customer, order_id = order["customerId"], order["id"]
        self.call(
            "get_order",
            "GET",
            f"/v1/customers/{customer}/orders/{order_id}",
            {"customerId": customer, "orderId": order_id},
        )

    def list_page(self, customer: str) -> None:
        self.call(
            "list_orders", "GET", f"/v1/customers/{customer}/orders", {"customerId": customer}
        )

    def cancel(self, order: dict[str, Any]) -> None:
        customer, order_id = order["customerId"], order["id"]
        self.call(
            "cancel_order",
            "POST",
            f"/v1/customers/{customer}/orders/{order_id}/cancel",
            {"customerId": customer, "orderId": order_id},
        )

    def pay(self, order: dict[str, Any]) -> None:
        from shared.webhooks import SIGNATURE_HEADER, signed_payment_succeeded

        body, headers = signed_payment_succeeded(order, WEBHOOK_SECRET)
        self.call(
            "payment_webhook",
            "POST",
            "/v1/payments/webhook",
            {},
            body=body,
            headers={SIGNATURE_HEADER: headers[SIGNATURE_HEADER]},
        )

    def put_inventory(self, sku: str) -> None:
        self.call(
            "set_inventory",
            "PUT",
            f"/v1/inventory/{sku}",
            {"sku": sku},
            body=json.dumps({"available": 10}).encode(),
        )
