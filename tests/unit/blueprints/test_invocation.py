"""An invocation continues the trace its event or message carries (blueprints/_invocation.py),
also as the Event Grid trigger's event reaches it (the local Event Grid's pieces:
tests/unit/localdev/test_eventgrid.py)."""

from __future__ import annotations

import pytest

from blueprints._invocation import invocation_with_trace
from blueprints.events import event_as_dict
from shared.services.event_routing import envelope_from_dict, fulfillment_message
from shared.services.fulfillment import (
    FULFIL_ORDER,
    FulfilOrderCommand,
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
    with invocation_with_trace(_Context(other), UPSTREAM, "eventGrid") as scope:  # type: ignore[arg-type]
        assert scope.trace_id == UPSTREAM.split("-")[1]
        assert scope.traceparent is not None
        assert scope.traceparent != UPSTREAM
        assert scope.traceparent.endswith("-01")


def test_the_hosts_trace_context_is_kept_when_it_is_already_in_the_upstream_trace() -> None:
    host = f"00-{UPSTREAM.split('-')[1]}-3333333333333333-01"
    with invocation_with_trace(_Context(host), UPSTREAM, "eventGrid") as scope:  # type: ignore[arg-type]
        assert scope.traceparent == host


@pytest.mark.parametrize(
    "upstream", [None, "", "garbage", "00-" + "0" * 32 + "-" + "1" * 16 + "-01"]
)
def test_without_a_valid_upstream_trace_the_hosts_context_is_used(upstream: str | None) -> None:
    host = "00-11111111111111111111111111111111-2222222222222222-00"
    with invocation_with_trace(_Context(host), upstream, "eventGrid") as scope:  # type: ignore[arg-type]
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
