"""Dead-letter watch: how many messages sit in a Service Bus queue's dead-letter sub-queue.

The depth is counted by *peeking* through the sub-queue in pages (by sequence number). Peek
neither locks nor consumes: the messages stay where they are for an operator to inspect and
resubmit. The alternative, ``ServiceBusAdministrationClient.get_queue_runtime_properties()
.dead_letter_message_count``, is one call but needs the *Manage* right on the namespace; the
app's identity has only the data roles (send and receive) it needs, and a watch is no reason
to give it the right to delete queues. Peeking needs only receive rights (Azure Service Bus Data
Receiver). Its cost is one request per page: the count is capped at ``limit`` messages (then
reported as "at least"), which is far beyond the point where someone must look anyway.

The same watch reports the storage poison queue of import chunks (chunks the host gave up on
after maxDequeueCount). Azure Monitor's storage metric QueueMessageCount covers the whole
account, not one queue, so an alert on this queue needs the app's own gauge. Its depth is the
queue's approximate message count (one Get Queue Metadata request, allowed by the app's Storage
Queue Data Contributor role).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final, Protocol

from shared.metrics import DEAD_LETTER_DEPTH, POISON_QUEUE_DEPTH, record_gauge
from shared.observability import get_logger

log = get_logger("deadletters")

PAGE_SIZE: Final = 250
DEFAULT_LIMIT: Final = 10_000


class DeadLetterPeeker(Protocol):
    def peek(self, from_sequence_number: int, max_count: int) -> Sequence[int]:
        """Sequence numbers of up to ``max_count`` dead-lettered messages, in order, starting
        at ``from_sequence_number``; empty when there are none left."""
        ...


@dataclass(frozen=True, slots=True)
class DeadLetterDepth:
    queue: str
    count: int
    capped: bool  # True: there are at least ``count`` messages

    @property
    def display(self) -> str:
        return f">={self.count}" if self.capped else str(self.count)


def count_dead_letters(
    peeker: DeadLetterPeeker, queue: str, *, page_size: int = PAGE_SIZE, limit: int = DEFAULT_LIMIT
) -> DeadLetterDepth:
    count = 0
    next_sequence = 0
    while count < limit:
        sequence_numbers = peeker.peek(next_sequence, min(page_size, limit - count))
        if not sequence_numbers:
            return DeadLetterDepth(queue, count, capped=False)
        newest = max(sequence_numbers)
        if newest < next_sequence:
            raise RuntimeError("the broker returned messages before the requested sequence number")
        count += len(sequence_numbers)
        next_sequence = newest + 1
    return DeadLetterDepth(queue, count, capped=True)


def watch_dead_letters(
    peeker: DeadLetterPeeker, queue: str, *, page_size: int = PAGE_SIZE, limit: int = DEFAULT_LIMIT
) -> DeadLetterDepth:
    """Count, record the gauge, and warn when anything is dead-lettered."""
    depth = count_dead_letters(peeker, queue, page_size=page_size, limit=limit)
    if depth.count:
        message = (
            f"{depth.display} messages in the dead-letter queue of '{queue}': inspect and "
            "resubmit or discard them"
        )
        level = logging.WARNING
    else:
        message = f"no messages in the dead-letter queue of '{queue}'"
        level = logging.INFO
    record_gauge(
        DEAD_LETTER_DEPTH,
        depth.count,
        message,
        attributes={"queue": queue, "capped": str(depth.capped).lower()},
        level=level,
        logger=log,
    )
    return depth


class QueueDepthSource(Protocol):
    def approximate_message_count(self, queue: str) -> int:
        """Messages in ``queue`` (0 when it does not exist yet)."""
        ...


def watch_poison_queue(source: QueueDepthSource, queue: str) -> int:
    """Record the poison queue's depth as a gauge, and warn when anything is in it."""
    depth = source.approximate_message_count(queue)
    if depth:
        message = (
            f"{depth} messages in the poison queue '{queue}': find the cause in their import's "
            "logs, then requeue or delete them"
        )
        level = logging.WARNING
    else:
        message = f"no messages in the poison queue '{queue}'"
        level = logging.INFO
    record_gauge(
        POISON_QUEUE_DEPTH, depth, message, attributes={"queue": queue}, level=level, logger=log
    )
    return depth


class StorageQueueDepth:
    """QueueDepthSource on ``azure-storage-queue`` (the app's ImportsStorage account)."""

    def approximate_message_count(self, queue: str) -> int:
        from azure.core.exceptions import ResourceNotFoundError

        from shared.clients import get_queue_service

        try:
            properties = get_queue_service().get_queue_client(queue).get_queue_properties()
        except ResourceNotFoundError:
            return 0  # the host creates a poison queue when it first parks a message
        return int(properties.approximate_message_count or 0)


class ServiceBusDeadLetterPeeker:
    """DeadLetterPeeker on ``azure-servicebus``: a receiver on the ``$DeadLetterQueue``
    sub-queue, used only to peek."""

    def __init__(self, queue: str, client: Any | None = None) -> None:
        self._queue = queue
        self._client = client
        self._receiver: Any | None = None

    def __enter__(self) -> ServiceBusDeadLetterPeeker:
        from azure.servicebus import ServiceBusSubQueue

        if self._client is None:
            from shared.clients import get_service_bus_client

            self._client = get_service_bus_client()
        self._receiver = self._client.get_queue_receiver(
            self._queue, sub_queue=ServiceBusSubQueue.DEAD_LETTER
        )
        self._receiver.__enter__()
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._receiver is not None:
            self._receiver.__exit__(*exc_info)
            self._receiver = None

    def peek(self, from_sequence_number: int, max_count: int) -> Sequence[int]:
        if self._receiver is None:
            raise RuntimeError("use ServiceBusDeadLetterPeeker as a context manager")
        messages = self._receiver.peek_messages(
            max_message_count=max_count, sequence_number=from_sequence_number
        )
        return [int(message.sequence_number) for message in messages]
