"""The stand-in's HTTP surface (ASGI, served by uvicorn): the custom topic endpoint only.

``POST /api/events`` (any ``api-version``) publishes to the file's custom topic
(:mod:`localdev.eventgrid.topic`); other methods are 405, other paths 404, with Event Grid's
error document. The lifespan starts the system topics' event sources (storage events) and
stops them, and the deliveries in flight, when the server stops.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable, MutableMapping, Sequence
from typing import Any, Final, Protocol

from localdev.eventgrid.delivery import Deliverer
from localdev.eventgrid.subscriptions import CLOUDEVENTS, Subscriptions
from localdev.eventgrid.topic import (
    MAX_REQUEST_BYTES,
    TopicError,
    check_key,
    parse_events,
    stamp,
    too_large,
)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

TOPIC_PATH: Final = "/api/events"
# The resource path Event Grid stamps on Event Grid schema events of the local topic.
LOCAL_RESOURCE_PREFIX: Final = (
    "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/orderflow-local/"
    "providers/Microsoft.EventGrid/topics/"
)


class EventSource(Protocol):
    """Something that publishes to a system topic while the stand-in runs (storage events)."""

    async def start(self) -> None: ...

    async def stop(self) -> None: ...


class _DisconnectedError(Exception):
    pass


async def _read_body(receive: Receive, scope: Scope) -> bytes:
    """The body, or TopicError(413) as soon as it passes the limit (the rest is not read)."""
    for name, value in scope["headers"]:
        if name.lower() == b"content-length" and value.isdigit() and int(value) > MAX_REQUEST_BYTES:
            raise too_large("the request")
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise _DisconnectedError
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > MAX_REQUEST_BYTES:
            raise too_large("the request")
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


def _header(scope: Scope, wanted: str) -> str | None:
    for name, value in scope["headers"]:
        if name.decode("latin-1").lower() == wanted:
            return str(value.decode("latin-1"))
    return None


async def _answer(send: Send, status: int, body: bytes = b"", *, close: bool = False) -> None:
    headers = [(b"content-length", str(len(body)).encode())]
    if body:
        headers.append((b"content-type", b"application/json; charset=utf-8"))
    if close:
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class EventGridApp:
    def __init__(
        self,
        subscriptions: Subscriptions,
        *,
        topic_key: str,
        deliverer: Deliverer,
        logger: logging.Logger,
        sources: Sequence[EventSource] = (),
    ) -> None:
        self.sources = tuple(sources)
        self.subscriptions = subscriptions
        self.topic = subscriptions.custom_topic()
        self.topic_key = topic_key
        self.deliverer = deliverer
        self.logger = logger

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
        elif scope["type"] == "http":
            await self._http(scope, receive, send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                for source in self.sources:
                    await source.start()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                for source in self.sources:
                    await source.stop()
                await self.deliverer.stop()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = str(scope["path"]).rstrip("/") or "/"
        try:
            if path != TOPIC_PATH:
                raise TopicError(404, "NotFound", "NotFound", f"no topic at {path[:200]}")
            if scope["method"] != "POST":
                raise TopicError(405, "MethodNotAllowed", "MethodNotAllowed", "only POST")
            # The key is checked before the body is read: an unauthenticated caller cannot
            # make the stand-in read a megabyte.
            check_key(_header(scope, "aeg-sas-key"), self.topic_key)
            body = await _read_body(receive, scope)
            events = parse_events(self.topic, _header(scope, "content-type"), body)
        except _DisconnectedError:
            return
        except TopicError as error:
            self.logger.info("publish refused: %s %s", error.status, error.message)
            payload = json.dumps(error.body()).encode()
            await _answer(send, error.status, payload, close=error.status == 413)
            return
        cloudevents = self.topic.input_schema == CLOUDEVENTS
        resource = LOCAL_RESOURCE_PREFIX + self.topic.name
        accepted = [stamp(resource, event, cloudevents) for event in events]
        scheduled = self.deliverer.publish(self.topic.name, accepted)
        self.logger.info(
            "published %d event(s) to topic %s: %d deliveries",
            len(accepted),
            self.topic.name,
            scheduled,
        )
        await _answer(send, 200)
