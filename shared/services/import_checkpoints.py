"""Checkpoints of a file pass, so a pass that dies resumes where it was instead of at row 1.

A checkpoint is a cut at a row ``R`` where an order starts: every row before ``R`` is judged,
its valid orders are in chunks numbered below ``nextChunk`` and its rejected rows are in the
report; nothing from ``R`` on is. The run item holds it as a fixed set of numbers
(:func:`checkpoint_document`): the byte offset of ``R`` in the blob (exact for UTF-8 and CRLF,
after a BOM, with quoted newlines: see ``shared.services.import_files.text.LineOffsets``), ``R``
itself (so report rows stay the file's line numbers), ``nextChunk``, the counts before ``R``,
and where the report and the run's resume log ended when it was written.

When: at a safe point (the scanner says every line before ``R`` is judged, nothing after it:
after each batch of CSV lines, after each JSON line) once :data:`CHECKPOINT_BYTES` of the file
were read since the last checkpoint (times the number of passes over the file, see below), the
last one is older than :data:`CHECKPOINT_SECONDS` (the lease stays fresh) or many rejected rows
wait. A checkpoint is not tied to chunks: the chunks packed since the last one are held and
sent under it, and the orders the writer holds for its next chunk are kept in the resume log.
So a pass that dies reads again at most about one batch of text (``READ_CHARS``), which is
less than one chunk's worth of rows for orders of two lines or more.

Write-ahead (:meth:`FilePassCheckpoints._checkpoint`):

1. the rejected rows before ``R`` are appended to the report (one block);
2. one line is appended to the resume log (``resume/<runId>.jsonl`` beside the reports): the
   order keys added before ``R`` since the last checkpoint, the chunk(s) about to be sent, and
   the orders the chunk writer holds that the log does not have yet (compressed CSV text with
   their rows; ``kept`` says how many of the pieces logged before are still held, 0 once a
   chunk took them);
3. the checkpoint is written to the run item, conditional on this pass's ``owner`` token (a
   pass that lost the run stops here, having sent nothing past its last checkpoint);
4. the chunk(s) are sent.

A pass that dies anywhere in between is resumed from the last checkpoint written: it sends the
chunks of the resume log's last line again (the same messages, so a chunk that did arrive is
found by its marker and counted once), rebuilds the key set from the log (the keys, never the
per-process fingerprints) and the chunk writer's held orders (so it packs the next chunk as the
dead pass would have), reads the blob from the checkpoint's byte offset (pinned by ETag), and
numbers its chunks on from ``nextChunk``. The held orders were never sent (a chunk is sent only
after the checkpoint after it), so no order goes out under two chunk numbers. Rows the dead
pass appended to the report after its last checkpoint (step 1 without step 3) are read back
from the report's tail and not listed again: every rejected row is in the report exactly once.
Appended but not checkpointed lines of the resume log lie past the checkpoint's ``logEnd`` and
are never read.

A file of many parts (passes over the key space, ``shared.services.import_files.order_keys``)
checkpoints every ``parts * CHECKPOINT_BYTES``: each pass sees only its part's orders, and the
log stays far below an append blob's 50,000 blocks (one per checkpoint) for any file up to the
size cap.
"""

from __future__ import annotations

import base64
import csv
import io
import json
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from isal import isal_zlib

from shared.repositories.import_runs import ImportRunRepository
from shared.repositories.import_storage import ReportBlob
from shared.services.import_files import (
    READ_CHARS,
    ChunkEnvelope,
    ChunkWriter,
    ImportedOrder,
    Rejection,
)
from shared.services.import_files.chunks import PendingPiece
from shared.services.import_files.rows import KeyJournal, ScanCounts
from shared.services.import_files.scanner import ScanStart
from shared.services.import_files.text import LineOffsets

# A live pass writes a checkpoint at least this often; a run whose last write is older than
# LEASE_SECONDS has no live pass, and the next delivery takes it over.
CHECKPOINT_SECONDS: Final = 5.0
LEASE_SECONDS: Final = 30.0


def checkpoint_bytes(read_chars: int = READ_CHARS) -> int:
    """File bytes read between checkpoints (per pass over the key space) when the scanner judges
    ``read_chars`` of text at a time: three quarters of a batch, so that every batch of CSV
    lines ends in one."""
    return read_chars * 3 // 4


CHECKPOINT_BYTES: Final = checkpoint_bytes()
# Rejected rows held before a safe point forces a checkpoint.
MAX_HELD_REJECTIONS: Final = 10_000
_END: Final = 1 << 62  # a row after every row of any file


class LostFilePassError(Exception):
    """Another file pass holds the run now (this one was taken for dead): stop, send nothing."""


@dataclass(frozen=True, slots=True)
class Checkpoint:
    offset: int
    row: int
    next_chunk: int
    rows_read: int
    accepted: int
    rejected: int
    report_end: int
    log_end: int
    part: int = 0  # the pass over the file: which part of the order-key space it judges
    parts: int = 1

    @classmethod
    def at_start(cls, report_end: int, parts: int = 1) -> Checkpoint:
        """Where a new run's file pass starts: row 1, nothing counted, the report ``report_end``
        bytes long (its header), the resume log empty."""
        return cls(
            offset=0,
            row=1,
            next_chunk=0,
            rows_read=0,
            accepted=0,
            rejected=0,
            report_end=report_end,
            log_end=0,
            parts=parts,
        )

    @classmethod
    def parse(cls, value: Any) -> Checkpoint | None:
        if not isinstance(value, dict):
            return None
        try:
            return cls(
                offset=int(value["offset"]),
                row=int(value["row"]),
                next_chunk=int(value["nextChunk"]),
                rows_read=int(value["rowsRead"]),
                accepted=int(value["accepted"]),
                rejected=int(value["rejected"]),
                report_end=int(value["reportEnd"]),
                log_end=int(value["logEnd"]),
                part=int(value.get("part", 0)),
                parts=int(value.get("parts", 1)),
            )
        except (KeyError, TypeError, ValueError):
            return None

    def scan_start(self, keys: Iterable[str]) -> ScanStart:
        counts = ScanCounts(self.rows_read, self.accepted, self.rejected, 0)
        return ScanStart(self.offset, self.row, counts, keys)


def checkpoint_document(checkpoint: Checkpoint, at: str) -> dict[str, Any]:
    """The run item's ``checkpoint``: eight numbers and a time, whatever the file."""
    return {
        "offset": checkpoint.offset,
        "row": checkpoint.row,
        "nextChunk": checkpoint.next_chunk,
        "rowsRead": checkpoint.rows_read,
        "accepted": checkpoint.accepted,
        "rejected": checkpoint.rejected,
        "reportEnd": checkpoint.report_end,
        "logEnd": checkpoint.log_end,
        "part": checkpoint.part,
        "parts": checkpoint.parts,
        "at": at,
    }


@dataclass(frozen=True, slots=True)
class ResumeState:
    """What a resumed pass reads back: the keys before the checkpoint, the chunks its writer was
    about to send, the orders its writer held for the next chunk (and the budget it had learnt),
    and the rows the dead pass reported after it."""

    keys: list[str] = field(default_factory=list)
    resend: list[str] = field(default_factory=list)
    reported: set[int] = field(default_factory=set)
    pending: list[PendingPiece] = field(default_factory=list)
    budget: int | None = None


def _pending_entry(pieces: list[PendingPiece]) -> dict[str, Any]:
    text = "".join(piece.text for piece in pieces).encode("utf-8", "surrogatepass")
    return {
        "pieces": [[piece.runs, piece.order_starts, len(piece.text)] for piece in pieces],
        "z": base64.b64encode(isal_zlib.compress(text, 1)).decode("ascii"),
    }


def _pending_pieces(entry: dict[str, Any]) -> list[PendingPiece]:
    text = isal_zlib.decompress(base64.b64decode(entry["z"])).decode("utf-8", "surrogatepass")
    pieces: list[PendingPiece] = []
    at = 0
    for runs, order_starts, length in entry["pieces"]:
        pieces.append(PendingPiece(runs, order_starts, text[at : at + length]))
        at += length
    return pieces


def _lines(blocks: Iterable[bytes]) -> Iterator[bytes]:
    rest = b""
    for block in blocks:
        rest += block
        *complete, rest = rest.split(b"\n")
        yield from complete
    if rest:
        yield rest


def read_resume_state(
    reports: ReportBlob, report: str, log: str, checkpoint: Checkpoint
) -> ResumeState:
    keys: list[str] = []
    resend: list[str] = []
    pending: list[PendingPiece] = []
    budget: int | None = None
    for line in _lines(reports.read_from(log, 0, checkpoint.log_end)):
        if line.strip():
            entry = json.loads(line)
            if entry.get("part", 0) == checkpoint.part:
                keys.extend(entry["keys"])
                held = entry.get("pending")
                pending = pending[: entry.get("kept", 0)]
                if held is not None:
                    pending.extend(_pending_pieces(held))
                budget = entry.get("budget", budget)
            else:
                pending = []  # a pass over another part: it sent all it held
            resend = list(entry["chunks"])
    # Report lines past the checkpoint's end: chunks' conflicts (rows before the checkpoint's
    # row: only chunks already checkpointed were sent) and what the dead pass appended and
    # did not checkpoint (rows from it on), which must not be listed twice.
    reported: set[int] = set()
    text = io.TextIOWrapper(
        io.BytesIO(b"".join(reports.read_from(report, checkpoint.report_end))),
        encoding="utf-8",
        errors="replace",
        newline="",
    )
    for record in csv.reader(text):
        if record and record[0].isdigit() and int(record[0]) >= checkpoint.row:
            reported.add(int(record[0]))
    return ResumeState(keys, resend, reported, pending, budget)


class FilePassCheckpoints:
    """The scanner's sink and rejection handler for a checkpointed file pass: it packs orders
    with a :class:`ChunkWriter` whose chunks it holds until the checkpoint that covers them is
    written (see the module docstring)."""

    def __init__(
        self,
        *,
        runs: ImportRunRepository,
        reports: ReportBlob,
        send: Callable[[str], None],
        import_id: str,
        run_id: str,
        owner: str,
        report: str,
        log: str,
        start: Checkpoint,
        now: Callable[[], str],
        max_chunk_bytes: int,
        max_chunk_orders: int,
        reported: set[int] | None = None,
        pending: list[PendingPiece] | None = None,
        budget: int | None = None,
        checkpoint_bytes: int = CHECKPOINT_BYTES,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._runs = runs
        self._reports = reports
        self._send = send
        self._import_id = import_id
        self._run_id = run_id
        self._owner = owner
        self._report = report
        self._log = log
        self._now = now
        self._clock = clock
        self._held: list[str] = []
        self.writer = ChunkWriter(
            ChunkEnvelope(import_id, run_id),
            self._held.append,
            max_chunk_bytes,
            max_orders=max_chunk_orders,
            first_number=start.next_chunk,
        )
        if pending or budget is not None:
            self.writer.restore(pending or [], budget)
        # Pieces the writer holds that the resume log has (all of them, after a checkpoint).
        self._logged = self.writer.pending_pieces
        self._every = checkpoint_bytes * max(1, start.parts)
        self._rejections: list[Rejection] = []
        self._reported = reported or set()
        # (first row, rows) of what the writer got, until a checkpoint counts them.
        self._added: deque[tuple[int, int]] = deque()
        self.last = start
        self._last_at = clock()
        self._offsets: LineOffsets | None = None
        self._journal: KeyJournal | None = None
        self.checkpoints = 0

    def attach(self, offsets: LineOffsets, journal: KeyJournal | None) -> None:
        """The scanner's line offsets and key journal."""
        self._offsets = offsets
        self._journal = journal

    # ---------------------------------------------------------------- scanner callbacks

    def add(self, order: ImportedOrder) -> None:
        self.writer.add(order)
        self._added.append((order.rows[0], len(order.rows)))

    def add_lines(
        self, text: str, lines: Sequence[str], starts: Sequence[int], count: int, first_row: int
    ) -> None:
        self.writer.add_lines(text, lines, starts, count, first_row)
        self._added.append((first_row, count))  # plain lines: one row each, no gaps

    def reject(self, rejection: Rejection) -> None:
        self._rejections.append(rejection)

    def _unlisted(self, rejections: list[Rejection]) -> list[Rejection]:
        """Of rejected rows about to be listed, those the pass that died has not listed yet
        (counted either way)."""
        if not self._reported:
            return rejections
        listed = self._reported
        unlisted = [item for item in rejections if item.row not in listed]
        listed.difference_update(item.row for item in rejections)
        return unlisted

    def safe_point(self, line: int) -> None:
        """Every line before ``line`` is judged: checkpoint here if one is due."""
        offsets = self._offsets
        if (
            (offsets is None or offsets.read_to - self.last.offset < self._every)
            and len(self._rejections) < MAX_HELD_REJECTIONS
            and self._clock() - self._last_at < CHECKPOINT_SECONDS
        ):
            return
        self._checkpoint(line)

    # ---------------------------------------------------------------------- the cut

    def finish(self, size: int, next_line: int) -> int:
        """Send the last chunks under a final checkpoint at the end of the file; the number of
        chunks of the run."""
        total = self.writer.close()
        self._checkpoint(_END, offset=size, rows=next_line, keys=False)
        return total

    def end_part(self) -> Checkpoint:
        """Send this pass's last chunks under a checkpoint at the start of the next pass (the
        next part of the key space, from row 1); that checkpoint."""
        self.writer.close()
        self._checkpoint(_END, offset=0, rows=1, keys=False, part=self.last.part + 1)
        return self.last

    def unlisted_before(self, row: int) -> list[Rejection]:
        """The rejected rows before ``row`` not in the report yet, taken out."""
        return self._unlisted(self.rejections_before(row))

    def rejections_before(self, row: int) -> list[Rejection]:
        taken = [item for item in self._rejections if item.row < row]
        self._rejections = [item for item in self._rejections if item.row >= row]
        return taken

    def _accepted_before(self, row: int) -> int:
        accepted = 0
        added = self._added
        while added:
            first, count = added[0]
            if first >= row:
                break
            if first + count <= row:
                accepted += count
                added.popleft()
            else:  # plain lines split by the cut
                accepted += row - first
                added[0] = (row, first + count - row)
                break
        return accepted

    def _checkpoint(
        self,
        row: int,
        *,
        offset: int | None = None,
        keys: bool = True,
        rows: int | None = None,
        part: int | None = None,
    ) -> None:
        last = self.last
        rejections = self.rejections_before(row)
        accepted = last.accepted + self._accepted_before(row)
        rejected = last.rejected + len(rejections)
        report_end = last.report_end
        if unlisted := self._unlisted(rejections):
            report_end = self._reports.append(self._report, report_lines(unlisted))
        new_keys = self._journal.take_before(row) if keys and self._journal is not None else []
        writer = self.writer
        # The pieces logged before that the writer still holds (none once a chunk took them:
        # a chunk takes everything the writer holds), then what it got since.
        kept = self._logged if writer.sent == last.next_chunk else 0
        record: dict[str, Any] = {"part": last.part, "keys": new_keys, "chunks": self._held}
        if kept:
            record["kept"] = kept
        if writer.pending_pieces > kept:
            record["pending"] = _pending_entry(writer.pending(kept))
        record["budget"] = writer.budget
        entry = json.dumps(record, separators=(",", ":"))
        log_end = self._reports.append(self._log, entry.encode("ascii") + b"\n")
        checkpoint = Checkpoint(
            offset=self._offset_of(row) if offset is None else offset,
            row=row if rows is None else rows,
            next_chunk=self.writer.sent,
            rows_read=accepted + rejected,
            accepted=accepted,
            rejected=rejected,
            report_end=report_end,
            log_end=log_end,
            part=last.part if part is None else part,
            parts=last.parts,
        )
        if not self._runs.checkpoint(
            self._import_id,
            self._run_id,
            self._owner,
            checkpoint_document(checkpoint, self._now()),
            self._now(),
        ):
            raise LostFilePassError(self._import_id)
        for message in self._held:
            self._send(message)
        self._held.clear()
        self.last = checkpoint
        self._logged = writer.pending_pieces
        self._last_at = self._clock()
        self.checkpoints += 1
        if offset is None and self._offsets is not None:
            self._offsets.forget_before(row)

    def _offset_of(self, row: int) -> int:
        return self.last.offset if self._offsets is None else self._offsets.offset_of(row)


def report_lines(rejections: Iterable[Rejection]) -> bytes:
    from shared.services.import_files import FORMULA_PREFIXES

    def cell(value: object) -> str:
        text = str(value)
        return "'" + text if text.startswith((*FORMULA_PREFIXES, "\t", "\r")) else text

    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    for rejection in rejections:
        writer.writerow(
            [
                rejection.row if rejection.row else "",
                cell(rejection.external_id[:64]),
                cell(rejection.reason),
            ]
        )
    return buffer.getvalue().encode("utf-8", "replace")
