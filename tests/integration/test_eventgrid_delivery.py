"""The Event Grid stand-in (``localdev.eventgrid``): the custom topic as the SDK's
``EventGridPublisherClient`` uses it (auth, schemas, single and batch, size limits),
subscriptions with filters, delivery as Event Grid delivers (headers, retries, dead-lettering
to Azurite, answers never retried), and the Functions host's Event Grid webhook on a small
app, reached by the stand-in as by Event Grid.
"""

from __future__ import annotations

import base64
import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from azure.core.credentials import AzureKeyCredential
from azure.core.exceptions import ClientAuthenticationError, HttpResponseError
from azure.core.messaging import CloudEvent
from azure.eventgrid import EventGridEvent, EventGridPublisherClient
from azure.storage.blob import BlobServiceClient
from azure.storage.queue import QueueClient

from localdev.eventgrid import LOCAL_TOPIC_KEY
from localdev.stack import LocalStack
from tests.fixtures.eventgrid import DeliveryReceiver, EventGridStandIn
from tests.fixtures.host import HostFactory, HostProcess

pytestmark = pytest.mark.integration

APP_DIR = Path(__file__).resolve().parents[1] / "fixtures" / "eventgrid_app"
TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
DEAD_LETTERS = "eventgrid-deadletters"
RETRY_DELAYS = "0.05,0.1,0.1"  # 4 attempts


def wiring(
    *subscriptions: dict[str, Any], input_schema: str = "CloudEventSchemaV1_0"
) -> dict[str, Any]:
    return {
        "deadLetterContainer": DEAD_LETTERS,
        "topics": {"orderflow": {"kind": "custom", "inputSchema": input_schema}},
        "subscriptions": list(subscriptions),
    }


def to_function(name: str, **extra: Any) -> dict[str, Any]:
    return {
        "name": f"to-{name}",
        "topic": "orderflow",
        "destination": {"endpointType": "AzureFunction", "functionName": name},
        **extra,
    }


CLOUDEVENT_WIRING = wiring(
    to_function("steady"),
    to_function("flaky", filter={"includedEventTypes": ["Tests.Something.Happened"]}),
    to_function(
        "orders",
        filter={"subjectBeginsWith": "customers/", "subjectEndsWith": "/paid"},
    ),
)


@pytest.fixture
def receiver() -> Iterator[DeliveryReceiver]:
    receiver = DeliveryReceiver()
    try:
        yield receiver
    finally:
        receiver.stop()


def start(
    tmp_path: Path, document: dict[str, Any], functions_url: str, stack: LocalStack
) -> EventGridStandIn:
    return EventGridStandIn(
        tmp_path, document, functions_url=functions_url, stack=stack, retry_delays=RETRY_DELAYS
    ).start()


@pytest.fixture
def standin(
    tmp_path: Path, receiver: DeliveryReceiver, local_stack: LocalStack
) -> Iterator[EventGridStandIn]:
    standin = start(tmp_path, CLOUDEVENT_WIRING, receiver.url, local_stack)
    try:
        yield standin
    finally:
        standin.stop()


def client(standin: EventGridStandIn, key: str = LOCAL_TOPIC_KEY) -> EventGridPublisherClient:
    return EventGridPublisherClient(standin.endpoint, AzureKeyCredential(key))


def cloud_event(event_type: str = "Tests.Something.Happened", **data: Any) -> CloudEvent[Any]:
    return CloudEvent(
        source="/tests",
        type=event_type,
        subject="things/1",
        data=data,
        extensions={"traceparent": TRACEPARENT},
    )


def raw_publish(
    standin: EventGridStandIn, body: bytes, content_type: str, key: str | None = LOCAL_TOPIC_KEY
) -> tuple[int, Any]:
    import http.client

    connection = http.client.HTTPConnection("127.0.0.1", standin.port, timeout=10)
    headers = {"Content-Type": content_type}
    if key is not None:
        headers["aeg-sas-key"] = key
    try:
        connection.request("POST", "/api/events?api-version=2018-01-01", body=body, headers=headers)
        response = connection.getresponse()
        payload = response.read()
        return response.status, json.loads(payload) if payload else None
    finally:
        connection.close()


def dead_letters(stack: LocalStack, subscription: str) -> list[dict[str, Any]]:
    with BlobServiceClient.from_connection_string(stack.storage_connection_string) as blobs:
        container = blobs.get_container_client(DEAD_LETTERS)
        found: list[dict[str, Any]] = []
        for blob in container.list_blobs(name_starts_with=f"{subscription.upper()}/"):
            found.extend(json.loads(container.download_blob(blob.name).readall()))
        return found


def wait_for_dead_letter(stack: LocalStack, subscription: str, event_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        for record in dead_letters(stack, subscription):
            if record["id"] == event_id:
                return record
        time.sleep(0.05)
    raise AssertionError(f"event {event_id} was not dead-lettered for {subscription}")


# --- the topic ----------------------------------------------------------------------------


def test_the_sdk_publishes_single_events_and_batches_to_every_matching_subscription(
    standin: EventGridStandIn, receiver: DeliveryReceiver
) -> None:
    single = cloud_event(n=1)
    batch = [cloud_event(n=2), cloud_event("Tests.Other.Thing", n=3)]
    with client(standin) as publisher:
        publisher.send(single)
        publisher.send(batch)

    steady = receiver.wait_for("steady", 3)
    flaky = receiver.wait_for("flaky", 2)
    assert sorted(body["data"]["n"] for _, body in steady) == [1, 2, 3]
    assert sorted(body["data"]["n"] for _, body in flaky) == [1, 2]  # its type filter
    headers, body = steady[0]
    assert headers["aeg-event-type"] == "Notification"
    assert headers["aeg-subscription-name"] == "TO-STEADY"
    assert headers["aeg-delivery-count"] == "0"
    assert headers["Content-Type"].startswith("application/cloudevents+json")
    assert body["specversion"] == "1.0"
    assert body["source"] == "/tests"
    assert body["traceparent"] == TRACEPARENT  # extensions travel with the event
    assert receiver.to("orders") == []  # its subject filter matches none of these


def test_subject_filters_match_prefix_and_suffix_case_insensitively(
    standin: EventGridStandIn, receiver: DeliveryReceiver
) -> None:
    subjects = ["customers/a/orders/1/paid", "Customers/B/Orders/2/PAID", "customers/c", "x/paid"]
    with client(standin) as publisher:
        publisher.send(
            [CloudEvent(source="/t", type="T", subject=subject, data={}) for subject in subjects]
        )
    receiver.wait_for("steady", 4)  # every event delivered to the unfiltered subscription
    # Each subscription delivers on its own: wait for the filtered one's two as well.
    orders = receiver.wait_for("orders", 2)
    assert sorted(body["subject"] for _, body in orders) == sorted(subjects[:2])


def test_a_wrong_or_missing_key_is_401_and_publishes_nothing(
    standin: EventGridStandIn, receiver: DeliveryReceiver
) -> None:
    with client(standin, key="wrong") as publisher, pytest.raises(ClientAuthenticationError):
        publisher.send(cloud_event())
    status, body = raw_publish(standin, b"[]", "application/cloudevents-batch+json", key=None)
    assert status == 401
    assert body["error"]["code"] == "Unauthorized"
    time.sleep(0.3)
    assert receiver.requests == []


@pytest.mark.parametrize(
    ("body", "content_type", "status"),
    [
        (b"{not json", "application/cloudevents-batch+json", 400),
        (b"[]", "application/cloudevents-batch+json", 400),
        (b'["text"]', "application/cloudevents-batch+json", 400),
        (
            b'[{"specversion": "1.0", "id": "x", "source": "/s"}]',
            "application/cloudevents-batch+json",
            400,
        ),
        (
            b'[{"specversion": "0.3", "id": "x", "source": "/s", "type": "t"}]',
            "application/cloudevents-batch+json",
            400,
        ),
        # Event Grid schema events to a CloudEvents topic: the topic's input schema decides.
        (
            b'[{"id": "x", "subject": "s", "eventType": "t", "eventTime": "2026-01-01T00:00:00Z"}]',
            "application/json",
            400,
        ),
        (
            b"["
            + b'{"specversion": "1.0", "id": "x", "source": "/s", "type": "t", "data": "'
            + b"x" * 1_100_000
            + b'"}]',
            "application/cloudevents-batch+json",
            413,
        ),
    ],
)
def test_invalid_requests_are_refused_as_event_grid_refuses_them(
    standin: EventGridStandIn,
    receiver: DeliveryReceiver,
    body: bytes,
    content_type: str,
    status: int,
) -> None:
    answered, error = raw_publish(standin, body, content_type)
    assert answered == status
    assert error["error"]["code"] in {"BadRequest", "PayloadTooLarge"}
    assert error["error"]["message"]
    assert error["error"]["details"][0]["message"]
    # Nothing of a refused request is delivered; the topic still works.
    marker = cloud_event(marker=True)
    with client(standin) as publisher:
        publisher.send(marker)
    seen = receiver.wait_for("steady", 1)
    time.sleep(0.2)
    assert [body["id"] for _, body in receiver.to("steady")] == [marker.id]
    assert len(seen) == 1


def test_one_event_over_one_megabyte_is_413_through_the_sdk(standin: EventGridStandIn) -> None:
    with client(standin) as publisher, pytest.raises(HttpResponseError) as refused:
        publisher.send(cloud_event(blob="x" * 1_050_000))
    assert refused.value.status_code == 413


def test_a_single_structured_cloudevent_is_accepted(
    standin: EventGridStandIn, receiver: DeliveryReceiver
) -> None:
    event = {"specversion": "1.0", "id": "one", "source": "/s", "type": "T", "data": {"k": 1}}
    status, _ = raw_publish(standin, json.dumps(event).encode(), "application/cloudevents+json")
    assert status == 200
    assert [body["id"] for _, body in receiver.wait_for("steady", 1)] == ["one"]


# --- retries and dead letters ---------------------------------------------------------------


def test_a_failed_delivery_is_retried_until_it_succeeds(
    standin: EventGridStandIn, receiver: DeliveryReceiver, local_stack: LocalStack
) -> None:
    receiver.scripts["steady"] = [503, 500]
    event = cloud_event(n=7)
    with client(standin) as publisher:
        publisher.send(event)
    attempts = receiver.wait_for("steady", 3)
    assert [headers["aeg-delivery-count"] for headers, _ in attempts] == ["0", "1", "2"]
    assert {body["id"] for _, body in attempts} == {event.id}
    time.sleep(0.3)
    assert len(receiver.to("steady")) == 3
    assert all(record["id"] != event.id for record in dead_letters(local_stack, "to-steady"))


def test_an_event_that_keeps_failing_is_dead_lettered_to_azurite_after_the_last_attempt(
    standin: EventGridStandIn, receiver: DeliveryReceiver, local_stack: LocalStack
) -> None:
    receiver.scripts["steady"] = [500] * 10
    event = cloud_event(n=8)
    with client(standin) as publisher:
        publisher.send(event)
    record = wait_for_dead_letter(local_stack, "to-steady", event.id)
    assert len(receiver.to("steady")) == 4  # the first attempt and three retries
    assert record["deadLetterReason"] == "MaxDeliveryAttemptsExceeded"
    assert record["deliveryAttempts"] == 4
    assert record["lastHttpStatusCode"] == 500
    assert record["data"] == {"n": 8}
    assert record["publishTime"]
    assert record["lastDeliveryAttemptTime"]
    assert f"event {event.id} dead-lettered for subscription to-steady" in standin.logs()


@pytest.mark.parametrize("status", [400, 413, 403])
def test_answers_event_grid_never_retries_are_dead_lettered_at_once(
    standin: EventGridStandIn, receiver: DeliveryReceiver, local_stack: LocalStack, status: int
) -> None:
    receiver.scripts["steady"] = [status]
    event = cloud_event(n=9)
    with client(standin) as publisher:
        publisher.send(event)
    record = wait_for_dead_letter(local_stack, "to-steady", event.id)
    assert record["deliveryAttempts"] == 1
    assert record["lastHttpStatusCode"] == status
    time.sleep(0.3)
    assert len(receiver.to("steady")) == 1


def test_a_host_that_is_not_there_yet_gets_the_event_once_it_is(
    tmp_path: Path, local_stack: LocalStack
) -> None:
    receiver_port_holder = DeliveryReceiver()
    url = receiver_port_holder.url
    receiver_port_holder.stop()  # nothing listens there now: connections are refused
    standin = EventGridStandIn(
        tmp_path, CLOUDEVENT_WIRING, functions_url=url, stack=local_stack, retry_delays="0.3,1,2"
    ).start()
    try:
        with client(standin) as publisher:
            publisher.send(cloud_event(n=10))
        standin.wait_for_log("failed (attempt 1 of 4", timeout=5)
        assert "ConnectionRefusedError" in standin.logs()
    finally:
        standin.stop()


# --- other schemas and destinations -----------------------------------------------------------


def test_an_event_grid_schema_topic_delivers_arrays_and_converts_for_cloudevents_subscribers(
    tmp_path: Path, receiver: DeliveryReceiver, local_stack: LocalStack
) -> None:
    document = wiring(
        to_function("steady", eventDeliverySchema="EventGridSchema"),
        to_function("flaky", eventDeliverySchema="CloudEventSchemaV1_0"),
        input_schema="EventGridSchema",
    )
    standin = start(tmp_path, document, receiver.url, local_stack)
    try:
        event = EventGridEvent(
            subject="/blobServices/default/containers/x/blobs/y",
            event_type="Microsoft.Storage.BlobCreated",
            data={"url": "http://x"},
            data_version="1",
        )
        with client(standin) as publisher:
            publisher.send([event])
        (headers, body), *_ = receiver.wait_for("steady", 1)
        assert headers["Content-Type"].startswith("application/json")
        assert isinstance(body, list)
        assert len(body) == 1
        assert body[0]["eventType"] == "Microsoft.Storage.BlobCreated"
        assert body[0]["topic"].endswith("/providers/Microsoft.EventGrid/topics/orderflow")
        assert body[0]["metadataVersion"] == "1"
        assert headers["aeg-data-version"] == "1"
        (_, converted), *_ = receiver.wait_for("flaky", 1)
        assert converted["specversion"] == "1.0"
        assert converted["type"] == "Microsoft.Storage.BlobCreated"
        assert converted["source"] == body[0]["topic"]
        assert converted["data"] == {"url": "http://x"}
        cloudevents: CloudEvent[Any] = CloudEvent(source="/s", type="t", data={})
        with client(standin) as publisher, pytest.raises(HttpResponseError) as refused:
            publisher.send([cloudevents])
        assert refused.value.status_code == 400
    finally:
        standin.stop()


def test_a_storage_queue_destination_gets_one_base64_message_per_event(
    tmp_path: Path, receiver: DeliveryReceiver, local_stack: LocalStack
) -> None:
    queue = f"eg-{uuid.uuid4().hex[:12]}"
    document = wiring(
        {
            "name": "to-queue",
            "topic": "orderflow",
            "destination": {"endpointType": "StorageQueue", "queueName": queue},
        }
    )
    with QueueClient.from_connection_string(
        local_stack.storage_connection_string, queue
    ) as client_:
        client_.create_queue()
        standin = start(tmp_path, document, receiver.url, local_stack)
        try:
            event = cloud_event(n=11)
            with client(standin) as publisher:
                publisher.send(event)
            deadline = time.monotonic() + 10
            messages: list[Any] = []
            while not messages and time.monotonic() < deadline:
                messages = list(client_.receive_messages())
                time.sleep(0.05)
            assert len(messages) == 1
            delivered = json.loads(base64.b64decode(messages[0].content))
            assert delivered["id"] == event.id
            assert delivered["data"] == {"n": 11}
        finally:
            standin.stop()


# --- the Functions host's webhook, reached by the stand-in ---------------------------------------


@pytest.fixture
def events_log(tmp_path: Path) -> Path:
    path = tmp_path / "events.jsonl"
    path.touch()
    return path


@pytest.fixture
def host(local_host_factory: HostFactory, events_log: Path) -> HostProcess:
    return local_host_factory(APP_DIR, env={"EVENTS_LOG": str(events_log)})


def invocations(events_log: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in events_log.read_text().splitlines() if line]


def test_the_stand_in_delivers_to_the_hosts_functions_and_retries_their_failures(
    tmp_path: Path, host: HostProcess, events_log: Path, local_stack: LocalStack
) -> None:
    standin = start(
        tmp_path, wiring(to_function("steady"), to_function("flaky")), host.url, local_stack
    )
    try:
        event = cloud_event(failures=2)
        with client(standin) as publisher:
            publisher.send(event)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            seen = invocations(events_log)
            if len([d for d in seen if d["function"] == "flaky"]) >= 3 and any(
                d["function"] == "steady" for d in seen
            ):
                break
            time.sleep(0.05)
        seen = invocations(events_log)
        flaky = [d for d in seen if d["function"] == "flaky"]
        steady = [d for d in seen if d["function"] == "steady"]
        assert len(flaky) == 3
        assert len(steady) == 1
        for delivery in seen:
            assert delivery["id"] == event.id
            assert delivery["kind"] == "CloudEvent"
            # The invocation continues the event's trace with a span of its own.
            assert delivery["traceparent"].split("-")[1] == TRACEPARENT.split("-")[1]
            assert delivery["traceparent"] != TRACEPARENT
        assert "dead-lettered" not in standin.logs()
    finally:
        standin.stop()


def test_the_webhook_invokes_one_function_like_the_functions_host(
    host: HostProcess, events_log: Path
) -> None:
    path = "/runtime/webhooks/eventgrid?functionName=steady"
    notification = {"aeg-event-type": "Notification", "Content-Type": "application/json"}
    event = {
        "specversion": "1.0",
        "id": "hook-1",
        "source": "/tests",
        "type": "Tests.Something.Happened",
        "data": {"n": 2},
    }

    response = host.request("POST", path, body=json.dumps([event]).encode(), headers=notification)

    assert response.status == 202
    assert [d["function"] for d in invocations(events_log)] == ["steady"]
    failing = host.request(
        "POST",
        "/runtime/webhooks/eventgrid?functionName=flaky",
        body=json.dumps({**event, "id": "hook-2", "data": {"failures": 5}}).encode(),
        headers=notification,
    )
    assert failing.status == 500
    validation = host.request(
        "POST",
        path,
        body=json.dumps(
            [
                {
                    "id": "v",
                    "eventType": "Microsoft.EventGrid.SubscriptionValidationEvent",
                    "data": {"validationCode": "code-123"},
                }
            ]
        ).encode(),
        headers={"aeg-event-type": "SubscriptionValidation"},
    )
    assert validation.status == 200
    assert validation.json() == {"validationResponse": "code-123"}
    handshake = host.request(
        "OPTIONS", path, headers={"WebHook-Request-Origin": "eventgrid.azure.net"}
    )
    assert handshake.header("WebHook-Allowed-Origin") == "eventgrid.azure.net"
    unknown = host.request(
        "POST", "/runtime/webhooks/eventgrid?functionName=nope", body=b"[]", headers=notification
    )
    assert unknown.status == 404
    no_type = host.request("POST", path, body=json.dumps([event]).encode())
    assert no_type.status == 400


def test_the_host_is_no_topic(host: HostProcess) -> None:
    """Event Grid is a service of its own: the host answers no topic path, as func start."""
    response = host.request(
        "POST",
        "/runtime/eventgrid/topics/orderflow/api/events",
        body=b"[]",
        headers={"aeg-sas-key": LOCAL_TOPIC_KEY, "Content-Type": "application/json"},
    )
    assert response.status == 404


# --- storage events ---------------------------------------------------------------------------


def test_new_blob_versions_become_blob_created_events_once_also_across_a_restart(
    tmp_path: Path, receiver: DeliveryReceiver, local_stack: LocalStack
) -> None:
    container = f"eg-{uuid.uuid4().hex[:12]}"
    hook = "/runtime/webhooks/blobs?functionName=Host.Functions.importer"
    document = {
        "deadLetterContainer": DEAD_LETTERS,
        "topics": {
            "orderflow": {"kind": "custom", "inputSchema": "CloudEventSchemaV1_0"},
            "storage": {"kind": "system", "topicType": "Microsoft.Storage.StorageAccounts"},
        },
        "subscriptions": [
            {
                "name": "to-importer",
                "topic": "storage",
                "destination": {"endpointType": "WebHook", "functionsPath": hook},
                "eventDeliverySchema": "EventGridSchema",
                "filter": {
                    "includedEventTypes": ["Microsoft.Storage.BlobCreated"],
                    "subjectBeginsWith": f"/blobServices/default/containers/{container}/blobs/",
                    "subjectEndsWith": ".csv",
                },
            }
        ],
    }
    state = tmp_path / "state"

    def standin() -> EventGridStandIn:
        return EventGridStandIn(
            tmp_path, document, functions_url=receiver.url, stack=local_stack, state_dir=state
        ).start()

    def events() -> list[dict[str, Any]]:
        with receiver._lock:
            return [json.loads(body)[0] for path, _, body in receiver.requests if path == hook]

    def wait_for_events(count: int) -> list[dict[str, Any]]:
        deadline = time.monotonic() + 10
        while len(events()) < count and time.monotonic() < deadline:
            time.sleep(0.05)
        return events()

    with BlobServiceClient.from_connection_string(local_stack.storage_connection_string) as blobs:
        files = blobs.create_container(container)
        running = standin()
        try:
            files.upload_blob("a.csv", b"x,y\n")
            files.upload_blob("ignored.txt", b"not a csv")  # the subject filter
            first = wait_for_events(1)
            files.upload_blob("a.csv", b"x,y\n1,2\n", overwrite=True)  # a new version
            second = wait_for_events(2)
        finally:
            running.stop()
        files.upload_blob("b.csv", b"written while the stand-in is down")
        running = standin()
        try:
            third = wait_for_events(3)
            time.sleep(1.5)  # a few more polls: nothing is published twice
            final = events()
        finally:
            running.stop()
    assert len(first) == 1
    event = first[0]
    assert event["eventType"] == "Microsoft.Storage.BlobCreated"
    assert event["subject"] == f"/blobServices/default/containers/{container}/blobs/a.csv"
    assert event["topic"].endswith("/providers/Microsoft.Storage/storageAccounts/devstoreaccount1")
    assert event["data"]["url"].endswith(f"/{container}/a.csv")
    assert event["data"]["contentLength"] == 4
    assert "x,y" not in json.dumps(event)  # a reference to the blob, never its content
    assert second[1]["data"]["eTag"] != event["data"]["eTag"]
    assert third[2]["subject"].endswith("/blobs/b.csv")
    assert len(final) == 3


def test_the_blob_extensions_webhook_delivers_event_grid_source_blob_triggers_once_per_version(
    local_host_factory: HostFactory, events_log: Path, local_stack: LocalStack
) -> None:
    container = f"up-{uuid.uuid4().hex[:12]}"
    host = local_host_factory(
        APP_DIR,
        env={
            **local_stack.app_settings(),
            "EVENTS_LOG": str(events_log),
            "UPLOADS_CONTAINER": container,
            "LOCALDEV_BLOB_POLL_SECONDS": "0.1",
        },
    )
    hook = "/runtime/webhooks/blobs?functionName=Host.Functions.uploads"
    notification = {"aeg-event-type": "Notification", "Content-Type": "application/json"}

    def blob_created(name: str, in_container: str = container) -> bytes:
        subject = f"/blobServices/default/containers/{in_container}/blobs/{name}"
        event = {
            "id": str(uuid.uuid4()),
            "eventType": "Microsoft.Storage.BlobCreated",
            "subject": subject,
            "eventTime": "2026-12-04T00:00:00Z",
            "data": {"url": f"http://127.0.0.1/{in_container}/{name}"},
        }
        return json.dumps([event]).encode()

    with BlobServiceClient.from_connection_string(local_stack.storage_connection_string) as blobs:
        files = blobs.create_container(container)
        files.upload_blob("a.csv", b"first")
        time.sleep(0.5)  # the container is not scanned: nothing happens without an event
        assert invocations(events_log) == []

        validation = host.request(
            "POST",
            hook,
            body=json.dumps([{"id": "v", "data": {"validationCode": "c-1"}}]).encode(),
            headers={"aeg-event-type": "SubscriptionValidation"},
        )
        assert validation.json() == {"validationResponse": "c-1"}
        assert (
            host.request("POST", hook, body=blob_created("a.csv"), headers=notification).status
            == 202
        )
        assert (
            host.request("POST", hook, body=blob_created("a.csv"), headers=notification).status
            == 202
        )
        other = blob_created("a.csv", in_container="elsewhere")
        assert host.request("POST", hook, body=other, headers=notification).status == 202
        unknown = "/runtime/webhooks/blobs?functionName=Host.Functions.nope"
        assert host.request("POST", unknown, body=other, headers=notification).status == 404

        deadline = time.monotonic() + 10
        while not invocations(events_log) and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(1)  # the duplicate event has been taken from the queue by now
        assert invocations(events_log) == [
            {"function": "uploads", "name": f"{container}/a.csv", "content": "first"}
        ]
        files.upload_blob("a.csv", b"second", overwrite=True)  # a new version: a new event
        assert (
            host.request("POST", hook, body=blob_created("a.csv"), headers=notification).status
            == 202
        )
        deadline = time.monotonic() + 10
        while len(invocations(events_log)) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert [entry["content"] for entry in invocations(events_log)] == ["first", "second"]
