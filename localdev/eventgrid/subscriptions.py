"""The stand-in's topics and event subscriptions, read from one declarative file.

``localdev/eventgrid/subscriptions.json`` mirrors what ``infra/`` deploys (the topics of
``infra/modules/eventgrid.bicep``, the subscriptions of ``infra/event-subscriptions.bicep``)
in the vocabulary of the ``Microsoft.EventGrid`` resource types, so the two can be compared
field by field (tests/infra/test_eventgrid_subscriptions_contract.py):

- a topic is ``custom`` (the app publishes to it; ``inputSchema`` fixes which schema it
  accepts, as a topic's does) or ``system`` (a source publishes to it, such as storage);
- a subscription names its topic, its ``destination`` (``AzureFunction`` with a
  ``functionName``, ``WebHook`` with a path on the Functions host, or ``StorageQueue`` with a
  ``queueName``), its ``eventDeliverySchema``, its ``filter`` (``includedEventTypes``,
  ``subjectBeginsWith``, ``subjectEndsWith``, ``isSubjectCaseSensitive``) and its
  ``retryPolicy`` (``maxDeliveryAttempts``, ``eventTimeToLiveInMinutes``).

Anything else in the file is refused with the path of the offending field, so a typo cannot
silently subscribe nothing.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Literal

DEFAULT_FILE: Final = Path(__file__).resolve().parent / "subscriptions.json"
CLOUDEVENTS: Final = "CloudEventSchemaV1_0"
EVENTGRID: Final = "EventGridSchema"
SCHEMAS: Final = (CLOUDEVENTS, EVENTGRID)
ENDPOINT_TYPES: Final = ("AzureFunction", "WebHook", "StorageQueue")

TopicKind = Literal["custom", "system"]


class SubscriptionsFileError(ValueError):
    """The subscriptions file is not what the stand-in can serve; the message says where."""


@dataclass(frozen=True)
class Topic:
    name: str
    kind: TopicKind
    input_schema: str  # the schema events arrive in (system topics: Event Grid schema)
    topic_type: str | None = None


@dataclass(frozen=True)
class EventFilter:
    included_event_types: tuple[str, ...] = ()  # empty: every type
    subject_begins_with: str = ""
    subject_ends_with: str = ""
    case_sensitive: bool = False

    def matches(self, event_type: str, subject: str) -> bool:
        if self.included_event_types and not any(
            event_type.lower() == wanted.lower() for wanted in self.included_event_types
        ):
            return False  # Event Grid compares event types case-insensitively
        begins, ends = self.subject_begins_with, self.subject_ends_with
        if not self.case_sensitive:
            subject, begins, ends = subject.lower(), begins.lower(), ends.lower()
        return subject.startswith(begins) and subject.endswith(ends)


@dataclass(frozen=True)
class Destination:
    endpoint_type: str
    function_name: str | None = None  # AzureFunction
    functions_path: str | None = None  # WebHook: path and query on the Functions host
    queue_name: str | None = None  # StorageQueue
    max_events_per_batch: int = 1


@dataclass(frozen=True)
class Subscription:
    name: str
    topic: str
    destination: Destination
    delivery_schema: str
    filter: EventFilter = field(default_factory=EventFilter)
    max_delivery_attempts: int = 30
    event_ttl_minutes: int = 1440


@dataclass(frozen=True)
class Subscriptions:
    topics: dict[str, Topic]
    subscriptions: tuple[Subscription, ...]
    dead_letter_container: str

    def custom_topic(self) -> Topic:
        """The one custom topic the app publishes to (``/api/events``)."""
        custom = [topic for topic in self.topics.values() if topic.kind == "custom"]
        if len(custom) != 1:
            raise SubscriptionsFileError("exactly one custom topic is supported")
        return custom[0]

    def of_topic(self, topic: str) -> tuple[Subscription, ...]:
        return tuple(sub for sub in self.subscriptions if sub.topic == topic)


def _object(value: Any, where: str, allowed: set[str]) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise SubscriptionsFileError(f"{where} must be an object")
    unknown = sorted(set(value) - allowed - {"$comment"})
    if unknown:
        raise SubscriptionsFileError(f"{where} has unknown fields: {', '.join(unknown)}")
    return value


def _string(value: Any, where: str) -> str:
    if not isinstance(value, str) or not value:
        raise SubscriptionsFileError(f"{where} must be a non-empty string")
    return value


def _int(value: Any, where: str, low: int, high: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise SubscriptionsFileError(f"{where} must be an integer from {low} to {high}")
    return value


def _topic(name: str, raw: Any) -> Topic:
    where = f"topics.{name}"
    body = _object(raw, where, {"kind", "inputSchema", "topicType"})
    kind = body.get("kind")
    if kind == "custom":
        schema = body.get("inputSchema", EVENTGRID)
        if schema not in SCHEMAS:
            raise SubscriptionsFileError(f"{where}.inputSchema must be one of {SCHEMAS}")
        return Topic(name, "custom", schema)
    if kind == "system":
        return Topic(
            name, "system", EVENTGRID, _string(body.get("topicType"), f"{where}.topicType")
        )
    raise SubscriptionsFileError(f"{where}.kind must be 'custom' or 'system'")


def _destination(raw: Any, where: str) -> Destination:
    body = _object(
        raw,
        where,
        {"endpointType", "functionName", "functionsPath", "queueName", "maxEventsPerBatch"},
    )
    endpoint_type = body.get("endpointType")
    batch = _int(body.get("maxEventsPerBatch", 1), f"{where}.maxEventsPerBatch", 1, 5000)
    if endpoint_type == "AzureFunction":
        name = _string(body.get("functionName"), f"{where}.functionName")
        return Destination("AzureFunction", function_name=name, max_events_per_batch=batch)
    if endpoint_type == "WebHook":
        path = _string(body.get("functionsPath"), f"{where}.functionsPath")
        if not path.startswith("/runtime/webhooks/"):
            raise SubscriptionsFileError(f"{where}.functionsPath must be a /runtime/webhooks/ path")
        return Destination("WebHook", functions_path=path, max_events_per_batch=batch)
    if endpoint_type == "StorageQueue":
        queue = _string(body.get("queueName"), f"{where}.queueName")
        return Destination("StorageQueue", queue_name=queue, max_events_per_batch=1)
    raise SubscriptionsFileError(f"{where}.endpointType must be one of {ENDPOINT_TYPES}")


def _filter(raw: Any, where: str) -> EventFilter:
    body = _object(
        raw,
        where,
        {"includedEventTypes", "subjectBeginsWith", "subjectEndsWith", "isSubjectCaseSensitive"},
    )
    types = body.get("includedEventTypes", [])
    if not isinstance(types, list) or not all(isinstance(t, str) and t for t in types):
        raise SubscriptionsFileError(f"{where}.includedEventTypes must be a list of strings")
    begins = body.get("subjectBeginsWith", "")
    ends = body.get("subjectEndsWith", "")
    if not isinstance(begins, str) or not isinstance(ends, str):
        raise SubscriptionsFileError(f"{where}: subject filters must be strings")
    case = body.get("isSubjectCaseSensitive", False)
    if not isinstance(case, bool):
        raise SubscriptionsFileError(f"{where}.isSubjectCaseSensitive must be true or false")
    return EventFilter(tuple(types), begins, ends, case)


def _subscription(raw: Any, index: int, topics: Mapping[str, Topic]) -> Subscription:
    where = f"subscriptions[{index}]"
    body = _object(
        raw,
        where,
        {"name", "topic", "destination", "eventDeliverySchema", "filter", "retryPolicy"},
    )
    name = _string(body.get("name"), f"{where}.name")
    topic = _string(body.get("topic"), f"{where}.topic")
    if topic not in topics:
        raise SubscriptionsFileError(f"{where}.topic {topic!r} is not a declared topic")
    schema = body.get("eventDeliverySchema", topics[topic].input_schema)
    if schema not in SCHEMAS:
        raise SubscriptionsFileError(f"{where}.eventDeliverySchema must be one of {SCHEMAS}")
    if topics[topic].input_schema == CLOUDEVENTS and schema != CLOUDEVENTS:
        # As in Event Grid: a CloudEvents topic delivers CloudEvents only.
        raise SubscriptionsFileError(f"{where}: a CloudEvents topic cannot deliver {schema}")
    retry = _object(
        body.get("retryPolicy", {}),
        f"{where}.retryPolicy",
        {"maxDeliveryAttempts", "eventTimeToLiveInMinutes"},
    )
    return Subscription(
        name=name,
        topic=topic,
        destination=_destination(body.get("destination"), f"{where}.destination"),
        delivery_schema=schema,
        filter=_filter(body.get("filter", {}), f"{where}.filter"),
        max_delivery_attempts=_int(
            retry.get("maxDeliveryAttempts", 30), f"{where}.retryPolicy.maxDeliveryAttempts", 1, 30
        ),
        event_ttl_minutes=_int(
            retry.get("eventTimeToLiveInMinutes", 1440),
            f"{where}.retryPolicy.eventTimeToLiveInMinutes",
            1,
            1440,
        ),
    )


def parse_subscriptions(document: Any) -> Subscriptions:
    body = _object(document, "the file", {"topics", "subscriptions", "deadLetterContainer"})
    raw_topics = _object(body.get("topics"), "topics", set(body.get("topics") or {}))
    topics = {name: _topic(name, raw) for name, raw in raw_topics.items()}
    raw_subscriptions = body.get("subscriptions")
    if not isinstance(raw_subscriptions, list):
        raise SubscriptionsFileError("subscriptions must be a list")
    subscriptions = tuple(
        _subscription(raw, index, topics) for index, raw in enumerate(raw_subscriptions)
    )
    names = [sub.name.lower() for sub in subscriptions]
    if len(set(names)) != len(names):
        raise SubscriptionsFileError("subscription names must be unique (case-insensitively)")
    container = _string(body.get("deadLetterContainer"), "deadLetterContainer")
    return Subscriptions(topics, subscriptions, container)


def load_subscriptions(path: Path = DEFAULT_FILE) -> Subscriptions:
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise SubscriptionsFileError(f"cannot read {path}: {error}") from None
    try:
        return parse_subscriptions(document)
    except SubscriptionsFileError as error:
        raise SubscriptionsFileError(f"{path}: {error}") from None
