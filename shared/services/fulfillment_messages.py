"""One delivery of a fulfillment message: parse, fulfil with in-process retries, park poison.

What happens to a message (the Service Bus trigger completes it when the function returns and
abandons it when the function raises):

- **success** (fulfilled, backordered, or nothing left to do): return -> completed;
- **transient failure** (Cosmos throttled or unreachable, an ETag race lost five times, the
  order not yet readable as paid): retried here with exponential backoff and jitter
  (:data:`RETRY_DELAYS_SECONDS`), then raised -> abandoned -> redelivered by Service Bus, up to
  the queue's max delivery count, after which Service Bus dead-letters it
  (``MaxDeliveryCountExceeded``): nothing is lost;
- **poison** (bad schema, unknown order, an order that was never paid): never retried. It is
  *parked* at its first delivery: a copy goes to the ``fulfillment-parked`` queue with the
  reason and description as application properties, and the original is completed. Why parked
  rather than dead-lettered, and the trade-offs: docs/EVENTS.md.

Which of these an app error gets is what its type declares (``on_message``, see
``shared.delivery``): :class:`PoisonMessageError` parks, the others are retried.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Final, Protocol
from uuid import UUID

from shared.delivery import outcome_of
from shared.errors import (
    DependencyUnavailableError,
    MessageOutcome,
    OrderflowError,
    PreconditionFailedError,
)
from shared.observability import get_logger
from shared.services.fulfillment import (
    FulfillmentService,
    OrderNotReadyError,
    PoisonMessageError,
    parse_command,
)

# Short: a sleeping retry holds one of the worker's threads (shared with HTTP requests); a
# longer outage is bridged by Service Bus redelivery, not by sleeping here.
RETRY_DELAYS_SECONDS: Final = (0.1, 0.4, 1.0)
PARKED_REASON: Final = "DeadLetterReason"  # the names Service Bus uses on dead-lettered messages
PARKED_DESCRIPTION: Final = "DeadLetterErrorDescription"
TRANSIENT_ERRORS: Final = (DependencyUnavailableError, PreconditionFailedError, OrderNotReadyError)

log = get_logger("fulfillment")


class DeliveryOutcome(StrEnum):
    PROCESSED = "processed"
    PARKED = "parked"
    COMPLETED = "completed"  # an error that declares there is nothing left to do


@dataclass(frozen=True, slots=True)
class ReceivedMessage:
    """What the function got from the trigger, independent of azure.functions."""

    body: bytes
    message_id: str | None
    delivery_count: int
    application_properties: Mapping[str, Any]


class ParkingLot(Protocol):
    def park(self, message: ReceivedMessage, reason: str, description: str) -> None:
        """Keep ``message`` for an operator, with why it cannot be processed; raise if it
        could not be kept (the delivery then fails and is retried, so nothing is lost)."""
        ...


def _transient_retries(
    attempt: Callable[[], Any], sleep: Callable[[float], None], message_id: str | None
) -> Any:
    for delay in (*RETRY_DELAYS_SECONDS, None):
        try:
            return attempt()
        except TRANSIENT_ERRORS as error:
            if delay is None:
                log.warning(
                    "message %s failed transiently; Service Bus will redeliver it: %s",
                    message_id,
                    error,
                )
                raise
            sleep(delay * random.uniform(0.8, 1.2))  # noqa: S311 - jitter, not security
    raise AssertionError("unreachable")  # pragma: no cover


def _parking_reason(error: OrderflowError) -> tuple[str, str]:
    """The reason and description a parked message carries."""
    if isinstance(error, PoisonMessageError):
        return error.reason.value, error.description
    return type(error).__name__.removesuffix("Error"), str(error)[:1000]


def handle_delivery(
    message: ReceivedMessage,
    fulfillment: FulfillmentService,
    parking: ParkingLot,
    *,
    traceparent: str | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> DeliveryOutcome:
    try:
        command = parse_command(message.body)
        result = _transient_retries(
            lambda: fulfillment.fulfil(command, traceparent=traceparent), sleep, message.message_id
        )
    except OrderflowError as error:
        outcome = outcome_of(error)  # the error type's declaration (shared.delivery)
        if outcome is MessageOutcome.RETRY:
            raise
        if outcome is MessageOutcome.COMPLETE:
            log.info(
                "fulfillment message %s completed, nothing to do: %s",
                message.message_id,
                error,
                extra={"messageId": message.message_id},
            )
            return DeliveryOutcome.COMPLETED
        reason, description = _parking_reason(error)
        log.error(
            "fulfillment message %s parked at delivery %d: %s",
            message.message_id,
            message.delivery_count,
            error,
            extra={"messageId": message.message_id, "reason": reason},
        )
        parking.park(message, reason, description)
        return DeliveryOutcome.PARKED
    log.info(
        "fulfillment message %s: order %s %s",
        message.message_id,
        result.order.id,
        result.outcome.value,
        extra={"messageId": message.message_id, "orderId": result.order.id},
    )
    return DeliveryOutcome.PROCESSED


class ServiceBusParkingLot:
    """ParkingLot on a Service Bus queue (``fulfillment-parked``)."""

    def __init__(self, queue_name: str) -> None:
        self._queue_name = queue_name

    def park(self, message: ReceivedMessage, reason: str, description: str) -> None:
        from azure.servicebus import ServiceBusMessage
        from azure.servicebus.exceptions import ServiceBusError

        from shared.clients import get_service_bus_client

        properties: dict[str | bytes, int | float | bytes | bool | str | UUID] = {
            str(k): v
            for k, v in message.application_properties.items()
            if isinstance(v, str | int | float | bool)
        }
        properties.update(
            {
                PARKED_REASON: reason,
                PARKED_DESCRIPTION: description,
                "OriginalDeliveryCount": message.delivery_count,
            }
        )
        parked = ServiceBusMessage(
            message.body,
            message_id=message.message_id,
            application_properties=properties,
        )
        try:
            with get_service_bus_client().get_queue_sender(self._queue_name) as sender:
                sender.send_messages(parked)
        except ServiceBusError as error:
            raise DependencyUnavailableError("Service Bus", type(error).__name__) from error
