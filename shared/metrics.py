"""Custom metrics: names are constants, values always go into a structured log field, and to
OpenTelemetry (Application Insights) only when telemetry is configured.

Every value is logged with ``extra={"metric": <name>, "value": <value>, ...attributes}``, so the
metric is searchable in logs even where no exporter runs (locally, in tests). The OpenTelemetry
metrics API is imported only when telemetry export is on.
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
METRIC_NAMES: Final = (DEAD_LETTER_DEPTH, ORDERS_EXPIRED, DAILY_REPORTS_WRITTEN)

_instruments: dict[str, Any] = {}
_lock = threading.Lock()


def _instrument(name: str, kind: str) -> Any:
    with _lock:
        instrument = _instruments.get(name)
        if instrument is None:
            from opentelemetry import metrics

            meter = metrics.get_meter(METER_NAME)
            instrument = meter.create_gauge(name) if kind == "gauge" else meter.create_counter(name)
            _instruments[name] = instrument
        return instrument


def _emit(
    kind: str,
    name: str,
    *,
    value: int,
    attributes: Mapping[str, str],
    message: str,
    level: int,
    logger: logging.Logger | None,
) -> None:
    (logger or get_logger("metrics")).log(
        level,
        message,
        extra={"metric": name, "metricKind": kind, "value": value, **dict(attributes)},
    )
    if telemetry_enabled():
        instrument = _instrument(name, kind)
        if kind == "gauge":
            instrument.set(value, attributes=dict(attributes))
        else:
            instrument.add(value, attributes=dict(attributes))


def record_gauge(
    name: str,
    value: int,
    message: str,
    *,
    attributes: Mapping[str, str] | None = None,
    level: int = logging.INFO,
    logger: logging.Logger | None = None,
) -> None:
    """Log ``message`` with the gauge value as structured fields, and export it if enabled."""
    _emit(
        "gauge",
        name,
        value=value,
        attributes=attributes or {},
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
    level: int = logging.INFO,
    logger: logging.Logger | None = None,
) -> None:
    """Log ``message`` with the increment as structured fields, and export it if enabled."""
    _emit(
        "counter",
        name,
        value=value,
        attributes=attributes or {},
        message=message,
        level=level,
        logger=logger,
    )
