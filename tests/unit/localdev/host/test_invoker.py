"""Output-binding values go to the sinks the invoker was given (no process-wide registry)."""

from __future__ import annotations

import asyncio
import sys
import textwrap
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import azure.functions as func
import pytest

from localdev.host.invoker import FunctionInvocationError, InvocationRequest, Invoker
from localdev.host.loader import IndexedFunction, LoadedApp, load_function_app

APP = textwrap.dedent(
    """
    import azure.functions as func

    app = func.FunctionApp()


    @app.timer_trigger(schedule="0 0 * * * *", arg_name="timer", run_on_startup=False)
    @app.queue_output(arg_name="outbox", queue_name="orders", connection="Storage")
    def enqueue(timer: func.TimerRequest, outbox: func.Out[str]) -> None:
        outbox.set("order-1")
    """
)


@pytest.fixture
def loaded(tmp_path: Path) -> Iterator[LoadedApp]:
    module = f"sink_app_{tmp_path.name.replace('-', '_')}"
    (tmp_path / f"{module}.py").write_text(APP, encoding="utf-8")
    try:
        yield load_function_app(tmp_path, module, {})
    finally:
        sys.modules.pop(module, None)


def _run(invoker: Invoker, function: IndexedFunction) -> None:
    request = InvocationRequest(inputs={"timer": func.TimerRequest()}, reason="test")
    try:
        asyncio.run(invoker.invoke(function, request))
    finally:
        invoker.close()


def test_an_output_value_goes_to_the_sink_for_its_binding_type(loaded: LoadedApp) -> None:
    delivered: list[tuple[str, str, Any]] = []

    async def queue_sink(function: IndexedFunction, binding: Mapping[str, Any], value: Any) -> None:
        delivered.append((function.name, str(binding["queueName"]), value))

    _run(Invoker({}, output_sinks={"queue": queue_sink}), loaded.function("enqueue"))

    assert delivered == [("enqueue", "orders", "order-1")]


def test_without_a_sink_the_value_is_logged_as_not_delivered(
    loaded: LoadedApp, caplog: pytest.LogCaptureFixture
) -> None:
    _run(Invoker({}), loaded.function("enqueue"))

    assert "does not deliver queue outputs" in caplog.text


def test_a_failing_sink_fails_the_invocation(loaded: LoadedApp) -> None:
    async def broken(function: IndexedFunction, binding: Mapping[str, Any], value: Any) -> None:
        raise OSError("queue unreachable")

    with pytest.raises(FunctionInvocationError):
        _run(Invoker({}, output_sinks={"queue": broken}), loaded.function("enqueue"))


def test_two_invokers_do_not_share_sinks(loaded: LoadedApp) -> None:
    delivered: list[Any] = []

    async def sink(function: IndexedFunction, binding: Mapping[str, Any], value: Any) -> None:
        delivered.append(value)

    _run(Invoker({}, output_sinks={"queue": sink}), loaded.function("enqueue"))
    _run(Invoker({}), loaded.function("enqueue"))

    assert delivered == ["order-1"]
