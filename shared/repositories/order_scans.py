"""Cross-partition scans of the ``orders`` container for the scheduled tasks.

The API only ever reads one customer's partition; the timers need every partition. Both scans
page with continuation tokens (``max_item_count`` per request), so a run holds one page in
memory however many orders match, and both are served by indexes Bicep declares
(``infra/modules/cosmos.bicep``):

- stale pending orders: ``status = 'pending' AND createdAt <= cutoff ORDER BY createdAt`` uses the
  composite index ``(/status ASC, /createdAt ASC)``;
- one day's orders: ``createdAt >= start AND createdAt < end`` uses the range index on
  ``/createdAt`` (the policy includes ``/*``); only the three fields the report needs are read.

Cosmos continuation tokens of ORDER BY queries are positional on the sort key (and resource id),
not offsets, so orders leaving the result while it is paged (expired, paid) do not make the scan
skip others.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Final, Protocol

from shared.models import OrderStatus
from shared.names import ORDERS_CONTAINER
from shared.repositories.orders import StoredOrder

if TYPE_CHECKING:
    from azure.cosmos import ContainerProxy

STALE_PENDING_QUERY: Final = (
    "SELECT * FROM c WHERE c.status = @status AND c.createdAt <= @cutoff ORDER BY c.createdAt ASC"
)
CREATED_BETWEEN_QUERY: Final = (
    "SELECT c.status, c.currency, c.total FROM c WHERE c.createdAt >= @start AND c.createdAt < @end"
)


class OrderScans(Protocol):
    def stale_pending_pages(self, cutoff: str, page_size: int) -> Iterator[list[StoredOrder]]:
        """Pages of pending orders created at or before ``cutoff`` (ISO timestamp), oldest first."""
        ...

    def created_between_pages(
        self, start: str, end: str, page_size: int
    ) -> Iterator[Sequence[Mapping[str, Any]]]:
        """Pages of ``{status, currency, total}`` of orders created in ``[start, end)``."""
        ...


class CosmosOrderScans:
    def __init__(self, container: ContainerProxy | None = None) -> None:
        if container is None:
            from shared.clients import get_container

            container = get_container(ORDERS_CONTAINER)
        self._container = container

    def _pages(
        self, query: str, parameters: list[dict[str, Any]], page_size: int
    ) -> Iterator[list[dict[str, Any]]]:
        from shared.repositories.cosmos_errors import cosmos_errors

        with cosmos_errors("order", "*"):
            pages: Any = self._container.query_items(
                query,
                parameters=parameters,
                enable_cross_partition_query=True,
                max_item_count=page_size,
            ).by_page()
            for page in pages:
                items = list(page)
                if items:
                    yield items

    def stale_pending_pages(self, cutoff: str, page_size: int) -> Iterator[list[StoredOrder]]:
        parameters: list[dict[str, Any]] = [
            {"name": "@status", "value": OrderStatus.PENDING.value},
            {"name": "@cutoff", "value": cutoff},
        ]
        for page in self._pages(STALE_PENDING_QUERY, parameters, page_size):
            yield [
                StoredOrder({k: v for k, v in doc.items() if not k.startswith("_")}, doc["_etag"])
                for doc in page
            ]

    def created_between_pages(
        self, start: str, end: str, page_size: int
    ) -> Iterator[Sequence[Mapping[str, Any]]]:
        parameters: list[dict[str, Any]] = [
            {"name": "@start", "value": start},
            {"name": "@end", "value": end},
        ]
        yield from self._pages(CREATED_BETWEEN_QUERY, parameters, page_size)
