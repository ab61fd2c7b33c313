"""One file's pass: sniff the start, decode, and hand the lines to the CSV ways (column at a
time where the lines are plain, row by row otherwise) or the JSON Lines reader."""

from __future__ import annotations

import codecs
import csv
import io
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

from shared.services.import_files.csv_columns import plain_batch
from shared.services.import_files.csv_rows import CsvRows, check_header, csv_records
from shared.services.import_files.formats import FileFormat, FileRejectedError, sniff
from shared.services.import_files.jsonl import scan_jsonl
from shared.services.import_files.order_keys import KeyPartition
from shared.services.import_files.rows import (
    KeyJournal,
    OrderSink,
    Rejection,
    ScanCounts,
    Verdicts,
)
from shared.services.import_files.text import (
    READ_CHARS,
    LineFeed,
    LineOffsets,
    line_batches,
    text_stream,
)


@dataclass(frozen=True, slots=True)
class ScanStart:
    """Where a resumed pass starts: the byte offset and 1-based line number of a line where an
    order starts, the counts of the rows before it and the order keys they added."""

    offset: int
    row: int
    counts: ScanCounts
    keys: Iterable[str] = field(default_factory=tuple)


def _bom_counted(blocks: Iterator[bytes], offsets: LineOffsets) -> Iterator[bytes]:
    """The blocks unchanged; a UTF-8 BOM at the file's start (which the decoder drops) moves
    the first line to byte 3."""
    first = next(blocks, None)
    if first is None:
        return
    if first.startswith(codecs.BOM_UTF8):
        offsets.first_byte = len(codecs.BOM_UTF8)
    yield first
    yield from blocks


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
        track: bool = False,
        partition: KeyPartition | None = None,
    ) -> None:
        self.file_format = file_format
        self._fast_path = fast_path
        self._read_chars = read_chars
        # ``partition``: this scan is one pass of several, each giving the verdicts of one part
        # of the order-key space (see Verdicts); ``counts.rows_read`` still counts every row.
        self._verdicts = Verdicts(sink, on_rejection, journal=track, partition=partition)
        # With ``track``, where lines start (bytes) and which keys each order added, for
        # checkpoints; off, the scan pays nothing for them.
        self.offsets: LineOffsets | None = LineOffsets() if track else None

    @property
    def key_journal(self) -> KeyJournal | None:
        return self._verdicts.journal

    @property
    def counts(self) -> ScanCounts:
        return self._verdicts.counts

    def scan(
        self,
        blocks: Iterable[bytes],
        start: ScanStart | None = None,
        safe_point: Callable[[int], None] | None = None,
    ) -> ScanCounts:
        """Scan the file, or (``start``) the rest of it from a checkpoint: ``blocks`` then begin
        at ``start.offset``; the start of the file is not checked again (it was, by the pass
        that took the checkpoint). ``safe_point(line)`` is called whenever every line before
        ``line`` is judged and nothing after it (a line where an order starts)."""
        offsets = self.offsets
        if start is None:
            stream = sniff(blocks)
            if offsets is not None:
                stream = _bom_counted(stream, offsets)
            text = text_stream(stream)
            first_row = 1
        else:
            counts = self._verdicts.counts
            counts.rows_read, counts.accepted = start.counts.rows_read, start.counts.accepted
            counts.rejected, counts.orders = start.counts.rejected, start.counts.orders
            self._verdicts.keys.update(start.keys)
            text = text_stream(iter(blocks), at_start=False)
            first_row = start.row
            if offsets is not None:
                offsets.first_byte, offsets.next_line = start.offset, start.row
        if self.file_format is FileFormat.CSV:
            self._scan_csv(text, first_row, safe_point)
        else:
            scan_jsonl(self._verdicts, text, first_row, offsets, safe_point)
        return self.counts

    def offset_of(self, line: int) -> int:
        if self.offsets is None:
            raise LookupError("line offsets are tracked only with track=True")
        return self.offsets.offset_of(line)

    def _scan_csv(
        self,
        text: io.TextIOWrapper,
        first_row: int,
        safe_point: Callable[[int], None] | None,
    ) -> None:
        offsets = self.offsets
        batches = (
            line_batches(text, self._read_chars)
            if offsets is None
            else line_batches(text, self._read_chars, offsets)
        )
        feed = LineFeed(batches, taken=first_row - 1)
        if first_row == 1:
            check_header(next(csv_records(csv.reader(feed.lines(), strict=False)), None))
        rows = CsvRows(self._verdicts)
        while batch := feed.take_batch():
            first_row = feed.taken - len(batch) + 1
            used = (
                plain_batch(self._verdicts, batch, first_row, last=feed.peek() is None)
                if self._fast_path
                else None
            )
            if used is None:
                feed.put_back(batch)
                rows.judge_lines(feed, len(batch))
            elif used < len(batch):
                feed.put_back(batch[used:])  # the last order may go on in the next batch
            if safe_point is not None:
                safe_point(feed.taken + 1)
        if self.counts.rows_read == 0:
            raise FileRejectedError("the file has a header but no rows")
