"""Storage queue trigger delivery, with the Functions host's semantics
(``extensions.queues`` in host.json):

- each function's queue (``queueName``, ``%SETTING%`` resolved) is polled; when empty, the
  interval doubles from 100 ms up to ``maxPollingInterval`` (default 1 minute);
- up to ``batchSize`` (16) messages are received at once and invoked concurrently, each
  invisible for 10 minutes while it runs, renewed at half that time as long as it runs; if the
  host dies, the message becomes visible again when that time is up (the app setting
  ``LOCALDEV_QUEUE_VISIBILITY_SECONDS`` shortens the 10 minutes, for tests of a crash);
- the body is base64-decoded like the host (``messageEncoding`` base64); a message that is not
  base64 fails its delivery;
- the function gets an ``azure.functions.QueueMessage`` with id, body, dequeue count, times and
  pop receipt; ``context.retry_context.retry_count`` is the dequeue count minus one;
- success deletes the message; failure makes it visible again after ``visibilityTimeout``
  (default 0), and when its dequeue count has reached ``maxDequeueCount`` (default 5) it is moved
  to ``<queue>-poison`` (created on demand) with the same content.

Connections are connection strings (``connection`` names the setting, default
``AzureWebJobsStorage``).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, ClassVar, Final

from localdev.host.invoker import FunctionInvocationError, InvocationRequest, RetryState
from localdev.host.loader import IndexedFunction
from localdev.host.sources import DeliverySource, HostServices, register_delivery_source
from localdev.host.storage import (
    BindingConfigurationError,
    connection_string,
    parse_timespan,
    resolve_setting_expressions,
)

QUEUE_TRIGGER: Final = "queueTrigger"
MIN_POLL_SECONDS: Final = 0.1
RUNNING_VISIBILITY_SECONDS: Final = 600
RUNNING_VISIBILITY_SETTING: Final = "LOCALDEV_QUEUE_VISIBILITY_SECONDS"


def running_visibility(environ: Mapping[str, str]) -> float:
    """How long a received message stays invisible before it is renewed or, after a crash,
    delivered again (seconds)."""
    raw = environ.get(RUNNING_VISIBILITY_SETTING, "").strip()
    if not raw:
        return float(RUNNING_VISIBILITY_SECONDS)
    try:
        seconds = float(raw)
    except ValueError:
        seconds = 0.0
    if not 2 <= seconds <= RUNNING_VISIBILITY_SECONDS:
        raise ValueError(
            f"{RUNNING_VISIBILITY_SETTING} must be seconds from 2 to {RUNNING_VISIBILITY_SECONDS}"
        )
    return seconds


@dataclass(frozen=True)
class QueueOptions:
    batch_size: int = 16
    max_dequeue_count: int = 5
    visibility_timeout: timedelta = timedelta(0)
    max_polling_interval: timedelta = timedelta(minutes=1)

    @classmethod
    def from_host_json(cls, section: Any) -> QueueOptions:
        return cls(
            batch_size=max(1, min(32, int(section.get("batchSize", 16)))),
            max_dequeue_count=max(1, int(section.get("maxDequeueCount", 5))),
            visibility_timeout=parse_timespan(section.get("visibilityTimeout"), timedelta(0)),
            max_polling_interval=parse_timespan(
                section.get("maxPollingInterval"), timedelta(minutes=1)
            ),
        )


@dataclass
class _Listener:
    function: IndexedFunction
    queue_name: str
    client: Any  # azure.storage.queue.QueueClient (raw text: the host decodes base64)
    poison: Any


@register_delivery_source
class QueueTriggerSource(DeliverySource):
    trigger_type: ClassVar[str] = QUEUE_TRIGGER

    def __init__(self, services: HostServices, functions: Sequence[IndexedFunction]) -> None:
        super().__init__(services, functions)
        self.options = QueueOptions.from_host_json(services.host_json.extension("queues"))
        self.running_visibility = running_visibility(services.environ)
        self._listeners: list[_Listener] = []
        self._tasks: list[asyncio.Task[None]] = []
        self._stopping = asyncio.Event()

    def describe(self, function: IndexedFunction) -> str:
        return f"queueTrigger ({function.trigger.get('queueName')})"

    def _listener(self, function: IndexedFunction) -> _Listener:
        from azure.storage.queue import QueueClient

        environ = self.services.environ
        trigger = function.trigger
        name = resolve_setting_expressions(str(trigger["queueName"]), environ).lower()
        connection = connection_string(trigger.get("connection"), environ)
        client = QueueClient.from_connection_string(connection, name)
        poison = QueueClient.from_connection_string(connection, f"{name}-poison")
        return _Listener(function, name, client, poison)

    async def start(self) -> None:
        for function in self.functions:
            if function.disabled:
                continue
            try:
                listener = await asyncio.to_thread(self._listener, function)
                await asyncio.to_thread(_ensure_queue, listener.client)
            except BindingConfigurationError as error:
                self.services.logger.error("Function '%s' cannot listen: %s", function.name, error)
                continue
            self._listeners.append(listener)
            self._tasks.append(asyncio.create_task(self._poll(listener)))

    async def stop(self) -> None:
        self._stopping.set()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        for listener in self._listeners:
            listener.client.close()
            listener.poison.close()

    async def _wait(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), timeout=seconds)

    async def _poll(self, listener: _Listener) -> None:
        delay = MIN_POLL_SECONDS
        ceiling = max(MIN_POLL_SECONDS, self.options.max_polling_interval.total_seconds())
        while not self._stopping.is_set():
            try:
                messages = await asyncio.to_thread(self._receive, listener)
            except Exception:
                self.services.logger.exception("Polling queue '%s' failed", listener.queue_name)
                messages = []
            if not messages:
                await self._wait(delay)
                delay = min(delay * 2, ceiling)
                continue
            delay = MIN_POLL_SECONDS
            await asyncio.gather(*(self._deliver(listener, message) for message in messages))

    def _receive(self, listener: _Listener) -> list[Any]:
        size = self.options.batch_size
        return list(
            listener.client.receive_messages(
                messages_per_page=size,
                max_messages=size,
                visibility_timeout=round(self.running_visibility),
            )
        )

    async def _deliver(self, listener: _Listener, message: Any) -> None:
        from azure.functions.queue import QueueMessage

        function = listener.function
        dequeue_count = int(message.dequeue_count or 1)
        try:
            body = base64.b64decode(str(message.content), validate=True)
        except (binascii.Error, ValueError):
            self.services.logger.error(
                "Message %s on queue '%s' is not valid base64 (messageEncoding is base64)",
                message.id,
                listener.queue_name,
            )
            await self._failed(listener, message, dequeue_count)
            return
        # The worker's concrete type, with the metadata the host sends.
        queue_message = QueueMessage(
            id=message.id,
            body=body,
            dequeue_count=dequeue_count,
            expiration_time=message.expires_on,
            insertion_time=message.inserted_on,
            time_next_visible=message.next_visible_on,
            pop_receipt=message.pop_receipt,
        )
        request = InvocationRequest(
            inputs={function.trigger_parameter: queue_message},
            reason=f"New queue message detected on '{listener.queue_name}'.",
            retry=RetryState(
                retry_count=dequeue_count - 1, max_retry_count=self.options.max_dequeue_count - 1
            ),
        )
        finished = asyncio.Event()
        renewal = asyncio.create_task(self._keep_invisible(listener, message, finished))
        try:
            await self.services.invoker.invoke(function, request)
        except FunctionInvocationError:
            succeeded = False
        except Exception:
            self.services.logger.exception("Delivering message %s failed", message.id)
            succeeded = False
        else:
            succeeded = True
        finally:
            finished.set()
            await renewal  # a renewal in progress changes the pop receipt the next call needs
        try:
            if not succeeded:
                await self._failed(listener, message, dequeue_count)
                return
            await asyncio.to_thread(listener.client.delete_message, message)
        except Exception:
            # Storage unreachable after the SDK's retries: the message becomes visible again
            # when its visibility timeout ends and is delivered again, as with the host.
            self.services.logger.exception("Settling message %s failed", message.id)

    async def _keep_invisible(
        self, listener: _Listener, message: Any, finished: asyncio.Event
    ) -> None:
        """While the function runs, renew the message's invisibility at half its timeout (as the
        host does), keeping the newest pop receipt on ``message`` for the delete."""
        while not finished.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(finished.wait(), timeout=self.running_visibility / 2)
            if finished.is_set():
                return
            try:
                updated = await asyncio.to_thread(
                    listener.client.update_message,
                    message,
                    visibility_timeout=round(self.running_visibility),
                )
            except Exception as error:
                self.services.logger.warning(
                    "Renewing the visibility of message %s failed: %s", message.id, error
                )
                continue
            message.pop_receipt = updated.pop_receipt
            message.next_visible_on = updated.next_visible_on

    async def _failed(self, listener: _Listener, message: Any, dequeue_count: int) -> None:
        if dequeue_count >= self.options.max_dequeue_count:
            self.services.logger.warning(
                "Message %s has reached MaxDequeueCount of %d; moving it to queue '%s-poison'",
                message.id,
                self.options.max_dequeue_count,
                listener.queue_name,
            )
            await asyncio.to_thread(_move_to_poison, listener, message)
            return
        await asyncio.to_thread(
            listener.client.update_message,
            message,
            visibility_timeout=int(self.options.visibility_timeout.total_seconds()),
        )


def _ensure_queue(client: Any) -> None:
    from azure.core.exceptions import ResourceExistsError

    with contextlib.suppress(ResourceExistsError):
        client.create_queue()


def _move_to_poison(listener: _Listener, message: Any) -> None:
    _ensure_queue(listener.poison)
    listener.poison.send_message(message.content)
    listener.client.delete_message(message)
