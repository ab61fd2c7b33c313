"""The OpenAPI 3.1 document, generated from the same pydantic models that validate requests.

OpenAPI 3.1 schemas are JSON Schema 2020-12, which pydantic emits directly, so request and
response bodies here cannot drift from validation. The operations table below mirrors the
HTTP functions; ``tests/unit/shared/test_openapi.py`` fails if a route, method, auth level or
declared access (who may call it, ``shared.auth.policy``) differs from what the app registers, or
if the committed ``docs/openapi.json`` is stale.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cache
from typing import Any, Final

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from shared import __version__
from shared.auth.permissions import APP_ROLES, DELEGATED_SCOPES, DESCRIPTIONS
from shared.auth.policy import (
    ANY_TOKEN,
    API_REFERENCE,
    CUSTOMER_ORDERS,
    IMPORTS_READ,
    INVENTORY_WRITE,
    PROBES,
    PUBLIC_DOCUMENT,
    SIGNED_WEBHOOK,
    Access,
)
from shared.models import (
    ISO_4217,
    ImportStatus,
    Order,
    OrderDraft,
    OrderList,
    OrderStatus,
    StockLevelIn,
    StockLevelOut,
)
from shared.patterns import IDENTIFIER_PATTERN, IMPORT_ID_PATTERN

PROBLEM: Final = "#/components/schemas/Problem"

# A response body: a model, an inline JSON schema, or None (problem+json for 4xx/5xx, else none).
Body = type[BaseModel] | dict[str, Any] | None
# Answered by the Functions host before the app runs: no body at all (compared by identity).
NO_BODY: Final[dict[str, Any]] = {}


@dataclass(frozen=True)
class Operation:
    function_name: str
    method: str
    route: str  # as registered, below the /api prefix
    auth_level: str  # anonymous | function | admin (Functions keys; tokens guard the API)
    summary: str
    access: Access
    request: type[BaseModel] | None = None
    responses: dict[str, tuple[str, Body]] = field(default_factory=dict)
    headers: tuple[dict[str, Any], ...] = ()
    query: tuple[dict[str, Any], ...] = ()
    # Response headers by status code, names from RESPONSE_HEADERS.
    response_headers: dict[str, tuple[str, ...]] = field(default_factory=dict)
    # 400 (malformed request) and 503 (dependency unavailable): every API handler can answer them.
    common_errors: bool = True
    # False for routes that are not part of the API (the reference page that renders this
    # document): still in the table, so the table matches what the app registers.
    in_document: bool = True


# shared.services.payments: the envelope is checked first; ``data`` only for payment.succeeded
# (other event types are acknowledged and ignored). Unknown fields are ignored.
_WEBHOOK_BODY: Final = {
    "type": "object",
    "required": ["id", "type", "data"],
    "properties": {
        "id": {"type": "string", "minLength": 1, "maxLength": 200, "pattern": r"^[\x21-\x7e]+$"},
        "type": {
            "type": "string",
            "minLength": 1,
            "maxLength": 100,
            "examples": ["payment.succeeded"],
        },
        "data": {"type": "object"},
    },
    "if": {"required": ["type"], "properties": {"type": {"const": "payment.succeeded"}}},
    "then": {
        "properties": {
            "data": {
                "required": ["customerId", "orderId", "amount", "currency"],
                "properties": {
                    "customerId": {"type": "string", "pattern": IDENTIFIER_PATTERN},
                    "orderId": {"type": "string", "pattern": IDENTIFIER_PATTERN},
                    "amount": {
                        "anyOf": [
                            {"type": "string", "pattern": r"^-?[0-9]+(\.[0-9]{1,2})?$"},
                            {"type": "integer"},
                        ],
                        "examples": ["20.50"],
                    },
                    "currency": {"type": "string", "enum": sorted(ISO_4217), "examples": ["EUR"]},
                },
            }
        }
    },
}
_HEALTH: Final = {
    "type": "object",
    "required": ["status", "version"],
    "properties": {"status": {"const": "ok"}, "version": {"type": "string"}},
}
_READINESS: Final = {
    "type": "object",
    "required": ["status", "checks"],
    "properties": {
        "status": {"enum": ["ready", "unavailable"]},
        "checks": {
            "type": "object",
            "additionalProperties": {
                "type": "object",
                "required": ["status"],
                "properties": {
                    "status": {"enum": ["up", "down", "not_configured"]},
                    "durationMs": {"type": "integer"},
                    "reason": {"type": "string"},
                },
            },
        },
    },
}
_WEBHOOK_RESULT: Final = {
    "type": "object",
    "required": ["status"],
    "properties": {"status": {"enum": ["applied", "duplicate", "ignored"]}},
}

_IDEMPOTENCY_KEY: Final = {
    "name": "Idempotency-Key",
    "in": "header",
    "required": False,
    "description": "Retries with the same key and body replay the first response.",
    "schema": {"type": "string", "pattern": r"^[\x21-\x7e]{1,255}$"},
}
_IF_NONE_MATCH: Final = {"name": "If-None-Match", "in": "header", "schema": {"type": "string"}}
_IF_MATCH: Final = {"name": "If-Match", "in": "header", "schema": {"type": "string"}}
_SIGNATURE: Final = {
    "name": "X-Signature",
    "in": "header",
    "required": True,
    "description": 't=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<raw body>">',
    "schema": {"type": "string"},
}

RESPONSE_HEADERS: Final[dict[str, dict[str, Any]]] = {
    "Location": {
        "description": "Path of the new order",
        "required": True,
        "schema": {"type": "string", "pattern": r"^/api/v1/customers/[^/]+/orders/[0-9a-f]{32}$"},
    },
    "ETag": {
        "description": "The order's entity tag, quoted (RFC 9110)",
        "required": True,
        "schema": {"type": "string", "pattern": r'^"[^"]*"$'},
    },
    "Idempotent-Replayed": {
        "description": "Present when the response replays the first one for the Idempotency-Key",
        "schema": {"type": "string", "enum": ["true"]},
    },
    "Link": {
        "description": "The next page, when there is one",
        "schema": {"type": "string", "pattern": r'^<[^>]+>; rel="next"$'},
    },
    "WWW-Authenticate": {
        "description": 'RFC 6750 challenge: Bearer realm="orderflow", with error="invalid_token" '
        'or error="insufficient_scope" (and the scope that would do) when a token was sent',
        "required": True,
        "schema": {"type": "string", "pattern": "^Bearer realm="},
    },
    "Retry-After": {
        "description": "Seconds to wait before retrying",
        "required": True,
        "schema": {"type": "integer", "minimum": 1},
    },
}
_CORRELATION_ID_HEADER: Final = {
    "description": "The caller's X-Correlation-Id when it is well-formed, else the trace id",
    "schema": {"type": "string"},
}

_COMMON_ERRORS: Final[dict[str, tuple[str, Body]]] = {
    "400": ("Malformed request: JSON syntax, path or query parameter, or header", None),
    "503": ("A dependency is unavailable; see Retry-After", None),
}
_HOST_KEY_ERROR: Final[tuple[str, Body]] = (
    "Missing or invalid key: answered by the Functions host in Azure, without a body",
    NO_BODY,
)
_TOKEN_ERRORS: Final[dict[str, tuple[str, Body]]] = {
    "401": ("No bearer token, or an invalid, expired, wrong-audience or wrong-issuer one", None),
    "403": ("The token lacks the scope or role this operation needs", None),
}
_BODY_ERRORS: Final[dict[str, tuple[str, Body]]] = {
    "413": ("Body over 256 KiB", None),
    "415": ("Body is not application/json", None),
    "422": ("Validation failed (per-field errors)", None),
}

OPERATIONS: Final[tuple[Operation, ...]] = (
    Operation(
        "create_order", "post", "v1/customers/{customerId}/orders", "anonymous", "Place an order",
        access=CUSTOMER_ORDERS,
        request=OrderDraft,
        responses={"201": ("Created (or replayed for the same Idempotency-Key)", Order),
                   **_BODY_ERRORS},
        headers=(_IDEMPOTENCY_KEY,),
        response_headers={"201": ("Location", "ETag", "Idempotent-Replayed")},
    ),
    Operation(
        "list_orders", "get", "v1/customers/{customerId}/orders", "anonymous",
        "A page of the customer's orders, newest first", access=CUSTOMER_ORDERS,
        responses={"200": ("A page; follow Link rel=next or pass continuation", OrderList)},
        query=(
            {"name": "status", "in": "query",
             "schema": {"enum": [status.value for status in OrderStatus]}},
            {"name": "limit", "in": "query",
             "schema": {"type": "integer", "minimum": 1, "maximum": 100, "default": 25}},
            {"name": "continuation", "in": "query",
             "description": "Opaque token from the previous page; 400 if this API did not issue "
                            "it for the same customer and status",
             "schema": {"type": "string", "maxLength": 8192}},
        ),
        response_headers={"200": ("Link",)},
    ),
    Operation(
        "get_order", "get", "v1/customers/{customerId}/orders/{orderId}", "anonymous",
        "Read an order", access=CUSTOMER_ORDERS,
        responses={"200": ("The order, with its ETag", Order),
                   "304": ("Not modified (If-None-Match)", None),
                   "404": ("No such order", None)},
        headers=(_IF_NONE_MATCH,),
        response_headers={"200": ("ETag",), "304": ("ETag",)},
    ),
    Operation(
        "cancel_order", "post", "v1/customers/{customerId}/orders/{orderId}/cancel", "anonymous",
        "Cancel a pending (or backordered) order", access=CUSTOMER_ORDERS,
        responses={"200": ("Cancelled", Order), "404": ("No such order", None),
                   "409": ("The order's status does not allow it", None),
                   "412": ("If-Match is stale", None)},
        headers=(_IF_MATCH,),
        response_headers={"200": ("ETag",)},
    ),
    Operation(
        "set_inventory", "put", "v1/inventory/{sku}", "anonymous", "Set the stock level of a SKU",
        access=INVENTORY_WRITE,
        request=StockLevelIn, responses={"200": ("Stock level", StockLevelOut), **_BODY_ERRORS},
    ),
    Operation(
        "get_inventory", "get", "v1/inventory/{sku}", "anonymous", "Read the stock level of a SKU",
        access=ANY_TOKEN,
        responses={"200": ("Stock level", StockLevelOut), "404": ("Unknown SKU", None)},
    ),
    Operation(
        "get_import_status", "get", "v1/imports/{importId}", "anonymous",
        "Progress of a file import (the uploaded blob's name)", access=IMPORTS_READ,
        responses={"200": ("Import status", ImportStatus), "404": ("No such import", None)},
    ),
    Operation(
        "payment_webhook", "post", "v1/payments/webhook", "anonymous",
        "Payment provider callback (HMAC-signed)", access=SIGNED_WEBHOOK,
        request=None,
        responses={"200": ("Applied, duplicate or ignored", _WEBHOOK_RESULT),
                   "401": ("Missing, wrong or stale signature", None),
                   "404": ("No such order", None),
                   "409": ("The order cannot be paid in its status", None),
                   **_BODY_ERRORS,
                   "422": ("Validation failed, or the amount or currency does not match the "
                           "order", None)},
        headers=(_SIGNATURE,),
    ),
    Operation(
        "health_live", "get", "health", "anonymous", "Liveness", access=PROBES,
        responses={"200": ("Alive", _HEALTH)}, common_errors=False,
    ),
    Operation(
        "health_ready", "get", "health/ready", "anonymous", "Readiness of every dependency",
        access=PROBES,
        responses={"200": ("Ready", _READINESS), "503": ("Not ready", _READINESS)},
        response_headers={"503": ("Retry-After",)}, common_errors=False,
    ),
    Operation(
        "openapi_document", "get", "openapi.json", "anonymous", "This document",
        access=PUBLIC_DOCUMENT,
        responses={"200": ("OpenAPI 3.1", {"type": "object"})}, common_errors=False,
    ),
    Operation(
        "api_docs", "get", "docs/{*asset}", "anonymous", "The API reference (Swagger UI)",
        access=API_REFERENCE, in_document=False,
    ),
)  # fmt: skip

_PROBLEM_SCHEMA: Final = {
    "type": "object",
    "description": "RFC 9457 problem details",
    "required": ["type", "title", "status", "detail", "traceId"],
    "properties": {
        "type": {"type": "string"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
        "traceId": {"type": "string"},
        "errors": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["pointer", "detail"],
                "properties": {"pointer": {"type": "string"}, "detail": {"type": "string"}},
            },
        },
    },
}


def _content(schema: type[BaseModel] | dict[str, Any], names: dict[type[BaseModel], str]) -> Any:
    if isinstance(schema, dict):
        return {"application/json": {"schema": schema}}
    return {"application/json": {"schema": {"$ref": f"#/components/schemas/{names[schema]}"}}}


def _problem_content(status: int) -> dict[str, Any]:
    """Problem details whose ``status`` member repeats the response's status code."""
    schema = {"allOf": [{"$ref": PROBLEM}, {"properties": {"status": {"const": status}}}]}
    return {"application/problem+json": {"schema": schema}}


def _responses(op: Operation, names: dict[type[BaseModel], str]) -> dict[str, Any]:
    """Every status the operation can answer, with its body and headers."""
    documented = {**(_COMMON_ERRORS if op.common_errors else {}), **op.responses}
    if op.auth_level != "anonymous":
        documented["401"] = _HOST_KEY_ERROR
    if op.access.requires_token:
        documented.update(_TOKEN_ERRORS)
    responses: dict[str, Any] = {}
    for status, (description, schema) in sorted(documented.items()):
        response: dict[str, Any] = {"description": description}
        if schema is NO_BODY:
            pass
        elif schema is not None:
            response["content"] = _content(schema, names)
        elif int(status) >= 400:
            response["content"] = _problem_content(int(status))
        header_names = op.response_headers.get(status, ())
        if status == "503":
            header_names = ("Retry-After", *header_names)
        if status in _TOKEN_ERRORS and op.access.requires_token:
            header_names = ("WWW-Authenticate", *header_names)
        headers = {name: RESPONSE_HEADERS[name] for name in dict.fromkeys(header_names)}
        if "content" in response:
            headers["X-Correlation-Id"] = _CORRELATION_ID_HEADER
        if headers:
            response["headers"] = headers
        responses[status] = response
    return responses


@cache
def openapi_document() -> dict[str, Any]:
    models: list[type[BaseModel]] = sorted(
        {
            model
            for op in OPERATIONS
            for model in (
                op.request,
                *(schema for _, schema in op.responses.values() if isinstance(schema, type)),
            )
            if model is not None
        },
        key=lambda model: model.__name__,
    )
    names = {model: model.__name__ for model in models}
    keys, definitions = models_json_schema(
        [
            (
                model,
                "validation" if any(op.request is model for op in OPERATIONS) else "serialization",
            )
            for model in models
        ],
        by_alias=True,
        ref_template="#/components/schemas/{model}",
    )
    del keys
    schemas: dict[str, Any] = dict(definitions.get("$defs", {}))
    schemas["Problem"] = _PROBLEM_SCHEMA

    paths: dict[str, dict[str, Any]] = {}
    for op in OPERATIONS:
        if not op.in_document:
            continue
        parameters: list[dict[str, Any]] = [
            {
                "name": name,
                "in": "path",
                "required": True,
                "schema": {"type": "string", "pattern": IDENTIFIER_PATTERN}
                if name != "importId"
                else {"type": "string", "pattern": IMPORT_ID_PATTERN},
            }
            for name in _path_names(op.route)
        ]
        parameters += [dict(p) for p in (*op.headers, *op.query)]
        operation: dict[str, Any] = {
            "operationId": op.function_name,
            "summary": op.summary,
            "description": f"Who may call it: {op.access.describe()}.",
            "x-orderflow-access": op.access.kind,
            "parameters": parameters,
            "responses": _responses(op, names),
        }
        if op.request is not None:
            operation["requestBody"] = {"required": True, "content": _content(op.request, names)}
        elif op.function_name == "payment_webhook":
            operation["requestBody"] = {"required": True, "content": _content(_WEBHOOK_BODY, names)}
        operation["security"] = _security(op.access)
        paths.setdefault(f"/api/{op.route}", {})[op.method] = operation

    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Orderflow API",
            "version": __version__,
            "description": "Orders, inventory, imports and payments. Errors are RFC 9457 "
            "application/problem+json.",
        },
        "servers": [{"url": "/"}],
        "paths": paths,
        "components": {
            "schemas": dict(sorted(schemas.items())),
            "securitySchemes": _SECURITY_SCHEMES,
        },
        "security": [{BEARER: []}],
    }


BEARER: Final = "bearer"
ENTRA_ID: Final = "entraId"
# Entra ID's endpoints for the organisation's tenant ("organizations" stands for it here: use
# the tenant id). Clients ask for ``<App ID URI>/.default``; the roles granted to the client app
# arrive in the token's ``roles`` claim, the delegated scope in ``scp``. docs/SECURITY.md.
_ENTRA_LOGIN: Final = "https://login.microsoftonline.com/organizations/oauth2/v2.0"
_SECURITY_SCHEMES: Final = {
    BEARER: {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "JWT",
        "description": "An access token (RS256/ES256 JWT) of the issuer in AUTH_ISSUER for the "
        "audience in AUTH_AUDIENCE, in the Authorization header only. Locally: "
        "`make token CUSTOMER=alice` or `make token ROLES=...`. Security requirements list "
        "the scope (`scp`) or app role (`roles`) that is enough.",
    },
    ENTRA_ID: {
        "type": "oauth2",
        "description": "Microsoft Entra ID (replace `organizations` with the tenant id). "
        "Delegated: scope Orders.ReadWrite for a signed-in customer's own orders. Client "
        "credentials: request `<App ID URI>/.default`; the app roles granted to the client "
        "come in the `roles` claim.",
        "flows": {
            "authorizationCode": {
                "authorizationUrl": f"{_ENTRA_LOGIN}/authorize",
                "tokenUrl": f"{_ENTRA_LOGIN}/token",
                "scopes": {scope: DESCRIPTIONS[scope] for scope in DELEGATED_SCOPES},
            },
            "clientCredentials": {
                "tokenUrl": f"{_ENTRA_LOGIN}/token",
                "scopes": {role: f"App role: {DESCRIPTIONS[role]}" for role in APP_ROLES},
            },
        },
    },
}


def _security(access: Access) -> list[dict[str, list[str]]]:
    """Alternatives (any one is enough): each scope or role that satisfies the access, for
    both schemes; an empty list for anonymous operations."""
    if not access.requires_token:
        return []
    permissions = (*access.scopes, *access.roles)
    if not permissions:
        return [{BEARER: []}, {ENTRA_ID: []}]
    return [{scheme: [permission]} for permission in permissions for scheme in (BEARER, ENTRA_ID)]


def _path_names(route: str) -> list[str]:
    return [part[1:-1] for part in route.split("/") if part.startswith("{")]


if __name__ == "__main__":
    import json
    import sys

    sys.stdout.write(json.dumps(openapi_document(), indent=2) + "\n")
