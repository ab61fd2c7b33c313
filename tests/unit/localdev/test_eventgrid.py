"""The Event Grid stand-in's pieces that need no process: what the topic accepts, the
subscriptions file, filters, schema conversion and the retry schedule setting."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from localdev.eventgrid.delivery import (
    DEFAULT_RETRY_DELAYS_SECONDS,
    dead_letter_blob_name,
    parse_retry_delays,
    to_cloudevent,
)
from localdev.eventgrid.subscriptions import (
    EventFilter,
    SubscriptionsFileError,
    Topic,
    load_subscriptions,
    parse_subscriptions,
)
from localdev.eventgrid.topic import TopicError, check_key, parse_events, stamp

CLOUDEVENTS_TOPIC = Topic("orderflow", "custom", "CloudEventSchemaV1_0")
EVENTGRID_TOPIC = Topic("legacy", "custom", "EventGridSchema")
BATCH = "application/cloudevents-batch+json; charset=utf-8"


def cloud(**extra: Any) -> dict[str, Any]:
    return {"specversion": "1.0", "id": "1", "source": "/s", "type": "t", **extra}


def refused(topic: Topic, body: bytes, content_type: str = BATCH) -> TopicError:
    with pytest.raises(TopicError) as error:
        parse_events(topic, content_type, body)
    return error.value


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        (b"", "not valid JSON"),
        (b"[" * 100_000, "not valid JSON"),
        (b"{}", "non-empty JSON array"),
        (b"[]", "non-empty JSON array"),
        (b"[1]", "not a JSON object"),
        (json.dumps([{"specversion": "1.0", "id": "1"}]).encode(), "'source' was not set"),
        (json.dumps([cloud(specversion="1.1")]).encode(), "specversion"),
        (json.dumps([cloud(id=5)]).encode(), "'id' was not set"),
        (json.dumps([cloud(), cloud(type="")]).encode(), "event 1: required property 'type'"),
    ],
)
def test_the_topic_refuses_what_event_grid_refuses(body: bytes, problem: str) -> None:
    error = refused(CLOUDEVENTS_TOPIC, body)
    assert error.status == 400
    assert problem in error.message
    assert error.body()["error"]["details"][0]["code"] == "InputJsonInvalid"


def test_the_topics_input_schema_decides_the_content_type() -> None:
    event = {"id": "1", "eventType": "x", "subject": "s", "eventTime": "2026-11-21T00:00:00Z"}
    assert (
        refused(CLOUDEVENTS_TOPIC, json.dumps([event]).encode(), "application/json").status == 400
    )
    assert refused(EVENTGRID_TOPIC, json.dumps([cloud()]).encode(), BATCH).status == 400
    assert parse_events(EVENTGRID_TOPIC, "application/json", json.dumps([event]).encode()) == [
        event
    ]
    # One object is one event, in both schemas.
    assert parse_events(EVENTGRID_TOPIC, "application/json", json.dumps(event).encode()) == [event]
    single = json.dumps(cloud()).encode()
    assert parse_events(CLOUDEVENTS_TOPIC, "application/cloudevents+json", single) == [cloud()]
    with pytest.raises(TopicError, match="metadataVersion"):
        parse_events(
            EVENTGRID_TOPIC,
            "application/json",
            json.dumps([{**event, "metadataVersion": "2"}]).encode(),
        )


def test_over_one_megabyte_is_413() -> None:
    big = json.dumps([cloud(data="x" * 1_048_576)]).encode()
    error = refused(CLOUDEVENTS_TOPIC, big)
    assert error.status == 413
    assert error.body()["error"]["code"] == "PayloadTooLarge"


def test_the_key_is_compared_exactly_and_a_topic_without_a_key_refuses_everyone() -> None:
    check_key("k", "k")
    for given, key in (("K", "k"), (None, "k"), ("", ""), ("k", "")):
        with pytest.raises(TopicError) as error:
            check_key(given, key)
        assert error.value.status == 401


def test_accepted_event_grid_events_are_stamped_as_event_grid_stamps_them() -> None:
    event = {"id": "1", "eventType": "x", "subject": "s", "eventTime": "t"}
    stamped = stamp("/subscriptions/x/topics/legacy", event, cloudevents=False)
    assert stamped == {
        **event,
        "topic": "/subscriptions/x/topics/legacy",
        "dataVersion": "",
        "metadataVersion": "1",
    }
    assert stamp("/t", cloud(), cloudevents=True) == cloud()


def test_event_grid_events_convert_to_cloudevents() -> None:
    event = {
        "id": "1",
        "topic": "/t",
        "eventType": "Microsoft.Storage.BlobCreated",
        "subject": "/blobServices/default/containers/c/blobs/b",
        "eventTime": "2026-11-21T00:00:00Z",
        "data": {"url": "u"},
    }
    assert to_cloudevent(event) == {
        "specversion": "1.0",
        "id": "1",
        "source": "/t",
        "type": "Microsoft.Storage.BlobCreated",
        "subject": "/blobServices/default/containers/c/blobs/b",
        "time": "2026-11-21T00:00:00Z",
        "datacontenttype": "application/json",
        "data": {"url": "u"},
    }


def test_filters_match_types_and_subjects_as_event_grid_does() -> None:
    paid = EventFilter(("Orderflow.Order.Paid",), "customers/", "")
    assert paid.matches("orderflow.order.PAID", "Customers/a/orders/b")
    assert not paid.matches("Orderflow.Order.Placed", "customers/a/orders/b")
    assert not paid.matches("Orderflow.Order.Paid", "other/a")
    exact = EventFilter((), "A/", ".csv", case_sensitive=True)
    assert exact.matches("anything", "A/x.csv")
    assert not exact.matches("anything", "a/x.csv")
    assert not exact.matches("anything", "A/x.CSV")


def test_the_retry_schedule_comes_from_the_setting() -> None:
    assert parse_retry_delays(None) == DEFAULT_RETRY_DELAYS_SECONDS
    assert parse_retry_delays("") == DEFAULT_RETRY_DELAYS_SECONDS
    assert parse_retry_delays("0.5, 1,2") == (0.5, 1.0, 2.0)
    for bad in ("x", "1,,2", "-1", "99999"):
        with pytest.raises(ValueError, match="LOCALDEV_EVENTGRID_RETRY_DELAYS"):
            parse_retry_delays(bad)


def test_dead_letter_blobs_are_named_as_event_grid_names_them() -> None:
    from datetime import UTC, datetime

    name = dead_letter_blob_name("route-order-events", datetime(2026, 8, 8, 5, tzinfo=UTC))
    assert name.startswith("ROUTE-ORDER-EVENTS/2026/8/8/5/")
    assert name.endswith(".json")


def test_the_shipped_subscriptions_file_loads() -> None:
    wiring = load_subscriptions()
    assert wiring.custom_topic().input_schema == "CloudEventSchemaV1_0"
    assert {sub.name for sub in wiring.subscriptions} >= {"route-order-events"}


VALID: dict[str, Any] = {
    "deadLetterContainer": "dl",
    "topics": {"t": {"kind": "custom", "inputSchema": "CloudEventSchemaV1_0"}},
    "subscriptions": [
        {
            "name": "s",
            "topic": "t",
            "destination": {"endpointType": "AzureFunction", "functionName": "f"},
        }
    ],
}


def _broken(path: tuple[Any, ...], value: Any) -> dict[str, Any]:
    document = copy.deepcopy(VALID)
    target: Any = document
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return document


@pytest.mark.parametrize(
    ("document", "problem"),
    [
        (_broken(("subscriptions", 0, "topic"), "nope"), "not a declared topic"),
        (_broken(("subscriptions", 0, "filtre"), {}), "unknown fields: filtre"),
        (_broken(("subscriptions", 0, "destination", "endpointType"), "EventHub"), "endpointType"),
        (_broken(("subscriptions", 0, "eventDeliverySchema"), "EventGridSchema"), "cannot deliver"),
        (_broken(("subscriptions", 0, "retryPolicy"), {"maxDeliveryAttempts": 31}), "1 to 30"),
        (_broken(("subscriptions", 0, "filter"), {"includedEventTypes": "x"}), "list of strings"),
        (_broken(("topics", "t", "kind"), "partner"), "kind"),
        (_broken(("subscriptions",), [VALID["subscriptions"][0]] * 2), "unique"),
        (
            _broken(
                ("subscriptions", 0, "destination"),
                {"endpointType": "WebHook", "functionsPath": "/api/x"},
            ),
            "/runtime/webhooks/",
        ),
    ],
)
def test_a_subscriptions_file_with_a_mistake_is_refused_saying_where(
    document: dict[str, Any], problem: str
) -> None:
    parse_subscriptions(VALID)
    with pytest.raises(SubscriptionsFileError, match=problem):
        parse_subscriptions(document)
