"""The dead-letter watch against the Service Bus test broker: it counts what is dead-lettered,
in pages, without consuming it. The broker runs here on a free port with a queue nobody else
consumes (the app's fulfillment function takes messages from the shared stack's queue)."""

from __future__ import annotations

import logging
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from azure.servicebus import ServiceBusClient, ServiceBusMessage, ServiceBusSubQueue

from localdev.servicebus import connection_string
from localdev.stack.processes import free_ports
from shared import metrics
from shared.services.deadletters import ServiceBusDeadLetterPeeker, watch_dead_letters

pytestmark = pytest.mark.integration

QUEUE = "watched"
REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def broker() -> Iterator[str]:
    (port,) = free_ports(1)
    process = subprocess.Popen(
        [sys.executable, "-m", "localdev.servicebus", "--port", str(port), "--queues", QUEUE],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()  # printed once it listens
        assert "listening" in line, line
        yield connection_string(port)
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if process.stdout is not None:
            process.stdout.close()


def test_counts_dead_letters_in_pages_without_consuming(
    broker: str, caplog: pytest.LogCaptureFixture
) -> None:
    with ServiceBusClient.from_connection_string(broker) as client:
        with client.get_queue_sender(QUEUE) as sender:
            sender.send_messages([ServiceBusMessage(f"m{n}") for n in range(7)])
        with client.get_queue_receiver(QUEUE) as receiver:
            received: list[Any] = []
            while len(received) < 5:
                batch = receiver.receive_messages(max_message_count=5, max_wait_time=5)
                assert batch
                received.extend(batch)
            for message in received[:5]:
                receiver.dead_letter_message(message, reason="test", error_description="x")

        with (
            caplog.at_level(logging.INFO, logger="orderflow"),
            ServiceBusDeadLetterPeeker(QUEUE, client) as peeker,
        ):
            depth = watch_dead_letters(peeker, QUEUE, page_size=2)

        assert (depth.count, depth.capped) == (5, False)
        record = next(r for r in caplog.records if getattr(r, "metric", None))
        assert record.levelno == logging.WARNING
        assert (record.metric, record.value) == (metrics.DEAD_LETTER_DEPTH, 5)  # type: ignore[attr-defined]
        with client.get_queue_receiver(QUEUE, sub_queue=ServiceBusSubQueue.DEAD_LETTER) as dlq:
            assert len(dlq.peek_messages(max_message_count=50)) == 5, "peeking consumed nothing"
        with client.get_queue_receiver(QUEUE) as receiver:
            assert len(receiver.peek_messages(max_message_count=50)) == 2


def test_empty_dead_letter_queue_is_zero(broker: str) -> None:
    with (
        ServiceBusClient.from_connection_string(broker) as client,
        ServiceBusDeadLetterPeeker(QUEUE, client) as peeker,
    ):
        assert watch_dead_letters(peeker, QUEUE).count == 0
