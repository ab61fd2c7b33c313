"""Blob and queue access for imports: read an uploaded file in ranges, write the rejected-rows
report as blocks, send chunks to the storage queue. Streams; never holds a whole file."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Protocol
from urllib.parse import quote

from shared.names import IMPORT_CHUNKS_QUEUE, IMPORTS_BLOB_CONTAINER, REJECTED_ROWS_BLOB_CONTAINER

if TYPE_CHECKING:
    from azure.storage.blob import BlobClient

# One ranged GET per 4 MiB: memory per read is one range, however large the file.
READ_RANGE_BYTES = 4 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class BlobVersion:
    size: int
    etag: str


@dataclass(frozen=True, slots=True)
class ListedBlob:
    name: str
    etag: str
    size: int
    last_modified: datetime
    url: str


class VersionChangedError(Exception):
    """The blob was overwritten while it was being read: a newer upload supersedes this run."""


class ImportFiles(Protocol):
    def version(self, name: str) -> BlobVersion | None: ...

    def read(self, name: str, version: BlobVersion, start: int = 0) -> Iterator[bytes]:
        """The blob's bytes from ``start``, in ranges pinned to ``version`` (VersionChangedError
        when it was overwritten)."""
        ...


class ReportBlob(Protocol):
    """The rejected-rows report: an append blob, so the file pass and every chunk can add
    lines concurrently, each append atomic. Also the file pass's resume log (see
    :func:`resume_log_name`), an append blob in the same container."""

    def create(self, name: str, header: bytes) -> None: ...

    def append(self, name: str, data: bytes) -> int:
        """Append ``data`` as one block; the blob's length right after it."""
        ...

    def read_from(self, name: str, offset: int, end: int | None = None) -> Iterator[bytes]:
        """The blob's bytes from ``offset`` (to ``end``, or its current end), in ranges."""
        ...

    def delete(self, name: str) -> None: ...


class ChunkQueue(Protocol):
    def send(self, message: str) -> None: ...


def report_name(import_id: str) -> str:
    return f"{import_id}.csv"


def resume_log_name(run_id: str) -> str:
    """The resume log of a run: what each checkpoint needs beyond the run item (the order keys
    added since the last one, the chunks about to be sent). Never a report's name: import ids
    have no ``/``."""
    return f"resume/{run_id}.jsonl"


def report_location(import_id: str) -> str:
    return f"{REJECTED_ROWS_BLOB_CONTAINER}/{report_name(import_id)}"


class AzureImportFiles:
    """Import files in a blob container (the app's ``order-imports`` unless told another)."""

    def __init__(self, container: str = IMPORTS_BLOB_CONTAINER) -> None:
        self.container = container

    def version(self, name: str) -> BlobVersion | None:
        from azure.core.exceptions import ResourceNotFoundError

        from shared.clients import get_blob_service

        client = get_blob_service().get_blob_client(self.container, name)
        try:
            properties = client.get_blob_properties()
        except ResourceNotFoundError:
            return None
        return BlobVersion(int(properties.size), str(properties.etag))

    def list_files(self) -> Iterator[ListedBlob]:
        """The files at the container's root (name, ETag, size, when written), for the
        reconciliation; one listing page at a time."""
        from shared.clients import get_blob_service

        container = get_blob_service().get_container_client(self.container)
        from azure.storage.blob import BlobProperties

        for blob in container.walk_blobs(delimiter="/"):
            if not isinstance(blob, BlobProperties) or blob.last_modified is None:
                continue  # a virtual folder (BlobPrefix): imports are files at the root
            yield ListedBlob(
                name=str(blob.name),
                etag=str(blob.etag),
                size=int(blob.size or 0),
                last_modified=blob.last_modified,
                url=f"{container.url}/{quote(str(blob.name))}",
            )

    def read(self, name: str, version: BlobVersion, start: int = 0) -> Iterator[bytes]:
        from azure.core import MatchConditions
        from azure.core.exceptions import ResourceModifiedError

        from shared.clients import get_blob_service

        client = get_blob_service().get_blob_client(self.container, name)
        offset = start
        while offset < version.size:
            length = min(READ_RANGE_BYTES, version.size - offset)
            try:
                data = client.download_blob(
                    offset=offset,
                    length=length,
                    etag=version.etag,
                    match_condition=MatchConditions.IfNotModified,
                    max_concurrency=1,
                ).readall()
            except ResourceModifiedError:
                raise VersionChangedError(name) from None
            if not data:
                return
            offset += len(data)
            yield data


class AzureReportBlob:
    def _client(self, name: str) -> BlobClient:
        from shared.clients import get_blob_service

        return get_blob_service().get_blob_client(REJECTED_ROWS_BLOB_CONTAINER, name)

    def create(self, name: str, header: bytes) -> None:
        from azure.storage.blob import ContentSettings

        client = self._client(name)
        client.create_append_blob(
            content_settings=ContentSettings(content_type="text/csv; charset=utf-8")
        )
        if header:
            client.append_block(header, length=len(header))

    def append(self, name: str, data: bytes) -> int:
        result = self._client(name).append_block(data, length=len(data))
        return int(str(result["blob_append_offset"])) + len(data)

    def read_from(self, name: str, offset: int, end: int | None = None) -> Iterator[bytes]:
        from azure.core.exceptions import ResourceNotFoundError

        client = self._client(name)
        if end is None:
            try:
                end = int(client.get_blob_properties().size)
            except ResourceNotFoundError:
                return
        while offset < end:
            length = min(READ_RANGE_BYTES, end - offset)
            data = client.download_blob(offset=offset, length=length, max_concurrency=1).readall()
            if not data:
                return
            offset += len(data)
            yield data

    def delete(self, name: str) -> None:
        from azure.core.exceptions import ResourceNotFoundError

        with contextlib.suppress(ResourceNotFoundError):
            self._client(name).delete_blob()


class AzureChunkQueue:
    """The chunk queue, or (``IMPORT_CHUNKS_POISON_QUEUE``) where a chunk that can never be
    applied is parked, as the host itself parks one after ``maxDequeueCount`` deliveries."""

    def __init__(self, queue_name: str = IMPORT_CHUNKS_QUEUE) -> None:
        self._queue_name = queue_name

    def send(self, message: str) -> None:
        from shared.clients import get_queue

        get_queue(self._queue_name).send_message(message)
