"""Scheduled tasks (pattern 4). Schedules come from app settings (``%SETTING%``, NCRONTAB with
seconds first); the schedule monitor is on so a missed run is caught up once, and nothing runs
at start-up (it would run on every scale-out)."""

from __future__ import annotations

import azure.functions as func

from blueprints._invocation import invocation
from shared.delivery import settled

bp = func.Blueprint()


@bp.function_name("publish_pending_events")
@bp.timer_trigger(
    arg_name="timer",
    schedule="%OUTBOX_RELAY_SCHEDULE%",
    run_on_startup=False,
    use_monitor=True,
)
def publish_pending_events(timer: func.TimerRequest, context: func.Context) -> None:
    """Relay order events a request stored but could not publish (the outbox)."""
    from shared.observability import get_logger
    from shared.services.outbox import relay_pending_events
    from shared.services.providers import outbox_relay

    with invocation(context, "timer"), settled("publish_pending_events", "timer"):
        if timer.past_due:
            get_logger("schedules").info("publish_pending_events is running late (past due)")
        relay_pending_events(*outbox_relay())


def _note_if_past_due(function_name: str, timer: func.TimerRequest) -> None:
    """A past-due run (the host was stopped or busy at the scheduled time) runs once: log it
    with how late it is."""
    if not timer.past_due:
        return
    from datetime import UTC, datetime

    from shared.observability import get_logger
    from shared.scheduling import lateness

    status = getattr(timer, "schedule_status", None)
    late = lateness(status if isinstance(status, dict) else None, datetime.now(UTC))
    seconds = round(late.total_seconds(), 3) if late is not None else None
    get_logger("schedules").warning(
        "%s is running late (past due by %s s); it runs once for the missed occurrences",
        function_name,
        "an unknown number of" if seconds is None else seconds,
        extra={"function": function_name, "pastDue": True, "lateBySeconds": seconds},
    )


@bp.function_name("expire_unpaid_orders")
@bp.timer_trigger(
    arg_name="timer",
    schedule="%EXPIRE_UNPAID_ORDERS_SCHEDULE%",
    run_on_startup=False,
    use_monitor=True,
)
def expire_unpaid_orders(timer: func.TimerRequest, context: func.Context) -> None:
    """Pending orders unpaid for longer than PAYMENT_TIMEOUT_MINUTES become expired."""
    from shared.services.providers import order_expiry_service

    with invocation(context, "timer"), settled("expire_unpaid_orders", "timer"):
        _note_if_past_due("expire_unpaid_orders", timer)
        order_expiry_service().expire_unpaid()


@bp.function_name("daily_sales_report")
@bp.timer_trigger(
    arg_name="timer",
    schedule="%DAILY_SALES_REPORT_SCHEDULE%",
    run_on_startup=False,
    use_monitor=True,
)
def daily_sales_report(timer: func.TimerRequest, context: func.Context) -> None:
    """reports/daily/YYYY-MM-DD.json for yesterday (UTC) and any missing day of the last 7."""
    from shared.services.providers import daily_sales_report_service

    with invocation(context, "timer"), settled("daily_sales_report", "timer"):
        _note_if_past_due("daily_sales_report", timer)
        daily_sales_report_service().run()


@bp.function_name("dead_letter_watch")
@bp.timer_trigger(
    arg_name="timer",
    schedule="%DEAD_LETTER_WATCH_SCHEDULE%",
    run_on_startup=False,
    use_monitor=True,
)
def dead_letter_watch(timer: func.TimerRequest, context: func.Context) -> None:
    """Dead-letter depth of the fulfillment queue and depths of the imports' poison queues
    (chunks, upload events) as metrics, each with a warning when above zero."""
    from shared.config import get_settings
    from shared.names import IMPORT_CHUNKS_POISON_QUEUE, IMPORT_EVENTS_POISON_QUEUE
    from shared.services.deadletters import (
        ServiceBusDeadLetterPeeker,
        StorageQueueDepth,
        watch_dead_letters,
        watch_poison_queue,
    )

    with invocation(context, "timer"), settled("dead_letter_watch", "timer"):
        _note_if_past_due("dead_letter_watch", timer)
        queue = get_settings().fulfillment_queue
        try:
            with ServiceBusDeadLetterPeeker(queue) as peeker:
                watch_dead_letters(peeker, queue)
        finally:  # one watch failing must not hide the others
            try:
                watch_poison_queue(StorageQueueDepth(), IMPORT_CHUNKS_POISON_QUEUE)
            finally:
                watch_poison_queue(StorageQueueDepth(), IMPORT_EVENTS_POISON_QUEUE)


@bp.function_name("reconcile_imports")
@bp.timer_trigger(
    arg_name="timer",
    schedule="%IMPORT_RECONCILE_SCHEDULE%",
    run_on_startup=False,
    use_monitor=True,
)
def reconcile_imports(timer: func.TimerRequest, context: func.Context) -> None:
    """Uploads whose BlobCreated event never came (Event Grid gave up, or the blob is older
    than the subscription) and file passes that died are started again through the event queue
    (shared.services.import_reconciliation)."""
    from shared.services.providers import import_reconciler

    with invocation(context, "timer"), settled("reconcile_imports", "timer"):
        _note_if_past_due("reconcile_imports", timer)
        import_reconciler().reconcile()
