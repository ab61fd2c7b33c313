"""Invoke an indexed function with its bindings, the way the Python worker does.

Follows ``azure_functions_runtime.handle_event.invocation_request`` and reuses its parts:

- ``context`` (the worker's own ``Context``: invocation id, function name and directory,
  W3C trace context, retry context, thread-local storage) is passed when the function declares
  a ``context`` parameter;
- an ``Out`` object is passed for each output-binding parameter and read back afterwards;
- async functions run on the host's event loop; sync functions run on a thread pool sized by
  ``PYTHON_THREADPOOL_THREAD_COUNT`` (Python's default when unset), through the worker's
  ``run_sync_func``, which also sets ``context.thread_local_storage.invocation_id``;
- the return value is encoded by the binding's own converter (``get_datum``), so a value the
  worker cannot send back (an HTTP function returning ``None`` or a dict) fails the invocation;
- a non-None return from a function without a ``$return`` binding fails it, as in the worker.

Every invocation is logged like the host does (``Executing 'Functions.x' (Reason=..., Id=...)``
then ``Executed 'Functions.x' (Succeeded|Failed, Id=..., Duration=...ms)``); a failure is
logged with its traceback and raised as :class:`FunctionInvocationError`, whose message never
contains the function's exception text, so callers can map it to a response without leaking.

Output-binding values (named ``Out`` parameters and a non-HTTP ``$return``) are handed to the
sink the invoker was given for their binding type (``Invoker(output_sinks=...)``), the seam for
queue, blob and Service Bus outputs; a sink that raises fails the invocation, as a failed output
binding does in Azure. Without a sink the value is logged once as not delivered.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import sys
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Final

from localdev.host.loader import IndexedFunction

logger = logging.getLogger("localdev.host")

THREAD_COUNT_SETTING: Final = "PYTHON_THREADPOOL_THREAD_COUNT"
_TRACEPARENT_VERSION: Final = "00"

# Delivers the value a function set on an output binding: gets the function, the binding (as
# JSON) and the value.
OutputSink = Callable[[IndexedFunction, Mapping[str, Any], Any], Awaitable[None]]


class FunctionInvocationError(Exception):
    """The function failed; details are in the log, never in this message."""

    def __init__(self, function_name: str, invocation_id: str) -> None:
        super().__init__(f"function {function_name} failed (invocation {invocation_id})")
        self.function_name = function_name
        self.invocation_id = invocation_id


class MissingBindingError(RuntimeError):
    """The delivery supplied no value for an input binding the function declares (logged)."""


@dataclass(frozen=True)
class TraceParent:
    """A W3C ``traceparent``; :meth:`child_of` continues a caller's trace with a new span."""

    trace_id: str
    span_id: str
    flags: str = "00"

    def __str__(self) -> str:
        return f"{_TRACEPARENT_VERSION}-{self.trace_id}-{self.span_id}-{self.flags}"

    @classmethod
    def parse(cls, header: str | None) -> TraceParent | None:
        if not header:
            return None
        parts = header.strip().lower().split("-")
        if len(parts) != 4 or parts[0] == "ff":
            return None
        _, trace_id, span_id, flags = parts
        valid = (
            len(trace_id) == 32
            and len(span_id) == 16
            and len(flags) == 2
            and all(ch in "0123456789abcdef" for ch in trace_id + span_id + flags)
            and trace_id != "0" * 32
            and span_id != "0" * 16
        )
        return cls(trace_id, span_id, flags) if valid else None

    @classmethod
    def child_of(cls, parent: TraceParent | None) -> TraceParent:
        span_id = secrets.token_hex(8)
        if parent is None:
            return cls(secrets.token_hex(16), span_id)
        return cls(parent.trace_id, span_id, parent.flags)


@dataclass(frozen=True)
class RetryState:
    """What the host tells a function about retries (``context.retry_context``)."""

    retry_count: int = 0
    max_retry_count: int = 0
    exception_message: str = ""
    exception_source: str = ""
    exception_stack_trace: str = ""


@dataclass(frozen=True)
class InvocationRequest:
    """Everything a delivery source supplies for one invocation."""

    inputs: Mapping[str, Any]
    reason: str
    trace_parent: TraceParent | None = None
    trace_state: str = ""
    retry: RetryState = field(default_factory=RetryState)
    invocation_id: str | None = None


@dataclass(frozen=True)
class InvocationResult:
    invocation_id: str
    return_value: Any
    return_datum: Any  # azure.functions.meta.Datum, or None without a $return binding
    outputs: Mapping[str, Any]
    duration_ms: float


def _thread_count(environ: Mapping[str, str]) -> int | None:
    raw = environ.get(THREAD_COUNT_SETTING)
    if not raw:
        return None
    try:
        count = int(raw)
    except ValueError:
        logger.warning("%s must be an integer; using the default", THREAD_COUNT_SETTING)
        return None
    if count < 1:
        logger.warning("%s must be at least 1; using the default", THREAD_COUNT_SETTING)
        return None
    return count


class Invoker:
    """Runs functions for every delivery source; one per host."""

    def __init__(
        self,
        environ: Mapping[str, str] | None = None,
        *,
        output_sinks: Mapping[str, OutputSink] | None = None,
    ) -> None:
        """``output_sinks``: the sink for each output binding type (for example ``queue``)."""
        self._output_sinks = dict(output_sinks or {})
        self._executor = ThreadPoolExecutor(
            max_workers=_thread_count(os.environ if environ is None else environ),
            thread_name_prefix="function-worker",
        )
        self._thread_local = threading.local()
        self._undelivered_warned: set[tuple[str, str]] = set()

    def close(self) -> None:
        """Wait for running sync functions, then release the threads."""
        self._executor.shutdown(wait=True, cancel_futures=True)

    def _context(
        self, function: IndexedFunction, invocation_id: str, request: InvocationRequest
    ) -> Any:
        from azure_functions_runtime.bindings.context import Context
        from azure_functions_runtime.bindings.retrycontext import RetryContext, RpcException
        from azure_functions_runtime.bindings.tracecontext import TraceContext

        trace_parent = request.trace_parent or TraceParent.child_of(None)
        retry = request.retry
        return Context(
            function.name,
            function.directory,
            invocation_id,
            self._thread_local,
            TraceContext(str(trace_parent), request.trace_state, {}),
            RetryContext(
                retry.retry_count,
                retry.max_retry_count,
                RpcException(
                    retry.exception_source, retry.exception_stack_trace, retry.exception_message
                ),
            ),
        )

    async def invoke(
        self, function: IndexedFunction, request: InvocationRequest
    ) -> InvocationResult:
        invocation_id = request.invocation_id or str(uuid.uuid4())
        started = time.perf_counter()
        logger.info(
            "Executing 'Functions.%s' (Reason='%s', Id=%s)",
            function.name,
            request.reason,
            invocation_id,
        )
        try:
            result = await self._call(function, invocation_id, request)
            # As in Azure, an output that cannot be delivered fails the invocation.
            await self._deliver_outputs(function, result[2])
        except Exception:
            duration_ms = (time.perf_counter() - started) * 1000
            logger.exception(
                "Executed 'Functions.%s' (Failed, Id=%s, Duration=%.0fms)",
                function.name,
                invocation_id,
                duration_ms,
            )
            raise FunctionInvocationError(function.name, invocation_id) from None
        finally:
            sys.stdout.flush()  # the worker flushes print() output after every invocation
        return_value, return_datum, outputs = result
        duration_ms = (time.perf_counter() - started) * 1000
        logger.info(
            "Executed 'Functions.%s' (Succeeded, Id=%s, Duration=%.0fms)",
            function.name,
            invocation_id,
            duration_ms,
        )
        return InvocationResult(invocation_id, return_value, return_datum, outputs, duration_ms)

    async def _call(
        self, function: IndexedFunction, invocation_id: str, request: InvocationRequest
    ) -> tuple[Any, Any, dict[str, Any]]:
        from azure_functions_runtime.bindings.meta import get_datum
        from azure_functions_runtime.bindings.out import Out
        from azure_functions_runtime.utils.executor import run_sync_func

        info = function.info
        missing = sorted(set(info.input_types) - set(request.inputs))
        if missing:
            described = ", ".join(
                f"{name} ({(function.binding(name) or {}).get('type', '?')})" for name in missing
            )
            raise MissingBindingError(
                f"the local host supplied no value for the input binding(s) {described}"
            )
        args: dict[str, Any] = dict(request.inputs)
        context = self._context(function, invocation_id, request)
        if info.requires_context:
            args["context"] = context
        for name in info.output_types:
            args[name] = Out()
        if info.is_async:
            context.thread_local_storage.invocation_id = invocation_id
            return_value = await info.func(**args)
        else:
            loop = asyncio.get_running_loop()
            return_value = await loop.run_in_executor(
                self._executor, run_sync_func, invocation_id, context, info.func, args
            )
        if return_value is not None and not info.has_return:
            raise RuntimeError(
                f"function {function.name!r} without a $return binding returned a value"
            )
        return_datum = None
        if info.return_type is not None:
            return_datum = get_datum(
                info.return_type.binding_name, return_value, pytype=info.return_type.pytype
            )
        outputs = {name: args[name].get() for name in info.output_types}
        if info.return_type is not None and info.return_type.binding_name != "http":
            # A `$return` output binding (queue, blob, ...) is delivered like a named one.
            outputs["$return"] = return_value
        return return_value, return_datum, outputs

    async def _deliver_outputs(self, function: IndexedFunction, outputs: Mapping[str, Any]) -> None:
        for name, value in outputs.items():
            binding = function.binding(name)
            # HTTP outputs are the response: the HTTP trigger source sends them.
            if value is None or binding is None or binding.get("type") == "http":
                continue
            sink = self._output_sinks.get(str(binding["type"]))
            if sink is not None:
                await sink(function, binding, value)
            elif (function.name, name) not in self._undelivered_warned:
                self._undelivered_warned.add((function.name, name))
                logger.warning(
                    "Function '%s' set output binding '%s' (%s): the local host does not "
                    "deliver %s outputs yet",
                    function.name,
                    name,
                    binding["type"],
                    binding["type"],
                )
