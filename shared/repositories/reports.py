"""Report blobs in the ``reports`` container: create-once, never overwritten."""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from shared.names import REPORTS_BLOB_CONTAINER

if TYPE_CHECKING:
    from azure.storage.blob import ContainerClient


class ReportStore(Protocol):
    def exists(self, name: str) -> bool: ...

    def create(self, name: str, data: bytes, content_type: str) -> bool:
        """Store ``data`` under ``name`` unless a blob is there already; True if written."""
        ...

    def read(self, name: str) -> bytes: ...


class BlobReportStore:
    def __init__(self, container: ContainerClient | None = None) -> None:
        if container is None:
            from shared.clients import get_blob_service

            container = get_blob_service().get_container_client(REPORTS_BLOB_CONTAINER)
        self._container = container

    def exists(self, name: str) -> bool:
        return bool(self._container.get_blob_client(name).exists())

    def create(self, name: str, data: bytes, content_type: str) -> bool:
        from azure.core.exceptions import ResourceExistsError
        from azure.storage.blob import ContentSettings

        try:
            # overwrite=False sends If-None-Match: *; two concurrent writers cannot both win.
            self._container.upload_blob(
                name,
                data,
                overwrite=False,
                content_settings=ContentSettings(content_type=content_type),
            )
        except ResourceExistsError:
            return False
        return True

    def read(self, name: str) -> bytes:
        return bytes(self._container.download_blob(name).readall())
