"""The Event Grid stand-in's storage events against real Azurite: every new blob version in
order-imports becomes one Microsoft.Storage.BlobCreated event in the queue order-import-events,
written the way Event Grid's StorageQueue destination writes it (base64 of one event object);
other containers produce nothing, and a restart of the stand-in announces nothing twice. The
stack is this module's own: the session's running app would consume the events."""

from __future__ import annotations

import base64
import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from azure.storage.blob import BlobServiceClient
from azure.storage.queue import QueueClient

from localdev.stack import EVENTGRID, LocalStack
from shared.names import IMPORT_EVENTS_QUEUE, IMPORTS_BLOB_CONTAINER, REPORTS_BLOB_CONTAINER
from shared.services.import_events import parse_blob_created, same_etag
from tests.fixtures.stack import start_stack_on_free_ports

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

WAIT_SECONDS = 15.0


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    started = start_stack_on_free_ports(tmp_path_factory.mktemp("storage-events"))
    try:
        started.provision()
        yield started
    finally:
        started.stop()


def take_events(stack: LocalStack, count: int, *, settle: float = 0.0) -> list[dict[str, Any]]:
    """Receive (and delete) ``count`` events, then wait ``settle`` seconds for any extra one."""
    queue = QueueClient.from_connection_string(stack.storage_connection_string, IMPORT_EVENTS_QUEUE)
    found: list[dict[str, Any]] = []
    deadline = time.monotonic() + WAIT_SECONDS
    with queue:
        while time.monotonic() < deadline and len(found) < count:
            for message in queue.receive_messages(max_messages=32, visibility_timeout=30):
                found.append(json.loads(base64.b64decode(message.content, validate=True)))
                queue.delete_message(message)
            time.sleep(0.1)
        if settle:
            time.sleep(settle)
            for message in queue.receive_messages(max_messages=32):
                found.append(json.loads(base64.b64decode(message.content)))
                queue.delete_message(message)
    return found


def upload(stack: LocalStack, container: str, name: str, data: bytes) -> str:
    with BlobServiceClient.from_connection_string(stack.storage_connection_string) as blobs:
        result = blobs.get_blob_client(container, name).upload_blob(data, overwrite=True)
        return str(result["etag"])


def test_each_new_version_is_one_blob_created_event(stack: LocalStack) -> None:
    name = f"partner-{uuid.uuid4().hex[:8]}.csv"
    first = upload(stack, IMPORTS_BLOB_CONTAINER, name, b"a,b\n")
    (event,) = take_events(stack, 1)
    assert event["subject"] == f"/blobServices/default/containers/order-imports/blobs/{name}"
    assert event["eventType"] == "Microsoft.Storage.BlobCreated"
    assert same_etag(event["data"]["eTag"], first)
    assert event["data"]["contentLength"] == 4
    assert event["data"]["blobType"] == "BlockBlob"
    assert event["data"]["url"].endswith(f"/{IMPORTS_BLOB_CONTAINER}/{name}")
    parsed = parse_blob_created(json.dumps(event))
    assert parsed is not None
    assert parsed.name == name

    upload(stack, REPORTS_BLOB_CONTAINER, f"{name}.json", b"{}")  # not subscribed: no event
    second = upload(stack, IMPORTS_BLOB_CONTAINER, name, b"a,b\nc,d\n")  # a re-upload
    events = take_events(stack, 1, settle=1.5)
    assert [same_etag(e["data"]["eTag"], second) for e in events] == [True]


def test_a_restarted_source_announces_nothing_twice(stack: LocalStack) -> None:
    name = f"restart-{uuid.uuid4().hex[:8]}.csv"
    upload(stack, IMPORTS_BLOB_CONTAINER, name, b"x\n")
    assert len(take_events(stack, 1)) == 1
    stack.stop_service(EVENTGRID)
    later = f"while-down-{uuid.uuid4().hex[:8]}.csv"
    upload(stack, IMPORTS_BLOB_CONTAINER, later, b"y\n")  # written while the source is down
    stack.start_service(EVENTGRID)
    events = take_events(stack, 1, settle=1.5)
    assert [e["subject"].rsplit("/", 1)[1] for e in events] == [later]
