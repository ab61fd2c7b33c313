"""CSV judged row by row: records (RFC 4180, through the csv module), the header, the checks
of each record, grouping consecutive rows into orders, and each order judged by the API's
models, which also word every rejection. The reference the column-at-a-time way
(:mod:`.csv_columns`) is tested against, and the way for every block that is not plain."""

from __future__ import annotations

import csv
import itertools
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Final

from pydantic import ValidationError

from shared.models import MAX_LINES
from shared.services.import_files.formats import CSV_COLUMNS, CSV_HEADER, FileRejectedError
from shared.services.import_files.rows import (
    FORMULA_PREFIXES,
    MAX_FIELD_CHARS,
    ImportedOrder,
    OrderInput,
    Verdicts,
    has_surrogates,
    model_reason,
    text_problem,
    validate_orders,
)
from shared.services.import_files.text import MAX_LINE_CHARS, LineFeed

# CSV orders are validated in batches of about this many rows (one pydantic call a batch).
BATCH_ROWS: Final = 1024
_ORDER_TOO_LONG: Final = f"the order has more than {MAX_LINES} lines"

# (start row, fields or None, CSV error)
CsvRecord = tuple[int, list[str] | None, str | None]


def csv_records(reader: Iterator[list[str]], first_line: int = 1) -> Iterator[CsvRecord]:
    """(start row, fields or None, CSV error) for every non-blank record; ``first_line`` is the
    file line number of the reader's first line."""
    offset = first_line - 1
    end = getattr(reader, "line_num", 0)
    while True:
        try:
            for record in reader:
                start, end = end + 1, getattr(reader, "line_num", end + 1)
                if not record or (len(record) == 1 and not record[0].strip()):
                    continue  # a blank line is not a row
                yield start + offset, record, None
        except csv.Error as error:
            # The reader goes on with the next line after an error.
            start, end = end + 1, getattr(reader, "line_num", end + 1)
            yield start + offset, None, f"malformed CSV: {error}"
            continue
        return


def check_header(first: CsvRecord | None) -> None:
    if first is None:
        raise FileRejectedError("the file is empty")
    _, header, error = first
    if header is None:
        raise FileRejectedError(f"the header is not valid CSV: {error}")
    names = tuple(cell.strip().lower() for cell in header)
    if names != CSV_HEADER:
        shown = ",".join(cell[:40] for cell in header[:10])
        raise FileRejectedError(f"wrong header {shown!r}: expected {','.join(CSV_HEADER)!r}")


def _row_problem(record: list[str]) -> str | None:
    """Checks of one well-formed CSV record before the models see it."""
    for index in (0, 1, 2, 5):
        problem = text_problem(CSV_HEADER[index], record[index])
        if problem is not None:
            return problem
    for index in (3, 4):
        value = record[index]
        if len(value) > 32:
            return f"{CSV_HEADER[index]} is longer than 32 characters"
        if not value.isascii() and has_surrogates(value):
            return f"{CSV_HEADER[index]} is not valid UTF-8"
    quantity = record[3].strip()
    if not (quantity.isascii() and quantity.isdigit()):
        return f"quantity {record[3][:32]!r} is not a whole number"
    return None


def _all_rows_pass(records: list[list[str]]) -> bool:
    """True only if :func:`_row_problem` finds nothing in any of ``records`` (six fields
    each): the same checks, done on whole columns at once. False means "check each row";
    it may be a false alarm (a field containing a newline followed by a formula prefix)."""
    if not records:
        return True
    ids, customers, skus, quantities, prices, currencies = zip(*records, strict=True)
    texts = (ids, customers, skus, currencies)
    text = "\n".join(itertools.chain.from_iterable(texts))
    numbers = (quantities, prices)
    stripped = [quantity.strip() for quantity in quantities]
    digits = "".join(stripped)
    return (
        text.isascii()  # ASCII: no surrogates, no non-ASCII digits
        and "\x00" not in text
        and not text.startswith(FORMULA_PREFIXES)
        and not any(f"\n{prefix}" in text for prefix in FORMULA_PREFIXES)
        and max(map(len, itertools.chain.from_iterable(texts))) <= MAX_FIELD_CHARS
        and max(map(len, itertools.chain.from_iterable(numbers))) <= 32
        and "".join(itertools.chain.from_iterable(numbers)).isascii()
        and all(stripped)
        and digits.isascii()
        and digits.isdigit()
    )


def _order_ends_before(line: str | None, group: _CsvGroup) -> bool:
    """Whether the next line surely starts another order than ``group`` (or there is none).
    Quoted and blank lines cannot be told without parsing them: read on."""
    if line is None:
        return True
    if '"' in line or not line.strip():
        return False
    return line.split(",", 1)[0] != group.external_id


@dataclass(slots=True)
class _CsvGroup:
    """The rows of one order (consecutive rows with the same external_id)."""

    external_id: str | None = None
    rows: list[int] = field(default_factory=list)  # file rows, in file order
    records: list[list[str]] = field(default_factory=list)  # [] for a row rejected as read
    bad: dict[int, str] = field(default_factory=dict)  # row -> why it is rejected

    def add_bad(self, row: int, reason: str) -> None:
        self.rows.append(row)
        self.records.append([])
        self.bad.setdefault(row, reason)


class CsvRows:
    """Judges CSV records one by one, then the orders they make with the API's models, in
    batches of about :data:`BATCH_ROWS` rows (one validation call a batch)."""

    __slots__ = ("_batch", "_batch_rows", "_verdicts")

    def __init__(self, verdicts: Verdicts) -> None:
        self._verdicts = verdicts
        self._batch: list[_CsvGroup] = []  # ended orders not yet judged
        self._batch_rows = 0

    def judge_lines(self, feed: LineFeed, lines: int) -> None:
        """Judge the records of the next ``lines`` lines one by one (more lines when a record or
        an order goes on after them), then the orders they make with the models."""
        started = feed.taken
        group = _CsvGroup()
        counts = self._verdicts.counts
        records = csv_records(csv.reader(feed.lines(), strict=False), first_line=started + 1)
        for start, record, error in records:
            counts.rows_read += 1
            if record is None:
                group = self._switch_group(group, "")
                group.add_bad(start, error or "malformed CSV")
            else:
                external_id = record[0]
                if external_id != group.external_id:
                    group = self._switch_group(group, external_id)
                if len(group.rows) > MAX_LINES:
                    # Refused already (too many lines): its further rows are not kept, so one
                    # endless order cannot fill the memory.
                    self._verdicts.reject(start, external_id, _ORDER_TOO_LONG)
                elif len(record) != CSV_COLUMNS:
                    reason = (
                        f"the line is longer than {MAX_LINE_CHARS} characters or contains NUL"
                        if any("\x00" in cell for cell in record)
                        else f"expected {CSV_COLUMNS} columns, found {len(record)}"
                    )
                    group.add_bad(start, reason)
                else:
                    group.rows.append(start)
                    group.records.append(record)
            if feed.taken - started >= lines and _order_ends_before(feed.peek(), group):
                break
        self._switch_group(group, "")
        self._finish_batch()

    def _switch_group(self, group: _CsvGroup, external_id: str) -> _CsvGroup:
        """End ``group`` (it joins the batch) and start the group of ``external_id``."""
        if group.rows:
            self._batch.append(group)
            self._batch_rows += len(group.rows)
            if self._batch_rows >= BATCH_ROWS:
                self._finish_batch()
        return _CsvGroup(external_id)

    def _finish_batch(self) -> None:
        """Judge the batch's orders in file order: row checks, order checks, then one
        validation call for the orders that are left."""
        batch, self._batch, self._batch_rows = self._batch, [], 0
        if not batch:
            return
        if not _all_rows_pass([record for group in batch for record in group.records if record]):
            for group in batch:
                for row, record in zip(group.rows, group.records, strict=True):
                    problem = _row_problem(record) if record else None
                    if problem is not None:
                        group.bad.setdefault(row, problem)
        verdicts = [self._judge(group) for group in batch]
        results = iter(validate_orders([v for v in verdicts if not isinstance(v, list)]))
        for group, verdict in zip(batch, verdicts, strict=True):
            external_id = group.external_id or ""
            if isinstance(verdict, list):
                for row, reason in verdict:
                    self._verdicts.reject(row, external_id, reason)
                continue
            result = next(results)
            rows = tuple(group.rows)
            if isinstance(result, ValidationError):
                bad_row, reason = model_reason(result, rows, csv_names=True)
                for row in rows:
                    self._verdicts.reject(
                        row,
                        external_id,
                        reason
                        if row == bad_row
                        else f"order rejected with its invalid row {bad_row}",
                    )
                continue
            valid_id, customer_id, draft = result
            self._verdicts.accept(ImportedOrder(customer_id, valid_id, draft, rows))

    def _judge(self, group: _CsvGroup) -> list[tuple[int, str]] | OrderInput:
        """The rejected rows of an order with their reasons, or the order to validate."""
        external_id = group.external_id or ""
        rows = group.rows
        new = self._verdicts.add_key(external_id) if external_id else True
        if (
            external_id
            and new
            and self._verdicts.journal is not None
            and self._verdicts.owns(external_id)
        ):
            self._verdicts.journal.add(rows[0], external_id)
        if group.bad:
            first_bad = min(group.bad)  # the first bad row: rows are in file order
            fallback = f"order rejected with its invalid row {first_bad}"
            return [(row, group.bad.get(row, fallback)) for row in rows]
        if not new:
            return [
                (
                    row,
                    "split order: rows of this external_id appeared earlier and are not "
                    "consecutive (duplicate or split order)",
                )
                for row in rows
            ]
        records = group.records
        first = records[0]
        for row, record in zip(rows[1:], records[1:], strict=True):
            mismatch = (
                "customer_id"
                if record[1] != first[1]
                else "currency"
                if record[5] != first[5]
                else None
            )
            if mismatch is not None:
                return [
                    (
                        other,
                        f"{mismatch} differs between the lines of this order (row {row})"
                        if other == row
                        else f"order rejected with its invalid row {row}",
                    )
                    for other in rows
                ]
        if len(records) > 1:
            skus = [record[2] for record in records]
            if len(set(skus)) != len(skus):
                return [(row, "the order lists the same sku twice") for row in rows]
        lines = [
            {"sku": record[2], "quantity": int(record[3]), "unitPrice": record[4].strip()}
            for record in records
        ]
        return external_id, first[1], {"lines": lines, "currency": first[5]}

    # ------------------------------------------------------------------------ JSON Lines
