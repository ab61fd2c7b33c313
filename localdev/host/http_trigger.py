"""HTTP trigger delivery: route table, ``func.HttpRequest`` in, the function's response out.

- Routes come from each ``httpTrigger`` binding (``route``, default the function name;
  ``methods``, default all; ``authLevel``) under ``extensions.http.routePrefix`` from
  ``host.json`` (default ``api``). Matching and precedence: :mod:`localdev.host.routing`.
- Function keys are not enforced, as with ``func start``; the auth level is kept in the route
  table and shown at startup and in ``/admin/functions``.
- The request is a real ``azure.functions.HttpRequest``: method, full URL, headers (lower-case
  names, repeated ones joined with ", "), query (repeated keys joined with ","), route values
  and the body bytes. ``context.trace_context.trace_parent`` continues the caller's
  ``traceparent`` with a new span id, or starts a new trace.
- The return value goes through the worker's HTTP converter: an ``HttpResponse`` gives its
  status, headers (one value per name, the worker keeps a dict) and ``Set-Cookie`` values; a
  ``str`` gives 200 ``text/plain; charset=utf-8`` (ASP.NET's string result).
- A failed invocation is a 500 with an empty body: the exception is in the log, never in the
  response, as in Azure. A disabled function is not routed (404).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import azure.functions as func

from localdev.host.invoker import (
    FunctionInvocationError,
    InvocationRequest,
    InvocationResult,
    TraceParent,
)
from localdev.host.loader import HTTP_TRIGGER, IndexedFunction
from localdev.host.messages import HostRequest, HostResponse
from localdev.host.routing import Route, RouteTable
from localdev.host.sources import DeliverySource, HostServices, register_delivery_source

INVOCATION_REASON = "This function was programmatically called via the host APIs."
STRING_CONTENT_TYPE = "text/plain; charset=utf-8"


def build_route_table(functions: Sequence[IndexedFunction], route_prefix: str) -> RouteTable:
    return RouteTable.from_triggers(
        ((function.name, function.trigger) for function in functions if not function.disabled),
        route_prefix,
    )


def response_from_datum(datum: Any, invocation_id: str) -> HostResponse:
    """Map the worker's encoded return value (``http`` or ``string`` datum) to a response."""
    if datum is not None and datum.type == "string":
        body = str(datum.value).encode("utf-8")
        return HostResponse(
            status=200,
            headers=(("content-type", STRING_CONTENT_TYPE),),
            body=body,
            invocation_id=invocation_id,
        )
    if datum is None or datum.type != "http":
        raise TypeError(f"unexpected HTTP return datum {datum!r}")
    value = datum.value
    headers = [(str(name), str(header.value)) for name, header in value["headers"].items()]
    for cookie in value.get("cookies") or ():
        headers.extend(("set-cookie", morsel.OutputString()) for morsel in cookie.values())
    body = value["body"].value if value.get("body") is not None else b""
    if isinstance(body, str):
        body = body.encode("utf-8")
    return HostResponse(
        status=int(value["status_code"].value),
        headers=tuple(headers),
        body=bytes(body or b""),
        invocation_id=invocation_id,
    )


@register_delivery_source
class HttpTriggerSource(DeliverySource):
    trigger_type: ClassVar[str] = HTTP_TRIGGER
    http_precedence: ClassVar[int] = 1000

    def __init__(self, services: HostServices, functions: Sequence[IndexedFunction]) -> None:
        super().__init__(services, functions)
        self.route_table = build_route_table(functions, services.host_json.route_prefix)
        self._functions_by_name = {function.name: function for function in functions}

    def route_for(self, function: IndexedFunction) -> Route | None:
        return next(
            (route for route in self.route_table if route.function_name == function.name), None
        )

    def describe(self, function: IndexedFunction) -> str:
        route = self.route_for(function)
        if route is None:
            return "httpTrigger (disabled)"
        methods = ",".join(sorted(route.methods)) if route.methods else "all"
        return (
            f"[{methods}] {self.services.base_url}{route.url_template} "
            f"(authLevel: {route.auth_level})"
        )

    async def handle_http(self, request: HostRequest) -> HostResponse | None:
        match = self.route_table.match(request.method, request.raw_path)
        if match is None:
            return None
        function = self._functions_by_name[match.route.function_name]
        http_request = func.HttpRequest(
            method=request.method,
            url=request.url,
            headers=request.header_map(),
            params=request.query_map(),
            route_params=match.route_params,
            body=request.body,
        )
        invocation = InvocationRequest(
            inputs={function.trigger_parameter: http_request},
            reason=INVOCATION_REASON,
            trace_parent=TraceParent.child_of(TraceParent.parse(request.header("traceparent"))),
            trace_state=request.header("tracestate") or "",
        )
        try:
            result = await self.services.invoker.invoke(function, invocation)
        except FunctionInvocationError as failure:
            return HostResponse.empty(500, invocation_id=failure.invocation_id)
        try:
            return response_from_datum(_http_datum(function, result), result.invocation_id)
        except (TypeError, ValueError, KeyError):
            self.services.logger.exception(
                "Function '%s' produced no usable HTTP response (Id=%s)",
                function.name,
                result.invocation_id,
            )
            return HostResponse.empty(500, invocation_id=result.invocation_id)


def _http_datum(function: IndexedFunction, result: InvocationResult) -> Any:
    """The response from ``$return``, or from a named ``http`` output binding (``func.Out``)."""
    if result.return_datum is not None:
        return result.return_datum
    from azure_functions_runtime.bindings.meta import get_datum

    for name, value in result.outputs.items():
        binding = function.binding(name)
        if binding is not None and binding.get("type") == "http" and value is not None:
            return get_datum("http", value, pytype=None)
    return None
