"""Dead-letter and poison-queue watch: counting and metrics."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import pytest

from shared import metrics
from shared.services.deadletters import count_dead_letters, watch_dead_letters


class Peeker:
    """A dead-letter sub-queue holding the given sequence numbers (sparse, like a real one)."""

    def __init__(self, sequence_numbers: Sequence[int]) -> None:
        self.sequence_numbers = sorted(sequence_numbers)
        self.calls = 0

    def peek(self, from_sequence_number: int, max_count: int) -> Sequence[int]:
        self.calls += 1
        eligible = [n for n in self.sequence_numbers if n >= from_sequence_number]
        return eligible[:max_count]


def test_dead_letters_are_counted_in_pages() -> None:
    peeker = Peeker([3, 5, *range(100, 1100)])

    depth = count_dead_letters(peeker, "fulfillment", page_size=250)

    assert (depth.count, depth.capped) == (1002, False)
    assert peeker.calls == 6  # 5 pages and the empty answer that ends the scan


def test_dead_letter_count_is_capped() -> None:
    depth = count_dead_letters(Peeker(range(1, 501)), "fulfillment", page_size=100, limit=250)

    assert (depth.count, depth.capped, depth.display) == (250, True, ">=250")


def test_a_broker_going_backwards_is_an_error_not_a_loop() -> None:
    class Backwards:
        def peek(self, from_sequence_number: int, max_count: int) -> Sequence[int]:
            return [1]

    with pytest.raises(RuntimeError, match="before the requested"):
        count_dead_letters(Backwards(), "fulfillment")


def test_watch_warns_with_the_metric_as_log_fields(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="orderflow"):
        watch_dead_letters(Peeker([7, 8]), "fulfillment")
        watch_dead_letters(Peeker([]), "fulfillment")

    warning, info = [r for r in caplog.records if getattr(r, "metric", None)]
    assert warning.levelno == logging.WARNING
    assert (warning.metric, warning.value, warning.queue) == (  # type: ignore[attr-defined]
        metrics.DEAD_LETTER_DEPTH,
        2,
        "fulfillment",
    )
    assert info.levelno == logging.INFO
    assert info.value == 0  # type: ignore[attr-defined]
