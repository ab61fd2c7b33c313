"""Blob trigger delivery: new and changed blobs are delivered once per version, like the
Functions host's blob trigger.

- The ``path`` (``container/pattern``, ``%SETTING%`` resolved; ``{name}`` style parameters
  match the rest of the name) is polled every second (``LOCALDEV_BLOB_POLL_SECONDS``) by
  listing the container with ETags. In Azure an ``EventGrid`` source delivers the same blobs
  from events; locally both sources poll, which delivers the same set.
- Blob receipts, as the host keeps them: after a successful invocation the host writes
  ``blobreceipts/<hostId>/Host.Functions.<name>/<etag>/<container>/<blob>`` in the
  ``azure-webjobs-hosts`` container of ``AzureWebJobsStorage``; a version with a receipt is
  never delivered again, also after a restart. Overwriting a blob makes a new version (ETag).
- The function gets an ``azure.functions.blob.InputStream`` (name ``<container>/<blob>``, uri,
  length, properties, metadata) with the content, as the worker does.
- A failed invocation is retried on the next polls, up to ``maxDequeueCount`` of
  ``extensions.queues`` (default 5, the host's rule); then a message goes to the
  ``webjobs-blobtrigger-poison`` queue and the version gets its receipt.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Final

from localdev.host.invoker import FunctionInvocationError, InvocationRequest, RetryState
from localdev.host.loader import IndexedFunction
from localdev.host.sources import DeliverySource, HostServices, register_delivery_source
from localdev.host.storage import (
    DEFAULT_CONNECTION,
    BindingConfigurationError,
    connection_string,
    resolve_setting_expressions,
)

BLOB_TRIGGER: Final = "blobTrigger"
HOSTS_CONTAINER: Final = "azure-webjobs-hosts"
POISON_QUEUE: Final = "webjobs-blobtrigger-poison"
POLL_SETTING: Final = "LOCALDEV_BLOB_POLL_SECONDS"
DEFAULT_POLL_SECONDS: Final = 1.0
_PARAMETER = re.compile(r"\{([^{}]+)\}")


def path_pattern(pattern: str) -> re.Pattern[str]:
    """A blob path pattern (after the container) as a regex: ``{x}`` matches one or more
    characters (the last one greedily, slashes included), the rest literally."""
    parts: list[str] = []
    position = 0
    for match in _PARAMETER.finditer(pattern):
        parts.append(re.escape(pattern[position : match.start()]))
        parts.append("(.+?)")
        position = match.end()
    parts.append(re.escape(pattern[position:]))
    regex = "".join(parts)
    if regex.endswith("(.+?)"):
        regex = regex[: -len("(.+?)")] + "(.+)"
    return re.compile(f"^{regex}$")


def split_path(path: str) -> tuple[str, str]:
    container, _, pattern = path.partition("/")
    if not container:
        raise BindingConfigurationError(f"blob path {path!r} has no container")
    return container.lower(), pattern or "{name}"


@dataclass
class _Watcher:
    function: IndexedFunction
    container: str
    pattern: re.Pattern[str]
    blobs: Any  # BlobServiceClient of the binding's connection
    receipts: Any  # ContainerClient of azure-webjobs-hosts (AzureWebJobsStorage)
    poison: Any  # QueueClient of webjobs-blobtrigger-poison
    delivered: set[tuple[str, str]] = field(default_factory=set)
    failures: dict[tuple[str, str], int] = field(default_factory=dict)


@register_delivery_source
class BlobTriggerSource(DeliverySource):
    trigger_type: ClassVar[str] = BLOB_TRIGGER

    def __init__(self, services: HostServices, functions: Sequence[IndexedFunction]) -> None:
        super().__init__(services, functions)
        queues = services.host_json.extension("queues")
        self.max_attempts = max(1, int(queues.get("maxDequeueCount", 5)))
        raw = services.environ.get(POLL_SETTING)
        self.poll_seconds = float(raw) if raw else DEFAULT_POLL_SECONDS
        self.host_id = f"localdev-{services.app_dir.name}".lower()[:32]
        self._watchers: list[_Watcher] = []
        self._tasks: list[asyncio.Task[None]] = []
        self._stopping = asyncio.Event()

    def describe(self, function: IndexedFunction) -> str:
        return f"blobTrigger ({function.trigger.get('path')})"

    def _watcher(self, function: IndexedFunction) -> _Watcher:
        from azure.core.exceptions import ResourceExistsError
        from azure.storage.blob import BlobServiceClient
        from azure.storage.queue import QueueClient, TextBase64EncodePolicy

        environ = self.services.environ
        trigger = function.trigger
        container, pattern = split_path(resolve_setting_expressions(str(trigger["path"]), environ))
        blobs = BlobServiceClient.from_connection_string(
            connection_string(trigger.get("connection"), environ)
        )
        host_storage = connection_string(DEFAULT_CONNECTION, environ)
        receipts = BlobServiceClient.from_connection_string(host_storage).get_container_client(
            HOSTS_CONTAINER
        )
        with contextlib.suppress(ResourceExistsError):
            receipts.create_container()
        poison = QueueClient.from_connection_string(
            host_storage, POISON_QUEUE, message_encode_policy=TextBase64EncodePolicy()
        )
        return _Watcher(function, container, path_pattern(pattern), blobs, receipts, poison)

    async def start(self) -> None:
        for function in self.functions:
            if function.disabled:
                continue
            try:
                watcher = await asyncio.to_thread(self._watcher, function)
            except BindingConfigurationError as error:
                self.services.logger.error("Function '%s' cannot listen: %s", function.name, error)
                continue
            self._watchers.append(watcher)
            self._tasks.append(asyncio.create_task(self._poll(watcher)))

    async def stop(self) -> None:
        self._stopping.set()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        for watcher in self._watchers:
            watcher.blobs.close()
            watcher.receipts.close()
            watcher.poison.close()

    async def _poll(self, watcher: _Watcher) -> None:
        while not self._stopping.is_set():
            try:
                pending = await asyncio.to_thread(self._pending, watcher)
            except Exception:
                self.services.logger.exception("Listing container '%s' failed", watcher.container)
                pending = []
            for blob in pending:
                if self._stopping.is_set():
                    break
                try:
                    await self._deliver(watcher, blob)
                except Exception:  # storage unreachable: no receipt, so the next poll retries
                    self.services.logger.exception("Delivering blob '%s' failed", blob.name)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), timeout=self.poll_seconds)

    def receipt_name(self, watcher: _Watcher, blob_name: str, etag: str) -> str:
        return (
            f"blobreceipts/{self.host_id}/Host.Functions.{watcher.function.name}/"
            f"{etag.strip('"')}/{watcher.container}/{blob_name}"
        )

    def _pending(self, watcher: _Watcher) -> list[Any]:
        from azure.core.exceptions import ResourceNotFoundError

        container = watcher.blobs.get_container_client(watcher.container)
        try:
            listed = list(container.list_blobs(include=["metadata"]))
        except ResourceNotFoundError:
            return []
        pending = []
        for blob in listed:
            key = (blob.name, str(blob.etag))
            if key in watcher.delivered or not watcher.pattern.match(blob.name):
                continue
            receipt = watcher.receipts.get_blob_client(
                self.receipt_name(watcher, blob.name, str(blob.etag))
            )
            if receipt.exists():
                watcher.delivered.add(key)
                continue
            pending.append(blob)
        return pending

    def _download(self, watcher: _Watcher, blob: Any) -> tuple[bytes, str] | None:
        from azure.core import MatchConditions
        from azure.core.exceptions import ResourceModifiedError, ResourceNotFoundError

        client = watcher.blobs.get_blob_client(watcher.container, blob.name)
        try:
            data = client.download_blob(
                etag=blob.etag, match_condition=MatchConditions.IfNotModified
            ).readall()
        except (ResourceNotFoundError, ResourceModifiedError):
            return None  # deleted or overwritten: the next poll sees the new version
        return bytes(data), str(client.url)

    def _write_receipt(self, watcher: _Watcher, blob: Any) -> None:
        watcher.receipts.get_blob_client(
            self.receipt_name(watcher, blob.name, str(blob.etag))
        ).upload_blob(b"", overwrite=True)
        watcher.delivered.add((blob.name, str(blob.etag)))

    async def _deliver(self, watcher: _Watcher, blob: Any) -> None:
        from azure.functions.blob import InputStream

        function = watcher.function
        key = (blob.name, str(blob.etag))
        downloaded = await asyncio.to_thread(self._download, watcher, blob)
        if downloaded is None:
            return
        data, uri = downloaded
        attempt = watcher.failures.get(key, 0)
        properties = {
            "ContentType": blob.content_settings.content_type,
            "ETag": str(blob.etag),
            "LastModified": blob.last_modified.isoformat() if blob.last_modified else None,
            "Length": blob.size,
            "BlobType": str(blob.blob_type),
        }
        stream = InputStream(
            data=data,
            name=f"{watcher.container}/{blob.name}",
            uri=uri,
            length=len(data),
            blob_properties=properties,
            metadata=dict(blob.metadata or {}),
        )
        request = InvocationRequest(
            inputs={function.trigger_parameter: stream},
            reason=f"New blob detected({blob.blob_type}): {watcher.container}/{blob.name}",
            retry=RetryState(retry_count=attempt, max_retry_count=self.max_attempts - 1),
        )
        try:
            await self.services.invoker.invoke(function, request)
        except FunctionInvocationError:
            attempt += 1
            watcher.failures[key] = attempt
            if attempt < self.max_attempts:
                return
            self.services.logger.warning(
                "Blob '%s/%s' failed %d times; moving it to queue '%s'",
                watcher.container,
                blob.name,
                attempt,
                POISON_QUEUE,
            )
            await asyncio.to_thread(self._poison, watcher, blob)
        watcher.failures.pop(key, None)
        await asyncio.to_thread(self._write_receipt, watcher, blob)

    def _poison(self, watcher: _Watcher, blob: Any) -> None:
        from azure.core.exceptions import ResourceExistsError

        with contextlib.suppress(ResourceExistsError):
            watcher.poison.create_queue()
        watcher.poison.send_message(
            json.dumps(
                {
                    "Type": "BlobTrigger",
                    "FunctionId": f"Host.Functions.{watcher.function.name}",
                    "BlobType": "BlockBlob",
                    "ContainerName": watcher.container,
                    "BlobName": blob.name,
                    "ETag": str(blob.etag),
                }
            )
        )


__all__ = ["BLOB_TRIGGER", "BlobTriggerSource", "path_pattern", "split_path"]
