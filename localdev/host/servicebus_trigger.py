"""Service Bus queue triggers, delivered the way the Functions host's Service Bus extension does.

For each enabled ``serviceBusTrigger`` function:

- the queue is the binding's ``queueName`` (``%SETTING%`` resolved from the app settings); the
  connection is the app setting named by ``connection``: ``<conn>`` (a connection string) or
  ``<conn>__fullyQualifiedNamespace`` (identity-based; locally it may hold the connection string
  of the local broker, or a namespace reached with ``DefaultAzureCredential``);
- messages are received in peek-lock mode (``azure-servicebus`` async client) and each one runs
  the function with an ``azure.functions.ServiceBusMessage`` built by the library's own
  converter from the same trigger metadata the host sends the worker (``MessageId``,
  ``DeliveryCount`` (1 on first delivery, as in .NET), ``UserProperties``, ``EnqueuedTimeUtc``,
  ``LockToken``...); a ``traceparent`` (or ``Diagnostic-Id``) application property continues the
  trace in ``context.trace_context``;
- on success the message is completed (``extensions.serviceBus.autoCompleteMessages``, default
  true); on failure it is abandoned, so the broker counts the delivery and dead-letters the
  message after the queue's max delivery count, as in Azure;
- the lock is renewed while the function runs, up to ``maxAutoLockRenewalDuration`` (default
  5 minutes); at most ``maxConcurrentCalls`` (default 16) invocations run at once per function;
- on stop no new message is received; invocations in flight get ``STOP_GRACE_SECONDS`` to finish
  and are settled, the rest are abandoned.

All receiver operations (receive, settle, renew) run in one task per function, so the SDK's
receiver is never used concurrently; invocations report their outcome to that task.

Not supported: topics/subscriptions, sessions, ``cardinality="many"`` and the SDK-type binding
extension (``azurefunctions-extensions-bindings-servicebus``): its ``ServiceBusMessageActions``
settles over a TLS gRPC channel to the host's settlement service, addressed by the worker's own
command-line arguments, which this in-process host does not have. Such functions are logged and
not delivered.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime
import json
import re
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

from localdev.host.invoker import FunctionInvocationError, InvocationRequest, TraceParent
from localdev.host.loader import IndexedFunction
from localdev.host.sources import DeliverySource, register_delivery_source

if TYPE_CHECKING:
    from azure.servicebus import ServiceBusReceivedMessage
    from azure.servicebus.aio import ServiceBusClient, ServiceBusReceiver

TRIGGER_TYPE: Final = "serviceBusTrigger"
STOP_GRACE_SECONDS: Final = 30.0
RECEIVE_WAIT_SECONDS: Final = 0.2  # also the longest a settlement waits for the receiver task
RETRY_DELAY_SECONDS: Final = 1.0  # after the broker is unreachable
DEFAULT_MAX_CONCURRENT_CALLS: Final = 16
DEFAULT_LOCK_RENEWAL: Final = datetime.timedelta(minutes=5)
_SETTING: Final = re.compile(r"%([^%]+)%")
_TIMESPAN: Final = re.compile(r"^(?:(\d+)\.)?(\d{1,2}):(\d{2}):(\d{2})(?:\.(\d+))?$")


class ServiceBusBindingError(ValueError):
    """A binding the local host cannot deliver; the message says why."""


def resolve_setting(value: str, environ: Mapping[str, str]) -> str:
    """``%NAME%`` -> the app setting NAME, as the host resolves binding expressions."""

    def lookup(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in environ:
            raise ServiceBusBindingError(f"app setting {name!r} is not set")
        return environ[name]

    return _SETTING.sub(lookup, value)


def parse_timespan(value: Any, default: datetime.timedelta) -> datetime.timedelta:
    """A .NET TimeSpan as host.json writes it (``[d.]hh:mm:ss[.fff]``)."""
    if value is None:
        return default
    found = _TIMESPAN.match(str(value).strip())
    if not found:
        raise ServiceBusBindingError(f"{value!r} is not a TimeSpan like 00:05:00")
    days, hours, minutes, seconds, fraction = found.groups()
    return datetime.timedelta(
        days=int(days or 0),
        hours=int(hours),
        minutes=int(minutes),
        seconds=float(f"{seconds}.{fraction or 0}"),
    )


@dataclass(frozen=True)
class ServiceBusOptions:
    """``extensions.serviceBus`` in host.json."""

    auto_complete: bool = True
    max_concurrent_calls: int = DEFAULT_MAX_CONCURRENT_CALLS
    max_lock_renewal: datetime.timedelta = DEFAULT_LOCK_RENEWAL

    @classmethod
    def from_host_json(cls, section: Mapping[str, Any]) -> ServiceBusOptions:
        concurrent = section.get("maxConcurrentCalls", DEFAULT_MAX_CONCURRENT_CALLS)
        if not isinstance(concurrent, int) or isinstance(concurrent, bool) or concurrent < 1:
            raise ServiceBusBindingError("extensions.serviceBus.maxConcurrentCalls must be >= 1")
        auto_complete = section.get("autoCompleteMessages", True)
        if not isinstance(auto_complete, bool):
            raise ServiceBusBindingError(
                "extensions.serviceBus.autoCompleteMessages must be a bool"
            )
        return cls(
            auto_complete=auto_complete,
            max_concurrent_calls=concurrent,
            max_lock_renewal=parse_timespan(
                section.get("maxAutoLockRenewalDuration"), DEFAULT_LOCK_RENEWAL
            ),
        )


def connection_setting(name: str, environ: Mapping[str, str]) -> str:
    """The connection string (or namespace) the binding's ``connection`` names."""
    for key in (name, f"{name}__fullyQualifiedNamespace"):
        value = environ.get(key, "").strip()
        if value:
            return value
    raise ServiceBusBindingError(
        f"connection {name!r}: neither {name} nor {name}__fullyQualifiedNamespace is set"
    )


def _text(value: Any) -> Any:  # noqa: PLR0911 - one return per AMQP type
    """pyamqp hands strings back as bytes; JSON needs text."""
    if isinstance(value, bytes):
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            return base64.b64encode(value).decode("ascii")
    if isinstance(value, datetime.datetime):
        return value.isoformat()
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, dict):
        return {str(_text(key)): _text(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_text(item) for item in value]
    return value


def _iso(moment: datetime.datetime | None) -> str | None:
    return None if moment is None else moment.astimezone(datetime.UTC).isoformat()


def trigger_metadata(message: ServiceBusReceivedMessage) -> dict[str, Any]:
    """The trigger metadata the host sends the worker for one message, as ``Datum`` objects."""
    from azure.functions.meta import Datum

    properties = _text(dict(message.application_properties or {}))
    values: dict[str, Any] = {
        "MessageId": message.message_id,
        "CorrelationId": message.correlation_id,
        "ContentType": message.content_type,
        "Subject": message.subject,
        "Label": message.subject,
        "To": message.to,
        "ReplyTo": message.reply_to,
        "ReplyToSessionId": message.reply_to_session_id,
        "SessionId": message.session_id,
        "PartitionKey": message.partition_key,
        "LockToken": str(message.lock_token) if message.lock_token else None,
        "DeadLetterSource": message.dead_letter_source,
        "DeadLetterReason": message.dead_letter_reason,
        "DeadLetterErrorDescription": message.dead_letter_error_description,
        "EnqueuedTimeUtc": _iso(message.enqueued_time_utc),
        "ExpiresAtUtc": _iso(message.expires_at_utc),
        "LockedUntil": _iso(message.locked_until_utc),
        "ScheduledEnqueueTimeUtc": _iso(message.scheduled_enqueue_time_utc),
        "TimeToLive": str(message.time_to_live) if message.time_to_live else None,
    }
    metadata: dict[str, Any] = {
        name: Datum(str(value), "string") for name, value in values.items() if value is not None
    }
    # .NET's ServiceBusReceivedMessage.DeliveryCount is the AMQP header's count plus one.
    metadata["DeliveryCount"] = Datum((message.delivery_count or 0) + 1, "int")
    if message.sequence_number is not None:
        metadata["SequenceNumber"] = Datum(message.sequence_number, "int")
    if message.enqueued_sequence_number is not None:
        metadata["EnqueuedSequenceNumber"] = Datum(message.enqueued_sequence_number, "int")
    metadata["State"] = Datum(int(getattr(message.state, "value", 0) or 0), "int")
    metadata["UserProperties"] = Datum(json.dumps(properties), "json")
    metadata["ApplicationProperties"] = Datum(json.dumps(properties), "json")
    return metadata


def function_input(function: IndexedFunction, message: ServiceBusReceivedMessage) -> Any:
    """The trigger argument, converted as the worker converts it for the parameter's type."""
    from azure.functions.meta import Datum
    from azure.functions.servicebus import ServiceBusMessageInConverter

    body = b"".join(message.body) if not isinstance(message.body, bytes) else message.body
    info = function.info.input_types.get(function.trigger_parameter)
    pytype = getattr(info, "pytype", None)
    if pytype is bytes:
        return body
    if pytype is str:
        return body.decode("utf-8")
    return ServiceBusMessageInConverter.decode(
        Datum(body, "bytes"), trigger_metadata=trigger_metadata(message)
    )


def trace_parent_of(message: ServiceBusReceivedMessage) -> TraceParent | None:
    properties = _text(dict(message.application_properties or {}))
    for key in ("traceparent", "Diagnostic-Id"):
        value = properties.get(key)
        if isinstance(value, str):
            parsed = TraceParent.parse(value)
            if parsed is not None:
                return parsed
    return None


@dataclass
class _InFlight:
    message: ServiceBusReceivedMessage
    task: asyncio.Task[bool]
    renew_until: float
    next_renewal: float


@dataclass
class _Subscription:
    function: IndexedFunction
    queue: str
    connection: str
    in_flight: dict[int, _InFlight] = field(default_factory=dict)
    outcomes: asyncio.Queue[tuple[int, bool]] = field(default_factory=asyncio.Queue)
    task: asyncio.Task[None] | None = None


@register_delivery_source
class ServiceBusTriggerSource(DeliverySource):
    trigger_type = TRIGGER_TYPE

    async def start(self) -> None:
        self._stopping = asyncio.Event()
        self._subscriptions: list[_Subscription] = []
        logger = self.services.logger
        try:
            self.options = ServiceBusOptions.from_host_json(
                self.services.host_json.extension("serviceBus")
            )
        except ServiceBusBindingError as error:
            logger.error("host.json: %s; Service Bus triggers are not delivered", error)
            return
        for function in self.functions:
            if function.disabled:
                continue
            try:
                subscription = self._subscription(function)
            except ServiceBusBindingError as error:
                logger.error(
                    "Function '%s' (serviceBusTrigger) is not delivered: %s", function.name, error
                )
                continue
            subscription.task = asyncio.create_task(
                self._run(subscription), name=f"servicebus:{function.name}"
            )
            self._subscriptions.append(subscription)

    def _subscription(self, function: IndexedFunction) -> _Subscription:
        binding = function.trigger
        environ = self.services.environ
        if binding.get("topicName") or binding.get("subscriptionName"):
            raise ServiceBusBindingError("topics and subscriptions are not supported locally")
        if binding.get("isSessionsEnabled"):
            raise ServiceBusBindingError("sessions are not supported locally")
        if str(binding.get("cardinality", "one")).lower() != "one":
            raise ServiceBusBindingError('only cardinality "one" is supported locally')
        if getattr(function.info, "deferred_bindings_enabled", False):
            raise ServiceBusBindingError(
                "SDK-type bindings (azurefunctions-extensions-bindings-servicebus) need the "
                "host's gRPC settlement service, which the local host does not provide"
            )
        queue = resolve_setting(str(binding.get("queueName") or ""), environ)
        if not queue:
            raise ServiceBusBindingError("the binding has no queueName")
        name = str(binding.get("connection") or "AzureWebJobsServiceBus")
        return _Subscription(
            function, queue, connection_setting(resolve_setting(name, environ), environ)
        )

    def describe(self, function: IndexedFunction) -> str:
        queue = function.trigger.get("queueName", "?")
        return f"serviceBusTrigger (queue {queue})"

    async def stop(self) -> None:
        if not hasattr(self, "_stopping"):
            return
        self._stopping.set()
        for subscription in self._subscriptions:
            if subscription.task is not None:
                with contextlib.suppress(Exception):
                    await subscription.task

    # --- one receiver task per function

    def _client(self, connection: str) -> ServiceBusClient:
        from azure.servicebus.aio import ServiceBusClient

        if "=" in connection:  # a connection string (the local broker, or keys)
            return ServiceBusClient.from_connection_string(connection, retry_total=1)
        from azure.identity.aio import DefaultAzureCredential

        return ServiceBusClient(connection, DefaultAzureCredential(), retry_total=1)

    async def _run(self, subscription: _Subscription) -> None:
        logger = self.services.logger
        while not self._stopping.is_set():
            try:
                async with self._client(subscription.connection) as client:
                    receiver = client.get_queue_receiver(subscription.queue, prefetch_count=0)
                    async with receiver:
                        await self._serve(subscription, receiver)
                        await self._drain(subscription, receiver)
                return
            except asyncio.CancelledError:
                raise
            except Exception as error:
                logger.warning(
                    "Service Bus trigger '%s' (queue %s): %s: %s; retrying",
                    subscription.function.name,
                    subscription.queue,
                    type(error).__name__,
                    error,
                )
                # Messages in flight keep running; their locks expire and they are redelivered.
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), RETRY_DELAY_SECONDS)
        await self._wait_in_flight(subscription, None)

    async def _serve(self, subscription: _Subscription, receiver: ServiceBusReceiver) -> None:
        limit = self.options.max_concurrent_calls
        while not self._stopping.is_set():
            await self._settle_ready(subscription, receiver)
            await self._renew_due(subscription, receiver)
            free = limit - len(subscription.in_flight)
            if free <= 0:
                await self._wait_outcome(subscription, RECEIVE_WAIT_SECONDS)
                continue
            messages = await receiver.receive_messages(
                max_message_count=free, max_wait_time=RECEIVE_WAIT_SECONDS
            )
            for message in messages:
                self._start_invocation(subscription, message)

    def _start_invocation(self, subscription: _Subscription, message: Any) -> None:
        key = id(message)
        now = time.monotonic()
        lock_seconds = 0.0
        if message.locked_until_utc is not None:
            remaining = message.locked_until_utc - datetime.datetime.now(datetime.UTC)
            lock_seconds = max(remaining.total_seconds(), 0.0)
        task = asyncio.create_task(self._invoke(subscription, key, message))
        subscription.in_flight[key] = _InFlight(
            message,
            task,
            renew_until=now + self.options.max_lock_renewal.total_seconds(),
            next_renewal=now + lock_seconds / 2,
        )

    async def _invoke(
        self, subscription: _Subscription, key: int, message: ServiceBusReceivedMessage
    ) -> bool:
        function = subscription.function
        succeeded = False
        try:
            value = function_input(function, message)
            await self.services.invoker.invoke(
                function,
                InvocationRequest(
                    inputs={function.trigger_parameter: value},
                    reason=f"New ServiceBus message detected on '{subscription.queue}'.",
                    trace_parent=TraceParent.child_of(trace_parent_of(message)),
                ),
            )
            succeeded = True
        except FunctionInvocationError:
            pass  # logged by the invoker
        except Exception:
            self.services.logger.exception(
                "Service Bus message for '%s' could not be delivered", function.name
            )
        await subscription.outcomes.put((key, succeeded))
        return succeeded

    async def _wait_outcome(self, subscription: _Subscription, timeout: float) -> None:
        with contextlib.suppress(TimeoutError):
            item = await asyncio.wait_for(subscription.outcomes.get(), timeout)
            subscription.outcomes.put_nowait(item)

    async def _settle_ready(
        self, subscription: _Subscription, receiver: ServiceBusReceiver
    ) -> None:
        while not subscription.outcomes.empty():
            key, succeeded = subscription.outcomes.get_nowait()
            entry = subscription.in_flight.pop(key, None)
            if entry is not None:
                await self._settle(subscription, receiver, entry.message, succeeded)

    async def _settle(
        self,
        subscription: _Subscription,
        receiver: ServiceBusReceiver,
        message: ServiceBusReceivedMessage,
        succeeded: bool,
    ) -> None:
        try:
            if succeeded and self.options.auto_complete:
                await receiver.complete_message(message)
            elif not succeeded:
                await receiver.abandon_message(message)
        except Exception as error:  # lock lost: the broker redelivers it
            self.services.logger.warning(
                "Settling a message of '%s' failed (%s); it will be delivered again",
                subscription.function.name,
                type(error).__name__,
            )

    async def _renew_due(self, subscription: _Subscription, receiver: ServiceBusReceiver) -> None:
        now = time.monotonic()
        for entry in list(subscription.in_flight.values()):
            if entry.next_renewal > now or now >= entry.renew_until:
                continue
            try:
                locked_until = await receiver.renew_message_lock(entry.message)
            except Exception as error:
                self.services.logger.warning(
                    "Renewing a message lock for '%s' failed (%s)",
                    subscription.function.name,
                    type(error).__name__,
                )
                entry.next_renewal = entry.renew_until  # give up on this one
                continue
            remaining = (locked_until - datetime.datetime.now(datetime.UTC)).total_seconds()
            entry.next_renewal = time.monotonic() + max(remaining, 0.0) / 2

    async def _drain(self, subscription: _Subscription, receiver: ServiceBusReceiver) -> None:
        """On stop: let invocations in flight finish (and settle them), abandon the rest."""
        await self._wait_in_flight(subscription, receiver)

    async def _wait_in_flight(
        self, subscription: _Subscription, receiver: ServiceBusReceiver | None
    ) -> None:
        deadline = time.monotonic() + STOP_GRACE_SECONDS
        while subscription.in_flight and time.monotonic() < deadline:
            if receiver is not None:
                await self._settle_ready(subscription, receiver)
                await self._renew_due(subscription, receiver)
            await self._wait_outcome(subscription, RECEIVE_WAIT_SECONDS)
            if receiver is None:
                while not subscription.outcomes.empty():
                    subscription.in_flight.pop(subscription.outcomes.get_nowait()[0], None)
        for entry in list(subscription.in_flight.values()):
            if receiver is not None:
                await self._settle(subscription, receiver, entry.message, succeeded=False)
        subscription.in_flight.clear()
