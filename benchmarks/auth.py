"""Bearer tokens: what validation costs per request, in this process, the way the host calls
the app (a real ``func.HttpRequest`` into the function object, as benchmarks/cost.py does).

    .venv/bin/python -m benchmarks.auth [--quick] [--calls 400]

Starts its own stack (free ports; stopped at the end), places an order, then times
``GET /api/v1/customers/{c}/orders/{id}`` with a shop backend's token from the stack's issuer
(validated and authorized: the API as it runs) and the same handler with the same request with
the token check left out (``api_handler``'s handler, wrapped for an anonymous route), in
alternating rounds of the same run; and the validation alone of a token seen for the first
time (every check and the signature; warm key cache). The API side sends the same token each
time, as a client does for the token's lifetime, so after the first call the validator
recognises it (``TokenValidator.validate``'s memory of verified tokens). The first call
(PyJWT import, discovery and JWKS) is outside the measured rounds: it is part of the
cold-start figure of benchmarks/first_request.py.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks.app_calls import WEBHOOK_SECRET, AppApi
from benchmarks.local_app import (
    configure_this_process,
    quiet_local_tls_warnings,
    running_stack,
    stop_on_sigterm,
)
from benchmarks.table import Figure, add_arguments, report

# The token check may add a fifth to a point read's handler time; on its own it should stay
# well under a millisecond (an RS256 verification is ~0.05 ms on these machines).
HANDLER_GOAL_RATIO = 1.25
VALIDATION_GOAL_MS = 1.0
ROUND = 5  # calls per side before switching: fine interleaving evens out load drift


def _timed(
    call: Callable[[], Any], count: int, into: list[float], cpu: list[float] | None = None
) -> None:
    """Wall-clock milliseconds of each call into ``into``; this thread's CPU milliseconds into
    ``cpu`` (the handler and its Cosmos call run on this thread: CPU time is what the check
    adds, unaffected by other processes on a shared machine)."""
    for _ in range(count):
        started, cpu_started = time.perf_counter(), time.thread_time()
        call()
        into.append((time.perf_counter() - started) * 1000)
        if cpu is not None:
            cpu.append((time.thread_time() - cpu_started) * 1000)


Samples = dict[str, list[float]]


def measure(calls: int) -> Samples:
    import azure.functions as func

    from blueprints import http_api
    from blueprints._problems import _wrap
    from shared.auth.policy import Access
    from shared.auth.tokens import token_validator

    quiet_local_tls_warnings()
    with (
        tempfile.TemporaryDirectory(prefix="orderflow-bench-auth-") as directory,
        running_stack(Path(directory)) as stack,
    ):
        configure_this_process({**stack.app_settings(), "PAYMENT_WEBHOOK_SECRET": WEBHOOK_SECRET})
        api = AppApi()
        order = api.post_order("bench-auth")
        guarded = http_api.get_order.build().get_user_function()
        unguarded = _wrap(guarded.handler, Access.anonymous("the benchmark's baseline"))
        customer, order_id = order["customerId"], order["id"]
        request = func.HttpRequest(
            "GET",
            f"http://127.0.0.1/api/v1/customers/{customer}/orders/{order_id}",
            headers=api.authorization,
            route_params={"customerId": customer, "orderId": order_id},
            params={},
            body=b"",
        )
        token = api.authorization["Authorization"].removeprefix("Bearer ")

        def with_token() -> None:
            assert guarded(request, None).status_code == 200  # noqa: S101 - a benchmark check

        def without_token() -> None:
            assert unguarded(request, None).status_code == 200  # type: ignore[arg-type]  # noqa: S101

        def validate() -> None:  # a token seen for the first time: every check, no memory
            token_validator().validate(token, cached=False)

        for call in (with_token, without_token, validate):  # warm-up, not measured
            _timed(call, ROUND, [])
        samples: Samples = {
            name: [] for name in ("with", "without", "with cpu", "without cpu", "validate")
        }
        for number in range(max(1, calls // ROUND)):
            sides = ("with", "without") if number % 2 == 0 else ("without", "with")
            for side in sides:
                call = with_token if side == "with" else without_token
                _timed(call, ROUND, samples[side], samples[f"{side} cpu"])
            _timed(validate, ROUND, samples["validate"])
    return samples


def run(calls: int) -> list[Figure]:
    samples = measure(calls)
    p50 = {name: statistics.median(values) for name, values in samples.items()}
    with_ms, without_ms, validate_ms = p50["with"], p50["without"], p50["validate"]
    print(
        f"GET order handler, {len(samples['with'])} calls each: p50 {with_ms:.3f} ms with the "
        f"token check, {without_ms:.3f} ms without (CPU {p50['with cpu']:.3f} / "
        f"{p50['without cpu']:.3f} ms); validation alone p50 {validate_ms:.3f} ms",
        flush=True,
    )
    return [
        Figure(
            "GET order: handler p50 with vs without token check",
            with_ms,
            without_ms,
            "ms",
            HANDLER_GOAL_RATIO,
        ),
        Figure(
            "GET order: handler CPU p50 with vs without token check",
            p50["with cpu"],
            p50["without cpu"],
            "ms",
            HANDLER_GOAL_RATIO,
        ),
        Figure(
            "bearer token: first-sight validation p50 (cached keys)",
            validate_ms,
            0.0,
            "ms",
            VALIDATION_GOAL_MS,
            goal_on="value",
        ),
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    add_arguments(parser)
    parser.add_argument("--calls", type=int, default=None, help="measured calls per side")
    args = parser.parse_args(argv)
    stop_on_sigterm()
    calls = args.calls or (200 if args.quick else 1000)
    report(run(calls), args.figures_out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
