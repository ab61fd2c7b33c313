"""The custom metrics the alerts and the workbook query (infra/), emitted by the real services
against the local stack (Cosmos stand-in, Azurite, a recording Event Grid topic): orders by
status, payment-to-fulfilment latency, import rows accepted and rejected, poison-queue depth.
Each value is asserted on the structured log record every metric writes."""

from __future__ import annotations

import logging
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from shared import metrics
from shared.clients import get_queue_service
from shared.events import event_id
from shared.models import ImportStatus, OrderDraft, OrderStatus
from shared.publisher import EventGridPublisher
from shared.repositories.import_runs import CosmosImportRunRepository
from shared.repositories.import_storage import AzureReportBlob
from shared.repositories.inventory import CosmosInventoryRepository
from shared.repositories.orders import CosmosOrderRepository
from shared.repositories.reservations import CosmosStockReservations
from shared.services.deadletters import StorageQueueDepth, watch_poison_queue
from shared.services.fulfillment import FULFIL_ORDER, FulfillmentService, FulfilOrderCommand
from shared.services.import_pipeline import ImportPipeline
from shared.services.imports import ImportRunMetrics
from shared.services.orders import OrderService
from tests.fixtures.eventgrid import EventGridSink
from tests.fixtures.fakes import ListQueue
from tests.fixtures.imports import direct_import_files, upload_direct

pytestmark = pytest.mark.integration

PAID_AT = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)


def metric_records(caplog: pytest.LogCaptureFixture, name: str) -> list[logging.LogRecord]:
    return [r for r in caplog.records if getattr(r, "metric", None) == name]


def fields(record: logging.LogRecord, *names: str) -> tuple[object, ...]:
    return tuple(getattr(record, name) for name in names)


@pytest.fixture
def topic(
    app_settings: dict[str, str], events: EventGridSink, monkeypatch: pytest.MonkeyPatch
) -> EventGridSink:
    for name, value in events.app_settings().items():
        monkeypatch.setenv(name, value)
    return events


def draft(sku: str = "SKU-1", quantity: int = 1) -> OrderDraft:
    return OrderDraft.model_validate(
        {"lines": [{"sku": sku, "quantity": quantity, "unitPrice": "2.50"}], "currency": "EUR"}
    )


@pytest.mark.usefixtures("topic")
def test_each_status_an_order_enters_is_counted_once(caplog: pytest.LogCaptureFixture) -> None:
    service = OrderService(CosmosOrderRepository(), EventGridPublisher())
    customer = f"c-{uuid.uuid4().hex[:10]}"
    with caplog.at_level(logging.INFO, logger="orderflow"):
        placed = service.place(customer, draft(), idempotency_key="k").order
        replayed = service.place(customer, draft(), idempotency_key="k")
        service.cancel(customer, placed.id)

    assert replayed.replayed
    counted = [
        fields(r, "status", "value", "orderId", "customerId")
        for r in metric_records(caplog, metrics.ORDERS_TRANSITIONED)
    ]
    assert counted == [
        ("pending", 1, placed.id, customer),
        ("cancelled", 1, placed.id, customer),
    ]


@pytest.mark.usefixtures("topic")
def test_fulfilment_latency_is_measured_from_payment(caplog: pytest.LogCaptureFixture) -> None:
    repository = CosmosOrderRepository()
    publisher = EventGridPublisher()
    orders = OrderService(repository, publisher, clock=lambda: PAID_AT)
    fulfillment = FulfillmentService(
        orders,
        repository,
        publisher,
        CosmosStockReservations(),
        clock=lambda: PAID_AT + timedelta(seconds=42.5),
    )
    sku = f"SKU-{uuid.uuid4().hex[:10]}"
    CosmosInventoryRepository().set_available(sku, 5, "2026-11-21T11:00:00Z")
    placed = orders.place(f"c-{uuid.uuid4().hex[:10]}", draft(sku, 2)).order
    paid = orders.transition(placed, OrderStatus.PAID)
    command = FulfilOrderCommand.model_validate(
        {
            "type": FULFIL_ORDER,
            "version": 1,
            "customerId": paid.customer_id,
            "orderId": paid.id,
            "eventId": event_id(paid.customer_id, paid.id, OrderStatus.PAID),
        }
    )
    caplog.clear()

    with caplog.at_level(logging.INFO, logger="orderflow"):
        fulfillment.fulfil(command)
        fulfillment.fulfil(command)  # a redelivery finds it fulfilled: no second measurement

    (latency,) = metric_records(caplog, metrics.FULFILLMENT_LATENCY_SECONDS)
    assert fields(latency, "value", "orderId", "metricKind") == (42.5, paid.id, "histogram")
    statuses = [r.status for r in metric_records(caplog, metrics.ORDERS_TRANSITIONED)]  # type: ignore[attr-defined]
    assert statuses == ["fulfilled"]


@pytest.mark.usefixtures("topic")
def test_rows_of_a_finished_import_are_counted_once_despite_redelivery(
    caplog: pytest.LogCaptureFixture,
) -> None:
    queue = ListQueue()
    service = OrderService(CosmosOrderRepository(), EventGridPublisher())
    runs = CosmosImportRunRepository()
    pipeline = ImportPipeline(
        ImportRunMetrics(runs),
        direct_import_files(),
        AzureReportBlob(),
        queue,
        lambda: service,
        max_chunk_bytes=400,
        max_chunk_orders=4,
    )
    customer = f"c-{uuid.uuid4().hex[:10]}"
    name = f"metrics-{uuid.uuid4().hex[:8]}.csv"
    rows = "".join(f"E{i},{customer},SKU-{i},1,2.00,EUR\n" for i in range(12))
    data = b"external_id,customer_id,sku,quantity,unit_price,currency\n" + rows.encode()
    data += f"E99,{customer},SKU-1,many,2.00,EUR\n".encode()
    upload_direct(name, data)

    with caplog.at_level(logging.INFO, logger="orderflow"):
        pipeline.import_file(name)
        assert len(queue.messages) > 1, "several chunks, so completion is the last of them"
        for message in queue.messages + queue.messages:  # every chunk delivered twice
            pipeline.process_chunk(message)

    accepted = metric_records(caplog, metrics.IMPORT_ROWS_ACCEPTED)
    rejected = metric_records(caplog, metrics.IMPORT_ROWS_REJECTED)
    assert [fields(r, "value", "state", "importId", "rowsRead") for r in accepted] == [
        (12, "completed", name, 13)
    ]
    assert [fields(r, "value", "state", "importId") for r in rejected] == [(1, "completed", name)]
    run = runs.read(name)
    assert run is not None
    status = ImportStatus.model_validate(run.document)  # what the API shows is unchanged
    assert (status.state, status.rows_read, status.accepted, status.rejected) == (
        "completed",
        13,
        12,
        1,
    )


@pytest.mark.usefixtures("app_settings")
def test_poison_queue_depth_is_read_from_storage(caplog: pytest.LogCaptureFixture) -> None:
    queue = f"poison-{uuid.uuid4().hex[:12]}"
    client = get_queue_service().create_queue(queue)
    for n in range(3):
        client.send_message(f"chunk {n}")

    with caplog.at_level(logging.INFO, logger="orderflow"):
        assert watch_poison_queue(StorageQueueDepth(), queue) == 3
        assert watch_poison_queue(StorageQueueDepth(), f"missing-{queue}") == 0

    parked, missing = metric_records(caplog, metrics.POISON_QUEUE_DEPTH)
    assert (parked.levelno, parked.value, parked.queue) == (logging.WARNING, 3, queue)  # type: ignore[attr-defined]
    assert (missing.levelno, missing.value) == (logging.INFO, 0)  # type: ignore[attr-defined]
