"""Event processing (pattern 2), first half: order events from Event Grid become commands.

``route_order_events`` receives each event of the order topic's subscription (CloudEvents 1.0,
the app's own events; the Event Grid schema is read too, for system events) and hands it to the
router in ``shared.services.event_routing``: ``Orderflow.Order.Paid`` becomes a fulfillment
command on the Service Bus queue ``fulfillment``; other types are logged and ignored; a
malformed event is logged with its id and acknowledged (a retry cannot fix it). A failure to
send raises, so Event Grid retries the delivery with backoff.
"""

from __future__ import annotations

from typing import Any

import azure.functions as func

from blueprints._invocation import invocation_with_trace

bp = func.Blueprint()


def event_as_dict(event: Any) -> dict[str, Any]:
    """The JSON form of the trigger's event, whichever schema it came in."""
    if isinstance(event, func.CloudEvent):
        return {
            **event.extension_attrs,
            "specversion": event.specversion,
            "id": event.id,
            "source": event.source,
            "type": event.type,
            "subject": event.subject,
            "data": event.get_json(),
        }
    return {
        "id": event.id,
        "eventType": event.event_type,
        "subject": event.subject,
        "topic": event.topic,
        "data": event.get_json(),
    }


@bp.function_name("route_order_events")
@bp.event_grid_trigger(arg_name="event")
def route_order_events(event: func.CloudEvent, context: func.Context) -> None:
    from shared.delivery import settled
    from shared.services.event_routing import envelope_from_dict
    from shared.services.providers import event_router

    envelope = envelope_from_dict(event_as_dict(event))
    with (
        invocation_with_trace(context, envelope.traceparent, "eventGrid") as scope,
        settled("route_order_events", f"event {envelope.id}"),
    ):
        # The command continues this invocation's span of the order's trace.
        event_router().route(envelope.with_traceparent(scope.traceparent))
