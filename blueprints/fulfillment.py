"""Event processing (pattern 2), second half: fulfil paid orders from the Service Bus queue.

``fulfil_order`` gets each message of the ``fulfillment`` queue (identity-based connection
``ServiceBusConnection__fullyQualifiedNamespace`` in Azure) and hands it to
``shared.services.fulfillment_messages``: success completes the message, a transient failure is
retried with backoff and then abandoned (Service Bus redelivers it), and a message that can
never succeed is parked at its first delivery with its reason (docs/EVENTS.md). The message's
``traceparent`` continues the order's trace.
"""

from __future__ import annotations

import azure.functions as func

from blueprints._invocation import invocation_with_trace

bp = func.Blueprint()


@bp.function_name("fulfil_order")
@bp.service_bus_queue_trigger(
    arg_name="message", queue_name="%FULFILLMENT_QUEUE%", connection="ServiceBusConnection"
)
def fulfil_order(message: func.ServiceBusMessage, context: func.Context) -> None:
    from shared.services.fulfillment_messages import ReceivedMessage, handle_delivery
    from shared.services.providers import fulfillment_parking, fulfillment_service

    properties = dict(message.application_properties or {})
    traceparent = properties.get("traceparent") or properties.get("Diagnostic-Id")
    with invocation_with_trace(
        context, traceparent if isinstance(traceparent, str) else None, "serviceBus"
    ) as scope:
        handle_delivery(
            ReceivedMessage(
                body=message.get_body(),
                message_id=message.message_id,
                delivery_count=int(message.delivery_count or 1),
                application_properties=properties,
            ),
            fulfillment_service(),
            fulfillment_parking(),
            traceparent=scope.traceparent,
        )
