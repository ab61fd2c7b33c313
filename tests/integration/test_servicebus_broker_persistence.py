"""The Service Bus test broker with a data directory keeps its messages across a restart, as
Service Bus does: what was sent and not completed is still there, dead-lettered messages stay
dead-lettered, duplicate detection still drops repeats, and a lock held at the restart is lost
(the message is delivered again). Both a clean stop and a SIGKILL keep what the broker accepted.
"""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest
from azure.servicebus import (
    ServiceBusClient,
    ServiceBusMessage,
    ServiceBusReceivedMessage,
    ServiceBusSubQueue,
)

from tests.fixtures.servicebus import ServiceBusBroker, start_broker

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]
QUEUE = "fulfillment"


def ids_in(sb: ServiceBusClient, *, dlq: bool = False) -> list[str]:
    sub_queue = ServiceBusSubQueue.DEAD_LETTER if dlq else None
    with sb.get_queue_receiver(QUEUE, sub_queue=sub_queue) as receiver:
        return [str(m.message_id) for m in receiver.peek_messages(max_message_count=50)]


def stop(broker: ServiceBusBroker, how: signal.Signals) -> None:
    assert broker.process is not None
    if how is signal.SIGKILL:
        broker.process.kill()
        broker.process.wait(timeout=10)
    else:
        broker.stop()


@pytest.mark.parametrize("how", [signal.SIGTERM, signal.SIGKILL], ids=["stopped", "killed"])
def test_messages_survive_a_restart_and_held_locks_are_delivered_again(
    tmp_path: Path, how: signal.Signals
) -> None:
    data = tmp_path / "data"
    broker = start_broker(tmp_path / "first.log", data_dir=data)
    try:
        with ServiceBusClient.from_connection_string(broker.connection_string) as sb:
            with sb.get_queue_sender(QUEUE) as sender:
                for name in ("completed", "dead", "abandoned", "untouched"):
                    sender.send_messages(ServiceBusMessage(name, message_id=name))
            with sb.get_queue_receiver(QUEUE) as receiver:
                completed, dead, abandoned = receiver.receive_messages(3, max_wait_time=5)
                receiver.complete_message(completed)
                receiver.dead_letter_message(dead, reason="BadInput", error_description="why")
                receiver.abandon_message(abandoned)
                # Received again and still locked when the broker goes away.
                (held,) = receiver.receive_messages(1, max_wait_time=5)
                assert held.message_id == "abandoned"
                stop(broker, how)
    finally:
        broker.stop()

    restarted = start_broker(tmp_path / "second.log", data_dir=data, port=broker.port)
    try:
        with ServiceBusClient.from_connection_string(restarted.connection_string) as sb:
            assert sorted(ids_in(sb)) == ["abandoned", "untouched"]
            with sb.get_queue_receiver(QUEUE, sub_queue=ServiceBusSubQueue.DEAD_LETTER) as dlq:
                (dead_letter,) = dlq.peek_messages(max_message_count=5)
            with sb.get_queue_sender(QUEUE) as sender:
                sender.send_messages(ServiceBusMessage("again", message_id="untouched"))
                sender.send_messages(ServiceBusMessage("new", message_id="new"))
            received: list[ServiceBusReceivedMessage] = []
            with sb.get_queue_receiver(QUEUE) as receiver:
                deadline = time.monotonic() + 10
                while len(received) < 3 and time.monotonic() < deadline:
                    received += receiver.receive_messages(3 - len(received), max_wait_time=0.5)
                for message in received:
                    receiver.complete_message(message)
            remaining = ids_in(sb)
        by_id = {str(m.message_id): m for m in received}
        assert sorted(by_id) == ["abandoned", "new", "untouched"]  # the repeat was dropped
        assert str(by_id["untouched"]) == "untouched"
        assert by_id["abandoned"].delivery_count == 1  # the abandon was counted
        assert dead_letter.message_id == "dead"
        assert dead_letter.dead_letter_reason == "BadInput"
        assert dead_letter.dead_letter_error_description == "why"
        assert remaining == []
    finally:
        restarted.stop()
