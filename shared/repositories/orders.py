"""Order storage: the interface services use, and its Cosmos DB implementation.

Documents live in the ``orders`` container, partitioned by ``/customerId``, so every API
operation is a single-partition point read, write or query (1 request each; see the cost tests).
Conditional writes use the document's ETag: a concurrent change makes the write fail with
PreconditionFailedError instead of silently overwriting it.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from shared.errors import InvalidContinuationError
from shared.names import ORDERS_CONTAINER

if TYPE_CHECKING:
    from azure.cosmos import ContainerProxy

Document = dict[str, Any]
ORDER = "order"


@dataclass(frozen=True, slots=True)
class StoredOrder:
    """An order document and the ETag it had when read or written."""

    document: Document
    etag: str

    @property
    def id(self) -> str:
        return str(self.document["id"])

    @property
    def customer_id(self) -> str:
        return str(self.document["customerId"])


@dataclass(frozen=True, slots=True)
class OrderPage:
    items: list[StoredOrder]
    continuation: str | None


class OrderRepository(Protocol):
    def create(self, document: Document) -> StoredOrder: ...

    def get(self, customer_id: str, order_id: str) -> StoredOrder: ...

    def replace(self, document: Document, etag: str) -> StoredOrder: ...

    def clear_outbox(self, stored: StoredOrder) -> StoredOrder | None: ...

    def list_page(
        self, customer_id: str, status: str | None, limit: int, continuation: str | None
    ) -> OrderPage: ...

    def with_pending_events(self, limit: int) -> Iterator[StoredOrder]: ...


def _strip_system(document: Mapping[str, Any]) -> Document:
    return {k: v for k, v in document.items() if not k.startswith("_")}


def encode_continuation(customer_id: str, status: str | None, token: str) -> str:
    """Wrap Cosmos's token with the query it belongs to, as one opaque URL-safe string."""
    payload = json.dumps({"c": customer_id, "s": status, "t": token}, separators=(",", ":"))
    return base64.urlsafe_b64encode(payload.encode()).decode().rstrip("=")


def decode_continuation(customer_id: str, status: str | None, value: str) -> str:
    """The Cosmos token inside ``value``; refuses tokens issued for another query."""
    try:
        padded = value + "=" * (-len(value) % 4)
        payload = json.loads(base64.urlsafe_b64decode(padded.encode("ascii")))
    except (ValueError, binascii.Error, UnicodeError):
        raise InvalidContinuationError from None
    if (
        not isinstance(payload, dict)
        or payload.get("c") != customer_id
        or payload.get("s") != status
        or not isinstance(payload.get("t"), str)
    ):
        raise InvalidContinuationError
    token: str = payload["t"]
    return token


class CosmosOrderRepository:
    """OrderRepository on a Cosmos DB container proxy (sync SDK)."""

    def __init__(self, container: ContainerProxy | None = None) -> None:
        if container is None:
            from shared.clients import get_container

            container = get_container(ORDERS_CONTAINER)
        self._container = container

    def _stored(self, document: Mapping[str, Any]) -> StoredOrder:
        return StoredOrder(_strip_system(document), str(document["_etag"]))

    def create(self, document: Document) -> StoredOrder:
        from shared.repositories.cosmos_errors import cosmos_errors

        with cosmos_errors(ORDER, document["id"]):
            return self._stored(self._container.create_item(document))

    def get(self, customer_id: str, order_id: str) -> StoredOrder:
        from shared.repositories.cosmos_errors import cosmos_errors

        with cosmos_errors(ORDER, order_id):
            return self._stored(self._container.read_item(order_id, partition_key=customer_id))

    def replace(self, document: Document, etag: str) -> StoredOrder:
        from azure.core import MatchConditions

        from shared.repositories.cosmos_errors import cosmos_errors

        with cosmos_errors(ORDER, document["id"]):
            saved = self._container.replace_item(
                document["id"], document, etag=etag, match_condition=MatchConditions.IfNotModified
            )
            return self._stored(saved)

    def clear_outbox(self, stored: StoredOrder) -> StoredOrder | None:
        """Empty the outbox if the order is unchanged since ``stored``: the new state, or None
        when it changed meanwhile.

        A concurrent writer that changed the order also appended its own event, and publishes
        (or leaves for the relay) the whole outbox itself; re-publishing is safe (event ids).
        """
        from azure.core import MatchConditions

        from shared.errors import PreconditionFailedError
        from shared.repositories.cosmos_errors import cosmos_errors

        try:
            with cosmos_errors(ORDER, stored.id):
                patched = self._container.patch_item(
                    stored.id,
                    partition_key=stored.customer_id,
                    patch_operations=[{"op": "set", "path": "/outbox", "value": []}],
                    etag=stored.etag,
                    match_condition=MatchConditions.IfNotModified,
                )
        except PreconditionFailedError:
            return None
        return self._stored(patched)

    def list_page(
        self, customer_id: str, status: str | None, limit: int, continuation: str | None
    ) -> OrderPage:
        from shared.repositories.cosmos_errors import cosmos_errors

        query = "SELECT * FROM c WHERE c.customerId = @customerId"
        parameters: list[dict[str, Any]] = [{"name": "@customerId", "value": customer_id}]
        if status is not None:
            query += " AND c.status = @status"
            parameters.append({"name": "@status", "value": status})
        query += " ORDER BY c.createdAt DESC"
        token = decode_continuation(customer_id, status, continuation) if continuation else None
        with cosmos_errors(ORDER, customer_id):
            pages: Any = self._container.query_items(
                query,
                parameters=parameters,
                partition_key=customer_id,
                max_item_count=limit,
            ).by_page(token)
            items = [self._stored(doc) for doc in next(pages, [])]
            next_token = pages.continuation_token
        return OrderPage(
            items=items,
            continuation=encode_continuation(customer_id, status, next_token)
            if next_token
            else None,
        )

    def with_pending_events(self, limit: int) -> Iterator[StoredOrder]:
        """Orders whose outbox still holds events (cross-partition; for the outbox relay)."""
        from shared.repositories.cosmos_errors import cosmos_errors

        with cosmos_errors(ORDER, "*"):
            documents = self._container.query_items(
                "SELECT TOP @limit * FROM c WHERE ARRAY_LENGTH(c.outbox) > 0",
                parameters=[{"name": "@limit", "value": limit}],
                enable_cross_partition_query=True,
            )
            for document in documents:
                yield self._stored(document)
