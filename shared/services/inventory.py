"""Stock levels per SKU (set by an admin, read by clients; reserved by fulfillment)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from shared.models import StockLevelOut
from shared.repositories.inventory import InventoryRepository
from shared.services.orders import timestamp, utc_now


class InventoryService:
    def __init__(
        self, inventory: InventoryRepository, *, clock: Callable[[], datetime] = utc_now
    ) -> None:
        self._inventory = inventory
        self._clock = clock

    def get(self, sku: str) -> StockLevelOut:
        level = self._inventory.get(sku)
        return StockLevelOut(sku=level.sku, available=level.available)

    def set_available(self, sku: str, available: int) -> StockLevelOut:
        level = self._inventory.set_available(sku, available, timestamp(self._clock()))
        return StockLevelOut(sku=level.sku, available=level.available)
