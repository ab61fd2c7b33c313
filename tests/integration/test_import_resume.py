"""A file pass that dies resumes from its last checkpoint, on the real Cosmos stand-in and
Azurite: whatever step it dies in (sending chunks, appending to the report or the resume log,
writing the checkpoint), the resumed run ends with the verdicts, counts, chunks and report of a
pass that never died, every rejected row listed once, and rows read again only after the last
checkpoint."""

from __future__ import annotations

import csv
import io
import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from shared.clients import get_blob_service, get_container
from shared.names import ORDERS_CONTAINER, REJECTED_ROWS_BLOB_CONTAINER
from shared.publisher import EventGridPublisher
from shared.repositories.import_runs import CosmosImportRunRepository, StoredRun
from shared.repositories.import_storage import (
    AzureImportFiles,
    AzureReportBlob,
    BlobVersion,
    report_name,
)
from shared.repositories.orders import CosmosOrderRepository
from shared.services.import_files import parse_chunk
from shared.services.import_pipeline import FileOutcome, ImportBusyError, ImportPipeline
from shared.services.orders import OrderService
from tests.fixtures.eventgrid import EventGridSink
from tests.fixtures.imports import DIRECT_IMPORTS_CONTAINER, direct_import_files, upload_direct

pytestmark = pytest.mark.integration

HEADER = "external_id,customer_id,sku,quantity,unit_price,currency"


class CrashError(Exception):
    """Where the test kills the file pass."""


@dataclass
class Queue:
    fail_at: int | None = None  # the send that crashes (before it happens)
    messages: list[str] = field(default_factory=list)
    calls: int = 0

    def send(self, message: str) -> None:
        self.calls += 1
        if self.calls == self.fail_at:
            raise CrashError("send")
        self.messages.append(message)


class Reports(AzureReportBlob):
    """Crashes right after the n-th append to a blob whose name contains ``what``."""

    def __init__(self, what: str = "", fail_at: int | None = None) -> None:
        self.what, self.fail_at, self.calls = what, fail_at, 0

    def append(self, name: str, data: bytes) -> int:
        end = super().append(name, data)
        if self.what and self.what in name:
            self.calls += 1
            if self.calls == self.fail_at:
                raise CrashError(f"after appending to {name}")
        return end


class Runs(CosmosImportRunRepository):
    """Crashes at the n-th checkpoint write, before it is written."""

    def __init__(self, fail_at: int | None = None) -> None:
        super().__init__()
        self.fail_at, self.calls = fail_at, 0

    def checkpoint(
        self, import_id: str, run_id: str, owner: str, checkpoint: dict[str, Any], at: str
    ) -> bool:
        self.calls += 1
        if self.calls == self.fail_at:
            raise CrashError("checkpoint")
        return super().checkpoint(import_id, run_id, owner, checkpoint, at)


class Files(AzureImportFiles):
    """The import files, recording where each read of the blob starts."""

    def __init__(self) -> None:
        super().__init__(DIRECT_IMPORTS_CONTAINER)
        self.starts: list[int] = []

    def read(self, name: str, version: BlobVersion, start: int = 0) -> Iterator[bytes]:
        self.starts.append(start)
        return super().read(name, version, start)


def pipeline(
    queue: Queue,
    *,
    runs: CosmosImportRunRepository | None = None,
    reports: Any = None,
    files: AzureImportFiles | None = None,
    key_budget: int | None = None,
) -> ImportPipeline:
    """Small chunks (20 orders, about 25 rows) and batches of text (512 characters, about 15
    rows), with a checkpoint due after every batch: most checkpoints fall between two chunks,
    with orders held for the next one."""
    service = OrderService(CosmosOrderRepository(), EventGridPublisher())
    return ImportPipeline(
        runs or CosmosImportRunRepository(),
        files or direct_import_files(),
        reports or AzureReportBlob(),
        queue,
        lambda: service,
        max_chunk_bytes=1500,
        max_chunk_orders=20,
        read_chars=512,
        **({} if key_budget is None else {"key_budget": key_budget}),
    )


def hostile_csv(customer: str) -> bytes:
    """Multi-byte UTF-8, CRLF, quoted newlines, bad rows everywhere, and an order split across
    the whole file (its second part is rejected only if the resumed pass knows the first)."""
    lines = [HEADER]
    for i in range(600):
        if i == 3:
            lines.append(f"SPLIT,{customer},SKU-1,1,1.00,EUR")
        elif i % 97 == 5:
            lines.append(f"E{i},{customer},=HYPERLINK(),1,1.00,EUR")  # rejected
        elif i % 89 == 7:
            lines.append(f'E{i},{customer},"SKU-\nQ",1,1.00,EUR')  # quoted newline: rejected
        elif i % 50 == 11:
            lines.append(f"E{i},{customer},SKU-ü€,1,1.00,EUR")  # multi-byte: rejected
        elif i % 71 == 13:
            lines.append(f'"E{i}",{customer},SKU-2,2,3.50,EUR')  # quoted, valid
        else:
            lines.append(f"E{i},{customer},SKU-{i % 5},{1 + i % 3},{i % 7}.25,EUR")
            if i % 4 == 0:
                lines.append(f"E{i},{customer},SKU-9,1,0.10,EUR")  # a second line
    lines.append(f"SPLIT,{customer},SKU-2,1,1.00,EUR")
    return ("\ufeff" + "\r\n".join(lines) + "\r\n").encode()


def hostile_jsonl(customer: str) -> bytes:
    lines = []
    for i in range(500):
        external = "DUP" if i in (2, 480) else f"J{i}"
        line = {
            "externalId": external,
            "customerId": customer,
            "currency": "EUR",
            "lines": [{"sku": f"SKU-{i % 4}", "quantity": 1, "unitPrice": "1.50"}],
        }
        text = json.dumps(line, ensure_ascii=False)
        if i % 61 == 9:
            text = text.replace("SKU-", "SKÜ-")  # rejected (not an identifier), multi-byte
        lines.append(text)
    return ("\n".join(lines) + "\n").encode()


@dataclass
class Outcome:
    counts: tuple[int, int, int]
    report: list[tuple[str, str, str]]
    orders: list[tuple[str, tuple[int, ...]]]  # external id, rows: each once
    chunk_numbers: list[int]


def report_rows(name: str) -> list[tuple[str, str, str]]:
    data = (
        get_blob_service()
        .get_blob_client(REJECTED_ROWS_BLOB_CONTAINER, report_name(name))
        .download_blob()
        .readall()
        .decode()
    )
    rows = list(csv.reader(io.StringIO(data, newline="")))
    assert rows[0] == ["row", "external_id", "reason"]
    return sorted((row[0], row[1], row[2]) for row in rows[1:])


def finish(name: str, messages: list[str]) -> Outcome:
    """Apply every chunk sent (redeliveries included) and read what the import came to."""
    applier = pipeline(Queue())
    for message in messages:
        applier.process_chunk(message)
    stored = CosmosImportRunRepository().read(name)
    assert stored is not None
    run = stored.document
    assert run["state"] == "completed", run
    assert run["chunksDone"] == run["chunksTotal"]
    assert "checkpoint" not in run
    assert "owner" not in run
    latest: dict[int, str] = {}
    for message in messages:
        latest.setdefault(parse_chunk(message).number, message)
    for number, message in latest.items():
        assert all(m == message for m in messages if parse_chunk(m).number == number), (
            f"chunk {number} was sent with two contents"
        )
    orders = sorted(
        (order.external_id, order.rows)
        for message in latest.values()
        for order in parse_chunk(message).orders
    )
    return Outcome(
        (run["rowsRead"], run["accepted"], run["rejected"]),
        report_rows(name),
        orders,
        sorted(latest),
    )


def uninterrupted(data: bytes, suffix: str) -> tuple[Outcome, str]:
    name = f"whole-{uuid.uuid4().hex[:8]}.{suffix}"
    upload_direct(name, data)
    queue = Queue()
    assert pipeline(queue).import_file(name) is FileOutcome.SENT
    return finish(name, queue.messages), name


CRASHES = [
    pytest.param({"queue": 4}, id="sending-a-chunk"),
    pytest.param({"queue": 15}, id="sending-a-later-chunk"),
    pytest.param({"reports": (".csv", 2)}, id="after-appending-to-the-report"),
    pytest.param({"reports": ("resume/", 16)}, id="after-appending-to-the-resume-log"),
    pytest.param({"runs": 19}, id="writing-the-checkpoint"),
]


@pytest.mark.parametrize("suffix", ["csv", "jsonl"])
@pytest.mark.parametrize("crash", CRASHES)
def test_a_pass_killed_anywhere_resumes_to_the_uninterrupted_result(
    app_settings: dict[str, str],
    events: EventGridSink,
    monkeypatch: pytest.MonkeyPatch,
    crash: dict[str, Any],
    suffix: str,
) -> None:
    for setting, value in events.app_settings().items():
        monkeypatch.setenv(setting, value)
    customer = f"c-{uuid.uuid4().hex[:10]}"
    data = hostile_csv(customer) if suffix == "csv" else hostile_jsonl(customer)
    expected, _ = uninterrupted(data, suffix)
    assert expected.report, "the file has rejected rows"
    if suffix == "csv":
        assert any("split order" in reason for _, _, reason in expected.report)
    else:
        assert any("duplicate" in reason for _, _, reason in expected.report)

    name = f"killed-{uuid.uuid4().hex[:8]}.{suffix}"
    upload_direct(name, data)
    queue = Queue(fail_at=crash.get("queue"))
    what, at = crash.get("reports", ("", None))
    dying = pipeline(queue, runs=Runs(crash.get("runs")), reports=Reports(what, at))
    with pytest.raises(CrashError):
        dying.import_file(name)
    before = CosmosImportRunRepository().read(name)
    assert before is not None
    checkpoint = before.document["checkpoint"]
    assert checkpoint is not None, "it died after a checkpoint"
    assert checkpoint["row"] > 1
    assert before.document["owner"] is None  # released: the retry takes over at once

    resumed, files = Queue(), Files()
    assert pipeline(resumed, files=files).import_file(name) is FileOutcome.SENT
    first_resent = min(parse_chunk(m).number for m in resumed.messages)
    assert first_resent <= checkpoint["nextChunk"]
    # Read again: only what comes after the checkpoint's row.
    assert files.starts == [checkpoint["offset"]]
    sent_before = {
        row
        for message in queue.messages
        if (chunk := parse_chunk(message)).number < checkpoint["nextChunk"]
        for order in chunk.orders
        for row in order.rows
    }
    new_rows = [
        row
        for message in resumed.messages
        if (chunk := parse_chunk(message)).number >= checkpoint["nextChunk"]
        for order in chunk.orders
        for row in order.rows
    ]
    # The orders the dead pass held for its next chunk came back from the resume log, not by
    # reading their rows again, and were never in a chunk it sent.
    held = [row for row in new_rows if row < checkpoint["row"]]
    assert held, "the checkpoint held orders for the next chunk"
    assert sent_before.isdisjoint(held)
    assert len({parse_chunk(m).number for m in resumed.messages}) < len(expected.chunk_numbers)
    outcome = finish(name, queue.messages + resumed.messages)
    assert outcome.counts == expected.counts
    assert outcome.counts[0] == outcome.counts[1] + outcome.counts[2]
    assert outcome.report == expected.report  # every rejected row once, same row numbers
    assert outcome.orders == expected.orders
    assert outcome.chunk_numbers == list(range(len(outcome.chunk_numbers)))
    # Each order once in Cosmos DB (the orders of both files are the same ids).
    ids = [
        item["id"]
        for item in get_container(ORDERS_CONTAINER).query_items(
            "SELECT c.id FROM c", partition_key=customer
        )
    ]
    assert len(ids) == len(set(ids)) == len(expected.orders)


@pytest.mark.parametrize("suffix", ["csv", "jsonl"])
@pytest.mark.parametrize("crash", [{"queue": 9}, {"runs": 14}, {"reports": ("resume/", 12)}])
def test_a_pass_over_parts_of_the_key_space_killed_anywhere_resumes_exactly(
    app_settings: dict[str, str],
    events: EventGridSink,
    monkeypatch: pytest.MonkeyPatch,
    crash: dict[str, Any],
    suffix: str,
) -> None:
    """A file with more order keys than one pass may hold is read once per part of the key
    space; the verdicts, counts and report are those of one pass, also across a crash."""
    for setting, value in events.app_settings().items():
        monkeypatch.setenv(setting, value)
    customer = f"c-{uuid.uuid4().hex[:10]}"
    data = hostile_csv(customer) if suffix == "csv" else hostile_jsonl(customer)
    expected, _ = uninterrupted(data, suffix)
    name = f"parts-{uuid.uuid4().hex[:8]}.{suffix}"
    upload_direct(name, data)
    queue = Queue(fail_at=crash.get("queue"))
    what, at = crash.get("reports", ("", None))
    dying = pipeline(queue, runs=Runs(crash.get("runs")), reports=Reports(what, at), key_budget=150)
    with pytest.raises(CrashError):
        dying.import_file(name)
    before = CosmosImportRunRepository().read(name)
    assert before is not None
    assert before.document["checkpoint"]["parts"] >= 3
    resumed = Queue()
    assert pipeline(resumed, key_budget=150).import_file(name) is FileOutcome.SENT
    outcome = finish(name, queue.messages + resumed.messages)
    assert outcome.counts == expected.counts
    assert outcome.report == expected.report
    assert outcome.orders == expected.orders
    assert outcome.chunk_numbers == list(range(len(outcome.chunk_numbers)))


def test_a_live_pass_keeps_its_run_and_a_silent_one_is_taken_over(
    app_settings: dict[str, str], events: EventGridSink, monkeypatch: pytest.MonkeyPatch
) -> None:
    for setting, value in events.app_settings().items():
        monkeypatch.setenv(setting, value)
    customer = f"c-{uuid.uuid4().hex[:10]}"
    data = hostile_csv(customer)
    expected, _ = uninterrupted(data, "csv")
    name = f"lease-{uuid.uuid4().hex[:8]}.csv"
    upload_direct(name, data)
    queue = Queue(fail_at=6)
    runs = CosmosImportRunRepository()
    with pytest.raises(CrashError):
        pipeline(queue).import_file(name)
    # As if it had been SIGKILLed instead: its owner token stays, written just now.
    stored = runs.read(name)
    assert stored is not None
    killed = _set(runs, stored, owner="0123456789abcdef", ago=timedelta(seconds=0))
    with pytest.raises(ImportBusyError):
        pipeline(Queue()).import_file(name)
    assert runs.read(name) == killed  # the busy delivery changed nothing
    _set(runs, killed, owner="0123456789abcdef", ago=timedelta(minutes=2))
    resumed = Queue()
    assert pipeline(resumed).import_file(name) is FileOutcome.SENT
    outcome = finish(name, queue.messages + resumed.messages)
    assert (outcome.counts, outcome.report, outcome.orders) == (
        expected.counts,
        expected.report,
        expected.orders,
    )


def _set(
    runs: CosmosImportRunRepository, stored: StoredRun, *, owner: str, ago: timedelta
) -> StoredRun:
    when = (datetime.now(UTC) - ago).isoformat(timespec="microseconds").replace("+00:00", "Z")
    container = get_container("imports")
    document = {**stored.document, "owner": owner, "updatedAt": when}
    container.upsert_item(document)
    again = runs.read(stored.document["id"])
    assert again is not None
    return again
