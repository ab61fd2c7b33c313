"""Import run documents in the ``imports`` container (partition key ``/importId``, id = the
import id): the status the API shows plus what keeps the counts exact under redelivery.

Besides the public fields (``state``, ``rowsRead``, ``accepted``, ``rejected``,
``chunksTotal``, ``chunksDone``, ``reportLocation``, ``reason``) a run document holds
``runId`` (the blob version being imported), ``fileRejected`` (rows the blob pass rejected) and
``chunks``: one entry per chunk done, ``{"<n>": [accepted, rejected, [[row, externalId,
reason], ...]]}``. Writers change it only with the ETag they read (optimistic concurrency).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from shared.names import IMPORTS_CONTAINER

if TYPE_CHECKING:
    from azure.cosmos import ContainerProxy

IMPORT = "import"


@dataclass(frozen=True, slots=True)
class StoredRun:
    document: dict[str, Any]
    etag: str


class ImportRunRepository(Protocol):
    def read(self, import_id: str) -> StoredRun | None: ...

    def upsert(self, document: dict[str, Any]) -> StoredRun: ...

    def replace(self, document: dict[str, Any], etag: str) -> StoredRun:
        """Raises PreconditionFailedError when the document changed since ``etag``."""
        ...


class CosmosImportRunRepository:
    def __init__(self, container: ContainerProxy | None = None) -> None:
        if container is None:
            from shared.clients import get_container

            container = get_container(IMPORTS_CONTAINER)
        self._container = container

    @staticmethod
    def _stored(document: dict[str, Any]) -> StoredRun:
        clean = {k: v for k, v in document.items() if not k.startswith("_")}
        return StoredRun(clean, str(document["_etag"]))

    def read(self, import_id: str) -> StoredRun | None:
        from shared.errors import NotFoundError
        from shared.repositories.cosmos_errors import cosmos_errors

        try:
            with cosmos_errors(IMPORT, import_id):
                document = self._container.read_item(import_id, partition_key=import_id)
        except NotFoundError:
            return None
        return self._stored(document)

    def upsert(self, document: dict[str, Any]) -> StoredRun:
        from shared.repositories.cosmos_errors import cosmos_errors

        with cosmos_errors(IMPORT, document["id"]):
            return self._stored(self._container.upsert_item(document))

    def replace(self, document: dict[str, Any], etag: str) -> StoredRun:
        from azure.core import MatchConditions

        from shared.repositories.cosmos_errors import cosmos_errors

        with cosmos_errors(IMPORT, document["id"]):
            saved = self._container.replace_item(
                document["id"], document, etag=etag, match_condition=MatchConditions.IfNotModified
            )
        return self._stored(saved)
