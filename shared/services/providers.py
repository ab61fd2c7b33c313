"""Process-wide service instances wired to their Cosmos repositories and the Event Grid
publisher; created on first use, reused, and resettable by tests (``reset_services``)."""

from __future__ import annotations

from functools import cache

from shared.publisher import EventPublisher
from shared.repositories.orders import OrderRepository
from shared.services.imports import ImportStatusService
from shared.services.inventory import InventoryService
from shared.services.orders import OrderService
from shared.services.payments import PaymentService


@cache
def order_service() -> OrderService:
    from shared.publisher import EventGridPublisher
    from shared.repositories.orders import CosmosOrderRepository

    return OrderService(CosmosOrderRepository(), EventGridPublisher())


@cache
def inventory_service() -> InventoryService:
    from shared.repositories.inventory import CosmosInventoryRepository

    return InventoryService(CosmosInventoryRepository())


@cache
def import_status_service() -> ImportStatusService:
    from shared.repositories.imports import CosmosImportStatusRepository

    return ImportStatusService(CosmosImportStatusRepository())


@cache
def payment_service() -> PaymentService:
    from shared.repositories.idempotency import CosmosIdempotencyStore
    from shared.secrets import get_secret_store

    return PaymentService(order_service(), CosmosIdempotencyStore(), get_secret_store())


@cache
def outbox_relay() -> tuple[OrderRepository, EventPublisher]:
    """The repository and publisher the outbox relay drains with."""
    from shared.publisher import EventGridPublisher
    from shared.repositories.orders import CosmosOrderRepository

    return CosmosOrderRepository(), EventGridPublisher()


def reset_services() -> None:
    order_service.cache_clear()
    inventory_service.cache_clear()
    import_status_service.cache_clear()
    payment_service.cache_clear()
    outbox_relay.cache_clear()
