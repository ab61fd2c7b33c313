"""The Service Bus test broker, driven by the unmodified azure-servicebus SDK (sync and async)."""

from __future__ import annotations

import asyncio
import time
import uuid

import pytest
from azure.core.credentials import AccessToken
from azure.servicebus import (
    ServiceBusClient,
    ServiceBusMessage,
    ServiceBusReceivedMessage,
    ServiceBusSubQueue,
)
from azure.servicebus.aio import ServiceBusClient as AsyncServiceBusClient
from azure.servicebus.exceptions import MessageLockLostError, ServiceBusError

from localdev.servicebus.broker import split_transfer
from tests.fixtures.servicebus import BrokerFactory, ServiceBusBroker

pytestmark = pytest.mark.integration
QUEUE = "fulfillment"
TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


def client(broker: ServiceBusBroker) -> ServiceBusClient:
    return ServiceBusClient.from_connection_string(broker.connection_string, retry_total=0)


def receive(
    sb: ServiceBusClient, count: int, *, dlq: bool = False
) -> list[ServiceBusReceivedMessage]:
    sub_queue = ServiceBusSubQueue.DEAD_LETTER if dlq else None
    with sb.get_queue_receiver(QUEUE, sub_queue=sub_queue) as receiver:
        got: list[ServiceBusReceivedMessage] = []
        deadline = time.monotonic() + 10
        while len(got) < count and time.monotonic() < deadline:
            got += receiver.receive_messages(count - len(got), max_wait_time=1)
        for message in got:
            receiver.complete_message(message)
        return got


def test_send_single_list_and_batch_keep_properties_and_drop_duplicates(
    servicebus_broker_factory: BrokerFactory,
) -> None:
    broker = servicebus_broker_factory()
    with client(broker) as sb, sb.get_queue_sender(QUEUE) as sender:
        sender.send_messages(
            ServiceBusMessage(
                b'{"orderId": "o-1"}',
                message_id="cmd-1",
                correlation_id="corr-1",
                content_type="application/json",
                subject="fulfil",
                application_properties={"traceparent": TRACEPARENT, "attempt": 1},
            )
        )
        sender.send_messages(
            [ServiceBusMessage("two", message_id="cmd-2"), ServiceBusMessage("three")]
        )
        batch = sender.create_message_batch()
        for text in ("four", "five"):
            batch.add_message(ServiceBusMessage(text))
        sender.send_messages(batch)
        sender.send_messages(ServiceBusMessage(b"repeat", message_id="cmd-1"))  # dropped

        with sb.get_queue_receiver(QUEUE) as receiver:
            peeked = receiver.peek_messages(max_message_count=10)
        assert [str(m) for m in peeked] == ['{"orderId": "o-1"}', "two", "three", "four", "five"]
        assert [m.sequence_number for m in peeked] == [1, 2, 3, 4, 5]

        first, *rest = receive(sb, 5)
        assert first.message_id == "cmd-1"
        assert first.correlation_id == "corr-1"
        assert first.content_type == "application/json"
        assert first.subject == "fulfil"
        assert first.application_properties == {b"traceparent": TRACEPARENT.encode(), b"attempt": 1}
        assert first.delivery_count == 0
        assert first.enqueued_time_utc is not None
        assert [str(m) for m in rest] == ["two", "three", "four", "five"]
        with sb.get_queue_receiver(QUEUE) as receiver:
            assert receiver.peek_messages(max_message_count=10) == []


def test_abandon_lock_expiry_and_max_delivery_count_dead_letter(
    servicebus_broker_factory: BrokerFactory,
) -> None:
    broker = servicebus_broker_factory(max_delivery_count=3, lock_duration=1.0)
    with client(broker) as sb:
        with sb.get_queue_sender(QUEUE) as sender:
            sender.send_messages(ServiceBusMessage("poison", message_id="p-1"))
        with sb.get_queue_receiver(QUEUE) as receiver:
            (first,) = receiver.receive_messages(1, max_wait_time=5)
            assert first.delivery_count == 0
            receiver.abandon_message(first)
            (second,) = receiver.receive_messages(1, max_wait_time=5)
            assert second.delivery_count == 1
            assert second.lock_token != first.lock_token
            # Let the lock expire: the third delivery attempt is counted by the broker.
            (third,) = receiver.receive_messages(1, max_wait_time=5)
            assert third.delivery_count == 2
            with pytest.raises(MessageLockLostError):
                receiver.complete_message(second)
            receiver.abandon_message(third)
            assert receiver.receive_messages(1, max_wait_time=1) == []
        with sb.get_queue_receiver(QUEUE, sub_queue=ServiceBusSubQueue.DEAD_LETTER) as dlq:
            (peeked,) = dlq.peek_messages(5)
            assert peeked.message_id == "p-1"
            assert peeked.dead_letter_reason == "MaxDeliveryCountExceeded"
            assert peeked.dead_letter_source == QUEUE
            (dead,) = dlq.receive_messages(1, max_wait_time=5)
            dlq.complete_message(dead)
            assert dlq.peek_messages(5) == []


def test_dead_letter_with_reason_defer_and_renew_lock(
    servicebus_broker_factory: BrokerFactory,
) -> None:
    # Long enough that a busy machine cannot let the lock lapse before it is renewed.
    broker = servicebus_broker_factory(lock_duration=30.0)
    with client(broker) as sb:
        with sb.get_queue_sender(QUEUE) as sender:
            sender.send_messages([ServiceBusMessage("bad"), ServiceBusMessage("later")])
        with sb.get_queue_receiver(QUEUE) as receiver:
            bad, later = receiver.receive_messages(2, max_wait_time=5)
            receiver.dead_letter_message(
                bad, reason="InvalidSchema", error_description="no orderId"
            )
            before = later.locked_until_utc
            time.sleep(0.05)  # the renewed lock must end later than the first one
            after = receiver.renew_message_lock(later)
            assert before is not None
            assert after > before
            receiver.defer_message(later)
            assert receiver.receive_messages(1, max_wait_time=1) == []
            assert later.sequence_number is not None
            (deferred,) = receiver.receive_deferred_messages([later.sequence_number])
            assert str(deferred) == "later"
            receiver.complete_message(deferred)
        (dead,) = receive(sb, 1, dlq=True)
        assert (dead.dead_letter_reason, dead.dead_letter_error_description) == (
            "InvalidSchema",
            "no orderId",
        )


def test_unknown_queue_is_refused(servicebus_broker_factory: BrokerFactory) -> None:
    broker = servicebus_broker_factory()
    with client(broker) as sb:
        with (
            pytest.raises(ServiceBusError, match=r"client-error|not-found"),
            sb.get_queue_sender("no-such-queue") as sender,
        ):
            sender.send_messages(ServiceBusMessage("x"))
        # The broker keeps serving after refusing.
        with sb.get_queue_sender(QUEUE) as sender:
            sender.send_messages(ServiceBusMessage("still up"))
        assert [str(m) for m in receive(sb, 1)] == ["still up"]


def test_async_client_and_token_credential(servicebus_broker_factory: BrokerFactory) -> None:
    broker = servicebus_broker_factory()

    async def roundtrip() -> list[str]:
        async with AsyncServiceBusClient.from_connection_string(broker.connection_string) as sb:
            async with sb.get_queue_sender(QUEUE) as sender:
                await sender.send_messages([ServiceBusMessage("a1"), ServiceBusMessage("a2")])
            async with sb.get_queue_receiver(QUEUE) as receiver:
                got = await receiver.receive_messages(2, max_wait_time=5)
                for message in got:
                    await receiver.complete_message(message)
                return [str(m) for m in got]

    assert asyncio.run(roundtrip()) == ["a1", "a2"]

    class StaticCredential:
        def get_token(self, *scopes: str, **kwargs: object) -> AccessToken:
            return AccessToken("local-token", int(time.time()) + 3600)

    with ServiceBusClient(f"127.0.0.1:{broker.port}", StaticCredential(), use_tls=False) as sb:
        with sb.get_queue_sender(QUEUE) as sender:
            sender.send_messages(ServiceBusMessage("with token"))
        assert [str(m) for m in receive(sb, 1)] == ["with token"]


@pytest.mark.parametrize(
    "raw",
    [b"", b"\x00", b"\x00\x53\x75\xb0\xff\xff\xff\xff", b"garbage" * 10, bytes(range(256))],
)
def test_hostile_transfer_bytes_do_not_crash_the_splitter(raw: bytes) -> None:
    assert split_transfer(raw) == [raw]


def test_duplicate_window_zero_keeps_repeats(servicebus_broker_factory: BrokerFactory) -> None:
    broker = servicebus_broker_factory(duplicate_window=0)
    message_id = str(uuid.uuid4())
    with client(broker) as sb:
        with sb.get_queue_sender(QUEUE) as sender:
            sender.send_messages(ServiceBusMessage("one", message_id=message_id))
            sender.send_messages(ServiceBusMessage("two", message_id=message_id))
        assert [str(m) for m in receive(sb, 2)] == ["one", "two"]
