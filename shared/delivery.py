"""What a message, event or timer trigger does when its work raises: the outcome the error's type
declares (``on_message`` in ``shared.errors``), carried out the way each trigger can.

| trigger | retry | park | complete |
|---|---|---|---|
| Service Bus ``fulfillment`` (``shared.services.fulfillment_messages``) | raise: abandoned, redelivered, dead-lettered after the max delivery count | a copy to ``fulfillment-parked`` with the reason, the original completed | completed |
| storage queues ``order-import-events`` (file pass) and ``order-import-chunks`` | raise: visible again, moved to ``<queue>-poison`` after ``maxDequeueCount`` (host.json) | moved to ``<queue>-poison`` at once | completed |
| Event Grid routing | raise: Event Grid retries with backoff, then dead-letters to ``eventgrid-deadletters`` | logged as an error with what it was about, acknowledged (as a malformed event is) | acknowledged |
| timers | raise: the run fails; the next occurrence runs again | logged as an error, the run ends | the run ends |

Anything that is not an app error, or an app error that declares no outcome, is retried: a retry
loses nothing, and what keeps failing ends where the platform dead-letters it.
"""  # noqa: E501 - a table

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from shared.errors import MessageOutcome, OrderflowError
from shared.observability import get_logger

log = get_logger("delivery")


def outcome_of(error: BaseException) -> MessageOutcome:
    """The declared outcome of ``error``; RETRY for anything undeclared."""
    if isinstance(error, OrderflowError) and error.on_message is not None:
        return error.on_message
    return MessageOutcome.RETRY


@contextmanager
def settled(
    trigger: str, about: str, *, park: Callable[[OrderflowError], None] | None = None
) -> Iterator[None]:
    """Run a trigger's work and settle an app error as its type declares: RETRY re-raises,
    PARK logs it as an error and hands it to ``park`` (when the trigger can keep the delivery
    somewhere; a failing ``park`` raises, so the delivery is retried and nothing is lost), and
    COMPLETE logs it; both then return normally, so the trigger acknowledges the delivery."""
    try:
        yield
    except OrderflowError as error:
        outcome = outcome_of(error)
        if outcome is MessageOutcome.RETRY:
            raise
        fields = {"trigger": trigger, "about": about[:300], "outcome": outcome.value}
        if outcome is MessageOutcome.PARK:
            log.error(
                "%s (%s) parked, not retried: %s: %s",
                trigger,
                about[:300],
                type(error).__name__,
                error,
                extra=fields,
            )
            if park is not None:
                park(error)
            return
        log.info(
            "%s (%s) complete: %s: %s",
            trigger,
            about[:300],
            type(error).__name__,
            error,
            extra=fields,
        )
