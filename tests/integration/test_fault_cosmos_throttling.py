"""A Cosmos DB throttling storm under concurrent API traffic, and throttling under the message
handlers (a fulfillment delivery, an import chunk).

The handlers run in-process on worker-like threads with the app's own Cosmos client options
(``shared.clients.cosmos_client_options``) and an azure-core transport that answers data-plane
requests with 429 (``x-ms-retry-after-ms``) for a window, three requests in four, in front of
the real Cosmos stand-in: throttling is the one fault the stand-in cannot produce (see
tests/integration/test_api_cost_and_faults.py, which covers a single throttled or failed
request). Checked:

- every response is a success or 503 with ``Retry-After`` (problem+json), never a 500;
- the SDK's retry policy does the retrying, exactly as configured: a request that failed made
  ``1 + RETRY_TOTAL`` attempts of its last call, each after the hinted delay; the app adds none;
- nothing is half-written: orders stored == orders answered 201, a 503'd cancel changed nothing,
  every stored order's event was published (or waits in its outbox for the relay);
- after the storm the clients' retries of everything answered 503 succeed, with no duplicates.
"""

from __future__ import annotations

import itertools
import json
import random
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import azure.functions as func
import pytest

from blueprints import http_api
from shared import clients
from shared.errors import DependencyUnavailableError
from shared.events import event_id
from shared.models import OrderDraft, OrderStatus
from shared.publisher import EventGridPublisher
from shared.repositories.import_runs import CosmosImportRunRepository
from shared.repositories.import_storage import AzureReportBlob
from shared.repositories.inventory import CosmosInventoryRepository
from shared.repositories.orders import CosmosOrderRepository
from shared.services.fulfillment import FULFIL_ORDER
from shared.services.fulfillment_messages import (
    RETRY_DELAYS_SECONDS,
    DeliveryOutcome,
    ReceivedMessage,
    handle_delivery,
)
from shared.services.import_pipeline import ChunkOutcome, FileOutcome, ImportPipeline
from shared.services.orders import order_id_for_key
from shared.services.outbox import publish_outbox
from shared.services.providers import fulfillment_service, order_service
from tests.fixtures.eventgrid import EventGridSink
from tests.fixtures.fakes import ListQueue, ParkingList
from tests.fixtures.imports import direct_import_files, upload_direct
from tests.fixtures.stack import bearer_headers
from tests.fixtures.transport import (
    ForwardingTransport,
    cosmos_through,
    document_path,
    throttled_response,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

RETRY_AFTER_MS = 250
THROTTLED_SHARE = 0.75  # of data-plane requests during the storm
STORM_SECONDS = 2.5
SPREAD_SECONDS = 3.5  # requests start evenly over this time; the storm covers the first part
BODY = {"lines": [{"sku": "SKU-STORM", "quantity": 2, "unitPrice": "3.10"}], "currency": "EUR"}


@dataclass(frozen=True)
class Attempt:
    request: str | None  # the storm request whose thread made the call
    method: str
    path: str
    status: int
    at: float


class StormTransport(ForwardingTransport):
    """Forwards to the stand-in; while ``throttling(request)`` says so, answers 429 instead.
    Records every data-plane attempt with the storm request that made it (thread-local tag)."""

    def __init__(self) -> None:
        super().__init__()
        self._lock = threading.Lock()
        self.attempts: list[Attempt] = []
        self.throttling: Callable[[Any], bool] = lambda request: False
        self.current = threading.local()

    def send(self, request: Any, **kwargs: Any) -> Any:
        path = document_path(request)
        if path is None:
            return self.forward(request, **kwargs)
        response = (
            throttled_response(request, RETRY_AFTER_MS)
            if self.throttling(request)
            else self.forward(request, **kwargs)
        )
        with self._lock:
            self.attempts.append(
                Attempt(
                    getattr(self.current, "request", None),
                    request.method,
                    path,
                    response.status_code,
                    time.monotonic(),
                )
            )
        return response


@pytest.fixture
def transport(
    app_settings: dict[str, str], events: EventGridSink, monkeypatch: pytest.MonkeyPatch
) -> Iterator[StormTransport]:
    for name, value in events.app_settings().items():
        monkeypatch.setenv(name, value)
    storm = StormTransport()
    # The app's own timeouts and retry policy.
    with cosmos_through(storm, app_settings, **clients.cosmos_client_options()):
        yield storm


def call(
    function: Any, method: str, path: str, params: dict[str, str], headers: dict[str, str]
) -> func.HttpResponse:
    handler = function.build().get_user_function()
    body = json.dumps(BODY).encode() if method == "POST" and path.endswith("/orders") else b""
    request = func.HttpRequest(
        method,
        f"http://localhost{path}",
        headers={"Content-Type": "application/json", **bearer_headers(), **headers},
        route_params=params,
        params={},
        body=body,
    )
    response: func.HttpResponse = handler(request, None)
    return response


@dataclass(frozen=True)
class Request:
    name: str
    kind: str  # "create", "create-keyed", "cancel" or "read"
    customer: str
    order_id: str | None = None
    key: str | None = None

    def send(self) -> func.HttpResponse:
        orders = f"/api/v1/customers/{self.customer}/orders"
        if self.kind.startswith("create"):
            headers = {"Idempotency-Key": self.key} if self.key else {}
            return call(
                http_api.create_order, "POST", orders, {"customerId": self.customer}, headers
            )
        assert self.order_id is not None
        params = {"customerId": self.customer, "orderId": self.order_id}
        if self.kind == "cancel":
            path = f"{orders}/{self.order_id}/cancel"
            return call(http_api.cancel_order, "POST", path, params, {})
        return call(http_api.get_order, "GET", f"{orders}/{self.order_id}", params, {})


def stored_orders(customer: str) -> dict[str, dict[str, Any]]:
    return {
        item.id: item.document
        for item in (
            CosmosOrderRepository().list_page(customer, None, 100, None).items  # one page: < 100
        )
    }


Result = tuple[Request, func.HttpResponse, float]


def storm_requests(customers: list[str]) -> tuple[list[dict[str, Any]], list[Request]]:
    """Orders placed before the storm, and the storm's requests: creates with and without an
    Idempotency-Key, cancels and reads of those orders, in a fixed shuffled order."""
    existing = [
        json.loads(Request("setup", "create", customers[i % 4]).send().get_body())
        for i in range(20)
    ]
    requests = [
        Request(f"keyed-{i}", "create-keyed", customers[i % 4], key=f"storm-key-{i}")
        for i in range(20)
    ]
    requests += [Request(f"plain-{i}", "create", customers[i % 4]) for i in range(20)]
    requests += [
        Request(f"cancel-{i}", "cancel", order["customerId"], order_id=order["id"])
        for i, order in enumerate(existing[:12])
    ]
    requests += [
        Request(f"read-{i}", "read", order["customerId"], order_id=order["id"])
        for i, order in enumerate(existing[12:])
    ]
    random.Random(5).shuffle(requests)
    return existing, requests


def run_storm(transport: StormTransport, requests: list[Request]) -> list[Result]:
    """Send ``requests`` from 16 threads, started evenly over SPREAD_SECONDS, while the first
    STORM_SECONDS throttle THROTTLED_SHARE of the Cosmos requests (a seeded draw)."""
    dice = random.Random(2026)
    dice_lock = threading.Lock()
    started = time.monotonic()

    def storming(request: Any) -> bool:
        if time.monotonic() - started >= STORM_SECONDS:
            return False
        with dice_lock:
            return dice.random() < THROTTLED_SHARE

    def run(index_and_request: tuple[int, Request]) -> Result:
        index, request = index_and_request
        time.sleep(max(0.0, started + index * SPREAD_SECONDS / len(requests) - time.monotonic()))
        transport.current.request = request.name
        begun = time.monotonic()
        try:
            return request, request.send(), time.monotonic() - begun
        finally:
            transport.current.request = None

    transport.throttling = storming
    try:
        with ThreadPoolExecutor(16) as pool:  # the worker's thread pool serving these requests
            return list(pool.map(run, enumerate(requests)))
    finally:
        transport.throttling = lambda request: False


def assert_the_sdk_retried_as_configured(transport: StormTransport, request: Request) -> None:
    """A refused request's last Cosmos call was made 1 + RETRY_TOTAL times, each after the
    hinted delay, and not more often: the SDK's policy retried, nothing added retries on top."""
    mine = [a for a in transport.attempts if a.request == request.name]
    last = mine[-1]
    same_call = [a for a in mine if (a.method, a.path) == (last.method, last.path)]
    attempts = clients.RETRY_TOTAL + 1
    assert [a.status for a in same_call[-attempts:]] == [429] * attempts, request
    if len(same_call) > attempts:
        assert same_call[-attempts - 1].status != 429, f"{request.name}: too many attempts"
    gaps = [b.at - a.at for a, b in itertools.pairwise(same_call[-attempts:])]
    assert min(gaps) >= RETRY_AFTER_MS / 1000 * 0.9, (request.name, gaps)


def assert_refused_properly(response: func.HttpResponse) -> None:
    assert response.headers["Retry-After"] == "1"  # 250 ms, in whole seconds
    assert response.mimetype == "application/problem+json"
    problem = json.loads(response.get_body())
    assert problem["status"] == 503
    assert "Cosmos DB" in problem["detail"]


def test_a_throttling_storm_gives_503_or_success_and_never_half_writes(
    transport: StormTransport, events: EventGridSink
) -> None:
    customers = [f"storm-{uuid.uuid4().hex[:8]}-{i}" for i in range(4)]
    existing, requests = storm_requests(customers)
    events.clear()

    results = run_storm(transport, requests)

    statuses = [response.status_code for _, response, _ in results]
    refused = [request for request, response, _ in results if response.status_code == 503]
    served_after_retries = {a.request for a in transport.attempts if a.status == 429} - {
        request.name for request in refused
    }
    print(
        f"\nthrottling storm: {len(requests)} requests, "
        f"{sum(a.status == 429 for a in transport.attempts)} of {len(transport.attempts)} Cosmos "
        f"attempts throttled; {statuses.count(201)} created, {statuses.count(200)} ok, "
        f"{len(refused)} refused with 503, {len(served_after_retries)} served after SDK "
        f"retries; slowest request {max(seconds for _, _, seconds in results):.2f} s"
    )
    # Successes or 503 with Retry-After, never a 500.
    for request, response, _ in results:
        expected = 201 if request.kind.startswith("create") else 200
        assert response.status_code in (expected, 503), (request, response.get_body())
        if response.status_code == 503:
            assert_refused_properly(response)
            assert_the_sdk_retried_as_configured(transport, request)
    assert refused, "the storm refused nothing: it did not exercise the 503 path"
    assert served_after_retries, "no request was served after the SDK retried it"

    # Nothing half-written: what is stored is exactly what was answered.
    created = {
        json.loads(response.get_body())["id"]
        for request, response, _ in results
        if request.kind.startswith("create") and response.status_code == 201
    }
    stored = {
        order_id: document
        for customer in customers
        for order_id, document in stored_orders(customer).items()
    }
    assert set(stored) == created | {order["id"] for order in existing}
    cancels = [(r, response.status_code) for r, response, _ in results if r.kind == "cancel"]
    for request, status in cancels:
        expected_status = "cancelled" if status == 200 else "pending"
        assert stored[str(request.order_id)]["status"] == expected_status, request
    repository, publisher = CosmosOrderRepository(), EventGridPublisher()
    for order_id, document in stored.items():
        if document.get("outbox"):  # left for the relay: it publishes and clears it
            left = repository.get(document["customerId"], order_id)
            assert not publish_outbox(left, repository, publisher).document.get("outbox")
    published = {(event["type"], event["subject"].rsplit("/", 1)[-1]) for event in events.events}
    assert {("Orderflow.Order.Placed", order_id) for order_id in created} <= published
    for request, status in cancels:
        was_published = ("Orderflow.Order.Cancelled", request.order_id) in published
        assert was_published == (status == 200), request

    # The clients retry what was refused, after Retry-After: everything succeeds, once.
    for request in refused:
        expected = 201 if request.kind.startswith("create") else 200
        assert request.send().status_code == expected, request
    final = {customer: stored_orders(customer) for customer in customers}
    creates = [r for r in requests if r.kind.startswith("create")]
    assert sum(len(docs) for docs in final.values()) == len(existing) + len(creates)
    for request in creates:
        if request.key:
            assert order_id_for_key(request.customer, request.key) in final[request.customer]
    statuses_now = [doc["status"] for docs in final.values() for doc in docs.values()]
    assert statuses_now.count("cancelled") == len(cancels)


def test_a_change_whose_outbox_cannot_be_cleared_still_succeeds_and_the_relay_clears_it(
    transport: StormTransport, events: EventGridSink
) -> None:
    """Creating and cancelling are stored and published; only emptying the outbox (a PATCH) is
    throttled. Answering 503 would make the client retry a change that is done (a second order
    without an Idempotency-Key, a 409 for the cancel), so the app answers success."""
    customer = f"outbox-{uuid.uuid4().hex[:8]}"
    transport.throttling = lambda request: request.method == "PATCH"

    created = Request("plain", "create", customer).send()
    order_id = json.loads(created.get_body())["id"]
    cancelled = Request("cancel", "cancel", customer, order_id=order_id).send()
    transport.throttling = lambda request: False

    assert (created.status_code, cancelled.status_code) == (201, 200)
    [document] = stored_orders(customer).values()
    assert document["status"] == "cancelled"
    assert [event["type"] for event in document["outbox"]] == [
        "Orderflow.Order.Placed",
        "Orderflow.Order.Cancelled",
    ]
    published = [e["type"] for e in events.events if e["subject"].endswith(order_id)]
    assert published == [
        "Orderflow.Order.Placed",
        "Orderflow.Order.Placed",
        "Orderflow.Order.Cancelled",
    ]
    repository = CosmosOrderRepository()
    relayed = publish_outbox(repository.get(customer, order_id), repository, EventGridPublisher())
    assert relayed.document["outbox"] == []


def test_a_throttled_fulfillment_delivery_retries_then_goes_back_to_service_bus(
    transport: StormTransport,
) -> None:
    """Cosmos throttled for longer than the SDK's and the handler's own retries: the delivery
    fails (the trigger abandons the message, Service Bus redelivers it) having changed nothing;
    the redelivery, once Cosmos serves again, fulfils the order once."""
    orders = order_service()
    inventory = CosmosInventoryRepository()
    sku = f"SKU-throttled-{uuid.uuid4().hex[:8]}"
    inventory.set_available(sku, 5, "2026-11-21T00:00:00Z")
    draft = OrderDraft.model_validate(
        {"lines": [{"sku": sku, "quantity": 2, "unitPrice": "1.00"}], "currency": "EUR"}
    )
    placed = orders.place(f"ft-{uuid.uuid4().hex[:8]}", draft).order
    paid = orders.transition(placed, OrderStatus.PAID)
    paid_event = event_id(paid.customer_id, paid.id, OrderStatus.PAID)
    body = json.dumps(
        {
            "type": FULFIL_ORDER,
            "version": 1,
            "customerId": paid.customer_id,
            "orderId": paid.id,
            "eventId": paid_event,
        }
    ).encode()
    parking = ParkingList()
    slept: list[float] = []

    transport.throttling = lambda request: True
    with pytest.raises(DependencyUnavailableError):
        handle_delivery(
            ReceivedMessage(body, paid_event, 1, {}),
            fulfillment_service(),
            parking,
            sleep=slept.append,
        )
    transport.throttling = lambda request: False

    assert len(slept) == len(RETRY_DELAYS_SECONDS)  # the handler's retries, with jitter
    for waited, delay in zip(slept, RETRY_DELAYS_SECONDS, strict=True):
        assert delay * 0.8 <= waited <= delay * 1.2
    assert orders.get(paid.customer_id, paid.id).document["status"] == "paid"
    assert inventory.get(sku).available == 5
    assert parking.parked == []  # transient: not poison

    redelivered = ReceivedMessage(body, paid_event, 2, {})
    assert handle_delivery(redelivered, fulfillment_service(), parking) is DeliveryOutcome.PROCESSED
    assert orders.get(paid.customer_id, paid.id).document["status"] == "fulfilled"
    assert inventory.get(sku).available == 3


def test_an_import_chunk_throttled_half_way_fails_whole_and_its_redelivery_counts_once(
    transport: StormTransport,
) -> None:
    """The storage queue trigger retries a failed chunk (after host.json's visibilityTimeout):
    the orders the first try created are found again, the rows are counted once."""
    queue = ListQueue()
    runs = CosmosImportRunRepository()
    pipeline = ImportPipeline(runs, direct_import_files(), AzureReportBlob(), queue, order_service)
    customer = f"it-{uuid.uuid4().hex[:8]}"
    rows = "".join(f"E{n},{customer},SKU-{n},1,2.00,EUR\r\n" for n in range(10))
    name = f"throttled-{uuid.uuid4().hex[:8]}.csv"
    upload_direct(
        name, ("external_id,customer_id,sku,quantity,unit_price,currency\r\n" + rows).encode()
    )
    assert pipeline.import_file(name) is FileOutcome.SENT
    [chunk] = queue.messages
    creates = 0
    lock = threading.Lock()

    def after_four_orders(request: Any) -> bool:
        nonlocal creates
        with lock:
            if request.method == "POST" and "/colls/orders/docs" in request.url and creates < 4:
                creates += 1
                return False
            return creates >= 4

    transport.throttling = after_four_orders
    with pytest.raises(DependencyUnavailableError):
        pipeline.process_chunk(chunk)
    transport.throttling = lambda request: False
    partial = CosmosOrderRepository().list_page(customer, None, 100, None).items
    status = (runs.read(name) or pytest.fail("no run")).document
    assert len(partial) == 4
    assert (status["state"], status["chunksDone"], status["accepted"]) == ("processing", 0, 0)

    assert pipeline.process_chunk(chunk) is ChunkOutcome.APPLIED  # the queue's redelivery
    status = (runs.read(name) or pytest.fail("no run")).document
    stored = CosmosOrderRepository().list_page(customer, None, 100, None).items
    assert (status["state"], status["rowsRead"], status["accepted"], status["rejected"]) == (
        "completed",
        10,
        10,
        0,
    )
    assert sorted(item.document["externalId"] for item in stored) == [f"E{n}" for n in range(10)]
