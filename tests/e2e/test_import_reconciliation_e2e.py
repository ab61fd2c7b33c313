"""An upload whose BlobCreated event never arrives is imported within one timer period, over
the running local host: the stack's Event Grid stand-in is stopped (so no event is written),
the reconciliation timer runs every 2 seconds with a 1-second grace period, and the import
completes with exact counts. The stack and host are this module's own."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from azure.storage.blob import BlobServiceClient
from azure.storage.queue import QueueClient

from localdev.stack import EVENTGRID, LocalStack
from shared.names import IMPORT_EVENTS_QUEUE, IMPORTS_BLOB_CONTAINER
from tests.fixtures.app import REPO_ROOT, SAMPLE_SETTINGS, app_environment
from tests.fixtures.host import HostProcess
from tests.fixtures.stack import start_stack_on_free_ports

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]

PERIOD_SECONDS = 2
GRACE_SECONDS = 1


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LocalStack, HostProcess]]:
    workdir: Path = tmp_path_factory.mktemp("import-reconciliation")
    stack = start_stack_on_free_ports(workdir)
    env = {
        **app_environment(stack, None),
        "IMPORT_RECONCILE_SCHEDULE": f"*/{PERIOD_SECONDS} * * * * *",
        "IMPORT_RECONCILE_GRACE_SECONDS": str(GRACE_SECONDS),
    }
    host = HostProcess(
        REPO_ROOT, workdir / "host.log", env=env, args=["--settings", str(SAMPLE_SETTINGS)]
    )
    try:
        stack.provision()
        stack.stop_service(EVENTGRID)  # Event Grid "gives up": no upload event is written
        host.start()
        yield stack, host
    finally:
        host.stop()
        stack.stop()


def test_an_upload_whose_event_never_arrives_is_imported_within_one_timer_period(
    app: tuple[LocalStack, HostProcess],
) -> None:
    stack, host = app
    name = f"no-event-{uuid.uuid4().hex[:8]}.csv"
    customer = f"rec-{uuid.uuid4().hex[:8]}"
    content = (
        "external_id,customer_id,sku,quantity,unit_price,currency\r\n"
        f"E1,{customer},SKU-1,1,2.00,EUR\r\n"
        f"E2,{customer},SKU-2,0,2.00,EUR\r\n"
    )
    with BlobServiceClient.from_connection_string(stack.storage_connection_string) as blobs:
        blobs.get_blob_client(IMPORTS_BLOB_CONTAINER, name).upload_blob(content.encode())
    uploaded = time.monotonic()
    with QueueClient.from_connection_string(
        stack.storage_connection_string, IMPORT_EVENTS_QUEUE
    ) as queue:
        assert queue.get_queue_properties().approximate_message_count == 0  # no event came

    # The grace period, one timer period, the host's queue polling and the import itself.
    deadline = uploaded + GRACE_SECONDS + PERIOD_SECONDS + 20
    status: dict[str, object] = {}
    while time.monotonic() < deadline:
        response = host.request("GET", f"/api/v1/imports/{name}")
        if response.status == 200:
            status = response.json()
            if status["state"] in {"completed", "failed"}:
                break
        time.sleep(0.2)
    assert status.get("state") == "completed", f"{status}\n{host.logs()[-3000:]}"
    assert (status["rowsRead"], status["accepted"], status["rejected"]) == (2, 1, 1)
    assert "started by the reconciliation (no_run)" in host.logs()
