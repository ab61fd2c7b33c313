"""What a custom topic accepts: ``POST /api/events``, as ``EventGridPublisherClient`` sends it.

- Auth: the ``aeg-sas-key`` header must equal the topic's key (401 otherwise, also when the
  stand-in has no key: a topic without auth does not exist).
- Size: over 1 MB for the request, or for one event, is ``413 Payload Too Large``; the body
  is not read past the limit.
- Schema: the topic's input schema decides. A CloudEvents topic takes
  ``application/cloudevents-batch+json`` (a JSON array, what the SDK sends) or
  ``application/cloudevents+json`` (one event object); an Event Grid schema topic takes
  ``application/json`` with an array (one object is accepted too). Every event must carry
  the schema's required attributes (CloudEvents: ``specversion`` ``1.0``, ``id``, ``source``,
  ``type``; Event Grid: ``id``, ``subject``, ``eventType``, ``eventTime``); otherwise 400.
- Errors come as Event Grid writes them: ``{"error": {"code", "message", "details":
  [{"code", "message"}]}}``. Success is 200 with an empty body.

An invalid request publishes nothing: a batch is accepted or refused as a whole.
"""

from __future__ import annotations

import hmac
import json
from dataclasses import dataclass
from typing import Any, Final

from localdev.eventgrid.subscriptions import CLOUDEVENTS, Topic

MAX_REQUEST_BYTES: Final = 1_048_576
MAX_EVENT_BYTES: Final = 1_048_576
CLOUDEVENT_REQUIRED: Final = ("id", "source", "type")
EVENTGRID_REQUIRED: Final = ("id", "subject", "eventType", "eventTime")


@dataclass(frozen=True)
class TopicError(Exception):
    status: int
    code: str
    detail_code: str
    message: str

    def body(self) -> dict[str, Any]:
        return {
            "error": {
                "code": self.code,
                "message": self.message,
                "details": [{"code": self.detail_code, "message": self.message}],
            }
        }


def unauthorized() -> TopicError:
    return TopicError(
        401, "Unauthorized", "Unauthorized", "the request has no valid aeg-sas-key header"
    )


def too_large(what: str) -> TopicError:
    return TopicError(
        413,
        "PayloadTooLarge",
        "PayloadTooLarge",
        f"{what} exceeds the limit of {MAX_REQUEST_BYTES} bytes",
    )


def _bad(message: str) -> TopicError:
    return TopicError(400, "BadRequest", "InputJsonInvalid", message)


def check_key(given: str | None, key: str) -> None:
    if not key or not hmac.compare_digest((given or "").encode(), key.encode()):
        raise unauthorized()


def _validate_event(event: Any, index: int, cloudevents: bool) -> dict[str, Any]:
    if not isinstance(event, dict):
        raise _bad(f"event {index} is not a JSON object")
    required = CLOUDEVENT_REQUIRED if cloudevents else EVENTGRID_REQUIRED
    missing = [name for name in required if not isinstance(event.get(name), str) or not event[name]]
    if missing:
        raise _bad(f"event {index}: required property '{missing[0]}' was not set")
    if cloudevents and event.get("specversion") != "1.0":
        raise _bad(f"event {index}: specversion must be '1.0'")
    if not cloudevents and event.get("metadataVersion") not in (None, "1"):
        raise _bad(f"event {index}: metadataVersion must be '1' when set")
    if len(json.dumps(event, separators=(",", ":")).encode()) > MAX_EVENT_BYTES:
        raise too_large(f"event {index}")
    return event


def parse_events(topic: Topic, content_type: str | None, body: bytes) -> list[dict[str, Any]]:
    """The events of a publish request to ``topic``, or :class:`TopicError`."""
    if len(body) > MAX_REQUEST_BYTES:
        raise too_large("the request")
    media = (content_type or "").split(";")[0].strip().lower()
    cloudevents = topic.input_schema == CLOUDEVENTS
    allowed = (
        ("application/cloudevents-batch+json", "application/cloudevents+json")
        if cloudevents
        else ("application/json",)
    )
    if media not in allowed:
        raise _bad(
            f"topic '{topic.name}' takes {topic.input_schema} events: content type must be "
            f"{' or '.join(allowed)}, not {media or 'missing'}"
        )
    try:
        document = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as error:
        raise _bad(f"the body is not valid JSON: {error}") from None
    if media == "application/cloudevents+json" or (isinstance(document, dict) and not cloudevents):
        document = [document]
    if not isinstance(document, list) or not document:
        raise _bad("the body must be a non-empty JSON array of events")
    return [_validate_event(event, index, cloudevents) for index, event in enumerate(document)]


def stamp(topic_path: str, event: dict[str, Any], cloudevents: bool) -> dict[str, Any]:
    """What Event Grid adds to an accepted Event Grid schema event (``topic``,
    ``metadataVersion``, an empty ``dataVersion`` when the publisher set none)."""
    if cloudevents:
        return event
    return {
        **event,
        "topic": topic_path,
        "dataVersion": event.get("dataVersion", ""),
        "metadataVersion": "1",
    }
