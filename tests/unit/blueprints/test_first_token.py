"""The first protected request of an instance: the route's service is made on a second thread
while the token is validated (``blueprints._problems._service_beside_first_token``), and the
request still waits for both, validates everything and runs the handler only when authorized.

The validator is the real one (PyJWT, real RS256 keys) with the issuer's documents served from
memory, as in tests/unit/shared/auth/test_tokens.py; events, not timings, prove the overlap: the
issuer's answer waits until the service has started, which only a concurrent start allows.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from typing import Any

import azure.functions as func
import pytest

from blueprints._problems import api_handler
from shared.auth import tokens
from shared.auth.policy import ANY_TOKEN
from shared.auth.tokens import SigningKeys, TokenValidator
from shared.errors import DependencyUnavailableError
from shared.observability import InvocationContext
from tests.unit.shared.auth.test_tokens import AUDIENCE, ISSUER, RSA_KEY, Issuer, sign

WAIT_SECONDS = 5.0


class SlowIssuer(Issuer):
    """An issuer whose answers wait until ``release`` is set (or WAIT_SECONDS pass)."""

    def __init__(self) -> None:
        super().__init__((RSA_KEY, "k1"))
        self.release = threading.Event()
        self.released_in_time: list[bool] = []

    def fetch(self, url: str) -> Any:
        self.released_in_time.append(self.release.wait(WAIT_SECONDS))
        return super().fetch(url)


@pytest.fixture
def issuer(monkeypatch: pytest.MonkeyPatch) -> SlowIssuer:
    issuer = SlowIssuer()
    validator = TokenValidator(ISSUER, AUDIENCE, keys=SigningKeys(ISSUER, fetch=issuer.fetch))
    monkeypatch.setattr(tokens, "token_validator", lambda: validator)
    return issuer


class Service:
    """A provider: records the thread of each load and call; ``fail`` makes every call raise."""

    def __init__(self, on_call: Callable[[], None] = lambda: None) -> None:
        self.threads: list[str] = []
        self.steps: list[tuple[str, str]] = []
        self.on_call = on_call
        self.fail = False

    def load(self) -> None:
        self.steps.append(("load", threading.current_thread().name))

    def __call__(self) -> object:
        self.threads.append(threading.current_thread().name)
        self.steps.append(("make", threading.current_thread().name))
        self.on_call()
        if self.fail:
            raise DependencyUnavailableError("Cosmos DB", "unreachable")
        return self


def _route(service: Service, ran: list[str]) -> Callable[[func.HttpRequest], func.HttpResponse]:
    def handler(req: func.HttpRequest, scope: InvocationContext) -> func.HttpResponse:
        service()  # as a handler calls its provider
        ran.append(threading.current_thread().name)
        return func.HttpResponse("{}", status_code=200)

    wrapped = api_handler(ANY_TOKEN, service=service)(handler)
    return lambda req: wrapped(req, None)  # type: ignore[arg-type]


def _get(token: str) -> func.HttpRequest:
    return func.HttpRequest(
        "GET",
        "http://127.0.0.1/api/v1/inventory/SKU-1",
        headers={"Authorization": f"Bearer {token}"},
        route_params={"sku": "SKU-1"},
        body=b"",
    )


def _first_service_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "orderflow-first-service"]


def test_the_first_token_is_validated_while_the_service_is_made_on_another_thread(
    issuer: SlowIssuer,
) -> None:
    service = Service(on_call=issuer.release.set)
    ran: list[str] = []
    call = _route(service, ran)

    response = call(_get(sign()))

    assert response.status_code == 200
    # The issuer answered only once the service had started: the two ran side by side.
    assert issuer.released_in_time == [True, True]
    caller_thread = threading.current_thread().name
    assert service.threads == ["orderflow-first-service", caller_thread]
    # Its modules were loaded on the caller's thread before the other thread made it.
    assert service.steps[:2] == [("load", caller_thread), ("make", "orderflow-first-service")]
    assert ran == [caller_thread]
    assert _first_service_threads() == []  # joined before the handler ran

    # Keys read: later requests validate on the caller's thread alone.
    call(_get(sign()))
    assert service.threads[2:] == [caller_thread]


def test_a_bad_first_token_is_still_401_and_the_handler_never_runs(issuer: SlowIssuer) -> None:
    service = Service(on_call=issuer.release.set)
    service.fail = True  # and the service cannot be made either: still the token's 401
    ran: list[str] = []

    response = _route(service, ran)(_get(sign(kid="unknown")))

    assert response.status_code == 401
    assert "unknown" not in response.get_body().decode()
    assert ran == []
    assert service.threads == ["orderflow-first-service"]
    assert _first_service_threads() == []


def test_a_service_that_cannot_be_made_is_reported_by_the_handler(issuer: SlowIssuer) -> None:
    service = Service(on_call=issuer.release.set)
    service.fail = True
    ran: list[str] = []

    response = _route(service, ran)(_get(sign()))

    assert response.status_code == 503
    assert json.loads(response.get_body())["status"] == 503
    # Made twice: beside the token (failure left to the handler), then by the handler itself.
    assert service.threads == ["orderflow-first-service", threading.current_thread().name]
    assert ran == []
