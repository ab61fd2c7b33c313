"""Blob-created events: what starts a file pass. Pure: no I/O, no SDKs.

Event Grid delivers ``Microsoft.Storage.BlobCreated`` events of the ``order-imports``
container to the storage queue ``order-import-events`` (StorageQueue destination, Event Grid
schema): one event a message, the event's JSON object as the message text, base64-encoded as
the queue trigger expects (MicrosoftDocs/azure-docs#102923: Event Grid now writes base64;
locally ``localdev/eventgrid`` writes the same). Only a reference travels: the blob's name
(from ``subject``), its ETag, size and URL; the file pass reads the content itself, in ranges
pinned to that ETag.

A message that is not such an event (not JSON, not an object, no subject) is refused with
:class:`InvalidEventError` (the host retries it and parks it in ``order-import-events-poison``);
an event of another type or container is not an import (:func:`parse_blob_created` gives
None), so a subscription filter widened by mistake costs a log line, not a poison message.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Final

from shared.names import IMPORTS_BLOB_CONTAINER

BLOB_CREATED: Final = "Microsoft.Storage.BlobCreated"
# An event is about 1 KB; anything far larger is not one (queue messages are at most 64 KiB).
MAX_EVENT_CHARS: Final = 64 * 1024


def subject_prefix(container: str = IMPORTS_BLOB_CONTAINER) -> str:
    """The subject every blob event of ``container`` starts with (the subscription's filter)."""
    return f"/blobServices/default/containers/{container}/blobs/"


class InvalidEventError(ValueError):
    """A queue message that is not an Event Grid event (it ends up in the poison queue)."""


@dataclass(frozen=True, slots=True)
class BlobCreated:
    """A new blob version: ``name`` is the blob's name in the container (the import id)."""

    name: str
    etag: str | None
    size: int | None
    url: str
    event_id: str


def _text(value: Any, limit: int = 2048) -> str | None:
    return value if isinstance(value, str) and 0 < len(value) <= limit else None


def parse_blob_created(
    body: str | bytes, container: str = IMPORTS_BLOB_CONTAINER
) -> BlobCreated | None:
    """The blob a ``BlobCreated`` event of ``container`` is about; None for any other event."""
    if len(body) > MAX_EVENT_CHARS:
        raise InvalidEventError(f"the message is longer than {MAX_EVENT_CHARS} characters")
    try:
        event = json.loads(body)
    except (ValueError, RecursionError):
        raise InvalidEventError("the message is not JSON") from None
    if not isinstance(event, dict):
        raise InvalidEventError("the message is not an Event Grid event (a JSON object)")
    subject = _text(event.get("subject"))
    event_type = _text(event.get("eventType"), 256)
    if subject is None or event_type is None:
        raise InvalidEventError("the event has no subject or eventType (Event Grid schema)")
    prefix = subject_prefix(container)
    if event_type != BLOB_CREATED or not subject.startswith(prefix):
        return None
    data = event.get("data")
    if not isinstance(data, dict):
        raise InvalidEventError("the BlobCreated event has no data object")
    size = data.get("contentLength")
    return BlobCreated(
        name=subject[len(prefix) :],
        etag=_text(data.get("eTag"), 256),
        size=size if isinstance(size, int) and not isinstance(size, bool) and size >= 0 else None,
        url=_text(data.get("url")) or "",
        event_id=_text(event.get("id"), 256) or "",
    )


def same_etag(first: str, second: str) -> bool:
    """ETags compared without their quotes (events and SDKs differ in quoting)."""
    return first.strip('"') == second.strip('"')
