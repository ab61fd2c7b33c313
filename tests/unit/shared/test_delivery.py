"""Every app error has a defined outcome in every message, event and timer trigger.

Each trigger function of the app is called as the host calls it, with its service replaced by
one that raises the error; what the trigger then does is observed (raised: retry; kept in its
parking place, or logged as parked: park; returned: complete) and compared with what the
error's type declares (``on_message``). The error types are found by introspection, so a new one
without a declared outcome fails here.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import azure.functions as func
import pytest

import shared.config
import shared.services.deadletters
import shared.services.outbox
from blueprints import events, fulfillment, imports, schedules
from shared.delivery import outcome_of
from shared.errors import MessageOutcome, NotFoundError, OrderflowError
from shared.services import fulfillment_messages, providers
from shared.services.fulfillment import FULFIL_ORDER, FulfilOrderCommand
from tests.fixtures.app_errors import app_errors, sample

APP_ERRORS = app_errors()


class _Raises:
    """A service whose every method raises ``error``."""

    def __init__(self, error: BaseException) -> None:
        self._error = error

    def __getattr__(self, name: str) -> Callable[..., Any]:
        def method(*args: object, **kwargs: object) -> Any:
            raise self._error

        return method


class _Parking:
    def __init__(self) -> None:
        self.kept: list[tuple[Any, ...]] = []

    def park(self, *args: Any) -> None:
        self.kept.append(args)

    def send(self, *args: Any) -> None:
        self.kept.append(args)


def _user_function(builder: Any) -> Callable[..., None]:
    function: Callable[..., None] = builder.build().get_user_function()
    return function


def _fulfillment(monkeypatch: pytest.MonkeyPatch, error: BaseException, parking: _Parking) -> None:
    monkeypatch.setattr(fulfillment_messages, "RETRY_DELAYS_SECONDS", (0.0,))
    monkeypatch.setattr(providers, "fulfillment_service", lambda: _Raises(error))
    monkeypatch.setattr(providers, "fulfillment_parking", lambda: parking)
    command = FulfilOrderCommand(
        type=FULFIL_ORDER, version=1, customer_id="alice", order_id="o-1", event_id="evt-1"
    )
    message = func.ServiceBusMessage(body=command.to_json().encode())
    _user_function(fulfillment.fulfil_order)(message, None)


def _chunks(monkeypatch: pytest.MonkeyPatch, error: BaseException, parking: _Parking) -> None:
    monkeypatch.setattr(providers, "import_pipeline", lambda: _Raises(error))
    monkeypatch.setattr(providers, "import_chunk_parking", lambda: parking)
    message = func.QueueMessage(id="m-1", body=b'{"chunk": 1}')
    _user_function(imports.create_imported_orders)(message, None)


def _file_pass(monkeypatch: pytest.MonkeyPatch, error: BaseException, parking: _Parking) -> None:
    monkeypatch.setattr(providers, "import_pipeline", lambda: _Raises(error))
    monkeypatch.setattr(providers, "import_event_parking", lambda: parking)
    message = func.QueueMessage(id="m-2", body=b'{"eventType": "Microsoft.Storage.BlobCreated"}')
    _user_function(imports.import_order_file)(message, None)


def _event_grid(monkeypatch: pytest.MonkeyPatch, error: BaseException, parking: _Parking) -> None:
    monkeypatch.setattr(providers, "event_router", lambda: _Raises(error))
    event = func.EventGridEvent(
        id="evt-1",
        data={"customerId": "alice", "orderId": "o-1"},
        topic="orders",
        subject="customers/alice/orders/o-1",
        event_type="Orderflow.Order.Paid",
        event_time=None,
        data_version="1",
    )
    _user_function(events.route_order_events)(event, None)


def _timer(name: str) -> Callable[[pytest.MonkeyPatch, BaseException, _Parking], None]:
    def run(monkeypatch: pytest.MonkeyPatch, error: BaseException, parking: _Parking) -> None:
        def raise_error(*args: object, **kwargs: object) -> Any:
            raise error

        monkeypatch.setattr(providers, "order_expiry_service", lambda: _Raises(error))
        monkeypatch.setattr(providers, "daily_sales_report_service", lambda: _Raises(error))
        monkeypatch.setattr(providers, "outbox_relay", lambda: ())
        monkeypatch.setattr(shared.services.outbox, "relay_pending_events", raise_error)
        monkeypatch.setattr(
            shared.config, "get_settings", lambda: SimpleNamespace(fulfillment_queue="q")
        )
        monkeypatch.setattr(shared.services.deadletters, "ServiceBusDeadLetterPeeker", raise_error)
        monkeypatch.setattr(shared.services.deadletters, "watch_poison_queue", lambda *a: None)
        _user_function(getattr(schedules, name))(func.TimerRequest(past_due=False), None)

    return run


Trigger = Callable[[pytest.MonkeyPatch, BaseException, _Parking], None]
TRIGGERS: dict[str, Trigger] = {
    "fulfil_order": _fulfillment,
    "create_imported_orders": _chunks,
    "import_order_file": _file_pass,
    "route_order_events": _event_grid,
}
TIMERS = (
    "publish_pending_events",
    "expire_unpaid_orders",
    "daily_sales_report",
    "dead_letter_watch",
)
TRIGGERS.update({name: _timer(name) for name in TIMERS})
PARKS_SOMEWHERE = {"fulfil_order", "create_imported_orders", "import_order_file"}


def _observe(
    trigger: str, error: BaseException, monkeypatch: pytest.MonkeyPatch, caplog: Any
) -> MessageOutcome:
    parking = _Parking()
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="orderflow"):
        raised: BaseException | None = None
        try:
            TRIGGERS[trigger](monkeypatch, error, parking)
        except BaseException as exc:
            raised = exc
    if raised is not None:
        assert raised is error, f"{trigger} raised {raised!r} instead of {error!r}"
        assert not parking.kept
        return MessageOutcome.RETRY
    if trigger in PARKS_SOMEWHERE:
        return MessageOutcome.PARK if parking.kept else MessageOutcome.COMPLETE
    assert not parking.kept
    parked = [r for r in caplog.records if getattr(r, "outcome", None) == "park"]
    if parked:
        assert all(r.levelno == logging.ERROR for r in parked)
        return MessageOutcome.PARK
    return MessageOutcome.COMPLETE


def test_every_app_error_declares_its_outcome() -> None:
    undeclared = [cls.__qualname__ for cls in APP_ERRORS if cls.on_message is None]
    assert undeclared == [], "declare on_message on these (shared/errors.py)"


@pytest.mark.parametrize("trigger", sorted(TRIGGERS))
@pytest.mark.parametrize("cls", APP_ERRORS, ids=lambda cls: cls.__name__)
def test_every_app_error_gets_its_declared_outcome_in_every_trigger(
    cls: type[OrderflowError],
    trigger: str,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    error = sample(cls)

    assert _observe(trigger, error, monkeypatch, caplog) is outcome_of(error) is cls.on_message


@pytest.mark.parametrize("trigger", sorted(TRIGGERS))
@pytest.mark.parametrize("outcome", list(MessageOutcome))
def test_every_trigger_carries_out_every_outcome(
    outcome: MessageOutcome,
    trigger: str,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setattr(NotFoundError, "on_message", outcome)

    assert _observe(trigger, NotFoundError("order", "o-1"), monkeypatch, caplog) is outcome


@pytest.mark.parametrize("trigger", sorted(TRIGGERS))
def test_anything_else_is_retried(
    trigger: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    error = RuntimeError("a bug")

    assert _observe(trigger, error, monkeypatch, caplog) is MessageOutcome.RETRY


def test_a_parked_fulfillment_message_carries_the_poison_reason(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from shared.services.fulfillment import PoisonMessageError, PoisonReason

    parking = _Parking()
    error = PoisonMessageError(PoisonReason.UNKNOWN_ORDER, "order 'o-1' does not exist")

    _fulfillment(monkeypatch, error, parking)

    [(_, reason, description)] = parking.kept
    assert (reason, description) == ("UnknownOrder", "order 'o-1' does not exist")
