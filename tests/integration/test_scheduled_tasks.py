"""Scheduled tasks against the real local services, with a controlled clock.

Orders are seeded with ``createdAt`` in the past (a fixed era per test) and each test removes
what it leaves behind, so the cross-partition scans only ever see this test's orders.
"""

from __future__ import annotations

import json
import random
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest

from shared.clients import get_container
from shared.errors import IllegalTransitionError, PreconditionFailedError
from shared.events import event_id
from shared.models import OrderDraft, OrderStatus
from shared.names import ORDERS_CONTAINER
from shared.publisher import EventGridPublisher
from shared.repositories.order_scans import CosmosOrderScans
from shared.repositories.orders import CosmosOrderRepository, Document, StoredOrder
from shared.repositories.reports import BlobReportStore
from shared.services.expiry import DEFAULT_TIME_BUDGET_SECONDS, OrderExpiryService
from shared.services.orders import OrderService, timestamp
from shared.services.reports import DailySalesReportService, report_name
from tests.fixtures.eventgrid import EventGridSink

pytestmark = pytest.mark.integration

TIMEOUT = timedelta(minutes=30)


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def draft(price: str = "10.00", currency: str = "EUR", quantity: int = 1) -> OrderDraft:
    return OrderDraft.model_validate(
        {
            "lines": [{"sku": "SKU-1", "quantity": quantity, "unitPrice": price}],
            "currency": currency,
        }
    )


@pytest.fixture
def topic(
    app_settings: dict[str, str], events: EventGridSink, monkeypatch: pytest.MonkeyPatch
) -> EventGridSink:
    for name, value in events.app_settings().items():
        monkeypatch.setenv(name, value)
    return events


class Seeded:
    """Orders this test created; whatever is left is deleted at the end."""

    def __init__(self) -> None:
        self.keys: list[tuple[str, str]] = []

    def track(self, stored: StoredOrder) -> StoredOrder:
        self.keys.append((stored.customer_id, stored.id))
        return stored


@pytest.fixture
def seeded(topic: EventGridSink) -> Iterator[Seeded]:
    record = Seeded()
    yield record
    container = get_container(ORDERS_CONTAINER)
    for customer_id, order_id in record.keys:
        try:
            container.delete_item(order_id, partition_key=customer_id)
        except Exception:  # noqa: S112 - already gone
            continue


def expiry_service(
    clock: Clock, *, page_size: int = 100, time_budget_seconds: float = DEFAULT_TIME_BUDGET_SECONDS
) -> OrderExpiryService:
    repository = CosmosOrderRepository()
    publisher = EventGridPublisher()
    return OrderExpiryService(
        OrderService(repository, publisher, clock=clock),
        repository,
        CosmosOrderScans(),
        publisher,
        payment_timeout=TIMEOUT,
        clock=clock,
        page_size=page_size,
        time_budget_seconds=time_budget_seconds,
    )


def place_at(
    seeded: Seeded, at: datetime, customer: str | None = None, **kwargs: Any
) -> StoredOrder:
    service = OrderService(CosmosOrderRepository(), EventGridPublisher(), clock=Clock(at))
    customer = customer or f"c-{uuid.uuid4().hex[:12]}"
    return seeded.track(service.place(customer, draft(**kwargs)).order)


def test_expiry_boundary_29_59_stays_30_00_expires(seeded: Seeded, topic: EventGridSink) -> None:
    now = datetime(2001, 3, 4, 12, 0, 0, tzinfo=UTC)
    just_in_time = place_at(seeded, now - timedelta(minutes=29, seconds=59))
    too_late = place_at(seeded, now - timedelta(minutes=30))
    paid_long_ago = place_at(seeded, now - timedelta(hours=5))
    OrderService(CosmosOrderRepository(), EventGridPublisher()).transition(
        CosmosOrderRepository().get(paid_long_ago.customer_id, paid_long_ago.id), OrderStatus.PAID
    )
    topic.clear()

    result = expiry_service(Clock(now)).expire_unpaid()

    repository = CosmosOrderRepository()
    assert repository.get(just_in_time.customer_id, just_in_time.id).document["status"] == "pending"
    expired = repository.get(too_late.customer_id, too_late.id)
    assert expired.document["status"] == "expired"
    assert expired.document["outbox"] == [], "the event is published and the outbox cleared"
    assert expired.document["updatedAt"] == timestamp(now)
    assert repository.get(paid_long_ago.customer_id, paid_long_ago.id).document["status"] == "paid"
    assert (result.examined, result.expired, result.failed) == (1, 1, 0)
    assert [e["id"] for e in topic.of_type("Orderflow.Order.Expired")] == [
        event_id(too_late.customer_id, too_late.id, OrderStatus.EXPIRED)
    ]
    # A second run finds nothing: expired is terminal.
    assert expiry_service(Clock(now)).expire_unpaid().examined == 0


class RacingRepository(CosmosOrderRepository):
    """Runs ``before_replace`` once, right before the first conditional write: a payment
    that lands between the expiry's read and its write."""

    def __init__(self, before_replace: Callable[[Document], None]) -> None:
        super().__init__()
        self._before_replace: Callable[[Document], None] | None = before_replace

    def replace(self, document: Document, etag: str) -> StoredOrder:
        hook, self._before_replace = self._before_replace, None
        if hook is not None:
            hook(document)
        return super().replace(document, etag)


def test_payment_landing_during_expiry_wins_and_expiry_loses_cleanly(
    seeded: Seeded, topic: EventGridSink
) -> None:
    now = datetime(2002, 5, 6, 8, 0, tzinfo=UTC)
    order = place_at(seeded, now - timedelta(hours=1))
    payments = OrderService(CosmosOrderRepository(), EventGridPublisher())

    def pay(_: Document) -> None:
        payments.transition(
            CosmosOrderRepository().get(order.customer_id, order.id), OrderStatus.PAID
        )

    clock = Clock(now)
    racing = RacingRepository(pay)
    publisher = EventGridPublisher()
    service = OrderExpiryService(
        OrderService(racing, publisher, clock=clock),
        racing,
        CosmosOrderScans(),
        publisher,
        payment_timeout=TIMEOUT,
        clock=clock,
    )
    topic.clear()

    result = service.expire_unpaid()

    final = CosmosOrderRepository().get(order.customer_id, order.id).document
    assert final["status"] == "paid"
    assert [h["status"] for h in final["history"]] == ["pending", "paid"]
    assert (result.expired, result.skipped) == (0, 1)
    assert topic.of_type("Orderflow.Order.Expired") == []
    assert len(topic.of_type("Orderflow.Order.Paid")) == 1


def test_expiry_first_then_the_payment_is_refused(seeded: Seeded, topic: EventGridSink) -> None:
    now = datetime(2002, 5, 6, 9, 0, tzinfo=UTC)
    order = place_at(seeded, now - timedelta(hours=1))
    seen_by_payment = CosmosOrderRepository().get(order.customer_id, order.id)

    assert expiry_service(Clock(now)).expire_unpaid().expired == 1

    payments = OrderService(CosmosOrderRepository(), EventGridPublisher())
    with pytest.raises(PreconditionFailedError):  # its read is stale: the ETag guard refuses
        payments.transition(seen_by_payment, OrderStatus.PAID)
    fresh = CosmosOrderRepository().get(order.customer_id, order.id)
    with pytest.raises(IllegalTransitionError):  # and reading again shows it expired
        payments.transition(fresh, OrderStatus.PAID)
    assert fresh.document["status"] == "expired"


def test_payments_racing_an_expiry_run_exactly_one_wins_each(
    seeded: Seeded, topic: EventGridSink
) -> None:
    now = datetime(2002, 7, 1, 0, 0, tzinfo=UTC)
    orders = [place_at(seeded, now - timedelta(hours=2, seconds=n)) for n in range(40)]
    topic.clear()
    payments = OrderService(CosmosOrderRepository(), EventGridPublisher())
    outcomes: dict[str, str] = {}
    start = threading.Barrier(2)

    def pay_all() -> None:
        start.wait()
        for order in random.Random(7).sample(orders, len(orders)):
            try:
                stored = CosmosOrderRepository().get(order.customer_id, order.id)
                payments.transition(stored, OrderStatus.PAID)
                outcomes[order.id] = "paid"
            except (PreconditionFailedError, IllegalTransitionError):
                outcomes[order.id] = "refused"

    payer = threading.Thread(target=pay_all)
    payer.start()
    start.wait()
    result = expiry_service(Clock(now), page_size=10).expire_unpaid()
    payer.join()

    repository = CosmosOrderRepository()
    statuses = {o.id: repository.get(o.customer_id, o.id).document["status"] for o in orders}
    assert set(statuses.values()) <= {"paid", "expired"}
    for order_id, status in statuses.items():
        assert (status == "paid") == (outcomes[order_id] == "paid"), order_id
    expired_ids = {e["data"]["orderId"] for e in topic.of_type("Orderflow.Order.Expired")}
    paid_ids = {e["data"]["orderId"] for e in topic.of_type("Orderflow.Order.Paid")}
    assert expired_ids == {i for i, s in statuses.items() if s == "expired"}
    assert paid_ids == {i for i, s in statuses.items() if s == "paid"}
    assert not expired_ids & paid_ids
    assert result.expired == len(expired_ids)


def seed_stale_orders(
    count: int, created: datetime, per_customer: int = 100
) -> list[tuple[str, str]]:
    """``count`` pending orders written straight into Cosmos, 100 per transactional batch."""
    container = get_container(ORDERS_CONTAINER)
    keys: list[tuple[str, str]] = []
    for start in range(0, count, per_customer):
        customer = f"bulk-{uuid.uuid4().hex[:10]}"
        operations: list[Any] = []
        for n in range(start, min(count, start + per_customer)):
            at = timestamp(created + timedelta(milliseconds=n))
            order_id = uuid.uuid4().hex
            document = {
                "id": order_id,
                "customerId": customer,
                "status": "pending",
                "lines": [{"sku": "SKU-1", "quantity": 1, "unitPrice": "1.00"}],
                "currency": "EUR",
                "total": "1.00",
                "source": "api",
                "createdAt": at,
                "updatedAt": at,
                "history": [{"status": "pending", "at": at}],
                "outbox": [],
            }
            operations.append(("create", (document,)))
            keys.append((customer, order_id))
        container.execute_item_batch(operations, partition_key=customer)
    return keys


def test_ten_thousand_stale_orders_expire_in_pages(seeded: Seeded, topic: EventGridSink) -> None:
    now = datetime(2003, 1, 1, tzinfo=UTC)
    started = time.perf_counter()
    keys = seed_stale_orders(10_000, now - timedelta(days=3))
    seeded.keys.extend(keys)
    seeded_in = time.perf_counter() - started
    topic.clear()

    started = time.perf_counter()
    result = expiry_service(Clock(now), page_size=100).expire_unpaid()
    took = time.perf_counter() - started

    print(
        f"\n[expiry] seeded 10,000 stale orders in {seeded_in:.1f} s; expired them in "
        f"{took:.1f} s ({10_000 / took:.0f} orders/s, {result.pages} pages of 100, "
        f"{topic.requests} Event Grid requests)"
    )
    assert (result.examined, result.expired, result.failed, result.skipped) == (
        10_000,
        10_000,
        0,
        0,
    )
    assert result.pages == 100
    assert result.complete
    assert result.events_published == 10_000
    assert result.events_left_in_outbox == 0
    assert topic.requests == 100, "one Event Grid request per page"
    assert len({e["id"] for e in topic.of_type("Orderflow.Order.Expired")}) == 10_000
    pending: list[Any] = list(
        get_container(ORDERS_CONTAINER).query_items(
            "SELECT VALUE COUNT(1) FROM c WHERE c.status = 'pending' AND c.createdAt <= @cutoff",
            parameters=[{"name": "@cutoff", "value": timestamp(now)}],
            enable_cross_partition_query=True,
        )
    )
    assert pending == [0]
    sample = random.Random(3).sample(keys, 20)
    for customer, order_id in sample:
        document = CosmosOrderRepository().get(customer, order_id).document
        assert (document["status"], document["outbox"]) == ("expired", [])


def report_days() -> date:
    """A day far from today, different per run, so reports from other runs never collide."""
    return date(2040, 1, 1) + timedelta(days=random.SystemRandom().randrange(3650))


def report_service(clock: Clock) -> DailySalesReportService:
    return DailySalesReportService(CosmosOrderScans(), BlobReportStore(), clock=clock)


def test_report_counts_and_totals_and_is_written_once(seeded: Seeded, topic: EventGridSink) -> None:
    day = report_days()
    morning = datetime.combine(day, datetime.min.time(), tzinfo=UTC)
    service = OrderService(CosmosOrderRepository(), EventGridPublisher())
    paid_eur = place_at(seeded, morning, price="10.25", quantity=2)  # 20.50
    paid_usd = place_at(
        seeded, morning + timedelta(hours=23, minutes=59, seconds=59), price="5.00", currency="USD"
    )
    pending = place_at(seeded, morning + timedelta(hours=3), price="99.99")
    cancelled = place_at(seeded, morning + timedelta(hours=4), price="7.00")
    place_at(seeded, morning - timedelta(microseconds=1), price="1000.00")  # the day before
    place_at(seeded, morning + timedelta(days=1), price="1000.00")  # the day after
    for order in (paid_eur, paid_usd):
        service.transition(
            CosmosOrderRepository().get(order.customer_id, order.id), OrderStatus.PAID
        )
    service.cancel(cancelled.customer_id, cancelled.id)
    fulfilled = place_at(seeded, morning + timedelta(hours=5), price="0.10", quantity=3)  # 0.30
    stored = service.transition(
        CosmosOrderRepository().get(fulfilled.customer_id, fulfilled.id), OrderStatus.PAID
    )
    service.transition(stored, OrderStatus.FULFILLED)
    assert pending.document["status"] == "pending"

    clock = Clock(morning + timedelta(days=1, hours=1, minutes=30))
    report = report_service(clock)
    first = report.run()
    store = BlobReportStore()
    data = store.read(report_name(day))
    clock.now += timedelta(hours=2)
    second = report.run()

    assert day in first.written
    assert second.written == ()
    assert store.read(report_name(day)) == data, "a second run leaves the same bytes"
    document = json.loads(data)
    assert document["date"] == day.isoformat()
    assert document["countsByStatus"] == {
        "pending": 1,
        "paid": 2,
        "fulfilled": 1,
        "backordered": 0,
        "cancelled": 1,
        "expired": 0,
    }
    assert document["orders"] == 5
    assert document["salesByCurrency"] == {
        "EUR": {
            "orders": 2,
            "total": "20.80",
            "byStatus": {
                "paid": {"orders": 1, "total": "20.50"},
                "fulfilled": {"orders": 1, "total": "0.30"},
            },
        },
        "USD": {
            "orders": 1,
            "total": "5.00",
            "byStatus": {
                "paid": {"orders": 1, "total": "5.00"},
                "fulfilled": {"orders": 0, "total": "0.00"},
            },
        },
    }
    assert document["generatedAt"] == timestamp(morning + timedelta(days=1, hours=1, minutes=30))


def test_catch_up_after_three_missed_days_writes_exactly_those(
    seeded: Seeded, topic: EventGridSink
) -> None:
    today = report_days()
    midnight = datetime.combine(today, datetime.min.time(), tzinfo=UTC)
    store = BlobReportStore()
    # The timer ran daily until four days ago: the reports of days -7..-4 exist.
    earlier = {}
    for back in range(7, 3, -1):
        day = today - timedelta(days=back)
        report_service(Clock(midnight - timedelta(days=back - 1, hours=-1, minutes=-30))).run()
        earlier[day] = store.read(report_name(day))
    assert store.exists(report_name(today - timedelta(days=4)))
    for back in (3, 2, 1):
        assert not store.exists(report_name(today - timedelta(days=back)))
        place_at(seeded, midnight - timedelta(days=back) + timedelta(hours=back))

    result = report_service(Clock(midnight + timedelta(hours=1, minutes=30))).run()

    assert result.written == tuple(today - timedelta(days=back) for back in (3, 2, 1))
    assert set(result.already_present) == set(earlier)
    for day, data in earlier.items():
        assert store.read(report_name(day)) == data, "existing reports are left alone"
    for back in (3, 2, 1):
        document = json.loads(store.read(report_name(today - timedelta(days=back))))
        assert document["countsByStatus"]["pending"] == 1
    assert not store.exists(report_name(today)), "today is not over yet"
    again = report_service(Clock(midnight + timedelta(hours=9))).run()
    assert again.written == ()
    assert len(again.already_present) == 7
