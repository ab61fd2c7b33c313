"""Event Grid delivery: a local custom topic and the host's Event Grid webhook.

**The local topic** (what the app publishes to; ``EVENTGRID_TOPIC_ENDPOINT``):
``POST /runtime/eventgrid/topics/<topic>/api/events`` answers like a basic custom topic:

- ``aeg-sas-key`` must equal the app setting ``EVENTGRID_TOPIC_KEY`` (401 otherwise, also when
  no key is set: a topic without auth does not exist);
- the body is a JSON array of CloudEvents 1.0 (``application/cloudevents-batch+json``) or of
  Event Grid schema events (``application/json``); anything else is 400 with an error document,
  over 1 MB is 413, as Event Grid does; 200 with an empty body once accepted.

Every ``eventGridTrigger`` function is one subscription of every local topic: each accepted
event is delivered to each function, concurrently (at most :data:`MAX_CONCURRENT_DELIVERIES`
at a time), with Event Grid's retry semantics compressed for a laptop: a failed delivery is
retried after :data:`DEFAULT_RETRY_DELAYS_SECONDS` (Event Grid waits 10 s, 30 s, 1 min, 5 min,
... for up to 24 h), and after the last attempt the event is logged as dead-lettered with its id.
The app setting ``LOCALDEV_EVENTGRID_RETRY_DELAYS`` (comma-separated seconds) changes the
schedule. Events are kept in memory: an event waiting for a retry when the host stops is lost
(in Azure, Event Grid keeps it).

**The webhook** (what Event Grid calls in Azure, and what tools use locally):
``POST /runtime/webhooks/eventgrid?functionName=<name>`` with ``aeg-event-type: Notification``
invokes the function once per event of the body (an array or one object) and answers 202, or
500 when an invocation failed (Event Grid then retries); ``SubscriptionValidation`` answers
``{"validationResponse": "<code>"}``; ``OPTIONS`` with ``WebHook-Request-Origin`` is the
CloudEvents abuse-protection handshake. An unknown function is 404.

If ``EVENTGRID_TOPIC_ENDPOINT`` contains ``{port}``, the host replaces it with its own port
before the app reads its settings, so a host started with ``--port 0`` publishes to itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import re
from collections.abc import Mapping, MutableMapping, Sequence
from typing import Any, ClassVar, Final
from urllib.parse import parse_qs

from localdev.host.invoker import (
    FunctionInvocationError,
    InvocationRequest,
    RetryState,
    TraceParent,
)
from localdev.host.loader import IndexedFunction
from localdev.host.messages import HostRequest, HostResponse
from localdev.host.sources import DeliverySource, HostServices, register_delivery_source

EVENT_GRID_TRIGGER: Final = "eventGridTrigger"
WEBHOOK_PATH: Final = "/runtime/webhooks/eventgrid"
TOPIC_PATH: Final = re.compile(r"^/runtime/eventgrid/topics/([A-Za-z0-9-]{3,50})/api/events/?$")
TOPIC_ENDPOINT_SETTING: Final = "EVENTGRID_TOPIC_ENDPOINT"
TOPIC_KEY_SETTING: Final = "EVENTGRID_TOPIC_KEY"
RETRY_DELAYS_SETTING: Final = "LOCALDEV_EVENTGRID_RETRY_DELAYS"
DEFAULT_RETRY_DELAYS_SECONDS: Final = (1.0, 2.0, 5.0, 10.0, 30.0)
MAX_BATCH_BYTES: Final = 1_048_576
MAX_CONCURRENT_DELIVERIES: Final = 16
INVOCATION_REASON: Final = "EventGrid trigger fired"
CLOUDEVENT_REQUIRED: Final = ("id", "source", "type")
EVENTGRID_REQUIRED: Final = ("id", "eventType", "subject", "eventTime", "dataVersion")


def _error(status: int, code: str, message: str) -> HostResponse:
    return HostResponse.json(status, {"error": {"code": code, "message": message}})


def retry_delays(environ: Mapping[str, str]) -> tuple[float, ...]:
    raw = environ.get(RETRY_DELAYS_SETTING, "").strip()
    if not raw:
        return DEFAULT_RETRY_DELAYS_SECONDS
    try:
        delays = tuple(float(part) for part in raw.split(","))
    except ValueError:
        delays = ()
    if not delays or any(not 0 <= delay <= 3600 for delay in delays):
        raise ValueError(f"{RETRY_DELAYS_SETTING} must be comma-separated seconds (0-3600)")
    return delays


def validate_events(body: bytes, *, cloudevents: bool) -> list[dict[str, Any]]:
    """The events of a topic request, or ValueError saying what is wrong (-> 400)."""
    try:
        document = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as error:
        raise ValueError(f"the body is not JSON: {error}") from None
    if not isinstance(document, list) or not document:
        raise ValueError("the body must be a non-empty JSON array of events")
    required = CLOUDEVENT_REQUIRED if cloudevents else EVENTGRID_REQUIRED
    for index, event in enumerate(document):
        if not isinstance(event, dict):
            raise ValueError(f"event {index} is not an object")
        missing = [name for name in required if not isinstance(event.get(name), str)]
        if missing:
            raise ValueError(f"event {index} lacks {', '.join(missing)}")
        if cloudevents and event.get("specversion") != "1.0":
            raise ValueError(f"event {index}: specversion must be '1.0'")
    return document


def _bind_port(environ: Mapping[str, str], base_url: str) -> None:
    endpoint = environ.get(TOPIC_ENDPOINT_SETTING, "")
    if "{port}" in endpoint and isinstance(environ, MutableMapping):
        port = base_url.rsplit(":", 1)[-1]
        environ[TOPIC_ENDPOINT_SETTING] = endpoint.replace("{port}", port)


@register_delivery_source
class EventGridTriggerSource(DeliverySource):
    trigger_type: ClassVar[str] = EVENT_GRID_TRIGGER
    http_precedence: ClassVar[int] = 10

    def __init__(self, services: HostServices, functions: Sequence[IndexedFunction]) -> None:
        super().__init__(services, functions)
        _bind_port(services.environ, services.base_url)
        self.retry_delays = retry_delays(services.environ)
        self._by_name = {function.name.lower(): function for function in functions}
        self._tasks: set[asyncio.Task[None]] = set()
        self._slots: asyncio.Semaphore | None = None
        self._stopping = asyncio.Event()

    def describe(self, function: IndexedFunction) -> str:
        return (
            f"eventGridTrigger ({self.services.base_url}{WEBHOOK_PATH}?functionName="
            f"{function.name}; subscribed to the local topics)"
        )

    async def start(self) -> None:
        self._slots = asyncio.Semaphore(MAX_CONCURRENT_DELIVERIES)
        self._stopping = asyncio.Event()

    async def stop(self) -> None:
        self._stopping.set()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)

    async def handle_http(self, request: HostRequest) -> HostResponse | None:
        path = request.path.rstrip("/") if request.path != "/" else request.path
        if path.lower() == WEBHOOK_PATH:
            return await self._webhook(request)
        match = TOPIC_PATH.match(request.path)
        if match is not None:
            return self._topic(request, match.group(1))
        return None

    # ------------------------------------------------------------------------------- topic

    def _topic(self, request: HostRequest, topic: str) -> HostResponse:
        if request.method != "POST":
            return _error(405, "MethodNotAllowed", "only POST is supported")
        key = self.services.environ.get(TOPIC_KEY_SETTING, "")
        given = request.header("aeg-sas-key") or ""
        if not key or not hmac.compare_digest(given.encode(), key.encode()):
            return _error(401, "Unauthorized", "the aeg-sas-key header is missing or wrong")
        if len(request.body) > MAX_BATCH_BYTES:
            return _error(413, "RequestEntityTooLarge", "the batch is larger than 1 MB")
        content_type = (request.header("content-type") or "").lower()
        cloudevents = "cloudevents" in content_type
        if not cloudevents and "json" not in content_type:
            return _error(400, "BadRequest", "the content type must be JSON")
        try:
            events = validate_events(request.body, cloudevents=cloudevents)
        except ValueError as error:
            return _error(400, "BadRequest", str(error))
        for event in events:
            for function in self.functions:
                if not function.disabled:
                    self._spawn(self._deliver_with_retries(function, event, topic))
        return HostResponse.empty(200)

    def _spawn(self, coroutine: Any) -> None:
        task = asyncio.get_running_loop().create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _deliver_with_retries(
        self, function: IndexedFunction, event: dict[str, Any], topic: str
    ) -> None:
        attempts = len(self.retry_delays) + 1
        event_id = str(event.get("id"))[:128]
        for attempt in range(attempts):
            if self._stopping.is_set():
                return
            if await self._invoke(function, event, attempt, attempts):
                return
            if attempt + 1 < attempts:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(
                        self._stopping.wait(), timeout=self.retry_delays[attempt]
                    )
        self.services.logger.error(
            "Event Grid: event %s of topic '%s' dead-lettered for subscription '%s' after %d "
            "failed deliveries",
            event_id,
            topic,
            function.name,
            attempts,
        )

    async def _invoke(
        self, function: IndexedFunction, event: Mapping[str, Any], attempt: int, attempts: int
    ) -> bool:
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
                return True  # as Event Grid: a 400 from the endpoint is not retried
            extension = event.get("traceparent")
            parent = TraceParent.parse(extension if isinstance(extension, str) else None)
            request = InvocationRequest(
                inputs={function.trigger_parameter: value},
                reason=INVOCATION_REASON,
                trace_parent=TraceParent.child_of(parent),
                retry=RetryState(retry_count=attempt, max_retry_count=attempts - 1),
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
        failed = False
        for event in events:
            if not await self._invoke(function, event, 0, 1):
                failed = True
        return HostResponse.empty(500 if failed else 202)
