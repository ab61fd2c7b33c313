"""Payment provider callbacks: verify, de-duplicate, check the amount, mark the order paid.

A repeated event id is a no-op (recorded in the idempotency container after the order is
updated; if the process dies in between, the order itself remembers the event id, so the
redelivery is still recognised). An amount or currency that does not match the order is
logged and rejected, never applied.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum
from typing import Any, Final, Protocol

from pydantic import BaseModel, ConfigDict, Field

from shared.errors import PaymentMismatchError
from shared.models import Currency, Identifier, Money, OrderStatus
from shared.names import PAYMENT_WEBHOOK_SECRET
from shared.observability import get_logger
from shared.repositories.idempotency import IdempotencyStore
from shared.repositories.orders import StoredOrder
from shared.services.orders import OrderService, timestamp, utc_now
from shared.webhooks import verify_signature

PAYMENT_SUCCEEDED: Final = "payment.succeeded"
log = get_logger("payments")


class PaymentData(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True, populate_by_name=True)

    customer_id: Identifier = Field(alias="customerId")
    order_id: Identifier = Field(alias="orderId")
    amount: Money
    currency: Currency


class _PaymentSucceededData(BaseModel):
    """``data`` validated in its place in the body, so error pointers read ``#/data/...``."""

    data: PaymentData


class PaymentEvent(BaseModel):
    """The provider's envelope. Unknown fields are ignored: providers add fields over time."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    id: str = Field(min_length=1, max_length=200, pattern=r"^[\x21-\x7e]+$")
    type: str = Field(min_length=1, max_length=100)
    data: dict[str, Any]


class WebhookOutcome(StrEnum):
    APPLIED = "applied"
    DUPLICATE = "duplicate"
    IGNORED = "ignored"


@dataclass(frozen=True, slots=True)
class WebhookResult:
    outcome: WebhookOutcome
    order: StoredOrder | None = None


class SecretVersionsSource(Protocol):
    def get_versions(self, name: str) -> Any: ...


class PaymentService:
    def __init__(
        self,
        orders: OrderService,
        idempotency: IdempotencyStore,
        secrets: SecretVersionsSource,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._orders = orders
        self._idempotency = idempotency
        self._secrets = secrets
        self._clock = clock

    def verify(self, signature: str | None, raw_body: bytes) -> None:
        """Raises WebhookSignatureError (401), or DependencyUnavailableError (503) when the
        secret cannot be read."""
        versions = self._secrets.get_versions(PAYMENT_WEBHOOK_SECRET)
        verify_signature(signature, raw_body, versions.values, now=self._clock())

    def apply(self, event: PaymentEvent, *, traceparent: str | None = None) -> WebhookResult:
        if event.type != PAYMENT_SUCCEEDED:
            log.info("ignored payment event %s of type %s", event.id, event.type)
            return WebhookResult(WebhookOutcome.IGNORED)
        payment = _PaymentSucceededData.model_validate({"data": event.data}).data
        key = f"payment-event:{event.id}"
        if self._idempotency.seen(key):
            return WebhookResult(WebhookOutcome.DUPLICATE)
        stored = self._orders.get(payment.customer_id, payment.order_id)
        if (stored.document.get("payment") or {}).get("eventId") == event.id:
            self._idempotency.remember(key)  # the order was paid; only the record was missing
            return WebhookResult(WebhookOutcome.DUPLICATE, stored)
        expected_total = Decimal(stored.document["total"])
        if payment.amount != expected_total or payment.currency != stored.document["currency"]:
            detail = (
                f"paid {payment.amount} {payment.currency}, order total is "
                f"{expected_total} {stored.document['currency']}"
            )
            log.warning(
                "payment event %s rejected: %s",
                event.id,
                detail,
                extra={"orderId": stored.id, "paymentEventId": event.id},
            )
            raise PaymentMismatchError(stored.id, detail)
        paid = self._orders.transition(
            stored,
            OrderStatus.PAID,
            traceparent=traceparent,
            changes={
                "payment": {
                    "eventId": event.id,
                    "amount": str(payment.amount),
                    "currency": payment.currency,
                    "receivedAt": timestamp(utc_now()),
                }
            },
        )
        self._idempotency.remember(key)
        return WebhookResult(WebhookOutcome.APPLIED, paid)
