"""Data processing (pattern 3): partner files in blob storage become orders.

``import_order_file`` (blob trigger, Event Grid source in Azure) reads the uploaded file as a
stream with the blob SDK, validates every row, writes the rejected-rows report and sends valid
orders in chunks to the storage queue; ``create_imported_orders`` (queue trigger) creates each
chunk's orders idempotently and records the chunk in the import status. The handlers only
call :mod:`shared.services.import_pipeline`; see docs/IMPORTS.md.
"""

from __future__ import annotations

import azure.functions as func

from blueprints._invocation import invocation
from shared.names import IMPORT_CHUNKS_QUEUE, IMPORTS_BLOB_CONTAINER

bp = func.Blueprint()

# The binding connection (shared.config.STORAGE_CONNECTION; a literal keeps pydantic settings
# out of indexing): a connection string locally, ImportsStorage__blobServiceUri /
# __queueServiceUri with the app's identity in Azure.
CONNECTION = "ImportsStorage"


def _import_id(blob_name: str | None) -> str:
    """The blob's name within the container (the trigger gives ``<container>/<name>``)."""
    name = blob_name or ""
    prefix = f"{IMPORTS_BLOB_CONTAINER}/"
    return name[len(prefix) :] if name.startswith(prefix) else name


@bp.function_name("import_order_file")
@bp.blob_trigger(
    arg_name="blob",
    path=f"{IMPORTS_BLOB_CONTAINER}/{{name}}",
    connection=CONNECTION,
    source=func.BlobSource.EVENT_GRID,
)
def import_order_file(blob: func.InputStream, context: func.Context) -> None:
    """Only the blob's name is used: the content is streamed in ranges by the blob SDK, pinned
    to one version by its ETag, so memory does not grow with the file."""
    from shared.delivery import settled
    from shared.services.providers import import_pipeline

    name = _import_id(blob.name)
    with invocation(context, "blob"), settled("import_order_file", f"import {name}"):
        import_pipeline().import_file(name)


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
