"""Stock per SKU in the ``inventory`` container (partition key ``/sku``, id = sku)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from shared.names import INVENTORY_CONTAINER

if TYPE_CHECKING:
    from azure.cosmos import ContainerProxy

INVENTORY = "inventory item"


@dataclass(frozen=True, slots=True)
class StockLevel:
    sku: str
    available: int
    etag: str


class InventoryRepository(Protocol):
    def get(self, sku: str) -> StockLevel: ...

    def set_available(self, sku: str, available: int, updated_at: str) -> StockLevel: ...


class CosmosInventoryRepository:
    def __init__(self, container: ContainerProxy | None = None) -> None:
        if container is None:
            from shared.clients import get_container

            container = get_container(INVENTORY_CONTAINER)
        self._container = container

    @staticmethod
    def _level(document: dict[str, Any]) -> StockLevel:
        return StockLevel(str(document["sku"]), int(document["available"]), str(document["_etag"]))

    def get(self, sku: str) -> StockLevel:
        from shared.repositories.cosmos_errors import cosmos_errors

        with cosmos_errors(INVENTORY, sku):
            return self._level(self._container.read_item(sku, partition_key=sku))

    def set_available(self, sku: str, available: int, updated_at: str) -> StockLevel:
        """Set the stock level, keeping any other fields (reservations) of the document.

        A patch (1 request) when the item exists; a create when it does not; a patch again if a
        concurrent PUT created it first.
        """
        from shared.errors import AlreadyExistsError, NotFoundError
        from shared.repositories.cosmos_errors import cosmos_errors

        operations: list[dict[str, Any]] = [
            {"op": "set", "path": "/available", "value": available},
            {"op": "set", "path": "/updatedAt", "value": updated_at},
        ]
        for _ in range(2):
            try:
                with cosmos_errors(INVENTORY, sku):
                    return self._level(
                        self._container.patch_item(
                            sku, partition_key=sku, patch_operations=operations
                        )
                    )
            except NotFoundError:
                pass
            try:
                with cosmos_errors(INVENTORY, sku):
                    document = {
                        "id": sku,
                        "sku": sku,
                        "available": available,
                        "updatedAt": updated_at,
                    }
                    return self._level(self._container.create_item(document))
            except AlreadyExistsError:
                continue
        raise AssertionError("unreachable: create or patch succeeds within two rounds")
