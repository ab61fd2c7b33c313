"""Who may call what: every HTTP route declares one :class:`Access`, and :func:`authorize` is the
only place that decides whether a validated caller gets through.

| access                      | who may call                                                    |
|-----------------------------|-----------------------------------------------------------------|
| ``Access.customer_orders``  | role ``Orders.ReadWrite.All`` (any customer), or scope          |
|                             | ``Orders.ReadWrite`` with the customer claim equal to the       |
|                             | route's ``{customerId}``                                        |
| ``Access.app_role(role)``   | tokens whose ``roles`` contain ``role``                         |
| ``Access.any_token()``      | any valid token                                                 |
| ``Access.anonymous(why)``   | anyone (health, the OpenAPI document, the HMAC-signed webhook)  |
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from shared.auth.permissions import (
    IMPORTS_READ_ROLE,
    INVENTORY_ROLE,
    ORDERS_ALL_ROLE,
    ORDERS_SCOPE,
)
from shared.errors import InsufficientScopeError

AccessKind = Literal["anonymous", "any_token", "app_role", "customer_orders"]


@dataclass(frozen=True, slots=True)
class Caller:
    """A validated token's caller. ``customer`` is the value of the configured customer claim
    (``AUTH_CUSTOMER_CLAIM``), None when the token has none."""

    subject: str
    client_id: str | None = None
    scopes: frozenset[str] = field(default_factory=frozenset)
    roles: frozenset[str] = field(default_factory=frozenset)
    customer: str | None = None


@dataclass(frozen=True, slots=True)
class Access:
    """What a route requires. Build with the class methods."""

    kind: AccessKind
    role: str | None = None
    customer_parameter: str | None = None
    reason: str | None = None  # why an anonymous route needs no token

    @classmethod
    def anonymous(cls, reason: str) -> Access:
        if not reason:
            raise ValueError("an anonymous route must say why it needs no token")
        return cls("anonymous", reason=reason)

    @classmethod
    def any_token(cls) -> Access:
        return cls("any_token")

    @classmethod
    def app_role(cls, role: str) -> Access:
        return cls("app_role", role=role)

    @classmethod
    def customer_orders(cls, parameter: str = "customerId") -> Access:
        return cls("customer_orders", customer_parameter=parameter)

    @property
    def requires_token(self) -> bool:
        return self.kind != "anonymous"

    @property
    def scopes(self) -> tuple[str, ...]:
        """Delegated scopes that can satisfy this access (OpenAPI, the 403 challenge)."""
        return (ORDERS_SCOPE,) if self.kind == "customer_orders" else ()

    @property
    def roles(self) -> tuple[str, ...]:
        """App roles that can satisfy this access."""
        if self.kind == "customer_orders":
            return (ORDERS_ALL_ROLE,)
        if self.kind == "app_role" and self.role is not None:
            return (self.role,)
        return ()

    def describe(self) -> str:
        """One sentence for the OpenAPI document and the docs."""
        match self.kind:
            case "anonymous":
                return f"No token: {self.reason}"
            case "any_token":
                return "Any valid bearer token"
            case "app_role":
                return f"App role `{self.role}`"
            case "customer_orders":
                return (
                    f"Delegated scope `{ORDERS_SCOPE}` for the customer named by the token's "
                    f"customer claim, or app role `{ORDERS_ALL_ROLE}` for any customer"
                )
        raise AssertionError(self.kind)  # pragma: no cover - the Literal is exhaustive


def authorize(caller: Caller, access: Access, route_params: Mapping[str, str]) -> None:
    """Return if ``caller`` may do what ``access`` guards; raise InsufficientScopeError if not."""
    match access.kind:
        case "anonymous" | "any_token":
            return
        case "app_role":
            if access.role in caller.roles:
                return
            raise InsufficientScopeError(
                f"this operation needs the app role {access.role}", " ".join(access.roles)
            )
        case "customer_orders":
            if ORDERS_ALL_ROLE in caller.roles:
                return
            required = f"{ORDERS_SCOPE} {ORDERS_ALL_ROLE}"
            if ORDERS_SCOPE not in caller.scopes:
                raise InsufficientScopeError(
                    f"this operation needs the scope {ORDERS_SCOPE} (the customer's own orders) "
                    f"or the app role {ORDERS_ALL_ROLE}",
                    required,
                )
            wanted = route_params.get(access.customer_parameter or "")
            if caller.customer is None or wanted is None or caller.customer != wanted:
                raise InsufficientScopeError(
                    "this token may reach only the orders of the customer it was issued for",
                    required,
                )
            return
    raise AssertionError(access.kind)  # pragma: no cover - the Literal is exhaustive


# The routes' access, by name: the HTTP functions declare these (blueprints/http_api.py) and
# the OpenAPI document states them (shared/openapi.py); a test checks that the two agree.
CUSTOMER_ORDERS = Access.customer_orders("customerId")
ANY_TOKEN = Access.any_token()
INVENTORY_WRITE = Access.app_role(INVENTORY_ROLE)
IMPORTS_READ = Access.app_role(IMPORTS_READ_ROLE)
SIGNED_WEBHOOK = Access.anonymous("the payment provider signs each call (HMAC, X-Signature)")
PUBLIC_DOCUMENT = Access.anonymous("the API description is public")
API_REFERENCE = Access.anonymous("public documentation of the public API description")
PROBES = Access.anonymous("liveness and readiness probes of the platform and load balancers")
