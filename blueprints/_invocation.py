"""What every handler does around its call: telemetry start-up once, ids bound to logs, the
invocation's deadline (``shared.resilience``: every outbound call gets its timeout from what is
left of it), and JSON responses that carry the correlation id back to the caller."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Literal

import azure.functions as func

from shared.observability import InvocationContext, configure_logging, invocation_scope
from shared.resilience import DEFAULT_HTTP_DEADLINE_SECONDS, TRIGGER_BUDGET_SECONDS, deadline

TriggerKind = Literal["serviceBus", "eventGrid", "queue", "blob", "timer"]

_started = threading.Event()
_start_lock = threading.Lock()


def _start_once(context: func.Context | None) -> None:
    """First invocation: structured logging and (if configured) telemetry export, then the
    cold-start metric, named after the function whose invocation started this worker.

    Deferred from import time so indexing stays fast; a bad setting surfaces in the
    invocation that needs it, as a clear error, not as "0 functions found".
    """
    if _started.is_set():
        return
    with _start_lock:
        if _started.is_set():
            return
        from shared.config import get_settings
        from shared.errors import ConfigurationError
        from shared.observability import configure_telemetry, set_sdk_log_level

        configure_logging()
        try:
            settings = get_settings()
        except ConfigurationError:
            settings = None  # readiness reports the bad setting
        if settings is not None:
            set_sdk_log_level(settings.sdk_log_level)
        connection_string = settings.applicationinsights_connection_string if settings else None
        credential = None
        if (
            connection_string is not None
            and settings is not None
            and settings.environment == "azure"
        ):
            from shared.clients import get_credential

            credential = get_credential()  # Application Insights has local auth disabled
        configure_telemetry(
            connection_string.get_secret_value() if connection_string else None, credential
        )
        _started.set()
        from shared.metrics import COLD_STARTS, add_to_counter

        function_name = str(getattr(context, "function_name", None) or "unknown")
        add_to_counter(
            COLD_STARTS,
            1,
            f"worker started: first invocation is {function_name}",
            attributes={"function": function_name},
        )


def _http_deadline_seconds() -> float:
    from shared.config import get_settings
    from shared.errors import ConfigurationError

    try:
        return get_settings().http_deadline_seconds
    except ConfigurationError:
        return DEFAULT_HTTP_DEADLINE_SECONDS  # the handler reports the bad setting


@contextmanager
def http_invocation(
    req: func.HttpRequest, context: func.Context | None
) -> Iterator[InvocationContext]:
    """Scope of an HTTP invocation, within ``HTTP_DEADLINE_SECONDS``."""
    _start_once(context)
    traceparent = req.headers.get("traceparent")
    if context is not None and context.trace_context is not None:
        traceparent = context.trace_context.trace_parent or traceparent
    with (
        invocation_scope(
            context.invocation_id if context is not None else None,
            correlation_id=req.headers.get("x-correlation-id"),
            traceparent=traceparent,
        ) as scope,
        deadline(_http_deadline_seconds()),
    ):
        yield scope


@contextmanager
def invocation(context: func.Context | None, trigger: TriggerKind) -> Iterator[InvocationContext]:
    """Scope for a non-HTTP invocation (timer, queue, ...): ids from the host's context, and
    the trigger's budget (``shared.resilience.TRIGGER_BUDGET_SECONDS``) as its deadline."""
    _start_once(context)
    traceparent = None
    if context is not None and context.trace_context is not None:
        traceparent = context.trace_context.trace_parent
    with (
        invocation_scope(
            context.invocation_id if context is not None else None, traceparent=traceparent
        ) as scope,
        deadline(TRIGGER_BUDGET_SECONDS[trigger]),
    ):
        yield scope


@contextmanager
def invocation_with_trace(
    context: func.Context | None, upstream_traceparent: str | None, trigger: TriggerKind
) -> Iterator[InvocationContext]:
    """Scope for a message or event invocation that continues the trace its producer started
    (the ``traceparent`` the event or message carries): the host's trace context when it is
    already in that trace (Azure links it through ``Diagnostic-Id``), else a new span of it.
    Without a valid upstream trace, the host's context is used, as in :func:`invocation`."""
    import secrets

    from shared.observability import trace_id_from

    _start_once(context)
    host_traceparent = None
    if context is not None and context.trace_context is not None:
        host_traceparent = context.trace_context.trace_parent
    traceparent = host_traceparent
    upstream_trace = trace_id_from(upstream_traceparent)
    if upstream_trace is not None and trace_id_from(host_traceparent) != upstream_trace:
        flags = (upstream_traceparent or "").strip()[-2:]
        traceparent = f"00-{upstream_trace}-{secrets.token_hex(8)}-{flags}"
    with (
        invocation_scope(
            context.invocation_id if context is not None else None, traceparent=traceparent
        ) as scope,
        deadline(TRIGGER_BUDGET_SECONDS[trigger]),
    ):
        yield scope


def json_response(
    body: object,
    *,
    status_code: int = 200,
    scope: InvocationContext | None = None,
    headers: Mapping[str, str] | None = None,
    mimetype: str = "application/json",
) -> func.HttpResponse:
    all_headers = {"Cache-Control": "no-store"}
    if scope is not None and scope.correlation_id:
        all_headers["X-Correlation-Id"] = scope.correlation_id
    all_headers.update(headers or {})
    return func.HttpResponse(
        json.dumps(body, separators=(",", ":"), ensure_ascii=False),
        status_code=status_code,
        headers=all_headers,
        mimetype=mimetype,
        charset="utf-8",
    )
