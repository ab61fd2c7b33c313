"""The OpenAPI document matches what the app registers and what is committed."""

from __future__ import annotations

import json

from shared.openapi import OPERATIONS, openapi_document
from tests.fixtures.worker_indexing import repository_app_report
from tests.paths import REPO_ROOT

COMMITTED = REPO_ROOT / "docs" / "openapi.json"


def render() -> str:
    return json.dumps(openapi_document(), indent=2, sort_keys=False) + "\n"


def test_every_http_function_is_documented_with_its_route_method_and_auth_level() -> None:
    registered = set()
    for function in repository_app_report().functions:
        trigger = function.trigger
        if trigger is None or trigger["type"] != "httpTrigger":
            continue
        for method in trigger["methods"]:
            registered.add(
                (function.name, method.lower(), trigger["route"], trigger["authLevel"].lower())
            )
    documented = {(op.function_name, op.method, op.route, op.auth_level) for op in OPERATIONS}
    assert documented == registered


def test_every_token_operation_declares_its_security_and_401_403() -> None:
    document = openapi_document()
    schemes = document["components"]["securitySchemes"]
    assert schemes["bearer"] == {**schemes["bearer"], "type": "http", "scheme": "bearer"}
    assert schemes["entraId"]["type"] == "oauth2"
    for op in OPERATIONS:
        if not op.in_document:
            assert not op.access.requires_token, op.function_name
            continue
        operation = document["paths"][f"/api/{op.route}"][op.method]
        if not op.access.requires_token:
            assert operation["security"] == [], op.function_name
            continue
        assert operation["security"], op.function_name
        named = {
            p for requirement in operation["security"] for ps in requirement.values() for p in ps
        }
        assert named == {*op.access.scopes, *op.access.roles}, op.function_name
        for status in ("401", "403"):
            assert "WWW-Authenticate" in operation["responses"][status]["headers"]


def test_document_is_openapi_3_1_with_resolvable_references() -> None:
    document = openapi_document()
    assert document["openapi"] == "3.1.0"
    text = json.dumps(document)
    schemas = document["components"]["schemas"]
    for reference in {part.split('"')[0] for part in text.split('"$ref": "')[1:]}:
        assert reference.startswith("#/components/schemas/")
        assert reference.removeprefix("#/components/schemas/") in schemas
    create = document["paths"]["/api/v1/customers/{customerId}/orders"]["post"]
    body_schema = create["requestBody"]["content"]["application/json"]["schema"]
    assert body_schema == {"$ref": "#/components/schemas/OrderDraft"}
    assert schemas["OrderDraft"]["additionalProperties"] is False
    assert create["responses"]["422"]["content"]["application/problem+json"]


def test_committed_copy_is_current() -> None:
    """Regenerate with: .venv/bin/python -m shared.openapi > docs/openapi.json"""
    assert COMMITTED.read_text() == render(), "docs/openapi.json is stale; regenerate it"
