"""Partner import files: a streaming reader that validates every row and packs valid orders
into queue-sized chunks. Pure: no I/O, no SDKs; the pipeline feeds it blocks of bytes.

- Formats: CSV (``external_id,customer_id,sku,quantity,unit_price,currency``; consecutive rows
  with the same ``external_id`` are the lines of one order) and JSON Lines (one order a line:
  the ``POST`` body plus ``externalId`` and ``customerId``).
- Memory is bounded by the largest line (:data:`MAX_LINE_CHARS`), one block of text
  (:data:`READ_CHARS`), the report buffer and one batch of CSV orders; only the set of order
  keys seen grows with the file (see :class:`FingerprintSet`).
- Two ways through a CSV file, with the same verdicts: a block of clean lines (no quotes, one
  line ending, every field in a plain shape the models accept, see :data:`_PLAIN_IDENTIFIERS`) is
  judged a column at a time and its lines go into chunks as they are; any other block is judged
  row by row, each order by the API's models, which also word every reason. The plain shapes
  are a subset of what the models accept, so the fast way never accepts what the models refuse
  (``tests/unit/test_import_files.py`` checks both ways agree on generated files).
- Chunks carry the valid orders as CSV text (see :class:`ChunkWriter`), the cheapest form to
  write and the most compact to send; the queue pass validates every order again.
- Whole-file rejections (:class:`FileRejectedError`) are decided on the first block, before any
  order is emitted: empty, binary, UTF-16, not UTF-8, wrong CSV header, header only. Anything
  later is a row-level rejection, so a file is never half-imported silently.
- Row numbers are the file's 1-based line numbers where the record starts (the CSV header is
  line 1), so a partner finds the row in any editor, also with quoted newlines.
"""

from __future__ import annotations

import bisect
import codecs
import csv
import io
import itertools
import json
import operator
import re
from array import array
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from functools import cache
from typing import Any, Final, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from shared.models import (
    ISO_4217,
    MAX_LINES,
    ZERO_DECIMAL_CURRENCIES,
    Identifier,
    OrderDraft,
)
from shared.patterns import IDENTIFIER as _IDENTIFIER

CSV_HEADER: Final = ("external_id", "customer_id", "sku", "quantity", "unit_price", "currency")
CSV_COLUMNS: Final = len(CSV_HEADER)
# A valid row is well under 300 characters; longer lines are refused without being held.
MAX_LINE_CHARS: Final = 16 * 1024
# Identifiers and SKUs are at most 64 characters, numbers far less.
MAX_FIELD_CHARS: Final = 256
SNIFF_BYTES: Final = 64 * 1024
# Text is split into lines a block of this many characters at a time.
READ_CHARS: Final = 256 * 1024
# Storage queue messages are at most 64 KiB *after* base64 (4/3): 48,000 JSON bytes encode to
# 64,000 characters, leaving room for nothing else the queue counts.
MAX_CHUNK_BYTES: Final = 48_000
MAX_QUEUE_MESSAGE_BYTES: Final = 64 * 1024
FORMULA_PREFIXES: Final = ("=", "+", "-", "@")
_OVERLONG: Final = "\x00\n"  # stands in for a line longer than MAX_LINE_CHARS
# The plain shape of a CSV row that the models certainly accept (no quoting, no spaces, ids
# and SKUs as Identifier/Sku, quantity 1..999,999 <= MAX_QUANTITY, price 0..999,999.99 <=
# MAX_UNIT_PRICE with at most 2 decimals). Rows of other shapes go to the models one by one.
_IDENTIFIER_VALUE: Final = re.compile(_IDENTIFIER)
_PLAIN_IDENTIFIERS: Final = re.compile(f"(?:{_IDENTIFIER}\n)*{_IDENTIFIER}")
_PLAIN_QUANTITIES: Final = re.compile("(?:[1-9][0-9]{0,5}\n)*[1-9][0-9]{0,5}")
# No leading zeros: a plain price is also written the way the models write it back.
_PLAIN_PRICE: Final = "(?:0|[1-9][0-9]{0,5})(?:[.][0-9]{1,2})?"
_PLAIN_PRICES: Final = re.compile(f"(?:{_PLAIN_PRICE}\n)*{_PLAIN_PRICE}")
# Zero-decimal currencies have a rule across fields (no minor units): left to the models.
_PLAIN_CURRENCIES: Final = frozenset(ISO_4217 - ZERO_DECIMAL_CURRENCIES)
# CSV orders are validated in batches of about this many rows (one pydantic call a batch).
BATCH_ROWS: Final = 1024
_ORDER_TOO_LONG: Final = f"the order has more than {MAX_LINES} lines"
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

    def csv_text(self) -> str:
        """The order's lines as CSV records, as a chunk carries them (see :class:`ChunkWriter`).
        Written by the csv module, so any value would round-trip; validated values never need
        quoting."""
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerows(
            (
                self.external_id,
                self.customer_id,
                line.sku,
                line.quantity,
                line.unit_price,
                self.draft.currency,
            )
            for line in self.draft.lines
        )
        return buffer.getvalue()

    def line_rows(self) -> list[int]:
        """The file row of each CSV record of :meth:`csv_text` (a JSON Lines order is one row
        however many lines it has)."""
        if len(self.rows) == len(self.draft.lines):
            return list(self.rows)
        return [self.rows[0]] * len(self.draft.lines)


@dataclass(slots=True)
class ScanCounts:
    rows_read: int = 0
    accepted: int = 0
    rejected: int = 0
    orders: int = 0


class FingerprintSet:
    """Set of 64-bit key fingerprints. The first ``set_limit`` keys live in a Python ``set`` of
    ints (set operations run in C, ~64 bytes a key); past that, in one flat array with open
    addressing (8-16 bytes a key), so a file of ten million orders costs ~160 MiB, not 640.
    Two different keys share a fingerprint with probability ~n²/2⁶⁵ (3e-8 for a million).

    The fingerprint is Python's own string hash (SipHash, randomly keyed per process): computed
    in C and cached on the string, and a set lives only for one scan in one process."""

    __slots__ = ("_count", "_mask", "_set", "_set_limit", "_slots")

    def __init__(self, set_limit: int = 1 << 20) -> None:
        self._set: set[int] | None = set()
        self._set_limit = set_limit
        self._slots = array("q")
        self._mask = 0
        self._count = 0

    def __len__(self) -> int:
        return self._count

    def add(self, key: str) -> bool:
        """Add ``key``; False when it was already there."""
        return self.add_new([key])

    def add_new(self, keys: list[str]) -> bool:
        """Add all ``keys`` if none is there yet and none repeats; otherwise add none (False)."""
        if self._set is None:
            return self._add_to_slots(keys)
        values = {key_hash | 1 for key_hash in map(hash, keys)}
        if len(values) != len(keys) or not self._set.isdisjoint(values):
            return False
        self._set |= values
        self._count += len(values)
        if self._count > self._set_limit:
            self._move_to_slots()
        return True

    def _move_to_slots(self) -> None:
        values, self._set = self._set or set(), None
        capacity = 1 << (2 * len(values)).bit_length()
        self._slots = array("q", [0]) * capacity
        self._mask = capacity - 1
        self._insert(values)

    def _insert(self, values: Iterable[int]) -> None:
        slots, mask = self._slots, self._mask
        for value in values:
            index = value & mask
            while slots[index]:
                index = (index + 1) & mask
            slots[index] = value

    def _add_to_slots(self, keys: list[str]) -> bool:
        while (self._count + len(keys)) * 2 > len(self._slots):
            old = self._slots
            self._slots = array("q", [0]) * (len(old) * 2)
            self._mask = len(self._slots) - 1
            self._insert(value for value in old if value)
        slots, mask = self._slots, self._mask
        added = 0
        for key_hash in map(hash, keys):
            value = key_hash | 1  # never 0, which marks an empty slot
            index = value & mask
            current = slots[index]
            while current:
                if current == value:
                    self._remove_latest(keys[:added])
                    return False
                index = (index + 1) & mask
                current = slots[index]
            slots[index] = value
            added += 1
        self._count += added
        return True

    def _remove_latest(self, keys: list[str]) -> None:
        """Take out ``keys``, the last ones added, latest first: a key's slot never depends on
        slots filled after it, so the set is as it was before they came."""
        slots, mask = self._slots, self._mask
        for key in reversed(keys):
            value = hash(key) | 1
            index = value & mask
            while slots[index] != value:
                index = (index + 1) & mask
            slots[index] = 0


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


# str.splitlines also splits at these; readline (and csv) do not.
_ASCII_LINE_BREAKS_BEYOND_CR_LF: Final = ("\x0b", "\x0c", "\x1c", "\x1d", "\x1e")


def _line_batches(text: io.TextIOWrapper, read_chars: int) -> Iterator[list[str]]:
    """The lines of the text, about ``read_chars`` characters of them at a time, split where
    ``readline`` splits (``\n``, ``\r\n``, ``\r``) and with their endings, as csv needs them.
    The last line gets a ``\n`` if it had none. A line longer than :data:`MAX_LINE_CHARS`
    (ending included) is never held whole: it becomes :data:`_OVERLONG`."""
    limit = MAX_LINE_CHARS
    carry = ""
    skipping = False  # in the middle of an overlong line
    while chunk := text.read(read_chars):
        data = carry + chunk
        if data.isascii() and not any(map(data.__contains__, _ASCII_LINE_BREAKS_BEYOND_CR_LF)):
            lines = data.splitlines(keepends=True)  # the same lines, faster
        else:
            lines = io.StringIO(data, newline="").readlines()
        carry = "" if lines[-1].endswith("\n") else lines.pop()  # may go on in the next chunk
        if skipping and lines:
            lines[0], skipping = _OVERLONG, False  # the end of the overlong line
        if len(carry) > limit:
            carry, skipping = "", True
        if lines and max(map(len, lines)) > limit:
            lines = [line if len(line) <= limit else _OVERLONG for line in lines]
        if lines:
            yield lines
    if skipping:
        yield [_OVERLONG]
    elif carry:
        yield [carry if carry.endswith("\r") else carry + "\n"]


class _LineFeed:
    """The lines of :func:`_line_batches`, taken a batch at a time or a line at a time, with
    lines taken but not used put back in front. ``taken`` counts the lines handed out: the
    file line number of the last one."""

    __slots__ = ("_back", "_batches", "_next", "taken")

    def __init__(self, batches: Iterator[list[str]]) -> None:
        self._batches = batches
        self._back: list[str] = []  # put back, in reverse order: the next line is the last item
        self._next: list[str] | None = None  # the next batch, once peeked at
        self.taken = 0

    def _next_batch(self) -> list[str]:
        batch = self._next if self._next is not None else next(self._batches, [])
        self._next = None
        return batch

    def take_batch(self) -> list[str]:
        """The lines put back and the next batch."""
        if self._back:
            batch, self._back = self._back[::-1], []
            batch += self._next_batch()
        else:
            batch = self._next_batch()
        self.taken += len(batch)
        return batch

    def put_back(self, lines: list[str]) -> None:
        self._back.extend(reversed(lines))
        self.taken -= len(lines)

    def peek(self) -> str | None:
        if self._back:
            return self._back[-1]
        if self._next is None:
            self._next = next(self._batches, [])
        return self._next[0] if self._next else None

    def lines(self) -> Iterator[str]:
        while True:
            if not self._back:
                batch = self._next_batch()
                if not batch:
                    return
                self._back = batch[::-1]
            self.taken += 1
            yield self._back.pop()


_Record = tuple[int, list[str] | None, str | None]


def _csv_records(reader: Iterator[list[str]], first_line: int = 1) -> Iterator[_Record]:
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


def _order_ends_before(line: str | None, group: _CsvGroup) -> bool:
    """Whether the next line surely starts another order than ``group`` (or there is none).
    Quoted and blank lines cannot be told without parsing them: read on."""
    if line is None:
        return True
    if '"' in line or not line.strip():
        return False
    return line.split(",", 1)[0] != group.external_id


class OrderSink(Protocol):
    """Where valid orders go (a :class:`ChunkWriter`), in file order."""

    def add(self, order: ImportedOrder) -> None:
        """One order judged by the models."""

    def add_lines(
        self, text: str, lines: Sequence[str], starts: Sequence[int], count: int, first_row: int
    ) -> None:
        """Orders of plain CSV lines: ``lines[:count]`` are rows ``first_row`` on, ``text`` is
        all of ``lines`` joined, and order ``k`` starts at line ``starts[k]``."""


class ImportScanner:
    """Reads one file, validates every row, and hands out orders and rejections in file order.

    ``sink`` gets the valid orders, ``on_rejection`` each rejected row; :attr:`counts` always
    satisfies ``rows_read == accepted + rejected`` once :meth:`scan` returns. ``fast_path=False``
    judges every CSV row one by one: the reference the column-at-a-time way is tested against.
    ``read_chars`` is how much text is split into lines and judged at a time.
    """

    def __init__(
        self,
        file_format: FileFormat,
        sink: OrderSink,
        on_rejection: Callable[[Rejection], None],
        *,
        fast_path: bool = True,
        read_chars: int = READ_CHARS,
    ) -> None:
        self.file_format = file_format
        self._sink = sink
        self._on_rejection = on_rejection
        self._fast_path = fast_path
        self._read_chars = read_chars
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
        self._sink.add(order)

    # ------------------------------------------------------------------------------- CSV

    def _scan_csv(self, text: io.TextIOWrapper) -> None:
        feed = _LineFeed(_line_batches(text, self._read_chars))
        _check_header(next(_csv_records(csv.reader(feed.lines(), strict=False)), None))
        while batch := feed.take_batch():
            first_row = feed.taken - len(batch) + 1
            used = (
                self._plain_batch(batch, first_row, last=feed.peek() is None)
                if self._fast_path
                else None
            )
            if used is None:
                feed.put_back(batch)
                self._rows_one_by_one(feed, len(batch))
            elif used < len(batch):
                feed.put_back(batch[used:])  # the last order may go on in the next batch
        if self.counts.rows_read == 0:
            raise FileRejectedError("the file has a header but no rows")

    def _rows_one_by_one(self, feed: _LineFeed, lines: int) -> None:
        """Judge the records of the next ``lines`` lines one by one (more lines when a record or
        an order goes on after them), then the orders they make with the models."""
        started = feed.taken
        group = _CsvGroup()
        counts = self.counts
        records = _csv_records(csv.reader(feed.lines(), strict=False), first_line=started + 1)
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
                    self._reject(start, external_id, _ORDER_TOO_LONG)
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

    def _plain_batch(  # noqa: PLR0911 - each early return is one reason to go row by row
        self, lines: list[str], first_row: int, *, last: bool
    ) -> int | None:
        """Judge a batch of lines a column at a time when every line has the plain shape
        (:data:`_PLAIN_IDENTIFIERS` ...) and every order passes; the number of lines used, or
        None to judge the batch row by row instead. Unless ``last``, the batch's last order is
        left for the next batch (it may go on there)."""
        text = "".join(lines)
        count = len(lines)
        crlf = text.count("\r\n")
        if '"' in text or text.count("\r") != crlf or crlf not in (0, count):
            return None  # quoting, or mixed line endings
        if set(map(str.count, lines, itertools.repeat(","))) != {CSV_COLUMNS - 1}:
            return None  # blank, short or long lines
        # Unquoted fields are what lies between the commas: split every line at once.
        fields = text.replace("\r\n" if crlf else "\n", ",").split(",")
        fields.pop()  # after the last line's ending
        ids, customers, skus = fields[0::6], fields[1::6], fields[2::6]
        quantities, prices, currencies = fields[3::6], fields[4::6], fields[5::6]
        # same[i]: row i + 1 is a line of the order of row i (consecutive rows, same id).
        same = list(map(operator.eq, ids[1:], ids))
        eq = operator.eq
        if (
            any(map(operator.gt, same, map(eq, customers[1:], customers)))
            or any(map(operator.gt, same, map(eq, currencies[1:], currencies)))
            or any(map(operator.and_, same, map(eq, skus[1:], skus)))
        ):
            return None  # customer or currency differs within an order, or a sku repeats
        starts = [0, *itertools.compress(range(1, count), map(operator.not_, same))]
        used = count if last else starts.pop()
        if not starts:
            return None  # one order fills the batch: it may go on after it
        # Ids and customers are the same on every line of an order: check them once an order.
        order_ids = list(map(ids.__getitem__, starts))
        order_customers = map(customers.__getitem__, starts)
        if not (
            _PLAIN_CURRENCIES.issuperset(currencies)
            and _PLAIN_IDENTIFIERS.fullmatch(
                "\n".join(itertools.chain(order_ids, order_customers, skus))
            )
            and _PLAIN_QUANTITIES.fullmatch("\n".join(quantities))
            and _PLAIN_PRICES.fullmatch("\n".join(prices))
        ):
            return None
        sizes = list(map(operator.sub, [*starts[1:], used], starts))
        if max(sizes) > MAX_LINES:
            return None
        for start, size in itertools.compress(
            zip(starts, sizes, strict=True), map((2).__lt__, sizes)
        ):
            if len(set(skus[start : start + size])) != size:
                return None  # a sku repeats within an order of three lines or more
        if not self._seen.add_new(order_ids):
            return None  # an external_id seen before: a split order or a duplicate
        self._sink.add_lines(text, lines, starts, used, first_row)
        counts = self.counts
        counts.rows_read += used
        counts.accepted += used
        counts.orders += len(starts)
        return used

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


CHUNK_VERSION: Final = 2


@dataclass(frozen=True, slots=True)
class ChunkEnvelope:
    import_id: str
    run_id: str

    def prefix(self, number: int) -> str:
        return (
            f'{{"v":{CHUNK_VERSION},"importId":{json.dumps(self.import_id)},"runId":'
            f'{json.dumps(self.run_id)},"chunk":{number},"rows":'
        )


# What JSON escapes in text besides line endings (and any non-ASCII character).
_OTHER_JSON_ESCAPES: Final = re.compile(r'[\x00-\x09\x0b\x0c\x0e-\x1f"\\]')


def _only_line_endings_escape(text: str) -> bool:
    return text.isascii() and not _OTHER_JSON_ESCAPES.search(text)


def _escaped_size(text: str, *, plain: bool) -> int:
    """Bytes of ``text`` as a JSON string, without its quotes; ``plain`` when only its line
    endings escape (:func:`_only_line_endings_escape`)."""
    if plain:
        return len(text) + text.count("\n") + text.count("\r")
    return len(json.dumps(text)) - 2


class ChunkWriter:
    """Packs valid orders, in file order, into as few queue messages as the size limit allows
    (greedy: a message is sent when the next order would not fit; an order is never split).

    A chunk is ``{"v":2,"importId","runId","chunk","rows","csv"}``: ``csv`` holds the orders'
    lines as CSV records (the import columns without a header; consecutive records of one
    external_id and customer_id are one order) and ``rows`` their file rows as runs
    ``[first, count]``: records are rows ``first .. first+count-1`` in turn. Plain CSV lines go
    in exactly as the file has them, so a clean file is chunked without formatting a value.
    """

    def __init__(
        self,
        envelope: ChunkEnvelope,
        send: Callable[[str], None],
        max_bytes: int = MAX_CHUNK_BYTES,
    ) -> None:
        self._envelope = envelope
        self._send = send
        self._max_bytes = max_bytes
        # Room for the largest chunk number, the brackets of "rows", ',"csv":""' and "}".
        self._overhead = len(envelope.prefix(10**10)) + len('[],"csv":""}')
        self._texts: list[str] = []
        self._plain = True  # only line endings need escaping in every text
        self._runs: list[list[int]] = []
        self._size = self._overhead
        self.sent = 0

    def _add_rows(self, first: int, count: int) -> None:
        runs = self._runs
        if runs and runs[-1][0] + runs[-1][1] == first:
            old = runs[-1][1]
            runs[-1][1] = old + count
            self._size += len(str(old + count)) - len(str(old))
        else:
            runs.append([first, count])
            self._size += len(f"[{first},{count}]") + (1 if len(runs) > 1 else 0)

    def _room(self) -> int:
        # The next text may add a run: its rows and count take at most 23 bytes.
        return self._max_bytes - self._size - 23

    def add(self, order: ImportedOrder) -> None:
        text = order.csv_text()
        plain = _only_line_endings_escape(text)
        size = _escaped_size(text, plain=plain)
        if self._texts and size > self._room():
            self.flush()
        self._texts.append(text)
        self._plain = self._plain and plain
        self._size += size
        for row in order.line_rows():
            self._add_rows(row, 1)

    def add_lines(
        self, text: str, lines: Sequence[str], starts: Sequence[int], count: int, first_row: int
    ) -> None:
        """Orders of plain CSV lines (see :class:`OrderSink`): only letters, digits, ``.``,
        ``_``, ``-``, commas and one line ending throughout, so only the line endings escape
        in JSON and the size follows from the length."""
        ending = 2 if lines[0].endswith("\r\n") else 1  # "\n" is escaped as 2 bytes, "\r\n" as 4
        offsets = list(itertools.accumulate(map(len, itertools.islice(lines, count)), initial=0))
        bounds = [*starts, count]
        # positions[k]: JSON bytes before order k (and positions[-1] after the last one).
        positions = list(
            map(
                operator.add,
                map(offsets.__getitem__, bounds),
                map(operator.mul, bounds, itertools.repeat(ending)),
            )
        )
        order, orders = 0, len(starts)
        while order < orders:
            limit = positions[order] + self._room()
            end = bisect.bisect_right(positions, limit, lo=order + 1) - 1
            if end <= order:  # not even one more order fits
                if self._texts:
                    self.flush()
                    continue
                end = order + 1  # never happens: an order is far below the limit
            first, stop = bounds[order], bounds[end]
            self._texts.append(text[offsets[first] : offsets[stop]])
            self._size += positions[end] - positions[order]
            self._add_rows(first_row + first, stop - first)
            order = end
            if order < orders:
                self.flush()

    def flush(self) -> None:
        if not self._texts:
            return
        runs = ",".join(f"[{first},{count}]" for first, count in self._runs)
        text = "".join(self._texts)
        quoted = (
            '"' + text.replace("\r", "\\r").replace("\n", "\\n") + '"'
            if self._plain
            else json.dumps(text)
        )
        message = f'{self._envelope.prefix(self.sent)}[{runs}],"csv":{quoted}}}'

        self._send(message)
        self.sent += 1
        self._texts, self._runs, self._size, self._plain = [], [], self._overhead, True

    def close(self) -> int:
        """Send what is left; the number of chunks sent."""
        self.flush()
        return self.sent


# ---------------------------------------------------------------------------- chunk pass


class InvalidChunkError(ValueError):
    """A queue message that is not a chunk this app wrote (it ends up in the poison queue)."""


class _ChunkEnvelopeIn(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    v: Literal[2]
    import_id: str = Field(alias="importId", min_length=1, max_length=255)
    run_id: str = Field(alias="runId", min_length=1, max_length=300)
    chunk: int = Field(ge=0, le=10**9)
    rows: list[tuple[int, int]] = Field(min_length=1)
    csv_text: str = Field(alias="csv", min_length=1, max_length=MAX_QUEUE_MESSAGE_BYTES)


@dataclass(frozen=True, slots=True)
class ChunkOrder:
    """One order of a chunk, as read back: the values are checked again by the models."""

    customer_id: str
    external_id: str
    currencies: tuple[str, ...]  # one per line: a valid order has one currency
    rows: tuple[int, ...]  # file rows, each once
    lines: tuple[tuple[str, int | str, str], ...]  # (sku, quantity, unit price)

    def body(self) -> dict[str, Any]:
        """The order as a ``POST`` body, for :class:`~shared.models.OrderDraft`."""
        return {
            # Lines in different currencies: None, which the model refuses.
            "currency": self.currencies[0] if len(set(self.currencies)) == 1 else None,
            "lines": [
                {"sku": sku, "quantity": quantity, "unitPrice": price}
                for sku, quantity, price in self.lines
            ],
        }


@dataclass(frozen=True, slots=True)
class Chunk:
    import_id: str
    run_id: str
    number: int
    orders: tuple[ChunkOrder, ...]


def _quantity(text: str) -> int | str:
    # A string is refused by the model (quantities are strict ints), with its reason.
    return int(text) if text.isascii() and text.isdigit() and len(text) <= 18 else text


def parse_chunk(body: str | bytes) -> Chunk:
    """Read a chunk message (see :class:`ChunkWriter`); InvalidChunkError when it is not one."""
    try:
        envelope = _ChunkEnvelopeIn.model_validate_json(body)
    except ValidationError as error:
        raise InvalidChunkError(f"not an import chunk: {error.error_count()} errors") from None
    try:
        records = list(csv.reader(io.StringIO(envelope.csv_text, newline=""), strict=True))
    except csv.Error as error:
        raise InvalidChunkError(f"the chunk's csv is malformed: {error}") from None
    if any(first < 1 or count < 1 for first, count in envelope.rows):
        raise InvalidChunkError("the chunk's rows are not positive")
    if sum(count for _, count in envelope.rows) != len(records):
        raise InvalidChunkError("the chunk's rows do not match its csv records")
    if any(len(record) != CSV_COLUMNS for record in records):
        raise InvalidChunkError(f"a record of the chunk does not have {CSV_COLUMNS} fields")
    identifier = _IDENTIFIER_VALUE.fullmatch
    if not all(identifier(record[0]) and identifier(record[1]) for record in records):
        raise InvalidChunkError("an external_id or customer_id of the chunk is not an id")
    rows = [row for first, count in envelope.rows for row in range(first, first + count)]
    orders = []
    for (external_id, customer_id), group in itertools.groupby(
        zip(rows, records, strict=True), key=lambda item: (item[1][0], item[1][1])
    ):
        items = list(group)
        orders.append(
            ChunkOrder(
                customer_id=customer_id,
                external_id=external_id,
                currencies=tuple(record[5] for _, record in items),
                rows=tuple(dict.fromkeys(row for row, _ in items)),
                lines=tuple((record[2], _quantity(record[3]), record[4]) for _, record in items),
            )
        )
    return Chunk(envelope.import_id, envelope.run_id, envelope.chunk, tuple(orders))
