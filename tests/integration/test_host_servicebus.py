"""The local host delivers Service Bus queue messages with the Functions host's semantics."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
from azure.servicebus import ServiceBusClient, ServiceBusMessage, ServiceBusSubQueue

from tests.fixtures.host import HostFactory
from tests.fixtures.servicebus import BrokerFactory, ServiceBusBroker

pytestmark = pytest.mark.integration
APP_DIR = Path(__file__).resolve().parents[1] / "fixtures" / "servicebus_app"
TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


def deliveries(record_dir: Path) -> list[dict[str, Any]]:
    path = record_dir / "deliveries.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line]


def wait_for(record_dir: Path, predicate: Any, timeout: float = 30.0) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while True:
        found = deliveries(record_dir)
        if predicate(found) or time.monotonic() > deadline:
            return found
        time.sleep(0.05)


@pytest.fixture
def broker(servicebus_broker_factory: BrokerFactory) -> ServiceBusBroker:
    return servicebus_broker_factory(queues=["orders-ok", "flaky", "poison"], max_delivery_count=3)


def send(broker: ServiceBusBroker, queue: str, message: ServiceBusMessage) -> None:
    with (
        ServiceBusClient.from_connection_string(broker.connection_string) as sb,
        sb.get_queue_sender(queue) as sender,
    ):
        sender.send_messages(message)


def peek(broker: ServiceBusBroker, queue: str, *, dlq: bool = False) -> list[Any]:
    sub_queue = ServiceBusSubQueue.DEAD_LETTER if dlq else None
    with (
        ServiceBusClient.from_connection_string(broker.connection_string) as sb,
        sb.get_queue_receiver(queue, sub_queue=sub_queue) as receiver,
    ):
        return list(receiver.peek_messages(max_message_count=10))


def test_servicebus_trigger_semantics(
    broker: ServiceBusBroker, local_host_factory: HostFactory, tmp_path: Path
) -> None:
    host = local_host_factory(
        APP_DIR,
        env={
            "SB": broker.connection_string,
            "OK_QUEUE": "orders-ok",
            "SB_RECORD_DIR": str(tmp_path),
        },
    )
    functions = {f["name"]: f for f in host.request("GET", "/admin/functions").json()}
    assert all(functions[name]["isDelivered"] for name in ("succeeds", "flaky", "always_fails"))

    send(
        broker,
        "orders-ok",
        ServiceBusMessage(
            b'{"orderId": "o-1"}',
            message_id="cmd-1",
            correlation_id="corr-1",
            content_type="application/json",
            subject="fulfil",
            application_properties={"traceparent": TRACEPARENT, "attempt": 1},
        ),
    )
    send(broker, "flaky", ServiceBusMessage("retry me", message_id="flaky-1"))
    send(broker, "poison", ServiceBusMessage("never", message_id="poison-1"))

    found = wait_for(
        tmp_path,
        lambda rows: (
            sum(r["function"] == "flaky" for r in rows) >= 3
            and sum(r["function"] == "always_fails" for r in rows) >= 3
            and any(r["function"] == "succeeds" for r in rows)
        ),
    )
    (ok,) = [r for r in found if r["function"] == "succeeds"]
    assert ok["body"] == '{"orderId": "o-1"}'
    assert ok["message_id"] == "cmd-1"
    assert ok["correlation_id"] == "corr-1"
    assert ok["content_type"] == "application/json"
    assert ok["subject"] == "fulfil"
    assert ok["delivery_count"] == 1  # as the Functions host reports a first delivery
    assert ok["application_properties"] == {"traceparent": TRACEPARENT, "attempt": 1}
    assert ok["user_properties"] == ok["application_properties"]
    assert ok["enqueued_time_utc"]
    assert ok["lock_token"]
    assert ok["sequence_number"] == 1
    assert ok["traceparent"].split("-")[1] == TRACEPARENT.split("-")[1]  # same trace

    flaky = [r["delivery_count"] for r in found if r["function"] == "flaky"]
    assert flaky == [1, 2, 3]
    poison = [r["delivery_count"] for r in found if r["function"] == "always_fails"]
    assert poison == [1, 2, 3]

    # Completed messages are gone; the poison message is in the dead-letter queue with the reason.
    deadline = time.monotonic() + 10
    while not peek(broker, "poison", dlq=True) and time.monotonic() < deadline:
        time.sleep(0.1)
    (dead,) = peek(broker, "poison", dlq=True)
    assert dead.message_id == "poison-1"
    assert dead.dead_letter_reason == "MaxDeliveryCountExceeded"
    assert peek(broker, "orders-ok") == []
    assert peek(broker, "flaky") == []
    assert peek(broker, "flaky", dlq=True) == []
    assert "Executed 'Functions.always_fails' (Failed" in host.logs()


def test_missing_queue_setting_is_reported_not_delivered(
    broker: ServiceBusBroker, local_host_factory: HostFactory, tmp_path: Path
) -> None:
    host = local_host_factory(
        APP_DIR, env={"SB": broker.connection_string, "SB_RECORD_DIR": str(tmp_path)}
    )
    logs = host.wait_for_log("app setting 'OK_QUEUE' is not set")
    assert "Function 'succeeds' (serviceBusTrigger) is not delivered" in logs
