"""Perimeter scenarios: a protected route refuses an anonymous call with 401 and serves an
authorised one (Easy Auth, the gateway and the app all agree), and, with the gateway, its
per-caller rate limit answers 429 with ``Retry-After`` as RFC 9457 problem+json within a bounded
number of calls."""

from __future__ import annotations

import json

from smoke.http import Response
from smoke.results import ScenarioFailedError, ScenarioSkippedError
from smoke.scenarios import API, Context, expect

PROBLEM_JSON = "application/problem+json"
# The loop may spend what earlier scenarios did not use of the window, and a margin for calls
# that land in the next one: never more than this many times the limit.
LOOP_FACTOR = 2
LOOP_MARGIN = 10


def _protected_path(context: Context) -> str:
    # Listing a customer's orders: cheap, read-only, protected (Orders.ReadWrite.All here).
    return f"{API}/customers/smoke-perimeter-{context.run_id}/orders?limit=1"


def anonymous_is_refused(context: Context) -> str:
    response = context.client.request("GET", _protected_path(context), authenticated=False)
    expect(response, 401, "GET orders without a token")
    challenge = response.header("WWW-Authenticate") or ""
    return f"401 without a token (challenge: {challenge or 'none'})"


def authorised_is_accepted(context: Context) -> str:
    if not context.client.bearer_token:
        raise ScenarioSkippedError("no token: give SMOKE_TOKEN or client credentials")
    response = context.client.request("GET", _protected_path(context))
    expect(response, 200, "GET orders with the token", "the token needs Orders.ReadWrite.All")
    items = response.json().get("items")
    if items != []:
        raise ScenarioFailedError(f"a new customer should have no orders, got {items!r}")
    return "200 with the token"


def _retry_after(response: Response) -> int:
    value = response.header("Retry-After") or ""
    if not value.isdigit():
        raise ScenarioFailedError(f"429 without a Retry-After in seconds: {value!r}")
    return int(value)


def _check_problem(response: Response) -> None:
    content_type = (response.header("Content-Type") or "").split(";")[0].strip()
    if content_type != PROBLEM_JSON:
        raise ScenarioFailedError(f"429 as {content_type!r}, not {PROBLEM_JSON}")
    try:
        problem = response.json()
    except json.JSONDecodeError:
        raise ScenarioFailedError(f"429 body is not JSON: {response.excerpt()}") from None
    if not isinstance(problem, dict) or problem.get("status") != 429 or not problem.get("title"):
        raise ScenarioFailedError(f"429 body is not a problem document: {response.excerpt()}")


def gateway_rate_limit(context: Context) -> str:
    limit = context.rate_limit_calls
    if not limit:
        raise ScenarioSkippedError("no gateway limit given (RATE_LIMIT_CALLS)")
    budget = limit * LOOP_FACTOR + LOOP_MARGIN
    path = _protected_path(context)
    for attempt in range(1, budget + 1):
        response = context.client.request("GET", path)
        if response.status == 429:
            retry_after = _retry_after(response)
            _check_problem(response)
            return f"429 after {attempt} calls (limit {limit}), Retry-After {retry_after} s"
        expect(response, 200, f"GET orders, call {attempt} of at most {budget}")
    raise ScenarioFailedError(f"no 429 within {budget} calls (limit {limit})")


# After the pipeline scenarios: the rate-limit loop uses up the caller's window, so it runs last.
PERIMETER_SCENARIOS = (
    ("anonymous-refused", anonymous_is_refused),
    ("authorised-accepted", authorised_is_accepted),
    ("gateway-rate-limit", gateway_rate_limit),
)
