"""An import survives its dependencies and its host going away mid-way, over the running local
host: Azurite restarted while chunks are being turned into orders, and the host SIGKILLed
mid-import and started again. Each time the import completes with rows read = accepted +
rejected, every valid order created exactly once, and the report listing exactly the bad rows.

Azurite keeps its data on disk in the stack's work directory, so the blob and the queued chunks
survive its restart; calls that fail meanwhile are retried by the storage SDK. A killed host's
chunk messages stay invisible for the queue trigger's visibility timeout (10 minutes in Azure,
``LOCALDEV_QUEUE_VISIBILITY_SECONDS`` here) and are then delivered again; a file pass that did
not finish has no blob receipt, so the blob is delivered again and starts a new run.
The stack and host are this module's own.
"""

from __future__ import annotations

import csv
import io
import signal
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from azure.cosmos import CosmosClient
from azure.storage.blob import BlobServiceClient

from localdev.stack import LocalStack
from shared.names import IMPORTS_BLOB_CONTAINER, ORDERS_CONTAINER, REJECTED_ROWS_BLOB_CONTAINER
from tests.fixtures.app import REPO_ROOT, SAMPLE_SETTINGS, app_environment
from tests.fixtures.host import HostProcess
from tests.fixtures.stack import start_stack_on_free_ports

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]

ORDERS = 1200
LINES_PER_ORDER = 20  # chunks hold ~265 such orders (48 KB compressed): a few chunks, each a while
INVALID_EVERY = 25  # every 25th order has a bad line, which rejects all of its rows
CUSTOMERS = 10
COMPLETION_SECONDS = 150.0
# Longer than the chunks in flight take to finish: their queue deletes and visibility renewals
# fail while Azurite is down.
AZURITE_DOWNTIME_SECONDS = 4.0


@dataclass
class ImportApp:
    stack: LocalStack
    workdir: Path
    env: dict[str, str]
    hosts: list[HostProcess] = field(default_factory=list)

    @property
    def host(self) -> HostProcess:
        return self.hosts[-1]

    def start_host(self) -> HostProcess:
        log = self.workdir / f"host-{len(self.hosts)}.log"
        host = HostProcess(
            REPO_ROOT,
            log,
            env=self.env,
            args=["--settings", str(SAMPLE_SETTINGS)],
            port=self.stack.ports.functions,  # where the stack's Event Grid delivers
        )
        self.hosts.append(host)
        return host.start()

    def stop_hosts(self) -> None:
        for host in self.hosts:
            host.stop()


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ImportApp]:
    workdir = tmp_path_factory.mktemp("import-restarts")
    stack = start_stack_on_free_ports(workdir)
    env = {
        **app_environment(stack, None),
        "LOCALDEV_BLOB_POLL_SECONDS": "0.2",
        "LOCALDEV_QUEUE_VISIBILITY_SECONDS": "4",
    }
    app = ImportApp(stack, workdir, env)
    try:
        stack.provision()
        app.start_host()
        yield app
    finally:
        app.stop_hosts()
        stack.stop()


@dataclass(frozen=True)
class PartnerFile:
    name: str
    content: bytes
    customers: list[str]
    rows: int
    valid_orders: set[tuple[str, str]]  # (customer, external id)
    bad_rows: set[int]  # file line numbers of the rejected rows


def partner_file(prefix: str) -> PartnerFile:
    stem = uuid.uuid4().hex[:8]
    customers = [f"{prefix}-{stem}-{n}" for n in range(CUSTOMERS)]
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(["external_id", "customer_id", "sku", "quantity", "unit_price", "currency"])
    line = 1
    valid: set[tuple[str, str]] = set()
    bad: set[int] = set()
    for n in range(ORDERS):
        customer, external_id = customers[n % CUSTOMERS], f"P{n:05d}"
        broken = n % INVALID_EVERY == INVALID_EVERY - 1
        for sku in range(LINES_PER_ORDER):
            line += 1
            quantity = 0 if broken and sku == LINES_PER_ORDER - 1 else 1 + sku % 3
            writer.writerow([external_id, customer, f"SKU-{sku:02d}", quantity, "1.25", "EUR"])
            if broken:
                bad.add(line)
        if not broken:
            valid.add((customer, external_id))
    name = f"{prefix}-{stem}.csv"
    return PartnerFile(name, out.getvalue().encode(), customers, line - 1, valid, bad)


def upload(stack: LocalStack, partner: PartnerFile) -> None:
    with BlobServiceClient.from_connection_string(stack.storage_connection_string) as blobs:
        blobs.get_blob_client(IMPORTS_BLOB_CONTAINER, partner.name).upload_blob(partner.content)


def import_status(host: HostProcess, name: str) -> dict[str, Any] | None:
    try:
        response = host.request("GET", f"/api/v1/imports/{name}", timeout=5)
    except OSError:
        return None  # the host is restarting
    status: dict[str, Any] | None = response.json() if response.status == 200 else None
    return status


def wait_for_status(
    app: ImportApp, name: str, done: Any, timeout: float, what: str
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    status: dict[str, Any] | None = None
    while time.monotonic() < deadline:
        status = import_status(app.host, name)
        if status is not None and done(status):
            return status
        time.sleep(0.05)
    raise AssertionError(f"{what} not within {timeout:.0f} s: {status}\n{app.host.logs()[-3000:]}")


def mid_import(status: dict[str, Any]) -> bool:
    """Some chunks done, not all: orders are being created right now."""
    total = status.get("chunksTotal")
    return (
        status["state"] == "processing" and total is not None and 0 < status["chunksDone"] < total
    )


def assert_imported_exactly_once(app: ImportApp, partner: PartnerFile) -> dict[str, Any]:
    status = wait_for_status(
        app,
        partner.name,
        lambda s: s["state"] in ("completed", "failed"),
        COMPLETION_SECONDS,
        "completion",
    )
    assert status["state"] == "completed", status
    accepted = len(partner.valid_orders) * LINES_PER_ORDER
    assert (status["rowsRead"], status["accepted"], status["rejected"]) == (
        partner.rows,
        accepted,
        partner.rows - accepted,
    )
    assert status["chunksDone"] == status["chunksTotal"]
    settings = app.stack.app_settings()
    with CosmosClient(
        settings["COSMOS_ENDPOINT"], settings["COSMOS_KEY"], enable_endpoint_discovery=False
    ) as cosmos:
        orders = cosmos.get_database_client("orderflow").get_container_client(ORDERS_CONTAINER)
        found = list(
            orders.query_items(
                "SELECT c.id, c.customerId, c.externalId, ARRAY_LENGTH(c.lines) AS lines "
                "FROM c WHERE ARRAY_CONTAINS(@customers, c.customerId)",
                parameters=[{"name": "@customers", "value": partner.customers}],
                enable_cross_partition_query=True,
            )
        )
    assert len(found) == len({item["id"] for item in found})  # no order twice
    assert {(item["customerId"], item["externalId"]) for item in found} == partner.valid_orders
    assert len(found) == len(partner.valid_orders)
    assert {item["lines"] for item in found} == {LINES_PER_ORDER}
    with BlobServiceClient.from_connection_string(app.stack.storage_connection_string) as blobs:
        container, _, blob = status["reportLocation"].partition("/")
        assert container == REJECTED_ROWS_BLOB_CONTAINER
        report = blobs.get_blob_client(container, blob).download_blob()
        records = list(csv.reader(io.StringIO(report.readall().decode("utf-8"))))
    # A crash may list a row twice, never zero times (docs/IMPORTS.md).
    assert {int(row) for row, _, _ in records[1:]} == partner.bad_rows
    return status


def test_an_azurite_restart_mid_import_still_completes_it_exactly_once(app: ImportApp) -> None:
    partner = partner_file("azurite")
    upload(app.stack, partner)
    wait_for_status(app, partner.name, mid_import, 60, "the import underway")

    app.stack.stop_service("azurite")
    time.sleep(AZURITE_DOWNTIME_SECONDS)
    app.stack.start_service("azurite")

    status = assert_imported_exactly_once(app, partner)
    print(
        f"\nimport across an Azurite restart: {status['chunksTotal']} chunks, {partner.rows} rows"
    )


def test_a_host_killed_mid_import_and_restarted_completes_it_exactly_once(app: ImportApp) -> None:
    partner = partner_file("killed")
    upload(app.stack, partner)
    wait_for_status(app, partner.name, mid_import, 60, "the import underway")

    killed = app.host
    killed.stop(signal.SIGKILL)
    assert killed.process is not None
    assert killed.process.returncode == -signal.SIGKILL
    app.start_host()

    status = assert_imported_exactly_once(app, partner)
    print(f"\nimport across a host kill: {status['chunksTotal']} chunks, {partner.rows} rows")
