"""Error types of the app's own library. Leaves of the dependency graph: no imports from the app."""

from __future__ import annotations


class OrderflowError(Exception):
    """Base class for errors the app raises on purpose."""


class ConfigurationError(OrderflowError):
    """A setting is missing or invalid. The message always names the setting."""

    def __init__(self, setting: str, problem: str) -> None:
        self.setting = setting
        self.problem = problem
        super().__init__(f"Invalid configuration: setting {setting} {problem}")


class DependencyUnavailableError(OrderflowError):
    """A backing service (Cosmos DB, Storage, Key Vault, ...) cannot be reached right now.

    Callers map it to 503 with ``Retry-After`` (HTTP) or a retry (messaging).
    """

    def __init__(self, dependency: str, detail: str, retry_after_seconds: int = 5) -> None:
        self.dependency = dependency
        self.detail = detail
        self.retry_after_seconds = retry_after_seconds
        super().__init__(f"{dependency} is unavailable: {detail}")


class SecretNotFoundError(OrderflowError):
    """A secret the app needs does not exist (in Key Vault, or as a local setting)."""

    def __init__(self, name: str, where: str) -> None:
        self.name = name
        super().__init__(f"secret {name!r} not found in {where}")


class NotFoundError(OrderflowError):
    """The resource does not exist (or is not visible to this caller)."""

    def __init__(self, resource: str, identifier: str) -> None:
        self.resource = resource
        self.identifier = identifier
        super().__init__(f"{resource} {identifier!r} not found")


class IllegalTransitionError(OrderflowError):
    """The order's lifecycle does not allow this change from its current status."""

    def __init__(self, order_id: str, current: str, target: str) -> None:
        self.order_id = order_id
        self.current = current
        self.target = target
        super().__init__(f"order {order_id!r} is {current}; it cannot become {target}")


class PreconditionFailedError(OrderflowError):
    """The caller's ETag is stale: someone changed the resource since the caller read it."""

    def __init__(self, resource: str, identifier: str) -> None:
        self.resource = resource
        self.identifier = identifier
        super().__init__(f"{resource} {identifier!r} has changed since it was read")


class IdempotencyKeyReusedError(OrderflowError):
    """The same Idempotency-Key came back with a different request body."""

    def __init__(self, key: str) -> None:
        self.key = key
        super().__init__("the Idempotency-Key was already used with a different request body")


class InvalidContinuationError(OrderflowError):
    """A list continuation token that this API did not issue for this query."""

    def __init__(self) -> None:
        super().__init__("the continuation token is invalid for this query")


class WebhookSignatureError(OrderflowError):
    """A webhook's signature is missing, malformed, wrong or too old (replay)."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


class PaymentMismatchError(OrderflowError):
    """A payment's amount or currency does not match the order: never applied."""

    def __init__(self, order_id: str, detail: str) -> None:
        self.order_id = order_id
        self.detail = detail
        super().__init__(f"payment for order {order_id!r} rejected: {detail}")


class AlreadyExistsError(OrderflowError):
    """A create found a document with the same id (a retry, a replay or a race)."""

    def __init__(self, resource: str, identifier: str) -> None:
        self.resource = resource
        self.identifier = identifier
        super().__init__(f"{resource} {identifier!r} already exists")
