"""The import pipeline on the real Cosmos stand-in and Azurite: redelivered and stale chunks
never change the counts (rows read = accepted + rejected)."""

from __future__ import annotations

import json
import uuid

import pytest

from shared.clients import get_container
from shared.names import ORDERS_CONTAINER
from shared.publisher import EventGridPublisher
from shared.repositories.import_runs import CosmosImportRunRepository
from shared.repositories.import_storage import AzureReportBlob
from shared.repositories.orders import CosmosOrderRepository
from shared.services.import_files import parse_chunk
from shared.services.import_pipeline import ChunkOutcome, FileOutcome, ImportPipeline
from shared.services.orders import OrderService
from tests.fixtures.eventgrid import EventGridSink
from tests.fixtures.fakes import ListQueue
from tests.fixtures.imports import direct_import_files, upload_direct

pytestmark = pytest.mark.integration


def test_redelivered_and_stale_chunks_keep_counts_exact(
    app_settings: dict[str, str], events: EventGridSink, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in events.app_settings().items():
        monkeypatch.setenv(name, value)
    queue = ListQueue()
    service = OrderService(CosmosOrderRepository(), EventGridPublisher())
    pipeline = ImportPipeline(
        CosmosImportRunRepository(),
        direct_import_files(),
        AzureReportBlob(),
        queue,
        lambda: service,
        max_chunk_bytes=1000,
        max_chunk_orders=10,
    )
    customer = f"c-{uuid.uuid4().hex[:10]}"
    name = f"redelivery-{uuid.uuid4().hex[:8]}.csv"
    rows = "".join(f"E{i},{customer},SKU-{i % 3},1,2.00,EUR\n" for i in range(40))
    data = ("external_id,customer_id,sku,quantity,unit_price,currency\n" + rows).encode()
    data += f"E9,{customer},=x,1,1,EUR\n".encode()
    upload_direct(name, data)

    assert pipeline.import_file(name) is FileOutcome.SENT
    first_run = list(queue.messages)
    assert len(first_run) > 1
    assert pipeline.process_chunk(first_run[0]) is ChunkOutcome.APPLIED
    assert pipeline.process_chunk(first_run[0]) is ChunkOutcome.DUPLICATE
    # A retried file pass starts a new run: the old run's chunks no longer count.
    assert pipeline.import_file(name) is FileOutcome.SENT
    second_run = queue.messages[len(first_run) :]
    assert pipeline.process_chunk(first_run[1]) is ChunkOutcome.STALE
    for message in second_run + second_run:
        pipeline.process_chunk(message)

    status = CosmosImportRunRepository().read(name)
    assert status is not None
    document = status.document
    assert document["state"] == "completed"
    assert (document["rowsRead"], document["accepted"], document["rejected"]) == (41, 40, 1)
    assert document["chunksDone"] == document["chunksTotal"] == len(second_run)
    ids = [
        item["id"]
        for item in get_container(ORDERS_CONTAINER).query_items(
            "SELECT c.id FROM c", partition_key=customer
        )
    ]
    assert len(ids) == len(set(ids)) == 40  # each order once, whatever was redelivered
    assert pipeline.import_file(name) is FileOutcome.SKIPPED  # this version is done


def test_a_blob_created_event_starts_the_pass_for_its_version_only(
    app_settings: dict[str, str], events: EventGridSink, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Only a reference travels: the event names the blob and its ETag; the pass reads the
    blob itself, and an event of a version overwritten since starts nothing."""
    from localdev.eventgrid.storage_events import blob_created_event
    from shared.clients import get_blob_service
    from tests.fixtures.imports import DIRECT_IMPORTS_CONTAINER

    for setting, value in events.app_settings().items():
        monkeypatch.setenv(setting, value)
    queue = ListQueue()
    service = OrderService(CosmosOrderRepository(), EventGridPublisher())
    pipeline = ImportPipeline(
        CosmosImportRunRepository(),
        direct_import_files(),
        AzureReportBlob(),
        queue,
        lambda: service,
    )
    customer = f"c-{uuid.uuid4().hex[:10]}"
    name = f"event-{uuid.uuid4().hex[:8]}.csv"
    header = "external_id,customer_id,sku,quantity,unit_price,currency\n"

    def event_body(size: int) -> str:
        properties = (
            get_blob_service().get_blob_client(DIRECT_IMPORTS_CONTAINER, name).get_blob_properties()
        )
        # The subject names order-imports (what the app subscribes to); the pipeline under
        # test reads the blob from its own container.
        event = blob_created_event(properties, "order-imports", "http://127.0.0.1/a", 1)
        return json.dumps(event)

    upload_direct(name, f"{header}E1,{customer},SKU-1,1,2.00,EUR\n".encode())
    old_event = event_body(40)
    upload_direct(name, f"{header}E2,{customer},SKU-1,1,2.00,EUR\n".encode())
    assert pipeline.import_event(old_event) is FileOutcome.SUPERSEDED
    assert queue.messages == []
    assert pipeline.import_event(event_body(40)) is FileOutcome.SENT
    assert len(queue.messages) == 1
    assert [order.external_id for order in parse_chunk(queue.messages[0]).orders] == ["E2"]
    status = CosmosImportRunRepository().read(name)
    assert status is not None
    assert status.document["rowsRead"] == 1
