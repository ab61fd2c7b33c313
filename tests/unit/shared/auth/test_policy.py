"""The authorization table (docs/SECURITY.md), row by row, against :func:`authorize`; and the
permission names the infrastructure's app registration must use."""

from __future__ import annotations

import pytest

from shared.auth import permissions
from shared.auth.policy import (
    ANY_TOKEN,
    CUSTOMER_ORDERS,
    IMPORTS_READ,
    INVENTORY_WRITE,
    PROBES,
    PUBLIC_DOCUMENT,
    SIGNED_WEBHOOK,
    Access,
    Caller,
    authorize,
)
from shared.errors import InsufficientScopeError
from tests.paths import REPO_ROOT

ALICE = {"customerId": "alice"}


def delegated(customer: str | None = "alice", *scopes: str) -> Caller:
    return Caller(
        subject=customer or "someone",
        scopes=frozenset(scopes or {permissions.ORDERS_SCOPE}),
        customer=customer,
    )


def app(*roles: str) -> Caller:
    return Caller(subject="app-object-id", client_id="shop", roles=frozenset(roles))


def allowed(caller: Caller, access: Access, params: dict[str, str] | None = None) -> bool:
    try:
        authorize(caller, access, params or {})
    except InsufficientScopeError:
        return False
    return True


def test_permission_names_are_exactly_the_registered_ones() -> None:
    assert permissions.ORDERS_SCOPE == "Orders.ReadWrite"
    assert permissions.APP_ROLES == ("Orders.ReadWrite.All", "Inventory.ReadWrite", "Imports.Read")
    assert set(permissions.DESCRIPTIONS) == {*permissions.DELEGATED_SCOPES, *permissions.APP_ROLES}


def test_delegated_scope_reaches_only_the_customer_named_by_its_claim() -> None:
    assert allowed(delegated("alice"), CUSTOMER_ORDERS, ALICE)
    assert not allowed(delegated("bob"), CUSTOMER_ORDERS, ALICE)
    assert not allowed(delegated(None), CUSTOMER_ORDERS, ALICE)  # no customer claim
    assert not allowed(delegated("alice", "User.Read"), CUSTOMER_ORDERS, ALICE)
    assert not allowed(delegated("alice"), CUSTOMER_ORDERS, {})  # no customer in the route
    assert not allowed(delegated("Alice"), CUSTOMER_ORDERS, ALICE)  # exact, case-sensitive


def test_orders_all_role_reaches_any_customer() -> None:
    caller = app(permissions.ORDERS_ALL_ROLE)
    assert allowed(caller, CUSTOMER_ORDERS, ALICE)
    assert allowed(caller, CUSTOMER_ORDERS, {"customerId": "bob"})


@pytest.mark.parametrize(
    ("access", "role"),
    [(INVENTORY_WRITE, permissions.INVENTORY_ROLE), (IMPORTS_READ, permissions.IMPORTS_READ_ROLE)],
)
def test_an_app_role_route_needs_exactly_that_role(access: Access, role: str) -> None:
    assert allowed(app(role), access)
    others = [r for r in permissions.APP_ROLES if r != role]
    assert not allowed(app(*others), access)
    assert not allowed(delegated("alice"), access)
    with pytest.raises(InsufficientScopeError) as caught:
        authorize(app(), access, {})
    assert caught.value.required == role


def test_any_valid_token_reads_stock() -> None:
    for caller in (app(), delegated("alice"), delegated(None, "User.Read")):
        assert allowed(caller, ANY_TOKEN)


def test_anonymous_routes_need_no_token_and_say_why() -> None:
    for access in (SIGNED_WEBHOOK, PUBLIC_DOCUMENT, PROBES):
        assert not access.requires_token
        assert access.reason
    with pytest.raises(ValueError, match="why"):
        Access.anonymous("")
    for access in (CUSTOMER_ORDERS, ANY_TOKEN, INVENTORY_WRITE, IMPORTS_READ):
        assert access.requires_token


def test_a_403_names_what_would_be_enough() -> None:
    with pytest.raises(InsufficientScopeError) as caught:
        authorize(app(permissions.IMPORTS_READ_ROLE), CUSTOMER_ORDERS, ALICE)
    assert caught.value.required == f"{permissions.ORDERS_SCOPE} {permissions.ORDERS_ALL_ROLE}"


def test_a_protected_route_fails_closed_without_issuer_settings(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """No AUTH_ISSUER / AUTH_AUDIENCE: 503 (misconfigured), never an open door."""
    import json

    import azure.functions as func

    from blueprints._problems import api_handler
    from shared.process_state import reset_process_state

    sample = REPO_ROOT / "local.settings.json.sample"
    for name, value in json.loads(sample.read_text())["Values"].items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AUTH_ISSUER")
    monkeypatch.delenv("AUTH_AUDIENCE")
    reset_process_state()
    reached: list[bool] = []

    def handler(req: func.HttpRequest, scope: object) -> func.HttpResponse:
        reached.append(True)
        return func.HttpResponse("should not be reached")

    wrapped = api_handler(CUSTOMER_ORDERS)(handler)
    request = func.HttpRequest(
        "GET",
        "http://127.0.0.1/api/v1/customers/alice/orders",
        headers={"Authorization": "Bearer a.b.c"},
        route_params={"customerId": "alice"},
        body=b"",
    )
    try:
        response = wrapped(request, None)  # type: ignore[arg-type]
    finally:
        reset_process_state()
    assert response.status_code == 503
    assert response.headers["Retry-After"]
    assert reached == []
