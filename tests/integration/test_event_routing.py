"""Routing order events to fulfillment commands, on the real Service Bus test broker:
``Order.Paid`` becomes one command (deterministic message id, trace context as application
properties) however often it arrives; other types and malformed events send nothing; a broker
that cannot be reached is a retryable failure."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from azure.servicebus import ServiceBusClient

from shared.errors import DependencyUnavailableError
from shared.events import event_id, order_event
from shared.models import OrderStatus
from shared.names import FULFILLMENT_QUEUE
from shared.process_state import reset_process_state
from shared.services.event_routing import (
    FAILURE_COOL_DOWN_SECONDS,
    EventRouter,
    RouteOutcome,
    ServiceBusCommandSender,
    envelope_from_dict,
)
from shared.services.fulfillment import FULFIL_ORDER, parse_command
from tests.fixtures.servicebus import BrokerFactory, ServiceBusBroker

pytestmark = pytest.mark.integration

TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


@pytest.fixture
def broker(servicebus_broker: ServiceBusBroker) -> ServiceBusBroker:
    return servicebus_broker


def use_broker(broker: ServiceBusBroker, monkeypatch: pytest.MonkeyPatch) -> None:
    """Settings that point the app's Service Bus client at ``broker`` (nothing else is used)."""
    monkeypatch.setenv("ORDERFLOW_ENVIRONMENT", "local")
    monkeypatch.setenv("COSMOS_ENDPOINT", "https://127.0.0.1:1/")
    monkeypatch.setenv("ImportsStorage", "UseDevelopmentStorage=true")
    monkeypatch.setenv("ServiceBusConnection", broker.connection_string)
    reset_process_state()


@pytest.fixture
def router(
    broker: ServiceBusBroker, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[EventRouter, ServiceBusCommandSender]]:
    use_broker(broker, monkeypatch)
    sender = ServiceBusCommandSender(FULFILLMENT_QUEUE)
    try:
        yield EventRouter(sender), sender
    finally:
        sender.close()
        reset_process_state()


def queued(broker: ServiceBusBroker) -> list[Any]:
    """Every message in the queue now (peeked: sends have completed when this runs)."""
    with (
        ServiceBusClient.from_connection_string(broker.connection_string) as client,
        client.get_queue_receiver(FULFILLMENT_QUEUE) as receiver,
    ):
        return list(receiver.peek_messages(max_message_count=1000))


def received(broker: ServiceBusBroker, before: list[Any]) -> list[Any]:
    """The messages queued since ``before`` was taken."""
    seen = {message.sequence_number for message in before}
    return [message for message in queued(broker) if message.sequence_number not in seen]


def paid_event(customer: str = "alice", order: str | None = None) -> dict[str, Any]:
    document = {
        "id": order or uuid.uuid4().hex,
        "customerId": customer,
        "currency": "EUR",
        "total": "5.00",
    }
    return order_event(
        document, OrderStatus.PAID, datetime(2026, 11, 21, tzinfo=UTC), traceparent=TRACEPARENT
    )


def props(message: Any) -> dict[str, Any]:
    return {
        (k.decode() if isinstance(k, bytes) else k): (v.decode() if isinstance(v, bytes) else v)
        for k, v in (message.application_properties or {}).items()
    }


def test_a_paid_event_becomes_one_command_however_often_it_arrives(
    router: tuple[EventRouter, ServiceBusCommandSender], broker: ServiceBusBroker
) -> None:
    event = paid_event()
    route, _ = router
    before = queued(broker)

    outcomes = [route.route(envelope_from_dict(event)) for _ in range(3)]

    assert outcomes == [RouteOutcome.COMMAND_SENT] * 3
    [message] = received(broker, before)  # duplicate detection dropped the repeats
    order_id = event["data"]["orderId"]
    assert message.message_id == event_id("alice", order_id, OrderStatus.PAID) == event["id"]
    assert message.subject == FULFIL_ORDER
    assert message.content_type == "application/json"
    command = parse_command(b"".join(message.body))
    assert (command.customer_id, command.order_id, command.event_id) == (
        "alice",
        order_id,
        event["id"],
    )
    assert props(message) == {
        "customerId": "alice",
        "orderId": order_id,
        "traceparent": TRACEPARENT,
        "Diagnostic-Id": TRACEPARENT,
    }


def test_the_event_grid_schema_is_routed_too(
    router: tuple[EventRouter, ServiceBusCommandSender], broker: ServiceBusBroker
) -> None:
    cloud = paid_event()
    event = {
        "id": cloud["id"],
        "eventType": cloud["type"],
        "subject": cloud["subject"],
        "eventTime": cloud["time"],
        "dataVersion": "1",
        "data": cloud["data"],
    }
    before = queued(broker)
    assert router[0].route(envelope_from_dict(event)) is RouteOutcome.COMMAND_SENT
    [message] = received(broker, before)
    assert "traceparent" not in props(message)  # the Event Grid schema has no trace extension


CASES: list[tuple[dict[str, Any], RouteOutcome]] = [
    ({"type": "Orderflow.Order.Placed"}, RouteOutcome.IGNORED),
    ({"type": "Microsoft.Storage.BlobCreated"}, RouteOutcome.IGNORED),
    ({"type": ""}, RouteOutcome.IGNORED),
    ({"data": None}, RouteOutcome.MALFORMED),
    ({"data": "text"}, RouteOutcome.MALFORMED),
    ({"data": {"customerId": "alice"}}, RouteOutcome.MALFORMED),
    ({"data": {"customerId": "../x", "orderId": "o"}}, RouteOutcome.MALFORMED),
    ({"data": {"customerId": "a", "orderId": "o" * 65}}, RouteOutcome.MALFORMED),
    ({"id": ""}, RouteOutcome.MALFORMED),
    ({"id": "has space"}, RouteOutcome.MALFORMED),
    ({"id": "x" * 129}, RouteOutcome.MALFORMED),
    ({"subject": "customers/mallory/orders/1"}, RouteOutcome.MALFORMED),
]


def test_other_types_and_malformed_events_send_nothing_and_do_not_raise(
    router: tuple[EventRouter, ServiceBusCommandSender], broker: ServiceBusBroker
) -> None:
    before = queued(broker)
    outcomes = [
        router[0].route(envelope_from_dict({**paid_event(), **change})) for change, _ in CASES
    ]
    assert outcomes == [outcome for _, outcome in CASES]
    assert received(broker, before) == []


def test_an_unreachable_broker_is_a_retryable_failure(
    servicebus_broker_factory: BrokerFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    broker = servicebus_broker_factory()
    use_broker(broker, monkeypatch)
    route = EventRouter(ServiceBusCommandSender(FULFILLMENT_QUEUE))
    assert route.route(envelope_from_dict(paid_event())) is RouteOutcome.COMMAND_SENT
    broker.stop()
    with pytest.raises(DependencyUnavailableError):
        route.route(envelope_from_dict(paid_event()))


def test_cloudevent_envelopes_keep_their_extensions() -> None:
    event = {**paid_event(), "custom": "x"}
    envelope = envelope_from_dict(json.loads(json.dumps(event)))
    assert envelope.schema == "cloudevents"
    assert envelope.traceparent == TRACEPARENT
    assert envelope.extensions == {
        "custom": "x",
        "traceparent": TRACEPARENT,
        "datacontenttype": "application/json",
    }
    assert envelope.with_traceparent(None) is envelope


def test_after_a_failed_send_others_fail_fast_until_the_cool_down_ends(
    servicebus_broker_factory: BrokerFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While Service Bus is unreachable, routing invocations must not each wait out the SDK's
    retries (they hold worker threads that HTTP requests need; Event Grid retries anyway)."""
    broker = servicebus_broker_factory()
    use_broker(broker, monkeypatch)
    now = [1000.0]
    route = EventRouter(ServiceBusCommandSender(FULFILLMENT_QUEUE, clock=lambda: now[0]))
    assert route.route(envelope_from_dict(paid_event())) is RouteOutcome.COMMAND_SENT
    broker.stop()

    with pytest.raises(DependencyUnavailableError, match="ServiceBus"):
        route.route(envelope_from_dict(paid_event()))  # tried, and failed
    back = servicebus_broker_factory(port=broker.port)
    with pytest.raises(DependencyUnavailableError, match="a send failed moments ago"):
        route.route(envelope_from_dict(paid_event()))  # not tried: failed at once
    now[0] += FAILURE_COOL_DOWN_SECONDS

    before = queued(back)
    event = paid_event()
    assert route.route(envelope_from_dict(event)) is RouteOutcome.COMMAND_SENT
    assert [m.message_id for m in received(back, before)] == [event["id"]]
