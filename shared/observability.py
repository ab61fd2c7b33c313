"""Structured logs with invocation and correlation ids, and OpenTelemetry export.

- Every record logged under the ``orderflow`` logger carries ``invocation_id``,
  ``correlation_id`` and ``trace_id`` from the current invocation (contextvars, so concurrent
  invocations on threads or tasks never mix them up). In Azure the worker's handler ships those
  fields to Application Insights as custom dimensions; locally :class:`JsonFormatter` prints them.
- :func:`configure_telemetry` turns on Azure Monitor OpenTelemetry only when
  ``APPLICATIONINSIGHTS_CONNECTION_STRING`` is set; without it nothing is imported or exported.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from shared.process_state import on_reset

LOGGER_NAME = "orderflow"
SDK_HTTP_LOGGERS = (
    "azure.core.pipeline.policies.http_logging_policy",
    "azure.cosmos._cosmos_http_logging_policy",
)
# The SDKs' internals: Service Bus alone logs every AMQP connection, session and link state
# change at INFO (about 50 records for one readiness probe). In Azure each record is billed
# ingestion, and none of them tells an operator anything the app's own records do not.
SDK_LOGGERS = (
    "azure",  # azure.core, azure.cosmos, azure.servicebus (and its _pyamqp), azure.identity, ...
    "uamqp",
    "urllib3",
    "msal",
)

_TRACEPARENT = re.compile(r"^[0-9a-f]{2}-([0-9a-f]{32})-([0-9a-f]{16})-[0-9a-f]{2}$")
_CORRELATION_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
# Attributes every LogRecord has; anything else on a record was passed with ``extra=``.
_STANDARD_ATTRS = frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime"}


@dataclass(frozen=True, slots=True)
class InvocationContext:
    invocation_id: str | None = None
    correlation_id: str | None = None
    trace_id: str | None = None
    traceparent: str | None = None
    # The validated caller (bearer token ``sub`` and ``azp``/``appid``); never the token.
    caller_subject: str | None = None
    caller_client_id: str | None = None


_current: ContextVar[InvocationContext] = ContextVar(
    "orderflow_invocation",
    default=InvocationContext(),  # noqa: B039 - frozen, so sharing the default is safe
)


def current_context() -> InvocationContext:
    return _current.get()


def trace_id_from(traceparent: str | None) -> str | None:
    """The W3C trace id inside a ``traceparent`` header, or None when it is malformed."""
    if not traceparent:
        return None
    match = _TRACEPARENT.match(traceparent.strip().lower())
    if match is None or match.group(1) == "0" * 32:
        return None
    return match.group(1)


def clean_correlation_id(value: str | None) -> str | None:
    """Accept a caller's correlation id only if it is short and harmless to log and echo."""
    if value and _CORRELATION_ID.match(value):
        return value
    return None


@contextmanager
def invocation_scope(
    invocation_id: str | None = None,
    *,
    correlation_id: str | None = None,
    traceparent: str | None = None,
) -> Iterator[InvocationContext]:
    """Bind ids to everything logged inside the block.

    The correlation id is the caller's (when valid), else the trace id, else a new uuid, so
    every invocation has one to return to the client and to search logs by.
    """
    trace_id = trace_id_from(traceparent)
    context = InvocationContext(
        invocation_id=invocation_id,
        correlation_id=clean_correlation_id(correlation_id) or trace_id or uuid.uuid4().hex,
        trace_id=trace_id,
        traceparent=traceparent if trace_id else None,
    )
    token = _current.set(context)
    try:
        yield context
    finally:
        _current.reset(token)


def bind_caller(subject: str, client_id: str | None) -> None:
    """Name the validated caller in everything logged for the rest of this invocation, and on
    the current trace span (``enduser.id``, ``client.id``) when telemetry is on."""
    from dataclasses import replace

    _current.set(replace(_current.get(), caller_subject=subject, caller_client_id=client_id))
    if telemetry_enabled():
        from opentelemetry import trace

        span = trace.get_current_span()
        span.set_attribute("enduser.id", subject)
        if client_id:
            span.set_attribute("orderflow.client_id", client_id)


class ContextFilter(logging.Filter):
    """Adds the current invocation's ids to each record (never drops a record)."""

    def filter(self, record: logging.LogRecord) -> bool:
        context = _current.get()
        record.invocation_id = context.invocation_id
        record.correlation_id = context.correlation_id
        record.trace_id = context.trace_id
        record.caller_subject = context.caller_subject
        record.caller_client_id = context.caller_client_id
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, ids and any ``extra=`` fields."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD_ATTRS and value is not None:
                entry[key] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str, ensure_ascii=False)


_context_filter = ContextFilter()


def get_logger(name: str | None = None) -> logging.Logger:
    """A logger under ``orderflow`` whose records carry the invocation's ids.

    The filter sits on each logger, not on a parent: logging applies a logger's filters only to
    records logged on that logger itself, never to those propagated from its children.
    """
    configure_logging()
    logger = logging.getLogger(f"{LOGGER_NAME}.{name}" if name else LOGGER_NAME)
    if _context_filter not in logger.filters:
        logger.addFilter(_context_filter)
    return logger


_logging_lock = threading.Lock()
_logging_configured = False


def set_sdk_log_level(level_name: str) -> None:
    """The Azure SDKs' loggers at ``level_name`` (SDK_LOG_LEVEL), except those a developer
    set otherwise already. Called with the settings on the first invocation; until then
    (import, indexing, which must not load the settings) they log warnings only."""
    level = logging.getLevelName(level_name)
    if not isinstance(level, int):
        raise ValueError(f"not a log level: {level_name!r}")
    with _logging_lock:
        for name in SDK_LOGGERS:
            sdk = logging.getLogger(name)
            if sdk.level == logging.NOTSET or name in _sdk_levels_set:
                sdk.setLevel(level)
                _sdk_levels_set.add(name)


_sdk_levels_set: set[str] = set()


def configure_logging(*, json_handler: bool = False, level: int = logging.INFO) -> None:
    """Set the ``orderflow`` log level once (idempotent), and the Azure SDKs' loggers to
    WARNING where nothing set them already (SDK_LOG_LEVEL changes that: set_sdk_log_level).

    Handlers belong to the host: in Azure the worker's root handler ships records to Application
    Insights. ``json_handler=True`` (local host, scripts) adds a JSON console handler instead.
    """
    global _logging_configured
    with _logging_lock:
        logger = logging.getLogger(LOGGER_NAME)
        if not _logging_configured:
            if logger.level == logging.NOTSET:
                logger.setLevel(level)
            # The SDKs log every request's headers at INFO: noise, and a cost per request.
            for name in SDK_HTTP_LOGGERS:
                sdk_http = logging.getLogger(name)
                if sdk_http.level == logging.NOTSET:
                    sdk_http.setLevel(logging.WARNING)
            for name in SDK_LOGGERS:
                sdk = logging.getLogger(name)
                if sdk.level == logging.NOTSET:
                    sdk.setLevel(logging.WARNING)
                    _sdk_levels_set.add(name)
            _logging_configured = True
        if json_handler and not any(
            isinstance(h.formatter, JsonFormatter) for h in logging.getLogger().handlers
        ):
            handler = logging.StreamHandler()
            handler.setFormatter(JsonFormatter())
            handler.addFilter(_context_filter)  # also tags records from other libraries
            logging.getLogger().addHandler(handler)


_telemetry_lock = threading.Lock()
_telemetry_enabled: bool | None = None


def configure_telemetry(connection_string: str | None, credential: Any | None = None) -> bool:
    """Export traces, metrics and logs to Application Insights when a connection string is set.

    With local authentication disabled on Application Insights (as in Azure), ingestion needs
    Entra ID: pass the app's token credential. Idempotent; returns whether export is on. The
    import of the Azure Monitor distribution (~0.3 s) happens only when it is needed.
    """
    global _telemetry_enabled
    with _telemetry_lock:
        if _telemetry_enabled is not None:
            return _telemetry_enabled
        if not connection_string:
            _telemetry_enabled = False
            return False
        from azure.monitor.opentelemetry import configure_azure_monitor

        options: dict[str, Any] = {}
        if credential is not None:
            options["credential"] = credential
        configure_azure_monitor(
            connection_string=connection_string,
            logger_name=LOGGER_NAME,
            enable_live_metrics=False,
            **options,
        )
        _telemetry_enabled = True
        return True


def telemetry_enabled() -> bool:
    """Whether :func:`configure_telemetry` turned export on (False before it ran)."""
    return bool(_telemetry_enabled)


@on_reset
def reset_telemetry_state() -> None:
    """Forget whether telemetry was configured (tests)."""
    global _telemetry_enabled
    with _telemetry_lock:
        _telemetry_enabled = None


def headers_for_response(context: InvocationContext) -> Mapping[str, str]:
    """Headers that let a client quote the ids of its request to support."""
    headers = {}
    if context.correlation_id:
        headers["X-Correlation-Id"] = context.correlation_id
    return headers
