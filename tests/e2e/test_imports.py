"""Imports end to end: files uploaded to Azurite while the local host runs the real app become
orders (read through the API), with an exact import status and a report of every bad row."""

from __future__ import annotations

import csv
import io
import json
import time
import uuid
from typing import Any

import pytest
from azure.storage.blob import BlobServiceClient

from localdev.stack import LocalStack
from shared.names import IMPORTS_BLOB_CONTAINER, REJECTED_ROWS_BLOB_CONTAINER
from tests.fixtures.host import HostProcess

pytestmark = pytest.mark.e2e

WAIT_SECONDS = 45.0
HEADER = "external_id,customer_id,sku,quantity,unit_price,currency\r\n"


def upload(stack: LocalStack, name: str, data: bytes) -> None:
    with BlobServiceClient.from_connection_string(stack.storage_connection_string) as blobs:
        blobs.get_blob_client(IMPORTS_BLOB_CONTAINER, name).upload_blob(data, overwrite=True)


def report(stack: LocalStack, name: str) -> list[list[str]]:
    with BlobServiceClient.from_connection_string(stack.storage_connection_string) as blobs:
        data = blobs.get_blob_client(REJECTED_ROWS_BLOB_CONTAINER, f"{name}.csv").download_blob()
        return list(csv.reader(io.StringIO(data.readall().decode("utf-8"))))


def wait_completed(host: HostProcess, name: str, after: str | None = None) -> dict[str, Any]:
    """The import status once it is final (and newer than ``after``, an updatedAt)."""
    deadline = time.monotonic() + WAIT_SECONDS
    status: dict[str, Any] = {}
    while time.monotonic() < deadline:
        response = host.request("GET", f"/api/v1/imports/{name}")
        if response.status == 200:
            status = response.json()
            if status["state"] in {"completed", "failed"} and status["updatedAt"] != after:
                return status
        time.sleep(0.1)
    raise AssertionError(f"import {name} not finished: {status}\n{host.logs()[-4000:]}")


def orders_of(host: HostProcess, customer: str) -> list[dict[str, Any]]:
    response = host.request("GET", f"/api/v1/customers/{customer}/orders?limit=100")
    assert response.status == 200, response.body
    items: list[dict[str, Any]] = response.json()["items"]
    return items


def test_csv_and_jsonl_files_become_orders_with_exact_status_and_report(
    app_host: HostProcess, local_stack: LocalStack
) -> None:
    run = uuid.uuid4().hex[:8]
    alice, bob = f"alice-{run}", f"bob-{run}"
    csv_name, jsonl_name = f"partner-{run}.csv", f"partner-{run}.jsonl"
    csv_data = (
        "\ufeff"
        + HEADER
        + f"E1,{alice},SKU-1,2,10.25,EUR\r\n"
        + f"E1,{alice},SKU-2,1,5.00,EUR\r\n"
        + f'E2,{bob},"SKU-3",3,1.50,USD\r\n'
        + f"E3,{alice},=HYPERLINK(1),1,1.00,EUR\r\n"
        + f"E4,{bob},SKU-1,many,1.00,EUR\r\n"
        + f"E5,{bob},SKU-1,1,1.00,EUR,extra\r\n"
        + f"E1,{alice},SKU-9,1,1.00,EUR\r\n"
    ).encode()
    jsonl_lines = [
        {
            "externalId": "J1",
            "customerId": alice,
            "currency": "EUR",
            "lines": [{"sku": "SKU-1", "quantity": 1, "unitPrice": "3.00"}],
        },
        {
            "externalId": "J2",
            "customerId": bob,
            "currency": "EUR",
            "lines": [{"sku": "SKU-2", "quantity": 2, "unitPrice": 3.5}],
        },
        {
            "externalId": "@J3",
            "customerId": bob,
            "currency": "EUR",
            "lines": [{"sku": "SKU-2", "quantity": 2, "unitPrice": "3.50"}],
        },
    ]
    jsonl_data = ("\n".join(json.dumps(line) for line in jsonl_lines) + "\n{broken\n").encode()

    upload(local_stack, csv_name, csv_data)
    upload(local_stack, jsonl_name, jsonl_data)
    csv_status = wait_completed(app_host, csv_name)
    jsonl_status = wait_completed(app_host, jsonl_name)

    assert csv_status["state"] == "completed"
    assert (csv_status["rowsRead"], csv_status["accepted"], csv_status["rejected"]) == (7, 3, 4)
    assert csv_status["chunksTotal"] == csv_status["chunksDone"] == 1
    assert csv_status["reportLocation"] == f"{REJECTED_ROWS_BLOB_CONTAINER}/{csv_name}.csv"
    assert (jsonl_status["rowsRead"], jsonl_status["accepted"], jsonl_status["rejected"]) == (
        4,
        1,
        3,
    )

    csv_report = report(local_stack, csv_name)
    assert csv_report[0] == ["row", "external_id", "reason"]
    assert [(row[0], row[1]) for row in csv_report[1:]] == [
        ("5", "E3"),
        ("6", "E4"),
        ("7", "E5"),
        ("8", "E1"),
    ]
    assert "formula" in csv_report[1][2]
    assert "split order" in csv_report[4][2]
    jsonl_report = report(local_stack, jsonl_name)
    assert [(row[0], row[1]) for row in jsonl_report[1:]] == [("2", "J2"), ("3", "'@J3"), ("4", "")]

    alice_orders = orders_of(app_host, alice)
    assert sorted((o["externalId"], o["total"], o["source"]) for o in alice_orders) == [
        ("E1", "25.50", "import"),
        ("J1", "3.00", "import"),
    ]
    assert [(o["externalId"], o["total"]) for o in orders_of(app_host, bob)] == [("E2", "4.50")]

    # Re-uploading the same file is a re-import: same counts, no duplicate orders.
    upload(local_stack, csv_name, csv_data)
    again = wait_completed(app_host, csv_name, after=csv_status["updatedAt"])
    assert (again["rowsRead"], again["accepted"], again["rejected"]) == (7, 3, 4)
    assert len(orders_of(app_host, alice)) == 2
    assert len(report(local_stack, csv_name)) == 5

    # Another file reusing E1 for alice with other lines conflicts, row by row.
    conflict_name = f"partner-{run}-fix.csv"
    upload(local_stack, conflict_name, (HEADER + f"E1,{alice},SKU-1,9,1.00,EUR\r\n").encode())
    conflict = wait_completed(app_host, conflict_name)
    assert (conflict["rowsRead"], conflict["accepted"], conflict["rejected"]) == (1, 0, 1)
    assert report(local_stack, conflict_name)[1][:2] == ["2", "E1"]
    assert "already exists" in report(local_stack, conflict_name)[1][2]
    assert len(orders_of(app_host, alice)) == 2


def test_unreadable_files_fail_as_a_whole_with_a_reason(
    app_host: HostProcess, local_stack: LocalStack
) -> None:
    run = uuid.uuid4().hex[:8]
    files = {
        f"latin1-{run}.csv": (HEADER + "E1,clïent,S,1,1,EUR\r\n").encode("latin-1"),
        f"empty-{run}.csv": b"",
        f"header-{run}.csv": b"a,b,c\r\n1,2,3\r\n",
        f"notes-{run}.txt": b"hello",
    }
    for name, data in files.items():
        upload(local_stack, name, data)

    reasons = {}
    for name in files:
        status = wait_completed(app_host, name)
        assert status["state"] == "failed"
        assert (status["rowsRead"], status["accepted"], status["rejected"]) == (0, 0, 0)
        reasons[name.split("-")[0]] = status["reason"]
        assert report(local_stack, name)[1][2] == status["reason"]
    assert "not UTF-8" in reasons["latin1"]
    assert "empty" in reasons["empty"]
    assert "wrong header" in reasons["header"]
    assert "unsupported file type" in reasons["notes"]
