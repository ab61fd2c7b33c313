"""Cosmos DB failures translated into the app's errors, in one place.

- 404 -> NotFoundError, 409 -> AlreadyExistsError, 412 -> PreconditionFailedError.
- Throttling (429, after the SDK's own retries), 503, 408, timeouts and connection errors ->
  DependencyUnavailableError carrying the service's retry hint, so the API answers 503 with
  ``Retry-After`` and messaging retries later.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager

from azure.core.exceptions import ServiceRequestError, ServiceResponseError
from azure.cosmos.exceptions import CosmosHttpResponseError

from shared.errors import (
    AlreadyExistsError,
    DependencyUnavailableError,
    NotFoundError,
    PreconditionFailedError,
)

COSMOS = "Cosmos DB"
TRANSIENT_STATUS = frozenset({408, 429, 449, 500, 502, 503, 504})
DEFAULT_RETRY_AFTER_SECONDS = 5


def retry_after_seconds(error: CosmosHttpResponseError) -> int:
    """Cosmos's own hint (``x-ms-retry-after-ms``), rounded up to whole seconds."""
    raw = (error.headers or {}).get("x-ms-retry-after-ms")
    try:
        seconds = math.ceil(float(raw) / 1000) if raw is not None else DEFAULT_RETRY_AFTER_SECONDS
    except (ValueError, OverflowError):  # not a number, or "inf"
        seconds = DEFAULT_RETRY_AFTER_SECONDS
    return min(max(1, seconds), 3600)


@contextmanager
def cosmos_errors(resource: str, identifier: str) -> Iterator[None]:
    try:
        yield
    except CosmosHttpResponseError as error:
        status = error.status_code
        if status == 404:
            raise NotFoundError(resource, identifier) from None
        if status == 409:
            raise AlreadyExistsError(resource, identifier) from None
        if status == 412:
            raise PreconditionFailedError(resource, identifier) from None
        if status in TRANSIENT_STATUS or not status:
            raise DependencyUnavailableError(
                COSMOS, f"HTTP {status}", retry_after_seconds(error)
            ) from error
        raise
    except (ServiceRequestError, ServiceResponseError, TimeoutError) as error:
        raise DependencyUnavailableError(COSMOS, type(error).__name__) from error
