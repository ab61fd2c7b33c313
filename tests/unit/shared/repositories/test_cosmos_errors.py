"""Retry hints read from Cosmos DB's responses: numbers only, bounded, never an error."""

from __future__ import annotations

import pytest
from azure.cosmos.exceptions import CosmosHttpResponseError

from shared.repositories.cosmos_errors import DEFAULT_RETRY_AFTER_SECONDS, retry_after_seconds


@pytest.mark.parametrize(
    ("hint", "seconds"),
    [
        ("1500", 2),
        ("0", 1),
        ("inf", DEFAULT_RETRY_AFTER_SECONDS),
        ("nan", 5),
        ("x", 5),
        ("1e12", 3600),
        (None, DEFAULT_RETRY_AFTER_SECONDS),
    ],
)
def test_cosmos_retry_hint(hint: str | None, seconds: int) -> None:
    error = CosmosHttpResponseError(status_code=429, message="throttled")
    error.headers = {"x-ms-retry-after-ms": hint} if hint is not None else {}

    assert retry_after_seconds(error) == seconds
