"""The HTTP API fuzzed against its own contract, over real HTTP.

schemathesis reads the OpenAPI document the running app serves (``GET /api/openapi.json``) and
generates requests for every operation in it:

- positive cases (valid by the document), half of them aimed at an order, SKU and import that
  exist, so reads, cancels and payments get past 404; webhook bodies are signed half the time;
- negative cases (violating the document);
- hostile requests built on a valid one (``tests.e2e.api_fuzzing``): malformed JSON, oversized
  bodies, wrong content types, odd path parameters (unicode, very long, percent-encoded
  slashes) and odd If-Match, If-None-Match, Idempotency-Key, X-Signature, traceparent and
  X-Correlation-Id headers, each with the statuses the contract allows.

Every response must be documented (status code, content type, body schema, headers; problem+json
included), never 5xx, and never show a stack trace, an SDK exception class name or a key,
connection string or endpoint of the stack. Findings are collected over the whole run and
reported together. Generation is derandomized: the same code sends the same requests.

The app runs on a stack of its own (``isolated_app``): the hundreds of orders the fuzzer
creates must not change what other tests count on the shared stack.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final

import pytest
import schemathesis
from azure.storage.blob import BlobServiceClient
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.core import NOT_SET
from schemathesis.core.result import Ok

from localdev.stack.stack import AZURITE_ACCOUNT_KEY, COSMOS_EMULATOR_KEY
from shared.names import IMPORTS_BLOB_CONTAINER
from tests.e2e.api_fuzzing import (
    BaseRequest,
    FuzzCase,
    FuzzOperation,
    FuzzRun,
    HostileRequest,
    Target,
    drawn_hostile_requests,
    explicit_hostile_requests,
    integral_floats_to_ints,
    leak_markers,
    send_hostile,
    sign,
)
from tests.fixtures.app import (
    SAMPLE_SETTINGS,
    WEBHOOK_SECRET,
    WEBHOOK_SECRET_PREVIOUS,
    IsolatedApp,
)
from tests.fixtures.host import HostProcess

pytestmark = pytest.mark.e2e

# Generated examples per operation and kind, on top of the curated hostile requests. Operations
# without inputs have one positive case; hostile headers give them their volume.
POSITIVE_EXAMPLES: Final = 40
NEGATIVE_EXAMPLES: Final = 35
DRAWN_HOSTILE_EXAMPLES: Final = 20
MIN_REQUESTS: Final = 1_000
MIN_REQUESTS_PER_OPERATION: Final = 40

FUZZ_SETTINGS: Final = settings(
    derandomize=True,  # a fixed seed: the same code sends the same requests
    database=None,
    deadline=None,
    # Findings are collected, not raised, so there is nothing to shrink.
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=list(HealthCheck),
)
# Keys are not enforced locally (as with `func start`): security parameters are not generated.
SCHEMATHESIS_CONFIG: Final = {"generation": {"with-security-parameters": False}}

JSON_HEADERS: Final = {"Content-Type": "application/json"}
CUSTOMER: Final = "fuzz-customer"
HOSTILE_CUSTOMER: Final = "fuzz-hostile-customer"  # only hostile requests create orders here
SKU: Final = "FUZZ-SKU"
IMPORT_ID: Final = "fuzz-import.csv"
ORDER_BODY: Final = {
    "currency": "EUR",
    "lines": [{"sku": SKU, "quantity": 2, "unitPrice": "10.25"}],
}
# An event type the API acknowledges and ignores: a valid, repeatable webhook request.
IGNORED_EVENT: Final = json.dumps(
    {"id": "evt-fuzz", "type": "payment.refunded", "data": {"reason": "fuzz"}}
).encode()
IMPORT_WAIT_SECONDS: Final = 30.0
# Read by every HTTP function (logs and telemetry); curated values go to the operations
# that need volume (no inputs of their own) and to the public webhook.
TRACE_HEADERS: Final = ("traceparent", "X-Correlation-Id")


@dataclass(frozen=True)
class Seeded:
    """Resources that exist before fuzzing starts."""

    order_to_read: str
    order_to_cancel: str
    order_to_pay: dict[str, Any]


def _create_order(host: HostProcess) -> dict[str, Any]:
    response = host.request(
        "POST",
        f"/api/v1/customers/{CUSTOMER}/orders",
        body=json.dumps(ORDER_BODY).encode(),
        headers=JSON_HEADERS,
    )
    assert response.status == 201, response.body
    order: dict[str, Any] = response.json()
    return order


def _wait_for_import(host: HostProcess, import_id: str) -> None:
    deadline = time.monotonic() + IMPORT_WAIT_SECONDS
    while time.monotonic() < deadline:
        if host.request("GET", f"/api/v1/imports/{import_id}").status == 200:
            return
        time.sleep(0.1)
    raise AssertionError(f"import {import_id} has no status:\n{host.logs()[-3000:]}")


@pytest.fixture(scope="module")
def seeded(isolated_app: IsolatedApp) -> Seeded:
    host = isolated_app.host
    stock = host.request(
        "PUT", f"/api/v1/inventory/{SKU}", body=b'{"available": 3}', headers=JSON_HEADERS
    )
    assert stock.status == 200, stock.body
    with BlobServiceClient.from_connection_string(
        isolated_app.stack.storage_connection_string
    ) as blobs:
        blobs.get_blob_client(IMPORTS_BLOB_CONTAINER, IMPORT_ID).upload_blob(
            f"external_id,customer_id,sku,quantity,unit_price,currency\r\n"
            f"ext-1,{CUSTOMER},{SKU},1,1.00,EUR\r\n".encode(),
            overwrite=True,
        )
    seeded = Seeded(
        order_to_read=_create_order(host)["id"],
        order_to_cancel=_create_order(host)["id"],
        order_to_pay=_create_order(host),
    )
    _wait_for_import(host, IMPORT_ID)
    return seeded


def _known_path_parameters(seeded: Seeded) -> dict[str, dict[str, str]]:
    """Path parameters naming resources that exist, by operationId."""
    order = {"customerId": CUSTOMER, "orderId": seeded.order_to_read}
    return {
        "create_order": {"customerId": CUSTOMER},
        "list_orders": {"customerId": CUSTOMER},
        "get_order": order,
        "cancel_order": {"customerId": CUSTOMER, "orderId": seeded.order_to_cancel},
        "set_inventory": {"sku": SKU},
        "get_inventory": {"sku": SKU},
        "get_import_status": {"importId": IMPORT_ID},
    }


def _base_requests(seeded: Seeded) -> dict[str, BaseRequest]:
    """A valid request per operationId, with the statuses it (and an odd header) may get."""
    known = _known_path_parameters(seeded)
    ok, not_found = frozenset({200}), frozenset({404})
    return {
        "create_order": BaseRequest(
            {"customerId": HOSTILE_CUSTOMER},
            frozenset({201}),
            unknown_id_statuses=frozenset({201}),
            body=json.dumps(ORDER_BODY).encode(),
            headers=JSON_HEADERS,
            odd_headers=("Idempotency-Key",),
            header_statuses={"Idempotency-Key": frozenset({400})},
        ),
        "list_orders": BaseRequest(known["list_orders"], ok, unknown_id_statuses=ok),
        "get_order": BaseRequest(
            known["get_order"],
            ok,
            unknown_id_statuses=not_found,
            odd_headers=("If-None-Match",),
            header_statuses={"If-None-Match": frozenset({304})},
        ),
        "cancel_order": BaseRequest(
            known["cancel_order"],
            frozenset({200, 409}),  # 409 once it is cancelled
            unknown_id_statuses=not_found,
            odd_headers=("If-Match",),
            header_statuses={"If-Match": frozenset({412})},
        ),
        "set_inventory": BaseRequest(
            known["set_inventory"],
            ok,
            unknown_id_statuses=ok,
            body=b'{"available": 3}',
            headers=JSON_HEADERS,
        ),
        "get_inventory": BaseRequest(known["get_inventory"], ok, unknown_id_statuses=not_found),
        "get_import_status": BaseRequest(
            known["get_import_status"], ok, unknown_id_statuses=not_found
        ),
        "payment_webhook": BaseRequest(
            {},
            ok,
            body=IGNORED_EVENT,
            headers=JSON_HEADERS,
            odd_headers=("X-Signature", *TRACE_HEADERS),
            header_statuses={"X-Signature": frozenset({401})},
        ),
        "health_live": BaseRequest({}, ok, odd_headers=TRACE_HEADERS),
        "health_ready": BaseRequest({}, ok, odd_headers=TRACE_HEADERS),
        "openapi_document": BaseRequest({}, ok, odd_headers=TRACE_HEADERS),
    }


def _drive[T](strategy: st.SearchStrategy[T], examples: int, send: Callable[[T], None]) -> None:
    @settings(FUZZ_SETTINGS, max_examples=examples)
    @given(strategy)
    def drive(value: T) -> None:
        send(value)

    drive()


def _as_sent(case: FuzzCase) -> FuzzCase:
    if not isinstance(case.body, type(NOT_SET)):
        case.body = integral_floats_to_ints(case.body)
    case.query = integral_floats_to_ints(case.query)
    return case


def _generated_cases(
    operation: FuzzOperation, mode: GenerationMode, known: Mapping[str, str] | None
) -> st.SearchStrategy[FuzzCase]:
    strategy = operation.as_strategy(generation_mode=mode)
    if known:
        strategy = st.one_of(
            strategy, operation.as_strategy(generation_mode=mode, path_parameters=dict(known))
        )
    return strategy.map(_as_sent) if mode is GenerationMode.POSITIVE else strategy


def _send_case(run: FuzzRun, mode: GenerationMode) -> Callable[[FuzzCase], None]:
    def send(case: FuzzCase) -> None:
        run.send(case, mode.value)

    return send


def _send_webhook_case(
    run: FuzzRun, mode: GenerationMode, order: dict[str, Any]
) -> Callable[[tuple[FuzzCase, bool, bool]], None]:
    """Webhook cases, half of them signed with the current secret (else all would be 401);
    positive ones sometimes pay the seeded order exactly (applied once, then 409)."""

    def send(drawn: tuple[FuzzCase, bool, bool]) -> None:
        case, signed, pays_the_order = drawn
        body = case.body
        if (
            mode is GenerationMode.POSITIVE
            and pays_the_order
            and isinstance(body, dict)
            and isinstance(data := body.get("data"), dict)
        ):
            case.body = {
                **body,
                "type": "payment.succeeded",
                "data": {
                    **data,
                    "customerId": order["customerId"],
                    "orderId": order["id"],
                    "amount": order["total"],
                    "currency": order["currency"],
                },
            }
        # A negative case may leave the signature out on purpose: keep that.
        if not signed or "X-Signature" not in case.headers:
            run.send(case, mode.value)
            return
        if isinstance(case.body, type(NOT_SET)):
            raw = b""
        elif isinstance(case.body, bytes):  # a negative case: not JSON at all
            raw = case.body
        else:
            raw = json.dumps(case.body).encode()
        case.headers["X-Signature"] = sign(raw, WEBHOOK_SECRET)
        run.send(case, mode.value, data=raw)

    return send


@dataclass(frozen=True)
class TokenCase:
    """An ``Authorization`` header (None: none) for a token-guarded operation, and whether the
    app must refuse it as unauthenticated (401) or may let it through (a valid token that
    lacks every scope and role: 403, or the base statuses where any token will do)."""

    kind: str
    authorization: str | None
    unauthenticated: bool = True
    query: Mapping[str, str] | None = None


def token_cases(issuer: str) -> list[TokenCase]:
    """Token-less and hostile-token requests: each is also in tests/unit/shared/auth/test_tokens.py;
    here they go through the whole app and must answer documented 401/403 problems."""
    import base64

    from localdev.tokens import request_token

    def b64(data: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()

    valid = request_token(issuer, roles="Orders.ReadWrite.All")
    header, payload, _ = valid.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    return [
        TokenCase("no token", None),
        TokenCase("token in the query string", None, query={"access_token": valid}),
        TokenCase("basic scheme", "Basic b3JkZXJmbG93OnNlY3JldA=="),
        TokenCase("bearer without a token", "Bearer "),
        TokenCase("not a JWT", "Bearer not-a-jwt"),
        TokenCase("three junk segments", "Bearer a.b.c"),
        TokenCase("oversized", "Bearer " + "x" * 9000),
        TokenCase("alg none", f"Bearer {b64({'alg': 'none', 'kid': 'k'})}.{payload}."),
        TokenCase("HS256", f"Bearer {b64({'alg': 'HS256', 'typ': 'JWT'})}.{payload}.c2ln"),
        TokenCase("unknown kid", f"Bearer {b64({'alg': 'RS256', 'kid': 'nope'})}.{payload}.c2ln"),
        TokenCase("tampered claims", f"Bearer {header}.{b64({**claims, 'sub': 'x'})}.{_}"),
        TokenCase(
            "expired",
            f"Bearer {request_token(issuer, roles='Orders.ReadWrite.All', expires_in=-120)}",
        ),
        TokenCase(
            "wrong audience",
            f"Bearer {request_token(issuer, roles='Orders.ReadWrite.All', aud='api://other')}",
        ),
        TokenCase("no scope or role", f"Bearer {request_token(issuer)}", unauthenticated=False),
    ]


def _send_token_cases(
    run: FuzzRun, operation: FuzzOperation, target: Target, cases: list[TokenCase]
) -> None:
    """Every token case with the operation's valid request, through a session without the
    run's default token."""
    import requests

    base = target.base
    with requests.Session() as bare:
        for token_case in cases:
            headers = dict(base.headers)
            if token_case.authorization is not None:
                headers["Authorization"] = token_case.authorization
            if token_case.unauthenticated:
                expected = frozenset({401})
            elif operation.definition.raw["operationId"] == "get_inventory":
                expected = base.statuses  # any valid token reads stock
            else:
                expected = frozenset({403})
            request = HostileRequest(
                kind=f"token: {token_case.kind}",
                path_parameters=base.path_parameters,
                headers=headers,
                body=base.body,
                expected=expected,
                query=dict(token_case.query or {}),
            )
            send_hostile(run, operation, request, webhook_secret=None, session=bare)


def _fuzz_operation(
    run: FuzzRun, operation: FuzzOperation, seeded: Seeded, tokens: list[TokenCase]
) -> None:
    """Positive, negative (when the operation has inputs) and hostile requests."""
    operation_id = operation.definition.raw["operationId"]
    is_webhook = operation_id == "payment_webhook"
    has_inputs = bool(
        operation.path_parameters or operation.query or operation.headers or operation.body
    )
    modes = [GenerationMode.POSITIVE] + ([GenerationMode.NEGATIVE] if has_inputs else [])
    for mode in modes:
        cases = _generated_cases(operation, mode, _known_path_parameters(seeded).get(operation_id))
        examples = POSITIVE_EXAMPLES if mode is GenerationMode.POSITIVE else NEGATIVE_EXAMPLES
        if is_webhook:
            _drive(
                st.tuples(cases, st.booleans(), st.booleans()),
                examples,
                _send_webhook_case(run, mode, seeded.order_to_pay),
            )
        else:
            _drive(cases, examples, _send_case(run, mode))

    def send(request: HostileRequest) -> None:
        secret = WEBHOOK_SECRET if is_webhook else None
        send_hostile(run, operation, request, webhook_secret=secret)

    target = Target(
        base=_base_requests(seeded)[operation_id],
        path_template=operation.path,
        path_patterns={
            parameter.name: parameter.definition["schema"]["pattern"]
            for parameter in operation.path_parameters
        },
        query_names=tuple(parameter.name for parameter in operation.query),
        has_body=bool(operation.body),
    )
    for request in explicit_hostile_requests(target):
        send(request)
    _drive(drawn_hostile_requests(target), DRAWN_HOSTILE_EXAMPLES, send)
    if operation.definition.raw.get("security"):
        _send_token_cases(run, operation, target, tokens)


def test_every_operation_survives_generated_and_hostile_requests(
    isolated_app: IsolatedApp, seeded: Seeded
) -> None:
    host, stack = isolated_app.host, isolated_app.stack
    served = host.request("GET", "/api/openapi.json")
    assert served.status == 200, served.body
    document = served.json()
    schema = schemathesis.openapi.from_dict(
        document, config=schemathesis.Config.from_dict(SCHEMATHESIS_CONFIG)
    )
    results = list(schema.get_all_operations())
    assert not [result.err() for result in results if not isinstance(result, Ok)]
    operations = [result.ok() for result in results if isinstance(result, Ok)]
    documented = {
        f"{method.upper()} {path}"
        for path, methods in document["paths"].items()
        for method in methods
    }
    assert {operation.label for operation in operations} == documented

    sample = json.loads(SAMPLE_SETTINGS.read_text())["Values"]
    run = FuzzRun(
        host.url,
        leak_markers(
            secrets=(
                COSMOS_EMULATOR_KEY,
                AZURITE_ACCOUNT_KEY,
                WEBHOOK_SECRET,
                WEBHOOK_SECRET_PREVIOUS,
                sample["EVENTGRID_TOPIC_KEY"],
                sample["PAYMENT_WEBHOOK_SECRET"],
                stack.storage_connection_string,
                stack.servicebus_connection_string,
            ),
            endpoints=(
                stack.cosmos_endpoint,
                *(
                    f"127.0.0.1:{port}"
                    for port in (
                        stack.ports.blob,
                        stack.ports.queue,
                        stack.ports.table,
                        stack.ports.cosmos,
                        stack.ports.servicebus,
                    )
                ),
            ),
        ),
    )
    # Every generated and hostile request carries a valid token with every role (the app would
    # otherwise answer 401 before looking at the request); token cases use a session without.
    token = host.token()
    run.session.headers["Authorization"] = f"Bearer {token}"
    run.markers = (*run.markers, token or "")
    tokens = token_cases(stack.issuer_url)
    started = time.monotonic()
    try:
        for operation in operations:
            _fuzz_operation(run, operation, seeded, tokens)
    finally:
        run.session.close()
    elapsed = time.monotonic() - started

    print(f"\nfuzzing: {elapsed:.1f} s\n{run.report()}")
    assert not run.failures, "\n\n".join(
        f"== {label}: {what}\n{detail}" for (label, what), detail in run.failures.items()
    )
    assert not run.leaks, "\n\n".join(
        f"== {label} leaked {marker!r}\n{detail}" for (label, marker), detail in run.leaks.items()
    )
    counted = run.requests_by_operation
    assert set(counted) == documented
    too_few = {label: n for label, n in counted.items() if n < MIN_REQUESTS_PER_OPERATION}
    assert not too_few, f"operations with fewer than {MIN_REQUESTS_PER_OPERATION}: {too_few}"
    assert sum(counted.values()) >= MIN_REQUESTS
