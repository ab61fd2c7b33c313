"""Import status, as the import pipeline records it in the ``imports`` container, and the row
counts of each finished run as metrics."""

from __future__ import annotations

from typing import Any, Final

from shared.metrics import IMPORT_ROWS_ACCEPTED, IMPORT_ROWS_REJECTED, add_to_counter
from shared.models import ImportState, ImportStatus
from shared.observability import get_logger
from shared.repositories.import_runs import ChunkResult, ImportRunRepository, StoredRun
from shared.repositories.imports import ImportStatusRepository

log = get_logger("imports")

FINAL_STATES: Final = frozenset({ImportState.COMPLETED.value, ImportState.FAILED.value})


class ImportStatusService:
    def __init__(self, imports: ImportStatusRepository) -> None:
        self._imports = imports

    def get(self, import_id: str) -> ImportStatus:
        return ImportStatus.model_validate(self._imports.get(import_id))


class ImportRunMetrics:
    """An :class:`ImportRunRepository` that reports rows accepted and rejected when a run's
    status becomes final (``completed`` or ``failed``). Finishing is conditional (only one
    writer moves a run out of ``processing``), so a run's counts are reported exactly once,
    however often its chunks are redelivered; a re-import is a new run and is counted again, as
    it creates or rejects rows again."""

    def __init__(self, runs: ImportRunRepository) -> None:
        self._runs = runs

    def read(self, import_id: str) -> StoredRun | None:
        return self._runs.read(import_id)

    def start(self, document: dict[str, Any]) -> StoredRun:
        return self._runs.start(document)

    def record_file(
        self,
        import_id: str,
        run_id: str,
        *,
        rows_read: int,
        file_rejected: int,
        chunks_total: int,
        at: str,
        end_file_pass: bool = False,
    ) -> StoredRun | None:
        return self._runs.record_file(
            import_id,
            run_id,
            rows_read=rows_read,
            file_rejected=file_rejected,
            chunks_total=chunks_total,
            at=at,
            end_file_pass=end_file_pass,
        )

    def chunk_counted(self, import_id: str, run_id: str, number: int) -> bool:
        return self._runs.chunk_counted(import_id, run_id, number)

    def record_chunk(
        self, import_id: str, run_id: str, number: int, *, accepted: int, rejected: int, at: str
    ) -> ChunkResult:
        return self._runs.record_chunk(
            import_id, run_id, number, accepted=accepted, rejected=rejected, at=at
        )

    def checkpoint(
        self, import_id: str, run_id: str, owner: str, checkpoint: dict[str, Any], at: str
    ) -> bool:
        return self._runs.checkpoint(import_id, run_id, owner, checkpoint, at)

    def take_over(
        self, import_id: str, run_id: str, seen: StoredRun, owner: str, at: str
    ) -> StoredRun | None:
        return self._runs.take_over(import_id, run_id, seen, owner, at)

    def release(self, import_id: str, run_id: str, owner: str, at: str) -> None:
        self._runs.release(import_id, run_id, owner, at)

    def finish(
        self, import_id: str, run_id: str, state: str, reason: str | None, at: str
    ) -> StoredRun | None:
        finished = self._runs.finish(import_id, run_id, state, reason, at)
        if finished is not None:
            self._report(finished.document)
        return finished

    @staticmethod
    def _report(run: dict[str, Any]) -> None:
        import_id = str(run.get("importId") or run.get("id"))
        state = str(run["state"])
        rows_read = int(run.get("rowsRead") or 0)
        for metric, outcome in (
            (IMPORT_ROWS_ACCEPTED, "accepted"),
            (IMPORT_ROWS_REJECTED, "rejected"),
        ):
            rows = int(run.get(outcome) or 0)
            add_to_counter(
                metric,
                rows,
                f"import {import_id} {state}: {rows} rows {outcome}",
                attributes={"state": state},
                fields={"importId": import_id, "rowsRead": rows_read},
                logger=log,
            )
