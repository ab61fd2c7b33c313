"""The import pipeline: a file pass (blob -> validated chunks on the queue) and a chunk pass
(queue -> orders), with counts that stay exact under retries and redelivery.

Run: every file pass starts a new run (``runId`` = blob ETag + a random suffix) and resets the
status document; chunks carry the run id, and a chunk of an older run is ignored. A retried
file pass therefore re-sends every chunk under a new run, and the orders are created again
idempotently (same ids, an existing identical order is *accepted*, not duplicated).

Counts: the file pass records ``rowsRead``, its own rejections (``fileRejected``) and
``chunksTotal``; each chunk records its result once under its number in ``chunks`` (written
with the ETag it read, so two deliveries of one chunk cannot both count). ``accepted`` and
``rejected`` are always recomputed from those parts, never incremented, so once ``state`` is
``completed``: ``rowsRead == accepted + rejected``. The run completes when the last part is
written, whichever comes last: the file pass (all chunks already done) or the last chunk.
"""

from __future__ import annotations

import copy
import csv
import io
import random
import re
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Final

from pydantic import ValidationError

from shared.errors import DependencyUnavailableError, IdempotencyKeyReusedError
from shared.errors import PreconditionFailedError as _Stale
from shared.models import ImportState, OrderDraft, OrderSource
from shared.observability import get_logger
from shared.patterns import IMPORT_ID_PATTERN
from shared.repositories.import_runs import ImportRunRepository, StoredRun
from shared.repositories.import_storage import (
    ChunkQueue,
    ImportFiles,
    ReportBlob,
    VersionChangedError,
    report_location,
    report_name,
)
from shared.services.import_files import (
    FORMULA_PREFIXES,
    MAX_CHUNK_BYTES,
    ChunkEnvelope,
    ChunkWriter,
    FileRejectedError,
    ImportScanner,
    Rejection,
    file_format_for,
    parse_chunk,
)
from shared.services.orders import OrderService

log = get_logger("imports")

# Files larger than this are refused as a whole (a partner file is megabytes, not gigabytes).
MAX_FILE_BYTES: Final = 1024 * 1024 * 1024
REPORT_HEADER: Final = b"row,external_id,reason\r\n"
REPORT_FLUSH_BYTES: Final = 1024 * 1024
UPDATE_ATTEMPTS: Final = 25
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


def _recompute(document: dict[str, Any]) -> None:
    chunks: dict[str, list[Any]] = document.setdefault("chunks", {})
    document["accepted"] = sum(int(entry[0]) for entry in chunks.values())
    document["rejected"] = int(document.get("fileRejected") or 0) + sum(
        int(entry[1]) for entry in chunks.values()
    )
    document["chunksDone"] = len(chunks)
    total = document.get("chunksTotal")
    if (
        document.get("state") == ImportState.PROCESSING.value
        and total is not None
        and len(chunks) >= int(total)
    ):
        document["state"] = ImportState.COMPLETED.value
    document["updatedAt"] = utc_now()


@dataclass(frozen=True, slots=True)
class ImportPipeline:
    runs: ImportRunRepository
    files: ImportFiles
    reports: ReportBlob
    queue: ChunkQueue
    orders: Callable[[], OrderService]
    max_chunk_bytes: int = MAX_CHUNK_BYTES

    # ----------------------------------------------------------------------- file pass

    def import_file(self, name: str) -> FileOutcome:
        if not is_import_id(name):
            log.warning("ignoring blob %r: imports are files at the container root", name[:300])
            return FileOutcome.SKIPPED
        version = self.files.version(name)
        if version is None:
            log.info("import %s: the blob is gone", name)
            return FileOutcome.SKIPPED
        existing = self.runs.read(name)
        if (
            existing is not None
            and existing.document.get("blobEtag") == version.etag
            and existing.document.get("state") in {ImportState.COMPLETED, ImportState.FAILED}
        ):
            log.info("import %s: this version was already imported", name)
            return FileOutcome.SKIPPED
        run_id = f"{version.etag.strip('"')}-{uuid.uuid4().hex[:12]}"
        now = utc_now()
        self.runs.upsert(
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
                "chunks": {},
                "reportLocation": report_location(name),
                "reason": None,
                "createdAt": existing.document.get("createdAt", now) if existing else now,
                "updatedAt": now,
            }
        )
        self.reports.create(report_name(name), REPORT_HEADER)
        report = _ReportWriter(self.reports, report_name(name))
        file_format = file_format_for(name)
        writer = ChunkWriter(ChunkEnvelope(name, run_id), self.queue.send, self.max_chunk_bytes)
        try:
            if file_format is None:
                raise FileRejectedError("unsupported file type: name it .csv or .jsonl")
            if version.size > MAX_FILE_BYTES:
                raise FileRejectedError(f"the file is larger than {MAX_FILE_BYTES} bytes")
            scanner = ImportScanner(file_format, writer, report.add)
            counts = scanner.scan(self.files.read(name, version))
            chunks_total = writer.close()
        except FileRejectedError as rejected:
            report.add(Rejection(0, "", rejected.reason))
            report.flush()
            self._finish_file(
                name, run_id, rows_read=0, file_rejected=0, chunks=0, reason=rejected.reason
            )
            log.warning("import %s rejected as a whole: %s", name, rejected.reason)
            return FileOutcome.REJECTED
        except VersionChangedError:
            log.info("import %s was overwritten while being read; the new upload takes over", name)
            return FileOutcome.SUPERSEDED
        report.flush()
        self._finish_file(
            name,
            run_id,
            rows_read=counts.rows_read,
            file_rejected=counts.rejected,
            chunks=chunks_total,
            reason=None,
        )
        log.info(
            "import %s read: %d rows, %d orders in %d chunks, %d rows rejected",
            name,
            counts.rows_read,
            counts.orders,
            chunks_total,
            counts.rejected,
            extra={"importId": name, "rowsRead": counts.rows_read, "rowsRejected": counts.rejected},
        )
        return FileOutcome.SENT

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
        def change(document: dict[str, Any]) -> None:
            document["rowsRead"] = rows_read
            document["fileRejected"] = file_rejected
            document["chunksTotal"] = chunks
            if reason is not None:
                document["state"] = ImportState.FAILED.value
                document["reason"] = reason
            _recompute(document)

        self._update(name, run_id, change)

    # ---------------------------------------------------------------------- chunk pass

    def process_chunk(self, body: str | bytes) -> ChunkOutcome:
        chunk = parse_chunk(body)
        key = str(chunk.number)
        run = self.runs.read(chunk.import_id)
        if run is None or run.document.get("runId") != chunk.run_id:
            log.info("chunk %s of import %s belongs to a replaced run", key, chunk.import_id)
            return ChunkOutcome.STALE
        if key in (run.document.get("chunks") or {}):
            return ChunkOutcome.DUPLICATE
        service = self.orders()
        accepted = 0
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
                service.place(
                    customer_id, draft, source=OrderSource.IMPORT, external_id=external_id
                )
            except IdempotencyKeyReusedError:
                conflicts.extend(Rejection(row, external_id, CONFLICT_REASON) for row in rows)
                continue
            accepted += len(rows)
        rejected = conflicts + invalid
        if rejected:
            # Appended before the chunk is recorded: a crash in between lists these rows twice
            # in the report, never zero times.
            writer = _ReportWriter(self.reports, report_name(chunk.import_id))
            for rejection in sorted(rejected, key=lambda item: item.row):
                writer.add(rejection)
            writer.flush()
        outcome = ChunkOutcome.APPLIED

        def change(document: dict[str, Any]) -> None:
            nonlocal outcome
            chunks = document.setdefault("chunks", {})
            if key in chunks:
                outcome = ChunkOutcome.DUPLICATE
                return
            chunks[key] = [accepted, len(rejected)]
            _recompute(document)

        if not self._update(chunk.import_id, chunk.run_id, change):
            return ChunkOutcome.STALE
        return outcome

    # --------------------------------------------------------------------- status doc

    def _update(self, name: str, run_id: str, change: Callable[[dict[str, Any]], None]) -> bool:
        """Apply ``change`` to the run's document with optimistic concurrency; False when the
        run was replaced by a newer one."""
        for attempt in range(UPDATE_ATTEMPTS):
            stored: StoredRun | None = self.runs.read(name)
            if stored is None or stored.document.get("runId") != run_id:
                return False
            document = copy.deepcopy(stored.document)
            change(document)
            if document == stored.document:
                return True
            try:
                self.runs.replace(document, stored.etag)
            except _Stale:
                # Chunks of one import finish together: back off a little, with jitter.
                time.sleep(random.uniform(0, 0.02 * (attempt + 1)))  # noqa: S311
                continue
            return True
        raise DependencyUnavailableError("imports", f"import {name} is too contended to update")
