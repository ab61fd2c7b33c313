"""The fuzzer's own judgement (tests/e2e/api_fuzzing.py): a leak is reported unless the request
carried the text, and hostile path segments expect what the document's patterns say."""

from __future__ import annotations

import requests
import schemathesis

from localdev.stack.stack import AZURITE_ACCOUNT_KEY
from shared.patterns import IDENTIFIER_PATTERN, IMPORT_ID_PATTERN
from tests.e2e.api_fuzzing import (
    BaseRequest,
    Target,
    explicit_hostile_requests,
    leak_markers,
    leaked,
)

MARKERS = leak_markers(secrets=(AZURITE_ACCOUNT_KEY,), endpoints=("127.0.0.1:10000",))


def response(body: str, *, url: str = "http://127.0.0.1:7071/api/health") -> schemathesis.Response:
    request = requests.Request("GET", url).prepare()
    return schemathesis.Response(
        status_code=500,
        headers={"content-type": ["application/problem+json"]},
        content=body.encode(),
        request=request,
        elapsed=0.01,
        verify=True,
    )


def test_traces_sdk_class_names_keys_and_endpoints_are_leaks() -> None:
    body = (
        'Traceback (most recent call last):\n  File "/app/shared/clients.py", line 9\n'
        "azure.cosmos.exceptions.CosmosHttpResponseError: 127.0.0.1:10000 "
        f"AccountKey={AZURITE_ACCOUNT_KEY}"
    )
    found = set(leaked(MARKERS, response(body)))
    assert {
        "Traceback",
        'File "',
        "CosmosHttpResponseError",
        "127.0.0.1:10000",
        "AccountKey=",
        AZURITE_ACCOUNT_KEY,
    } <= found
    assert leaked(MARKERS, response('{"title": "Not found", "status": 404}')) == []


def test_text_the_request_carried_may_be_echoed() -> None:
    echoed = response(
        "order 'KeyError' not found", url="http://127.0.0.1:7071/api/v1/customers/c/orders/KeyError"
    )
    assert leaked(MARKERS, echoed) == []
    assert leaked(MARKERS, response("order 'KeyError' not found")) == ["KeyError"]


def test_odd_path_segments_expect_404_when_well_formed_and_400_otherwise() -> None:
    target = Target(
        base=BaseRequest({"customerId": "c", "importId": "a.csv"}, frozenset({200})),
        path_template="/x/{customerId}/{importId}",
        path_patterns={"customerId": IDENTIFIER_PATTERN, "importId": IMPORT_ID_PATTERN},
        query_names=(),
        has_body=False,
    )
    expected = {
        (request.raw_path, request.expected) for request in explicit_hostile_requests(target)
    }
    assert ("/x/a%2Fb/a.csv", frozenset({400})) in expected  # encoded slash
    assert ("/x/c/abc%0A", frozenset({400})) in expected  # "$" must not pass a trailing newline
    assert ("/x/c/%2E%2E", frozenset({400})) in expected  # a dot segment
    # Unicode is a well-formed import name (it names nothing yet), not a well-formed customer id.
    assert ("/x/c/%E2%80%AE", frozenset({200, 404})) in expected
    assert ("/x/%E2%80%AE/a.csv", frozenset({400})) in expected
