"""Import status, as the import pipeline records it in the ``imports`` container, and the row
counts of each finished run as metrics."""

from __future__ import annotations

from typing import Any, Final

from shared.metrics import IMPORT_ROWS_ACCEPTED, IMPORT_ROWS_REJECTED, add_to_counter
from shared.models import ImportState, ImportStatus
from shared.observability import get_logger
from shared.repositories.import_runs import ImportRunRepository, StoredRun
from shared.repositories.imports import ImportStatusRepository

log = get_logger("imports")

FINAL_STATES: Final = frozenset({ImportState.COMPLETED.value, ImportState.FAILED.value})
# Set on a run document by the write that finishes the run: that write is ETag-guarded, so the
# counts of a run are reported exactly once, however often its chunks are redelivered.
COUNTS_REPORTED: Final = "countsReported"


class ImportStatusService:
    def __init__(self, imports: ImportStatusRepository) -> None:
        self._imports = imports

    def get(self, import_id: str) -> ImportStatus:
        return ImportStatus.model_validate(self._imports.get(import_id))


class ImportRunMetrics:
    """An :class:`ImportRunRepository` that reports rows accepted and rejected when a run's
    status becomes final (``completed`` or ``failed``). A new run starts with a fresh document
    (``upsert``), so a re-import is counted again, as it creates or rejects rows again."""

    def __init__(self, runs: ImportRunRepository) -> None:
        self._runs = runs

    def read(self, import_id: str) -> StoredRun | None:
        return self._runs.read(import_id)

    def upsert(self, document: dict[str, Any]) -> StoredRun:
        return self._runs.upsert(document)

    def replace(self, document: dict[str, Any], etag: str) -> StoredRun:
        finishing = document.get("state") in FINAL_STATES and not document.get(COUNTS_REPORTED)
        if not finishing:
            return self._runs.replace(document, etag)
        saved = self._runs.replace({**document, COUNTS_REPORTED: True}, etag)
        self._report(saved.document)
        return saved

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
