"""``POST /admin/functions/<name>``: run a non-HTTP function on demand, as the Functions host's
admin API does.

Body: ``{"input": "<text>"}`` (``input`` optional; at most 1 MiB). Answer: ``202 Accepted``
with an empty body once the invocation is queued; it then runs in the background and its
``Executing``/``Executed`` lines appear in the host log. ``x-ms-invocation-id`` carries the
invocation id (a local addition, so tools can find those lines). Errors: 404 for an unknown
function, 400 for an HTTP function (call its route instead), a malformed body, or a trigger type
the local host cannot build an input for.

The trigger value comes from the function's delivery source when it has an
``on_demand_inputs(function, input_text) -> Mapping[str, Any]`` method (timers: a
``TimerRequest`` with the current schedule status; the input text is ignored, as by the host);
otherwise storage queue and Service Bus triggers get a message whose body is the input text.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Final

from localdev.host.invoker import FunctionInvocationError, InvocationRequest, TraceParent
from localdev.host.loader import HTTP_TRIGGER, IndexedFunction
from localdev.host.messages import HostRequest, HostResponse

if TYPE_CHECKING:
    from localdev.host.runtime import HostRuntime

ADMIN_FUNCTIONS_PREFIX: Final = "/admin/functions/"
MAX_BODY_BYTES: Final = 1024 * 1024
ON_DEMAND_REASON: Final = "This function was programmatically called via the host APIs."


def is_on_demand_request(request: HostRequest) -> bool:
    path = request.path.rstrip("/").lower()
    return (
        request.method == "POST"
        and path.startswith(ADMIN_FUNCTIONS_PREFIX)
        and path.count("/") == 3
    )


def _problem(status: int, detail: str) -> HostResponse:
    return HostResponse.json(status, {"status": status, "detail": detail})


def _input_text(body: bytes) -> str | None:
    """The ``input`` of the body; None when the body is not acceptable."""
    if not body.strip():
        return ""
    try:
        document = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return None
    if not isinstance(document, dict):
        return None
    value = document.get("input", "")
    if value is None:
        return ""
    return value if isinstance(value, str) else json.dumps(value)


def generic_inputs(function: IndexedFunction, input_text: str) -> Mapping[str, Any] | None:
    trigger = function.trigger_type
    if trigger == "queueTrigger":
        import azure.functions as func

        message = func.QueueMessage(id=str(uuid.uuid4()), body=input_text.encode("utf-8"))
        return {function.trigger_parameter: message}
    if trigger == "serviceBusTrigger":
        from azure.functions.servicebus import ServiceBusMessage

        sb_message = ServiceBusMessage(
            body=input_text.encode("utf-8"),
            message_id=str(uuid.uuid4()),
            application_properties={},
            user_properties={},
            delivery_count=1,
        )
        return {function.trigger_parameter: sb_message}
    return None


class OnDemandInvocations:
    """Queues admin invocations and waits for them when the host stops."""

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[None]] = set()

    async def handle(self, request: HostRequest, runtime: HostRuntime) -> HostResponse:
        name = request.path.rstrip("/").split("/")[-1]
        try:
            function = runtime.loaded.function(name)
        except KeyError:
            return HostResponse.empty(404)
        if function.trigger_type == HTTP_TRIGGER:
            return _problem(400, f"'{function.name}' is an HTTP function: call its route")
        if len(request.body) > MAX_BODY_BYTES:
            return _problem(413, f"the body is larger than {MAX_BODY_BYTES} bytes")
        input_text = _input_text(request.body)
        if input_text is None:
            return _problem(400, 'the body must be a JSON object such as {"input": "..."}')
        source = runtime.source_of(function.name)
        hook = getattr(source, "on_demand_inputs", None)
        inputs = hook(function, input_text) if callable(hook) else None
        if inputs is None:
            inputs = generic_inputs(function, input_text)
        if inputs is None:
            return _problem(
                400, f"the local host cannot run {function.trigger_type} functions on demand"
            )
        invocation_id = str(uuid.uuid4())
        invocation = InvocationRequest(
            inputs=inputs,
            reason=ON_DEMAND_REASON,
            trace_parent=TraceParent.child_of(None),
            invocation_id=invocation_id,
        )
        task = asyncio.create_task(self._run(runtime, function, invocation))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return HostResponse(status=202, headers=(("x-ms-invocation-id", invocation_id),))

    @staticmethod
    async def _run(
        runtime: HostRuntime, function: IndexedFunction, invocation: InvocationRequest
    ) -> None:
        with contextlib.suppress(FunctionInvocationError):  # the invoker logged it
            await runtime.services.invoker.invoke(function, invocation)

    async def drain(self) -> None:
        """Wait for on-demand invocations still running (host shutdown)."""
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
