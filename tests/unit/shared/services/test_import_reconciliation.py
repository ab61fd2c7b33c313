"""Which uploads the reconciliation starts, and why (fakes for storage and runs; the real
services are exercised in tests/integration/test_import_reconciliation.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from shared.repositories.import_runs import StoredRun
from shared.repositories.import_storage import ListedBlob
from shared.services.import_events import parse_blob_created, same_etag
from shared.services.import_pipeline import is_import_id
from shared.services.import_reconciliation import ImportReconciler, Reason

NOW = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)


class Runs:
    """Reads only: what the reconciliation uses of the run repository."""

    def __init__(self, documents: dict[str, dict[str, Any]]) -> None:
        self.documents = documents

    def read(self, import_id: str) -> StoredRun | None:
        document = self.documents.get(import_id)
        return StoredRun(document, "etag") if document is not None else None


class Listing:
    def __init__(self, blobs: list[ListedBlob]) -> None:
        self.blobs = blobs

    def list_files(self) -> list[ListedBlob]:
        return self.blobs


class Queue:
    def __init__(self) -> None:
        self.sent: list[str] = []

    def send(self, message: str) -> None:
        self.sent.append(message)


def blob(name: str, age: timedelta, etag: str = '"0x1"') -> ListedBlob:
    return ListedBlob(name, etag, 10, NOW - age, f"http://x/order-imports/{name}")


def run(state: str, etag: str = '"0x1"', *, total: int | None = None, age: timedelta) -> Any:
    written = (NOW - age).isoformat().replace("+00:00", "Z")
    return {"state": state, "blobEtag": etag, "chunksTotal": total, "updatedAt": written}


@pytest.mark.parametrize(
    ("listed", "document", "expected"),
    [
        (blob("a.csv", timedelta(minutes=1)), None, None),  # the event may still come
        (blob("a.csv", timedelta(minutes=6)), None, Reason.NO_RUN),
        (
            blob("a.csv", timedelta(minutes=6), '"0x2"'),
            run("completed", age=timedelta(hours=1)),
            Reason.NEWER_VERSION,
        ),
        (blob("a.csv", timedelta(hours=2)), run("completed", age=timedelta(hours=1)), None),
        (blob("a.csv", timedelta(hours=2)), run("failed", age=timedelta(hours=1)), None),
        (blob("a.csv", timedelta(hours=2)), run("processing", age=timedelta(minutes=3)), None),
        (
            blob("a.csv", timedelta(hours=2)),
            run("processing", age=timedelta(minutes=16)),
            Reason.STUCK,
        ),
        (
            blob("a.csv", timedelta(hours=2)),
            run("processing", total=4, age=timedelta(hours=1)),
            None,
        ),  # chunks carry on
        (blob("nested/a.csv", timedelta(hours=2)), None, None),  # not an import
    ],
)
def test_what_is_started(
    listed: ListedBlob, document: dict[str, Any] | None, expected: Reason | None
) -> None:
    queue = Queue()
    documents = {listed.name: document} if document is not None else {}
    runs: Any = Runs(documents)
    reconciler = ImportReconciler(Listing([listed]), runs, queue, is_import_id)
    started = reconciler.reconcile(NOW)
    assert started.get(listed.name) is expected
    assert len(queue.sent) == (0 if expected is None else 1)
    if expected is not None:
        event = parse_blob_created(queue.sent[0])
        assert event is not None
        assert event.name == listed.name
        assert event.etag is not None
        assert same_etag(event.etag, listed.etag)
