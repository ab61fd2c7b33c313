"""The end-to-end scenarios. Each takes a ``Context`` and raises ``ScenarioFailedError`` (or
``ScenarioSkippedError``) with a reason, or returns a one-line summary of what held."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from shared.names import IMPORTS_BLOB_CONTAINER
from shared.webhooks import signed_payment_succeeded
from smoke.http import Client, Response
from smoke.results import ScenarioFailedError, ScenarioSkippedError
from smoke.storage import StorageAccess

API = "/api/v1"
POLL_INTERVAL_SECONDS = 0.5
CSV_HEADER = "external_id,customer_id,sku,quantity,unit_price,currency\r\n"


@dataclass(frozen=True)
class Context:
    client: Client
    webhook_secret: str
    storage: StorageAccess
    timeout: float
    # The gateway's per-caller limit: the perimeter scenario expects its 429 (None: no gateway).
    rate_limit_calls: int | None = None
    # One id per run: every SKU, customer, key and blob name is new, so runs never collide.
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])


def expect(response: Response, status: int, what: str, hint: str = "") -> Response:
    if response.status != status:
        extra = f" ({hint})" if hint and response.status in {401, 403} else ""
        raise ScenarioFailedError(
            f"{what}: expected {status}, got {response.status}{extra}: {response.excerpt()}"
        )
    return response


def poll(probe: Callable[[], tuple[bool, str]], timeout: float, what: str) -> tuple[float, str]:
    """Calls ``probe`` until it returns ``(True, ...)``; the last state is in the reason."""
    started = time.monotonic()
    while True:
        done, state = probe()
        elapsed = time.monotonic() - started
        if done:
            return elapsed, state
        if elapsed >= timeout:
            raise ScenarioFailedError(f"{what} not within {timeout:.0f} s (last: {state})")
        time.sleep(POLL_INTERVAL_SECONDS)


# --- 1. health -----------------------------------------------------------------------------


def health(context: Context) -> str:
    client = context.client
    expect(client.request("GET", "/api/health", authenticated=False), 200, "GET /api/health")
    ready = client.request("GET", "/api/health/ready", authenticated=False)
    expect(ready, 200, "GET /api/health/ready")
    return "live and ready"


# --- 2. order -> payment -> fulfilled ------------------------------------------------------


def _available(client: Client, sku: str) -> int:
    response = expect(client.request("GET", f"{API}/inventory/{sku}"), 200, "GET inventory")
    available: int = response.json()["available"]
    return available


def order_payment_fulfilled(context: Context) -> str:
    client, run = context.client, context.run_id
    sku, customer, quantity, stock = f"SMOKE-{run}", f"smoke-{run}", 2, 5

    expect(
        client.request("PUT", f"{API}/inventory/{sku}", json_body={"available": stock}),
        200,
        "PUT inventory",
        hint="setting stock needs the app role Inventory.ReadWrite in the token",
    )
    if (before := _available(client, sku)) != stock:
        raise ScenarioFailedError(f"stock of {sku} is {before} after setting it to {stock}")

    body = {"currency": "EUR", "lines": [{"sku": sku, "quantity": quantity, "unitPrice": "1.25"}]}
    key = {"Idempotency-Key": f"smoke-{run}"}
    orders = f"{API}/customers/{customer}/orders"
    first = expect(client.request("POST", orders, json_body=body, headers=key), 201, "POST order")
    order: dict[str, Any] = first.json()
    replay = expect(
        client.request("POST", orders, json_body=body, headers=key), 201, "replayed POST order"
    )
    if replay.json().get("id") != order["id"]:
        raise ScenarioFailedError(
            f"the replay with the same Idempotency-Key created another order: "
            f"{replay.json().get('id')} != {order['id']}"
        )
    if replay.header("Idempotent-Replayed") != "true":
        raise ScenarioFailedError("the replay did not answer Idempotent-Replayed: true")

    raw, signed = signed_payment_succeeded(
        order, context.webhook_secret, event_id=f"evt_smoke_{run}"
    )
    paid = client.request(
        "POST", f"{API}/payments/webhook", body=raw, headers=signed, authenticated=False
    )
    if paid.status == 401:
        raise ScenarioFailedError(
            "payment webhook refused the signature (401): is --webhook-secret the app's "
            f"payment-webhook-secret? {paid.excerpt()}"
        )
    expect(paid, 200, "POST payment webhook")

    def fulfilled() -> tuple[bool, str]:
        response = expect(client.request("GET", f"{orders}/{order['id']}"), 200, "GET order")
        status: str = response.json()["status"]
        if status in {"backordered", "cancelled", "expired"}:
            raise ScenarioFailedError(f"order {order['id']} became {status}, not fulfilled")
        return status == "fulfilled", status

    took, _ = poll(fulfilled, context.timeout, f"order {order['id']} fulfilled")
    if (after := _available(client, sku)) != stock - quantity:
        raise ScenarioFailedError(
            f"stock of {sku} is {after} after fulfilment, expected {stock} - {quantity}"
        )
    return f"order {order['id']} fulfilled {took:.1f} s after payment; stock {stock} -> {after}"


# --- 3. a small import ---------------------------------------------------------------------


def small_import(context: Context) -> str:
    if not context.storage.given:
        raise ScenarioSkippedError("no storage access given")
    client, run = context.client, context.run_id
    name, customer, sku = f"smoke-{uuid.uuid4()}.csv", f"smoke-import-{run}", f"SMOKE-{run}"
    data = (
        CSV_HEADER
        + f"S1,{customer},{sku},1,1.00,EUR\r\n"
        + f"S2,{customer},{sku},2,1.50,EUR\r\n"
        + f"S3,{customer},{sku},many,1.00,EUR\r\n"  # rejected: quantity is not a number
    ).encode()
    try:
        context.storage.upload(IMPORTS_BLOB_CONTAINER, name, data)
    except Exception as error:  # any SDK or credential error is the reason
        raise ScenarioFailedError(
            f"upload to {IMPORTS_BLOB_CONTAINER}/{name} failed: {type(error).__name__}: "
            f"{str(error).splitlines()[0] if str(error) else ''}"
        ) from error

    status: dict[str, Any] = {}

    def finished() -> tuple[bool, str]:
        nonlocal status
        response = client.request("GET", f"{API}/imports/{name}")
        if response.status == 404:
            return False, "not started (404)"
        status = expect(response, 200, "GET import status").json()
        return status["state"] in {"completed", "failed"}, str(status["state"])

    took, state = poll(finished, context.timeout, f"import {name} finished")
    if state != "completed":
        raise ScenarioFailedError(f"import {name} {state}: {status.get('reason')}")
    counts = (status.get("rowsRead"), status.get("accepted"), status.get("rejected"))
    if counts != (3, 2, 1):
        raise ScenarioFailedError(
            f"import {name}: rows read/accepted/rejected {counts}, expected (3, 2, 1)"
        )
    return f"{name} completed in {took:.1f} s: 3 rows read = 2 accepted + 1 rejected"


SCENARIOS: tuple[tuple[str, Callable[[Context], str]], ...] = (
    ("health", health),
    ("order-payment-fulfilled", order_payment_fulfilled),
    ("import", small_import),
)
