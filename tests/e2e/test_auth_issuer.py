"""The app and its token issuer over time, end to end: key rotation at the issuer while the app
runs, and the issuer going down with a warm and with a cold key cache. The stack's real local
issuer is rotated (new signing key) and stopped; the app is not told about either.

These tests stop services, so they run on a stack of their own (``isolated_app``).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from localdev.stack import IDENTITY
from localdev.tokens import request_token
from shared.auth.tokens import UNKNOWN_KID_COOLDOWN_SECONDS
from tests.fixtures.app import REPO_ROOT, SAMPLE_SETTINGS, IsolatedApp, app_environment
from tests.fixtures.host import HostProcess, HttpResult, run_local_host

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

SKU = "SKU-ISSUER"
PATH = f"/api/v1/inventory/{SKU}"
REALM_ONLY = 'Bearer realm="orderflow"'


def _read(host: HostProcess, token: str) -> HttpResult:
    return host.request("GET", PATH, token=token)


def _kid(token: str) -> str:
    import base64

    header = token.split(".", 1)[0]
    return str(json.loads(base64.urlsafe_b64decode(header + "=" * (-len(header) % 4)))["kid"])


@pytest.fixture(scope="module")
def app(isolated_app: IsolatedApp) -> IsolatedApp:
    stock = isolated_app.host.request(
        "PUT",
        PATH,
        body=b'{"available": 4}',
        headers={"Content-Type": "application/json"},
        token=request_token(isolated_app.stack.issuer_url, roles="Inventory.ReadWrite"),
    )
    assert stock.status == 200, stock.body
    return isolated_app


def test_key_rotation_while_the_app_runs(app: IsolatedApp) -> None:
    stack, host = app.stack, app.host
    issuer = stack.issuer_url
    old = request_token(issuer)
    assert _read(host, old).status == 200  # the app has the issuer's keys now

    stack.rotate_issuer_key()
    new = request_token(issuer)
    assert _kid(new) != _kid(old)
    # New tokens work at once: their unknown kid makes the app read the JWKS again.
    assert _read(host, new).status == 200
    # Old tokens keep working while the old key is published (until they expire).
    assert _read(host, old).status == 200

    stack.retire_old_issuer_keys()
    # The app drops the old key at its next JWKS read (hourly, or the next unknown kid).
    bogus_kid = _with_kid(new, "not-a-published-kid")
    refused = _read(host, bogus_kid)
    assert refused.status == 401, refused.body  # this one made the app read the JWKS
    after = _read(host, old)
    assert after.status == 401, after.body
    assert 'error="invalid_token"' in (after.header("www-authenticate") or "")
    assert _read(host, new).status == 200
    host._token = None  # the fixture's default token was signed with the retired key


def _with_kid(token: str, kid: str) -> str:
    import base64

    header, payload, signature = token.split(".")
    decoded = json.loads(base64.urlsafe_b64decode(header + "=" * (-len(header) % 4)))
    changed = base64.urlsafe_b64encode(json.dumps({**decoded, "kid": kid}).encode())
    return f"{changed.rstrip(b'=').decode()}.{payload}.{signature}"


def test_issuer_down_with_a_warm_cache_still_serves(app: IsolatedApp) -> None:
    stack, host = app.stack, app.host
    token = request_token(stack.issuer_url, sub="warm")
    assert _read(host, token).status == 200
    stack.stop_service(IDENTITY)
    try:
        for _ in range(3):
            answer = _read(host, token)
            assert answer.status == 200, answer.body
        # A token the cache cannot judge (an unknown kid) gets 503 while the issuer is down,
        # not 401: the key may be new. (After any earlier cooldown has passed.)
        _wait(UNKNOWN_KID_COOLDOWN_SECONDS + 0.5)
        unknown = host.request("GET", PATH, token=_with_kid(token, "rotated-while-down"))
        assert unknown.status == 503, unknown.body
        assert _read(host, token).status == 200  # known keys still serve
    finally:
        stack.start_service(IDENTITY)


def test_issuer_down_with_a_cold_cache_is_503_with_retry_after(
    app: IsolatedApp, tmp_path: Path
) -> None:
    stack = app.stack
    token = request_token(stack.issuer_url, sub="cold")
    stack.stop_service(IDENTITY)
    try:
        # A new instance (cold cache) while the issuer is unreachable.
        with run_local_host(
            REPO_ROOT,
            tmp_path / "cold-host.log",
            env=app_environment(stack, None),
            args=["--settings", str(SAMPLE_SETTINGS)],
        ) as cold:
            answer = _read(cold, token)
            assert answer.status == 503, answer.body
            assert int(answer.header("retry-after") or 0) > 0
            assert answer.header("www-authenticate") is None  # not the client's fault
            problem = answer.json()
            assert problem["type"] == "urn:orderflow:problem:unavailable"
            assert problem["traceId"]
            assert _read(cold, token).status == 503  # within the cooldown: no new attempt

            stack.start_service(IDENTITY)  # the same keys (kept in the stack's directory)
            _wait(UNKNOWN_KID_COOLDOWN_SECONDS + 0.5)
            recovered = _read(cold, token)
            assert recovered.status == 200, recovered.body
    finally:
        if IDENTITY not in stack.pids():
            stack.start_service(IDENTITY)


def _wait(seconds: float) -> None:
    import time

    time.sleep(seconds)
