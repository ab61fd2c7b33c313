"""The scheduled tasks on the running local host: each timer is run through the admin endpoint
(``POST /admin/functions/<name>``) and its effect observed through the API and Azurite.

The module runs on a stack of its own (``isolated_app``), so the report sees only the orders
created here.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta

import pytest

from shared.clients import get_blob_service, get_container
from shared.names import ORDERS_CONTAINER, REPORTS_BLOB_CONTAINER
from shared.process_state import reset_process_state
from shared.repositories.order_scans import CosmosOrderScans
from shared.repositories.reports import BlobReportStore
from shared.services.orders import timestamp
from shared.services.reports import DailySalesReportService, report_name
from tests.e2e.test_payment_webhook import deliver, order_status, payment, place_order
from tests.fixtures.app import IsolatedApp
from tests.fixtures.host import HostProcess

pytestmark = pytest.mark.e2e

WAIT_SECONDS = 15.0


def wait_until[T](probe: Callable[[], T | None], what: str, timeout: float = WAIT_SECONDS) -> T:
    """Poll ``probe`` until it returns something (a readiness check, not a fixed sleep)."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value is not None:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def run_function(host: HostProcess, name: str, body: bytes = b'{"input": ""}') -> str:
    response = host.request(
        "POST", f"/admin/functions/{name}", body=body, headers={"Content-Type": "application/json"}
    )
    assert response.status == 202, response.body
    invocation_id = response.header("x-ms-invocation-id")
    assert invocation_id
    return invocation_id


def wait_for_success(host: HostProcess, name: str, invocation_id: str) -> str:
    line = f"Executed 'Functions.{name}' (Succeeded, Id={invocation_id}"

    def finished() -> str | None:
        logs = host.logs()
        return logs if line in logs or f"(Failed, Id={invocation_id}" in logs else None

    logs = wait_until(finished, line)
    assert line in logs, logs[-3000:]
    return logs


@pytest.fixture
def stack_settings(
    isolated_app: IsolatedApp, monkeypatch: pytest.MonkeyPatch
) -> Iterator[dict[str, str]]:
    """This process's clients pointed at the isolated stack (to seed and to read blobs)."""
    settings = isolated_app.stack.app_settings()
    reset_process_state()
    for name, value in settings.items():
        monkeypatch.setenv(name, value)
    yield settings
    reset_process_state()


def test_admin_endpoint_answers_like_the_host(isolated_app: IsolatedApp) -> None:
    host = isolated_app.host
    assert host.request("POST", "/admin/functions/no_such_function", body=b"{}").status == 404
    health = host.request("POST", "/admin/functions/health", body=b"{}")
    assert health.status in (400, 404)
    for hostile in (b"[1]", b"{not json", b'"input"'):
        response = host.request("POST", "/admin/functions/expire_unpaid_orders", body=hostile)
        assert response.status == 400, hostile
    listed = {f["name"]: f for f in host.request("GET", "/admin/functions").json()}
    for name in ("expire_unpaid_orders", "daily_sales_report", "dead_letter_watch"):
        assert listed[name]["isDelivered"] is True


def test_expire_unpaid_orders_through_the_admin_endpoint(
    isolated_app: IsolatedApp, stack_settings: dict[str, str]
) -> None:
    host = isolated_app.host
    customer = f"e2e-{uuid.uuid4().hex[:8]}"
    fresh = place_order(host, customer)
    old_at = timestamp(datetime.now(UTC) - timedelta(days=3))
    stale = {
        "id": uuid.uuid4().hex,
        "customerId": customer,
        "status": "pending",
        "lines": [{"sku": "SKU-1", "quantity": 1, "unitPrice": "3.00"}],
        "currency": "EUR",
        "total": "3.00",
        "source": "api",
        "createdAt": old_at,
        "updatedAt": old_at,
        "history": [{"status": "pending", "at": old_at}],
        "outbox": [],
    }
    get_container(ORDERS_CONTAINER).create_item(stale)

    invocation_id = run_function(host, "expire_unpaid_orders")
    wait_for_success(host, "expire_unpaid_orders", invocation_id)

    assert order_status(host, stale) == "expired"
    assert order_status(host, fresh) == "pending"
    cancel = host.request("POST", f"/api/v1/customers/{customer}/orders/{stale['id']}/cancel")
    assert cancel.status == 409, "expired is final"


def test_daily_sales_report_through_the_admin_endpoint(
    isolated_app: IsolatedApp, stack_settings: dict[str, str]
) -> None:
    host = isolated_app.host
    customer = f"e2e-{uuid.uuid4().hex[:8]}"
    # The stack runs the whole pipeline: a paid order goes on to fulfillment. With stock for
    # exactly the two paid orders they end fulfilled (still sales), so the statuses the report
    # counts are settled before it runs.
    stock = host.request(
        "PUT",
        "/api/v1/inventory/SKU-1",
        body=b'{"available": 4}',
        headers={"Content-Type": "application/json"},
    )
    assert stock.status == 200, stock.body
    placed = [place_order(host, customer) for _ in range(4)]  # 20.50 EUR each
    assert deliver(host, payment(placed[0])).status == 200
    assert deliver(host, payment(placed[1])).status == 200
    cancel = f"/api/v1/customers/{customer}/orders/{placed[2]['id']}/cancel"
    assert host.request("POST", cancel).status == 200

    def both_fulfilled() -> bool | None:
        return all(order_status(host, paid) == "fulfilled" for paid in placed[:2]) or None

    wait_until(both_fulfilled, "both paid orders fulfilled")

    invocation_id = run_function(host, "daily_sales_report")
    wait_for_success(host, "daily_sales_report", invocation_id)

    today = datetime.now(UTC).date()
    container = get_blob_service().get_container_client(REPORTS_BLOB_CONTAINER)
    names = {blob.name for blob in container.list_blobs(name_starts_with="daily/")}
    expected = {report_name(today - timedelta(days=n)) for n in range(1, 8)}
    assert expected <= names
    assert report_name(today) not in names, "today is not over"
    yesterday = json.loads(
        container.download_blob(report_name(today - timedelta(days=1))).readall()
    )
    assert yesterday["date"] == (today - timedelta(days=1)).isoformat()
    before = {name: container.download_blob(name).readall() for name in expected}

    again = run_function(host, "daily_sales_report")
    wait_for_success(host, "daily_sales_report", again)
    assert {name: container.download_blob(name).readall() for name in expected} == before

    # Today's orders, as tomorrow's run will see them (the clock moved forward one day).
    tomorrow = datetime.combine(today + timedelta(days=1), datetime.min.time(), tzinfo=UTC)
    service = DailySalesReportService(
        CosmosOrderScans(),
        BlobReportStore(),
        clock=lambda: tomorrow + timedelta(hours=1, minutes=30),
    )
    assert today in service.run().written
    document = json.loads(BlobReportStore().read(report_name(today)))
    api_orders = host.request("GET", f"/api/v1/customers/{customer}/orders?limit=100").json()[
        "items"
    ]
    by_status: dict[str, int] = {}
    for order in api_orders:
        by_status[order["status"]] = by_status.get(order["status"], 0) + 1
    assert by_status == {"fulfilled": 2, "cancelled": 1, "pending": 1}
    for status, count in by_status.items():
        assert document["countsByStatus"][status] >= count
    assert document["salesByCurrency"]["EUR"]["byStatus"]["fulfilled"] == {
        "orders": 2,
        "total": "41.00",
    }


def test_dead_letter_watch_through_the_admin_endpoint(isolated_app: IsolatedApp) -> None:
    """On the host the app's own fulfillment function consumes the queue (and parks what it can
    never process), so the sub-queue is empty here; counting real dead letters without consuming
    them is tested against a broker of its own in tests/integration/test_dead_letter_watch.py."""
    host = isolated_app.host
    if "ServiceBusConnection" not in isolated_app.stack.app_settings():
        pytest.skip("the local stack has no Service Bus broker yet")

    invocation_id = run_function(host, "dead_letter_watch")
    logs = wait_for_success(host, "dead_letter_watch", invocation_id)

    assert "no messages in the dead-letter queue of 'fulfillment'" in logs
    assert "no messages in the poison queue 'order-import-chunks-poison'" in logs
