"""Dead-letter watch: how many messages sit in a Service Bus queue's dead-letter sub-queue.

The depth is counted by *peeking* through the sub-queue in pages (by sequence number). Peek
neither locks nor consumes: the messages stay where they are for an operator to inspect and
resubmit. The alternative, ``ServiceBusAdministrationClient.get_queue_runtime_properties()
.dead_letter_message_count``, is one call but needs the *Manage* right on the namespace; the
app's identity has only the data roles (send and receive) it needs, and a watch is no reason
to give it the right to delete queues. Peeking needs only receive rights (Azure Service Bus Data
Receiver). Its cost is one request per page: the count is capped at ``limit`` messages (then
reported as "at least"), which is far beyond the point where someone must look anyway.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final, Protocol

from shared.metrics import DEAD_LETTER_DEPTH, record_gauge
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
