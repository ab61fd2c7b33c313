"""The perimeter smoke scenarios against a small real HTTP server that answers as Easy Auth and
the gateway do (401 without a token, 200 with it, 429 after a limit) or gets it wrong."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar

import pytest

from smoke.http import Client
from smoke.perimeter import anonymous_is_refused, authorised_is_accepted, gateway_rate_limit
from smoke.results import ScenarioFailedError, ScenarioSkippedError
from smoke.scenarios import Context
from smoke.storage import StorageAccess

TOKEN = "test-token"  # pragma: allowlist secret  (a fake bearer token)


class Gateway(BaseHTTPRequestHandler):
    limit: ClassVar[int] = 5
    calls: ClassVar[int] = 0
    problem: ClassVar[bool] = True
    retry_after: ClassVar[str | None] = "7"

    def log_message(self, format: str, *args: object) -> None:
        return

    def _send(self, status: int, body: object, content_type: str, **headers: str) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        for name, value in headers.items():
            self.send_header(name.replace("_", "-"), value)
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        if self.headers.get("Authorization") != f"Bearer {TOKEN}":
            self._send(401, {"status": 401}, "application/problem+json", WWW_Authenticate="Bearer")
            return
        type(self).calls += 1
        if type(self).calls > type(self).limit:
            retry_after = type(self).retry_after
            headers = {"Retry_After": retry_after} if retry_after is not None else {}
            if type(self).problem:
                body = {"type": "about:blank", "title": "Too Many Requests", "status": 429}
                self._send(429, body, "application/problem+json", **headers)
            else:
                self._send(429, {"message": "slow down"}, "application/json", **headers)
            return
        self._send(200, {"items": [], "continuation": None}, "application/json")


@pytest.fixture
def gateway() -> Iterator[str]:
    Gateway.calls, Gateway.problem, Gateway.retry_after = 0, True, "7"
    server = ThreadingHTTPServer(("127.0.0.1", 0), Gateway)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def context(url: str, *, token: str | None = TOKEN, limit: int | None = 5) -> Context:
    return Context(
        client=Client(url, token, request_timeout=5),
        webhook_secret="unused",  # pragma: allowlist secret
        storage=StorageAccess(None, None),
        timeout=5,
        rate_limit_calls=limit,
    )


def test_anonymous_call_gets_401(gateway: str) -> None:
    assert anonymous_is_refused(context(gateway)).startswith("401")


def test_authorised_call_gets_200(gateway: str) -> None:
    assert authorised_is_accepted(context(gateway)) == "200 with the token"


def test_a_wrong_token_fails_the_authorised_scenario(gateway: str) -> None:
    with pytest.raises(ScenarioFailedError, match="expected 200, got 401"):
        authorised_is_accepted(context(gateway, token="wrong"))


def test_the_limit_answers_429_within_the_bounded_loop(gateway: str) -> None:
    summary = gateway_rate_limit(context(gateway))
    assert summary == "429 after 6 calls (limit 5), Retry-After 7 s"


def test_no_429_within_the_bound_fails(gateway: str) -> None:
    Gateway.limit = 1000
    try:
        with pytest.raises(ScenarioFailedError, match="no 429 within 20 calls"):
            gateway_rate_limit(context(gateway, limit=5))
        assert Gateway.calls == 20, "the loop is bounded by twice the limit plus ten"
    finally:
        Gateway.limit = 5


@pytest.mark.parametrize(
    ("problem", "retry_after", "reason"),
    [(False, "7", "not application/problem"), (True, None, "without a Retry-After")],
)
def test_a_429_must_be_problem_json_with_retry_after(
    gateway: str, problem: bool, retry_after: str | None, reason: str
) -> None:
    Gateway.problem, Gateway.retry_after = problem, retry_after
    with pytest.raises(ScenarioFailedError, match=reason):
        gateway_rate_limit(context(gateway))


def test_without_a_gateway_the_limit_scenario_is_skipped(gateway: str) -> None:
    with pytest.raises(ScenarioSkippedError):
        gateway_rate_limit(context(gateway, limit=None))
