"""Fresh interpreters for the benchmarks: a figure that includes start-up, or one that must not
share a process with another (peak memory), is measured in a Python process of its own."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

REPOSITORY_ROOT = Path(__file__).resolve().parents[1]


class MeasurementFailedError(RuntimeError):
    """A measured process failed; its figures would be meaningless."""


def run_python(
    args: list[str], *, what: str, timeout: float, env: Mapping[str, str] | None = None
) -> str:
    """The standard output of ``python <args>`` run from the repository; raises
    MeasurementFailedError with its standard error when it fails (``what`` names it)."""
    completed = subprocess.run(
        [sys.executable, *args],
        cwd=REPOSITORY_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if completed.returncode != 0:
        raise MeasurementFailedError(
            f"{what} failed with exit {completed.returncode}:\n{completed.stderr}"
        )
    return completed.stdout


def last_json_line(output: str) -> dict[str, Any]:
    """The figures a measuring child prints as JSON on its last line."""
    result: dict[str, Any] = json.loads(output.strip().splitlines()[-1])
    return result
