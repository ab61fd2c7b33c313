"""Cold-start cost of indexing the app, against importing ``azure.functions`` alone.

Goal: indexing the app costs at most 1.5x ``import azure.functions``, so every Flex Consumption
instance that starts serves its first request about as fast as an empty app would.

Each sample is a fresh interpreter; the time is measured inside it with ``time.perf_counter``
around the work only, so interpreter start-up is excluded:

- (a) ``import azure.functions``;
- (b) the worker's own init and metadata requests on this repository (loads the binding
  registry, imports ``function_app``, calls ``app.get_functions()``, checks every function with
  ``Registry.add_indexed_function``), as in tests/fixtures/worker_indexing.py.

In both, the worker library (``azure_functions_runtime``) and an event loop exist before the clock
starts, as they do in Azure when the host's init request arrives; its own import time is shown
but not counted. One unmeasured warm-up pair fills bytecode and file caches, then (a) and (b)
alternate in pairs (order flipped every pair) so load from other processes on this machine hits
both alike; medians and p10/p90 are reported. The processes get no app settings, so nothing here
needs the local stack.

The script also lists which heavy packages (Azure SDKs, pydantic, OpenTelemetry, ...) are loaded
once the app is indexed, and which of them ``import azure.functions`` alone does not load, so an
eager import that slows every cold start is obvious.

Usage (from the repository root)::

    .venv/bin/python benchmarks/cold_start.py [--runs 15 | --quick] [--json] [--fail-on-miss]

``--quick`` measures 5 processes per variant (noisier); ``--figures-out`` writes the figure
for the benchmark table (``python -m benchmarks``) as JSON instead of printing the table line.

Exit code 0 whether the goal is met or missed (it reports; it is not a test), 1 on a miss with
``--fail-on-miss``, 2 when a measured process fails (for example the app cannot be indexed).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from benchmarks.table import Figure

REPOSITORY_ROOT = Path(__file__).resolve().parents[1]
GOAL_RATIO = 1.5
MINIMUM_RUNS = 10
DEFAULT_RUNS = 15
QUICK_RUNS = 5
CHILD_TIMEOUT_SECONDS = 120

# Runs inside each fresh interpreter. Everything before the first perf_counter() is set-up that
# Azure's worker has also done before it indexes the app.
_CHILD_SOURCE = """
import asyncio, json, sys, time
from pathlib import Path
repository = Path({repository!r})
sys.path.insert(0, str(repository))
worker_started = time.perf_counter()
import azure_functions_runtime
worker_import_seconds = time.perf_counter() - worker_started
from tests.fixtures import worker_indexing
loop = asyncio.new_event_loop()
functions = 0
if {variant!r} == "a":
    started = time.perf_counter()
    import azure.functions
    seconds = time.perf_counter() - started
else:
    worker_indexing.prepare_process_for(repository)
    started = time.perf_counter()
    report = worker_indexing.run_worker_indexing(repository, loop)
    seconds = time.perf_counter() - started
    failure = report.load_failure()
    if failure is not None:
        sys.stderr.write(failure + "\\n" + (report.stack_trace or ""))
        sys.exit(3)
    functions = len(report.functions)
print(json.dumps({{
    "seconds": seconds,
    "worker_import_seconds": worker_import_seconds,
    "functions": functions,
    "watched_modules": list(worker_indexing.loaded_watched_modules()),
    "module_count": len(sys.modules),
}}))
"""


@dataclass
class Series:
    label: str
    seconds: list[float] = field(default_factory=list)
    worker_import_seconds: list[float] = field(default_factory=list)
    last_sample: dict[str, Any] = field(default_factory=dict)

    def add(self, sample: dict[str, Any]) -> None:
        self.seconds.append(float(sample["seconds"]))
        self.worker_import_seconds.append(float(sample["worker_import_seconds"]))
        self.last_sample = sample

    def summary(self) -> dict[str, Any]:
        deciles = statistics.quantiles(self.seconds, n=10, method="inclusive")
        return {
            "label": self.label,
            "median_ms": _ms(statistics.median(self.seconds)),
            "p10_ms": _ms(deciles[0]),
            "p90_ms": _ms(deciles[-1]),
            "samples_ms": [_ms(s) for s in self.seconds],
            "worker_import_median_ms": _ms(statistics.median(self.worker_import_seconds)),
            "module_count": self.last_sample.get("module_count"),
        }


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 2)


def run_child(variant: str) -> dict[str, Any]:
    """One fresh interpreter measuring ``variant`` ("a" or "b"); returns its figures."""
    from benchmarks.fresh_process import last_json_line, run_python
    from tests.fixtures.worker_indexing import clean_environment

    source = _CHILD_SOURCE.format(repository=str(REPOSITORY_ROOT), variant=variant)
    output = run_python(
        ["-c", source],
        what=f"measuring ({variant})",
        timeout=CHILD_TIMEOUT_SECONDS,
        env=clean_environment(),
    )
    return last_json_line(output)


def measure(runs: int) -> tuple[Series, Series]:
    baseline = Series("(a) import azure.functions")
    app = Series("(b) import function_app + worker indexing")
    run_child("a")  # warm-up: bytecode and file caches, not counted
    run_child("b")
    for index in range(runs):
        order = ("a", "b") if index % 2 == 0 else ("b", "a")
        for variant in order:
            (baseline if variant == "a" else app).add(run_child(variant))
    return baseline, app


def build_result(baseline: Series, app: Series, runs: int) -> dict[str, Any]:
    ratio = statistics.median(app.seconds) / statistics.median(baseline.seconds)
    paired = statistics.median(b / a for a, b in zip(baseline.seconds, app.seconds, strict=True))
    baseline_modules = set(baseline.last_sample["watched_modules"])
    app_modules = list(app.last_sample["watched_modules"])
    return {
        "runs": runs,
        "a": baseline.summary(),
        "b": app.summary(),
        "ratio": round(ratio, 3),
        "paired_ratio_median": round(paired, 3),
        "goal_ratio": GOAL_RATIO,
        "verdict": "PASS" if ratio <= GOAL_RATIO else "MISS",
        "functions_indexed": app.last_sample["functions"],
        "heavy_modules_at_index_time": app_modules,
        "heavy_modules_beyond_azure_functions": [
            m for m in app_modules if m not in baseline_modules
        ],
    }


def print_report(result: dict[str, Any]) -> None:
    a, b = result["a"], result["b"]
    print(f"Cold start: {result['runs']} fresh processes each, interleaved; times in ms")
    print(f"{'':44}{'median':>8}{'p10':>8}{'p90':>8}")
    for series in (a, b):
        print(
            f"{series['label']:44}{series['median_ms']:8.1f}"
            f"{series['p10_ms']:8.1f}{series['p90_ms']:8.1f}"
        )
    print(
        f"worker library import before both (not counted): {a['worker_import_median_ms']:.1f}"
        f" / {b['worker_import_median_ms']:.1f}"
    )
    print(
        f"ratio b/a (medians): {result['ratio']:.2f}   goal <= {result['goal_ratio']:.2f}   "
        f"{result['verdict']}   (median of paired ratios {result['paired_ratio_median']:.2f})"
    )
    print(f"functions indexed: {result['functions_indexed']}")
    print(f"modules loaded: (a) {a['module_count']}, (b) {b['module_count']}")
    heavy = result["heavy_modules_at_index_time"]
    beyond = result["heavy_modules_beyond_azure_functions"]
    print(f"heavy packages loaded at index time: {', '.join(heavy) or 'none'}")
    print(f"  of which azure.functions alone does not load: {', '.join(beyond) or 'none'}")


def figures(result: dict[str, Any]) -> list[Figure]:
    """The table line: indexing the app beside ``import azure.functions`` alone."""
    from benchmarks.table import Figure

    return [
        Figure(
            "cold start: index app vs import azure.functions",
            result["b"]["median_ms"],
            result["a"]["median_ms"],
            "ms",
            result["goal_ratio"],
        )
    ]


def _runs(value: str) -> int:
    runs = int(value)
    if runs < MINIMUM_RUNS:
        raise argparse.ArgumentTypeError(f"at least {MINIMUM_RUNS} runs give a stable median")
    return runs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--runs", type=_runs, default=None, help="processes per variant")
    parser.add_argument("--quick", action="store_true", help=f"{QUICK_RUNS} processes per variant")
    parser.add_argument("--figures-out", type=Path, default=None, help="write the figure as JSON")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    parser.add_argument(
        "--fail-on-miss", action="store_true", help="exit 1 when the goal is missed"
    )
    args = parser.parse_args(argv)
    sys.path.insert(0, str(REPOSITORY_ROOT))
    from benchmarks.fresh_process import MeasurementFailedError

    runs = args.runs or (QUICK_RUNS if args.quick else DEFAULT_RUNS)
    try:
        baseline, app = measure(runs)
    except (MeasurementFailedError, subprocess.TimeoutExpired) as exc:
        print(f"cold-start benchmark failed: {exc}", file=sys.stderr)
        return 2
    result = build_result(baseline, app, runs)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print_report(result)
        from benchmarks.table import report

        report(figures(result), args.figures_out)
    return 1 if args.fail_on_miss and result["verdict"] == "MISS" else 0


if __name__ == "__main__":
    sys.exit(main())
