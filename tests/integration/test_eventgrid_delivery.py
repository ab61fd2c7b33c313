"""The local host's Event Grid delivery: the local topic endpoint (auth, validation, one
subscription per function, retries with backoff, dead-lettering) and the Event Grid webhook
(Notification, SubscriptionValidation, the CloudEvents handshake), on a small app."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures.host import HostFactory, HostProcess, HttpResult

pytestmark = pytest.mark.integration

APP_DIR = Path(__file__).resolve().parents[1] / "fixtures" / "eventgrid_app"
TOPIC = "/runtime/eventgrid/topics/orderflow/api/events"
KEY = "test-topic-key"
CLOUDEVENTS = {"Content-Type": "application/cloudevents-batch+json; charset=utf-8"}
TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


@pytest.fixture
def log_file(tmp_path: Path) -> Path:
    path = tmp_path / "events.jsonl"
    path.touch()
    return path


@pytest.fixture
def host(local_host_factory: HostFactory, log_file: Path) -> HostProcess:
    return local_host_factory(
        APP_DIR,
        env={
            "EVENTS_LOG": str(log_file),
            "EVENTGRID_TOPIC_KEY": KEY,
            "EVENTGRID_TOPIC_ENDPOINT": f"http://127.0.0.1:{{port}}{TOPIC}",
            "LOCALDEV_EVENTGRID_RETRY_DELAYS": "0.05,0.1,0.1",
        },
    )


def cloud_event(**data: Any) -> dict[str, Any]:
    return {
        "specversion": "1.0",
        "id": str(uuid.uuid4()),
        "source": "/tests",
        "type": "Tests.Something.Happened",
        "subject": "things/1",
        "time": "2026-11-21T12:00:00Z",
        "datacontenttype": "application/json",
        "traceparent": TRACEPARENT,
        "data": data,
    }


def publish(host: HostProcess, events: Any, *, key: str | None = KEY, **headers: str) -> HttpResult:
    all_headers = {**CLOUDEVENTS, **headers}
    if key is not None:
        all_headers["aeg-sas-key"] = key
    body = events if isinstance(events, bytes) else json.dumps(events).encode()
    return host.request("POST", TOPIC, body=body, headers=all_headers)


def deliveries(log_file: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in log_file.read_text().splitlines() if line]


def wait_for(
    log_file: Path, condition: Callable[[list[dict[str, Any]]], bool], timeout: float = 10
) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while True:
        seen = deliveries(log_file)
        if condition(seen) or time.monotonic() > deadline:
            return seen
        time.sleep(0.02)


def test_the_topic_delivers_each_event_to_every_subscription(
    host: HostProcess, log_file: Path
) -> None:
    event = cloud_event(n=1)
    response = publish(host, [event])
    assert response.status == 200, response.body
    seen = wait_for(log_file, lambda s: len(s) >= 2)
    assert sorted(d["function"] for d in seen) == ["flaky", "steady"]
    for delivery in seen:
        assert delivery["id"] == event["id"]
        assert delivery["kind"] == "CloudEvent"
        assert delivery["type"] == "Tests.Something.Happened"
        assert delivery["data"] == {"n": 1}
        # The invocation continues the event's trace with a span of its own.
        trace_id = TRACEPARENT.split("-")[1]
        assert delivery["traceparent"].split("-")[1] == trace_id
        assert delivery["traceparent"] != TRACEPARENT


def test_event_grid_schema_events_are_delivered_too(host: HostProcess, log_file: Path) -> None:
    event = {
        "id": "eg-1",
        "eventType": "Microsoft.Storage.BlobCreated",
        "subject": "/blobServices/default/containers/x/blobs/y",
        "eventTime": "2026-11-21T12:00:00Z",
        "dataVersion": "1",
        "data": {"url": "http://x"},
    }
    response = publish(host, [event], **{"Content-Type": "application/json"})
    assert response.status == 200, response.body
    seen = wait_for(log_file, lambda s: len(s) >= 2)
    assert {(d["kind"], d["type"]) for d in seen} == {
        ("EventGridEvent", "Microsoft.Storage.BlobCreated")
    }


@pytest.mark.parametrize(
    ("key", "body", "status"),
    [
        (None, [cloud_event()], 401),
        ("wrong", [cloud_event()], 401),
        (KEY, b"{not json", 400),
        (KEY, {"specversion": "1.0"}, 400),
        (KEY, [], 400),
        (KEY, [{"specversion": "1.0", "id": "x"}], 400),
        (KEY, [{**cloud_event(), "specversion": "0.3"}], 400),
        (KEY, ["text"], 400),
        (KEY, [cloud_event(blob="x" * 1_100_000)], 413),
    ],
)
def test_the_topic_refuses_bad_requests_and_delivers_nothing(
    host: HostProcess, log_file: Path, key: str | None, body: Any, status: int
) -> None:
    response = publish(host, body, key=key)
    assert response.status == status
    if status == 400:
        assert response.json()["error"]["message"]
    marker = cloud_event()
    assert publish(host, [marker]).status == 200
    seen = wait_for(log_file, lambda s: len(s) >= 2)
    assert {d["id"] for d in seen} == {marker["id"]}


def test_a_failed_delivery_is_retried_with_backoff_until_it_succeeds(
    host: HostProcess, log_file: Path
) -> None:
    event = cloud_event(failures=2)
    assert publish(host, [event]).status == 200
    seen = wait_for(log_file, lambda s: len([d for d in s if d["function"] == "flaky"]) >= 3)
    flaky = [d for d in seen if d["function"] == "flaky"]
    assert [d["retryCount"] for d in flaky] == [0, 1, 2]
    assert len([d for d in seen if d["function"] == "steady"]) == 1  # its own subscription
    logs = host.logs()
    assert "dead-lettered" not in logs


def test_an_event_that_keeps_failing_is_dead_lettered_after_the_last_attempt(
    host: HostProcess, log_file: Path
) -> None:
    event = cloud_event(failures=99)
    assert publish(host, [event]).status == 200
    logs = host.wait_for_log("dead-lettered", timeout=10)
    assert f"event {event['id']} of topic 'orderflow' dead-lettered for subscription 'flaky'" in (
        logs
    )
    assert "after 4 failed deliveries" in logs
    assert len([d for d in deliveries(log_file) if d["function"] == "flaky"]) == 4


def test_the_webhook_invokes_one_function_like_the_functions_host(
    host: HostProcess, log_file: Path
) -> None:
    path = "/runtime/webhooks/eventgrid?functionName=steady"
    notification = {"aeg-event-type": "Notification", "Content-Type": "application/json"}
    event = cloud_event(n=2)

    response = host.request("POST", path, body=json.dumps([event]).encode(), headers=notification)

    assert response.status == 202
    assert [d["function"] for d in deliveries(log_file)] == ["steady"]
    failing = host.request(
        "POST",
        "/runtime/webhooks/eventgrid?functionName=flaky",
        body=json.dumps(cloud_event(failures=5)).encode(),
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


def test_the_host_points_a_port_placeholder_topic_endpoint_at_itself(host: HostProcess) -> None:
    endpoint = host.request("GET", "/api/topic").body.decode()
    assert endpoint == f"http://127.0.0.1:{host.port}{TOPIC}"
