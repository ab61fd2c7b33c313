"""The local host's blob and queue trigger sources against Azurite, with a tiny test app
(tests/fixtures/storage_app): receipts (once per blob version, also across restarts),
retries, dequeue counts and poison queues."""

from __future__ import annotations

import base64
import json
import signal
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from azure.storage.blob import BlobServiceClient
from azure.storage.queue import QueueClient, TextBase64EncodePolicy

from localdev.host.blob_trigger import POISON_QUEUE, path_pattern
from localdev.stack import LocalStack
from tests.fixtures.host import HostFactory, HostProcess

pytestmark = pytest.mark.integration

APP_DIR = Path(__file__).resolve().parents[1] / "fixtures" / "storage_app"
WAIT_SECONDS = 20.0


class Observed:
    """Deliveries the test app recorded on its ``observed`` queue."""

    def __init__(self, connection: str) -> None:
        self.queue = QueueClient.from_connection_string(connection, "observed")
        self.events: list[dict[str, Any]] = []

    def drain(self) -> list[dict[str, Any]]:
        for message in self.queue.receive_messages(max_messages=32, messages_per_page=32):
            self.events.append(json.loads(message.content))
            self.queue.delete_message(message)
        return self.events

    def wait_for(
        self, predicate: Callable[[list[dict[str, Any]]], bool], timeout: float = WAIT_SECONDS
    ) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate(self.drain()):
                return self.events
            time.sleep(0.05)
        raise AssertionError(f"condition not met; observed: {self.events}")


@pytest.fixture
def names() -> dict[str, str]:
    suffix = uuid.uuid4().hex[:10]
    return {"WATCHED_CONTAINER": f"watched-{suffix}", "WORK_QUEUE": f"work-{suffix}"}


@pytest.fixture
def observed(local_stack: LocalStack) -> Iterator[Observed]:
    observed = Observed(local_stack.storage_connection_string)
    observed.queue.create_queue()
    try:
        yield observed
    finally:
        observed.queue.delete_queue()
        observed.queue.close()


@pytest.fixture
def start_host(
    local_host_factory: HostFactory, local_stack: LocalStack, names: dict[str, str]
) -> Callable[..., HostProcess]:
    """Starts the test app's host; keyword arguments are extra app settings."""
    connection = local_stack.storage_connection_string
    with BlobServiceClient.from_connection_string(connection) as blobs:
        blobs.create_container(names["WATCHED_CONTAINER"])
    env = {
        "TestStorage": connection,
        "AzureWebJobsStorage": connection,
        "LOCALDEV_BLOB_POLL_SECONDS": "0.1",
        **names,
    }
    return lambda **extra: local_host_factory(APP_DIR, env={**env, **extra})


def upload(stack: LocalStack, container: str, name: str, data: bytes) -> None:
    with BlobServiceClient.from_connection_string(stack.storage_connection_string) as blobs:
        blobs.get_blob_client(container, name).upload_blob(data, overwrite=True)


def work_queue(stack: LocalStack, name: str, *, encode: bool = True) -> QueueClient:
    return QueueClient.from_connection_string(
        stack.storage_connection_string,
        name,
        message_encode_policy=TextBase64EncodePolicy() if encode else None,
    )


def of(events: list[dict[str, Any]], function: str) -> list[dict[str, Any]]:
    return [event for event in events if event["function"] == function]


def test_path_patterns_match_like_the_host() -> None:
    assert path_pattern("{name}").match("a/b.csv")
    assert path_pattern("in/{name}.csv").match("in/x.y.csv")
    assert not path_pattern("in/{name}.csv").match("out/x.csv")


def test_each_blob_version_is_delivered_once_also_across_restarts(
    start_host: Callable[[], HostProcess],
    local_stack: LocalStack,
    names: dict[str, str],
    observed: Observed,
) -> None:
    container = names["WATCHED_CONTAINER"]
    upload(local_stack, container, "before-start.txt", b"one")
    host = start_host()
    upload(local_stack, container, "dir/second.txt", b"two")

    events = observed.wait_for(lambda e: len(of(e, "on_blob")) >= 2)
    assert sorted((e["name"], e["content"], e["length"]) for e in of(events, "on_blob")) == [
        (f"{container}/before-start.txt", "one", 3),
        (f"{container}/dir/second.txt", "two", 3),
    ]

    host.stop()
    host = start_host()
    upload(local_stack, container, "before-start.txt", b"one, changed")  # a new version
    upload(local_stack, container, "third.txt", b"three")
    events = observed.wait_for(lambda e: len(of(e, "on_blob")) >= 4)
    host.wait_for_log("Executed 'Functions.on_blob'")
    events = observed.drain()

    contents = sorted(e["content"] for e in of(events, "on_blob"))
    assert contents == ["one", "one, changed", "three", "two"]
    with BlobServiceClient.from_connection_string(local_stack.storage_connection_string) as blobs:
        receipts = [
            blob.name
            for blob in blobs.get_container_client("azure-webjobs-hosts").list_blobs(
                name_starts_with="blobreceipts/"
            )
            if blob.name.endswith(f"/{container}/before-start.txt")
        ]
    assert len(receipts) == 2  # one per version
    assert all("/Host.Functions.on_blob/" in name for name in receipts)


def test_a_failing_blob_is_retried_then_reported_to_the_poison_queue(
    start_host: Callable[[], HostProcess],
    local_stack: LocalStack,
    names: dict[str, str],
    observed: Observed,
) -> None:
    container = names["WATCHED_CONTAINER"]
    host = start_host()
    upload(local_stack, container, "bad.txt", b"fail please")

    events = observed.wait_for(lambda e: len(of(e, "on_blob")) >= 3)
    host.wait_for_log("moving it to queue")
    poison = work_queue(local_stack, POISON_QUEUE, encode=False)
    found = [
        json.loads(base64.b64decode(message.content))
        for message in poison.peek_messages(max_messages=32)
    ]
    assert [e["retry"] for e in of(events, "on_blob")] == [0, 1, 2]
    assert {"ContainerName": container, "BlobName": "bad.txt"}.items() <= next(
        item for item in found if item.get("ContainerName") == container
    ).items()
    host.stop()
    assert len(of(observed.drain(), "on_blob")) == 3  # receipt written: never again


def test_queue_messages_are_retried_with_dequeue_counts_then_poisoned(
    start_host: Callable[[], HostProcess],
    local_stack: LocalStack,
    names: dict[str, str],
    observed: Observed,
) -> None:
    queue_name = names["WORK_QUEUE"]
    queue = work_queue(local_stack, queue_name)
    queue.create_queue()
    host = start_host()
    queue.send_message(json.dumps({"n": "ok"}))
    queue.send_message(json.dumps({"n": "flaky", "fail": 2}))
    queue.send_message(json.dumps({"n": "doomed", "fail": 99}))
    work_queue(local_stack, queue_name, encode=False).send_message("not base64 ***")

    def done(events: list[dict[str, Any]]) -> bool:
        bodies = [json.loads(e["body"])["n"] for e in of(events, "on_message")]
        return bodies.count("doomed") == 3 and bodies.count("flaky") == 3

    events = observed.wait_for(done)
    poison = work_queue(local_stack, f"{queue_name}-poison", encode=False)
    deadline = time.monotonic() + WAIT_SECONDS
    while time.monotonic() < deadline and len(poison.peek_messages(max_messages=32)) < 2:
        time.sleep(0.05)
    host.stop()

    counts: dict[str, list[int]] = {}
    for event in of(observed.drain(), "on_message"):
        counts.setdefault(json.loads(event["body"])["n"], []).append(event["dequeueCount"])
    assert counts == {"ok": [1], "flaky": [1, 2, 3], "doomed": [1, 2, 3]}
    poisoned = [message.content for message in poison.peek_messages(max_messages=32)]
    assert sorted(poisoned) == sorted(
        [
            base64.b64encode(json.dumps({"n": "doomed", "fail": 99}).encode()).decode(),
            "not base64 ***",
        ]
    )
    assert queue.peek_messages(max_messages=32) == []
    assert len(events) >= 7


def test_a_running_message_stays_invisible_and_a_killed_hosts_message_comes_back(
    start_host: Callable[..., HostProcess],
    local_stack: LocalStack,
    names: dict[str, str],
    observed: Observed,
) -> None:
    """The host keeps a message invisible while its function runs (renewing before the
    visibility timeout ends); when the host dies, the message is delivered again once it ends."""
    queue_name = names["WORK_QUEUE"]
    queue = work_queue(local_stack, queue_name)
    queue.create_queue()
    visibility = {"LOCALDEV_QUEUE_VISIBILITY_SECONDS": "2"}
    host = start_host(**visibility)
    queue.send_message(json.dumps({"n": "slow", "sleep": 4}))  # twice the visibility timeout
    observed.wait_for(lambda e: len(of(e, "on_message")) == 1)
    host.wait_for_log("Executed 'Functions.on_message'", timeout=WAIT_SECONDS)
    deleted = wait_until_empty(queue)  # with its renewed pop receipt (invisible ones count)
    assert deleted

    queue.send_message(json.dumps({"n": "interrupted", "sleep": 60}))
    observed.wait_for(lambda e: len(of(e, "on_message")) == 2)
    host.stop(signal.SIGKILL)
    host = start_host(**visibility)
    events = observed.wait_for(lambda e: len(of(e, "on_message")) == 3)
    host.wait_for_log("Executed 'Functions.on_message'", timeout=WAIT_SECONDS)
    host.stop()

    deliveries = [
        (json.loads(e["body"])["n"], e["dequeueCount"]) for e in of(observed.drain(), "on_message")
    ]
    assert deliveries == [("slow", 1), ("interrupted", 1), ("interrupted", 2)]
    assert wait_until_empty(queue)
    assert len(events) == 3


def wait_until_empty(queue: QueueClient) -> bool:
    """Whether the queue holds no message, visible or not, within WAIT_SECONDS."""
    deadline = time.monotonic() + WAIT_SECONDS
    while queue.get_queue_properties().approximate_message_count:
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True
