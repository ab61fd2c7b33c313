"""Blob trigger delivery: new and changed blobs are delivered once per version, like the
Functions host's blob trigger.

- Source ``LogsAndContainerScan`` (the default): the ``path`` (``container/pattern``,
  ``%SETTING%`` resolved; ``{name}`` style parameters match the rest of the name) is polled
  every second (``LOCALDEV_BLOB_POLL_SECONDS``) by listing the container with ETags.
- Source ``EventGrid``: nothing is polled. The blob extension's webhook,
  ``POST /runtime/webhooks/blobs?functionName=Host.Functions.<name>``, takes Event Grid's
  ``Microsoft.Storage.BlobCreated`` events (locally from the stack's Event Grid stand-in, as
  under ``func start``), puts each matching blob on the host's queue
  ``azure-webjobs-blobtrigger-<hostId>`` in ``AzureWebJobsStorage`` and answers 202 at once;
  the host then takes the blobs from that queue (invisible while they run, so a host that dies
  leaves them for the next one) and delivers them as below. ``SubscriptionValidation`` is
  answered with the validation code.
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
from urllib.parse import parse_qs

from localdev.host.invoker import FunctionInvocationError, InvocationRequest, RetryState
from localdev.host.loader import IndexedFunction
from localdev.host.messages import HostRequest, HostResponse
from localdev.host.queue_trigger import running_visibility
from localdev.host.sources import DeliverySource, HostServices, register_delivery_source
from localdev.host.storage import (
    DEFAULT_CONNECTION,
    BindingConfigurationError,
    connection_string,
    resolve_setting_expressions,
)

BLOB_TRIGGER: Final = "blobTrigger"
WEBHOOK_PATH: Final = "/runtime/webhooks/blobs"
BLOB_CREATED: Final = "Microsoft.Storage.BlobCreated"
HOSTS_CONTAINER: Final = "azure-webjobs-hosts"
POISON_QUEUE: Final = "webjobs-blobtrigger-poison"
POLL_SETTING: Final = "LOCALDEV_BLOB_POLL_SECONDS"
DEFAULT_POLL_SECONDS: Final = 1.0
_PARAMETER = re.compile(r"\{([^{}]+)\}")
_SUBJECT = re.compile(r"^/blobServices/default/containers/([^/]+)/blobs/(.+)$")


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


def _event_grid_source(function: IndexedFunction) -> bool:
    return str(function.trigger.get("source", "")).lower() == "eventgrid"


@register_delivery_source
class BlobTriggerSource(DeliverySource):
    trigger_type: ClassVar[str] = BLOB_TRIGGER
    http_precedence: ClassVar[int] = 10

    def __init__(self, services: HostServices, functions: Sequence[IndexedFunction]) -> None:
        super().__init__(services, functions)
        queues = services.host_json.extension("queues")
        self.max_attempts = max(1, int(queues.get("maxDequeueCount", 5)))
        raw = services.environ.get(POLL_SETTING)
        self.poll_seconds = float(raw) if raw else DEFAULT_POLL_SECONDS
        self.host_id = f"localdev-{services.app_dir.name}".lower()[:32]
        self._watchers: list[_Watcher] = []
        self._by_webhook_name: dict[str, _Watcher] = {}  # Host.Functions.<name>, lower case
        self._events: Any = None  # QueueClient of azure-webjobs-blobtrigger-<hostId>
        self._tasks: list[asyncio.Task[None]] = []
        self._stopping = asyncio.Event()

    def describe(self, function: IndexedFunction) -> str:
        if _event_grid_source(function):
            return (
                f"blobTrigger ({function.trigger.get('path')}; Event Grid: "
                f"{self.services.base_url}{WEBHOOK_PATH}?functionName=Host.Functions."
                f"{function.name})"
            )
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
            if _event_grid_source(function):
                self._by_webhook_name[f"host.functions.{function.name}".lower()] = watcher
            else:
                self._tasks.append(asyncio.create_task(self._poll(watcher)))
        if self._by_webhook_name:
            self._events = await asyncio.to_thread(self._event_queue)
            self._tasks.append(asyncio.create_task(self._drain()))

    async def stop(self) -> None:
        self._stopping.set()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        for watcher in self._watchers:
            watcher.blobs.close()
            watcher.receipts.close()
            watcher.poison.close()
        if self._events is not None:
            self._events.close()

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

    # --- source EventGrid: the blob extension's webhook and the host's queue --------------------

    def _event_queue(self) -> Any:
        from azure.core.exceptions import ResourceExistsError
        from azure.storage.queue import QueueClient

        # Queue names allow lower-case letters, digits and single hyphens only.
        host_id = re.sub(r"-+", "-", re.sub(r"[^a-z0-9]", "-", self.host_id)).strip("-")
        queue = QueueClient.from_connection_string(
            connection_string(DEFAULT_CONNECTION, self.services.environ),
            f"azure-webjobs-blobtrigger-{host_id}"[:63].rstrip("-"),
        )
        with contextlib.suppress(ResourceExistsError):
            queue.create_queue()
        return queue

    async def handle_http(self, request: HostRequest) -> HostResponse | None:  # noqa: PLR0911 - one answer per case
        if request.path.rstrip("/").lower() != WEBHOOK_PATH:
            return None
        name = (parse_qs(request.query_string).get("functionName") or [""])[0]
        watcher = self._by_webhook_name.get(name.lower())
        if watcher is None or request.method != "POST":
            return HostResponse.empty(404 if watcher is None else 405)
        try:
            document = json.loads(request.body)
        except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
            return HostResponse.empty(400)
        events = document if isinstance(document, list) else [document]
        if not all(isinstance(event, dict) for event in events):
            return HostResponse.empty(400)
        kind = (request.header("aeg-event-type") or "").lower()
        if kind == "subscriptionvalidation":
            code = (events[0].get("data") or {}).get("validationCode") if events else None
            return HostResponse.json(200, {"validationResponse": code})
        blobs = [
            blob
            for event in events
            if event.get("eventType") == BLOB_CREATED
            and (blob := _blob_of(str(event.get("subject", "")), watcher)) is not None
        ]
        try:
            for blob in blobs:
                message = {"function": watcher.function.name, "blob": blob}
                await asyncio.to_thread(self._events.send_message, json.dumps(message))
        except Exception:  # storage unreachable: 500, so Event Grid retries the event
            self.services.logger.exception("Queuing a blob event failed")
            return HostResponse.empty(500)
        return HostResponse.empty(202)

    async def _drain(self) -> None:
        """Deliver the queued blobs one at a time, each invisible while it runs (a host that
        dies leaves it for the next)."""
        visibility = round(running_visibility(self.services.environ))
        while not self._stopping.is_set():
            try:
                messages = await asyncio.to_thread(
                    lambda: list(self._events.receive_messages(visibility_timeout=visibility))
                )
            except Exception:
                self.services.logger.exception("Reading the blob event queue failed")
                messages = []
            for message in messages:
                try:
                    await self._drain_one(message)
                except Exception:  # storage unreachable: the message comes back after a while
                    self.services.logger.exception("Delivering a queued blob failed")
            if not messages:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), timeout=self.poll_seconds)

    async def _drain_one(self, message: Any) -> None:
        """A version is done once it has a receipt (delivered, or poisoned after
        ``maxDequeueCount`` failures); until then the message is made visible again."""
        from azure.core.exceptions import ResourceNotFoundError

        entry = json.loads(message.content)
        watcher = self._by_webhook_name.get(f"host.functions.{entry.get('function')}".lower())
        blob = None
        if watcher is not None:
            client = watcher.blobs.get_blob_client(watcher.container, str(entry.get("blob")))
            with contextlib.suppress(ResourceNotFoundError):  # deleted since: nothing to do
                blob = await asyncio.to_thread(client.get_blob_properties)
        if blob is not None and watcher is not None:
            blob.name = str(entry["blob"])
            key = (blob.name, str(blob.etag))
            receipt = watcher.receipts.get_blob_client(
                self.receipt_name(watcher, blob.name, str(blob.etag))
            )
            if key not in watcher.delivered and not await asyncio.to_thread(receipt.exists):
                await self._deliver(watcher, blob)
                if key not in watcher.delivered:
                    await asyncio.to_thread(
                        self._events.update_message, message, visibility_timeout=0
                    )
                    return
        await asyncio.to_thread(self._events.delete_message, message)

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


def _blob_of(subject: str, watcher: _Watcher) -> str | None:
    """The blob name of a BlobCreated subject when it is in the function's path, else None."""
    match = _SUBJECT.match(subject)
    if match is None or match.group(1).lower() != watcher.container:
        return None
    return match.group(2) if watcher.pattern.match(match.group(2)) else None


__all__ = ["BLOB_TRIGGER", "BlobTriggerSource", "path_pattern", "split_path"]
