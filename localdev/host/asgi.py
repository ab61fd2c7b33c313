"""A minimal ASGI application around :class:`~localdev.host.runtime.HostRuntime`.

- ``lifespan``: startup starts the delivery sources, shutdown stops them and the thread pool.
- ``http``: reads the body under the host's limit (100 MB by default, like Functions;
  ``FUNCTIONS_REQUEST_BODY_SIZE_LIMIT`` or ``--max-request-body-size`` change it). A larger
  body is refused with an empty 413 before the function runs: at once when ``Content-Length``
  says so, else as soon as the streamed body passes the limit; the connection is then closed
  because the rest of the body is never read.
- One log line per request: method, path, status, duration in ms and the invocation id.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any, Final

from localdev.host.messages import HostRequest, HostResponse
from localdev.host.runtime import HostRuntime

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

logger = logging.getLogger("localdev.host")
NO_INVOCATION: Final = "-"
BODILESS_STATUSES: Final = frozenset({204, 304})


class ClientDisconnectedError(Exception):
    """The client went away before sending the whole body."""


class BodyTooLargeError(Exception):
    pass


def _headers(scope: Scope) -> list[tuple[str, str]]:
    return [(name.decode("latin-1"), value.decode("latin-1")) for name, value in scope["headers"]]


def _url(scope: Scope, headers: list[tuple[str, str]], raw_path: str, query: str) -> str:
    host = next((value for name, value in headers if name.lower() == "host"), None)
    if host is None:
        server_host, server_port = scope.get("server") or ("127.0.0.1", 80)
        host = f"{server_host}:{server_port}"
    return f"{scope.get('scheme', 'http')}://{host}{raw_path}" + (f"?{query}" if query else "")


async def _read_body(receive: Receive, limit: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnectedError
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise BodyTooLargeError
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


async def _send(send: Send, response: HostResponse, *, close: bool = False) -> None:
    headers = [
        (name.encode("latin-1"), value.encode("latin-1")) for name, value in response.headers
    ]
    headers = [(name, value) for name, value in headers if name.lower() != b"content-length"]
    body = response.body
    if response.status in BODILESS_STATUSES:
        body = b""  # 204 and 304 carry neither a body nor a Content-Length
    else:
        headers.append((b"content-length", str(len(body)).encode()))
    if close:
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": response.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class HostAsgiApp:
    def __init__(self, runtime: HostRuntime, max_request_body_size: int) -> None:
        self.runtime = runtime
        self.max_request_body_size = max_request_body_size

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
        elif scope["type"] == "http":
            await self._http(scope, receive, send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await self.runtime.startup()
                except Exception as error:
                    logger.exception("The host failed to start")
                    await send({"type": "lifespan.startup.failed", "message": repr(error)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                try:
                    await self.runtime.shutdown()
                finally:
                    await send({"type": "lifespan.shutdown.complete"})
                return

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.perf_counter()
        method = str(scope["method"]).upper()
        raw_path = (scope.get("raw_path") or scope["path"].encode()).decode("latin-1")
        raw_path = raw_path.split("?", 1)[0]
        close = False
        try:
            response = await self._respond(scope, receive, method, raw_path)
        except BodyTooLargeError:
            response, close = HostResponse.empty(413), True
        except ClientDisconnectedError:
            self._log(method, raw_path, 499, started, None)
            return
        except Exception:
            logger.exception("The host failed on %s %s", method, raw_path)
            response = HostResponse.empty(500)
        await _send(send, response, close=close)
        self._log(method, raw_path, response.status, started, response.invocation_id)

    async def _respond(
        self, scope: Scope, receive: Receive, method: str, raw_path: str
    ) -> HostResponse:
        headers = _headers(scope)
        declared = next((value for name, value in headers if name.lower() == "content-length"), "")
        if declared.strip().isdigit() and int(declared) > self.max_request_body_size:
            raise BodyTooLargeError
        body = await _read_body(receive, self.max_request_body_size)
        query = scope.get("query_string", b"").decode("latin-1")
        request = HostRequest(
            method=method,
            raw_path=raw_path,
            query_string=query,
            headers=headers,
            body=body,
            url=_url(scope, headers, raw_path, query),
        )
        return await self.runtime.handle(request)

    @staticmethod
    def _log(
        method: str, path: str, status: int, started: float, invocation_id: str | None
    ) -> None:
        logger.info(
            "HTTP %s %s -> %d (%.1f ms, invocation %s)",
            method,
            path,
            status,
            (time.perf_counter() - started) * 1000,
            invocation_id or NO_INVOCATION,
        )
