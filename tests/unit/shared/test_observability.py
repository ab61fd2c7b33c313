"""Structured logs carry the invocation's ids; telemetry stays off without a connection string."""

from __future__ import annotations

import io
import json
import logging
import subprocess
import sys
import threading

import pytest

from shared import observability
from shared.observability import (
    JsonFormatter,
    clean_correlation_id,
    configure_telemetry,
    current_context,
    get_logger,
    invocation_scope,
    reset_telemetry_state,
    trace_id_from,
)
from tests.paths import REPO_ROOT

ROOT = REPO_ROOT
TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


def _capture() -> tuple[logging.Handler, io.StringIO]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    logging.getLogger(observability.LOGGER_NAME).addHandler(handler)
    return handler, stream


def _lines(stream: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_records_carry_invocation_and_correlation_ids() -> None:
    handler, stream = _capture()
    try:
        with invocation_scope("inv-1", correlation_id="order-42", traceparent=TRACEPARENT):
            get_logger("test").info("created %s", "order", extra={"orderId": "o-1"})
        get_logger("test").info("outside")
    finally:
        logging.getLogger(observability.LOGGER_NAME).removeHandler(handler)
    inside, outside = _lines(stream)
    assert inside["message"] == "created order"
    assert inside["invocation_id"] == "inv-1"
    assert inside["correlation_id"] == "order-42"
    assert inside["trace_id"] == "4bf92f3577b34da6a3ce929d0e0e4736"
    assert inside["orderId"] == "o-1"
    assert inside["level"] == "INFO"
    assert "invocation_id" not in outside  # None fields are omitted, the scope was reset


def test_records_name_the_validated_caller_for_the_rest_of_the_invocation() -> None:
    handler, stream = _capture()
    try:
        with invocation_scope("inv-2"):
            get_logger("test").info("before")
            observability.bind_caller("alice", "shop-backend")
            get_logger("test").info("after")
        get_logger("test").info("outside")
    finally:
        logging.getLogger(observability.LOGGER_NAME).removeHandler(handler)
    before, after, outside = _lines(stream)
    assert "caller_subject" not in before
    assert (after["caller_subject"], after["caller_client_id"]) == ("alice", "shop-backend")
    assert after["invocation_id"] == "inv-2"
    assert "caller_subject" not in outside  # the next invocation starts without a caller


def test_correlation_id_falls_back_to_trace_id_then_a_new_one() -> None:
    with invocation_scope("a", traceparent=TRACEPARENT) as scope:
        assert scope.correlation_id == "4bf92f3577b34da6a3ce929d0e0e4736"
    with invocation_scope("b") as first, invocation_scope("c") as second:
        assert first.correlation_id
        assert second.correlation_id
        assert first.correlation_id != second.correlation_id
    assert current_context().invocation_id is None


def test_concurrent_invocations_do_not_mix_ids() -> None:
    seen: dict[str, str | None] = {}
    barrier = threading.Barrier(8)

    def work(n: int) -> None:
        with invocation_scope(f"inv-{n}", correlation_id=f"corr-{n}"):
            barrier.wait(timeout=5)
            seen[f"inv-{n}"] = current_context().correlation_id

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert seen == {f"inv-{n}": f"corr-{n}" for n in range(8)}


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (TRACEPARENT, "4bf92f3577b34da6a3ce929d0e0e4736"),
        (TRACEPARENT.upper(), "4bf92f3577b34da6a3ce929d0e0e4736"),
        ("00-00000000000000000000000000000000-00f067aa0ba902b7-01", None),
        ("garbage", None),
        ("", None),
        (None, None),
    ],
)
def test_traceparent_parsing(value: str | None, expected: str | None) -> None:
    assert trace_id_from(value) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("abc-123", "abc-123"),
        ("x" * 129, None),
        ("bad value\nInjected: header", None),
        ("<script>", None),
        (None, None),
    ],
)
def test_correlation_ids_from_callers_are_sanitised(
    value: str | None, expected: str | None
) -> None:
    assert clean_correlation_id(value) == expected


def test_exceptions_are_formatted_as_one_json_line() -> None:
    handler, stream = _capture()
    try:
        try:
            raise RuntimeError("boom")
        except RuntimeError:
            get_logger("test").exception("failed")
    finally:
        logging.getLogger(observability.LOGGER_NAME).removeHandler(handler)
    (entry,) = _lines(stream)
    assert entry["level"] == "ERROR"
    assert "RuntimeError: boom" in str(entry["exception"])


def test_telemetry_is_off_without_connection_string_and_imports_nothing() -> None:
    code = (
        "import sys\n"
        "from shared.observability import configure_telemetry\n"
        "assert configure_telemetry(None) is False\n"
        "assert configure_telemetry('') is False\n"
        "print(any(m.startswith(('azure.monitor', 'opentelemetry')) for m in sys.modules))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "False"


def test_telemetry_turns_on_with_a_connection_string() -> None:
    # The ingestion endpoint is a closed loopback port: configuration must not need the network.
    code = (
        "from shared.observability import configure_telemetry\n"
        "cs = 'InstrumentationKey=00000000-0000-0000-0000-000000000000;"
        "IngestionEndpoint=http://127.0.0.1:9/'\n"
        "from azure.core.credentials import AccessToken\n"
        "class Token:\n"
        "    def get_token(self, *scopes, **kw): return AccessToken('t', 2**31)\n"
        "print(configure_telemetry(cs, Token()), configure_telemetry(cs))\n"
        "from opentelemetry import trace\n"
        "print(type(trace.get_tracer_provider()).__name__)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin", "OTEL_METRIC_EXPORT_INTERVAL": "600000"},
    )
    first_line, provider = result.stdout.split("\n")[:2]
    assert first_line == "True True"
    assert provider == "TracerProvider"


def test_configure_telemetry_is_cached_in_process() -> None:
    reset_telemetry_state()
    try:
        assert configure_telemetry(None) is False
        # A later call with a string does not flip the decision made at start-up.
        assert configure_telemetry("InstrumentationKey=x") is False
    finally:
        reset_telemetry_state()
