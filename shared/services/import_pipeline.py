"""The import pipeline: a file pass (blob -> validated chunks on the queue) and a chunk pass
(queue -> orders), with counts that stay exact under retries and redelivery.

Run: a file pass of a version without an unfinished run starts a new run (``runId`` = blob
ETag + a random suffix) and resets the status document; chunks carry the run id, and a chunk of
an older run is ignored. The pass writes a checkpoint after every batch of text it judges
(``shared.services.import_checkpoints``): a pass that dies is resumed from its last one by the
next delivery of the event (or the reconciliation), with the same run id and chunk numbers
going on, so only the rows after the checkpoint are read again. A file pass retried after it
had read the whole file starts a new run and re-sends every chunk; the orders are created again
idempotently (same ids, an existing identical order is *accepted*, not duplicated).

Counts (``shared.repositories.import_runs``): the file pass records ``rowsRead``, its own
rejections (``fileRejected``, added to ``rejected``) and ``chunksTotal``; each chunk is counted
exactly once by a transactional batch that creates its marker item and adds its accepted and
rejected rows to the run item's counters (a redelivery hits the marker: 409, nothing counted
twice). The run item stays the same size whatever the file; rejected rows are listed in the
report blob only. Once ``state`` is ``completed``: ``rowsRead == accepted + rejected``. The run
completes when the last part is written, whichever comes last: the file pass (all chunks
already done) or the last chunk; the conditional ``finish`` lets exactly one of them do it.

Events: the orders of one chunk are created with their events in their outboxes, then all of
them are published together (as few Event Grid requests as its 1 MB limit allows) and each
outbox is cleared; if publishing fails they wait for the outbox relay.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import io
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Final

from pydantic import ValidationError

from shared.errors import IdempotencyKeyReusedError
from shared.models import ImportState, OrderDraft, OrderSource
from shared.observability import get_logger
from shared.patterns import IMPORT_ID_PATTERN
from shared.repositories.import_runs import (
    ChunkRecorded,
    ImportRunRepository,
    StoredRun,
    last_written,
)
from shared.repositories.import_storage import (
    BlobVersion,
    ChunkQueue,
    ImportFiles,
    ReportBlob,
    VersionChangedError,
    report_location,
    report_name,
    resume_log_name,
)
from shared.repositories.orders import StoredOrder
from shared.services.import_checkpoints import (
    LEASE_SECONDS,
    Checkpoint,
    FilePassCheckpoints,
    LostFilePassError,
    ResumeState,
    checkpoint_bytes,
    read_resume_state,
    report_lines,
)
from shared.services.import_events import parse_blob_created, same_etag
from shared.services.import_files import (
    FORMULA_PREFIXES,
    MAX_CHUNK_BYTES,
    MAX_CHUNK_ORDERS,
    READ_CHARS,
    FileRejectedError,
    ImportScanner,
    Rejection,
    file_format_for,
    parse_chunk,
)
from shared.services.import_files.formats import FileFormat
from shared.services.import_files.order_keys import (
    KEY_BUDGET,
    KeyPartition,
    bytes_per_order,
    key_parts,
)
from shared.services.import_files.text import LineOffsets
from shared.services.orders import OrderService

log = get_logger("imports")

# Files larger than this are refused as a whole: not for memory (the same for any size) but for
# time, one scan per part of the key space (docs/IMPORTS.md, "File size cap").
MAX_FILE_BYTES: Final = 1024 * 1024 * 1024
REPORT_HEADER: Final = b"row,external_id,reason\r\n"
REPORT_FLUSH_BYTES: Final = 1024 * 1024
# No order line is shorter than this ("a,b,c,1,1,EUR\n" is 14 bytes).
MIN_ORDER_BYTES: Final = 12
_IMPORT_ID: Final = re.compile(IMPORT_ID_PATTERN)  # it becomes a Cosmos id and a URL segment
CONFLICT_REASON: Final = (
    "an order with this customer_id and external_id already exists with other lines"
)


def utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def is_import_id(name: str) -> bool:
    return bool(_IMPORT_ID.fullmatch(name))  # not match: '$' also matches before a final '\n'


class FileOutcome(StrEnum):
    SENT = "sent"  # chunks sent (or nothing to send): the run completes when they are done
    REJECTED = "rejected"  # the whole file was refused
    SKIPPED = "skipped"  # not an import (nested name, deleted, or this version already done)
    SUPERSEDED = "superseded"  # overwritten while reading: the newer upload's run takes over


class ImportBusyError(Exception):
    """Another file pass holds this run and wrote to it within the lease: the delivery is
    retried (an undeclared error), and takes the run over once the lease has run out."""


class ChunkOutcome(StrEnum):
    APPLIED = "applied"
    DUPLICATE = "duplicate"  # this chunk was already counted (redelivery)
    STALE = "stale"  # belongs to a run that a newer file pass replaced


def _report_cell(value: object) -> str:
    """Report cells are opened in spreadsheets: neutralise formula prefixes."""
    text = str(value)
    if text.startswith((*FORMULA_PREFIXES, "\t", "\r")):
        return "'" + text
    return text


class _ReportWriter:
    """Buffers report lines and appends them in blocks of about REPORT_FLUSH_BYTES."""

    def __init__(self, reports: ReportBlob, name: str) -> None:
        self._reports = reports
        self._name = name
        self._buffer = io.StringIO()
        self._csv = csv.writer(self._buffer, lineterminator="\r\n")

    def add(self, rejection: Rejection) -> None:
        self._csv.writerow(
            [
                rejection.row if rejection.row else "",
                _report_cell(rejection.external_id[:64]),
                _report_cell(rejection.reason),
            ]
        )
        if self._buffer.tell() >= REPORT_FLUSH_BYTES:
            self.flush()

    def flush(self) -> None:
        data = self._buffer.getvalue().encode("utf-8", "replace")
        if data:
            self._reports.append(self._name, data)
        self._buffer.seek(0)
        self._buffer.truncate()


@dataclass(frozen=True, slots=True)
class ImportPipeline:
    runs: ImportRunRepository
    files: ImportFiles
    reports: ReportBlob
    queue: ChunkQueue
    orders: Callable[[], OrderService]
    max_chunk_bytes: int = MAX_CHUNK_BYTES
    max_chunk_orders: int = MAX_CHUNK_ORDERS
    lease_seconds: float = LEASE_SECONDS
    key_budget: int = KEY_BUDGET
    read_chars: int = READ_CHARS  # text judged at a time (a batch of CSV lines)

    # ----------------------------------------------------------------------- file pass

    def import_event(self, body: str | bytes) -> FileOutcome:
        """A file pass for the blob a ``BlobCreated`` event names (only a reference travels: the
        content is read in ranges pinned to the event's ETag). InvalidEventError when the
        message is not an event."""
        event = parse_blob_created(body)
        if event is None:
            log.warning("ignoring an event that is not a BlobCreated event of the imports")
            return FileOutcome.SKIPPED
        return self.import_file(event.name, etag=event.etag)

    def _version_to_import(self, name: str, etag: str | None) -> BlobVersion | FileOutcome:
        if not is_import_id(name):
            log.warning("ignoring blob %r: imports are files at the container root", name[:300])
            return FileOutcome.SKIPPED
        version = self.files.version(name)
        if version is None:
            log.info("import %s: the blob is gone", name)
            return FileOutcome.SKIPPED
        if etag is not None and not same_etag(etag, version.etag):
            log.info("import %s: overwritten since its event; the newer upload takes over", name)
            return FileOutcome.SUPERSEDED
        return version

    def import_file(self, name: str, *, etag: str | None = None) -> FileOutcome:
        """``etag``: the version an event announced; when the blob has another one by now, that
        newer version has its own event, and this one is not imported. A run of this version
        whose file pass died is resumed from its checkpoint; ImportBusyError while another
        pass holds it (the delivery is retried)."""
        version = self._version_to_import(name, etag)
        if isinstance(version, FileOutcome):
            return version
        existing = self.runs.read(name)
        if (
            existing is not None
            and existing.document.get("blobEtag") == version.etag
            and existing.document.get("state") in {ImportState.COMPLETED, ImportState.FAILED}
        ):
            log.info("import %s: this version was already imported", name)
            return FileOutcome.SKIPPED
        owner = uuid.uuid4().hex
        resumed = self._take_over(name, version, existing, owner)
        if resumed is not None:
            run_id, checkpoint = resumed
            return self._file_pass(name, version, run_id, owner, checkpoint)
        run_id = f"{version.etag.strip('"')}-{uuid.uuid4().hex[:12]}"
        now = utc_now()
        self.runs.start(
            {
                "id": name,
                "importId": name,
                "state": ImportState.PROCESSING.value,
                "runId": run_id,
                "blobEtag": version.etag,
                "sizeBytes": version.size,
                "rowsRead": 0,
                "accepted": 0,
                "rejected": 0,
                "fileRejected": 0,
                "chunksTotal": None,
                "chunksDone": 0,
                "reportLocation": report_location(name),
                "reason": None,
                "owner": owner,
                "checkpoint": None,
                "createdAt": existing.document.get("createdAt", now) if existing else now,
                "updatedAt": now,
            }
        )
        self.reports.create(report_name(name), REPORT_HEADER)
        self.reports.create(resume_log_name(run_id), b"")
        if existing is not None and isinstance(existing.document.get("runId"), str):
            # The replaced run's log, if its pass never finished (a pass still writing to it
            # fails on its next append, and its run is replaced anyway).
            self.reports.delete(resume_log_name(existing.document["runId"]))
        start = Checkpoint.at_start(report_end=len(REPORT_HEADER))
        return self._file_pass(name, version, run_id, owner, start, fresh=True)

    def _take_over(
        self, name: str, version: BlobVersion, existing: StoredRun | None, owner: str
    ) -> tuple[str, Checkpoint] | None:
        """The run and checkpoint to resume, when this version's file pass died after a
        checkpoint; None to start a new run."""
        if existing is None:
            return None
        document = existing.document
        if (
            document.get("blobEtag") != version.etag
            or document.get("state") != ImportState.PROCESSING.value
            or document.get("chunksTotal") is not None
        ):
            return None  # another version, or the file pass finished (chunks carry on)
        run_id = str(document.get("runId"))
        holder = document.get("owner")
        written = last_written(document)
        if holder is not None and (
            written is None or datetime.now(UTC) - written < timedelta(seconds=self.lease_seconds)
        ):
            raise ImportBusyError(name)
        checkpoint = Checkpoint.parse(document.get("checkpoint"))
        if checkpoint is None:
            return None  # it died before its first checkpoint: start over
        if self.runs.take_over(name, run_id, existing, owner, utc_now()) is None:
            raise ImportBusyError(name)  # another delivery took it over first
        log.info(
            "import %s: resuming run %s at row %d (byte %d, chunk %d)",
            name,
            run_id,
            checkpoint.row,
            checkpoint.offset,
            checkpoint.next_chunk,
            extra={"importId": name, "resumeRow": checkpoint.row},
        )
        return run_id, checkpoint

    def _file_pass(
        self,
        name: str,
        version: BlobVersion,
        run_id: str,
        owner: str,
        checkpoint: Checkpoint,
        *,
        fresh: bool = False,
    ) -> FileOutcome:
        file_format = file_format_for(name)
        state = ResumeState()
        if not fresh:
            state = read_resume_state(
                self.reports, report_name(name), resume_log_name(run_id), checkpoint
            )
            for message in state.resend:
                self.queue.send(message)  # the dead pass may not have sent them
        keys = state.keys
        checkpoints = self._checkpoints(name, run_id, owner, checkpoint, state)
        try:
            if file_format is None:
                raise FileRejectedError("unsupported file type: name it .csv or .jsonl")
            if version.size > MAX_FILE_BYTES:
                raise FileRejectedError(f"the file is larger than {MAX_FILE_BYTES} bytes")
            if fresh:
                parts = self._key_parts(name, version, file_format)
                checkpoints.last = dataclasses.replace(checkpoint, parts=parts)
            while True:
                start = checkpoints.last
                partition = KeyPartition(start.part, start.parts) if start.parts > 1 else None
                scanner = ImportScanner(
                    file_format,
                    checkpoints,
                    checkpoints.reject,
                    track=True,
                    partition=partition,
                    read_chars=self.read_chars,
                )
                offsets = scanner.offsets or LineOffsets()  # tracked: never the fallback
                checkpoints.attach(offsets, scanner.key_journal)
                resuming = start.row > 1
                scanner.scan(
                    self.files.read(name, version, start.offset if resuming else 0),
                    start.scan_start(keys) if resuming else None,
                    checkpoints.safe_point,
                )
                keys = []
                if start.part + 1 < start.parts:
                    # The next part of the key space: the file again, from its first row.
                    next_part = checkpoints.end_part()
                    checkpoints = self._checkpoints(name, run_id, owner, next_part, ResumeState())
                    continue
                chunks_total = checkpoints.finish(version.size, offsets.next_line)
                break
        except FileRejectedError as rejected:
            reason = rejected.reason
            self.reports.append(
                report_name(name),
                report_lines([*checkpoints.unlisted_before(1 << 62), Rejection(0, "", reason)]),
            )
            self._finish_file(name, run_id, rows_read=0, file_rejected=0, chunks=0, reason=reason)
            self.reports.delete(resume_log_name(run_id))
            log.warning("import %s rejected as a whole: %s", name, reason)
            return FileOutcome.REJECTED
        except VersionChangedError:
            log.info("import %s was overwritten while being read; the new upload takes over", name)
            return FileOutcome.SUPERSEDED
        except LostFilePassError:
            log.warning("import %s: another file pass took the run over; this one stops", name)
            return FileOutcome.SUPERSEDED
        except BaseException:
            with contextlib.suppress(Exception):
                self.runs.release(name, run_id, owner, utc_now())  # the retry resumes at once
            raise
        counts = checkpoints.last  # the whole file's counts, across passes and resumptions
        self._finish_file(
            name,
            run_id,
            rows_read=counts.rows_read,
            file_rejected=counts.rejected,
            chunks=chunks_total,
            reason=None,
        )
        self.reports.delete(resume_log_name(run_id))
        log.info(
            "import %s read: %d rows, %d chunks (%d passes), %d rows rejected",
            name,
            counts.rows_read,
            chunks_total,
            counts.parts,
            counts.rejected,
            extra={"importId": name, "rowsRead": counts.rows_read, "rowsRejected": counts.rejected},
        )
        return FileOutcome.SENT

    def _checkpoints(
        self, name: str, run_id: str, owner: str, start: Checkpoint, state: ResumeState
    ) -> FilePassCheckpoints:
        return FilePassCheckpoints(
            runs=self.runs,
            reports=self.reports,
            send=self.queue.send,
            import_id=name,
            run_id=run_id,
            owner=owner,
            report=report_name(name),
            log=resume_log_name(run_id),
            start=start,
            now=utc_now,
            max_chunk_bytes=self.max_chunk_bytes,
            max_chunk_orders=self.max_chunk_orders,
            checkpoint_bytes=checkpoint_bytes(self.read_chars),
            reported=state.reported,
            pending=state.pending,
            budget=state.budget,
        )

    def _key_parts(self, name: str, version: BlobVersion, file_format: FileFormat) -> int:
        """Passes over the file so that none holds more than ``key_budget`` order keys, from
        the bytes an order takes in its first range (a file too small to reach the budget
        even with one order a line is not read for it)."""
        if version.size <= self.key_budget * MIN_ORDER_BYTES:
            return 1
        head = next(iter(self.files.read(name, version)), b"")
        per_order = bytes_per_order(head, csv_format=file_format is FileFormat.CSV)
        return key_parts(version.size, per_order, self.key_budget)

    def _finish_file(
        self,
        name: str,
        run_id: str,
        *,
        rows_read: int,
        file_rejected: int,
        chunks: int,
        reason: str | None,
    ) -> None:
        stored = self.runs.record_file(
            name,
            run_id,
            rows_read=rows_read,
            file_rejected=file_rejected,
            chunks_total=chunks,
            at=utc_now(),
            end_file_pass=True,
        )
        if stored is None:
            return  # a newer file pass replaced this run
        if reason is not None:
            self.runs.finish(name, run_id, ImportState.FAILED.value, reason, utc_now())
            return
        self._complete_if_done(name, run_id, stored)

    def _complete_if_done(self, name: str, run_id: str, stored: StoredRun | None) -> None:
        """Finish the run when the file pass and every chunk are counted (whoever sees it
        first; ``finish`` is conditional, so only one of them changes the state)."""
        if stored is None:
            return
        document = stored.document
        total = document.get("chunksTotal")
        if (
            document.get("state") == ImportState.PROCESSING.value
            and total is not None
            and int(document.get("chunksDone") or 0) >= int(total)
        ):
            self.runs.finish(name, run_id, ImportState.COMPLETED.value, None, utc_now())

    # ---------------------------------------------------------------------- chunk pass

    def process_chunk(self, body: str | bytes) -> ChunkOutcome:
        chunk = parse_chunk(body)
        name, run_id = chunk.import_id, chunk.run_id
        run = self.runs.read(name)
        if run is None or run.document.get("runId") != run_id:
            log.info("chunk %s of import %s belongs to a replaced run", chunk.number, name)
            return ChunkOutcome.STALE
        if self.runs.chunk_counted(name, run_id, chunk.number):
            # Counted before; a crash may have come between counting and finishing.
            self._complete_if_done(name, run_id, run)
            return ChunkOutcome.DUPLICATE
        service = self.orders()
        accepted = 0
        placed: list[StoredOrder] = []
        conflicts: list[Rejection] = []
        invalid: list[Rejection] = []
        for order in chunk.orders:
            customer_id, external_id, rows = order.customer_id, order.external_id, order.rows
            try:
                draft = OrderDraft.model_validate(order.body())
            except ValidationError:
                invalid.extend(
                    Rejection(row, external_id, "invalid order in chunk") for row in rows
                )
                continue
            try:
                result = service.place(
                    customer_id,
                    draft,
                    source=OrderSource.IMPORT,
                    external_id=external_id,
                    publish=False,
                )
            except IdempotencyKeyReusedError:
                conflicts.extend(Rejection(row, external_id, CONFLICT_REASON) for row in rows)
                continue
            placed.append(result.order)
            accepted += len(rows)
        # The chunk's events together (an order found again publishes a pending event too).
        service.publish_pending(placed)
        rejected = conflicts + invalid
        if rejected:
            # Appended before the chunk is counted: a crash in between lists these rows twice
            # in the report, never zero times.
            writer = _ReportWriter(self.reports, report_name(name))
            for rejection in sorted(rejected, key=lambda item: item.row):
                writer.add(rejection)
            writer.flush()
        recorded = self.runs.record_chunk(
            name, run_id, chunk.number, accepted=accepted, rejected=len(rejected), at=utc_now()
        )
        if recorded.outcome is ChunkRecorded.STALE:
            return ChunkOutcome.STALE
        if recorded.outcome is ChunkRecorded.ALREADY_COUNTED:
            self._complete_if_done(name, run_id, self.runs.read(name))
            return ChunkOutcome.DUPLICATE
        self._complete_if_done(name, run_id, recorded.run)
        return ChunkOutcome.APPLIED
