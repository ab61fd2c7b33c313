"""Duplicate and out-of-order delivery (Hypothesis), against the real services on the local stack
(Cosmos stand-in, Azurite, the Service Bus test broker): for every stream of events, commands,
webhook calls or queue messages, with repeats and in any order, the end state equals what
in-order, exactly-once delivery of the same items (taken at their first arrival) gives.

- Event Grid events into the routing service: one fulfillment command per paid order (Service
  Bus duplicate detection on the deterministic message id), nothing for other events.
- Fulfillment commands into the fulfillment service (through the message handler): each order
  fulfilled or backordered once, stock reserved once per fulfilled order, never oversold; the
  result is the one of first-arrival order (all-or-nothing reservation per order).
- Payment webhooks and client cancels: each payment applied at most once, repeats are no-ops,
  a payment after a cancel (and a cancel after a payment) is refused, never applied.
- Import chunk messages redelivered and mixed with a retried file pass: rows read = accepted +
  rejected, each order created once, stale chunks ignored.

Fixed cases of the same kind: tests/integration/test_event_routing.py (one event three times),
test_fulfillment_service.py (a duplicate command; 60 orders for 15 units, every command twice),
tests/e2e/test_payment_webhook.py (a repeated event id), tests/integration/
test_import_pipeline.py (one redelivered and one stale chunk).
"""

from __future__ import annotations

import csv
import io
import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from azure.servicebus import ServiceBusClient, ServiceBusReceiver
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shared.clients import get_container
from shared.errors import IllegalTransitionError
from shared.events import EVENT_TYPES, event_id, order_event
from shared.models import OrderDraft, OrderStatus
from shared.names import FULFILLMENT_QUEUE, IDEMPOTENCY_CONTAINER
from shared.process_state import reset_process_state
from shared.publisher import EventGridPublisher
from shared.repositories.idempotency import CosmosIdempotencyStore
from shared.repositories.import_runs import CosmosImportRunRepository
from shared.repositories.import_storage import AzureReportBlob
from shared.repositories.inventory import CosmosInventoryRepository
from shared.repositories.orders import CosmosOrderRepository
from shared.repositories.reservations import CosmosStockReservations, holder_key
from shared.secrets import SecretStore
from shared.services.event_routing import (
    EventRouter,
    RouteOutcome,
    ServiceBusCommandSender,
    envelope_from_dict,
)
from shared.services.fulfillment import FULFIL_ORDER, FulfillmentService, parse_command
from shared.services.fulfillment_messages import (
    DeliveryOutcome,
    ReceivedMessage,
    handle_delivery,
)
from shared.services.import_pipeline import ChunkOutcome, FileOutcome, ImportPipeline
from shared.services.orders import OrderService
from shared.services.payments import PaymentEvent, PaymentService, WebhookOutcome
from tests.fixtures.eventgrid import EventGridSink
from tests.fixtures.fakes import ListQueue, ParkingList
from tests.fixtures.imports import direct_import_files, upload_direct
from tests.fixtures.servicebus import ServiceBusBroker

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

# Each example talks to the local stack: a few of them, and fixtures shared by the examples.
FEW = settings(
    max_examples=10,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


def with_repeats(items: list[Any]) -> st.SearchStrategy[list[Any]]:
    """Every item at least once, some more than once, in any order."""
    if not items:
        return st.just([])
    return st.lists(st.sampled_from(items), max_size=len(items)).flatmap(
        lambda extra: st.permutations(items + extra)
    )


def first_arrivals(stream: list[Any]) -> list[Any]:
    """The stream as in-order exactly-once delivery sees it: each item at its first arrival."""
    return list(dict.fromkeys(stream))


@pytest.fixture
def services(
    app_settings: dict[str, str], events: EventGridSink, monkeypatch: pytest.MonkeyPatch
) -> tuple[OrderService, CosmosOrderRepository]:
    for name, value in events.app_settings().items():
        monkeypatch.setenv(name, value)
    repository = CosmosOrderRepository()
    return OrderService(repository, EventGridPublisher()), repository


def paid_orders(orders: OrderService, lines: list[dict[str, int]]) -> list[Any]:
    """One paid order per entry of ``lines`` (SKU -> quantity), each for its own customer."""
    placed = []
    for demand in lines:
        draft = OrderDraft.model_validate(
            {
                "lines": [
                    {"sku": sku, "quantity": quantity, "unitPrice": "1.00"}
                    for sku, quantity in demand.items()
                ],
                "currency": "EUR",
            }
        )
        order = orders.place(f"rd-{uuid.uuid4().hex[:12]}", draft).order
        placed.append(orders.transition(order, OrderStatus.PAID))
    return placed


# ------------------------------------------------------------------- Event Grid -> commands


@pytest.fixture
def router(
    servicebus_broker: ServiceBusBroker, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[EventRouter, ServiceBusReceiver]]:
    """The routing service sending to the module's broker, and a receiver to peek what came."""
    monkeypatch.setenv("ORDERFLOW_ENVIRONMENT", "local")
    monkeypatch.setenv("COSMOS_ENDPOINT", "https://127.0.0.1:1/")  # not used by routing
    monkeypatch.setenv("ImportsStorage", "UseDevelopmentStorage=true")
    monkeypatch.setenv("ServiceBusConnection", servicebus_broker.connection_string)
    reset_process_state()
    sender = ServiceBusCommandSender(FULFILLMENT_QUEUE)
    client = ServiceBusClient.from_connection_string(servicebus_broker.connection_string)
    try:
        with client, client.get_queue_receiver(FULFILLMENT_QUEUE) as receiver:
            yield EventRouter(sender), receiver
    finally:
        sender.close()
        reset_process_state()


ROUTED_STATUSES = [
    OrderStatus.PENDING,
    OrderStatus.PAID,
    OrderStatus.FULFILLED,
    OrderStatus.BACKORDERED,
    OrderStatus.CANCELLED,
]


@FEW
@given(data=st.data(), order_count=st.integers(1, 4))
def test_order_events_in_any_order_with_repeats_become_one_command_per_paid_order(
    router: tuple[EventRouter, ServiceBusReceiver], data: st.DataObject, order_count: int
) -> None:
    route, receiver = router
    orders = [
        {"id": uuid.uuid4().hex, "customerId": f"c{i}", "currency": "EUR", "total": "1.00"}
        for i in range(order_count)
    ]
    happened = data.draw(
        st.lists(
            st.tuples(st.integers(0, order_count - 1), st.sampled_from(ROUTED_STATUSES)),
            min_size=1,
            max_size=8,
            unique=True,
        ),
        label="transitions",
    )
    stream = data.draw(with_repeats(happened), label="deliveries")
    at = datetime(2026, 11, 21, tzinfo=UTC)
    before = {m.sequence_number for m in receiver.peek_messages(1000, sequence_number=1)}

    outcomes = [
        route.route(envelope_from_dict(order_event(orders[index], status, at)))
        for index, status in stream
    ]

    expected_commands = {
        event_id(orders[index]["customerId"], orders[index]["id"], status)
        for index, status in first_arrivals(stream)
        if status is OrderStatus.PAID
    }
    queued = receiver.peek_messages(1000, sequence_number=1)
    sent = [m for m in queued if m.sequence_number not in before]
    assert sorted(str(m.message_id) for m in sent) == sorted(expected_commands)
    for message in sent:
        command = parse_command(b"".join(message.body))
        assert command.event_id == message.message_id
        assert message.subject == FULFIL_ORDER
    for (_, status), outcome in zip(stream, outcomes, strict=True):
        paid = status is OrderStatus.PAID
        assert outcome is (RouteOutcome.COMMAND_SENT if paid else RouteOutcome.IGNORED)


# ------------------------------------------------------------------ commands -> fulfillment


demands = st.dictionaries(st.sampled_from(["A", "B"]), st.integers(1, 2), min_size=1)


@FEW
@given(
    data=st.data(),
    lines=st.lists(demands, min_size=2, max_size=4),
    stock=st.fixed_dictionaries({"A": st.integers(0, 4), "B": st.integers(0, 4)}),
)
def test_fulfillment_commands_in_any_order_with_repeats_equal_exactly_once_delivery(
    services: tuple[OrderService, CosmosOrderRepository],
    data: st.DataObject,
    lines: list[dict[str, int]],
    stock: dict[str, int],
) -> None:
    orders, repository = services
    reservations = CosmosStockReservations()
    fulfillment = FulfillmentService(orders, repository, EventGridPublisher(), reservations)
    inventory = CosmosInventoryRepository()
    skus = {name: f"SKU-rd-{name}-{uuid.uuid4().hex[:8]}" for name in stock}
    for name, available in stock.items():
        inventory.set_available(skus[name], available, "2026-11-21T00:00:00Z")
    placed = paid_orders(
        orders, [{skus[name]: q for name, q in demand.items()} for demand in lines]
    )
    stream = data.draw(with_repeats(list(range(len(placed)))), label="deliveries")
    parking = ParkingList()

    for delivery, index in enumerate(stream, 1):
        order = placed[index]
        paid_event = event_id(order.customer_id, order.id, OrderStatus.PAID)
        body = json.dumps(
            {
                "type": FULFIL_ORDER,
                "version": 1,
                "customerId": order.customer_id,
                "orderId": order.id,
                "eventId": paid_event,
            }
        ).encode()
        message = ReceivedMessage(body, paid_event, delivery, {})
        assert handle_delivery(message, fulfillment, parking) is DeliveryOutcome.PROCESSED

    # In-order exactly-once: each order, at its first arrival, takes all its lines or nothing.
    left = dict(stock)
    expected: dict[int, str] = {}
    for index in first_arrivals(stream):
        if all(left[name] >= q for name, q in lines[index].items()):
            expected[index] = "fulfilled"
            for name, q in lines[index].items():
                left[name] -= q
        else:
            expected[index] = "backordered"
    assert parking.parked == []
    for index, order in enumerate(placed):
        document = repository.get(order.customer_id, order.id).document
        assert document["status"] == expected[index]
        statuses = [entry["status"] for entry in document["history"]]
        assert statuses == ["pending", "paid", expected[index]]  # decided once
        holder = holder_key(order.customer_id, order.id)
        for name, sku in skus.items():
            held = reservations.held(sku, holder)
            wanted = lines[index].get(name, 0) if expected[index] == "fulfilled" else 0
            assert held == wanted
    for name, sku in skus.items():
        assert inventory.get(sku).available == left[name]


# ------------------------------------------------------------- payment webhooks and cancels


@FEW
@given(data=st.data(), order_count=st.integers(1, 3))
def test_payments_and_cancels_in_any_order_with_repeats_apply_at_most_once(
    services: tuple[OrderService, CosmosOrderRepository],
    events: EventGridSink,
    data: st.DataObject,
    order_count: int,
) -> None:
    orders, repository = services
    idempotency = CosmosIdempotencyStore()
    payments = PaymentService(orders, idempotency, SecretStore(environ={}))
    draft = OrderDraft.model_validate(
        {"lines": [{"sku": "SKU-PAY", "quantity": 1, "unitPrice": "7.00"}], "currency": "EUR"}
    )
    placed = [orders.place(f"rp-{uuid.uuid4().hex[:12]}", draft).order for _ in range(order_count)]
    payment_ids = [f"evt_{uuid.uuid4().hex}" for _ in placed]
    requests = [("pay", i) for i in range(order_count)]
    requests += data.draw(
        st.lists(st.sampled_from([("cancel", i) for i in range(order_count)]), unique=True),
        label="cancels",
    )
    stream = data.draw(with_repeats(requests), label="deliveries")

    status = dict.fromkeys(range(order_count), "pending")  # in-order exactly-once model
    applied: set[int] = set()
    for kind, index in stream:
        order = placed[index]
        if kind == "pay":
            event = PaymentEvent(
                id=payment_ids[index],
                type="payment.succeeded",
                data={
                    "customerId": order.customer_id,
                    "orderId": order.id,
                    "amount": "7.00",
                    "currency": "EUR",
                },
            )
            if index in applied:
                assert payments.apply(event).outcome is WebhookOutcome.DUPLICATE
            elif status[index] == "pending":
                assert payments.apply(event).outcome is WebhookOutcome.APPLIED
                status[index] = "paid"
                applied.add(index)
            else:  # cancelled first: refused (409), however often it comes
                with pytest.raises(IllegalTransitionError):
                    payments.apply(event)
        elif status[index] == "pending":
            orders.cancel(order.customer_id, order.id)
            status[index] = "cancelled"
        else:  # paid first, or a repeated cancel: refused (409)
            with pytest.raises(IllegalTransitionError):
                orders.cancel(order.customer_id, order.id)

    for index, order in enumerate(placed):
        document = repository.get(order.customer_id, order.id).document
        assert document["status"] == status[index]
        assert [entry["status"] for entry in document["history"]] == ["pending", status[index]]
        published = {(e["type"], e["id"]) for e in events.events if e["subject"].endswith(order.id)}
        final = OrderStatus(status[index])
        assert (EVENT_TYPES[final], event_id(order.customer_id, order.id, final)) in published
        paid_record = document.get("payment") or {}
        key = f"payment-event:{payment_ids[index]}"
        if status[index] == "paid":
            assert paid_record["eventId"] == payment_ids[index]
            assert idempotency.seen(key)
        else:
            assert paid_record == {}
            assert not idempotency.seen(key)

    # The process died after marking an order paid, before recording the event id: the order
    # itself remembers the event, so the provider's redelivery is still a no-op.
    for index in applied:
        order = placed[index]
        key = f"payment-event:{payment_ids[index]}"
        records = get_container(IDEMPOTENCY_CONTAINER)
        records.delete_item(key, partition_key=key)  # the record's id is its key here
        assert not idempotency.seen(key)
        event = PaymentEvent(
            id=payment_ids[index],
            type="payment.succeeded",
            data={
                "customerId": order.customer_id,
                "orderId": order.id,
                "amount": "7.00",
                "currency": "EUR",
            },
        )
        assert payments.apply(event).outcome is WebhookOutcome.DUPLICATE
        assert idempotency.seen(key)
        history = repository.get(order.customer_id, order.id).document["history"]
        assert [entry["status"] for entry in history] == ["pending", "paid"]


# ---------------------------------------------------------------------- import chunks


@dataclass(frozen=True)
class PartnerOrder:
    external_id: str
    customer: str
    quantities: list[int]
    valid: bool


partner_orders = st.lists(
    st.tuples(
        st.integers(0, 1), st.lists(st.integers(1, 5), min_size=1, max_size=3), st.booleans()
    ),
    min_size=1,
    max_size=10,
)


def partner_file(drawn: list[tuple[int, list[int], bool]]) -> tuple[bytes, list[PartnerOrder]]:
    """A CSV with one order per entry (its lines on consecutive rows); an invalid order has a
    quantity of 0 on its last line, which rejects all of its rows."""
    stem = uuid.uuid4().hex[:8]
    orders = [
        PartnerOrder(f"X{n}", f"imp-{stem}-{customer}", quantities, valid)
        for n, (customer, quantities, valid) in enumerate(drawn)
    ]
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(["external_id", "customer_id", "sku", "quantity", "unit_price", "currency"])
    for order in orders:
        for line, quantity in enumerate(order.quantities):
            last = line == len(order.quantities) - 1
            shown = 0 if last and not order.valid else quantity
            writer.writerow(
                [order.external_id, order.customer, f"SKU-{line}", shown, "2.50", "EUR"]
            )
    return out.getvalue().encode(), orders


@FEW
@given(data=st.data(), drawn=partner_orders, retry_file_pass=st.booleans())
def test_import_chunks_redelivered_in_any_order_count_every_row_once(
    services: tuple[OrderService, CosmosOrderRepository],
    data: st.DataObject,
    drawn: list[tuple[int, list[int], bool]],
    retry_file_pass: bool,
) -> None:
    orders, repository = services
    queue = ListQueue()
    runs = CosmosImportRunRepository()
    pipeline = ImportPipeline(
        runs, direct_import_files(), AzureReportBlob(), queue, lambda: orders, max_chunk_bytes=350
    )
    content, partner = partner_file(drawn)
    name = f"redelivered-{uuid.uuid4().hex[:10]}.csv"
    upload_direct(name, content)

    assert pipeline.import_file(name) is FileOutcome.SENT
    first_run = list(queue.messages)
    stream = data.draw(with_repeats(first_run), label="first run deliveries")
    cut = (
        data.draw(st.integers(0, len(stream)), label="file pass retried after")
        if retry_file_pass
        else len(stream)
    )
    seen: set[str] = set()
    for message in stream[:cut]:
        expected = ChunkOutcome.DUPLICATE if message in seen else ChunkOutcome.APPLIED
        assert pipeline.process_chunk(message) is expected
        seen.add(message)
    rest = stream[cut:]
    if retry_file_pass:
        done = (runs.read(name) or pytest.fail("no run")).document["state"] == "completed"
        retried = pipeline.import_file(name)  # the blob trigger fires again for this version
        assert retried is (FileOutcome.SKIPPED if done else FileOutcome.SENT)
        second_run = queue.messages[len(first_run) :]
        rest = data.draw(with_repeats(rest + second_run), label="after the retried file pass")
        for message in rest:
            if message in first_run and not done:
                assert pipeline.process_chunk(message) is ChunkOutcome.STALE
            else:
                expected = ChunkOutcome.DUPLICATE if message in seen else ChunkOutcome.APPLIED
                assert pipeline.process_chunk(message) is expected
                seen.add(message)
    else:
        assert rest == []

    status = (runs.read(name) or pytest.fail("no run")).document
    rows = sum(len(order.quantities) for order in partner)
    accepted = sum(len(order.quantities) for order in partner if order.valid)
    assert status["state"] == "completed"
    assert (status["rowsRead"], status["accepted"], status["rejected"]) == (
        rows,
        accepted,
        rows - accepted,
    )
    assert status["chunksDone"] == status["chunksTotal"]
    for customer in {order.customer for order in partner}:
        stored = repository.list_page(customer, None, 100, None).items
        wanted = {
            order.external_id: order
            for order in partner
            if order.customer == customer and order.valid
        }
        assert sorted(item.document["externalId"] for item in stored) == sorted(wanted)
        for item in stored:
            quantities = [line["quantity"] for line in item.document["lines"]]
            assert quantities == wanted[item.document["externalId"]].quantities
            assert Decimal(item.document["total"]) == Decimal("2.50") * sum(quantities)


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"not json",
        b"[]",
        b'{"v": 1}',
        b'{"importId": "x", "chunk": -1}',
        "\xe4".encode("latin-1"),
    ],
)
def test_a_queue_message_that_is_not_a_chunk_fails_every_delivery(
    services: tuple[OrderService, CosmosOrderRepository], body: bytes
) -> None:
    """Raised, so the queue trigger retries it maxDequeueCount times and then moves it to
    ``order-import-chunks-poison`` (host.json; the host's side is tests/integration/
    test_storage_triggers.py::test_queue_messages_are_retried_with_dequeue_counts_then_poisoned)."""
    orders, _ = services
    pipeline = ImportPipeline(
        CosmosImportRunRepository(),
        direct_import_files(),
        AzureReportBlob(),
        ListQueue(),
        lambda: orders,
    )
    for _ in range(2):  # the same answer on every delivery
        with pytest.raises(ValueError, match="chunk"):  # InvalidChunkError
            pipeline.process_chunk(body)
