"""The import run's Cosmos items (shared/repositories/import_runs.py): a run item whose size does
not depend on the file, one marker per counted chunk, rejected rows only in the report blob,
exactly-once counting under concurrent redelivery and 449s, and the events of a chunk published
together."""

from __future__ import annotations

import json
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from shared import clients
from shared.clients import get_container
from shared.models import ImportStatus
from shared.names import IMPORTS_CONTAINER
from shared.publisher import MAX_BATCH_BYTES, EventGridPublisher, event_batches
from shared.repositories.import_runs import (
    CHUNK_MARKER_TTL_SECONDS,
    CosmosImportRunRepository,
)
from shared.repositories.import_storage import AzureReportBlob, report_name
from shared.repositories.orders import CosmosOrderRepository
from shared.services.import_files import MAX_CHUNK_ORDERS
from shared.services.import_pipeline import ChunkOutcome, FileOutcome, ImportPipeline
from shared.services.orders import OrderService
from tests.fixtures.eventgrid import EventGridSink
from tests.fixtures.fakes import ListQueue
from tests.fixtures.imports import direct_import_files, upload_direct
from tests.fixtures.transport import (
    ForwardingTransport,
    cosmos_through,
    is_batch,
    retry_with_response,
)

pytestmark = pytest.mark.integration

HEADER = "external_id,customer_id,sku,quantity,unit_price,currency\n"
RUN_FIELDS = {
    "id",
    "importId",
    "state",
    "runId",
    "blobEtag",
    "sizeBytes",
    "rowsRead",
    "accepted",
    "rejected",
    "fileRejected",
    "chunksTotal",
    "chunksDone",
    "reportLocation",
    "reason",
    "createdAt",
    "updatedAt",
}


class CountingPublisher(EventGridPublisher):
    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def publish(self, events: Any) -> None:
        self.calls += 1
        super().publish(events)


@pytest.fixture
def topic(
    app_settings: dict[str, str], events: EventGridSink, monkeypatch: pytest.MonkeyPatch
) -> EventGridSink:
    for name, value in events.app_settings().items():
        monkeypatch.setenv(name, value)
    return events


def pipeline_for(
    queue: ListQueue, max_chunk_bytes: int, max_chunk_orders: int = MAX_CHUNK_ORDERS
) -> ImportPipeline:
    service = OrderService(CosmosOrderRepository(), EventGridPublisher())
    return ImportPipeline(
        CosmosImportRunRepository(),
        direct_import_files(),
        AzureReportBlob(),
        queue,
        lambda: service,
        max_chunk_bytes=max_chunk_bytes,
        max_chunk_orders=max_chunk_orders,
    )


def upload(orders: int, bad_rows: int) -> tuple[str, str]:
    customer = f"c-{uuid.uuid4().hex[:10]}"
    name = f"items-{uuid.uuid4().hex[:8]}.csv"
    rows = "".join(f"E{i},{customer},SKU-{i % 5},1,2.00,EUR\n" for i in range(orders))
    rows += "".join(f"BAD{i},{customer},SKU-1,lots,2.00,EUR\n" for i in range(bad_rows))
    upload_direct(name, (HEADER + rows).encode())
    return name, customer


def partition(name: str) -> list[dict[str, Any]]:
    return list(get_container(IMPORTS_CONTAINER).query_items("SELECT * FROM c", partition_key=name))


def run_item(name: str) -> dict[str, Any]:
    return next(item for item in partition(name) if item["id"] == name)


def user_fields(document: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in document.items() if not k.startswith("_")}


@pytest.mark.usefixtures("topic")
def test_the_run_item_is_the_same_size_for_one_chunk_and_for_many() -> None:
    small_queue, large_queue = ListQueue(), ListQueue()
    small_name, _ = upload(orders=3, bad_rows=1)
    large_name, _ = upload(orders=300, bad_rows=200)
    small, large = pipeline_for(small_queue, 48_000), pipeline_for(large_queue, 600, 10)

    small.import_file(small_name)
    large.import_file(large_name)
    for message in small_queue.messages:
        small.process_chunk(message)
    for message in large_queue.messages:
        large.process_chunk(message)

    assert len(large_queue.messages) > 20
    small_run, large_run = user_fields(run_item(small_name)), user_fields(run_item(large_name))
    assert set(small_run) == set(large_run) == RUN_FIELDS
    assert len(json.dumps(large_run)) < 4096
    assert len(json.dumps(large_run)) - len(json.dumps(small_run)) < 40  # digits, ids differ
    status = ImportStatus.model_validate(large_run)  # what the API answers
    assert (status.state, status.rows_read, status.accepted, status.rejected) == (
        "completed",
        500,
        300,
        200,
    )
    assert status.chunks_done == status.chunks_total == len(large_queue.messages)


@pytest.mark.usefixtures("topic")
def test_chunks_leave_small_expiring_markers_and_rejected_rows_only_in_the_report() -> None:
    queue = ListQueue()
    name, customer = upload(orders=40, bad_rows=0)
    # Rows that pass the file pass but conflict in the chunk pass: the same external id again
    # with other lines (rejected by the chunk, listed in the report).
    pipeline = pipeline_for(queue, 700)
    pipeline.import_file(name)
    for message in queue.messages:
        pipeline.process_chunk(message)
    conflicting = f"E1,{customer},SKU-OTHER,9,9.00,EUR\n"
    upload_direct(name, (HEADER + conflicting).encode())
    again = ListQueue()
    second = pipeline_for(again, 700)
    second.import_file(name)
    for message in again.messages:
        second.process_chunk(message)

    items = partition(name)
    markers = [item for item in items if item["id"] != name]
    assert len(markers) == len(again.messages) + len(queue.messages)
    assert all(m["kind"] == "chunk" and m["ttl"] == CHUNK_MARKER_TTL_SECONDS for m in markers)
    assert max(len(json.dumps(user_fields(m))) for m in markers) < 512
    run = run_item(name)
    assert (run["accepted"], run["rejected"], run["state"]) == (0, 1, "completed")
    assert "SKU-OTHER" not in json.dumps(items)
    assert "already exists" not in json.dumps(items)
    report = (
        clients.get_blob_service()
        .get_blob_client("order-imports-rejected", report_name(name))
        .download_blob()
        .readall()
        .decode()
    )
    assert "E1" in report
    assert "already exists" in report


def test_concurrent_redelivered_chunks_count_once_through_449s(
    app_settings: dict[str, str], topic: EventGridSink
) -> None:
    class Conflicting(ForwardingTransport):
        """Answers every third write of a run item 449, as Cosmos DB may under contention."""

        def __init__(self) -> None:
            super().__init__()
            self.lock = threading.Lock()
            self.writes = 0
            self.answered = 0

        def send(self, request: Any, **kwargs: Any) -> Any:
            if "/colls/imports/" in request.url and (
                is_batch(request) or request.method == "PATCH"
            ):
                with self.lock:
                    self.writes += 1
                    if self.writes % 3 == 0:
                        self.answered += 1
                        return retry_with_response(request)
            return self.forward(request, **kwargs)

    transport = Conflicting()
    with cosmos_through(transport, app_settings, **clients.cosmos_client_options()):
        queue = ListQueue()
        name, _ = upload(orders=120, bad_rows=7)
        pipeline = pipeline_for(queue, 500)
        assert pipeline.import_file(name) is FileOutcome.SENT
        deliveries = queue.messages * 2
        with ThreadPoolExecutor(16) as pool:
            outcomes = list(pool.map(pipeline.process_chunk, deliveries))
        run = run_item(name)

    assert transport.answered > 0
    assert outcomes.count(ChunkOutcome.APPLIED) == len(queue.messages)
    assert outcomes.count(ChunkOutcome.DUPLICATE) == len(queue.messages)
    assert (run["state"], run["rowsRead"], run["accepted"], run["rejected"]) == (
        "completed",
        127,
        120,
        7,
    )
    assert run["chunksDone"] == run["chunksTotal"] == len(queue.messages)


def test_the_events_of_a_chunk_go_out_in_one_publish(topic: EventGridSink) -> None:
    queue = ListQueue()
    name, _ = upload(orders=200, bad_rows=0)
    publisher = CountingPublisher()
    service = OrderService(CosmosOrderRepository(), publisher)
    pipeline = ImportPipeline(
        CosmosImportRunRepository(),
        direct_import_files(),
        AzureReportBlob(),
        queue,
        lambda: service,
    )
    pipeline.import_file(name)
    [chunk] = queue.messages
    before = topic.requests

    assert pipeline.process_chunk(chunk) is ChunkOutcome.APPLIED

    assert publisher.calls == 1
    assert topic.requests - before == 1  # one HTTP request for 200 events
    assert len(topic.of_type("Orderflow.Order.Placed")) >= 200


def test_events_are_split_only_at_event_grids_1_mb_limit() -> None:
    event = {"id": "x", "data": {"pad": "p" * 10_000}}
    size = len(json.dumps(event, separators=(",", ":"))) + 1
    per_batch = MAX_BATCH_BYTES // size
    events = [dict(event, id=str(n)) for n in range(per_batch * 2 + 1)]

    batches = event_batches(events)

    assert [len(b) for b in batches] == [per_batch, per_batch, 1]
    assert [e["id"] for b in batches for e in b] == [str(n) for n in range(len(events))]
    assert event_batches([]) == []
