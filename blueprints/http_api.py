"""HTTP API (pattern 1): orders, inventory, import status, payment webhook, OpenAPI.

Handlers only parse and validate the request, call one service, and map the result; every
failure becomes RFC 9457 problem+json in ``blueprints._problems``. Services load on first use.

Who may call each route is declared once, in its ``api_handler(...)`` (the table in
``shared.auth.policy``); the wrapper enforces it before the handler runs. Token-guarded routes
are ``AuthLevel.ANONYMOUS`` for the Functions host: the bearer token is the credential, and a
function key would only add a shared secret.
"""

from __future__ import annotations

import re
import urllib.parse
from typing import Final

import azure.functions as func

from blueprints._invocation import json_response
from blueprints._problems import ProblemError, api_handler, parse_body
from shared.auth.policy import (
    ANY_TOKEN,
    CUSTOMER_ORDERS,
    IMPORTS_READ,
    INVENTORY_WRITE,
    PUBLIC_DOCUMENT,
    SIGNED_WEBHOOK,
)
from shared.observability import InvocationContext
from shared.patterns import IDENTIFIER_PATTERN, IMPORT_ID_PATTERN
from shared.services import providers

bp = func.Blueprint()

ORDERS_ROUTE: Final = "v1/customers/{customerId}/orders"
ORDER_ROUTE: Final = "v1/customers/{customerId}/orders/{orderId}"
CANCEL_ROUTE: Final = "v1/customers/{customerId}/orders/{orderId}/cancel"
INVENTORY_ROUTE: Final = "v1/inventory/{sku}"
IMPORT_ROUTE: Final = "v1/imports/{importId}"
WEBHOOK_ROUTE: Final = "v1/payments/webhook"

_IDENTIFIER = re.compile(IDENTIFIER_PATTERN)
_IMPORT_ID = re.compile(IMPORT_ID_PATTERN)
_IDEMPOTENCY_KEY = re.compile(r"^[\x21-\x7e]{1,255}$")
# ASCII digits only: str.isdigit() is also true for superscripts, which int() refuses.
_PAGE_SIZE = re.compile(r"[0-9]{1,3}")
MAX_CONTINUATION_LENGTH: Final = 8192


def _path(req: func.HttpRequest, name: str, pattern: re.Pattern[str] = _IDENTIFIER) -> str:
    value = str(req.route_params.get(name, ""))
    # fullmatch: with match(), "$" also matches before a trailing newline ("id%0A").
    if not pattern.fullmatch(value):
        raise ProblemError(
            400,
            "Bad request",
            f"path parameter {name} is not a valid identifier",
            slug="parameter",
            field_errors=[{"pointer": f"#/path/{name}", "detail": "invalid identifier"}],
        )
    return value


def _bad_query(name: str, detail: str) -> ProblemError:
    return ProblemError(
        400,
        "Bad request",
        f"query parameter {name} {detail}",
        slug="parameter",
        field_errors=[{"pointer": f"#/query/{name}", "detail": detail}],
    )


def _order_url(customer_id: str, order_id: str) -> str:
    return f"/api/v1/customers/{customer_id}/orders/{order_id}"


@bp.function_name("create_order")
@bp.route(route=ORDERS_ROUTE, methods=[func.HttpMethod.POST], auth_level=func.AuthLevel.ANONYMOUS)
@api_handler(CUSTOMER_ORDERS, service=providers.order_service)
def create_order(req: func.HttpRequest, scope: InvocationContext) -> func.HttpResponse:
    from shared.models import OrderDraft
    from shared.services.orders import first_response_view, http_etag, order_view
    from shared.services.providers import order_service

    customer_id = _path(req, "customerId")
    key = req.headers.get("idempotency-key")
    if key is not None and not _IDEMPOTENCY_KEY.fullmatch(key):
        raise ProblemError(
            400,
            "Bad request",
            "Idempotency-Key must be 1-255 visible ASCII characters",
            slug="idempotency",
        )
    draft = parse_body(req, OrderDraft)
    result = order_service().place(
        customer_id, draft, idempotency_key=key, traceparent=scope.traceparent
    )
    stored = result.order
    headers = {"Location": _order_url(customer_id, stored.id), "ETag": http_etag(stored.etag)}
    if result.replayed:
        headers["Idempotent-Replayed"] = "true"
        body = first_response_view(stored.document)
    else:
        body = order_view(stored.document)
    return json_response(body, status_code=201, scope=scope, headers=headers)


@bp.function_name("get_order")
@bp.route(route=ORDER_ROUTE, methods=[func.HttpMethod.GET], auth_level=func.AuthLevel.ANONYMOUS)
@api_handler(CUSTOMER_ORDERS, service=providers.order_service)
def get_order(req: func.HttpRequest, scope: InvocationContext) -> func.HttpResponse:
    from shared.services.orders import etag_matches, http_etag, order_view
    from shared.services.providers import order_service

    stored = order_service().get(_path(req, "customerId"), _path(req, "orderId"))
    etag = http_etag(stored.etag)
    if_none_match = req.headers.get("if-none-match")
    if if_none_match and etag_matches(if_none_match, stored.etag, weak=True):
        return func.HttpResponse(status_code=304, headers={"ETag": etag})
    return json_response(order_view(stored.document), scope=scope, headers={"ETag": etag})


@bp.function_name("list_orders")
@bp.route(route=ORDERS_ROUTE, methods=[func.HttpMethod.GET], auth_level=func.AuthLevel.ANONYMOUS)
@api_handler(CUSTOMER_ORDERS, service=providers.order_service)
def list_orders(req: func.HttpRequest, scope: InvocationContext) -> func.HttpResponse:
    from shared.models import OrderStatus
    from shared.services.orders import DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE, order_view
    from shared.services.providers import order_service

    customer_id = _path(req, "customerId")
    raw_status = req.params.get("status")
    try:
        status = OrderStatus(raw_status) if raw_status else None
    except ValueError:
        allowed = ", ".join(s.value for s in OrderStatus)
        raise _bad_query("status", f"must be one of {allowed}") from None
    raw_limit = req.params.get("limit")
    if raw_limit is None:
        limit = DEFAULT_PAGE_SIZE
    elif _PAGE_SIZE.fullmatch(raw_limit) and 1 <= int(raw_limit) <= MAX_PAGE_SIZE:
        limit = int(raw_limit)
    else:
        raise _bad_query("limit", f"must be an integer from 1 to {MAX_PAGE_SIZE}")
    continuation = req.params.get("continuation") or None
    if continuation is not None and len(continuation) > MAX_CONTINUATION_LENGTH:
        raise _bad_query("continuation", "is too long")

    page = order_service().list(customer_id, status=status, limit=limit, continuation=continuation)
    headers = {}
    if page.continuation:
        query = {"limit": str(limit), "continuation": page.continuation}
        if status is not None:
            query["status"] = status.value
        next_url = f"/api/{ORDERS_ROUTE.format(customerId=customer_id)}?" + urllib.parse.urlencode(
            query
        )
        headers["Link"] = f'<{next_url}>; rel="next"'
    body = {
        "items": [order_view(item.document) for item in page.items],
        "continuation": page.continuation,
    }
    return json_response(body, scope=scope, headers=headers)


@bp.function_name("cancel_order")
@bp.route(route=CANCEL_ROUTE, methods=[func.HttpMethod.POST], auth_level=func.AuthLevel.ANONYMOUS)
@api_handler(CUSTOMER_ORDERS, service=providers.order_service)
def cancel_order(req: func.HttpRequest, scope: InvocationContext) -> func.HttpResponse:
    from shared.services.orders import http_etag, order_view
    from shared.services.providers import order_service

    stored = order_service().cancel(
        _path(req, "customerId"),
        _path(req, "orderId"),
        if_match=req.headers.get("if-match"),
        traceparent=scope.traceparent,
    )
    return json_response(
        order_view(stored.document), scope=scope, headers={"ETag": http_etag(stored.etag)}
    )


@bp.function_name("set_inventory")
@bp.route(route=INVENTORY_ROUTE, methods=[func.HttpMethod.PUT], auth_level=func.AuthLevel.ANONYMOUS)
@api_handler(INVENTORY_WRITE, service=providers.inventory_service)
def set_inventory(req: func.HttpRequest, scope: InvocationContext) -> func.HttpResponse:
    from shared.models import StockLevelIn
    from shared.services.providers import inventory_service

    sku = _path(req, "sku")
    level = inventory_service().set_available(sku, parse_body(req, StockLevelIn).available)
    return json_response(level.model_dump(mode="json"), scope=scope)


@bp.function_name("get_inventory")
@bp.route(route=INVENTORY_ROUTE, methods=[func.HttpMethod.GET], auth_level=func.AuthLevel.ANONYMOUS)
@api_handler(ANY_TOKEN, service=providers.inventory_service)
def get_inventory(req: func.HttpRequest, scope: InvocationContext) -> func.HttpResponse:
    from shared.services.providers import inventory_service

    level = inventory_service().get(_path(req, "sku"))
    return json_response(level.model_dump(mode="json"), scope=scope)


@bp.function_name("get_import_status")
@bp.route(route=IMPORT_ROUTE, methods=[func.HttpMethod.GET], auth_level=func.AuthLevel.ANONYMOUS)
@api_handler(IMPORTS_READ, service=providers.import_status_service)
def get_import_status(req: func.HttpRequest, scope: InvocationContext) -> func.HttpResponse:
    from shared.services.providers import import_status_service

    status = import_status_service().get(_path(req, "importId", _IMPORT_ID))
    return json_response(status.model_dump(by_alias=True, mode="json"), scope=scope)


@bp.function_name("payment_webhook")
@bp.route(route=WEBHOOK_ROUTE, methods=[func.HttpMethod.POST], auth_level=func.AuthLevel.ANONYMOUS)
@api_handler(SIGNED_WEBHOOK)
def payment_webhook(req: func.HttpRequest, scope: InvocationContext) -> func.HttpResponse:
    from blueprints._problems import MAX_BODY_BYTES
    from shared.services.payments import PaymentEvent
    from shared.services.providers import payment_service
    from shared.webhooks import SIGNATURE_HEADER

    service = payment_service()
    raw_body = req.get_body() or b""
    if len(raw_body) > MAX_BODY_BYTES:
        raise ProblemError(413, "Payload too large", "webhook body too large", slug="too-large")
    service.verify(req.headers.get(SIGNATURE_HEADER), raw_body)  # before reading the body
    result = service.apply(parse_body(req, PaymentEvent), traceparent=scope.traceparent)
    return json_response({"status": result.outcome.value}, scope=scope)


@bp.function_name("openapi_document")
@bp.route(route="openapi.json", methods=[func.HttpMethod.GET], auth_level=func.AuthLevel.ANONYMOUS)
@api_handler(PUBLIC_DOCUMENT)
def openapi_document(req: func.HttpRequest, scope: InvocationContext) -> func.HttpResponse:
    from shared.openapi import openapi_document as build

    return json_response(build(), scope=scope, headers={"Cache-Control": "public, max-age=300"})
