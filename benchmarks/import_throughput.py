"""Import throughput and peak memory, from ``benchmarks/imports.py``, beside a bare
``csv.reader`` pass.

    .venv/bin/python -m benchmarks.import_throughput [--quick]

Runs ``benchmarks/imports.py --rows 10000`` and (without ``--quick``) ``--rows 1000000`` as
subprocesses and reads these lines of their output (the format this module relies on):

    bare csv.reader:              <rows> rows/s (...)
    parse + validate + chunk:     <rows> rows/s (...)
    peak RSS, <rows> rows:        <MiB> MiB           (one line per file size measured)
    queue messages per 10,000 rows: <count>

The rows/s floor is that same run's bare ``csv.reader`` pass over the same file. The peak
memory floor is measured here: a fresh interpreter that imports the pipeline's module (as the
measured process does before its baseline) and reads the same file, generated beforehand with
``imports.generate``, with a bare ``csv.reader``; both sides read their peak the same way
(``imports.peak_rss_mib``), carry the same code and differ only in what the pass holds.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import tempfile
from pathlib import Path

from benchmarks.fresh_process import last_json_line, run_python
from benchmarks.table import Figure, add_arguments, report

REPOSITORY_ROOT = Path(__file__).resolve().parents[1]
IMPORTS_SCRIPT = REPOSITORY_ROOT / "benchmarks" / "imports.py"
SMALL_FILE_ROWS = 10_000
LARGE_FILE_ROWS = 1_000_000
HUGE_FILE_ROWS = 10_000_000
# The file pass's memory must not follow the file size: 10,000,000 rows within 16 MiB of
# 1,000,000 (today the order-key fingerprints still grow with the file: docs/IMPORTS.md).
SIZE_INDEPENDENCE_GOAL_MIB = 16.0
RUN_TIMEOUT_SECONDS = 900
# benchmarks/imports.py's own goals: throughput within 3x the bare pass; memory that does not
# follow the file size (it allows 64 MiB between 10,000 and 1,000,000 rows; here, 64 MiB over a
# bare pass of the same file, which holds nothing).
THROUGHPUT_GOAL = 3.0
MEMORY_EXCESS_GOAL_MIB = 64.0

_NUMBER = r"([\d,]+(?:\.\d+)?)"
_BARE = re.compile(rf"^bare csv\.reader:\s+{_NUMBER} rows/s", re.MULTILINE)
_PIPELINE = re.compile(rf"^parse \+ validate \+ chunk:\s+{_NUMBER} rows/s", re.MULTILINE)
_PEAK = re.compile(rf"^peak RSS, {_NUMBER} rows:\s+{_NUMBER} MiB", re.MULTILINE)
_MESSAGES = re.compile(rf"^queue messages per 10,000 rows:\s+{_NUMBER}", re.MULTILINE)


class OutputFormatError(RuntimeError):
    """benchmarks/imports.py printed something this module cannot read."""


def _value(text: str) -> float:
    return float(text.replace(",", ""))


def _find(pattern: re.Pattern[str], output: str, what: str) -> float:
    found = pattern.search(output)
    if found is None:
        raise OutputFormatError(f"no {what} line in benchmarks/imports.py output:\n{output}")
    return _value(found.group(1))


def run_imports_script(rows: int) -> str:
    return run_python(
        [str(IMPORTS_SCRIPT), "--rows", str(rows)],
        what=f"benchmarks/imports.py --rows {rows}",
        timeout=RUN_TIMEOUT_SECONDS,
    )


def peak_rss_by_rows(output: str) -> dict[int, float]:
    return {int(_value(rows)): _value(mib) for rows, mib in _PEAK.findall(output)}


def bare_memory_child(path: Path) -> None:
    """In a fresh interpreter: the measured process's set-up, then a bare csv.reader pass."""
    import csv

    import shared.services.import_files  # noqa: F401 - the code the measured process loads
    from benchmarks.imports import peak_rss_mib

    with path.open(encoding="utf-8", newline="") as source:
        for _ in csv.reader(source):
            pass
    print(json.dumps({"peak_mib": peak_rss_mib()}))


def bare_peak_mib(rows: int) -> float:
    """The floor's peak memory, measured the way benchmarks/imports.py measures the pass: the
    file is generated here, so the fresh process's high-water mark is its read alone."""
    from benchmarks.imports import generate

    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "bench.csv"
        generate(path, rows)
        output = run_python(
            ["-m", "benchmarks.import_throughput", "--bare-memory-child", str(path)],
            what="the bare csv.reader memory pass",
            timeout=RUN_TIMEOUT_SECONDS,
        )
    return float(last_json_line(output)["peak_mib"])


def size_figures(rows: int, output: str) -> list[Figure]:
    label = f"import {rows:,} rows"
    peaks = peak_rss_by_rows(output)
    if rows not in peaks:
        raise OutputFormatError(f"no 'peak RSS, {rows:,} rows' line in:\n{output}")
    return [
        Figure(
            f"{label}: rows/s vs csv.reader",
            _find(_PIPELINE, output, "'parse + validate + chunk'"),
            _find(_BARE, output, "'bare csv.reader'"),
            "rows/s",
            THROUGHPUT_GOAL,
            higher_is_better=True,
        ),
        Figure(
            f"{label}: peak RSS vs csv.reader",
            peaks[rows],
            bare_peak_mib(rows),
            "MiB",
            MEMORY_EXCESS_GOAL_MIB,
            "excess",
        ),
    ]


def file_pass_peaks(sizes: list[int]) -> dict[int, float]:
    """Peak RSS (MiB) of the file pass alone, each size in a fresh process (imports.py)."""
    from benchmarks.imports import measure_memory

    with tempfile.TemporaryDirectory() as directory:
        return {rows: float(measure_memory(Path(directory), rows)["peak_mib"]) for rows in sizes}


def run(quick: bool) -> list[Figure]:
    sizes = [SMALL_FILE_ROWS] if quick else [SMALL_FILE_ROWS, LARGE_FILE_ROWS]
    result: list[Figure] = []
    for rows in sizes:
        print(f"imports: benchmarks/imports.py --rows {rows:,}", flush=True)
        output = run_imports_script(rows)
        messages = _find(_MESSAGES, output, "'queue messages per 10,000 rows'")
        print(f"  queue messages per 10,000 rows: {messages:g}", flush=True)
        result.extend(size_figures(rows, output))
    if not quick:
        print(f"imports: file pass peak RSS, {HUGE_FILE_ROWS:,} rows", flush=True)
        peaks = file_pass_peaks([LARGE_FILE_ROWS, HUGE_FILE_ROWS])
        result.append(
            Figure(
                f"file pass peak RSS: {HUGE_FILE_ROWS:,} vs {LARGE_FILE_ROWS:,} rows",
                peaks[HUGE_FILE_ROWS],
                peaks[LARGE_FILE_ROWS],
                "MiB",
                SIZE_INDEPENDENCE_GOAL_MIB,
                "excess",
            )
        )
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    add_arguments(parser)
    parser.add_argument("--bare-memory-child", type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.bare_memory_child is not None:
        bare_memory_child(args.bare_memory_child)
        return 0
    report(run(args.quick), args.figures_out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
