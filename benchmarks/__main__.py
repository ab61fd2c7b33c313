"""``python -m benchmarks [--quick] [--only cold_start,http_api,...]``: every benchmark, one table.

Runs each benchmark module in a fresh process (``python -m benchmarks.<module>``; their own
progress lines appear as they go), collects their figures and prints one table: each figure
beside its floor measured in the same run, the ratio, the goal and PASS or MISS.

Exit code 0 whether goals are met or missed (benchmarks report, tests assert); 1 when a
benchmark failed to produce its figures; 130 on Ctrl-C. Each module stops the stack and
host it started, also when interrupted.
"""

from __future__ import annotations

import argparse
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.local_app import stop_on_sigterm
from benchmarks.table import Figure, header, line, read_figures

REPOSITORY_ROOT = Path(__file__).resolve().parents[1]
# In the order the table shows them, with the section each belongs to.
SECTIONS = {
    "cold_start": "cold start",
    "first_request": "cold start",
    "http_api": "HTTP API under load",
    "auth": "bearer tokens",
    "import_throughput": "imports",
    "import_host_memory": "imports",
    "import_resume": "imports",
    "cost": "cost per operation",
    "scale": "items, contention and log volume (Cosmos DB, issue 13)",
    "brownout": "brownout (Cosmos DB hang)",
}
MODULES = tuple(SECTIONS)
STOP_GRACE_SECONDS = 30


def machine_description() -> str:
    cpu = "unknown CPU"
    memory = "unknown memory"
    try:
        for entry in Path("/proc/cpuinfo").read_text().splitlines():
            if entry.startswith("model name"):
                cpu = entry.split(":", 1)[1].strip()
                break
        for entry in Path("/proc/meminfo").read_text().splitlines():
            if entry.startswith("MemTotal:"):
                memory = f"{int(entry.split()[1]) / 2**20:.1f} GiB"
                break
    except OSError:
        pass
    load = ", ".join(f"{value:.2f}" for value in os.getloadavg())
    return (
        f"{os.cpu_count()} cores ({cpu}), {memory}, Python {platform.python_version()}, "
        f"load average {load}"
    )


def render_sections(sections: dict[str, list[Figure]]) -> str:
    rows = [header(), "-" * len(header())]
    for title, figures in sections.items():
        rows.append(f"[{title}]")
        rows.extend(line(figure) for figure in figures)
    return "\n".join(rows)


def run_module(module: str, quick: bool, figures_file: Path) -> int:
    """Run one benchmark module; on Ctrl-C or SIGTERM let it stop what it started."""
    command = [sys.executable, "-m", f"benchmarks.{module}", "--figures-out", str(figures_file)]
    if quick:
        command.append("--quick")
    print(f"\n== {module}{' (quick)' if quick else ''}", flush=True)
    process = subprocess.Popen(command, cwd=REPOSITORY_ROOT)
    try:
        return process.wait()
    except KeyboardInterrupt:
        # Ctrl-C reached the module too (same process group): it is stopping what it started.
        _wait_or_kill(process)
        raise
    except SystemExit:
        process.send_signal(signal.SIGTERM)
        _wait_or_kill(process)
        raise


def _wait_or_kill(process: subprocess.Popen[bytes]) -> None:
    try:
        process.wait(timeout=STOP_GRACE_SECONDS)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks", description=__doc__.split("\n\n")[0] if __doc__ else None
    )
    parser.add_argument("--quick", action="store_true", help="short runs (noisier figures)")
    parser.add_argument(
        "--only",
        default=",".join(MODULES),
        help=f"comma-separated modules to run (default: all of {', '.join(MODULES)})",
    )
    args = parser.parse_args(argv)
    selected = [name.strip() for name in args.only.split(",") if name.strip()]
    unknown = sorted(set(selected) - set(MODULES))
    if unknown:
        parser.error(f"unknown benchmark(s): {', '.join(unknown)}")
    stop_on_sigterm()

    started = time.monotonic()
    description = machine_description()
    print(f"Orderflow benchmarks on {description}", flush=True)
    figures: dict[str, list[Figure]] = {}
    failed: list[str] = []
    try:
        with tempfile.TemporaryDirectory(prefix="orderflow-bench-") as directory:
            for module in (name for name in MODULES if name in selected):
                figures_file = Path(directory) / f"{module}.json"
                code = run_module(module, args.quick, figures_file)
                if code != 0 or not figures_file.exists():
                    failed.append(f"{module} (exit {code})")
                    continue
                figures.setdefault(SECTIONS[module], []).extend(read_figures(figures_file))
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return 130
    elapsed = time.monotonic() - started
    print(f"\nOrderflow benchmarks{' (quick)' if args.quick else ''}: {description}")
    print("ratio = app cost / floor cost (for rates: floor rate / app rate); lower is better\n")
    print(render_sections(figures))
    verdicts = [figure.verdict for section in figures.values() for figure in section]
    print(
        f"\n{verdicts.count('PASS')} PASS, {verdicts.count('MISS')} MISS, "
        f"{len(failed)} failed, in {elapsed:.0f} s"
    )
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
