"""Event processing pieces that need no services: trace continuation across hops, the local
topic's validation and retry schedule, demand per SKU, and the fulfillment command schema."""

from __future__ import annotations

import json
from typing import Any

import pytest

from blueprints._invocation import invocation_with_trace
from blueprints.events import event_as_dict
from localdev.host.eventgrid_trigger import (
    DEFAULT_RETRY_DELAYS_SECONDS,
    retry_delays,
    validate_events,
)
from shared.services.event_routing import envelope_from_dict, fulfillment_message
from shared.services.fulfillment import (
    FULFIL_ORDER,
    FulfilOrderCommand,
    PoisonMessageError,
    demand_of,
    parse_command,
)

UPSTREAM = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


class _Trace:
    def __init__(self, trace_parent: str) -> None:
        self.trace_parent = trace_parent


class _Context:
    """The two attributes of ``func.Context`` the scope reads."""

    def __init__(self, trace_parent: str) -> None:
        self.invocation_id = "inv-1"
        self.trace_context = _Trace(trace_parent)


def test_an_invocation_continues_the_upstream_trace_with_a_span_of_its_own() -> None:
    other = "00-11111111111111111111111111111111-2222222222222222-00"
    with invocation_with_trace(_Context(other), UPSTREAM) as scope:  # type: ignore[arg-type]
        assert scope.trace_id == UPSTREAM.split("-")[1]
        assert scope.traceparent is not None
        assert scope.traceparent != UPSTREAM
        assert scope.traceparent.endswith("-01")


def test_the_hosts_trace_context_is_kept_when_it_is_already_in_the_upstream_trace() -> None:
    host = f"00-{UPSTREAM.split('-')[1]}-3333333333333333-01"
    with invocation_with_trace(_Context(host), UPSTREAM) as scope:  # type: ignore[arg-type]
        assert scope.traceparent == host


@pytest.mark.parametrize(
    "upstream", [None, "", "garbage", "00-" + "0" * 32 + "-" + "1" * 16 + "-01"]
)
def test_without_a_valid_upstream_trace_the_hosts_context_is_used(upstream: str | None) -> None:
    host = "00-11111111111111111111111111111111-2222222222222222-00"
    with invocation_with_trace(_Context(host), upstream) as scope:  # type: ignore[arg-type]
        assert scope.traceparent == host


def test_a_cloudevent_from_the_trigger_keeps_its_trace_extension() -> None:
    import azure.functions as func

    event = func.CloudEvent(
        id="e1",
        source="/orderflow/orders",
        type="Orderflow.Order.Paid",
        specversion="1.0",
        subject="customers/a/orders/o",
        data={"customerId": "a", "orderId": "o"},
        traceparent=UPSTREAM,
    )
    envelope = envelope_from_dict(event_as_dict(event))
    assert (envelope.id, envelope.type, envelope.traceparent) == ("e1", event.type, UPSTREAM)
    message = fulfillment_message(
        FulfilOrderCommand.model_validate(
            {"type": FULFIL_ORDER, "version": 1, "customerId": "a", "orderId": "o", "eventId": "e1"}
        ),
        "not a traceparent",
    )
    assert "traceparent" not in message.application_properties  # only valid trace context


def test_demand_adds_up_lines_of_the_same_sku_in_sku_order() -> None:
    lines = [
        {"sku": "B", "quantity": 2},
        {"sku": "A", "quantity": 1},
        {"sku": "B", "quantity": 3},
    ]
    assert demand_of({"lines": lines}) == [("A", 1), ("B", 5)]


def test_a_valid_command_round_trips() -> None:
    command = FulfilOrderCommand.model_validate(
        {"type": FULFIL_ORDER, "version": 1, "customerId": "a", "orderId": "o", "eventId": "e"}
    )
    assert parse_command(command.to_json().encode()) == command


@pytest.mark.parametrize(
    "body", [b"[" * 60_000, json.dumps({"type": FULFIL_ORDER, "version": True}).encode()]
)
def test_hostile_command_bodies_are_poison(body: bytes) -> None:
    with pytest.raises(PoisonMessageError):
        parse_command(body)


def cloud(**extra: Any) -> dict[str, Any]:
    return {"specversion": "1.0", "id": "1", "source": "/s", "type": "t", **extra}


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        (b"", "not JSON"),
        (b"[" * 100_000, "not JSON"),
        (b"{}", "non-empty JSON array"),
        (b"[]", "non-empty JSON array"),
        (b"[1]", "not an object"),
        (json.dumps([{"specversion": "1.0", "id": "1"}]).encode(), "lacks source, type"),
        (json.dumps([cloud(specversion="1.1")]).encode(), "specversion"),
        (json.dumps([cloud(id=5)]).encode(), "lacks id"),
    ],
)
def test_the_local_topic_refuses_what_event_grid_refuses(body: bytes, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        validate_events(body, cloudevents=True)


def test_the_local_topic_accepts_event_grid_schema_events() -> None:
    event = {
        "id": "1",
        "eventType": "x",
        "subject": "s",
        "eventTime": "2026-11-21T00:00:00Z",
        "dataVersion": "1",
    }
    assert validate_events(json.dumps([event]).encode(), cloudevents=False) == [event]
    with pytest.raises(ValueError, match="lacks dataVersion"):
        validate_events(json.dumps([{**event, "dataVersion": None}]).encode(), cloudevents=False)


def test_the_retry_schedule_comes_from_the_setting() -> None:
    assert retry_delays({}) == DEFAULT_RETRY_DELAYS_SECONDS
    assert retry_delays({"LOCALDEV_EVENTGRID_RETRY_DELAYS": "0.5, 1,2"}) == (0.5, 1.0, 2.0)
    for bad in ("x", "1,,2", "-1", "99999"):
        with pytest.raises(ValueError, match="LOCALDEV_EVENTGRID_RETRY_DELAYS"):
            retry_delays({"LOCALDEV_EVENTGRID_RETRY_DELAYS": bad})
