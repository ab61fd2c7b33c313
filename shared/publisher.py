"""Publishing CloudEvents to the Event Grid custom topic (``azure-eventgrid``).

In Azure the client authenticates with the app's managed identity (role EventGrid Data Sender);
locally a key is accepted for a loopback topic endpoint only (see ``shared.config``).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from typing import Any, Protocol

from shared.errors import DependencyUnavailableError

EVENT_GRID = "Event Grid"
_EVENTGRID_MODEL_LOGGER = "azure.eventgrid._legacy._generated._serialization"
PUBLISH_RETRY_TOTAL = 2
PUBLISH_TIMEOUT_SECONDS = 10
# Event Grid accepts at most 1 MB (1,048,576 bytes) per publish request (an array of events);
# a margin covers the JSON array's brackets and what the SDK adds to each event.
MAX_BATCH_BYTES = 1_000_000


def event_batches(events: Sequence[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    """``events`` in order, split into as few groups as fit MAX_BATCH_BYTES each (an event
    that alone exceeds it goes alone, and Event Grid refuses it as it would anyway)."""
    batches: list[list[dict[str, Any]]] = []
    current: list[dict[str, Any]] = []
    size = 0
    for event in events:
        event_size = len(json.dumps(event, separators=(",", ":"), default=str).encode()) + 1
        if current and size + event_size > MAX_BATCH_BYTES:
            batches.append(current)
            current, size = [], 0
        current.append(event)
        size += event_size
    if current:
        batches.append(current)
    return batches


class EventPublisher(Protocol):
    def publish(self, events: Sequence[dict[str, Any]]) -> None:
        """Send every event, or raise DependencyUnavailableError (nothing is partially lost:
        callers keep the events in the outbox until this returns)."""
        ...


class EventGridPublisher:
    """EventPublisher on ``EventGridPublisherClient`` (basic custom topic, CloudEvents schema)."""

    def __init__(self, client: Any | None = None) -> None:
        self._client = client

    def _get_client(self) -> Any:
        if self._client is None:
            from shared.clients import get_eventgrid_client

            self._client = get_eventgrid_client()
        return self._client

    def publish(self, events: Sequence[dict[str, Any]]) -> None:
        if not events:
            return
        from azure.core.exceptions import AzureError
        from azure.core.messaging import CloudEvent

        from shared.errors import ConfigurationError

        try:
            client = self._get_client()
        except ConfigurationError as error:
            # Without a topic the events wait in the outbox; the state change still stands.
            raise DependencyUnavailableError(EVENT_GRID, "not configured") from error
        # Basic-topic clients ignore constructor options, so retry and timeout go per call; the
        # SDK also offers those keywords to its CloudEvent model, which logs each as unknown.
        logging.getLogger(_EVENTGRID_MODEL_LOGGER).setLevel(logging.ERROR)
        # Events produced together go out together: one request per MAX_BATCH_BYTES. A failure
        # part way leaves every event in its outbox, so the ones already sent go again later
        # (same ids: consumers drop the repeats).
        for batch in event_batches(events):
            cloud_events: list[CloudEvent[Any]] = [CloudEvent.from_dict(dict(e)) for e in batch]
            try:
                client.send(
                    cloud_events,
                    retry_total=PUBLISH_RETRY_TOTAL,
                    connection_timeout=PUBLISH_TIMEOUT_SECONDS,
                    read_timeout=PUBLISH_TIMEOUT_SECONDS,
                )
            except AzureError as error:
                raise DependencyUnavailableError(EVENT_GRID, type(error).__name__) from error
