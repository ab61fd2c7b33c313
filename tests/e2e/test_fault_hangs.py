"""Brownouts: a dependency that accepts connections and never answers (its stand-in frozen with
SIGSTOP, ``LocalStack.paused``), over the running local host with HTTP load and with messages in
flight. Every request is answered within the HTTP deadline (503 problem+json with
``Retry-After``), calls fail in milliseconds once the circuit is open, liveness, OpenAPI and
routes that do not need the hung dependency keep answering, readiness names it, and after the
resume everything in flight ends exactly once: no order paid or fulfilled twice, none lost.

The stack and host are this module's own (a frozen stand-in must not stall other tests); the
host runs with a short HTTP deadline so the tests stay quick, and with the worker's thread
count of a 2-core instance (6), which the hung calls must not exhaust.
"""

from __future__ import annotations

import functools
import json
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from azure.cosmos import CosmosClient
from azure.storage.blob import BlobServiceClient

from localdev.stack import IDENTITY, LocalStack
from localdev.tokens import request_token
from shared.names import IMPORTS_BLOB_CONTAINER, INVENTORY_CONTAINER, ORDERS_CONTAINER
from shared.webhooks import signed_payment_succeeded
from tests.fixtures.app import REPO_ROOT, SAMPLE_SETTINGS, WEBHOOK_SECRET, app_environment
from tests.fixtures.host import HostProcess, HttpResult, run_local_host
from tests.fixtures.stack import start_stack_on_free_ports

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

JSON = {"Content-Type": "application/json"}
DEADLINE_SECONDS = 3.0
# The deadline plus what answering takes on a busy 2-core machine.
ANSWER_SLACK_SECONDS = 1.5
THREADS = 6


class HungApp:
    def __init__(self, stack: LocalStack, host: HostProcess, env: dict[str, str]) -> None:
        self.stack = stack
        self.host = host
        self.env = env  # the host's settings, for a second (cold) instance
        settings = stack.app_settings()
        self.cosmos = CosmosClient(
            settings["COSMOS_ENDPOINT"], settings["COSMOS_KEY"], enable_endpoint_discovery=False
        )
        database = self.cosmos.get_database_client("orderflow")
        self.orders = database.get_container_client(ORDERS_CONTAINER)
        self.inventory = database.get_container_client(INVENTORY_CONTAINER)


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HungApp]:
    workdir = tmp_path_factory.mktemp("hangs")
    stack = start_stack_on_free_ports(
        workdir, eventgrid_retry_delays="0.5,1,2,2,2,2,2,2,2,2,2,2,2,2,2"
    )
    try:
        stack.provision()
        env = {
            **app_environment(stack, None),
            "HTTP_DEADLINE_SECONDS": str(int(DEADLINE_SECONDS)),
            "PYTHON_THREADPOOL_THREAD_COUNT": str(THREADS),
        }
        with run_local_host(
            REPO_ROOT,
            workdir / "host.log",
            env=env,
            args=["--settings", str(SAMPLE_SETTINGS)],
            port=stack.ports.functions,
        ) as host:
            yield HungApp(stack, host, env)
    finally:
        stack.resume_all()
        stack.stop()


@pytest.fixture(autouse=True)
def _resume_everything(app: HungApp) -> Iterator[None]:
    try:
        yield
    finally:
        app.stack.resume_all()


def timed(call: Callable[[], HttpResult]) -> tuple[HttpResult, float]:
    began = time.monotonic()
    result = call()
    return result, time.monotonic() - began


def place(host: HostProcess, sku: str, quantity: int = 1) -> dict[str, Any]:
    response = host.request(
        "POST",
        f"/api/v1/customers/hang-{uuid.uuid4().hex[:8]}/orders",
        body=json.dumps(
            {"lines": [{"sku": sku, "quantity": quantity, "unitPrice": "2.50"}], "currency": "EUR"}
        ).encode(),
        headers=JSON,
    )
    assert response.status == 201, response.body
    order: dict[str, Any] = response.json()
    return order


def stock(host: HostProcess, available: int) -> str:
    sku = f"SKU-{uuid.uuid4().hex[:10]}"
    response = host.request(
        "PUT",
        f"/api/v1/inventory/{sku}",
        body=json.dumps({"available": available}).encode(),
        headers=JSON,
    )
    assert response.status == 200, response.body
    return sku


def get_order(host: HostProcess, order: dict[str, Any]) -> HttpResult:
    return host.request(
        "GET", f"/api/v1/customers/{order['customerId']}/orders/{order['id']}", timeout=30
    )


def pay_until_accepted(host: HostProcess, order: dict[str, Any], event_id: str) -> int:
    """The provider's behaviour: the same event again after each 503, until it is accepted."""
    attempts = 0
    while True:
        attempts += 1
        body, headers = signed_payment_succeeded(order, WEBHOOK_SECRET, event_id=event_id)
        response = host.request(
            "POST", "/api/v1/payments/webhook", body=body, headers=headers, timeout=30
        )
        if response.status == 200:
            return attempts
        assert response.status == 503, response.body
        assert response.header("Retry-After")
        time.sleep(0.2)


def assert_unavailable_problem(response: HttpResult) -> None:
    assert response.status == 503, response.body
    assert (response.header("Content-Type") or "").startswith("application/problem+json")
    assert int(response.header("Retry-After") or "0") >= 1
    body = response.json()
    assert body["status"] == 503
    assert "Traceback" not in response.body.decode()


def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"{what} not within {timeout:.0f} s"
        time.sleep(0.2)


def statuses(app: HungApp, orders: list[dict[str, Any]]) -> dict[str, str]:
    found = app.orders.query_items(
        "SELECT c.id, c.status FROM c WHERE ARRAY_CONTAINS(@ids, c.id)",
        parameters=[{"name": "@ids", "value": [o["id"] for o in orders]}],
        enable_cross_partition_query=True,
    )
    return {item["id"]: item["status"] for item in found}


def test_a_cosmos_hang_under_load_is_bounded_isolated_and_recovers(app: HungApp) -> None:
    host = app.host
    sku = stock(host, 100)
    order = place(host, sku)
    assert get_order(host, order).status == 200

    with ThreadPoolExecutor(16) as pool, app.stack.paused("cosmos"):
        began = time.monotonic()
        # More requests for the hung dependency than the worker has threads.
        reads: list[Future[tuple[HttpResult, float]]] = [
            pool.submit(timed, lambda: get_order(host, order)) for _ in range(12)
        ]
        time.sleep(0.5)
        # Meanwhile liveness, OpenAPI and readiness answer.
        live, live_seconds = timed(lambda: host.request("GET", "/api/health", timeout=5))
        spec, spec_seconds = timed(lambda: host.request("GET", "/api/openapi.json", timeout=5))
        ready, ready_seconds = timed(lambda: host.request("GET", "/api/health/ready", timeout=5))
        assert live.status == 200, live.body
        assert live_seconds < 1.0, live_seconds
        assert spec.status == 200, spec.body
        assert spec_seconds < 1.0, spec_seconds
        assert ready.status == 503, ready.body
        assert ready_seconds < 4.5, ready_seconds
        assert ready.json()["checks"]["cosmos"]["status"] == "down"
        assert ready.json()["checks"]["storage"]["status"] == "up"

        for future in reads:
            response, seconds = future.result(timeout=60)
            assert_unavailable_problem(response)
            assert seconds <= DEADLINE_SECONDS + ANSWER_SLACK_SECONDS, seconds
        assert time.monotonic() - began < 2 * DEADLINE_SECONDS + 2 * ANSWER_SLACK_SECONDS

        # The circuit is open now: calls fail in milliseconds instead of waiting the deadline.
        fast = [timed(lambda: get_order(host, order)) for _ in range(5)]
        for response, _ in fast:
            assert_unavailable_problem(response)
        assert sorted(seconds for _, seconds in fast)[2] < 0.5, fast
        ready = host.request("GET", "/api/health/ready", timeout=5)
        assert ready.status == 503
        assert ready.json()["checks"]["cosmos"]["reason"] == "circuit open"

    resumed = time.monotonic()
    while get_order(host, order).status != 200:
        assert time.monotonic() - resumed < 5, "no 200 within 5 s of the resume"
        time.sleep(0.05)
    assert host.request("GET", "/api/health/ready", timeout=5).status == 200


def test_payments_and_fulfillment_in_flight_through_a_cosmos_hang_end_exactly_once(
    app: HungApp,
) -> None:
    host = app.host
    sku = stock(host, 1000)
    orders = [place(host, sku, quantity=2) for _ in range(12)]
    event_ids = {order["id"]: f"evt_{uuid.uuid4().hex}" for order in orders}
    with ThreadPoolExecutor(12) as pool:
        # The first half is paid just before the hang: commands in flight when Cosmos freezes.
        early = [pool.submit(pay_until_accepted, host, o, event_ids[o["id"]]) for o in orders[:6]]
        for future in early:
            future.result(timeout=60)
        with app.stack.paused("cosmos"):
            # The provider keeps retrying the second half through the hang.
            late = [
                pool.submit(pay_until_accepted, host, o, event_ids[o["id"]]) for o in orders[6:]
            ]
            time.sleep(2 * DEADLINE_SECONDS)
            assert not any(future.done() for future in late)
        attempts = [future.result(timeout=90) for future in late]
    assert max(attempts) > 1  # they were refused during the hang, then accepted

    wait_until(
        lambda: set(statuses(app, orders).values()) == {"fulfilled"}, 90, "every order fulfilled"
    )
    # Stock taken exactly once per order; a repeat of any event changes nothing.
    assert app.inventory.read_item(sku, partition_key=sku)["available"] == 1000 - 2 * len(orders)
    again = pay_until_accepted(host, orders[0], event_ids[orders[0]["id"]])
    assert again == 1
    assert statuses(app, orders)[orders[0]["id"]] == "fulfilled"


def test_a_service_bus_hang_keeps_the_api_answering_and_loses_no_command(app: HungApp) -> None:
    host = app.host
    sku = stock(host, 100)
    orders = [place(host, sku) for _ in range(6)]
    with app.stack.paused("servicebus"):
        for order in orders:
            # The webhook does not need Service Bus: routing the event does, and it is retried.
            body, headers = signed_payment_succeeded(order, WEBHOOK_SECRET)
            response, seconds = timed(
                functools.partial(
                    host.request, "POST", "/api/v1/payments/webhook", body=body, headers=headers
                )
            )
            assert response.status == 200, response.body
            assert seconds < 2.0, seconds
        live, live_seconds = timed(lambda: host.request("GET", "/api/health", timeout=5))
        assert live.status == 200
        assert live_seconds < 1.0
        assert get_order(host, orders[0]).status == 200
        ready, ready_seconds = timed(lambda: host.request("GET", "/api/health/ready", timeout=5))
        assert ready.status == 503
        assert ready_seconds < 4.5
        assert ready.json()["checks"]["serviceBus"]["status"] == "down"
        time.sleep(2)
        assert set(statuses(app, orders).values()) == {"paid"}
    wait_until(
        lambda: set(statuses(app, orders).values()) == {"fulfilled"}, 90, "every order fulfilled"
    )
    assert app.inventory.read_item(sku, partition_key=sku)["available"] == 100 - len(orders)


# Rows of the Azurite hang's import: about three chunks (MAX_CHUNK_BYTES), so the chunk pass
# creates orders for several seconds, the window in which Azurite is frozen.
IMPORT_ROWS = 2500


def test_an_azurite_hang_keeps_the_api_answering_and_an_import_completes_once(
    app: HungApp,
) -> None:
    host = app.host
    sku = stock(host, 100)
    order = place(host, sku)
    rows = ["external_id,customer_id,sku,quantity,unit_price,currency"]
    customer = f"imp-{uuid.uuid4().hex[:8]}"
    rows += [f"ext-{i},{customer},{sku},1,1.00,EUR" for i in range(IMPORT_ROWS)]
    name = f"hang-{uuid.uuid4().hex[:8]}.csv"

    def created() -> list[str]:
        found = app.orders.query_items(
            "SELECT c.id FROM c WHERE c.customerId = @customer",
            parameters=[{"name": "@customer", "value": customer}],
            partition_key=customer,
        )
        return [str(item["id"]) for item in found]

    with BlobServiceClient.from_connection_string(app.stack.storage_connection_string) as blobs:
        blobs.get_blob_client(IMPORTS_BLOB_CONTAINER, name).upload_blob(
            ("\n".join(rows) + "\n").encode()
        )
    # Freeze Azurite while chunks are in flight: the chunk pass has created some of the orders
    # (so chunk messages are taken from the queue and not yet deleted) and not all of them.
    wait_until(lambda: len(created()) > 0, 120, "the chunk pass started")
    with app.stack.paused("azurite"):
        in_flight = len(created())
        assert 0 < in_flight < IMPORT_ROWS, in_flight
        for path in (
            "/api/health",
            f"/api/v1/customers/{order['customerId']}/orders/{order['id']}",
        ):
            response, seconds = timed(functools.partial(host.request, "GET", path, timeout=5))
            assert response.status == 200, response.body
            assert seconds < 1.0, (path, seconds)
        ready, ready_seconds = timed(lambda: host.request("GET", "/api/health/ready", timeout=5))
        assert ready.status == 503
        assert ready_seconds < 4.5
        assert ready.json()["checks"]["storage"]["status"] == "down"
        assert ready.json()["checks"]["cosmos"]["status"] == "up"
        progress = host.request("GET", f"/api/v1/imports/{name}", timeout=5)
        assert progress.status == 200, progress.body
        assert progress.json()["state"] != "completed"
        time.sleep(2)

    def imported() -> bool:
        response = host.request("GET", f"/api/v1/imports/{name}")
        return response.status == 200 and response.json().get("state") == "completed"

    wait_until(imported, 180, "the import completed")
    status = host.request("GET", f"/api/v1/imports/{name}").json()
    assert status["rowsRead"] == IMPORT_ROWS
    assert status["accepted"] == IMPORT_ROWS
    assert status["rejected"] == 0
    assert status["chunksDone"] == status["chunksTotal"] > 1
    ids = created()
    assert len(ids) == len(set(ids)) == IMPORT_ROWS


def test_an_issuer_hang_serves_warm_key_caches_and_answers_cold_ones_503_fast(
    app: HungApp, tmp_path: Path
) -> None:
    host = app.host
    sku = stock(host, 5)
    path = f"/api/v1/inventory/{sku}"
    # Tokens come from the issuer: get them before it hangs.
    token = request_token(app.stack.issuer_url, sub="hang")
    assert host.request("GET", path, token=token).status == 200  # this instance has the keys

    with app.stack.paused(IDENTITY):
        # A warm instance validates with its cached keys and never asks the hung issuer.
        for _ in range(3):
            answer, seconds = timed(lambda: host.request("GET", path, token=token, timeout=10))
            assert answer.status == 200, answer.body
            assert seconds < 1.0, seconds
        # A new instance (cold key cache) while the issuer hangs.
        with run_local_host(
            REPO_ROOT,
            tmp_path / "cold-host.log",
            env=app.env,
            args=["--settings", str(SAMPLE_SETTINGS)],
        ) as cold:
            first, first_seconds = timed(lambda: cold.request("GET", path, token=token, timeout=30))
            assert_unavailable_problem(first)
            assert first_seconds <= DEADLINE_SECONDS + ANSWER_SLACK_SECONDS, first_seconds
            # Then at once: the key cache's cooldown, then the issuer's open circuit.
            for _ in range(5):
                again, seconds = timed(lambda: cold.request("GET", path, token=token, timeout=30))
                assert_unavailable_problem(again)
                assert seconds < 1.0, seconds
            live, live_seconds = timed(
                lambda: cold.request("GET", "/api/health", token=None, timeout=5)
            )
            assert live.status == 200, live.body
            assert live_seconds < 1.0, live_seconds
            spec = cold.request("GET", "/api/openapi.json", token=None, timeout=5)
            assert spec.status == 200
            app.stack.resume_service(IDENTITY)

            # After the resume the cold instance gets the keys (after the cache's cooldown and
            # the breaker's probe) and the same token is accepted.
            def accepted() -> bool:
                return cold.request("GET", path, token=token, timeout=10).status == 200

            wait_until(accepted, 30, "a 200 from the cold instance after the resume")
