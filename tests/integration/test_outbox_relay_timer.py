"""The outbox relay timer publishes what a request stored but could not publish."""

from __future__ import annotations

import uuid

import pytest
from azure.functions.timer import TimerRequest

from blueprints import schedules
from shared.events import event_id
from shared.models import OrderDraft, OrderStatus
from shared.process_state import reset_process_state
from shared.services.providers import order_service
from tests.fixtures.eventgrid import EventGridSink

pytestmark = pytest.mark.integration


def test_timer_relays_pending_events(
    app_settings: dict[str, str], events: EventGridSink, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in events.app_settings().items():
        monkeypatch.setenv(name, value)
    reset_process_state()
    customer = f"c-{uuid.uuid4().hex[:12]}"
    draft = OrderDraft.model_validate(
        {"lines": [{"sku": "A", "quantity": 1, "unitPrice": "1.00"}], "currency": "EUR"}
    )
    try:
        events.failing = True
        placed = order_service().place(customer, draft).order
        assert placed.document["outbox"], "the event must wait in the outbox"
        events.failing = False

        relay = schedules.publish_pending_events.build().get_user_function()
        relay(TimerRequest(past_due=True), None)

        assert order_service().get(customer, placed.id).document["outbox"] == []
        published = {event["id"] for event in events.of_type("Orderflow.Order.Placed")}
        assert event_id(customer, placed.id, OrderStatus.PENDING) in published
    finally:
        reset_process_state()
