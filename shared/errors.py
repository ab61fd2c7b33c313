"""Error types of the app's own library. Leaves of the dependency graph: no imports from the app.

Every error type says, next to its definition, what it means to a caller:

- ``http_problem``: the HTTP answer (:class:`Problem`: status, title, slug, ``Retry-After``), which
  ``blueprints._problems.api_handler`` turns into problem+json;
- ``on_message``: what a message or event trigger does when its work raises it
  (:class:`MessageOutcome`: retry, park or complete; see ``shared.delivery``).

A new error type declares both (one line each), or inherits them from the type it refines;
``tests/unit/blueprints/test_problems.py`` and ``tests/unit/shared/test_delivery.py`` walk every
subclass and fail for one that does not.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from enum import StrEnum
from typing import ClassVar

UNAVAILABLE_TITLE = "Service unavailable"
MISCONFIGURED_DETAIL = "the service is misconfigured; the operator has been alerted"
INTERNAL_DETAIL = "the request failed unexpectedly; quote the traceId to support"


@dataclass(frozen=True, slots=True)
class Problem:
    """The HTTP answer to an error: RFC 9457 fields and headers.

    ``detail`` replaces the error's message for errors whose message is for the operator, not
    the caller; such errors are logged at ``log_level`` (with the stack trace when it is
    ``logging.ERROR`` or above and the error is unexpected, see ``api_handler``).
    """

    status: int
    title: str
    slug: str
    retry_after_seconds: int | None = None
    detail: str | None = None
    log_level: int | None = None


class MessageOutcome(StrEnum):
    """What a message (or event, or timer) trigger does with work that raised the error."""

    RETRY = "retry"  # raise: the platform delivers it again (and dead-letters it in the end)
    PARK = "park"  # it can never succeed: keep it for an operator, do not retry
    COMPLETE = "complete"  # nothing left to do: acknowledge it


class OrderflowError(Exception):
    """Base class for errors the app raises on purpose.

    Subclasses declare ``http_problem`` and ``on_message`` (or inherit them); the base has neither,
    so an undeclared error is answered as an unexpected one (a logged 500, a retry).
    """

    http_problem: ClassVar[Problem | None] = None
    on_message: ClassVar[MessageOutcome | None] = None

    def problem_detail(self) -> str:
        """The problem's ``detail``: the message, unless the problem replaces it."""
        problem = self.http_problem
        return problem.detail if problem is not None and problem.detail else str(self)

    def problem_headers(self) -> dict[str, str]:
        problem = self.http_problem
        if problem is None or problem.retry_after_seconds is None:
            return {}
        return {"Retry-After": str(problem.retry_after_seconds)}


class ConfigurationError(OrderflowError):
    """A setting is missing or invalid. The message always names the setting."""

    http_problem = Problem(
        503,
        UNAVAILABLE_TITLE,
        "unavailable",
        retry_after_seconds=30,
        detail=MISCONFIGURED_DETAIL,
        log_level=logging.ERROR,
    )
    on_message = MessageOutcome.RETRY  # redelivered once the setting is fixed

    def __init__(self, setting: str, problem: str) -> None:
        self.setting = setting
        self.problem = problem
        super().__init__(f"Invalid configuration: setting {setting} {problem}")


class DependencyUnavailableError(OrderflowError):
    """A backing service (Cosmos DB, Storage, Key Vault, ...) cannot be reached right now.

    Callers map it to 503 with ``Retry-After`` (HTTP) or a retry (messaging).
    """

    http_problem = Problem(503, UNAVAILABLE_TITLE, "unavailable")
    on_message = MessageOutcome.RETRY

    def __init__(self, dependency: str, detail: str, retry_after_seconds: int = 5) -> None:
        self.dependency = dependency
        self.detail = detail
        self.retry_after_seconds = retry_after_seconds
        super().__init__(f"{dependency} is unavailable: {detail}")

    def problem_detail(self) -> str:
        return f"{self.dependency} is temporarily unavailable; retry later"

    def problem_headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after_seconds)}


class DeadlineExceededError(DependencyUnavailableError):
    """The invocation's deadline leaves no time for another attempt at a call."""

    def __init__(self, dependency: str, retry_after_seconds: int = 2) -> None:
        super().__init__(dependency, "no time left within the deadline", retry_after_seconds)


class CircuitOpenError(DependencyUnavailableError):
    """The dependency kept timing out: calls fail at once until a probe succeeds."""

    def __init__(self, dependency: str, retry_after_seconds: int = 1) -> None:
        super().__init__(dependency, "circuit open after repeated timeouts", retry_after_seconds)


class BulkheadFullError(DependencyUnavailableError):
    """Every call slot of the dependency is held by a call that does not come back."""

    def __init__(self, dependency: str, retry_after_seconds: int = 2) -> None:
        super().__init__(dependency, "too many calls waiting for it", retry_after_seconds)


class SecretNotFoundError(OrderflowError):
    """A secret the app needs does not exist (in Key Vault, or as a local setting)."""

    # A deleted or disabled secret is an operator's doing (or mistake): 503 until it is back,
    # never 500, and never the secret's name or vault to the caller.
    http_problem = Problem(
        503,
        UNAVAILABLE_TITLE,
        "unavailable",
        retry_after_seconds=30,
        detail=MISCONFIGURED_DETAIL,
        log_level=logging.ERROR,
    )
    on_message = MessageOutcome.RETRY

    def __init__(self, name: str, where: str) -> None:
        self.name = name
        super().__init__(f"secret {name!r} not found in {where}")


class NotFoundError(OrderflowError):
    """The resource does not exist (or is not visible to this caller)."""

    http_problem = Problem(404, "Not found", "not-found")
    on_message = MessageOutcome.RETRY  # a read that lags a write; the service decides otherwise

    def __init__(self, resource: str, identifier: str) -> None:
        self.resource = resource
        self.identifier = identifier
        super().__init__(f"{resource} {identifier!r} not found")


class IllegalTransitionError(OrderflowError):
    """The order's lifecycle does not allow this change from its current status."""

    http_problem = Problem(409, "Illegal state transition", "transition")
    on_message = MessageOutcome.RETRY  # a race lost; the redelivery re-reads the order

    def __init__(self, order_id: str, current: str, target: str) -> None:
        self.order_id = order_id
        self.current = current
        self.target = target
        super().__init__(f"order {order_id!r} is {current}; it cannot become {target}")


class PreconditionFailedError(OrderflowError):
    """The caller's ETag is stale: someone changed the resource since the caller read it."""

    http_problem = Problem(412, "Precondition failed", "stale-etag")
    on_message = MessageOutcome.RETRY

    def __init__(self, resource: str, identifier: str) -> None:
        self.resource = resource
        self.identifier = identifier
        super().__init__(f"{resource} {identifier!r} has changed since it was read")

    def problem_detail(self) -> str:
        return f"{self}; read it again and retry with the new ETag"


class IdempotencyKeyReusedError(OrderflowError):
    """The same Idempotency-Key came back with a different request body."""

    http_problem = Problem(422, "Idempotency-Key reused", "idempotency")
    on_message = MessageOutcome.RETRY

    def __init__(self, key: str) -> None:
        self.key = key
        super().__init__("the Idempotency-Key was already used with a different request body")


class InvalidContinuationError(OrderflowError):
    """A list continuation token that this API did not issue for this query."""

    http_problem = Problem(400, "Invalid continuation", "continuation")
    on_message = MessageOutcome.RETRY

    def __init__(self) -> None:
        super().__init__("the continuation token is invalid for this query")


class WebhookSignatureError(OrderflowError):
    """A webhook's signature is missing, malformed, wrong or too old (replay)."""

    http_problem = Problem(401, "Invalid signature", "signature")
    on_message = MessageOutcome.RETRY

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)

    def problem_detail(self) -> str:
        return self.reason


class PaymentMismatchError(OrderflowError):
    """A payment's amount or currency does not match the order: never applied."""

    http_problem = Problem(422, "Payment rejected", "payment-mismatch")
    on_message = MessageOutcome.RETRY

    def __init__(self, order_id: str, detail: str) -> None:
        self.order_id = order_id
        self.detail = detail
        super().__init__(f"payment for order {order_id!r} rejected: {detail}")


class AlreadyExistsError(OrderflowError):
    """A create found a document with the same id (a retry, a replay or a race)."""

    http_problem = Problem(409, "Already exists", "already-exists")
    on_message = MessageOutcome.RETRY  # the redelivery finds what the first attempt created

    def __init__(self, resource: str, identifier: str) -> None:
        self.resource = resource
        self.identifier = identifier
        super().__init__(f"{resource} {identifier!r} already exists")


# RFC 6750 challenges: the realm of every WWW-Authenticate answer (shared.auth.permissions).
BEARER_REALM = "orderflow"


def bearer_challenge(error: str | None = None, description: str = "", scope: str = "") -> str:
    """A ``WWW-Authenticate`` value (RFC 6750 section 3); quoted strings keep to printable ASCII
    without quotes or backslashes."""
    parts = [f'Bearer realm="{BEARER_REALM}"']
    if error:
        parts.append(f'error="{error}"')
        clean = "".join(ch for ch in description if " " <= ch <= "~" and ch not in '"\\')
        parts.append(f'error_description="{clean}"')
    if scope:
        parts.append(f'scope="{scope}"')
    return ", ".join(parts)


class AuthenticationRequiredError(OrderflowError):
    """The request carries no usable bearer credentials (none, another scheme, a malformed
    ``Authorization`` header, or a token outside the header). HTTP 401 without an error code,
    as RFC 6750 section 3.1 asks when the request lacks authentication information."""

    http_problem = Problem(401, "Authentication required", "unauthenticated")
    on_message = MessageOutcome.PARK  # HTTP only; the same credentials can never succeed

    def __init__(self, detail: str) -> None:
        self.detail = detail
        super().__init__(detail)

    def problem_headers(self) -> dict[str, str]:
        return {"WWW-Authenticate": bearer_challenge()}


class InvalidTokenError(OrderflowError):
    """A bearer token that is not valid here: malformed, badly signed, expired, not yet valid,
    for another audience or from another issuer. HTTP 401 ``error="invalid_token"``.

    ``detail`` tells the client what to fix (the problem's detail); ``reason`` is the precise
    cause, for the log only (the message holds both). Neither ever contains the token.
    """

    http_problem = Problem(401, "Invalid token", "invalid-token", log_level=logging.WARNING)
    on_message = MessageOutcome.PARK

    def __init__(self, detail: str, reason: str) -> None:
        self.detail = detail
        self.reason = reason
        super().__init__(f"{detail} ({reason})")

    def problem_detail(self) -> str:
        return self.detail

    def problem_headers(self) -> dict[str, str]:
        return {"WWW-Authenticate": bearer_challenge("invalid_token", self.detail)}


class InsufficientScopeError(OrderflowError):
    """A valid token without the permission the operation needs. HTTP 403
    ``error="insufficient_scope"``; ``required`` lists (space-separated) the scopes or roles
    that would be enough."""

    http_problem = Problem(403, "Insufficient scope", "insufficient-scope", log_level=logging.INFO)
    on_message = MessageOutcome.PARK

    def __init__(self, detail: str, required: str) -> None:
        self.detail = detail
        self.required = required
        super().__init__(detail)

    def problem_headers(self) -> dict[str, str]:
        return {
            "WWW-Authenticate": bearer_challenge("insufficient_scope", self.detail, self.required)
        }
