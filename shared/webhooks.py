"""Payment webhook signatures: ``X-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256>``.

The signed message is ``"<t>.<raw body>"``, keyed with the secret ``payment-webhook-secret``.
Every current secret version is tried (current and previous), so the secret can be rotated
without rejecting webhooks signed a moment earlier. The timestamp must be within the tolerance
either way (an old one is a replay; a far-future one is a forgery or a broken clock), and digests
are compared in constant time.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
import uuid
from collections.abc import Mapping, Sequence
from typing import Any, Final

from shared.errors import WebhookSignatureError

SIGNATURE_HEADER: Final = "X-Signature"
TOLERANCE_SECONDS: Final = 300
SCHEME: Final = "v1"
MAX_HEADER_LENGTH: Final = 1024


def compute_signature(raw_body: bytes, secret: str, timestamp: int) -> str:
    message = f"{timestamp}.".encode() + raw_body
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def signature_header(raw_body: bytes, secret: str, timestamp: int) -> str:
    """The header a provider sends (used by tests and the smoke tests)."""
    return f"t={timestamp},{SCHEME}={compute_signature(raw_body, secret, timestamp)}"


def _parse(header: str) -> tuple[int, list[str]]:
    timestamp: int | None = None
    signatures: list[str] = []
    for part in header.split(","):
        name, _, value = part.strip().partition("=")
        # ASCII digits only: str.isdigit() is also true for superscripts, which int() refuses.
        if name == "t" and value.isascii() and value.isdigit() and len(value) <= 12:
            timestamp = int(value)
        elif name == SCHEME and value and value.isascii():  # compare_digest refuses non-ASCII
            signatures.append(value.strip().lower())
    if timestamp is None or not signatures:
        raise WebhookSignatureError(f"malformed {SIGNATURE_HEADER} header: need t=... and v1=...")
    return timestamp, signatures


def verify_signature(
    header: str | None,
    raw_body: bytes,
    secrets: Sequence[str],
    *,
    now: float,
    tolerance_seconds: int = TOLERANCE_SECONDS,
) -> int:
    """Check the header against every secret version; returns the signed timestamp."""
    if not header:
        raise WebhookSignatureError(f"missing {SIGNATURE_HEADER} header")
    if len(header) > MAX_HEADER_LENGTH:
        raise WebhookSignatureError(f"{SIGNATURE_HEADER} header too long")
    timestamp, signatures = _parse(header)
    if abs(now - timestamp) > tolerance_seconds:
        raise WebhookSignatureError(
            f"timestamp outside the {tolerance_seconds // 60}-minute tolerance (replayed or "
            "delayed delivery)"
        )
    matched = False
    for secret in secrets:
        expected = compute_signature(raw_body, secret, timestamp)
        for candidate in signatures:
            # No early exit: the time taken does not depend on which pair matched.
            matched |= hmac.compare_digest(expected, candidate)
    if not matched:
        raise WebhookSignatureError("signature does not match")
    return timestamp


def signed_payment_succeeded(
    order: Mapping[str, Any], secret: str, *, event_id: str | None = None
) -> tuple[bytes, dict[str, str]]:
    """A ``payment.succeeded`` event paying ``order`` (as the API returns it) in full, signed now
    as the payment provider signs it: the raw body and its headers. For clients and tests."""
    body = json.dumps(
        {
            "id": event_id or f"evt_{uuid.uuid4().hex}",
            "type": "payment.succeeded",
            "data": {
                "customerId": order["customerId"],
                "orderId": order["id"],
                "amount": order["total"],
                "currency": order["currency"],
            },
        }
    ).encode()
    headers = {
        "Content-Type": "application/json",
        SIGNATURE_HEADER: signature_header(body, secret, int(time.time())),
    }
    return body, headers
