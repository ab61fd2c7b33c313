"""Every benchmark still runs and prints its whole table, so the bench code cannot rot.

Each module runs alone in its quickest mode (the 1,000,000-row import is left to
``make bench``) against its own local stack and host; the test checks that every expected
figure is printed with numbers and a ratio that agrees with them. No timing is asserted:
benchmarks report figures, tests do not judge speed.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.table import ParsedLine, parse

pytestmark = pytest.mark.integration

REPO_ROOT = Path(__file__).resolve().parents[2]
MODULE_TIMEOUT_SECONDS = 120

COST_OPERATIONS = (
    "POST order",
    "GET order",
    "list page",
    "cancel",
    "payment webhook",
    "PUT inventory",
    "PUT inventory, new SKU",
    "imported row",
)
EXPECTED_ROWS: dict[str, tuple[list[str], list[str]]] = {
    "brownout": (
        ["--quick", "--hang", "3", "--clients", "6"],
        [
            *(
                f"hang: {operation} p99 {when}"
                for operation in ("GET order", "payment webhook")
                for when in ("until the circuit opens", "with the circuit open")
            ),
            "hang: GET /api/health p99 during the hang",
            "hang: resume -> first 200 GET order",
            "hang: requests lost",
            "hang: messages lost or duplicated in effect",
        ],
    ),
    # module: (its quickest options, the figures it must print)
    "cold_start": (["--quick"], ["cold start: index app vs import azure.functions"]),
    "first_request": (
        ["--quick", "--runs", "2"],
        ["cold start: first GET order vs raw read_item"],
    ),
    "http_api": (
        ["--quick", "--duration", "0.5"],
        [
            f"{operation}: {figure}"
            for operation, call in (("GET order", "read_item"), ("POST order", "create_item"))
            for figure in (
                f"requests/s via host vs {call}",
                f"p50 via host vs {call}",
                f"p99 via host vs {call}",
                f"handler p50 vs {call} p50",
            )
        ],
    ),
    "auth": (
        ["--quick", "--calls", "50"],
        [
            "GET order: handler p50 with vs without token check",
            "GET order: handler CPU p50 with vs without token check",
            "bearer token: first-sight validation p50 (cached keys)",
        ],
    ),
    "import_throughput": (
        ["--quick"],
        [
            "import 10,000 rows: rows/s vs csv.reader",
            "import 10,000 rows: peak RSS vs csv.reader",
        ],
    ),
    "import_host_memory": (
        ["--quick"],
        ["host RSS growth: 20 MiB upload", "host RSS growth: 100,000-row import"],
    ),
    "scale": (
        [
            *("--quick", "--reservations", "32", "--fulfilments", "16", "--orders", "40"),
            *("--rows", "2000", "--probes", "1"),
        ],
        [
            "hot SKU, 16 reservers: reservations/s",
            "hot SKU: lost-race retries per reservation",
            "hot SKU: Cosmos requests per reserved line",
            "fulfillment: Cosmos requests per order",
            "fulfillment: paid -> fulfilled p50 (service)",
            "fulfillment: paid -> fulfilled p95 (service)",
            "40 orders, one SKU: largest item in its partition",
            "import 2,000 rows: run item at the end",
            "import, 2-line orders: publishes per 1,000 orders",
            "import, 1-line orders: publishes per 1,000 orders",
            "log records per readiness probe",
            "log records per order lifecycle",
        ],
    ),
    "cost": (
        ["--quick", "--rows", "100"],
        [
            f"{operation}: {counted}"
            for operation in COST_OPERATIONS
            for counted in ("Cosmos requests", "Event Grid publishes")
        ],
    ),
}


def run_benchmark(module: str, options: list[str]) -> str:
    completed = subprocess.run(
        [sys.executable, "-m", f"benchmarks.{module}", *options],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=MODULE_TIMEOUT_SECONDS,
        check=False,
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr
    return completed.stdout


def assert_consistent(row: ParsedLine) -> None:
    assert row.value >= 0, row
    assert row.floor >= 0, row
    if row.floor == 0:
        assert row.ratio is None, row
        return
    assert row.ratio is not None, row
    # Rates compare the other way round: the floor's rate over the app's.
    expected = row.floor / row.value if row.unit.endswith("/s") else row.value / row.floor
    # The table rounds the value and floor it prints; the ratio must still agree with them.
    assert row.ratio == pytest.approx(expected, rel=0.02, abs=0.01), row


@pytest.mark.parametrize("module", sorted(EXPECTED_ROWS))
def test_benchmark_prints_every_figure_with_numbers(module: str) -> None:
    options, expected = EXPECTED_ROWS[module]
    table = parse(run_benchmark(module, options))
    assert sorted(table) == sorted(expected)
    for name in expected:
        assert_consistent(table[name])


def test_runner_collects_the_modules_figures_into_one_table() -> None:
    completed = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--quick", "--only", "import_throughput"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=MODULE_TIMEOUT_SECONDS,
        check=False,
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr
    table = parse(completed.stdout)
    assert sorted(table) == sorted(EXPECTED_ROWS["import_throughput"][1])
    assert "[imports]" in completed.stdout
