"""Who may call what, over HTTP against the running app and the stack's real OpenID Connect
issuer: every row of the authorization table (docs/SECURITY.md), and the RFC 6750 shapes of
401 and 403 answers. Tokens come from the issuer's ``/token`` endpoint, as a client gets them.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable

import pytest

from localdev.stack import LocalStack
from localdev.tokens import request_token
from shared.auth.permissions import (
    APP_ROLES,
    IMPORTS_READ_ROLE,
    INVENTORY_ROLE,
    ORDERS_ALL_ROLE,
    ORDERS_SCOPE,
)
from tests.fixtures.host import HostProcess, HttpResult

pytestmark = pytest.mark.e2e

JSON = {"Content-Type": "application/json"}
ORDER = json.dumps(
    {"currency": "EUR", "lines": [{"sku": "SKU-AUTH", "quantity": 1, "unitPrice": "1.00"}]}
).encode()
REALM_ONLY = 'Bearer realm="orderflow"'

Mint = Callable[..., str]


@pytest.fixture(scope="module")
def mint(local_stack: LocalStack) -> Mint:
    def issue(**fields: object) -> str:
        return request_token(local_stack.issuer_url, **fields)  # type: ignore[arg-type]

    return issue


@pytest.fixture(scope="module")
def customer() -> str:
    return f"alice-{uuid.uuid4().hex[:8]}"


def _call(
    host: HostProcess, method: str, path: str, token: str | None, body: bytes | None = None
) -> HttpResult:
    return host.request(method, path, body=body, headers=JSON if body else None, token=token)


def _orders(customer: str) -> str:
    return f"/api/v1/customers/{customer}/orders"


def _assert_problem(result: HttpResult, status: int) -> dict[str, object]:
    assert result.status == status, result.body
    assert (result.header("content-type") or "").startswith("application/problem+json")
    problem: dict[str, object] = result.json()
    assert problem["status"] == status
    assert problem["traceId"]
    return problem


# ------------------------------------------------------------------ the table, row by row


def test_delegated_token_reaches_only_its_own_customers_orders(
    app_host: HostProcess, mint: Mint, customer: str
) -> None:
    token = mint(sub=customer, scp=ORDERS_SCOPE)

    created = _call(app_host, "POST", _orders(customer), token, ORDER)
    assert created.status == 201, created.body
    order_id = created.json()["id"]
    assert _call(app_host, "GET", f"{_orders(customer)}/{order_id}", token).status == 200
    listed = _call(app_host, "GET", _orders(customer), token)
    assert listed.status == 200
    assert order_id in {item["id"] for item in listed.json()["items"]}
    cancelled = _call(app_host, "POST", f"{_orders(customer)}/{order_id}/cancel", token)
    assert cancelled.status == 200, cancelled.body

    other = f"bob-{uuid.uuid4().hex[:8]}"
    for method, path, body in (
        ("POST", _orders(other), ORDER),
        ("GET", _orders(other), None),
        ("GET", f"{_orders(other)}/{order_id}", None),
        ("POST", f"{_orders(other)}/{order_id}/cancel", None),
    ):
        denied = _call(app_host, method, path, token, body)
        _assert_problem(denied, 403)
        assert 'error="insufficient_scope"' in (denied.header("www-authenticate") or "")


def test_delegated_token_without_the_scope_or_customer_claim_is_refused(
    app_host: HostProcess, mint: Mint, customer: str
) -> None:
    no_scope = mint(sub=customer, scp="User.Read")
    _assert_problem(_call(app_host, "GET", _orders(customer), no_scope), 403)
    other_subject = mint(sub=f"{customer}-x", scp=ORDERS_SCOPE)
    _assert_problem(_call(app_host, "GET", _orders(customer), other_subject), 403)


def test_orders_all_role_reaches_any_customer(app_host: HostProcess, mint: Mint) -> None:
    token = mint(client_id="shop-backend", roles=ORDERS_ALL_ROLE)
    for customer in (f"c1-{uuid.uuid4().hex[:6]}", f"c2-{uuid.uuid4().hex[:6]}"):
        created = _call(app_host, "POST", _orders(customer), token, ORDER)
        assert created.status == 201, created.body
        order_id = created.json()["id"]
        assert _call(app_host, "GET", f"{_orders(customer)}/{order_id}", token).status == 200
        assert _call(app_host, "GET", _orders(customer), token).status == 200
        cancel = _call(app_host, "POST", f"{_orders(customer)}/{order_id}/cancel", token)
        assert cancel.status == 200
    # ...but not stock levels or imports: each role reaches only what its name says.
    _assert_problem(_call(app_host, "PUT", "/api/v1/inventory/SKU-AUTH", token, b"{}"), 403)
    _assert_problem(_call(app_host, "GET", "/api/v1/imports/x.csv", token), 403)


def test_inventory_role_sets_stock_and_nobody_else_does(app_host: HostProcess, mint: Mint) -> None:
    stock = json.dumps({"available": 5}).encode()
    writer = mint(client_id="warehouse", roles=INVENTORY_ROLE)
    assert _call(app_host, "PUT", "/api/v1/inventory/SKU-AUTH", writer, stock).status == 200
    for token in (
        mint(sub="alice", scp=ORDERS_SCOPE),
        mint(roles=f"{ORDERS_ALL_ROLE} {IMPORTS_READ_ROLE}"),
        mint(),
    ):
        denied = _call(app_host, "PUT", "/api/v1/inventory/SKU-AUTH", token, stock)
        _assert_problem(denied, 403)
        assert f'scope="{INVENTORY_ROLE}"' in (denied.header("www-authenticate") or "")


def test_any_valid_token_reads_stock(app_host: HostProcess, mint: Mint) -> None:
    writer = mint(roles=INVENTORY_ROLE)
    stock = json.dumps({"available": 7}).encode()
    assert _call(app_host, "PUT", "/api/v1/inventory/SKU-READ", writer, stock).status == 200
    for token in (mint(), mint(sub="alice", scp=ORDERS_SCOPE), mint(roles=IMPORTS_READ_ROLE)):
        read = _call(app_host, "GET", "/api/v1/inventory/SKU-READ", token)
        assert read.status == 200, read.body
        assert read.json() == {"sku": "SKU-READ", "available": 7}


def test_imports_read_role_reads_import_status(app_host: HostProcess, mint: Mint) -> None:
    reader = mint(client_id="partner-portal", roles=IMPORTS_READ_ROLE)
    # Authorized: the answer is about the import (none by that name), not about the caller.
    unknown = _call(app_host, "GET", "/api/v1/imports/never-uploaded.csv", reader)
    assert _assert_problem(unknown, 404)["type"] == "urn:orderflow:problem:not-found"
    for token in (mint(roles=ORDERS_ALL_ROLE), mint(sub="alice", scp=ORDERS_SCOPE)):
        _assert_problem(_call(app_host, "GET", "/api/v1/imports/never-uploaded.csv", token), 403)


def test_without_a_token_only_health_openapi_and_the_webhook_answer(
    app_host: HostProcess, customer: str
) -> None:
    assert _call(app_host, "GET", "/api/health", None).status == 200
    assert _call(app_host, "GET", "/api/health/ready", None).status in {200, 503}
    assert _call(app_host, "GET", "/api/openapi.json", None).status == 200
    webhook = _call(app_host, "POST", "/api/v1/payments/webhook", None, b'{"id": "x"}')
    # The webhook's own credential is the HMAC signature: refused for that, not for a token.
    assert _assert_problem(webhook, 401)["type"] == "urn:orderflow:problem:signature"
    assert webhook.header("www-authenticate") is None

    for method, path, body in (
        ("POST", _orders(customer), ORDER),
        ("GET", _orders(customer), None),
        ("GET", f"{_orders(customer)}/{'0' * 32}", None),
        ("POST", f"{_orders(customer)}/{'0' * 32}/cancel", None),
        ("PUT", "/api/v1/inventory/SKU-AUTH", b'{"available": 1}'),
        ("GET", "/api/v1/inventory/SKU-AUTH", None),
        ("GET", "/api/v1/imports/x.csv", None),
    ):
        refused = _call(app_host, method, path, None, body)
        problem = _assert_problem(refused, 401)
        assert refused.header("www-authenticate") == REALM_ONLY, (method, path)
        assert problem["type"] == "urn:orderflow:problem:unauthenticated"


# ------------------------------------------------------------------ 401 and 403 shapes


def test_401_shapes_say_what_to_fix_and_never_echo_the_token(
    app_host: HostProcess, mint: Mint, customer: str
) -> None:
    path = _orders(customer)
    cases = {
        "expired": (mint(roles=ORDERS_ALL_ROLE, expires_in=-120), "expired"),
        "wrong audience": (mint(roles=ORDERS_ALL_ROLE, aud="api://someone-else"), "audience"),
        "garbage": ("not.a.jwt", "malformed"),
        "tampered": (mint(roles=ORDERS_ALL_ROLE)[:-4] + "AAAA", "signature"),
    }
    for label, (token, hint) in cases.items():
        refused = _call(app_host, "GET", path, token)
        problem = _assert_problem(refused, 401)
        challenge = refused.header("www-authenticate") or ""
        assert challenge.startswith(f'{REALM_ONLY}, error="invalid_token"'), (label, challenge)
        assert hint in str(problem["detail"]), (label, problem)
        assert token not in refused.body.decode(), label
        assert token not in challenge, label
    logs = app_host.wait_for_log("InvalidTokenError", times=len(cases))
    assert all(token not in logs for token, _ in cases.values())


def test_credentials_outside_a_bearer_header_are_not_accepted(
    app_host: HostProcess, mint: Mint, customer: str
) -> None:
    token = mint(roles=" ".join(APP_ROLES))
    in_query = app_host.request("GET", f"{_orders(customer)}?access_token={token}", token=None)
    assert _assert_problem(in_query, 401)["type"] == "urn:orderflow:problem:unauthenticated"
    for header in (f"Basic {token}", "Bearer", f"Bearer {token} extra", f"bearer{token}"):
        refused = app_host.request("GET", _orders(customer), headers={"Authorization": header})
        _assert_problem(refused, 401)
        assert refused.header("www-authenticate") == REALM_ONLY, header
    # The scheme is case-insensitive (RFC 6750 section 2.1 refers to RFC 9110's rules).
    lower = app_host.request("GET", _orders(customer), headers={"Authorization": f"bearer {token}"})
    assert lower.status == 200, lower.body


def test_403_names_the_scope_or_role_that_would_do(
    app_host: HostProcess, mint: Mint, customer: str
) -> None:
    refused = _call(app_host, "GET", _orders(customer), mint(roles=IMPORTS_READ_ROLE))
    problem = _assert_problem(refused, 403)
    challenge = refused.header("www-authenticate") or ""
    assert challenge.startswith(f'{REALM_ONLY}, error="insufficient_scope"'), challenge
    assert f'scope="{ORDERS_SCOPE} {ORDERS_ALL_ROLE}"' in challenge
    assert problem["type"] == "urn:orderflow:problem:insufficient-scope"
    assert ORDERS_SCOPE in str(problem["detail"])


def test_logs_name_the_caller_but_never_the_token(
    app_host: HostProcess, mint: Mint, customer: str
) -> None:
    token = mint(sub=customer, client_id="mobile-app-7", scp=ORDERS_SCOPE)
    assert _call(app_host, "GET", _orders(customer), token).status == 200
    logs = app_host.wait_for_log("(client mobile-app-7, customer_orders)")
    assert f"for subject {customer} (client mobile-app-7, customer_orders)" in logs
    assert token not in logs
