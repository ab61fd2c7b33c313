"""JSON Lines judged a line at a time: one order object a line, the ``POST`` body plus
``externalId`` and ``customerId``, validated by the API's models."""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from pydantic import ValidationError

from shared.services.import_files.rows import (
    ImportedOrderIn,
    Verdicts,
    has_surrogates,
    imported_order,
    model_reason,
    text_problem,
)
from shared.services.import_files.text import (
    MAX_LINE_CHARS,
    OVERLONG,
    LineOffsets,
    bounded_lines,
    sized_lines,
)


def scan_jsonl(
    verdicts: Verdicts,
    text: io.TextIOWrapper,
    first_row: int = 1,
    offsets: LineOffsets | None = None,
    safe_point: Callable[[int], None] | None = None,
) -> None:
    """``first_row``: the file line number of the text's first line (a resumed pass);
    ``offsets`` records where each line starts; ``safe_point(row)`` after each line."""
    if offsets is None:
        _scan_lines(verdicts, enumerate(bounded_lines(text), start=first_row), safe_point)
        return
    _scan_lines(verdicts, _recorded(text, first_row, offsets), safe_point)


def _recorded(
    text: io.TextIOWrapper, first_row: int, offsets: LineOffsets
) -> Iterator[tuple[int, str]]:
    position = -1
    for row, (line, size) in enumerate(sized_lines(text), start=first_row):
        if position < 0:
            position = offsets.first_byte  # known once the first block was read (a BOM)
        offsets.add(position, [line], [size])
        position += size
        yield row, line


def _scan_lines(
    verdicts: Verdicts,
    lines: Iterable[tuple[int, str]],
    safe_point: Callable[[int], None] | None,
) -> None:
    counts = verdicts.counts
    for row, line in lines:
        if safe_point is not None and row > 1:
            safe_point(row)  # every line before this one is judged
        if not line.strip():
            continue
        counts.rows_read += 1
        if line is OVERLONG:
            verdicts.reject(row, "", f"the line is longer than {MAX_LINE_CHARS} characters")
            continue
        if has_surrogates(line):
            verdicts.reject(row, "", "the line is not valid UTF-8")
            continue
        try:
            value = json.loads(line)
        except (ValueError, RecursionError):
            verdicts.reject(row, "", "the line is not valid JSON")
            continue
        if not isinstance(value, dict):
            verdicts.reject(row, "", "the line is not a JSON object")
            continue
        raw_id = value.get("externalId")
        external_id = raw_id[:64] if isinstance(raw_id, str) else ""
        problem = _json_text_problem(value)
        if problem is not None:
            verdicts.reject(row, external_id, problem)
            continue
        try:
            order = ImportedOrderIn.model_validate(value)
        except ValidationError as error:
            verdicts.reject(row, external_id, model_reason(error, (row,), csv_names=False)[1])
            continue
        key = f"{order.customer_id}\n{order.external_id}"
        if not verdicts.add_key(key):
            verdicts.reject(
                row,
                external_id,
                "duplicate: this customerId and externalId appeared earlier in the file",
                key=key,
            )
            continue
        if verdicts.journal is not None and verdicts.owns(key):
            verdicts.journal.add(row, key)
        verdicts.accept(imported_order(order, (row,)), key=key)


def _json_text_problem(value: dict[str, Any]) -> str | None:
    for name in ("externalId", "customerId", "currency"):
        text = value.get(name)
        if isinstance(text, str):
            problem = text_problem(name, text)
            if problem is not None:
                return problem
    lines = value.get("lines")
    if isinstance(lines, list):
        for index, line in enumerate(lines[:200]):
            if isinstance(line, dict) and isinstance(line.get("sku"), str):
                problem = text_problem(f"lines/{index}/sku", line["sku"])
                if problem is not None:
                    return problem
    return None
