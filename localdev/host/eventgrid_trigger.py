"""Event Grid triggers: the Functions host's Event Grid webhook, and nothing else.

Event Grid is a service of its own (locally the stack's stand-in, ``localdev.eventgrid``,
with the subscriptions of infra/); like the Functions host (and ``func start``), this host
only answers what Event Grid calls:

``POST /runtime/webhooks/eventgrid?functionName=<name>`` with ``aeg-event-type: Notification``
invokes the function once per event of the body (an array or one object) and answers 202, or
500 when an invocation failed (Event Grid then retries with its schedule); an event that cannot
be decoded is 400 (Event Grid does not retry it). ``SubscriptionValidation`` answers
``{"validationResponse": "<code>"}``; ``OPTIONS`` with ``WebHook-Request-Origin`` is the
CloudEvents abuse-protection handshake. An unknown or disabled function is 404.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, Final
from urllib.parse import parse_qs

from localdev.host.invoker import FunctionInvocationError, InvocationRequest, TraceParent
from localdev.host.loader import IndexedFunction
from localdev.host.messages import HostRequest, HostResponse
from localdev.host.sources import DeliverySource, HostServices, register_delivery_source

EVENT_GRID_TRIGGER: Final = "eventGridTrigger"
WEBHOOK_PATH: Final = "/runtime/webhooks/eventgrid"
MAX_CONCURRENT_DELIVERIES: Final = 16
INVOCATION_REASON: Final = "EventGrid trigger fired"


def _error(status: int, code: str, message: str) -> HostResponse:
    return HostResponse.json(status, {"error": {"code": code, "message": message}})


@register_delivery_source
class EventGridTriggerSource(DeliverySource):
    trigger_type: ClassVar[str] = EVENT_GRID_TRIGGER
    http_precedence: ClassVar[int] = 10

    def __init__(self, services: HostServices, functions: Sequence[IndexedFunction]) -> None:
        super().__init__(services, functions)
        self._by_name = {function.name.lower(): function for function in functions}
        self._slots: asyncio.Semaphore | None = None

    def describe(self, function: IndexedFunction) -> str:
        return (
            f"eventGridTrigger ({self.services.base_url}{WEBHOOK_PATH}?functionName="
            f"{function.name})"
        )

    async def start(self) -> None:
        self._slots = asyncio.Semaphore(MAX_CONCURRENT_DELIVERIES)

    async def handle_http(self, request: HostRequest) -> HostResponse | None:
        path = request.path.rstrip("/") if request.path != "/" else request.path
        if path.lower() == WEBHOOK_PATH:
            return await self._webhook(request)
        return None

    async def _invoke(self, function: IndexedFunction, event: Mapping[str, Any]) -> bool | None:
        """True when the function succeeded, False when it failed, None when the event cannot
        be decoded (the host answers 400, which Event Grid never retries)."""
        from azure.functions.eventgrid import EventGridEventInConverter
        from azure.functions.meta import Datum

        assert self._slots is not None  # noqa: S101 - set in start()
        async with self._slots:
            try:
                value = EventGridEventInConverter.decode(
                    Datum(json.dumps(event), "json"), trigger_metadata={}
                )
            except Exception:
                self.services.logger.exception("Event Grid: event cannot be decoded")
                return None
            extension = event.get("traceparent")
            parent = TraceParent.parse(extension if isinstance(extension, str) else None)
            request = InvocationRequest(
                inputs={function.trigger_parameter: value},
                reason=INVOCATION_REASON,
                trace_parent=TraceParent.child_of(parent),
            )
            try:
                await self.services.invoker.invoke(function, request)
            except FunctionInvocationError:
                return False
            return True

    # ----------------------------------------------------------------------------- webhook

    async def _webhook(self, request: HostRequest) -> HostResponse:  # noqa: PLR0911 - one answer per case
        names = parse_qs(request.query_string).get("functionName") or [""]
        function = self._by_name.get(names[0].lower())
        if function is None or function.disabled:
            return _error(404, "NotFound", f"cannot find function: '{names[0][:128]}'")
        if request.method == "OPTIONS":
            origin = request.header("webhook-request-origin") or "*"
            return HostResponse(200, headers=(("webhook-allowed-origin", origin),))
        if request.method != "POST":
            return _error(405, "MethodNotAllowed", "only POST and OPTIONS are supported")
        try:
            document = json.loads(request.body)
        except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
            return _error(400, "BadRequest", "the body is not JSON")
        events = document if isinstance(document, list) else [document]
        if not all(isinstance(event, dict) for event in events):
            return _error(400, "BadRequest", "events must be JSON objects")
        kind = (request.header("aeg-event-type") or "").lower()
        if kind == "subscriptionvalidation":
            code = (events[0].get("data") or {}).get("validationCode") if events else None
            if not isinstance(code, str):
                return _error(400, "BadRequest", "no validationCode in the event data")
            return HostResponse.json(200, {"validationResponse": code})
        if kind == "unsubscribe":
            return HostResponse.empty(202)
        if kind != "notification":
            return _error(400, "BadRequest", "aeg-event-type must be Notification")
        results = [await self._invoke(function, event) for event in events]
        if None in results:
            return _error(400, "BadRequest", "an event cannot be decoded")
        return HostResponse.empty(500 if False in results else 202)
