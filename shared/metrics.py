"""Custom metrics: names are constants, values always go into a structured log field, and to
OpenTelemetry (Application Insights) only when telemetry is configured.

Every value is logged with ``extra={"metric": <name>, "value": <value>, ...attributes}``, so the
metric is searchable in logs even where no exporter runs (locally, in tests). The OpenTelemetry
metrics API is imported only when telemetry export is on.

Attributes become metric dimensions, so they must have few values (a status, a queue name).
Ids with unbounded values (an order or import id) go in ``fields``: logged with the value, never
exported as a dimension. The alerts and the workbook in infra/ query these names and fields;
tests/infra/test_telemetry_contract.py keeps them in step.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from typing import Any, Final

from shared.observability import get_logger, telemetry_enabled

METER_NAME: Final = "orderflow"
# Gauge: messages in the fulfillment queue's dead-letter sub-queue (attribute ``queue``).
DEAD_LETTER_DEPTH: Final = "orderflow.servicebus.dead_letter_depth"
# Counter: orders the expiry timer moved from pending to expired.
ORDERS_EXPIRED: Final = "orderflow.orders.expired"
# Counter: daily sales reports written (attribute ``day``).
DAILY_REPORTS_WRITTEN: Final = "orderflow.reports.daily_written"
# Counter: orders that entered a status (attribute ``status``; a new order enters ``pending``).
ORDERS_TRANSITIONED: Final = "orderflow.orders.transitioned"
# Histogram: seconds from an order's payment to its fulfilment.
FULFILLMENT_LATENCY_SECONDS: Final = "orderflow.fulfillment.latency_seconds"
# Counters: rows of a finished import run that became orders / were rejected (attribute ``state``).
IMPORT_ROWS_ACCEPTED: Final = "orderflow.imports.rows_accepted"
IMPORT_ROWS_REJECTED: Final = "orderflow.imports.rows_rejected"
# Counter: imports the reconciliation timer started because their event never came, or restarted
# because their file pass died (attribute ``reason``: no_run, newer_version, stuck).
IMPORTS_RECONCILED: Final = "orderflow.imports.reconciled"
# Gauge: messages in a storage poison queue (attribute ``queue``), read by the dead-letter watch.
POISON_QUEUE_DEPTH: Final = "orderflow.storage.poison_queue_depth"
# Counter: worker processes started, by the function whose invocation started one (``function``).
COLD_STARTS: Final = "orderflow.host.cold_starts"
METRIC_NAMES: Final = (
    DEAD_LETTER_DEPTH,
    ORDERS_EXPIRED,
    DAILY_REPORTS_WRITTEN,
    ORDERS_TRANSITIONED,
    FULFILLMENT_LATENCY_SECONDS,
    IMPORT_ROWS_ACCEPTED,
    IMPORT_ROWS_REJECTED,
    IMPORTS_RECONCILED,
    POISON_QUEUE_DEPTH,
    COLD_STARTS,
)

_instruments: dict[str, Any] = {}
_lock = threading.Lock()


def _instrument(name: str, kind: str) -> Any:
    with _lock:
        instrument = _instruments.get(name)
        if instrument is None:
            from opentelemetry import metrics

            meter = metrics.get_meter(METER_NAME)
            if kind == "gauge":
                instrument = meter.create_gauge(name)
            elif kind == "histogram":
                instrument = meter.create_histogram(name)
            else:
                instrument = meter.create_counter(name)
            _instruments[name] = instrument
        return instrument


def _emit(
    kind: str,
    name: str,
    *,
    value: float,
    attributes: Mapping[str, str],
    fields: Mapping[str, object],
    message: str,
    level: int,
    logger: logging.Logger | None,
) -> None:
    (logger or get_logger("metrics")).log(
        level,
        message,
        extra={
            **dict(fields),
            **dict(attributes),
            "metric": name,
            "metricKind": kind,
            "value": value,
        },
    )
    if telemetry_enabled():
        instrument = _instrument(name, kind)
        if kind == "gauge":
            instrument.set(value, attributes=dict(attributes))
        elif kind == "histogram":
            instrument.record(value, attributes=dict(attributes))
        else:
            instrument.add(value, attributes=dict(attributes))


def record_gauge(
    name: str,
    value: int,
    message: str,
    *,
    attributes: Mapping[str, str] | None = None,
    fields: Mapping[str, object] | None = None,
    level: int = logging.INFO,
    logger: logging.Logger | None = None,
) -> None:
    """Log ``message`` with the gauge value as structured fields, and export it if enabled."""
    _emit(
        "gauge",
        name,
        value=value,
        attributes=attributes or {},
        fields=fields or {},
        message=message,
        level=level,
        logger=logger,
    )


def add_to_counter(
    name: str,
    value: int,
    message: str,
    *,
    attributes: Mapping[str, str] | None = None,
    fields: Mapping[str, object] | None = None,
    level: int = logging.INFO,
    logger: logging.Logger | None = None,
) -> None:
    """Log ``message`` with the increment as structured fields, and export it if enabled."""
    _emit(
        "counter",
        name,
        value=value,
        attributes=attributes or {},
        fields=fields or {},
        message=message,
        level=level,
        logger=logger,
    )


def record_histogram(
    name: str,
    value: float,
    message: str,
    *,
    attributes: Mapping[str, str] | None = None,
    fields: Mapping[str, object] | None = None,
    level: int = logging.INFO,
    logger: logging.Logger | None = None,
) -> None:
    """Log ``message`` with one measurement as structured fields, and export it if enabled."""
    _emit(
        "histogram",
        name,
        value=value,
        attributes=attributes or {},
        fields=fields or {},
        message=message,
        level=level,
        logger=logger,
    )
