"""Reconciliation of imports: uploads whose event never arrived, and file passes that died.

Event Grid gives up after its retry window (24 hours, then the event is dead-lettered) and does
not publish events for blobs written before the subscription existed; an instance can also be
recycled in the middle of a file pass after its queue message was lost to the poison queue.
Every timer period (``IMPORT_RECONCILE_SCHEDULE``) :class:`ImportReconciler` lists the imports
container and, for each file at the container root older than a grace period (so the normal
event gets its chance first):

- no import run, or a run of another version of the blob (an overwrite whose event was lost):
  the import is *started*;
- a run of this version still ``processing`` whose file pass has not finished (``chunksTotal``
  unset) and whose run item was not written for longer than the stuck timeout (longer than the
  function timeout, so the pass cannot still be running; a live pass writes a checkpoint every
  few seconds): the import is *resumed* from the run's last checkpoint (restarted from row 1
  only when the pass died before its first one, see ``shared.services.import_checkpoints``).

Starting means writing the same ``Microsoft.Storage.BlobCreated`` event Event Grid would have
written to ``order-import-events`` (Event Grid schema, only a reference to the blob): the
queue-triggered file pass then runs with its usual retries and poison queue, and a duplicate
of an event that did arrive late is harmless (a version already imported is skipped; a pass
that finds the run held by a live pass retries later, one that finds it silent past the lease
takes it over and resumes it). Each start is
counted in the metric ``orderflow.imports.reconciled`` (attribute ``reason``), which
infra/modules/alerts.bicep alerts on: events should not get lost.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any, Final, Protocol

from shared.models import ImportState
from shared.names import IMPORTS_BLOB_CONTAINER
from shared.observability import get_logger
from shared.repositories.import_runs import ImportRunRepository, last_written
from shared.repositories.import_storage import ListedBlob
from shared.services.import_events import BLOB_CREATED, same_etag, subject_prefix

log = get_logger("imports")

DEFAULT_GRACE: Final = timedelta(minutes=5)
# host.json's functionTimeout is 10 minutes: a file pass silent for longer has died.
DEFAULT_STUCK_AFTER: Final = timedelta(minutes=15)


class Reason(StrEnum):
    NO_RUN = "no_run"  # the upload has no import run at all
    NEWER_VERSION = "newer_version"  # the run is of an older version of the blob
    STUCK = "stuck"  # the file pass of this version died before it finished: resumed


class ImportListing(Protocol):
    def list_files(self) -> Iterable[ListedBlob]: ...


class EventQueue(Protocol):
    def send(self, message: str) -> None: ...


def blob_created_event(blob: ListedBlob, container: str = IMPORTS_BLOB_CONTAINER) -> str:
    """The event Event Grid writes for ``blob`` (Event Grid schema, one event, JSON)."""
    event: dict[str, Any] = {
        "topic": "",  # not known to the app; the file pass reads only subject and data
        "subject": subject_prefix(container) + blob.name,
        "eventType": BLOB_CREATED,
        "id": str(uuid.uuid4()),
        "eventTime": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
        "data": {
            "api": "Reconcile",
            "eTag": blob.etag,
            "contentLength": blob.size,
            "blobType": "BlockBlob",
            "url": blob.url,
        },
        "dataVersion": "",
        "metadataVersion": "1",
    }
    return json.dumps(event, separators=(",", ":"))


@dataclass(frozen=True, slots=True)
class ImportReconciler:
    listing: ImportListing
    runs: ImportRunRepository
    events: EventQueue
    is_import_id: Callable[[str], bool]
    grace: timedelta = DEFAULT_GRACE
    stuck_after: timedelta = DEFAULT_STUCK_AFTER

    def reason_for(self, blob: ListedBlob, now: datetime) -> Reason | None:
        if now - blob.last_modified < self.grace or not self.is_import_id(blob.name):
            return None
        stored = self.runs.read(blob.name)
        if stored is None:
            return Reason.NO_RUN
        run = stored.document
        if not same_etag(str(run.get("blobEtag") or ""), blob.etag):
            return Reason.NEWER_VERSION
        if run.get("state") != ImportState.PROCESSING.value or run.get("chunksTotal") is not None:
            return None  # final, or the file pass finished and the chunks carry on
        written = last_written(run)
        if written is not None and now - written < self.stuck_after:
            return None
        return Reason.STUCK

    def reconcile(self, now: datetime | None = None) -> dict[str, Reason]:
        """Start or resume every import that needs it; what was started, and why."""
        from shared.metrics import IMPORTS_RECONCILED, add_to_counter

        moment = now or datetime.now(UTC)
        started: dict[str, Reason] = {}
        for blob in self.listing.list_files():
            reason = self.reason_for(blob, moment)
            if reason is None:
                continue
            self.events.send(blob_created_event(blob))
            started[blob.name] = reason
            add_to_counter(
                IMPORTS_RECONCILED,
                1,
                f"import {blob.name} started by the reconciliation ({reason.value})",
                attributes={"reason": reason.value},
                fields={"importId": blob.name},
                logger=log,
            )
        return started
