"""The chunk format: valid orders packed in file order into queue-sized messages as CSV text
in a small JSON envelope (:class:`ChunkWriter`), and read back by the queue pass
(:func:`parse_chunk`)."""

from __future__ import annotations

import bisect
import csv
import io
import itertools
import json
import operator
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from shared.patterns import IDENTIFIER as _IDENTIFIER
from shared.services.import_files.formats import CSV_COLUMNS
from shared.services.import_files.rows import ImportedOrder

# Storage queue messages are at most 64 KiB *after* base64 (4/3): 48,000 JSON bytes encode to
# 64,000 characters, leaving room for nothing else the queue counts.
MAX_CHUNK_BYTES: Final = 48_000
MAX_QUEUE_MESSAGE_BYTES: Final = 64 * 1024
_IDENTIFIER_VALUE: Final = re.compile(_IDENTIFIER)


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
