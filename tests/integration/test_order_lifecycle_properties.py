"""The order lifecycle as a state machine (Hypothesis), driven through the real services on the
Cosmos stand-in: random sequences of payments (new and repeated webhook events), client
cancels, fulfillment deliveries (with or without enough stock), expiry runs, stale writes and
direct transitions the lifecycle forbids. After every step, for every order:

- its status is the one the lifecycle (docs/ARCHITECTURE.md, Order lifecycle; written out below,
  independently of ``shared.models``) predicts; an illegal change raised the domain's error
  (IllegalTransitionError -> 409, PreconditionFailedError -> 412, or the fulfillment's
  not-ready / poison errors) and wrote nothing;
- its history is exactly the path taken, each status at most once, nothing after a terminal
  status; total, currency and lines never change; its outbox is empty and every status it
  entered was published as an event with one id;
- its SKU's stock is reserved (once, by this order) exactly while the order is fulfilled.

Which paths a random run explores depends on the constants Hypothesis finds in the modules
loaded so far, so a second test walks the same rules on purpose: every action in every status.

The lifecycle table itself is also checked in tests/unit/shared/test_models.py::
test_lifecycle_matches_the_design; single service cases live in tests/integration/
test_order_service.py and test_fulfillment_service.py.
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from decimal import Decimal
from typing import Any, ClassVar

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from shared.errors import IllegalTransitionError, PreconditionFailedError
from shared.events import EVENT_TYPES, event_id
from shared.models import OrderDraft, OrderStatus
from shared.publisher import EventGridPublisher
from shared.repositories.idempotency import CosmosIdempotencyStore
from shared.repositories.inventory import CosmosInventoryRepository
from shared.repositories.orders import CosmosOrderRepository, StoredOrder
from shared.repositories.reservations import CosmosStockReservations, holder_key
from shared.secrets import SecretStore
from shared.services.expiry import OrderExpiryService
from shared.services.fulfillment import (
    FULFIL_ORDER,
    FulfillmentOutcome,
    FulfillmentService,
    FulfilOrderCommand,
    OrderNotReadyError,
    PoisonMessageError,
    PoisonReason,
)
from shared.services.orders import OrderService, utc_now
from shared.services.payments import PaymentEvent, PaymentService, WebhookOutcome
from tests.fixtures.eventgrid import EventGridSink

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

P, PAID, F, B = (
    OrderStatus.PENDING,
    OrderStatus.PAID,
    OrderStatus.FULFILLED,
    OrderStatus.BACKORDERED,
)
C, E = OrderStatus.CANCELLED, OrderStatus.EXPIRED
# The lifecycle of docs/ARCHITECTURE.md (Order lifecycle), edge by edge.
DESIGN_EDGES = {(P, PAID), (PAID, F), (PAID, B), (B, C), (P, C), (P, E)}
TERMINAL = {F, C, E}


@dataclass
class Tracked:
    """What the design says one order must look like now."""

    customer: str
    order_id: str
    sku: str
    quantity: int
    stock: int  # the SKU's stock before any reservation
    total: str
    lines: list[dict[str, Any]]
    placed: StoredOrder  # as first stored: a stale copy once anything changed
    path: list[OrderStatus] = field(default_factory=lambda: [P])
    applied_payment: str | None = None

    @property
    def status(self) -> OrderStatus:
        return self.path[-1]

    def enter(self, status: OrderStatus) -> None:
        assert (self.status, status) in DESIGN_EDGES, f"model bug: {self.status} -> {status}"
        OrderLifecycle.edges_taken[(self.status, status)] += 1
        self.path.append(status)


@dataclass
class Services:
    repository: CosmosOrderRepository
    orders: OrderService
    payments: PaymentService
    fulfillment: FulfillmentService
    reservations: CosmosStockReservations
    inventory: CosmosInventoryRepository
    publisher: EventGridPublisher
    events: EventGridSink


class SnapshotScans:
    """The expiry's scan as it may see the order: the copy read when it was placed (pending),
    however much it changed since; the expiry service must re-check before it writes."""

    def __init__(self, order: StoredOrder) -> None:
        self._order = order

    def stale_pending_pages(self, cutoff: str, page_size: int) -> Iterator[list[StoredOrder]]:
        yield [self._order]

    def created_between_pages(
        self, start: str, end: str, page_size: int
    ) -> Iterator[Sequence[Mapping[str, Any]]]:
        return iter(())


class OrderLifecycle(RuleBasedStateMachine):
    services: ClassVar[Services]
    orders = Bundle("orders")
    # Across all runs: which changes were made, so the test can tell it explored the lifecycle.
    edges_taken: ClassVar[Counter[tuple[OrderStatus, OrderStatus]]] = Counter()
    steps: ClassVar[int] = 0

    def __init__(self) -> None:
        super().__init__()
        self.tracked: dict[str, Tracked] = {}

    # --------------------------------------------------------------------------- placing

    def _place(self, quantity: int, price: str, stocked: bool) -> str:
        s = self.services
        sku = f"SKU-sm-{uuid.uuid4().hex[:10]}"
        stock = quantity if stocked else quantity - 1
        s.inventory.set_available(sku, stock, "2026-11-21T00:00:00Z")
        draft = OrderDraft.model_validate(
            {"lines": [{"sku": sku, "quantity": quantity, "unitPrice": price}], "currency": "EUR"}
        )
        placed = s.orders.place(f"sm-{uuid.uuid4().hex[:12]}", draft).order
        self.tracked[placed.id] = Tracked(
            customer=placed.customer_id,
            order_id=placed.id,
            sku=sku,
            quantity=quantity,
            stock=stock,
            total=str(Decimal(price) * quantity),
            lines=placed.document["lines"],
            placed=placed,
        )
        return placed.id

    @initialize(target=orders, quantity=st.integers(1, 3), stocked=st.booleans())
    def first_order(self, quantity: int, stocked: bool) -> str:
        return self._place(quantity, "5.00", stocked)

    @precondition(lambda self: len(self.tracked) < 2)
    @rule(
        target=orders,
        quantity=st.integers(1, 3),
        price=st.sampled_from(["0.99", "12.50"]),
        stocked=st.booleans(),
    )
    def another_order(self, quantity: int, price: str, stocked: bool) -> str:
        return self._place(quantity, price, stocked)

    # --------------------------------------------------------------------------- changes

    def _pay(self, order: Tracked, event: str) -> None:
        payment = PaymentEvent(
            id=event,
            type="payment.succeeded",
            data={
                "customerId": order.customer,
                "orderId": order.order_id,
                "amount": order.total,
                "currency": "EUR",
            },
        )
        if event == order.applied_payment:
            assert self.services.payments.apply(payment).outcome is WebhookOutcome.DUPLICATE
        elif order.status is P:
            assert self.services.payments.apply(payment).outcome is WebhookOutcome.APPLIED
            order.enter(PAID)
            order.applied_payment = event
        else:
            with pytest.raises(IllegalTransitionError):
                self.services.payments.apply(payment)

    @rule(order_id=orders)
    def payment_webhook(self, order_id: str) -> None:
        self._pay(self.tracked[order_id], f"evt_{uuid.uuid4().hex}")

    @rule(order_id=orders)
    def payment_webhook_redelivered(self, order_id: str) -> None:
        order = self.tracked[order_id]
        self._pay(order, order.applied_payment or f"evt_{uuid.uuid4().hex}")

    @rule(order_id=orders)
    def client_cancel(self, order_id: str) -> None:
        order = self.tracked[order_id]
        if order.status in (P, B):
            cancelled = self.services.orders.cancel(order.customer, order.order_id)
            assert cancelled.document["status"] == "cancelled"
            order.enter(C)
        else:
            with pytest.raises(IllegalTransitionError):
                self.services.orders.cancel(order.customer, order.order_id)

    @rule(order_id=orders)
    def fulfillment_delivery(self, order_id: str) -> None:
        order = self.tracked[order_id]
        command = FulfilOrderCommand.model_validate(
            {
                "type": FULFIL_ORDER,
                "version": 1,
                "customerId": order.customer,
                "orderId": order.order_id,
                "eventId": event_id(order.customer, order.order_id, PAID),
            }
        )
        fulfil = self.services.fulfillment.fulfil
        if order.status is P:
            with pytest.raises(OrderNotReadyError):
                fulfil(command)
        elif order.status is PAID:
            enough = order.stock >= order.quantity
            expected = FulfillmentOutcome.FULFILLED if enough else FulfillmentOutcome.BACKORDERED
            assert fulfil(command).outcome is expected
            order.enter(F if enough else B)
        elif order.status is F:
            assert fulfil(command).outcome is FulfillmentOutcome.ALREADY_FULFILLED
        elif PAID in order.path:  # backordered, or cancelled after a backorder
            assert fulfil(command).outcome is FulfillmentOutcome.RELEASED
        else:  # cancelled or expired without ever being paid
            with pytest.raises(PoisonMessageError) as poison:
                fulfil(command)
            assert poison.value.reason is PoisonReason.ILLEGAL_TRANSITION

    @rule(order_id=orders)
    def expiry_run(self, order_id: str) -> None:
        order = self.tracked[order_id]
        s = self.services
        expiry = OrderExpiryService(
            s.orders,
            s.repository,
            SnapshotScans(order.placed),
            s.publisher,
            payment_timeout=timedelta(minutes=30),
            clock=lambda: utc_now() + timedelta(hours=1),  # every order is unpaid too long
        )
        result = expiry.expire_unpaid()
        if order.status is P:
            assert (result.expired, result.skipped) == (1, 0)
            order.enter(E)
        else:
            assert (result.expired, result.skipped, result.failed) == (0, 1, 0)

    @rule(order_id=orders)
    def write_from_a_stale_copy(self, order_id: str) -> None:
        """A cancel computed from the order as first read, after it changed: refused (412)."""
        order = self.tracked[order_id]
        if order.status is P:
            return  # the copy is current: this would be a client cancel (a rule of its own)
        with pytest.raises(PreconditionFailedError):
            self.services.orders.transition(order.placed, C)

    @rule(order_id=orders, wanted=st.sampled_from(OrderStatus))
    def forbidden_transition(self, order_id: str, wanted: OrderStatus) -> None:
        order = self.tracked[order_id]
        if (order.status, wanted) in DESIGN_EDGES:
            return  # legal changes go through the services above
        current = self.services.repository.get(order.customer, order.order_id)
        with pytest.raises(IllegalTransitionError):
            self.services.orders.transition(current, wanted)
        after = self.services.repository.get(order.customer, order.order_id)
        assert after.etag == current.etag, "a refused change wrote something"

    # --------------------------------------------------------------------------- invariants

    @invariant()
    def every_order_is_what_the_design_says(self) -> None:
        s = self.services
        OrderLifecycle.steps += 1
        for order in self.tracked.values():
            document = s.repository.get(order.customer, order.order_id).document
            history = [OrderStatus(entry["status"]) for entry in document["history"]]
            assert OrderStatus(document["status"]) is order.status
            assert history == order.path
            assert len(set(history)) == len(history)
            assert not any(status in TERMINAL for status in history[:-1])
            assert (document["total"], document["currency"]) == (order.total, "EUR")
            assert document["lines"] == order.lines
            assert document["outbox"] == []
            published = [e for e in s.events.events if e["subject"].endswith(order.order_id)]
            assert {e["type"] for e in published} == {EVENT_TYPES[status] for status in history}
            for status in history:
                ids = {e["id"] for e in published if e["type"] == EVENT_TYPES[status]}
                assert ids == {event_id(order.customer, order.order_id, status)}

    @invariant()
    def stock_is_held_exactly_while_fulfilled(self) -> None:
        s = self.services
        for order in self.tracked.values():
            held = s.reservations.held(order.sku, holder_key(order.customer, order.order_id))
            available = s.inventory.get(order.sku).available
            if order.status is F:
                assert (held, available) == (order.quantity, order.stock - order.quantity)
            else:
                assert (held, available) == (0, order.stock)


@pytest.fixture
def services(
    app_settings: dict[str, str], events: EventGridSink, monkeypatch: pytest.MonkeyPatch
) -> Services:
    for name, value in events.app_settings().items():
        monkeypatch.setenv(name, value)
    repository = CosmosOrderRepository()
    publisher = EventGridPublisher()
    orders = OrderService(repository, publisher)
    reservations = CosmosStockReservations()
    return Services(
        repository=repository,
        orders=orders,
        payments=PaymentService(orders, CosmosIdempotencyStore(), SecretStore(environ={})),
        fulfillment=FulfillmentService(orders, repository, publisher, reservations),
        reservations=reservations,
        inventory=CosmosInventoryRepository(),
        publisher=publisher,
        events=events,
    )


def test_random_lifecycles_follow_the_design(services: Services) -> None:
    OrderLifecycle.services = services
    OrderLifecycle.edges_taken.clear()
    OrderLifecycle.steps = 0
    run_state_machine_as_test(
        OrderLifecycle,
        settings=settings(
            max_examples=20,
            stateful_step_count=25,
            suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
        ),
    )
    # Which paths the run explores depends on the constants Hypothesis finds in the modules
    # loaded so far: the test below walks every path on purpose.
    taken = OrderLifecycle.edges_taken
    print(
        f"\norder lifecycle: {OrderLifecycle.steps} checked states; transitions taken: "
        + ", ".join(f"{a.value}->{b.value} x{n}" for (a, b), n in sorted(taken.items()))
    )


# How to bring a new order into each status (``stocked``: enough stock to fulfil it).
PATHS: dict[str, tuple[bool, tuple[str, ...]]] = {
    "pending": (True, ()),
    "paid": (True, ("payment_webhook",)),
    "fulfilled": (True, ("payment_webhook", "fulfillment_delivery")),
    "backordered": (False, ("payment_webhook", "fulfillment_delivery")),
    "cancelled": (True, ("client_cancel",)),
    "cancelled after a backorder": (
        False,
        ("payment_webhook", "fulfillment_delivery", "client_cancel"),
    ),
    "expired": (True, ("expiry_run",)),
}
ACTIONS = (
    "payment_webhook",
    "payment_webhook_redelivered",
    "client_cancel",
    "fulfillment_delivery",
    "expiry_run",
    "write_from_a_stale_copy",
    "every_forbidden_transition",
)


@pytest.mark.parametrize("path", PATHS)
def test_every_action_in_every_status_follows_the_design(services: Services, path: str) -> None:
    """The machine's rules walked on purpose: each status reached through the services, then
    each action tried there (legal ones change it as the design says, the others raise and
    change nothing), the invariants checked after every step."""
    OrderLifecycle.services = services
    stocked, steps = PATHS[path]
    for action in ACTIONS:
        machine = OrderLifecycle()
        order_id = machine._place(2, "5.00", stocked)
        for step in (*steps, action):
            if step == "every_forbidden_transition":
                for wanted in OrderStatus:
                    machine.forbidden_transition(order_id, wanted)
            else:
                getattr(machine, step)(order_id)
            machine.every_order_is_what_the_design_says()
            machine.stock_is_held_exactly_while_fulfilled()
        history = machine.tracked[order_id].path
        assert history[len(steps)].value == path.split(maxsplit=1)[0], (path, history)
