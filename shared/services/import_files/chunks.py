"""The chunk format: valid orders packed in file order into queue-sized messages as compressed
CSV text in a small JSON envelope (:class:`ChunkWriter`), and read back by the queue pass
(:func:`parse_chunk`, which also reads the uncompressed version 2 still in queues across a
deploy)."""

from __future__ import annotations

import base64
import binascii
import bisect
import csv
import io
import itertools
import json
import re
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Annotated, Any, Final, Literal

from isal import isal_zlib
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from shared.patterns import IDENTIFIER as _IDENTIFIER
from shared.services.import_files.formats import CSV_COLUMNS
from shared.services.import_files.rows import ImportedOrder

# Storage queue messages are at most 64 KiB *after* base64 (4/3): 48,000 JSON bytes encode to
# 64,000 characters, leaving room for nothing else the queue counts.
MAX_CHUNK_BYTES: Final = 48_000
MAX_QUEUE_MESSAGE_BYTES: Final = 64 * 1024
# A v3 chunk carries its CSV text zlib-compressed (then base64, as the queue trigger reads
# text), so one message holds 2-4x the orders of a v2 chunk, and the chunk pass sends their
# events in one Event Grid publish instead of two or three. The text stays under this size
# (the writer's bound and the reader's decompression limit: a larger one is a bomb).
MAX_CHUNK_TEXT_BYTES: Final = 192_000
# Orders per chunk: one chunk's events (under 1 KB each) stay in one 1 MB Event Grid
# publish, and its orders (one Cosmos DB write each) take seconds of the queue trigger's
# 120-second budget (shared.resilience.TRIGGER_BUDGET_SECONDS), not most of it.
MAX_CHUNK_ORDERS: Final = 1000
# The writer compresses with ISA-L (isal), whose zlib streams any zlib reads (the reader keeps
# the standard library's, with its limits): at its level 1 it compresses these CSV lines about
# 5x, four times as fast as zlib's fastest level, which gives 4.3x.
CHUNK_ZLIB_LEVEL: Final = 1
# What the first chunk of a file assumes its text compresses to before any has been seen (order
# CSV compresses 4-5x; a first chunk that compresses worse goes out split, see ChunkWriter).
_FIRST_CHUNK_RATIO: Final = 3
_IDENTIFIER_VALUE: Final = re.compile(_IDENTIFIER)


# --------------------------------------------------------------------------------- chunks


CHUNK_VERSION: Final = 3


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


# A piece of a chunk's text: its rows as runs, and for a piece of plain lines where its orders
# start, as (bounds, lo, hi): order k of the piece is lines bounds[lo + k] .. bounds[lo + k + 1]
# of a batch whose line bounds[lo] is the piece's first (kept as they are: only a chunk that
# goes out split needs them); None for a single order.
_Piece = tuple[list[list[int]], tuple[list[int], int, int] | None]


def _merged_runs(pieces: Sequence[_Piece]) -> list[list[int]]:
    runs: list[list[int]] = []
    for piece_runs, _ in pieces:
        for first, count in piece_runs:
            if runs and runs[-1][0] + runs[-1][1] == first:
                runs[-1][1] += count
            else:
                runs.append([first, count])
    return runs


@dataclass(frozen=True, slots=True)
class PendingPiece:
    """Orders a :class:`ChunkWriter` holds between chunks: their CSV text, their file rows as
    runs ``[first, count]``, and for plain lines where each order starts (line indexes into
    the text, from 0, ending with its line count); None for a single order."""

    runs: list[list[int]]
    order_starts: list[int] | None
    text: str


class ChunkWriter:
    """Packs valid orders, in file order, into as few queue messages as the size limit allows
    (greedy: a message is sent when the next order would not fit; an order is never split).

    A chunk is ``{"v":3,"importId","runId","chunk","rows","z"}``: ``z`` is the orders' lines as
    CSV records (the import columns without a header; consecutive records of one external_id
    and customer_id are one order), zlib-compressed and base64-encoded, and ``rows`` their file
    rows as runs ``[first, count]``: records are rows ``first .. first+count-1`` in turn. Plain
    CSV lines go in exactly as the file has them, so a clean file is chunked without formatting
    a value. A chunk holds at most ``max_orders`` orders and :data:`MAX_CHUNK_TEXT_BYTES` of
    text; how much text compresses into ``max_bytes`` is learnt as the file goes (a chunk that
    comes out too large is split at an order boundary, and the next ones take less text).
    Version 2 (``"csv"``: the same text as a JSON string) is still read, not written.
    """

    def __init__(
        self,
        envelope: ChunkEnvelope,
        send: Callable[[str], None],
        max_bytes: int = MAX_CHUNK_BYTES,
        *,
        max_orders: int = MAX_CHUNK_ORDERS,
        level: int = CHUNK_ZLIB_LEVEL,
        first_number: int = 0,
    ) -> None:
        self._envelope = envelope
        self._send = send
        self._max_bytes = max_bytes
        self._max_orders = max_orders
        self._level = level
        # Text taken per chunk before compressing (JSON-escaped bytes, never less than the
        # UTF-8 bytes): the first chunk assumes _FIRST_CHUNK_RATIO (after base64's 4/3), the
        # next ones follow the compression seen so far.
        self._max_budget = max(max_bytes, MAX_CHUNK_TEXT_BYTES)
        self._budget = min(self._max_budget, max_bytes * 3 // 4 * _FIRST_CHUNK_RATIO)
        # Room for the largest chunk number, the brackets of "rows", ',"csv":""' and "}".
        self._overhead = len(envelope.prefix(10**10)) + len('[],"csv":""}')
        self._texts: list[str] = []
        self._pieces: list[_Piece] = []
        self._runs: list[list[int]] = []
        self._size = self._overhead
        self._orders = 0
        self.sent = first_number  # the next chunk's number (a resumed pass goes on counting)

    @property
    def budget(self) -> int:
        """The text a chunk takes before compressing, as learnt so far."""
        return self._budget

    def pending(self, start: int = 0) -> list[PendingPiece]:
        """The orders added and not packed into a chunk yet (from piece ``start`` on), as
        pieces :meth:`restore` takes back: a checkpoint between chunks keeps them so that a
        resumed pass does not read their rows again."""
        pieces: list[PendingPiece] = []
        for text, (runs, orders) in zip(self._texts[start:], self._pieces[start:], strict=True):
            if orders is None:
                pieces.append(PendingPiece([list(run) for run in runs], None, text))
            else:
                bounds, lo, hi = orders
                first = bounds[lo]
                pieces.append(
                    PendingPiece(
                        [list(run) for run in runs], [b - first for b in bounds[lo : hi + 1]], text
                    )
                )
        return pieces

    @property
    def pending_pieces(self) -> int:
        return len(self._texts)

    def restore(self, pieces: Sequence[PendingPiece], budget: int | None = None) -> None:
        """Take back the pending orders of a checkpoint (:meth:`pending`) and the budget the
        writer had learnt then, so it packs on as the pass that took the checkpoint would."""
        for piece in pieces:
            plain = piece.order_starts is not None or _only_line_endings_escape(piece.text)
            self._texts.append(piece.text)
            if piece.order_starts is None:
                self._pieces.append((piece.runs, None))
                self._orders += 1
            else:
                starts = piece.order_starts
                self._pieces.append((piece.runs, (starts, 0, len(starts) - 1)))
                self._orders += len(starts) - 1
            self._size += _escaped_size(piece.text, plain=plain)
            for first, count in piece.runs:
                self._add_rows(first, count)
        if budget is not None:
            self._budget = max(self._max_bytes // 2, min(self._max_budget, budget))

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
        return min(self._budget, MAX_CHUNK_TEXT_BYTES) - self._size - 23

    def add(self, order: ImportedOrder) -> None:
        text = order.csv_text()
        plain = _only_line_endings_escape(text)
        size = _escaped_size(text, plain=plain)
        if self._texts and (size > self._room() or self._orders >= self._max_orders):
            self.flush()
        self._texts.append(text)
        self._size += size
        self._orders += 1
        rows = order.line_rows()
        self._pieces.append((_merged_runs([([[row, 1] for row in rows], None)]), None))
        for row in rows:
            self._add_rows(row, 1)

    def add_lines(
        self, text: str, lines: Sequence[str], starts: Sequence[int], count: int, first_row: int
    ) -> None:
        """Orders of plain CSV lines (see :class:`OrderSink`): only letters, digits, ``.``,
        ``_``, ``-``, commas and one line ending throughout, so only the line endings escape
        in JSON and the size follows from the length."""
        ending = 2 if lines[0].endswith("\r\n") else 1  # "\n" is escaped as 2 bytes, "\r\n" as 4
        bounds = [*starts, count]
        order, orders = 0, len(starts)
        at = sum(map(len, lines[: bounds[0]]))  # where order 0 starts in text
        while order < orders:
            room = self._room()
            # Most chunks end at the order limit: only when those orders do not fit is the
            # last one that does looked for, order by order.
            end = min(orders, order + self._max_orders - self._orders)
            if end <= order:  # the chunk holds the most orders it may
                self.flush()
                continue
            first, stop = bounds[order], bounds[end]
            chars = sum(map(len, lines[first:stop]))
            size = chars + (stop - first) * ending
            if size > room:
                offsets = list(itertools.accumulate(map(len, lines[first:stop]), initial=0))
                # positions[k]: JSON bytes of the piece's first k orders.
                positions = [
                    offsets[b - first] + (b - first) * ending for b in bounds[order : end + 1]
                ]
                end = order + bisect.bisect_right(positions, room, lo=1) - 1
                if end <= order:  # not even one more order fits
                    if self._texts:
                        self.flush()
                        continue
                    end = order + 1  # never happens: an order is far below the limit
                stop = bounds[end]
                chars = offsets[stop - first]
                size = chars + (stop - first) * ending
            self._texts.append(text[at : at + chars])
            self._pieces.append(([[first_row + first, stop - first]], (bounds, order, end)))
            self._size += size
            self._orders += end - order
            self._add_rows(first_row + first, stop - first)
            at += chars
            order = end
            if order < orders:
                self.flush()

    def _message(self, runs: Sequence[Sequence[int]], text: str) -> str:
        packed = base64.b64encode(isal_zlib.compress(text.encode(), self._level)).decode("ascii")
        rows = ",".join(f"[{first},{count}]" for first, count in runs)
        return f'{self._envelope.prefix(self.sent)}[{rows}],"z":"{packed}"}}'

    def _send_split(self, texts: Sequence[str], pieces: Sequence[_Piece]) -> None:
        """Send orders whose chunk came out too large as two or more chunks (rare: text that
        compresses much worse than the file so far)."""
        units: list[tuple[str, _Piece]] = []
        for text, (runs, orders) in zip(texts, pieces, strict=True):
            if orders is None:
                units.append((text, (runs, None)))
                continue
            bounds, lo, hi = orders
            lines = text.splitlines(keepends=True)
            first_row, first = runs[0][0], bounds[lo]
            units.extend(
                (
                    "".join(lines[start - first : stop - first]),
                    ([[first_row + start - first, stop - start]], None),
                )
                for start, stop in itertools.pairwise(bounds[lo : hi + 1])
            )

        def send(part: Sequence[tuple[str, _Piece]]) -> None:
            message = self._message(
                _merged_runs([piece for _, piece in part]), "".join(t for t, _ in part)
            )
            if len(message) > self._max_bytes and len(part) > 1:
                send(part[: len(part) // 2])
                send(part[len(part) // 2 :])
                return
            self._send(message)
            self.sent += 1

        send(units)

    def flush(self) -> None:
        if not self._texts:
            return
        text = "".join(self._texts)
        message = self._message(self._runs, text)
        if len(message) <= self._max_bytes:
            self._send(message)
            self.sent += 1
        else:
            self._send_split(self._texts, self._pieces)
        # The text that would have filled this message, with a margin for the next one.
        fitting = self._size * self._max_bytes * 0.92 / len(message)
        self._budget = max(self._max_bytes // 2, min(self._max_budget, int(fitting)))
        self._texts, self._pieces, self._runs = [], [], []
        self._size, self._orders = self._overhead, 0

    def close(self) -> int:
        """Send what is left; the number of chunks sent."""
        self.flush()
        return self.sent


# ---------------------------------------------------------------------------- chunk pass


class InvalidChunkError(ValueError):
    """A queue message that is not a chunk this app wrote (it ends up in the poison queue)."""


class _ChunkEnvelopeV2(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    v: Literal[2]
    import_id: str = Field(alias="importId", min_length=1, max_length=255)
    run_id: str = Field(alias="runId", min_length=1, max_length=300)
    chunk: int = Field(ge=0, le=10**9)
    rows: list[tuple[int, int]] = Field(min_length=1)
    csv_text: str = Field(alias="csv", min_length=1, max_length=MAX_QUEUE_MESSAGE_BYTES)


class _ChunkEnvelopeV3(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    v: Literal[3]
    import_id: str = Field(alias="importId", min_length=1, max_length=255)
    run_id: str = Field(alias="runId", min_length=1, max_length=300)
    chunk: int = Field(ge=0, le=10**9)
    rows: list[tuple[int, int]] = Field(min_length=1)
    packed: str = Field(alias="z", min_length=1, max_length=MAX_QUEUE_MESSAGE_BYTES)


_ENVELOPE: Final = TypeAdapter[_ChunkEnvelopeV2 | _ChunkEnvelopeV3](
    Annotated[_ChunkEnvelopeV2 | _ChunkEnvelopeV3, Field(discriminator="v")]
)


def _unpacked_text(packed: str) -> str:
    """The CSV text of a v3 chunk; InvalidChunkError for anything the writer does not make,
    decompressing at most MAX_CHUNK_TEXT_BYTES (a small message must not become gigabytes)."""
    try:
        data = base64.b64decode(packed, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidChunkError("the chunk's compressed csv is not base64") from None
    inflater = zlib.decompressobj()
    try:
        text = inflater.decompress(data, MAX_CHUNK_TEXT_BYTES)
    except zlib.error as error:
        raise InvalidChunkError(f"the chunk's compressed csv is not zlib data: {error}") from None
    if inflater.unconsumed_tail:
        raise InvalidChunkError(
            f"the chunk's compressed csv is larger than {MAX_CHUNK_TEXT_BYTES} bytes"
        )
    if not inflater.eof or inflater.unused_data:
        raise InvalidChunkError("the chunk's compressed csv is truncated or has trailing data")
    try:
        return text.decode()
    except UnicodeDecodeError:
        raise InvalidChunkError("the chunk's csv is not UTF-8") from None


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
        envelope = _ENVELOPE.validate_json(body)
    except ValidationError as error:
        raise InvalidChunkError(f"not an import chunk: {error.error_count()} errors") from None
    text = (
        envelope.csv_text
        if isinstance(envelope, _ChunkEnvelopeV2)
        else _unpacked_text(envelope.packed)
    )
    try:
        records = list(csv.reader(io.StringIO(text, newline=""), strict=True))
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
