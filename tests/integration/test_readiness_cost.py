"""What one readiness probe costs in log records and connections, against the real stack: every
record is billed ingestion in Azure, and a fresh AMQP connection per probe costs about a second
and ~50 SDK records (link and session state changes at INFO)."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from shared import clients
from shared.observability import SDK_LOGGERS, configure_logging, set_sdk_log_level
from shared.services.health import readiness

pytestmark = pytest.mark.integration

GOAL_RECORDS_PER_PROBE = 3


class Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def records(app_settings: dict[str, str]) -> Iterator[Records]:
    configure_logging()
    levels = {name: logging.getLogger(name).level for name in SDK_LOGGERS}
    handler = Records()
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        yield handler
    finally:
        root.removeHandler(handler)
        for name, level in levels.items():
            logging.getLogger(name).setLevel(level)


def probe(records: Records) -> list[logging.LogRecord]:
    records.records.clear()
    result = readiness()
    assert result.ready, result.to_json()
    assert {c.name for c in result.checks if c.status == "up"} >= {"cosmos", "serviceBus"}
    return list(records.records)


def test_a_readiness_probe_reuses_its_service_bus_receiver_and_logs_little(
    records: Records,
) -> None:
    set_sdk_log_level("WARNING")
    probe(records)  # the first one connects
    queue_receiver = clients.get_service_bus_peeker("fulfillment")

    logged = probe(records)

    assert clients.get_service_bus_peeker("fulfillment") is queue_receiver
    assert len(logged) <= GOAL_RECORDS_PER_PROBE, [r.getMessage() for r in logged]


def test_sdk_records_come_back_when_asked_for(records: Records) -> None:
    set_sdk_log_level("INFO")
    clients.forget_service_bus_peeker("fulfillment")  # a new connection, as after a failure

    logged = probe(records)

    sdk = [r for r in logged if r.name.startswith("azure.servicebus")]
    assert len(sdk) > GOAL_RECORDS_PER_PROBE  # the AMQP state changes, as diagnosing needs


def test_a_failed_receiver_is_dropped_and_the_next_probe_connects_again(
    records: Records,
) -> None:
    set_sdk_log_level("WARNING")
    probe(records)
    broken = clients.get_service_bus_peeker("fulfillment")
    broken.close()  # as if the connection had died

    result = readiness()

    assert result.ready, result.to_json()  # a dead kept connection is not an outage...
    assert clients.get_service_bus_peeker("fulfillment") is not broken  # ...it is replaced
