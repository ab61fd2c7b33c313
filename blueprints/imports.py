"""Data processing (pattern 3): partner files in blob storage become orders.

``import_order_file`` (queue trigger on ``order-import-events``, where Event Grid writes the
``Microsoft.Storage.BlobCreated`` events of ``order-imports``) gets only a reference to the
uploaded blob, reads the file as a stream with the blob SDK, validates every row, writes the
rejected-rows report and sends valid orders in chunks to the storage queue;
``create_imported_orders`` (queue trigger) creates each chunk's orders idempotently and records
the chunk in the import status. The handlers only call :mod:`shared.services.import_pipeline`;
see docs/IMPORTS.md.

Not a blob trigger: for one, the host reads the whole blob into memory and copies it to the
worker before the function runs, however large the file.
"""

from __future__ import annotations

import azure.functions as func

from blueprints._invocation import invocation
from shared.names import IMPORT_CHUNKS_QUEUE, IMPORT_EVENTS_QUEUE

bp = func.Blueprint()

# The binding connection (shared.config.STORAGE_CONNECTION; a literal keeps pydantic settings
# out of indexing): a connection string locally, ImportsStorage__blobServiceUri /
# __queueServiceUri with the app's identity in Azure.
CONNECTION = "ImportsStorage"


@bp.function_name("import_order_file")
@bp.queue_trigger(arg_name="message", queue_name=IMPORT_EVENTS_QUEUE, connection=CONNECTION)
def import_order_file(message: func.QueueMessage, context: func.Context) -> None:
    """One BlobCreated event: the file pass streams the blob in ranges pinned to the event's
    ETag. A message that is not an event raises: retried, then parked in the poison queue
    after maxDequeueCount; an app error that declares the import can never succeed parks the
    event there at once (shared.delivery)."""
    from shared.delivery import settled
    from shared.services.providers import import_event_parking, import_pipeline

    body = message.get_body()

    def park(_: Exception) -> None:
        import_event_parking().send(body.decode("utf-8", "replace"))

    with (
        invocation(context, "queue"),
        settled("import_order_file", f"message {message.id}", park=park),
    ):
        import_pipeline().import_event(body)


@bp.function_name("create_imported_orders")
@bp.queue_trigger(arg_name="message", queue_name=IMPORT_CHUNKS_QUEUE, connection=CONNECTION)
def create_imported_orders(message: func.QueueMessage, context: func.Context) -> None:
    """A failure raises: the host retries the message and parks it in the poison queue after
    maxDequeueCount (host.json); every step is idempotent. An app error that declares the chunk
    can never be applied parks it there at once (shared.delivery)."""
    from shared.delivery import settled
    from shared.services.providers import import_chunk_parking, import_pipeline

    body = message.get_body()

    def park(_: Exception) -> None:
        import_chunk_parking().send(body.decode("utf-8", "replace"))

    with (
        invocation(context, "queue"),
        settled("create_imported_orders", f"message {message.id}", park=park),
    ):
        import_pipeline().process_chunk(body)
