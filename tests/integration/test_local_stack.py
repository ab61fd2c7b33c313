"""The local stack as a unit: provisioning, the app settings, outages, clean shutdown, the CLI."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from azure.core.exceptions import ServiceRequestError, ServiceResponseError
from azure.cosmos import CosmosClient
from azure.storage.blob import BlobServiceClient
from azure.storage.queue import QueueServiceClient

from localdev.stack import (
    AZURITE,
    COSMOS,
    COSMOS_EMULATOR_KEY,
    SERVICE_NAMES,
    LocalStack,
    PortInUseError,
    ServiceStartError,
    StackError,
    StackPorts,
    services,
)
from localdev.stack.__main__ import READY_LINE
from localdev.stack.processes import read_cmdline
from localdev.stack.state import reset_stack_data
from shared import clients, config, names
from tests.fixtures.stack import start_stack_on_free_ports

pytestmark = pytest.mark.integration

REPO_ROOT = Path(__file__).resolve().parents[2]
CLI_TIMEOUT_SECONDS = 40.0
UP_COMMAND = (sys.executable, "-m", "localdev.stack", "up", "--ports", "free")


def _cosmos(stack: LocalStack) -> CosmosClient:
    return CosmosClient(stack.cosmos_endpoint, COSMOS_EMULATOR_KEY, enable_endpoint_discovery=False)


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return read_cmdline(pid) is None  # a zombie of someone else's child counts as gone


def _wait_until_gone(pids: list[int], timeout: float = 10.0) -> list[int]:
    """Pids still alive after ``timeout`` (polls; the processes exit asynchronously)."""
    deadline = time.monotonic() + timeout
    alive = [pid for pid in pids if not _gone(pid)]
    while alive and time.monotonic() < deadline:
        time.sleep(0.05)
        alive = [pid for pid in alive if not _gone(pid)]
    return alive


def _refuses_connections(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except ConnectionRefusedError:
        return True
    return False


# --- provisioning and settings (the shared session stack) --------------------------------------


def test_provisioning_is_idempotent_and_complete(local_stack: LocalStack) -> None:
    local_stack.provision()  # the fixture provisioned already: a second run must be harmless

    with _cosmos(local_stack) as client:
        database = client.get_database_client(names.COSMOS_DATABASE_DEFAULT)
        for container, partition_key_path in names.COSMOS_CONTAINERS.items():
            properties = database.get_container_client(container).read()
            assert properties["partitionKey"]["paths"] == [partition_key_path]
            expected_ttl = names.COSMOS_CONTAINER_DEFAULT_TTL.get(container)
            assert properties.get("defaultTtl") == expected_ttl
    connection = local_stack.storage_connection_string
    with BlobServiceClient.from_connection_string(connection) as blobs:
        assert set(names.BLOB_CONTAINERS) <= {c.name for c in blobs.list_containers()}
    with QueueServiceClient.from_connection_string(connection) as queues:
        assert set(names.STORAGE_QUEUES) <= {q.name for q in queues.list_queues()}


def test_app_settings_point_the_apps_clients_at_the_stack(
    local_stack: LocalStack, app_settings: dict[str, str]
) -> None:
    assert os.environ["COSMOS_ENDPOINT"] == f"https://127.0.0.1:{local_stack.ports.cosmos}/"
    assert f"127.0.0.1:{local_stack.ports.blob}/" in app_settings["ImportsStorage"]
    assert app_settings["AzureWebJobsStorage"] == app_settings["ImportsStorage"]

    settings = config.get_settings()
    assert settings.environment == "local"
    assert settings.cosmos_database == names.COSMOS_DATABASE_DEFAULT
    orders = clients.get_container(names.ORDERS_CONTAINER).read()
    assert orders["partitionKey"]["paths"] == ["/customerId"]
    assert clients.get_blob_service().get_container_client(names.IMPORTS_BLOB_CONTAINER).exists()
    assert clients.get_queue(names.IMPORT_CHUNKS_QUEUE).get_queue_properties().name == (
        names.IMPORT_CHUNKS_QUEUE
    )


# --- lifecycle (a private stack, so outages do not disturb other tests) -------------------------


@pytest.fixture(scope="module")
def own_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    stack = start_stack_on_free_ports(tmp_path_factory.mktemp("own-stack"))
    try:
        stack.provision()
        yield stack
    finally:
        stack.stop()


def test_cosmos_outage_and_recovery(own_stack: LocalStack) -> None:
    old_pid = own_stack.pids()[COSMOS]
    own_stack.stop_service(COSMOS)

    assert COSMOS not in own_stack.pids()
    assert _wait_until_gone([old_pid]) == []
    assert _refuses_connections(own_stack.ports.cosmos)
    with pytest.raises(ServiceRequestError):
        CosmosClient(
            own_stack.cosmos_endpoint,
            COSMOS_EMULATOR_KEY,
            enable_endpoint_discovery=False,
            retry_total=0,
            connection_timeout=1,
        )

    own_stack.start_service(COSMOS)

    assert own_stack.pids()[COSMOS] != old_pid
    with _cosmos(own_stack) as client:
        container = client.get_database_client(names.COSMOS_DATABASE_DEFAULT).get_container_client(
            names.ORDERS_CONTAINER
        )
        assert container.read()["partitionKey"]["paths"] == ["/customerId"]


def test_cosmos_keeps_its_data_across_a_restart_and_reset_forgets_every_stand_in(
    tmp_path: Path,
) -> None:
    """Azurite keeps blobs and the broker messages on disk; the Cosmos stand-in must keep its
    items too, or the local state contradicts itself after a restart (an imported file's
    receipt without its orders). One reset forgets all of it together."""
    stack = start_stack_on_free_ports(tmp_path)
    try:
        stack.provision()
        with _cosmos(stack) as client:
            database = client.get_database_client(names.COSMOS_DATABASE_DEFAULT)
            inventory = database.get_container_client(names.INVENTORY_CONTAINER)
            stored = inventory.create_item({"id": "S1", "sku": "S1", "available": 3})
            inventory.create_item({"id": "r:x", "sku": "S1", "quantity": 1, "ttl": 3600})
        with BlobServiceClient.from_connection_string(stack.storage_connection_string) as blobs:
            blobs.get_blob_client(names.IMPORTS_BLOB_CONTAINER, "kept.csv").upload_blob(b"x")
    finally:
        stack.stop()  # SIGTERM: the stand-in writes what it holds

    stack = start_stack_on_free_ports(tmp_path)  # other ports, same work directory
    try:
        with _cosmos(stack) as client:
            database = client.get_database_client(names.COSMOS_DATABASE_DEFAULT)
            inventory = database.get_container_client(names.INVENTORY_CONTAINER)
            again = inventory.read_item("S1", partition_key="S1")
            assert (again["available"], again["_etag"]) == (3, stored["_etag"])
            assert inventory.read()["defaultTtl"] == -1  # container settings kept too
            assert inventory.read_item("r:x", partition_key="S1")["ttl"] == 3600
            # New items get new ids: the restored counters go on where they were.
            created = inventory.create_item({"id": "S2", "sku": "S2", "available": 1})
            assert created["_rid"] not in {stored["_rid"]}
        with pytest.raises(StackError, match="running"):
            reset_stack_data(tmp_path)
    finally:
        stack.stop()

    actions = reset_stack_data(tmp_path)

    assert {Path(a.removeprefix("removed ")).name for a in actions} >= {"azurite", "cosmos"}
    stack = start_stack_on_free_ports(tmp_path)
    try:
        stack.provision()
        with _cosmos(stack) as client:
            database = client.get_database_client(names.COSMOS_DATABASE_DEFAULT)
            inventory = database.get_container_client(names.INVENTORY_CONTAINER)
            assert list(inventory.query_items("SELECT * FROM c", partition_key="S1")) == []
        with BlobServiceClient.from_connection_string(stack.storage_connection_string) as blobs:
            blob = blobs.get_blob_client(names.IMPORTS_BLOB_CONTAINER, "kept.csv")
            assert not blob.exists()
    finally:
        stack.stop()


def test_a_paused_service_accepts_connections_but_answers_only_after_resume(
    own_stack: LocalStack,
) -> None:
    with _cosmos(own_stack) as client:
        database = client.get_database_client(names.COSMOS_DATABASE_DEFAULT)
        database.read()  # connected and warm before the hang
        with own_stack.paused(COSMOS):
            assert own_stack.is_paused(COSMOS)
            # The kernel still completes the TCP handshake: a hang, not an outage.
            with socket.create_connection(("127.0.0.1", own_stack.ports.cosmos), timeout=1):
                pass
            began = time.monotonic()
            with pytest.raises(ServiceResponseError):
                database.read(read_timeout=1, retry_total=0)
            # The read timed out instead of hanging for as long as the pause lasts. The SDK
            # still retries a failed connection by itself (a few 1 s timeouts, more on a busy
            # 2-core runner), so the bound is loose: a hang would last the test's timeout.
            assert time.monotonic() - began < 30
        assert not own_stack.is_paused(COSMOS)
        assert database.read()["id"] == names.COSMOS_DATABASE_DEFAULT


def test_a_paused_service_stops_without_waiting_for_the_kill_grace(own_stack: LocalStack) -> None:
    own_stack.pause_service(AZURITE)
    began = time.monotonic()
    own_stack.stop_service(AZURITE)
    assert time.monotonic() - began < 3  # the SIGTERM is seen at once, no SIGKILL needed
    own_stack.start_service(AZURITE)
    assert not own_stack.is_paused(AZURITE)


def test_azurite_outage_and_recovery_keeps_data(own_stack: LocalStack) -> None:
    connection = own_stack.storage_connection_string
    with BlobServiceClient.from_connection_string(connection) as blobs:
        blobs.get_blob_client(names.IMPORTS_BLOB_CONTAINER, "before-outage.csv").upload_blob(
            b"external_id\n", overwrite=True
        )

    own_stack.stop_service(AZURITE)
    assert all(
        _refuses_connections(port)
        for port in (own_stack.ports.blob, own_stack.ports.queue, own_stack.ports.table)
    )

    own_stack.start_service(AZURITE)
    with BlobServiceClient.from_connection_string(connection) as blobs:
        blob = blobs.get_blob_client(names.IMPORTS_BLOB_CONTAINER, "before-outage.csv")
        assert blob.download_blob().readall() == b"external_id\n"


def test_a_taken_port_is_refused_with_a_clear_error(tmp_path: Path) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        taken = squatter.getsockname()[1]
        ports = StackPorts.free()
        stack = LocalStack(StackPorts(ports.blob, ports.queue, ports.table, taken), tmp_path)
        with pytest.raises(PortInUseError, match=f"port {taken} \\(cosmos\\)"):
            stack.start()
        assert stack.pids() == {}


def test_missing_node_modules_says_to_run_bootstrap(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(services, "AZURITE_BIN", tmp_path / "no-node-modules" / "azurite")
    with pytest.raises(StackError, match=r"scripts/bootstrap\.sh"):
        LocalStack(StackPorts.free(), tmp_path).start()


def _processes_mentioning(text: str) -> list[int]:
    return [
        int(entry.name)
        for entry in Path("/proc").iterdir()
        if entry.name.isdigit() and text in " ".join(read_cmdline(int(entry.name)) or [])
    ]


def test_a_service_that_fails_to_start_is_named_with_its_log_and_nothing_is_left(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    broken_launcher = tmp_path / "broken_launcher.js"
    broken_launcher.write_text('console.error("simulated startup failure"); process.exit(3);\n')
    monkeypatch.setattr(services, "COSMOS_LAUNCHER", broken_launcher)
    stack = LocalStack(StackPorts.free(), tmp_path / "work")

    with pytest.raises(ServiceStartError) as caught:
        stack.start()

    error = caught.value
    assert error.service == COSMOS
    assert error.log_path == stack.log_path(COSMOS)
    assert "exited with code 3" in str(error)
    assert "simulated startup failure" in str(error)
    assert str(stack.log_path(COSMOS)) in str(error)
    # Azurite, started alongside, was stopped again.
    assert stack.pids() == {}
    assert _processes_mentioning(str(tmp_path / "work")) == []


def test_stop_leaves_no_process(own_stack: LocalStack) -> None:
    # Runs last in this module: it ends the private stack.
    pids = list(own_stack.pids().values())
    assert len(pids) == len(SERVICE_NAMES)

    own_stack.stop()
    own_stack.stop()  # idempotent

    assert [pid for pid in pids if not _gone(pid)] == []
    assert own_stack.pids() == {}
    assert not (own_stack.workdir / "stack.json").exists()


# --- the command line ----------------------------------------------------------------------------


def _start_up_command(workdir: Path) -> subprocess.Popen[bytes]:
    """`up` in its own session, its output going to ``<workdir>/up.out``."""
    workdir.mkdir(parents=True, exist_ok=True)
    with (workdir / "up.out").open("wb") as output:
        return subprocess.Popen(
            [*UP_COMMAND, "--workdir", str(workdir)],
            cwd=REPO_ROOT,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def _wait_until_ready(process: subprocess.Popen[bytes], workdir: Path) -> str:
    """Output of `up` once it printed its ready line; fails if it exits or times out first."""
    deadline = time.monotonic() + CLI_TIMEOUT_SECONDS
    while True:
        output = (workdir / "up.out").read_text(errors="replace")
        if READY_LINE in output:
            return output
        if process.poll() is not None or time.monotonic() > deadline:
            pytest.fail(f"`up` did not get ready (exit code {process.poll()}):\n{output}")
        time.sleep(0.05)


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "localdev.stack", *args],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=CLI_TIMEOUT_SECONDS,
        check=False,
    )


def _recorded_pids(workdir: Path) -> list[int]:
    state = json.loads((workdir / "stack.json").read_text())
    return [service["pid"] for service in state["services"].values()]


def _kill_if_running(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=10)


def test_cli_up_status_down_round_trip(tmp_path: Path) -> None:
    up = _start_up_command(tmp_path)
    try:
        output = _wait_until_ready(up, tmp_path)
        settings = json.loads(output[output.index("{") : output.rindex("}") + 1])
        assert settings["ORDERFLOW_ENVIRONMENT"] == "local"
        pids = _recorded_pids(tmp_path)
        assert len(pids) == len(SERVICE_NAMES)

        status = _cli("status", "--workdir", str(tmp_path))
        assert status.returncode == 0, status.stdout + status.stderr
        assert "cosmos: running" in status.stdout
        assert "azurite: running" in status.stdout

        paused = _cli("pause", "cosmos", "--workdir", str(tmp_path))
        assert paused.returncode == 0, paused.stdout + paused.stderr
        assert "cosmos: paused" in _cli("status", "--workdir", str(tmp_path)).stdout
        resumed = _cli("resume", "cosmos", "--workdir", str(tmp_path))
        assert resumed.returncode == 0, resumed.stdout + resumed.stderr
        assert "cosmos: running" in _cli("status", "--workdir", str(tmp_path)).stdout
        unknown = _cli("pause", "nosuchservice", "--workdir", str(tmp_path))
        assert unknown.returncode != 0

        second = _cli("up", "--ports", "free", "--workdir", str(tmp_path))
        assert second.returncode == 2
        assert "still running" in second.stderr
        assert _cli("status", "--workdir", str(tmp_path)).returncode == 0  # record kept

        down = _cli("down", "--workdir", str(tmp_path))
        assert down.returncode == 0, down.stdout + down.stderr

        assert up.wait(timeout=CLI_TIMEOUT_SECONDS) == 0
        assert _wait_until_gone(pids) == []
        assert _cli("status", "--workdir", str(tmp_path)).returncode == 1
    finally:
        _kill_if_running(up)


def test_services_die_with_a_killed_up_command_and_down_cleans_the_record(
    tmp_path: Path,
) -> None:
    up = _start_up_command(tmp_path)
    try:
        _wait_until_ready(up, tmp_path)
        pids = _recorded_pids(tmp_path)

        up.send_signal(signal.SIGKILL)  # no atexit, no signal handler: only the kernel helps
        up.wait(timeout=10)

        assert _wait_until_gone(pids) == []
        down = _cli("down", "--workdir", str(tmp_path))
        assert down.returncode == 0
        assert "nothing was running" in down.stdout
        assert not (tmp_path / "stack.json").exists()
    finally:
        _kill_if_running(up)


def test_the_event_grid_stand_in_pauses_like_every_stand_in(local_stack: LocalStack) -> None:
    """Paused, the topic accepts connections and never answers (a hung Event Grid); resumed, it
    takes events again."""
    from azure.core.credentials import AzureKeyCredential
    from azure.core.exceptions import ServiceResponseError
    from azure.core.messaging import CloudEvent
    from azure.eventgrid import EventGridPublisherClient

    settings = local_stack.app_settings()
    event: CloudEvent[dict[str, int]] = CloudEvent(source="/t", type="Tests.Pause", data={"n": 1})
    with EventGridPublisherClient(
        settings["EVENTGRID_TOPIC_ENDPOINT"],
        AzureKeyCredential(settings["EVENTGRID_TOPIC_KEY"]),
        retry_total=0,
    ) as publisher:
        with local_stack.paused("eventgrid"):
            assert local_stack.is_paused("eventgrid")
            began = time.monotonic()
            with pytest.raises(ServiceResponseError):
                publisher.send(event, read_timeout=1, connection_timeout=1)
            assert time.monotonic() - began < 5
        assert not local_stack.is_paused("eventgrid")
        publisher.send(event, read_timeout=5)
