"""Runs the scenarios in order, timing each and turning its outcome into a printed line."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable

from smoke.results import Outcome, Result, ScenarioFailedError, ScenarioSkippedError
from smoke.scenarios import Context


def run_one(name: str, scenario: Callable[[Context], str], context: Context) -> Result:
    started = time.monotonic()
    try:
        summary = scenario(context)
    except ScenarioSkippedError as skipped:
        return Result(name, Outcome.SKIP, time.monotonic() - started, str(skipped))
    except ScenarioFailedError as failed:
        return Result(name, Outcome.FAIL, time.monotonic() - started, str(failed))
    except OSError as error:  # connection refused, DNS, TLS, timeouts
        reason = f"cannot reach {context.client.base_url}: {type(error).__name__}: {error}"
        return Result(name, Outcome.FAIL, time.monotonic() - started, reason)
    except Exception as error:  # an unexpected answer fails the scenario, not the run
        reason = f"unexpected {type(error).__name__}: {error}"
        return Result(name, Outcome.FAIL, time.monotonic() - started, reason)
    return Result(name, Outcome.PASS, time.monotonic() - started, summary)


def run_all(
    scenarios: Iterable[tuple[str, Callable[[Context], str]]],
    context: Context,
    emit: Callable[[str], None],
) -> list[Result]:
    results = []
    for name, scenario in scenarios:
        result = run_one(name, scenario, context)
        emit(result.line())
        results.append(result)
    return results
