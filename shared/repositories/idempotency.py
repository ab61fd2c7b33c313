"""Keys of work already done (for example processed webhook event ids), in the ``idempotency``
container (partition key ``/key``). Documents expire through the container's TTL."""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from shared.names import IDEMPOTENCY_CONTAINER

if TYPE_CHECKING:
    from azure.cosmos import ContainerProxy

DEFAULT_TTL_SECONDS = 7 * 24 * 3600
KEY = "idempotency key"


class IdempotencyStore(Protocol):
    def seen(self, key: str) -> bool: ...

    def remember(self, key: str, ttl_seconds: int = DEFAULT_TTL_SECONDS) -> None: ...


def _document_id(key: str) -> str:
    # Cosmos ids cannot contain '/', '\\', '?' or '#'; keys are ours, but make that certain.
    return key.translate(str.maketrans("/\\?#", "____"))


class CosmosIdempotencyStore:
    def __init__(self, container: ContainerProxy | None = None) -> None:
        if container is None:
            from shared.clients import get_container

            container = get_container(IDEMPOTENCY_CONTAINER)
        self._container = container

    def seen(self, key: str) -> bool:
        from shared.errors import NotFoundError
        from shared.repositories.cosmos_errors import cosmos_errors

        try:
            with cosmos_errors(KEY, key):
                self._container.read_item(_document_id(key), partition_key=key)
        except NotFoundError:
            return False
        return True

    def remember(self, key: str, ttl_seconds: int = DEFAULT_TTL_SECONDS) -> None:
        from shared.repositories.cosmos_errors import cosmos_errors

        with cosmos_errors(KEY, key):
            self._container.upsert_item({"id": _document_id(key), "key": key, "ttl": ttl_seconds})
