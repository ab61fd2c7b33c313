"""BlobCreated events as the import function gets them: the parser refuses what is not an
event, ignores events of other types and containers, and reads both Azure's documented event
and what the local Event Grid stand-in (localdev.eventgrid.storage_events) publishes."""

from __future__ import annotations

import json
from types import SimpleNamespace
from typing import Any

import pytest

from localdev.eventgrid.storage_events import blob_created_event
from shared.names import IMPORTS_BLOB_CONTAINER
from shared.services.import_events import (
    BLOB_CREATED,
    MAX_EVENT_CHARS,
    InvalidEventError,
    parse_blob_created,
    same_etag,
)

ENDPOINT = "http://127.0.0.1:10000/devstoreaccount1"


def event_for(
    name: str, *, container: str = IMPORTS_BLOB_CONTAINER, size: int = 12
) -> dict[str, Any]:
    blob = SimpleNamespace(
        name=name,
        etag='"0x8DE1"',
        size=size,
        last_modified=None,
        content_settings=SimpleNamespace(content_type="text/csv"),
    )
    return blob_created_event(blob, container, ENDPOINT, 7)


def test_the_local_event_has_the_event_grid_schema() -> None:
    event = event_for("partner 1.csv")
    assert set(event) == {
        "topic",
        "subject",
        "eventType",
        "id",
        "data",
        "dataVersion",
        "metadataVersion",
        "eventTime",
    }
    assert event["topic"].endswith("/providers/Microsoft.Storage/storageAccounts/devstoreaccount1")
    assert event["subject"] == "/blobServices/default/containers/order-imports/blobs/partner 1.csv"
    assert event["eventType"] == BLOB_CREATED
    assert event["metadataVersion"] == "1"
    assert event["eventTime"].endswith("Z")
    data = event["data"]
    assert data["eTag"] == '"0x8DE1"'
    assert data["contentLength"] == 12
    assert data["blobType"] == "BlockBlob"
    assert data["contentType"] == "text/csv"
    assert data["url"] == f"{ENDPOINT}/order-imports/partner%201.csv"
    assert len(data["sequencer"]) == 32


def test_the_import_function_reads_what_the_local_source_writes() -> None:
    parsed = parse_blob_created(json.dumps(event_for("p.csv", size=99)))
    assert parsed is not None
    assert (parsed.name, parsed.size) == ("p.csv", 99)
    assert parsed.etag is not None
    assert same_etag(parsed.etag, "0x8DE1")
    assert parsed.url.endswith("/order-imports/p.csv")


def test_an_azure_sample_event_is_read() -> None:
    """The documented shape (Azure's BlobCreated sample, eTag without quotes)."""
    event = {
        "topic": "/subscriptions/s/resourceGroups/g/providers/Microsoft.Storage/storageAccounts/st",
        "subject": "/blobServices/default/containers/order-imports/blobs/partner.jsonl",
        "eventType": "Microsoft.Storage.BlobCreated",
        "eventTime": "2017-06-26T18:41:00.9584103Z",
        "id": "831e1650-001e-001b-66ab-eeb76e069631",
        "data": {
            "api": "PutBlockList",
            "eTag": "0x8D4BCC2E4835CD0",
            "contentType": "application/octet-stream",
            "contentLength": 524288,
            "blobType": "BlockBlob",
            "url": "https://st.blob.core.windows.net/order-imports/partner.jsonl",
            "sequencer": "00000000000004420000000000028963",
        },
        "dataVersion": "",
        "metadataVersion": "1",
    }
    parsed = parse_blob_created(json.dumps(event))
    assert parsed is not None
    assert parsed.name == "partner.jsonl"
    assert parsed.etag is not None
    assert same_etag(parsed.etag, '"0x8D4BCC2E4835CD0"')
    assert parsed.size == 524288


@pytest.mark.parametrize(
    "event",
    [
        {**event_for("x.csv"), "eventType": "Microsoft.Storage.BlobDeleted"},
        event_for("x.csv", container="order-imports-rejected"),
        event_for("x.csv", container="order-importsx"),
        {**event_for("x.csv"), "subject": "/blobServices/default/containers/reports/blobs/x"},
    ],
    ids=["deleted", "other-container", "prefix-lookalike", "reports"],
)
def test_events_that_are_not_imports_are_ignored(event: dict[str, Any]) -> None:
    assert parse_blob_created(json.dumps(event)) is None


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"not json",
        b"\xff\xfe",
        b"[]",
        json.dumps([event_for("x.csv")]).encode(),  # an array: the webhook shape, not the queue's
        b'"a string"',
        json.dumps({"subject": "/blobServices/default/containers/order-imports/blobs/x"}).encode(),
        json.dumps({**event_for("x.csv"), "data": "no"}).encode(),
        json.dumps({**event_for("x.csv"), "subject": 5}).encode(),
        b"[" * 100_000,
        b" " * (MAX_EVENT_CHARS + 1),
    ],
    ids=[
        "empty",
        "text",
        "binary",
        "empty-array",
        "array",
        "string",
        "no-type",
        "data-not-object",
        "subject-not-text",
        "deep",
        "huge",
    ],
)
def test_what_is_not_an_event_is_refused(body: bytes) -> None:
    with pytest.raises(InvalidEventError):
        parse_blob_created(body)


def test_hostile_data_values_are_not_trusted() -> None:
    event = event_for("x.csv")
    event["data"]["contentLength"] = True
    event["data"]["eTag"] = ["0x1"]
    parsed = parse_blob_created(json.dumps(event))
    assert parsed is not None
    assert (parsed.size, parsed.etag) == (None, None)  # the pass then reads the blob's own
