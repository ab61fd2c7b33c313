"""``python -m benchmarks.timed_host [localdev.host options]``: the local host, unchanged, with
the app's own handler time recorded.

The host runs every sync function on its thread pool through the worker's ``run_sync_func``;
wrapping that one call times exactly the app's handler (parse, call the service, map the
result) in the worker thread, without the host's routing, logging or thread hand-over. The
host's ``Duration=`` log line rounds to whole milliseconds, too coarse for a 2 ms handler.

Each invocation is kept in memory as (start on the system-wide monotonic clock, seconds), so a
benchmark can keep only the invocations inside its measuring window; at exit (SIGTERM from
the benchmark) they are written as JSON to the file named by ``$ORDERFLOW_HANDLER_TIMINGS``:
``{"get_order": [[started, seconds], ...], ...}``.
"""

from __future__ import annotations

import atexit
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

TIMINGS_FILE_SETTING = "ORDERFLOW_HANDLER_TIMINGS"

_timings: dict[str, list[tuple[float, float]]] = {}


def _install() -> None:
    from azure_functions_runtime.utils import executor

    run_sync_func = executor.run_sync_func

    def timed_run_sync_func(invocation_id: str, context: Any, func: Any, params: Any) -> Any:
        started_at = time.monotonic()
        started = time.perf_counter()
        try:
            return run_sync_func(invocation_id, context, func, params)
        finally:
            seconds = time.perf_counter() - started
            # list.append is atomic; setdefault on an existing key too.
            _timings.setdefault(context.function_name, []).append((started_at, seconds))

    # The invoker imports run_sync_func from this module on every call, so this takes effect.
    executor.run_sync_func = timed_run_sync_func


def _write(path: Path) -> None:
    path.write_text(json.dumps(_timings))


def main() -> int:
    target = os.environ.get(TIMINGS_FILE_SETTING)
    if not target:
        print(f"{TIMINGS_FILE_SETTING} must name the file for the timings", file=sys.stderr)
        return 2
    _install()
    atexit.register(_write, Path(target))
    from localdev.host.__main__ import main as host_main

    return host_main(sys.argv[1:])


def read_timings(path: Path) -> dict[str, list[tuple[float, float]]]:
    raw: dict[str, list[list[float]]] = json.loads(path.read_text())
    return {name: [(start, seconds) for start, seconds in rows] for name, rows in raw.items()}


if __name__ == "__main__":
    sys.exit(main())
