"""Partner import files: a streaming reader that validates every row and packs valid orders
into queue-sized chunks. Pure: no I/O, no SDKs; the pipeline feeds it blocks of bytes.

- Formats: CSV (``external_id,customer_id,sku,quantity,unit_price,currency``; consecutive rows
  with the same ``external_id`` are the lines of one order) and JSON Lines (one order a line:
  the ``POST`` body plus ``externalId`` and ``customerId``).
- Memory is bounded by the largest line (:data:`MAX_LINE_CHARS`), the report buffer, one
  batch of CSV orders (about :data:`BATCH_ROWS` rows, validated with one pydantic call) and the
  set of order keys seen (8 bytes per order, see :class:`FingerprintSet`), never by the file.
- Whole-file rejections (:class:`FileRejectedError`) are decided on the first block, before any
  order is emitted: empty, binary, UTF-16, not UTF-8, wrong CSV header, header only. Anything
  later is a row-level rejection, so a file is never half-imported silently.
- Row numbers are the file's 1-based line numbers where the record starts (the CSV header is
  line 1), so a partner finds the row in any editor, also with quoted newlines.
"""

from __future__ import annotations

import codecs
import csv
import hashlib
import io
import itertools
import json
from array import array
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from enum import StrEnum
from functools import cache
from json.encoder import encode_basestring
from typing import Any, Final

from pydantic import Field, TypeAdapter, ValidationError

from shared.models import Identifier, OrderDraft

CSV_HEADER: Final = ("external_id", "customer_id", "sku", "quantity", "unit_price", "currency")
CSV_COLUMNS: Final = len(CSV_HEADER)
# A valid row is well under 300 characters; longer lines are refused without being held.
MAX_LINE_CHARS: Final = 16 * 1024
# Identifiers and SKUs are at most 64 characters, numbers far less.
MAX_FIELD_CHARS: Final = 256
SNIFF_BYTES: Final = 64 * 1024
# Storage queue messages are at most 64 KiB *after* base64 (4/3): 48,000 JSON bytes encode to
# 64,000 characters, leaving room for nothing else the queue counts.
MAX_CHUNK_BYTES: Final = 48_000
MAX_QUEUE_MESSAGE_BYTES: Final = 64 * 1024
FORMULA_PREFIXES: Final = ("=", "+", "-", "@")
_OVERLONG: Final = "\x00\n"  # stands in for a line longer than MAX_LINE_CHARS
# CSV orders are validated in batches of about this many rows (one pydantic call a batch).
BATCH_ROWS: Final = 1024
_JSON_TO_CSV: Final = {
    "externalId": "external_id",
    "customerId": "customer_id",
    "unitPrice": "unit_price",
}


class FileFormat(StrEnum):
    CSV = "csv"
    JSONL = "jsonl"


def file_format_for(name: str) -> FileFormat | None:
    lowered = name.lower()
    if lowered.endswith(".csv"):
        return FileFormat.CSV
    if lowered.endswith(".jsonl"):
        return FileFormat.JSONL
    return None


class FileRejectedError(Exception):
    """The whole file cannot be read; ``reason`` says why (shown in the status and report)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class ImportedOrderIn(OrderDraft):
    """One imported order: the API's order body plus the partner's ids (a JSON Lines line)."""

    external_id: Identifier = Field(alias="externalId")
    customer_id: Identifier = Field(alias="customerId")


@dataclass(frozen=True, slots=True)
class Rejection:
    row: int
    external_id: str
    reason: str


@dataclass(frozen=True, slots=True)
class ImportedOrder:
    customer_id: str
    external_id: str
    draft: OrderDraft
    rows: tuple[int, ...]  # file rows this order came from (CSV: one per line)

    def fragment(self) -> str:
        """The order as it travels in a chunk: ``[customerId, externalId, currency, rows,
        [[sku, quantity, unitPrice], ...]]`` (compact: more orders per message).

        The same text as ``json.dumps(..., separators=(",", ":"), ensure_ascii=False)``,
        written directly: strings are quoted by the encoder ``json.dumps`` uses, numbers are
        ints."""
        quote = encode_basestring
        lines = ",".join(
            f"[{quote(line.sku)},{line.quantity},{quote(str(line.unit_price))}]"
            for line in self.draft.lines
        )
        rows = ",".join(map(str, self.rows))
        return (
            f"[{quote(self.customer_id)},{quote(self.external_id)},"
            f"{quote(self.draft.currency)},[{rows}],[{lines}]]"
        )


@dataclass(slots=True)
class ScanCounts:
    rows_read: int = 0
    accepted: int = 0
    rejected: int = 0
    orders: int = 0


class FingerprintSet:
    """Set of 64-bit key fingerprints in one flat array (open addressing): 8-16 bytes per key
    instead of ~100 for a ``set`` of strings, so a million orders cost ~16 MiB. Two different
    keys share a fingerprint with probability ~n²/2⁶⁵ (3e-8 for a million orders)."""

    __slots__ = ("_count", "_mask", "_slots")

    def __init__(self, capacity: int = 1 << 12) -> None:
        self._slots = array("Q", [0]) * capacity
        self._mask = capacity - 1
        self._count = 0

    def __len__(self) -> int:
        return self._count

    @staticmethod
    def fingerprint(key: str) -> int:
        digest = hashlib.blake2b(key.encode("utf-8", "surrogateescape"), digest_size=8).digest()
        return int.from_bytes(digest, "little") | 1  # 0 marks an empty slot

    def add(self, key: str) -> bool:
        """Add ``key``; False when it was already there."""
        value = self.fingerprint(key)
        slots, mask = self._slots, self._mask
        index = value & mask
        while True:
            current = slots[index]
            if current == 0:
                break
            if current == value:
                return False
            index = (index + 1) & mask
        slots[index] = value
        self._count += 1
        if self._count * 2 > len(slots):
            self._grow()
        return True

    def _grow(self) -> None:
        old = self._slots
        self._slots = array("Q", [0]) * (len(old) * 2)
        self._mask = len(self._slots) - 1
        slots, mask = self._slots, self._mask
        for value in old:
            if value:
                index = value & mask
                while slots[index]:
                    index = (index + 1) & mask
                slots[index] = value


class _BlockStream(io.RawIOBase):
    """A readable raw stream over an iterator of byte blocks (no copy of the whole input)."""

    def __init__(self, blocks: Iterator[bytes]) -> None:
        self._blocks = blocks
        self._pending = memoryview(b"")

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        while not self._pending:
            block = next(self._blocks, None)
            if block is None:
                return 0
            self._pending = memoryview(block)
        size = min(len(buffer), len(self._pending))
        buffer[:size] = self._pending[:size]
        self._pending = self._pending[size:]
        return size


def _sniff(blocks: Iterable[bytes]) -> Iterator[bytes]:
    """Check the start of the file and give back all of it as blocks. Raises
    FileRejectedError for files that cannot be read at all."""
    iterator = iter(blocks)
    head = b""
    exhausted = False
    while len(head) < SNIFF_BYTES:
        block = next(iterator, None)
        if block is None:
            exhausted = True
            break
        head += block
    if not head:
        raise FileRejectedError("the file is empty (0 bytes)")
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        raise FileRejectedError("the file is UTF-16; save it as UTF-8")
    if b"\x00" in head[:SNIFF_BYTES]:
        raise FileRejectedError("the file is binary, not text (it contains NUL bytes)")
    decoder = codecs.getincrementaldecoder("utf-8")("strict")
    try:
        text = decoder.decode(head[:SNIFF_BYTES], final=exhausted and len(head) <= SNIFF_BYTES)
    except UnicodeDecodeError as error:
        raise FileRejectedError(
            f"the file is not UTF-8 text (invalid byte at offset {error.start}; Latin-1 or "
            "another code page?); save it as UTF-8"
        ) from None
    if not text.lstrip("\ufeff").strip():
        raise FileRejectedError("the file is empty (only whitespace)")

    def chained() -> Iterator[bytes]:
        yield head
        yield from iterator

    return chained()


def _text(blocks: Iterator[bytes]) -> io.TextIOWrapper:
    # newline="" keeps line endings: csv needs them for quoted newlines and CRLF. Bytes that are
    # not UTF-8 after the first block become surrogates and reject their row.
    return io.TextIOWrapper(
        io.BufferedReader(_BlockStream(blocks), buffer_size=256 * 1024),
        encoding="utf-8-sig",
        errors="surrogateescape",
        newline="",
    )


def _bounded_lines(text: io.TextIOWrapper) -> Iterator[str]:
    """Lines of at most MAX_LINE_CHARS; a longer line is skipped and replaced by a marker."""
    readline = text.readline
    limit = MAX_LINE_CHARS
    while True:
        line = readline(limit)
        if not line:
            return
        if len(line) == limit and line[-1] not in "\r\n":
            while True:
                rest = readline(limit)
                if not rest or rest[-1] in "\r\n":
                    break
            yield _OVERLONG
        else:
            yield line


_Record = tuple[int, list[str] | None, str | None]


def _csv_records(reader: Iterator[list[str]]) -> Iterator[_Record]:
    """(start row, fields or None, CSV error) for every non-blank record."""
    end = getattr(reader, "line_num", 0)
    while True:
        try:
            for record in reader:
                start, end = end + 1, getattr(reader, "line_num", end + 1)
                if not record or (len(record) == 1 and not record[0].strip()):
                    continue  # a blank line is not a row
                yield start, record, None
        except csv.Error as error:
            # The reader goes on with the next line after an error.
            start, end = end + 1, getattr(reader, "line_num", end + 1)
            yield start, None, f"malformed CSV: {error}"
            continue
        return


def _check_header(first: _Record | None) -> None:
    if first is None:
        raise FileRejectedError("the file is empty")
    _, header, error = first
    if header is None:
        raise FileRejectedError(f"the header is not valid CSV: {error}")
    names = tuple(cell.strip().lower() for cell in header)
    if names != CSV_HEADER:
        shown = ",".join(cell[:40] for cell in header[:10])
        raise FileRejectedError(f"wrong header {shown!r}: expected {','.join(CSV_HEADER)!r}")


def _has_surrogates(value: str) -> bool:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _text_problem(name: str, value: str) -> str | None:
    """Checks every text field gets, beyond what the models check."""
    if len(value) > MAX_FIELD_CHARS:
        return f"{name} is longer than {MAX_FIELD_CHARS} characters"
    if "\x00" in value:
        return f"{name} contains NUL characters (or the line is too long)"
    if value.startswith(FORMULA_PREFIXES):
        return f"{name} starts with {value[0]!r} (spreadsheet formula injection)"
    if not value.isascii() and _has_surrogates(value):
        return f"{name} is not valid UTF-8"
    return None


def _row_problem(record: list[str]) -> str | None:
    """Checks of one well-formed CSV record before the models see it."""
    for index in (0, 1, 2, 5):
        problem = _text_problem(CSV_HEADER[index], record[index])
        if problem is not None:
            return problem
    for index in (3, 4):
        value = record[index]
        if len(value) > 32:
            return f"{CSV_HEADER[index]} is longer than 32 characters"
        if not value.isascii() and _has_surrogates(value):
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


@cache
def _orders_adapter() -> TypeAdapter[list[tuple[str, str, OrderDraft]]]:
    """Validates a batch of CSV orders in one call, as ``(externalId, customerId, draft)``:
    the fields of :class:`ImportedOrderIn`, so an order passes exactly when the model
    accepts it (the model, used on failures, words the reason)."""
    return TypeAdapter(list[tuple[Identifier, Identifier, OrderDraft]])


def _model_reason(
    error: ValidationError, rows: tuple[int, ...], csv_names: bool
) -> tuple[int, str]:
    """The row and a one-line reason for the first validation error."""
    first = error.errors(include_url=False)[0]
    loc = first["loc"]
    row = rows[0]
    if len(loc) >= 2 and loc[0] == "lines" and isinstance(loc[1], int) and len(rows) > 1:
        row = rows[loc[1]] if loc[1] < len(rows) else rows[0]
    message = str(first["msg"]).removeprefix("Value error, ")
    if first["type"] == "extra_forbidden":
        message = "is not a known field"
    if csv_names:
        parts = [str(part) for part in loc if not isinstance(part, int)]
        names = [_JSON_TO_CSV.get(part, part) for part in parts if part != "lines"]
        where = names[-1] if names else "order"
    else:
        where = "/".join(str(part) for part in loc) or "order"
    return row, f"{where}: {message}"


class ImportScanner:
    """Reads one file, validates every row, and hands out orders and rejections in file order.

    ``on_order`` gets each valid order, ``on_rejection`` each rejected row; :attr:`counts` always
    satisfies ``rows_read == accepted + rejected`` once :meth:`scan` returns.
    """

    def __init__(
        self,
        file_format: FileFormat,
        on_order: Callable[[ImportedOrder], None],
        on_rejection: Callable[[Rejection], None],
    ) -> None:
        self.file_format = file_format
        self._on_order = on_order
        self._on_rejection = on_rejection
        self.counts = ScanCounts()
        self._seen = FingerprintSet()
        self._batch: list[_CsvGroup] = []  # ended CSV orders not yet judged
        self._batch_rows = 0

    def scan(self, blocks: Iterable[bytes]) -> ScanCounts:
        text = _text(_sniff(blocks))
        if self.file_format is FileFormat.CSV:
            self._scan_csv(text)
        else:
            self._scan_jsonl(text)
        return self.counts

    # ------------------------------------------------------------------------ shared parts

    def _reject(self, row: int, external_id: str, reason: str) -> None:
        self.counts.rejected += 1
        self._on_rejection(Rejection(row, external_id, reason))

    def _accept(self, order: ImportedOrder) -> None:
        self.counts.accepted += len(order.rows)
        self.counts.orders += 1
        self._on_order(order)

    # ------------------------------------------------------------------------------- CSV

    def _scan_csv(self, text: io.TextIOWrapper) -> None:
        records = _csv_records(csv.reader(_bounded_lines(text), strict=False))
        _check_header(next(records, None))
        first = next(records, None)
        if first is None:
            raise FileRejectedError("the file has a header but no rows")
        group = _CsvGroup()
        counts = self.counts
        for start, record, error in itertools.chain((first,), records):
            counts.rows_read += 1
            if record is None:
                group = self._switch_group(group, "")
                group.add_bad(start, error or "malformed CSV")
                continue
            external_id = record[0]
            if external_id != group.external_id:
                group = self._switch_group(group, external_id)
            if len(record) != CSV_COLUMNS:
                reason = (
                    f"the line is longer than {MAX_LINE_CHARS} characters or contains NUL"
                    if any("\x00" in cell for cell in record)
                    else f"expected {CSV_COLUMNS} columns, found {len(record)}"
                )
                group.add_bad(start, reason)
                continue
            group.rows.append(start)
            group.records.append(record)
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
        results = iter(_validate_orders([v for v in verdicts if not isinstance(v, list)]))
        for group, verdict in zip(batch, verdicts, strict=True):
            external_id = group.external_id or ""
            if isinstance(verdict, list):
                for row, reason in verdict:
                    self._reject(row, external_id, reason)
                continue
            result = next(results)
            rows = tuple(group.rows)
            if isinstance(result, ValidationError):
                bad_row, reason = _model_reason(result, rows, csv_names=True)
                for row in rows:
                    self._reject(
                        row,
                        external_id,
                        reason
                        if row == bad_row
                        else f"order rejected with its invalid row {bad_row}",
                    )
                continue
            valid_id, customer_id, draft = result
            self._accept(ImportedOrder(customer_id, valid_id, draft, rows))

    def _judge(self, group: _CsvGroup) -> list[tuple[int, str]] | _OrderInput:
        """The rejected rows of an order with their reasons, or the order to validate."""
        external_id = group.external_id or ""
        rows = group.rows
        new = self._seen.add(external_id) if external_id else True
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

    def _scan_jsonl(self, text: io.TextIOWrapper) -> None:
        counts = self.counts
        for row, line in enumerate(_bounded_lines(text), start=1):
            if not line.strip():
                continue
            counts.rows_read += 1
            if line is _OVERLONG:
                self._reject(row, "", f"the line is longer than {MAX_LINE_CHARS} characters")
                continue
            if _has_surrogates(line):
                self._reject(row, "", "the line is not valid UTF-8")
                continue
            try:
                value = json.loads(line)
            except (ValueError, RecursionError):
                self._reject(row, "", "the line is not valid JSON")
                continue
            if not isinstance(value, dict):
                self._reject(row, "", "the line is not a JSON object")
                continue
            raw_id = value.get("externalId")
            external_id = raw_id[:64] if isinstance(raw_id, str) else ""
            problem = _json_text_problem(value)
            if problem is not None:
                self._reject(row, external_id, problem)
                continue
            try:
                order = ImportedOrderIn.model_validate(value)
            except ValidationError as error:
                self._reject(row, external_id, _model_reason(error, (row,), csv_names=False)[1])
                continue
            if not self._seen.add(f"{order.customer_id}\n{order.external_id}"):
                self._reject(
                    row,
                    external_id,
                    "duplicate: this customerId and externalId appeared earlier in the file",
                )
                continue
            self._accept(_imported(order, (row,)))


def _json_text_problem(value: dict[str, Any]) -> str | None:
    for name in ("externalId", "customerId", "currency"):
        text = value.get(name)
        if isinstance(text, str):
            problem = _text_problem(name, text)
            if problem is not None:
                return problem
    lines = value.get("lines")
    if isinstance(lines, list):
        for index, line in enumerate(lines[:200]):
            if isinstance(line, dict) and isinstance(line.get("sku"), str):
                problem = _text_problem(f"lines/{index}/sku", line["sku"])
                if problem is not None:
                    return problem
    return None


def _imported(order: ImportedOrderIn, rows: tuple[int, ...]) -> ImportedOrder:
    draft = OrderDraft.model_construct(lines=order.lines, currency=order.currency)
    return ImportedOrder(order.customer_id, order.external_id, draft, rows)


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


# (externalId, customerId, OrderDraft body): the input of the batch adapter.
_OrderInput = tuple[str, str, dict[str, Any]]
_ValidOrder = tuple[str, str, OrderDraft]


def _validate_orders(orders: list[_OrderInput]) -> list[_ValidOrder | ValidationError]:
    """Validate a batch of orders with one call; on failure, the failed orders go through
    :class:`ImportedOrderIn` one by one (its errors word the reasons) and the others through
    the batch adapter again."""
    adapter = _orders_adapter()
    try:
        return list(adapter.validate_python(orders))
    except ValidationError as error:
        failed = {loc[0] for item in error.errors(include_url=False) if (loc := item["loc"])}
    passing = [order for index, order in enumerate(orders) if index not in failed]
    try:
        valid = iter(adapter.validate_python(passing))
    except ValidationError:
        return [_validate_order(order) for order in orders]
    return [
        _validate_order(order) if index in failed else next(valid)
        for index, order in enumerate(orders)
    ]


def _validate_order(order: _OrderInput) -> _ValidOrder | ValidationError:
    external_id, customer_id, body = order
    payload = {
        "externalId": external_id,
        "customerId": customer_id,
        "currency": body["currency"],
        "lines": body["lines"],
    }
    try:
        valid = ImportedOrderIn.model_validate(payload)
    except ValidationError as error:
        return error
    imported = _imported(valid, ())
    return imported.external_id, imported.customer_id, imported.draft


# --------------------------------------------------------------------------------- chunks


@dataclass(frozen=True, slots=True)
class ChunkEnvelope:
    import_id: str
    run_id: str

    def prefix(self, number: int) -> str:
        return (
            f'{{"v":1,"importId":{json.dumps(self.import_id)},"runId":'
            f'{json.dumps(self.run_id)},"chunk":{number},"orders":['
        )


class ChunkWriter:
    """Packs order fragments, in file order, into as few messages as the size limit allows
    (greedy: a message is sent when the next order would not fit)."""

    def __init__(
        self,
        envelope: ChunkEnvelope,
        send: Callable[[str], None],
        max_bytes: int = MAX_CHUNK_BYTES,
    ) -> None:
        self._envelope = envelope
        self._send = send
        self._max_bytes = max_bytes
        # Room for the largest chunk number and the closing "]}".
        self._overhead = len(envelope.prefix(10**10).encode()) + 2
        self._fragments: list[str] = []
        self._size = self._overhead
        self.sent = 0

    def add(self, order: ImportedOrder) -> None:
        fragment = order.fragment()
        size = len(fragment.encode()) if not fragment.isascii() else len(fragment)
        if self._fragments and self._size + size + 1 > self._max_bytes:
            self.flush()
        self._fragments.append(fragment)
        self._size += size + 1

    def flush(self) -> None:
        if not self._fragments:
            return
        message = self._envelope.prefix(self.sent) + ",".join(self._fragments) + "]}"
        self._send(message)
        self.sent += 1
        self._fragments = []
        self._size = self._overhead

    def close(self) -> int:
        """Send what is left; the number of chunks sent."""
        self.flush()
        return self.sent
