"""Scenario outcomes and how they are printed."""

from __future__ import annotations

import enum
from dataclasses import dataclass


class Outcome(enum.StrEnum):
    PASS = "PASS"  # noqa: S105 - an outcome, not a password
    FAIL = "FAIL"
    SKIP = "SKIP"


class ScenarioFailedError(Exception):
    """A check did not hold; the message is the reason printed."""


class ScenarioSkippedError(Exception):
    """The scenario cannot run with the options given; the message says why."""


@dataclass(frozen=True)
class Result:
    name: str
    outcome: Outcome
    seconds: float
    reason: str

    def line(self) -> str:
        if self.outcome is Outcome.SKIP:
            return f"{self.name}: SKIP ({self.reason})"
        return f"{self.name}: {self.outcome} ({self.seconds:.2f} s) {self.reason}"
