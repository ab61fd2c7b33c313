"""The load of :mod:`benchmarks.brownout`, in a process of its own: ``python -m
benchmarks.brownout_load SPEC.json SAMPLES.json``.

One asyncio event loop, one keep-alive HTTP/1.1 connection per client (asyncio streams: a
request is one write, the answer is read by its ``Content-Length`` or chunks), so a client
costs a coroutine, not a thread, and the figures are the server's latency, not the
generator's: the bench used to run 50 ``http.client`` threads in its own process beside the
host, and their queueing for the GIL on two busy cores was most of every figure.

The spec (JSON) names the host's port, the GET paths of the readers, the orders of the payers
(each sends the payment webhook for its own order, with one event id, again and again, as a
provider retrying does), the pause between one client's requests, whether a client waits as
long as a 503's ``Retry-After`` asks before its next request (as the Azure SDKs' retry
policies and payment providers do) or ignores it, and the liveness poller's interval (it
never waits longer). The load starts at once; the line ``started <monotonic>`` on stdout says
when. It stops when stdin closes (the bench closes it, or died) or after ``max_seconds``, and
then writes every sample (kind, start on the system-wide monotonic clock, seconds, status; 0 for no
answer within ``client_timeout``) to SAMPLES.json.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from shared.webhooks import signed_payment_succeeded


class Connection:
    """One keep-alive HTTP/1.1 connection to 127.0.0.1:``port``, opened again when closed."""

    def __init__(self, port: int) -> None:
        self.port = port
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def request(
        self, method: str, path: str, body: bytes = b"", headers: Mapping[str, str] | None = None
    ) -> tuple[int, float]:
        """Send one request and read the whole answer; returns its status and its
        ``Retry-After`` in seconds (0 when it has none)."""
        reused = self._writer is not None
        try:
            return await self._exchange(method, path, body, headers or {})
        except (ConnectionError, asyncio.IncompleteReadError):
            self.close()
            if not reused:
                raise
        # The server closed the idle connection as we reused it: once more on a new one.
        return await self._exchange(method, path, body, headers or {})

    async def _exchange(
        self, method: str, path: str, body: bytes, headers: Mapping[str, str]
    ) -> tuple[int, float]:
        if self._writer is None:
            self._reader, self._writer = await asyncio.open_connection("127.0.0.1", self.port)
        reader, writer = self._reader, self._writer
        assert reader is not None  # noqa: S101 (set together with the writer)
        head = [f"{method} {path} HTTP/1.1", f"Host: 127.0.0.1:{self.port}"]
        head += [f"{name}: {value}" for name, value in headers.items()]
        head.append(f"Content-Length: {len(body)}")
        writer.write(("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body)
        await writer.drain()
        status_line = await reader.readuntil(b"\r\n")
        if not status_line:
            raise ConnectionResetError("closed before the status line")
        status = int(status_line.split(b" ", 2)[1])
        fields: dict[str, str] = {}
        while (line := await reader.readuntil(b"\r\n")) != b"\r\n":
            name, _, value = line.decode("latin-1").partition(":")
            fields[name.strip().lower()] = value.strip().lower()
        close = fields.get("connection") == "close"
        length = int(fields["content-length"]) if "content-length" in fields else None
        if "chunked" in fields.get("transfer-encoding", ""):
            while True:
                size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
                await reader.readexactly(size + 2)
                if size == 0:
                    break
        elif length is not None:
            await reader.readexactly(length)
        else:
            await reader.read()
            close = True
        if close:
            self.close()
        retry_after = fields.get("retry-after", "")
        return status, float(retry_after) if retry_after.isdigit() else 0.0

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
        self._reader = self._writer = None


class Load:
    def __init__(self, spec: Mapping[str, Any]) -> None:
        self.spec = spec
        self.port = int(spec["port"])
        self.timeout = float(spec["client_timeout"])
        self.think = float(spec["think_seconds"])
        self.honour_retry_after = bool(spec["honour_retry_after"])
        self.samples: list[tuple[str, float, float, int]] = []
        self.stop = asyncio.Event()

    async def _loop(
        self, kind: str, interval: float, make: Callable[[], tuple[str, str, bytes, dict[str, str]]]
    ) -> None:
        connection = Connection(self.port)
        try:
            while not self.stop.is_set():
                method, path, body, headers = make()
                began = time.monotonic()
                retry_after = 0.0
                try:
                    status, retry_after = await asyncio.wait_for(
                        connection.request(method, path, body, headers), self.timeout
                    )
                except (
                    OSError,
                    TimeoutError,
                    asyncio.IncompleteReadError,
                    asyncio.LimitOverrunError,
                    ValueError,
                    IndexError,
                ):
                    connection.close()
                    status = 0
                self.samples.append((kind, began, time.monotonic() - began, status))
                pause = max(interval, retry_after) if self.honour_retry_after else interval
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.stop.wait(), pause)
        finally:
            connection.close()

    def reader(self, path: str) -> Any:
        headers = dict(self.spec.get("headers", {}))
        return self._loop("get", self.think, lambda: ("GET", path, b"", headers))

    def payer(self, order: Mapping[str, Any], event_id: str) -> Any:
        secret = str(self.spec["webhook_secret"])

        def make() -> tuple[str, str, bytes, dict[str, str]]:
            # Signed afresh each time: the signature carries a timestamp, as a provider's does.
            body, headers = signed_payment_succeeded(dict(order), secret, event_id=event_id)
            return "POST", "/api/v1/payments/webhook", body, dict(headers)

        return self._loop("webhook", self.think, make)

    def health(self) -> Any:
        interval = float(self.spec["health_interval"])
        return self._loop("health", interval, lambda: ("GET", "/api/health", b"", {}))


async def _stdin_closed() -> None:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while await reader.read(4096):
        pass


async def run(spec: Mapping[str, Any]) -> list[tuple[str, float, float, int]]:
    load = Load(spec)
    clients = [load.reader(path) for path in spec["read_paths"]]
    clients += [load.payer(order, event_id) for order, event_id in spec["pay_orders"]]
    clients.append(load.health())
    tasks = [asyncio.create_task(client) for client in clients]
    print(f"started {time.monotonic()!r}", flush=True)
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(_stdin_closed(), float(spec["max_seconds"]))
    load.stop.set()
    await asyncio.wait(tasks, timeout=load.timeout + 5)
    return load.samples


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2:
        print("usage: python -m benchmarks.brownout_load SPEC.json SAMPLES.json", file=sys.stderr)
        return 2
    spec = json.loads(Path(args[0]).read_text(encoding="utf-8"))
    samples = asyncio.run(run(spec))
    Path(args[1]).write_text(json.dumps(samples), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
