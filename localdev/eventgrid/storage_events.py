"""Storage events: Azurite emits none, so the stand-in publishes them to its system topic.

In Azure the storage account's system topic publishes ``Microsoft.Storage.BlobCreated`` when
a blob is written. Locally this source lists the blob containers the system topic's
subscriptions filter on (``subjectBeginsWith`` ``/blobServices/default/containers/<name>/``;
every container when a subscription names none) every :data:`DEFAULT_POLL_SECONDS`, and
publishes one event per new blob version (a new ETag: an upload, or an overwrite under the same
name) to the system topic, whose subscriptions then deliver it like any other event.

The event is what the storage system topic sends (Event Grid schema): ``topic`` the storage
account's resource id, ``subject`` ``/blobServices/default/containers/<c>/blobs/<name>``,
``eventType`` ``Microsoft.Storage.BlobCreated``, ``data`` with ``api`` (``PutBlob``),
``eTag``, ``contentType``, ``contentLength``, ``blobType``, ``url`` and ``sequencer``; only a
reference to the blob travels, never its content.

Versions already published are remembered in a file (``--state-dir``; the stack keeps it in
its work directory), so a restarted stand-in neither repeats them nor misses a blob written
while it was down; without a state directory the blobs present at start count as published.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import urllib.parse
import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

from localdev.eventgrid.subscriptions import Subscription

BLOB_CREATED: Final = "Microsoft.Storage.BlobCreated"
STORAGE_TOPIC_TYPE: Final = "Microsoft.Storage.StorageAccounts"
DEFAULT_POLL_SECONDS: Final = 0.5
STATE_FILE: Final = "storage-events.json"
STORAGE_ACCOUNT_RESOURCE: Final = (
    "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/orderflow-local/"
    "providers/Microsoft.Storage/storageAccounts/devstoreaccount1"
)
_CONTAINER = re.compile(r"^/blobServices/default/containers/([^/]+)/")

Publish = Callable[[str, Sequence[dict[str, Any]]], int]


def watched_containers(subscriptions: Sequence[Subscription]) -> set[str] | None:
    """The containers the subscriptions can match, or None for every container."""
    containers: set[str] = set()
    for subscription in subscriptions:
        match = _CONTAINER.match(subscription.filter.subject_begins_with)
        if match is None:
            return None
        containers.add(
            match.group(1) if subscription.filter.case_sensitive else match.group(1).lower()
        )
    return containers


def blob_created_event(
    blob: Any, container: str, blob_endpoint: str, sequence: int
) -> dict[str, Any]:
    # The URL is percent-encoded, as the storage service writes it; the subject is not.
    url = f"{blob_endpoint.rstrip('/')}/{container}/{urllib.parse.quote(blob.name)}"
    written = (blob.last_modified or datetime.now(UTC)).astimezone(UTC)
    return {
        "topic": STORAGE_ACCOUNT_RESOURCE,
        "subject": f"/blobServices/default/containers/{container}/blobs/{blob.name}",
        "eventType": BLOB_CREATED,
        "id": str(uuid.uuid4()),
        "eventTime": written.isoformat().replace("+00:00", "Z"),
        "data": {
            "api": "PutBlob",
            "clientRequestId": str(uuid.uuid4()),
            "requestId": str(uuid.uuid4()),
            "eTag": str(blob.etag),
            "contentType": blob.content_settings.content_type or "application/octet-stream",
            "contentLength": blob.size,
            "blobType": "BlockBlob",
            "url": url,
            "sequencer": f"{sequence:032x}",
            "storageDiagnostics": {"batchId": str(uuid.uuid4())},
        },
        "dataVersion": "",
        "metadataVersion": "1",
    }


class StorageEventSource:
    """Polls Azurite and publishes BlobCreated events to ``topic`` through ``publish``."""

    def __init__(
        self,
        topic: str,
        subscriptions: Sequence[Subscription],
        *,
        blob_service: Callable[[], Any],
        blob_endpoint: str,
        publish: Publish,
        logger: logging.Logger,
        state_dir: Path | None = None,
        poll_seconds: float = DEFAULT_POLL_SECONDS,
    ) -> None:
        self.topic = topic
        self.containers = watched_containers(subscriptions)
        self.blob_service = blob_service
        self.blob_endpoint = blob_endpoint
        self.publish = publish
        self.logger = logger
        self.state_path = state_dir / STATE_FILE if state_dir else None
        self.poll_seconds = poll_seconds
        self._seen: dict[str, str] = {}  # "<container>/<blob>" -> last published ETag
        self._sequence = 0
        self._stopping = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._load_state()
        # Without a state directory nothing says what was published before: the blobs present
        # at start count as published. With one, a missing file means a new stack.
        self._task = asyncio.create_task(self._poll(baseline=self.state_path is None))

    async def stop(self) -> None:
        self._stopping.set()
        if self._task is not None:
            await asyncio.gather(self._task, return_exceptions=True)

    def _load_state(self) -> None:
        if self.state_path is None or not self.state_path.exists():
            return
        with contextlib.suppress(OSError, ValueError):
            state = json.loads(self.state_path.read_text(encoding="utf-8"))
            self._seen = {str(k): str(v) for k, v in state.get("published", {}).items()}
            self._sequence = int(state.get("sequence", 0))

    def _save_state(self) -> None:
        if self.state_path is None:
            return
        self.state_path.parent.mkdir(parents=True, exist_ok=True)
        temporary = self.state_path.with_suffix(".tmp")
        temporary.write_text(
            json.dumps({"published": self._seen, "sequence": self._sequence}), encoding="utf-8"
        )
        temporary.replace(self.state_path)

    def _list(self) -> list[tuple[str, Any]]:
        from azure.core.exceptions import ResourceNotFoundError

        service = self.blob_service()
        if self.containers is None:
            names = [container.name for container in service.list_containers()]
        else:
            names = sorted(self.containers)
        found: list[tuple[str, Any]] = []
        for name in names:
            try:
                found.extend(
                    (name, blob) for blob in service.get_container_client(name).list_blobs()
                )
            except ResourceNotFoundError:
                continue
        return found

    async def _poll(self, *, baseline: bool) -> None:
        while not self._stopping.is_set():
            try:
                listed = await asyncio.to_thread(self._list)
            except Exception as error:
                self.logger.warning("storage events: listing Azurite failed: %s", error)
                listed = None
            if listed is not None:
                self._publish_new(listed, baseline=baseline)
                baseline = False
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), timeout=self.poll_seconds)

    def _publish_new(self, listed: list[tuple[str, Any]], *, baseline: bool) -> None:
        events: list[dict[str, Any]] = []
        present: dict[str, str] = {}
        for container, blob in listed:
            key = f"{container}/{blob.name}"
            present[key] = str(blob.etag)
            if self._seen.get(key) == present[key] or baseline:
                continue
            self._sequence += 1
            events.append(blob_created_event(blob, container, self.blob_endpoint, self._sequence))
        changed = bool(events) or baseline or present.keys() != self._seen.keys()
        self._seen = present  # deleted blobs are forgotten: a new upload is a new event
        if changed:
            self._save_state()
        if events:
            scheduled = self.publish(self.topic, events)
            self.logger.info(
                "storage events: %d BlobCreated event(s), %d deliveries", len(events), scheduled
            )
