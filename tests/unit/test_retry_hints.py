"""Retry hints read from dependencies' responses: numbers only, bounded, never an error."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from azure.cosmos.exceptions import CosmosHttpResponseError

from shared.repositories.cosmos_errors import DEFAULT_RETRY_AFTER_SECONDS, retry_after_seconds
from shared.secrets import _retry_after


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


@pytest.mark.parametrize(
    ("header", "seconds"), [("7", 7), (" 3 ", 3), ("²", 5), ("-1", 5), ("99999", 3600), (None, 5)]
)
def test_key_vault_retry_after_header(header: str | None, seconds: int) -> None:
    headers = {"Retry-After": header} if header is not None else {}
    error = SimpleNamespace(response=SimpleNamespace(headers=headers))

    assert _retry_after(error) == seconds  # type: ignore[arg-type]
