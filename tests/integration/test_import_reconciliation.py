"""The reconciliation of imports on real Azurite and the Cosmos stand-in: an upload whose
BlobCreated event never arrives is imported once the timer runs (the timer writes the event
Event Grid would have written, and the file pass imports it with exact counts); a file pass
that died is restarted; a fresh upload, a finished import and a pass still running are left
alone. Files live in a container of their own, so the session's running app does not see them.
"""

from __future__ import annotations

import base64
import json
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from shared.clients import get_container
from shared.names import ORDERS_CONTAINER
from shared.publisher import EventGridPublisher
from shared.repositories.import_runs import CosmosImportRunRepository
from shared.repositories.import_storage import AzureReportBlob
from shared.repositories.orders import CosmosOrderRepository
from shared.services.import_events import parse_blob_created
from shared.services.import_pipeline import FileOutcome, ImportPipeline, is_import_id
from shared.services.import_reconciliation import ImportReconciler, Reason
from shared.services.orders import OrderService
from tests.fixtures.eventgrid import EventGridSink
from tests.fixtures.fakes import ListQueue
from tests.fixtures.imports import direct_import_files, upload_direct

pytestmark = pytest.mark.integration

HEADER = "external_id,customer_id,sku,quantity,unit_price,currency\n"
LATER = timedelta(minutes=10)  # past the default grace period


def test_an_upload_whose_event_never_arrives_is_imported_by_the_next_timer_run(
    app_settings: dict[str, str], events: EventGridSink, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in events.app_settings().items():
        monkeypatch.setenv(name, value)
    runs = CosmosImportRunRepository()
    event_queue, chunks = ListQueue(), ListQueue()
    service = OrderService(CosmosOrderRepository(), EventGridPublisher())
    pipeline = ImportPipeline(
        runs, direct_import_files(), AzureReportBlob(), chunks, lambda: service
    )
    reconciler = ImportReconciler(direct_import_files(), runs, event_queue, is_import_id)
    customer = f"c-{uuid.uuid4().hex[:10]}"
    name = f"lost-event-{uuid.uuid4().hex[:8]}.csv"
    rows = f"E1,{customer},SKU-1,2,3.00,EUR\nE2,{customer},=x,1,1,EUR\n"
    upload_direct(name, (HEADER + rows).encode())

    now = datetime.now(UTC)
    assert name not in reconciler.reconcile(now)  # within the grace period: the event may come
    started = reconciler.reconcile(now + LATER)
    assert started[name] is Reason.NO_RUN
    (message,) = [m for m in event_queue.messages if f"/blobs/{name}" in m]
    event = parse_blob_created(message)
    assert event is not None
    assert event.name == name

    # The queue trigger's file pass, then the chunks: the import completes, exactly.
    assert pipeline.import_event(message) is FileOutcome.SENT
    for chunk in chunks.messages:
        pipeline.process_chunk(chunk)
    stored = runs.read(name)
    assert stored is not None
    document = stored.document
    assert document["state"] == "completed"
    assert (document["rowsRead"], document["accepted"], document["rejected"]) == (2, 1, 1)
    orders = list(
        get_container(ORDERS_CONTAINER).query_items("SELECT c.id FROM c", partition_key=customer)
    )
    assert len(orders) == 1
    # Imported: the next runs leave it alone.
    assert name not in reconciler.reconcile(now + LATER)

    # A new upload under the same name whose event is lost too: a newer version.
    upload_direct(name, f"{HEADER}E3,{customer},SKU-1,1,3.00,EUR\n".encode())
    assert reconciler.reconcile(datetime.now(UTC) + LATER)[name] is Reason.NEWER_VERSION


def test_a_file_pass_that_died_is_restarted_and_a_running_one_is_not(
    app_settings: dict[str, str],
) -> None:
    runs = CosmosImportRunRepository()
    queue = ListQueue()
    reconciler = ImportReconciler(direct_import_files(), runs, queue, is_import_id)
    name = f"died-{uuid.uuid4().hex[:8]}.csv"
    upload_direct(name, f"{HEADER}E1,c1,SKU-1,1,1.00,EUR\n".encode())
    (listed,) = [b for b in direct_import_files().list_files() if b.name == name]
    started_at = datetime.now(UTC)
    runs.start(
        {
            "id": name,
            "importId": name,
            "state": "processing",
            "runId": "r-1",
            "blobEtag": listed.etag,
            "chunksTotal": None,
            "updatedAt": started_at.isoformat().replace("+00:00", "Z"),
        }
    )
    assert name not in reconciler.reconcile(started_at + LATER)  # may still be running
    started = reconciler.reconcile(started_at + timedelta(minutes=20))
    assert started[name] is Reason.STUCK
    message = next(m for m in queue.messages if f"/blobs/{name}" in m)
    assert json.loads(message)["data"]["eTag"] == listed.etag
    # What the timer writes goes through the queue's base64 encoding like Event Grid's.
    assert parse_blob_created(base64.b64decode(base64.b64encode(message.encode())))
