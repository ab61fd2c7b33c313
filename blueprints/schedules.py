"""Scheduled tasks (pattern 4). Schedules come from app settings (``%SETTING%``, NCRONTAB with
seconds first); the schedule monitor is on so a missed run is caught up once, and nothing runs
at start-up (it would run on every scale-out)."""

from __future__ import annotations

import azure.functions as func

from blueprints._invocation import invocation

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

    with invocation(context):
        if timer.past_due:
            get_logger("schedules").info("publish_pending_events is running late (past due)")
        relay_pending_events(*outbox_relay())
