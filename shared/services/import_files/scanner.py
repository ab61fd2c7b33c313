"""One file's pass: sniff the start, decode, and hand the lines to the CSV ways (column at a
time where the lines are plain, row by row otherwise) or the JSON Lines reader."""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Iterable

from shared.services.import_files.csv_columns import plain_batch
from shared.services.import_files.csv_rows import CsvRows, check_header, csv_records
from shared.services.import_files.formats import FileFormat, FileRejectedError, sniff
from shared.services.import_files.jsonl import scan_jsonl
from shared.services.import_files.rows import OrderSink, Rejection, ScanCounts, Verdicts
from shared.services.import_files.text import READ_CHARS, LineFeed, line_batches, text_stream


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
        self._fast_path = fast_path
        self._read_chars = read_chars
        self._verdicts = Verdicts(sink, on_rejection)

    @property
    def counts(self) -> ScanCounts:
        return self._verdicts.counts

    def scan(self, blocks: Iterable[bytes]) -> ScanCounts:
        text = text_stream(sniff(blocks))
        if self.file_format is FileFormat.CSV:
            self._scan_csv(text)
        else:
            scan_jsonl(self._verdicts, text)
        return self.counts

    def _scan_csv(self, text: io.TextIOWrapper) -> None:
        feed = LineFeed(line_batches(text, self._read_chars))
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
        if self.counts.rows_read == 0:
            raise FileRejectedError("the file has a header but no rows")
