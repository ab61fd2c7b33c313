"""Import status documents in the ``imports`` container (partition key ``/importId``)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

from shared.names import IMPORTS_CONTAINER

if TYPE_CHECKING:
    from azure.cosmos import ContainerProxy

IMPORT = "import"


class ImportStatusRepository(Protocol):
    def get(self, import_id: str) -> dict[str, Any]: ...


class CosmosImportStatusRepository:
    def __init__(self, container: ContainerProxy | None = None) -> None:
        if container is None:
            from shared.clients import get_container

            container = get_container(IMPORTS_CONTAINER)
        self._container = container

    def get(self, import_id: str) -> dict[str, Any]:
        from shared.repositories.cosmos_errors import cosmos_errors

        with cosmos_errors(IMPORT, import_id):
            document: dict[str, Any] = self._container.read_item(import_id, partition_key=import_id)
        return {k: v for k, v in document.items() if not k.startswith("_")}
