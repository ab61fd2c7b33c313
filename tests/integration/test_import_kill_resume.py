"""A file pass really killed half-way (SIGKILL of the process running it, against Azurite and
the Cosmos DB stand-in) and resumed the way the reconciliation resumes it: the import
completes with exact counts, every order once, every rejected row in the report once, and the
resumed pass starts at its last checkpoint, past half the file."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from shared.clients import get_blob_service, get_container
from shared.names import ORDERS_CONTAINER, REJECTED_ROWS_BLOB_CONTAINER
from shared.publisher import EventGridPublisher
from shared.repositories.import_runs import CosmosImportRunRepository
from shared.repositories.import_storage import AzureReportBlob, report_name
from shared.repositories.orders import CosmosOrderRepository
from shared.services.import_files import FileFormat
from shared.services.import_pipeline import ImportPipeline
from shared.services.orders import OrderService
from tests.fixtures.eventgrid import EventGridSink
from tests.fixtures.file_pass import kill_at_half, verify
from tests.fixtures.imports import DIRECT_IMPORTS_CONTAINER, direct_import_files, upload_direct

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]

HEADER = "external_id,customer_id,sku,quantity,unit_price,currency\n"
DATA_ROWS = 12_000
# A chunk of 100 orders is about 200 rows; a batch of 4,096 characters about 115: the
# proportions of the defaults (1,000 orders, 64 Ki characters), on a file a tenth the size.
CHUNK_ORDERS = 100
READ_CHARS = 4096


def partner_file(customer: str) -> tuple[bytes, int]:
    """Two-line orders; a bad row every 173 rows (its order rejected with it), a quoted field
    now and then (the row-by-row way), multi-byte text, CRLF, and an order split across the
    two halves (rejected only if the resumed pass knows its first part)."""
    lines = []
    orders = 0
    row = 0
    while row < DATA_ROWS - 2:
        order = f"E{row:06d}"
        first, second = (
            f"{order},{customer},SKU-{row % 7},1,{row % 90}.50,EUR",
            f"{order},{customer},SKU-X,2,1.00,EUR",
        )
        if row % 173 == 11:
            second = f"{order},{customer},SKU-é,2,1.00,EUR"  # not an identifier
        elif row % 131 == 3:
            first = f'"{order}",{customer},SKU-{row % 7},1,1.00,EUR'
        else:
            orders += 1
        lines += [first, second]
        row += 2
    lines.insert(10, f"SPLIT,{customer},SKU-1,1,1.00,EUR")
    lines.append(f"SPLIT,{customer},SKU-2,1,1.00,EUR")
    return (HEADER + "\r\n".join(lines) + "\r\n").encode(), orders


def test_a_file_pass_killed_half_way_resumes_and_completes_exactly(
    app_settings: dict[str, str],
    events: EventGridSink,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    for setting, value in events.app_settings().items():
        monkeypatch.setenv(setting, value)
    customer = f"c-{uuid.uuid4().hex[:10]}"
    name = f"killed-{uuid.uuid4().hex[:8]}.csv"
    data, orders = partner_file(customer)
    (tmp_path / name).write_bytes(data)
    upload_direct(name, data)
    queue = f"kill-{uuid.uuid4().hex[:10]}"

    result = kill_at_half(
        app_settings,
        DIRECT_IMPORTS_CONTAINER,
        name,
        queue,
        data_rows=DATA_ROWS,
        workdir=tmp_path,
        max_chunk_orders=CHUNK_ORDERS,
        read_chars=READ_CHARS,
    )
    assert result.killed_reached >= DATA_ROWS // 2
    assert result.checkpoint_row > DATA_ROWS // 4  # resumed at its last checkpoint, not row 1
    assert result.killed_reached >= result.checkpoint_row
    assert result.rows_read_again < 2 * CHUNK_ORDERS, "less than one chunk's rows read again"
    assert result.resent_chunks <= 1

    report = (
        get_blob_service()
        .get_blob_client(REJECTED_ROWS_BLOB_CONTAINER, report_name(name))
        .download_blob()
        .readall()
    )
    checked = verify(name, tmp_path / name, FileFormat.CSV, result, report)
    assert checked.problems == []
    assert checked.reported > 60  # the bad rows, their orders' other rows, the split order
    assert checked.orders > orders  # quoted ids are valid too, and the split order's first part

    # The chunk pass, every message of both passes (the resent one twice): exact counts.
    service = OrderService(CosmosOrderRepository(), EventGridPublisher())
    pipeline = ImportPipeline(
        CosmosImportRunRepository(),
        direct_import_files(),
        AzureReportBlob(),
        queue=type("NoQueue", (), {"send": lambda self, message: None})(),
        orders=lambda: service,
    )
    for message in result.messages:
        pipeline.process_chunk(message)
    stored = CosmosImportRunRepository().read(name)
    assert stored is not None
    run = stored.document
    assert run["state"] == "completed"
    assert run["rowsRead"] == run["accepted"] + run["rejected"]
    assert (run["rowsRead"], run["accepted"], run["rejected"]) == (
        DATA_ROWS,
        checked.rows_in_chunks,
        checked.reported,
    )
    ids = [
        item["id"]
        for item in get_container(ORDERS_CONTAINER).query_items(
            "SELECT c.id FROM c", partition_key=customer
        )
    ]
    assert len(ids) == len(set(ids)) == checked.orders
