"""Import runs in the ``imports`` container (partition key ``/importId``): one constant-size run
item per import plus one small marker item per chunk counted, in the run's partition.

The **run item** (id = the import id) holds the status the API shows (``state``, ``rowsRead``,
``accepted``, ``rejected``, ``chunksTotal``, ``chunksDone``, ``reportLocation``, ``reason``) and
``runId`` (the file pass being counted), ``fileRejected`` (rows the file pass rejected). Its
size does not depend on the file: counters are patched, never recomputed from a list, so the
file pass adds its own fields by patch too: ``owner`` (the token of the file pass that holds
the run; a checkpoint write is conditional on it) and ``checkpoint`` (a fixed set of numbers:
where a resumed pass starts, see ``shared.services.import_pipeline``).

A **chunk is counted exactly once** by one transactional batch: create the marker item
``chunk:<runId>:<n>`` (a redelivered chunk hits 409 and the batch changes nothing) + patch the
run item with ``incr`` of ``accepted``, ``rejected`` and ``chunksDone`` under the filter predicate
``runId = <runId>`` (412 when a newer file pass replaced the run). Markers expire after
``CHUNK_MARKER_TTL_SECONDS`` (the container has TTL on without a default, so run items never
expire): a storage queue message lives 7 days at most, so no chunk can be redelivered after its
marker is gone. Rejected rows' details live in the report blob, never in Cosmos.

**Finishing** is a patch of ``state`` from ``processing`` under the predicate
``runId = <runId> AND state = 'processing'``: of every writer that sees the run complete, exactly
one succeeds, which is where the run's row counts are reported (once).

No read-modify-replace loop: 449 (retry with) from concurrent chunk writers is retried with
bounded jittered backoff (``shared.repositories.cosmos_batch``).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Final, Protocol

from shared.names import IMPORTS_CONTAINER
from shared.repositories.cosmos_batch import (
    LostRace,
    RaceCounter,
    execute_batch,
    read_item,
    retry_lost_races,
)

if TYPE_CHECKING:
    from azure.cosmos import ContainerProxy

IMPORT = "import"
CHUNK_KIND: Final = "chunk"
CHUNK_MARKER_TTL_SECONDS: Final = 14 * 24 * 60 * 60
PROCESSING: Final = "processing"
# Run ids are made by the file pass (blob ETag + random hex); anything else in a chunk is forged
# or stale, and must never reach a query text.
_RUN_ID: Final = re.compile(r"^[A-Za-z0-9_.:-]{1,200}$")


@dataclass(frozen=True, slots=True)
class StoredRun:
    document: dict[str, Any]
    etag: str


class ChunkRecorded(StrEnum):
    COUNTED = "counted"  # this call counted the chunk
    ALREADY_COUNTED = "already-counted"  # a redelivery: counted before, nothing changed
    STALE = "stale"  # the run was replaced by a newer file pass (or is gone)


@dataclass(frozen=True, slots=True)
class ChunkResult:
    outcome: ChunkRecorded
    run: StoredRun | None  # the run item after this call's write (COUNTED only)


class ImportRunRepository(Protocol):
    def read(self, import_id: str) -> StoredRun | None: ...

    def start(self, document: dict[str, Any]) -> StoredRun:
        """Begin a run: the run item is written whole (a re-import replaces the last run)."""
        ...

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
        """What the file pass found; None when the run was replaced meanwhile.
        ``end_file_pass``: also remove ``owner`` and ``checkpoint`` (the run has both)."""
        ...

    def chunk_counted(self, import_id: str, run_id: str, number: int) -> bool:
        """Was this chunk of this run counted already? (One point read: a redelivery skips
        the orders it would only find again.)"""
        ...

    def record_chunk(
        self, import_id: str, run_id: str, number: int, *, accepted: int, rejected: int, at: str
    ) -> ChunkResult: ...

    def finish(
        self, import_id: str, run_id: str, state: str, reason: str | None, at: str
    ) -> StoredRun | None:
        """Move the run from ``processing`` to ``state``; None when another writer did (or the
        run was replaced): exactly one caller finishes a run."""
        ...

    def checkpoint(
        self, import_id: str, run_id: str, owner: str, checkpoint: dict[str, Any], at: str
    ) -> bool:
        """Record the file pass's checkpoint (replacing the last one) if ``owner`` still holds
        the run's file pass and it is ``processing``; False when it lost it."""
        ...

    def take_over(
        self, import_id: str, run_id: str, seen: StoredRun, owner: str, at: str
    ) -> StoredRun | None:
        """Make ``owner`` the run's file pass, if the run item is still as ``seen`` (same
        owner, same ``updatedAt``): of two passes taking over, one wins."""
        ...

    def release(self, import_id: str, run_id: str, owner: str, at: str) -> None:
        """``owner`` gives up the file pass (it failed): the next delivery takes over at once."""
        ...


# Owner tokens are made by the file pass (hex); times by utc_now: both reach a query text.
_OWNER: Final = re.compile(r"^[0-9a-f]{8,64}$")
_TIME: Final = re.compile(r"^[0-9T:.Z+-]{1,40}$")


def _of_owner(run_id: str, owner: str | None, updated_at: str | None = None) -> str:
    predicate = _of_run(run_id, processing=True)
    if owner is None:
        predicate += " AND (NOT IS_DEFINED(c.owner) OR IS_NULL(c.owner))"
    elif _OWNER.fullmatch(owner):
        predicate += f" AND c.owner = '{owner}'"
    else:
        raise ValueError(f"not an owner token: {owner[:60]!r}")
    if updated_at is not None:
        if not _TIME.fullmatch(updated_at):
            raise ValueError(f"not a time: {updated_at[:60]!r}")
        predicate += f" AND c.updatedAt = '{updated_at}'"
    return predicate


def last_written(document: dict[str, Any]) -> datetime | None:
    """When the run item was last written (its ``updatedAt``); None when unset or not a time."""
    value = document.get("updatedAt")
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def chunk_marker_id(run_id: str, number: int) -> str:
    return f"{CHUNK_KIND}:{run_id}:{number}"


def _stored(document: dict[str, Any]) -> StoredRun:
    clean = {k: v for k, v in document.items() if not k.startswith("_")}
    return StoredRun(clean, str(document["_etag"]))


def _of_run(run_id: str, *, processing: bool = False) -> str:
    if not _RUN_ID.fullmatch(run_id):
        raise ValueError(f"not a run id: {run_id[:60]!r}")
    predicate = f"FROM c WHERE c.runId = '{run_id}'"
    return predicate + f" AND c.state = '{PROCESSING}'" if processing else predicate


class CosmosImportRunRepository:
    def __init__(
        self,
        container: ContainerProxy | None = None,
        *,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if container is None:
            from shared.clients import get_container

            container = get_container(IMPORTS_CONTAINER)
        self._container = container
        self._sleep = sleep
        self.races = RaceCounter()

    def read(self, import_id: str) -> StoredRun | None:
        document = self._retrying(
            import_id, lambda: read_item(self._container, import_id, import_id, IMPORT)
        )
        return None if document is None else _stored(document)

    def start(self, document: dict[str, Any]) -> StoredRun:
        from shared.repositories.cosmos_errors import cosmos_errors

        with cosmos_errors(IMPORT, document["id"]):
            return _stored(self._container.upsert_item(document))

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
        operations: list[dict[str, Any]] = [
            {"op": "set", "path": "/rowsRead", "value": rows_read},
            {"op": "set", "path": "/fileRejected", "value": file_rejected},
            {"op": "incr", "path": "/rejected", "value": file_rejected},
            {"op": "set", "path": "/chunksTotal", "value": chunks_total},
            {"op": "set", "path": "/updatedAt", "value": at},
        ]
        if end_file_pass:
            # The pass's own fields go with it: the run item is what it was before checkpoints.
            operations += [
                {"op": "remove", "path": "/owner"},
                {"op": "remove", "path": "/checkpoint"},
            ]
        return self._patch(import_id, operations, _of_run(run_id))

    def chunk_counted(self, import_id: str, run_id: str, number: int) -> bool:
        if not _RUN_ID.fullmatch(run_id):
            return False
        marker_id = chunk_marker_id(run_id, number)
        marker = self._retrying(
            import_id, lambda: read_item(self._container, marker_id, import_id, IMPORT)
        )
        return marker is not None

    def record_chunk(
        self, import_id: str, run_id: str, number: int, *, accepted: int, rejected: int, at: str
    ) -> ChunkResult:
        if not _RUN_ID.fullmatch(run_id):
            return ChunkResult(ChunkRecorded.STALE, None)
        marker = {
            "id": chunk_marker_id(run_id, number),
            "importId": import_id,
            "kind": CHUNK_KIND,
            "runId": run_id,
            "chunk": number,
            "accepted": accepted,
            "rejected": rejected,
            "at": at,
            "ttl": CHUNK_MARKER_TTL_SECONDS,
        }
        counters = [
            {"op": "incr", "path": "/accepted", "value": accepted},
            {"op": "incr", "path": "/rejected", "value": rejected},
            {"op": "incr", "path": "/chunksDone", "value": 1},
            {"op": "set", "path": "/updatedAt", "value": at},
        ]
        batch: list[Any] = [
            ("create", (marker,)),
            ("patch", (import_id, counters), {"filter_predicate": _of_run(run_id)}),
        ]

        def attempt() -> ChunkResult:
            result = execute_batch(self._container, import_id, batch, IMPORT)
            if result.failure is None:
                return ChunkResult(ChunkRecorded.COUNTED, _stored(result.body(1)))
            index, status = result.failure
            if index == 0 and status == 409:
                return ChunkResult(ChunkRecorded.ALREADY_COUNTED, None)
            if index == 1 and status in (404, 412):
                return ChunkResult(ChunkRecorded.STALE, None)
            from shared.errors import DependencyUnavailableError

            raise DependencyUnavailableError("Cosmos DB", f"import batch: HTTP {status}", 1)

        return self._retrying(import_id, attempt)

    def finish(
        self, import_id: str, run_id: str, state: str, reason: str | None, at: str
    ) -> StoredRun | None:
        operations: list[dict[str, Any]] = [
            {"op": "set", "path": "/state", "value": state},
            {"op": "set", "path": "/updatedAt", "value": at},
        ]
        if reason is not None:
            operations.append({"op": "set", "path": "/reason", "value": reason})
        return self._patch(import_id, operations, _of_run(run_id, processing=True))

    def checkpoint(
        self, import_id: str, run_id: str, owner: str, checkpoint: dict[str, Any], at: str
    ) -> bool:
        operations: list[dict[str, Any]] = [
            {"op": "set", "path": "/checkpoint", "value": checkpoint},
            {"op": "set", "path": "/updatedAt", "value": at},
        ]
        return self._patch(import_id, operations, _of_owner(run_id, owner)) is not None

    def take_over(
        self, import_id: str, run_id: str, seen: StoredRun, owner: str, at: str
    ) -> StoredRun | None:
        previous = seen.document.get("owner")
        updated_at = seen.document.get("updatedAt")
        operations: list[dict[str, Any]] = [
            {"op": "set", "path": "/owner", "value": owner},
            {"op": "set", "path": "/updatedAt", "value": at},
        ]
        predicate = _of_owner(
            run_id,
            previous if isinstance(previous, str) else None,
            updated_at if isinstance(updated_at, str) else None,
        )
        return self._patch(import_id, operations, predicate)

    def release(self, import_id: str, run_id: str, owner: str, at: str) -> None:
        operations: list[dict[str, Any]] = [
            {"op": "set", "path": "/owner", "value": None},
            {"op": "set", "path": "/updatedAt", "value": at},
        ]
        self._patch(import_id, operations, _of_owner(run_id, owner))

    def _patch(
        self, import_id: str, operations: list[dict[str, Any]], predicate: str
    ) -> StoredRun | None:
        from azure.cosmos.exceptions import CosmosHttpResponseError

        from shared.errors import NotFoundError, PreconditionFailedError
        from shared.repositories.cosmos_errors import cosmos_errors

        def attempt() -> StoredRun | None:
            try:
                with cosmos_errors(IMPORT, import_id):
                    try:
                        patched = self._container.patch_item(
                            import_id,
                            partition_key=import_id,
                            patch_operations=operations,
                            filter_predicate=predicate,
                        )
                    except CosmosHttpResponseError as error:
                        if error.status_code == 449:
                            raise LostRace from None
                        raise
            except (PreconditionFailedError, NotFoundError):
                return None
            return _stored(patched)

        return self._retrying(import_id, attempt)

    def _retrying[T](self, import_id: str, attempt: Callable[[], T]) -> T:
        return retry_lost_races(
            attempt, f"import {import_id!r}", sleep=self._sleep, counter=self.races
        )
