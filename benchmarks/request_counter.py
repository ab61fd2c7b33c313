"""Count the Azure SDKs' HTTP requests per service, at the transport, in front of the real one.

Every sync Azure SDK the app uses (azure-cosmos, azure-eventgrid, azure-storage-*) sends
through ``azure.core``'s ``RequestsTransport``. tests/integration/test_api_cost_and_faults.py
passes a counting transport to the Cosmos client; here the same counting wraps
``RequestsTransport.send`` itself, because basic-topic ``EventGridPublisherClient``\\ s drop
constructor options (``transport=`` included), and so that the app creates its clients exactly
as it does in Azure. Each request still goes to the real stand-in.

What counts:

- ``cosmos``: data-plane requests (paths with ``/docs``: reads, writes, patches, query pages),
  the ones that cost request units. Account, container and partition-key-range metadata reads
  are cached by the SDK after the first use, so a benchmark warms its clients up first.
- ``eventgrid``: publish calls to the topic endpoint (``/api/events``).
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlsplit

COSMOS = "cosmos"
EVENT_GRID = "eventgrid"


class RequestCounter:
    def __init__(self, *, cosmos_port: int, eventgrid_port: int) -> None:
        self._services = {cosmos_port: COSMOS, eventgrid_port: EVENT_GRID}
        self._lock = threading.Lock()
        self._counts: Counter[str] = Counter()

    def _classify(self, url: str) -> str | None:
        parts = urlsplit(url)
        service = self._services.get(parts.port or 0)
        if service == COSMOS and "/docs" not in parts.path:
            return None  # metadata, cached by the SDK
        if service == EVENT_GRID and not parts.path.rstrip("/").endswith("/api/events"):
            return None
        return service

    def _record(self, url: str) -> None:
        service = self._classify(url)
        if service is not None:
            with self._lock:
                self._counts[service] += 1

    @contextmanager
    def installed(self) -> Iterator[RequestCounter]:
        """Count while the block runs; the transport is restored afterwards."""
        from azure.core.pipeline.transport import RequestsTransport

        original_send = RequestsTransport.send
        counter = self

        def counting_send(transport: Any, request: Any, **kwargs: Any) -> Any:
            counter._record(str(request.url))
            return original_send(transport, request, **kwargs)

        RequestsTransport.send = counting_send
        try:
            yield self
        finally:
            RequestsTransport.send = original_send

    def measure(self, action: Callable[[], object]) -> Counter[str]:
        """The requests ``action`` sent, per service."""
        with self._lock:
            self._counts.clear()
        action()
        with self._lock:
            return Counter(self._counts)
