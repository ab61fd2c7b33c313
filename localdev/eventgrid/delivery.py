"""Delivery as Event Grid delivers: every matching subscription gets every event, at least once.

- **Where.** ``AzureFunction``: ``POST <functions>/runtime/webhooks/eventgrid?functionName=
  <name>`` (what Event Grid calls on the function app, and what ``func start`` serves);
  ``WebHook``: ``POST <functions><path>`` (for example the blob extension's
  ``/runtime/webhooks/blobs``); ``StorageQueue``: one base64 message per event on an Azurite
  queue. HTTP deliveries carry ``aeg-event-type: Notification``, ``aeg-subscription-name``
  (upper case) and ``aeg-delivery-count``; one event per request (``maxEventsPerBatch`` 1):
  a CloudEvent as ``application/cloudevents+json``, an Event Grid schema event as a
  one-element JSON array.
- **Success** is 200-204. The stand-in waits up to 30 s for an answer, as Event Grid does.
- **Retries.** Any other answer, a refused connection or a timeout is retried after the
  next delay of the schedule. Event Grid's own schedule is 10 s, 30 s, 1 min, 5 min, 10 min,
  30 min, 1 h, 3 h, 6 h, then every 12 h for 24 h (``eventTimeToLiveInMinutes``), at most
  ``maxDeliveryAttempts``; locally the schedule is shortened to
  :data:`DEFAULT_RETRY_DELAYS_SECONDS` (``LOCALDEV_EVENTGRID_RETRY_DELAYS`` or
  ``--retry-delays`` change it), whose end stands for the end of the time to live.
- **Dead-lettering.** After the last attempt, and at once for the answers Event Grid never
  retries (400 and 413, plus 403 for Azure resources and 401/403 for webhooks), the event is
  written to the dead-letter container in Azurite as Event Grid writes it:
  ``<container>/<SUBSCRIPTION>/<year>/<month>/<day>/<hour>/<uuid>.json`` (upper-case
  subscription name, date parts not zero-padded), a JSON array of the event with
  ``deadLetterReason``, ``deliveryAttempts``, ``lastDeliveryOutcome``,
  ``lastHttpStatusCode``, ``publishTime`` and ``lastDeliveryAttemptTime``.

Pending deliveries live in memory: an event waiting for a retry when the stand-in stops is
lost (Event Grid keeps it). Order is not guaranteed, as in Event Grid.
"""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import json
import logging
import urllib.parse
import uuid
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

from localdev.eventgrid.subscriptions import CLOUDEVENTS, Subscription, Subscriptions

RETRY_DELAYS_SETTING: Final = "LOCALDEV_EVENTGRID_RETRY_DELAYS"
DEFAULT_RETRY_DELAYS_SECONDS: Final = (1.0, 2.0, 5.0, 10.0, 30.0)
DELIVERY_TIMEOUT_SECONDS: Final = 30.0
MAX_CONCURRENT_DELIVERIES: Final = 16
SUCCESS: Final = range(200, 205)
# Answers Event Grid does not retry (docs: "Event Grid message delivery and retry").
NOT_RETRIED: Final[Mapping[str, frozenset[int]]] = {
    "AzureFunction": frozenset({400, 403, 413}),
    "StorageQueue": frozenset({400, 403, 413}),
    "WebHook": frozenset({400, 401, 403, 413}),
}
OUTCOMES: Final[Mapping[int, str]] = {
    400: "BadRequest",
    401: "Unauthorized",
    403: "Forbidden",
    404: "NotFound",
    413: "PayloadTooLarge",
    429: "Busy",
    503: "Busy",
}
STORAGE_TIMEOUT_SECONDS: Final = 10
DEAD_LETTER_ATTEMPTS: Final = 5


def parse_retry_delays(raw: str | None) -> tuple[float, ...]:
    if raw is None or not raw.strip():
        return DEFAULT_RETRY_DELAYS_SECONDS
    try:
        delays = tuple(float(part) for part in raw.split(","))
    except ValueError:
        delays = ()
    if not delays or any(not 0 <= delay <= 3600 for delay in delays):
        raise ValueError(f"{RETRY_DELAYS_SETTING} must be comma-separated seconds (0-3600)")
    return delays


def to_cloudevent(event: Mapping[str, Any]) -> dict[str, Any]:
    """An Event Grid schema event as Event Grid delivers it to a CloudEvents subscription."""
    converted = {
        "specversion": "1.0",
        "id": event["id"],
        "source": event.get("topic", ""),
        "type": event["eventType"],
        "subject": event["subject"],
        "time": event["eventTime"],
        "datacontenttype": "application/json",
    }
    if "data" in event:
        converted["data"] = event["data"]
    return converted


@dataclass(frozen=True)
class Attempt:
    status: int | None  # None: no HTTP answer (refused, reset, timed out)
    outcome: str


def _now() -> datetime:
    return datetime.now(UTC)


def _iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def http_post(url: str, body: bytes, headers: Mapping[str, str], timeout: float) -> Attempt:
    """One POST to the Functions host (plain HTTP on loopback)."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme != "http" or not parts.hostname:
        raise ValueError(f"not an http:// URL: {url}")
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)
    target = parts.path + (f"?{parts.query}" if parts.query else "")
    try:
        connection.request("POST", target, body=body, headers=dict(headers))
        response = connection.getresponse()
        response.read()
        status = response.status
    except TimeoutError:
        return Attempt(None, "TimedOut")
    except (OSError, http.client.HTTPException) as error:
        return Attempt(None, f"GenericError: {type(error).__name__}")
    finally:
        connection.close()
    outcome = "Succeeded" if status in SUCCESS else OUTCOMES.get(status, "GenericError")
    return Attempt(status, outcome)


class StorageEndpoints:
    """Azurite's blob and queue endpoints (the account's public development key)."""

    def __init__(self, blob_endpoint: str | None, queue_endpoint: str | None) -> None:
        self.blob_endpoint = blob_endpoint
        self.queue_endpoint = queue_endpoint
        self._blobs: Any = None
        self._queues: dict[str, Any] = {}

    @staticmethod
    def _credential() -> dict[str, str]:
        from localdev.stack.stack import AZURITE_ACCOUNT, AZURITE_ACCOUNT_KEY

        return {"account_name": AZURITE_ACCOUNT, "account_key": AZURITE_ACCOUNT_KEY}

    def blobs(self) -> Any:
        from azure.storage.blob import BlobServiceClient

        if self.blob_endpoint is None:
            raise RuntimeError("no blob endpoint for dead-lettering (--blob-endpoint)")
        if self._blobs is None:
            # No SDK retries: every caller retries on its own schedule (the next poll, the
            # next dead-letter attempt), and a stalled Azurite must not hold a thread long.
            self._blobs = BlobServiceClient(
                self.blob_endpoint,
                credential=self._credential(),
                connection_timeout=STORAGE_TIMEOUT_SECONDS,
                read_timeout=STORAGE_TIMEOUT_SECONDS,
                retry_total=0,
            )
        return self._blobs

    def queue(self, name: str) -> Any:
        from azure.storage.queue import QueueClient, TextBase64EncodePolicy

        if self.queue_endpoint is None:
            raise RuntimeError("no queue endpoint for StorageQueue destinations (--queue-endpoint)")
        if name not in self._queues:
            self._queues[name] = QueueClient(
                self.queue_endpoint,
                name,
                credential=self._credential(),
                message_encode_policy=TextBase64EncodePolicy(),
                connection_timeout=STORAGE_TIMEOUT_SECONDS,
                read_timeout=STORAGE_TIMEOUT_SECONDS,
                retry_total=1,
            )
        return self._queues[name]

    def close(self) -> None:
        if self._blobs is not None:
            self._blobs.close()
        for queue in self._queues.values():
            queue.close()


def dead_letter_blob_name(subscription: str, moment: datetime) -> str:
    return (
        f"{subscription.upper()}/{moment.year}/{moment.month}/{moment.day}/{moment.hour}/"
        f"{uuid.uuid4()}.json"
    )


class Deliverer:
    """Schedules and runs the deliveries of accepted events (one asyncio task per event and
    subscription); HTTP and storage calls run on a small thread pool."""

    def __init__(
        self,
        subscriptions: Subscriptions,
        *,
        functions_url: str,
        storage: StorageEndpoints,
        retry_delays: Sequence[float] = DEFAULT_RETRY_DELAYS_SECONDS,
        timeout: float = DELIVERY_TIMEOUT_SECONDS,
        logger: logging.Logger,
    ) -> None:
        self.subscriptions = subscriptions
        self.functions_url = functions_url.rstrip("/")
        self.storage = storage
        self.retry_delays = tuple(retry_delays)
        self.timeout = timeout
        self.logger = logger
        self._tasks: set[asyncio.Task[None]] = set()
        self._stopping = asyncio.Event()
        self._pool = ThreadPoolExecutor(MAX_CONCURRENT_DELIVERIES, thread_name_prefix="delivery")

    # --- scheduling ---------------------------------------------------------------------------

    def publish(self, topic: str, events: Sequence[dict[str, Any]]) -> int:
        """Schedule every event for every matching subscription of ``topic``; returns how many
        deliveries were scheduled."""
        scheduled = 0
        published = _now()
        cloudevents_in = self.subscriptions.topics[topic].input_schema == CLOUDEVENTS
        for event in events:
            event_type = str(event.get("type" if cloudevents_in else "eventType", ""))
            subject = str(event.get("subject") or "")
            for subscription in self.subscriptions.of_topic(topic):
                if not subscription.filter.matches(event_type, subject):
                    continue
                delivered = event
                if not cloudevents_in and subscription.delivery_schema == CLOUDEVENTS:
                    delivered = to_cloudevent(event)
                self._spawn(self._deliver(subscription, delivered, published))
                scheduled += 1
        return scheduled

    def _spawn(self, coroutine: Any) -> None:
        task = asyncio.get_running_loop().create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def stop(self) -> None:
        self._stopping.set()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        self._pool.shutdown(wait=False, cancel_futures=True)
        self.storage.close()

    async def _run(self, function: Any, *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._pool, function, *args)

    # --- one event to one subscription --------------------------------------------------------

    async def _deliver(
        self, subscription: Subscription, event: dict[str, Any], published: datetime
    ) -> None:
        attempts = min(subscription.max_delivery_attempts, len(self.retry_delays) + 1)
        event_id = str(event.get("id"))[:128]
        last = Attempt(None, "NotAttempted")
        made = 0
        for number in range(attempts):
            made = number + 1
            last = await self._attempt(subscription, event, number)
            if last.outcome == "Succeeded":
                self.logger.info(
                    "delivered event %s to %s (attempt %d, %s)",
                    event_id,
                    subscription.name,
                    made,
                    last.status,
                )
                return
            never_retried = NOT_RETRIED[subscription.destination.endpoint_type]
            if last.status in never_retried:
                reason = "the destination answered with an error Event Grid does not retry"
                await self._dead_letter(subscription, event, published, made, last, reason)
                return
            self.logger.warning(
                "delivery of event %s to %s failed (attempt %d of %d: %s %s)",
                event_id,
                subscription.name,
                made,
                attempts,
                last.status,
                last.outcome,
            )
            if number + 1 < attempts:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), timeout=self.retry_delays[number])
                if self._stopping.is_set():
                    return
        await self._dead_letter(
            subscription, event, published, made, last, "MaxDeliveryAttemptsExceeded"
        )

    async def _attempt(
        self, subscription: Subscription, event: dict[str, Any], number: int
    ) -> Attempt:
        destination = subscription.destination
        if destination.endpoint_type == "StorageQueue":
            queued: Attempt = await self._run(self._enqueue, str(destination.queue_name), event)
            return queued
        if destination.endpoint_type == "AzureFunction":
            query = urllib.parse.urlencode({"functionName": destination.function_name})
            url = f"{self.functions_url}/runtime/webhooks/eventgrid?{query}"
        else:
            url = f"{self.functions_url}{destination.functions_path}"
        cloudevent = subscription.delivery_schema == CLOUDEVENTS
        body = json.dumps(event if cloudevent else [event]).encode()
        headers = {
            "Content-Type": (
                "application/cloudevents+json; charset=utf-8"
                if cloudevent
                else "application/json; charset=utf-8"
            ),
            "aeg-event-type": "Notification",
            "aeg-subscription-name": subscription.name.upper(),
            "aeg-delivery-count": str(number),
            "aeg-metadata-version": "1",
        }
        if not cloudevent:
            headers["aeg-data-version"] = str(event.get("dataVersion", ""))
        result: Attempt = await self._run(http_post, url, body, headers, self.timeout)
        return result

    def _enqueue(self, queue: str, event: dict[str, Any]) -> Attempt:
        from azure.core.exceptions import AzureError, HttpResponseError

        try:
            self.storage.queue(queue).send_message(json.dumps(event))
        except HttpResponseError as error:
            status = error.status_code
            return Attempt(status, OUTCOMES.get(status or 0, "GenericError"))
        except AzureError as error:
            return Attempt(None, f"GenericError: {type(error).__name__}")
        return Attempt(201, "Succeeded")

    async def _dead_letter(  # noqa: PLR0917 - one call site per outcome, all arguments needed
        self,
        subscription: Subscription,
        event: dict[str, Any],
        published: datetime,
        attempts: int,
        last: Attempt,
        reason: str,
    ) -> None:
        now = _now()
        record = {
            **event,
            "deadLetterReason": reason,
            "deliveryAttempts": attempts,
            "lastDeliveryOutcome": last.outcome,
            "lastHttpStatusCode": last.status or 0,
            "publishTime": _iso(published),
            "lastDeliveryAttemptTime": _iso(now),
        }
        name = dead_letter_blob_name(subscription.name, now)
        container = self.subscriptions.dead_letter_container
        event_id = str(event.get("id"))[:128]
        failure: Exception | None = None
        for _ in range(DEAD_LETTER_ATTEMPTS):
            try:
                await self._run(self._write_blob, container, name, json.dumps([record]))
            except Exception as error:
                failure = error
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), timeout=1.0)
                if self._stopping.is_set():
                    break
                continue
            self.logger.error(
                "event %s dead-lettered for subscription %s after %d attempt(s) (%s; last "
                "outcome %s %s): %s/%s",
                event_id,
                subscription.name,
                attempts,
                reason,
                last.status,
                last.outcome,
                container,
                name,
            )
            return
        self.logger.error(
            "event %s of subscription %s could not be dead-lettered and is dropped: %s",
            event_id,
            subscription.name,
            failure or "stopping",
        )

    def _write_blob(self, container: str, name: str, content: str) -> None:
        from azure.core.exceptions import ResourceExistsError

        client = self.storage.blobs().get_container_client(container)
        with contextlib.suppress(ResourceExistsError):
            client.create_container()
        client.upload_blob(name, content.encode(), overwrite=False)
