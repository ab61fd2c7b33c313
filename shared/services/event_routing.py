"""Routing order events (Event Grid) to commands: ``Order.Paid`` becomes a fulfillment command
on the Service Bus queue ``fulfillment``.

- Events arrive in the CloudEvents 1.0 schema (the app's own events) or the Event Grid schema
  (system events); both are read into one :class:`EventEnvelope`.
- The command's ``message_id`` is the Paid event's id, which is deterministic per transition
  (``shared.events``): however often Event Grid delivers the event, or the outbox re-publishes
  it, Service Bus duplicate detection keeps one message; and should a repeat get through
  anyway, fulfillment is idempotent.
- The event's ``traceparent`` travels on as the message's application properties
  ``traceparent`` and ``Diagnostic-Id`` (what the Functions host and Application Insights read),
  so fulfillment continues the trace that the HTTP request started.
- Unknown types are logged and ignored. A malformed event (an order event without ids) is
  logged with its id and acknowledged: retrying cannot fix it. A send failure raises, so Event
  Grid retries the delivery with backoff.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Final, Protocol

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from shared.events import EVENT_TYPES, subject_of
from shared.models import Identifier, OrderStatus
from shared.observability import get_logger, trace_id_from
from shared.services.fulfillment import COMMAND_VERSION, FULFIL_ORDER, FulfilOrderCommand

if TYPE_CHECKING:
    from azure.servicebus import ServiceBusSender

PAID: Final = EVENT_TYPES[OrderStatus.PAID]
ORDER_EVENT_PREFIX: Final = "Orderflow.Order."
SERVICE_BUS = "Service Bus"
SEND_TIMEOUT_SECONDS: Final = 5.0  # one send, the SDK's own retries included
LOCK_WAIT_SECONDS: Final = 1.0  # a healthy send takes milliseconds
FAILURE_COOL_DOWN_SECONDS: Final = 1.0
log = get_logger("events")


@dataclass(frozen=True, slots=True)
class EventEnvelope:
    """One event, whichever schema it came in."""

    id: str
    type: str
    subject: str | None
    data: Any
    schema: str  # "cloudevents" or "eventgrid"
    source: str | None = None
    traceparent: str | None = None
    extensions: Mapping[str, Any] = field(default_factory=dict)

    def with_traceparent(self, traceparent: str | None) -> EventEnvelope:
        """The same event, continuing ``traceparent`` (kept as is when that is None)."""
        return self if traceparent is None else replace(self, traceparent=traceparent)


def envelope_from_dict(body: Mapping[str, Any]) -> EventEnvelope:
    """An event from its JSON form (CloudEvents if it has ``specversion``, else Event Grid)."""
    if "specversion" in body:
        known = {"specversion", "id", "source", "type", "time", "subject", "data"}
        extensions = {k: v for k, v in body.items() if k not in known}
        traceparent = extensions.get("traceparent")
        return EventEnvelope(
            id=str(body.get("id") or ""),
            type=str(body.get("type") or ""),
            subject=body.get("subject") if isinstance(body.get("subject"), str) else None,
            data=body.get("data"),
            schema="cloudevents",
            source=str(body.get("source") or "") or None,
            traceparent=traceparent if isinstance(traceparent, str) else None,
            extensions=extensions,
        )
    return EventEnvelope(
        id=str(body.get("id") or ""),
        type=str(body.get("eventType") or ""),
        subject=body.get("subject") if isinstance(body.get("subject"), str) else None,
        data=body.get("data"),
        schema="eventgrid",
        source=str(body.get("topic") or "") or None,
    )


class _OrderEventData(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True, populate_by_name=True)

    customer_id: Identifier = Field(alias="customerId")
    order_id: Identifier = Field(alias="orderId")


class RouteOutcome(StrEnum):
    COMMAND_SENT = "command-sent"
    IGNORED = "ignored"  # a type this router does not act on
    MALFORMED = "malformed"  # logged and acknowledged; not retried


@dataclass(frozen=True, slots=True)
class OutgoingCommand:
    message_id: str
    body: str
    subject: str
    application_properties: dict[str, str]


class CommandSender(Protocol):
    def send(self, command: OutgoingCommand) -> None:
        """Send or raise DependencyUnavailableError (the caller's delivery is retried)."""
        ...


def fulfillment_message(command: FulfilOrderCommand, traceparent: str | None) -> OutgoingCommand:
    properties = {"customerId": command.customer_id, "orderId": command.order_id}
    if trace_id_from(traceparent):
        assert traceparent is not None  # noqa: S101 - trace_id_from checked it
        properties["traceparent"] = traceparent
        properties["Diagnostic-Id"] = traceparent
    return OutgoingCommand(
        message_id=command.event_id,
        body=command.to_json(),
        subject=FULFIL_ORDER,
        application_properties=properties,
    )


class EventRouter:
    def __init__(self, sender: CommandSender) -> None:
        self._sender = sender

    def route(self, event: EventEnvelope) -> RouteOutcome:
        if event.type != PAID:
            if event.type.startswith(ORDER_EVENT_PREFIX):
                log.info("event %s (%s) needs no command", event.id, event.type)
            else:
                log.warning("ignored event %s of unknown type %r", event.id[:128], event.type[:128])
            return RouteOutcome.IGNORED
        problem = self._problem(event)
        if problem is not None:
            log.error(
                "malformed %s event %r not routed (not retried): %s",
                event.type,
                event.id[:128],
                problem,
                extra={"eventId": event.id[:128]},
            )
            return RouteOutcome.MALFORMED
        data = _OrderEventData.model_validate(event.data)
        command = FulfilOrderCommand(
            type=FULFIL_ORDER,
            version=COMMAND_VERSION,
            customer_id=data.customer_id,
            order_id=data.order_id,
            event_id=event.id,
        )
        self._sender.send(fulfillment_message(command, event.traceparent))
        log.info(
            "order %s paid: fulfillment command %s sent",
            data.order_id,
            event.id,
            extra={"orderId": data.order_id, "eventId": event.id},
        )
        return RouteOutcome.COMMAND_SENT

    @staticmethod
    def _problem(event: EventEnvelope) -> str | None:
        if not event.id or len(event.id) > 128 or not event.id.isprintable() or " " in event.id:
            return "missing or invalid id"
        if not isinstance(event.data, Mapping):
            return "data is not an object"
        try:
            data = _OrderEventData.model_validate(event.data)
        except ValidationError as error:
            return "; ".join(f"data.{e['loc'][0]}: {e['msg']}" for e in error.errors()[:3])
        if event.subject is not None and event.subject != subject_of(
            data.customer_id, data.order_id
        ):
            return "subject does not match data.customerId/orderId"
        return None


class ServiceBusCommandSender:
    """CommandSender on the Service Bus SDK. One sender link per process, reused; senders are
    not thread-safe, so sends are serialised (a send is one round trip).

    While Service Bus is unreachable, sends fail fast instead of waiting out the SDK's retries
    one after another: each routing invocation holds one of the worker's threads, which HTTP
    requests share, and Event Grid retries a failed delivery with backoff anyway. So a send
    gives up after SEND_TIMEOUT_SECONDS, one waiting for another's send after LOCK_WAIT_SECONDS,
    and for FAILURE_COOL_DOWN_SECONDS after a failed send the others fail at once."""

    def __init__(self, queue_name: str, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._queue_name = queue_name
        self._lock = threading.Lock()
        self._sender: ServiceBusSender | None = None
        self._clock = clock
        self._failed_at: float | None = None

    def send(self, command: OutgoingCommand) -> None:
        from azure.servicebus import ServiceBusMessage
        from azure.servicebus.exceptions import ServiceBusError

        from shared.clients import get_service_bus_client
        from shared.errors import DependencyUnavailableError

        message = ServiceBusMessage(
            command.body,
            message_id=command.message_id,
            content_type="application/json",
            subject=command.subject,
            application_properties=dict(command.application_properties),  # type: ignore[arg-type]
        )
        from shared.resilience import call_timeout

        self._fail_fast_after_a_failure()
        # Within the invocation's deadline: the routing invocation must answer Event Grid.
        if not self._lock.acquire(timeout=call_timeout(LOCK_WAIT_SECONDS, SERVICE_BUS)):
            raise DependencyUnavailableError(SERVICE_BUS, "an earlier send is still waiting")
        try:
            self._fail_fast_after_a_failure()  # the send this one waited for may have failed
            if self._sender is None:
                self._sender = get_service_bus_client().get_queue_sender(self._queue_name)
            self._sender.send_messages(
                message, timeout=call_timeout(SEND_TIMEOUT_SECONDS, SERVICE_BUS)
            )
            self._failed_at = None
        except ServiceBusError as error:
            self._failed_at = self._clock()
            self._close()
            raise DependencyUnavailableError(SERVICE_BUS, type(error).__name__) from error
        finally:
            self._lock.release()

    def _fail_fast_after_a_failure(self) -> None:
        from shared.errors import DependencyUnavailableError

        failed_at = self._failed_at
        if failed_at is not None and self._clock() - failed_at < FAILURE_COOL_DOWN_SECONDS:
            raise DependencyUnavailableError(SERVICE_BUS, "a send failed moments ago")

    def _close(self) -> None:
        sender, self._sender = self._sender, None
        if sender is not None:
            with contextlib.suppress(Exception):  # the link is discarded either way
                sender.close()

    def close(self) -> None:
        with self._lock:
            self._close()
