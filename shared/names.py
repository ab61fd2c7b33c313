"""Names of the Azure resources the app uses. The local stack and Bicep create exactly these."""

from typing import Final

COSMOS_DATABASE_DEFAULT: Final = "orderflow"

# Cosmos DB containers and their partition key paths.
ORDERS_CONTAINER: Final = "orders"
INVENTORY_CONTAINER: Final = "inventory"
IDEMPOTENCY_CONTAINER: Final = "idempotency"
IMPORTS_CONTAINER: Final = "imports"
COSMOS_CONTAINERS: Final[dict[str, str]] = {
    ORDERS_CONTAINER: "/customerId",
    INVENTORY_CONTAINER: "/sku",
    IDEMPOTENCY_CONTAINER: "/key",
    IMPORTS_CONTAINER: "/importId",
}

# Blob containers.
IMPORTS_BLOB_CONTAINER: Final = "order-imports"
REJECTED_ROWS_BLOB_CONTAINER: Final = "order-imports-rejected"
REPORTS_BLOB_CONTAINER: Final = "reports"
BLOB_CONTAINERS: Final = (
    IMPORTS_BLOB_CONTAINER,
    REJECTED_ROWS_BLOB_CONTAINER,
    REPORTS_BLOB_CONTAINER,
)

# Storage queues (the host creates ``<queue>-poison`` on demand; the local stack creates it too).
IMPORT_CHUNKS_QUEUE: Final = "order-import-chunks"
IMPORT_CHUNKS_POISON_QUEUE: Final = f"{IMPORT_CHUNKS_QUEUE}-poison"
# Microsoft.Storage.BlobCreated events of order-imports, written by Event Grid (StorageQueue
# destination; locally by localdev/eventgrid): only a reference to the blob travels.
IMPORT_EVENTS_QUEUE: Final = "order-import-events"
IMPORT_EVENTS_POISON_QUEUE: Final = f"{IMPORT_EVENTS_QUEUE}-poison"
STORAGE_QUEUES: Final = (
    IMPORT_CHUNKS_QUEUE,
    IMPORT_CHUNKS_POISON_QUEUE,
    IMPORT_EVENTS_QUEUE,
    IMPORT_EVENTS_POISON_QUEUE,
)

# Service Bus.
FULFILLMENT_QUEUE: Final = "fulfillment"
# Fulfillment messages that can never succeed, kept with their reason (docs/EVENTS.md).
FULFILLMENT_PARKED_QUEUE: Final = "fulfillment-parked"
# Every Service Bus queue the app uses (the local stack creates these).
SERVICE_BUS_QUEUES: Final = (FULFILLMENT_QUEUE, FULFILLMENT_PARKED_QUEUE)

# Key Vault secrets.
PAYMENT_WEBHOOK_SECRET: Final = "payment-webhook-secret"  # noqa: S105 - a name, not a value

# Default time-to-live of idempotency records (the container's default TTL, in seconds).
IDEMPOTENCY_DEFAULT_TTL_SECONDS: Final = 24 * 60 * 60

# Each container's ``defaultTtl``: absent = TTL off; -1 = on, items expire only when they carry
# their own ``ttl`` (inventory: reservation items do, stock items never expire; imports: chunk
# markers do, run items never expire).
COSMOS_CONTAINER_DEFAULT_TTL: Final[dict[str, int]] = {
    IDEMPOTENCY_CONTAINER: IDEMPOTENCY_DEFAULT_TTL_SECONDS,
    INVENTORY_CONTAINER: -1,
    IMPORTS_CONTAINER: -1,
}
