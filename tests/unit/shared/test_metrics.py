"""Custom metrics without services: each value is a structured log record, ids stay out of the
exported dimensions, the poison-queue watch warns only when something is parked, and a worker
reports its cold start once, named after the function that woke it."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import threading
from collections.abc import Iterator

import pytest

from blueprints import _invocation
from shared import metrics
from shared.process_state import reset_process_state
from shared.services.deadletters import watch_poison_queue
from tests.paths import REPO_ROOT

ROOT = REPO_ROOT


def metric_records(caplog: pytest.LogCaptureFixture, name: str) -> list[logging.LogRecord]:
    return [r for r in caplog.records if getattr(r, "metric", None) == name]


def test_a_histogram_value_is_logged_with_its_fields(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="orderflow"):
        metrics.record_histogram(
            metrics.FULFILLMENT_LATENCY_SECONDS,
            1.25,
            "order o-1 fulfilled",
            attributes={"region": "a"},
            fields={"orderId": "o-1"},
        )

    (record,) = metric_records(caplog, metrics.FULFILLMENT_LATENCY_SECONDS)
    assert record.getMessage() == "order o-1 fulfilled"
    fields = {k: getattr(record, k) for k in ("metricKind", "value", "region", "orderId")}
    assert fields == {"metricKind": "histogram", "value": 1.25, "region": "a", "orderId": "o-1"}


# Runs in its own process: it installs a global OpenTelemetry meter provider.
_EXPORT_SCRIPT = """
import json
from opentelemetry import metrics as otel
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

reader = InMemoryMetricReader()
otel.set_meter_provider(MeterProvider(metric_readers=[reader]))
import shared.observability as observability
observability._telemetry_enabled = True  # what configure_telemetry sets once it has exported
from shared import metrics

metrics.add_to_counter(
    metrics.ORDERS_TRANSITIONED, 1, "order o-1 is paid",
    attributes={"status": "paid"}, fields={"orderId": "o-1"},
)
metrics.record_histogram(
    metrics.FULFILLMENT_LATENCY_SECONDS, 2.5, "order o-1 fulfilled", fields={"orderId": "o-1"}
)
exported = {}
for resource in reader.get_metrics_data().resource_metrics:
    for scope in resource.scope_metrics:
        for metric in scope.metrics:
            exported[metric.name] = [dict(p.attributes or {}) for p in metric.data.data_points]
print(json.dumps(exported))
"""


def test_fields_are_logged_but_never_exported_as_dimensions() -> None:
    completed = subprocess.run(
        [sys.executable, "-c", _EXPORT_SCRIPT],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    exported = json.loads(completed.stdout.strip().splitlines()[-1])
    assert exported == {
        metrics.ORDERS_TRANSITIONED: [{"status": "paid"}],
        metrics.FULFILLMENT_LATENCY_SECONDS: [{}],
    }


class Depths:
    def __init__(self, depth: int) -> None:
        self.depth = depth
        self.asked: list[str] = []

    def approximate_message_count(self, queue: str) -> int:
        self.asked.append(queue)
        return self.depth


def test_poison_queue_watch_warns_only_when_messages_are_parked(
    caplog: pytest.LogCaptureFixture,
) -> None:
    parked, empty = Depths(3), Depths(0)
    with caplog.at_level(logging.INFO, logger="orderflow"):
        assert watch_poison_queue(parked, "order-import-chunks-poison") == 3
        assert watch_poison_queue(empty, "order-import-chunks-poison") == 0

    warning, info = metric_records(caplog, metrics.POISON_QUEUE_DEPTH)
    assert parked.asked == empty.asked == ["order-import-chunks-poison"]
    assert (warning.levelno, warning.value, warning.queue) == (  # type: ignore[attr-defined]
        logging.WARNING,
        3,
        "order-import-chunks-poison",
    )
    assert (info.levelno, info.value) == (logging.INFO, 0)  # type: ignore[attr-defined]


class _Context:
    """The attributes of ``func.Context`` the invocation scope reads."""

    def __init__(self, function_name: str) -> None:
        self.function_name = function_name
        self.invocation_id = f"inv-{function_name}"
        self.trace_context = None


@pytest.fixture
def fresh_worker(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """A worker process that has not served an invocation yet (telemetry export off)."""
    monkeypatch.setattr(_invocation, "_started", threading.Event())
    monkeypatch.delenv("APPLICATIONINSIGHTS_CONNECTION_STRING", raising=False)
    reset_process_state()
    try:
        yield
    finally:
        reset_process_state()


@pytest.mark.usefixtures("fresh_worker")
def test_the_first_invocation_reports_one_cold_start(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="orderflow"):
        for name in ("fulfil_order", "fulfil_order", "expire_unpaid_orders"):
            with _invocation.invocation(_Context(name), "timer"):  # type: ignore[arg-type]
                pass

    (record,) = metric_records(caplog, metrics.COLD_STARTS)
    assert (record.value, record.function) == (1, "fulfil_order")  # type: ignore[attr-defined]


def test_metric_names_are_stable() -> None:
    assert metrics.METRIC_NAMES == (
        "orderflow.servicebus.dead_letter_depth",
        "orderflow.orders.expired",
        "orderflow.reports.daily_written",
        "orderflow.orders.transitioned",
        "orderflow.fulfillment.latency_seconds",
        "orderflow.imports.rows_accepted",
        "orderflow.imports.rows_rejected",
        "orderflow.imports.reconciled",
        "orderflow.storage.poison_queue_depth",
        "orderflow.host.cold_starts",
    )
