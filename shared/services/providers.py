"""Process-wide service instances wired to their Cosmos repositories and the Event Grid
publisher; created on first use, reused, and forgotten by ``reset_services`` (one of the resets
of ``shared.process_state.reset_process_state``).

Each provider imports its service when first called, so a function's first invocation loads
only what that function needs (the first GET of an order does not load the import pipeline).
Threads that ask at once get the one instance: an HTTP route's service may be made on a second
thread while the first token is validated (``blueprints._problems``), and the handler's own call
waits for it instead of making another client."""

from __future__ import annotations

import functools
import importlib
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from shared.process_state import on_reset

if TYPE_CHECKING:
    from shared.publisher import EventPublisher
    from shared.repositories.import_storage import ChunkQueue
    from shared.repositories.orders import OrderRepository
    from shared.services.event_routing import EventRouter
    from shared.services.expiry import OrderExpiryService
    from shared.services.fulfillment import FulfillmentService
    from shared.services.fulfillment_messages import ParkingLot
    from shared.services.import_pipeline import ImportPipeline
    from shared.services.import_reconciliation import ImportReconciler
    from shared.services.imports import ImportStatusService
    from shared.services.inventory import InventoryService
    from shared.services.orders import OrderService
    from shared.services.payments import PaymentService
    from shared.services.reports import DailySalesReportService


class _Provider[T]:
    """``factory()`` made once (under a lock, so concurrent first calls share it), then reused.

    ``loads`` names the modules the factory imports (its service, repositories, SDK):
    :meth:`load` imports them without making anything, so a caller can pay that CPU on one
    thread while another makes the service (whose SDK client mostly waits on the network)."""

    __name__: str

    def __init__(self, factory: Callable[[], T], loads: tuple[str, ...] = ()) -> None:
        functools.update_wrapper(self, factory)
        self.loads = loads
        self._factory = factory
        self._lock = threading.Lock()
        self._instance: T | None = None
        self._generation = 0

    def __call__(self) -> T:
        instance = self._instance
        if instance is not None:
            return instance
        with self._lock:
            instance = self._instance
            if instance is None:
                generation = self._generation
                instance = self._factory()
                if generation == self._generation:  # not forgotten while it was being made
                    self._instance = instance
            return instance

    def load(self) -> None:
        """Import what the factory needs (no network, nothing made)."""
        for module in self.loads:
            importlib.import_module(module)

    def cache_clear(self) -> None:
        self._generation += 1
        self._instance = None


_providers: list[_Provider[Any]] = []


def provider[T](factory: Callable[[], T]) -> Callable[[], T]:
    """A process-wide instance: made by ``factory`` on first use, then reused; forgotten by
    :func:`reset_services`."""
    return _register(_Provider(factory))


def provider_loading[T](*modules: str) -> Callable[[Callable[[], T]], Callable[[], T]]:
    """:func:`provider`, whose :meth:`_Provider.load` imports ``modules`` (an HTTP route's
    service: see ``blueprints._problems._service_beside_first_token``)."""

    def register(factory: Callable[[], T]) -> Callable[[], T]:
        return _register(_Provider(factory, modules))

    return register


def _register[T](made: _Provider[T]) -> _Provider[T]:
    _providers.append(made)
    return made


# What a Cosmos-backed service's factory imports besides its own modules: the SDK and the
# guarded transport of shared.clients (each client imports them when first made).
_COSMOS_CLIENT = ("azure.cosmos", "shared.guarded_transport", "shared.clients")


@provider_loading(
    *_COSMOS_CLIENT, "shared.publisher", "shared.repositories.orders", "shared.services.orders"
)
def order_service() -> OrderService:
    from shared.publisher import EventGridPublisher
    from shared.repositories.orders import CosmosOrderRepository
    from shared.services.orders import OrderService

    return OrderService(CosmosOrderRepository(), EventGridPublisher())


@provider_loading(*_COSMOS_CLIENT, "shared.repositories.inventory", "shared.services.inventory")
def inventory_service() -> InventoryService:
    from shared.repositories.inventory import CosmosInventoryRepository
    from shared.services.inventory import InventoryService

    return InventoryService(CosmosInventoryRepository())


@provider_loading(*_COSMOS_CLIENT, "shared.repositories.imports", "shared.services.imports")
def import_status_service() -> ImportStatusService:
    from shared.repositories.imports import CosmosImportStatusRepository
    from shared.services.imports import ImportStatusService

    return ImportStatusService(CosmosImportStatusRepository())


@provider
def import_pipeline() -> ImportPipeline:
    from shared.repositories.import_runs import CosmosImportRunRepository
    from shared.repositories.import_storage import (
        AzureChunkQueue,
        AzureImportFiles,
        AzureReportBlob,
    )
    from shared.services.import_pipeline import ImportPipeline
    from shared.services.imports import ImportRunMetrics

    return ImportPipeline(
        ImportRunMetrics(CosmosImportRunRepository()),
        AzureImportFiles(),
        AzureReportBlob(),
        AzureChunkQueue(),
        order_service,
    )


@provider
def import_chunk_parking() -> ChunkQueue:
    """Where a chunk that can never be applied is parked: the chunk queue's poison queue."""
    from shared.names import IMPORT_CHUNKS_POISON_QUEUE
    from shared.repositories.import_storage import AzureChunkQueue

    return AzureChunkQueue(IMPORT_CHUNKS_POISON_QUEUE)


@provider
def import_reconciler() -> ImportReconciler:
    from datetime import timedelta

    from shared.config import get_settings
    from shared.names import IMPORT_EVENTS_QUEUE
    from shared.repositories.import_runs import CosmosImportRunRepository
    from shared.repositories.import_storage import AzureChunkQueue, AzureImportFiles
    from shared.services.import_pipeline import is_import_id
    from shared.services.import_reconciliation import ImportReconciler

    settings = get_settings()
    return ImportReconciler(
        AzureImportFiles(),
        CosmosImportRunRepository(),
        AzureChunkQueue(IMPORT_EVENTS_QUEUE),
        is_import_id,
        grace=timedelta(seconds=settings.import_reconcile_grace_seconds),
        stuck_after=timedelta(seconds=settings.import_stuck_seconds),
    )


@provider
def import_event_parking() -> ChunkQueue:
    """Where an upload event that can never be imported is parked: its queue's poison queue."""
    from shared.names import IMPORT_EVENTS_POISON_QUEUE
    from shared.repositories.import_storage import AzureChunkQueue

    return AzureChunkQueue(IMPORT_EVENTS_POISON_QUEUE)


@provider
def payment_service() -> PaymentService:
    from shared.repositories.idempotency import CosmosIdempotencyStore
    from shared.secrets import get_secret_store
    from shared.services.payments import PaymentService

    return PaymentService(order_service(), CosmosIdempotencyStore(), get_secret_store())


@provider
def outbox_relay() -> tuple[OrderRepository, EventPublisher]:
    """The repository and publisher the outbox relay drains with."""
    from shared.publisher import EventGridPublisher
    from shared.repositories.orders import CosmosOrderRepository

    return CosmosOrderRepository(), EventGridPublisher()


@provider
def order_expiry_service() -> OrderExpiryService:
    from datetime import timedelta

    from shared.config import get_settings
    from shared.publisher import EventGridPublisher
    from shared.repositories.order_scans import CosmosOrderScans
    from shared.repositories.orders import CosmosOrderRepository
    from shared.services.expiry import OrderExpiryService
    from shared.services.orders import OrderService

    repository = CosmosOrderRepository()
    publisher = EventGridPublisher()
    return OrderExpiryService(
        OrderService(repository, publisher),
        repository,
        CosmosOrderScans(),
        publisher,
        payment_timeout=timedelta(minutes=get_settings().payment_timeout_minutes),
    )


@provider
def daily_sales_report_service() -> DailySalesReportService:
    from shared.repositories.order_scans import CosmosOrderScans
    from shared.repositories.reports import BlobReportStore
    from shared.services.reports import DailySalesReportService

    return DailySalesReportService(CosmosOrderScans(), BlobReportStore())


@provider
def fulfillment_service() -> FulfillmentService:
    from shared.publisher import EventGridPublisher
    from shared.repositories.orders import CosmosOrderRepository
    from shared.repositories.reservations import CosmosStockReservations
    from shared.services.fulfillment import FulfillmentService
    from shared.services.orders import OrderService

    repository = CosmosOrderRepository()
    publisher = EventGridPublisher()
    return FulfillmentService(
        OrderService(repository, publisher), repository, publisher, CosmosStockReservations()
    )


@provider
def fulfillment_parking() -> ParkingLot:
    from shared.names import FULFILLMENT_PARKED_QUEUE
    from shared.services.fulfillment_messages import ServiceBusParkingLot

    return ServiceBusParkingLot(FULFILLMENT_PARKED_QUEUE)


@provider
def event_router() -> EventRouter:
    from shared.config import get_settings
    from shared.services.event_routing import EventRouter, ServiceBusCommandSender

    return EventRouter(ServiceBusCommandSender(get_settings().fulfillment_queue))


@on_reset
def reset_services() -> None:
    """Forget every service instance (each provider is registered where it is defined)."""
    for cached in _providers:
        cached.cache_clear()
