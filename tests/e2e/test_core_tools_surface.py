"""The whole pipeline with the Functions host restricted to what ``func start`` serves.

A gatekeeper stands on the port where the stack expects the Functions host
(``stack.ports.functions``) and forwards only the paths Azure Functions Core Tools exposes:
the HTTP functions under ``/api/``, the extensions' webhooks ``/runtime/webhooks/eventgrid``
and ``/runtime/webhooks/blobs``, and the admin API under ``/admin/``; anything else is 404 and
recorded. Through it, an order is paid and fulfilled (the Paid event travels app -> Event Grid
stand-in -> webhook -> Service Bus -> fulfillment) and a partner file is imported (Azurite ->
BlobCreated from the stand-in -> the storage queue order-import-events -> queue trigger ->
orders; no HTTP request reaches the host for it), so the same stack runs the same pipeline
under ``func start``.
"""

from __future__ import annotations

import http.client
import json
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

import pytest
from azure.storage.blob import BlobServiceClient

from localdev.stack import LocalStack
from shared.names import IMPORTS_BLOB_CONTAINER
from shared.webhooks import signed_payment_succeeded
from tests.fixtures.app import REPO_ROOT, SAMPLE_SETTINGS, WEBHOOK_SECRET, app_environment
from tests.fixtures.host import HostProcess, run_local_host
from tests.fixtures.stack import start_stack_on_free_ports

pytestmark = pytest.mark.e2e

CORE_TOOLS_PREFIXES = ("/api/", "/admin/")
CORE_TOOLS_WEBHOOKS = ("/runtime/webhooks/eventgrid", "/runtime/webhooks/blobs")
JSON = {"Content-Type": "application/json"}


def core_tools_serves(path: str) -> bool:
    bare = urlsplit(path).path.rstrip("/")
    return bare.startswith(CORE_TOOLS_PREFIXES) or bare in CORE_TOOLS_WEBHOOKS


class Gatekeeper:
    """Forwards the Core Tools surface to the host behind it; records every request."""

    def __init__(self, port: int) -> None:
        self.backend = 0
        self.seen: list[tuple[str, str, int]] = []
        self._lock = threading.Lock()
        gate = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _forward(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                if not core_tools_serves(self.path) or not gate.backend:
                    status, headers, payload = 404, [], b""
                else:
                    connection = http.client.HTTPConnection("127.0.0.1", gate.backend, timeout=60)
                    try:
                        forwarded = {k: v for k, v in self.headers.items() if k.lower() != "host"}
                        connection.request(self.command, self.path, body=body, headers=forwarded)
                        response = connection.getresponse()
                        status, payload = response.status, response.read()
                        headers = [
                            (k, v)
                            for k, v in response.getheaders()
                            if k.lower()
                            not in {"content-length", "transfer-encoding", "connection"}
                        ]
                    except OSError:
                        status, headers, payload = 502, [], b""
                    finally:
                        connection.close()
                with gate._lock:
                    gate.seen.append((self.command, self.path, status))
                self.send_response(status)
                for key, value in headers:
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            # http.server's handler names: one forwarding method for every verb.
            do_GET = do_POST = do_PUT = do_OPTIONS = do_DELETE = _forward  # noqa: N815

            def log_message(self, format: str, *args: Any) -> None:
                return

        self._server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def paths(self) -> list[str]:
        with self._lock:
            return [path for _, path, _ in self.seen]

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


@dataclass(frozen=True)
class GatedApp:
    stack: LocalStack
    host: HostProcess  # the host itself, behind the gate
    gate: Gatekeeper
    client: HostProcess  # the fixtures' HTTP client, aimed at the gate (Core Tools' port)

    def request(self, method: str, path: str, body: Any = None, **headers: str) -> Any:
        raw = (
            json.dumps(body).encode() if body is not None and not isinstance(body, bytes) else body
        )
        response = self.client.request(method, path, body=raw, headers={**JSON, **headers})
        return response.status, response.json() if response.body else None


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatedApp]:
    workdir = tmp_path_factory.mktemp("core-tools-surface")
    stack = start_stack_on_free_ports(workdir, eventgrid_retry_delays="0.2,0.5,1,2,5")
    gate: Gatekeeper | None = None
    try:
        stack.provision()
        gate = Gatekeeper(stack.ports.functions)
        with run_local_host(
            REPO_ROOT,
            workdir / "host.log",
            env=app_environment(stack, None),
            args=["--settings", str(SAMPLE_SETTINGS)],
        ) as host:
            gate.backend = host.port
            # Requests go through the fixtures' client (and whatever it adds, such as a
            # default token), to the gate instead of the host.
            client = HostProcess(REPO_ROOT, workdir / "client.log", env=host.env)
            client.port = stack.ports.functions
            yield GatedApp(stack, host, gate, client)
    finally:
        if gate is not None:
            gate.stop()
        stack.stop()


def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"{what} not within {timeout:.0f} s"
        time.sleep(0.1)


def test_an_order_is_paid_and_fulfilled_through_the_core_tools_surface(app: GatedApp) -> None:
    sku = f"CT-{uuid.uuid4().hex[:8]}"
    status, _ = app.request("PUT", f"/api/v1/inventory/{sku}", {"available": 5})
    assert status == 200
    status, order = app.request(
        "POST",
        "/api/v1/customers/core-tools/orders",
        {"currency": "EUR", "lines": [{"sku": sku, "quantity": 2, "unitPrice": "4.00"}]},
    )
    assert status == 201
    body, headers = signed_payment_succeeded(order, WEBHOOK_SECRET)
    status, _ = app.request("POST", "/api/v1/payments/webhook", body, **headers)
    assert status == 200
    path = f"/api/v1/customers/core-tools/orders/{order['id']}"
    wait_until(lambda: app.request("GET", path)[1]["status"] == "fulfilled", 30, "fulfilled")
    assert app.request("GET", f"/api/v1/inventory/{sku}")[1]["available"] == 3
    # Event Grid (the stand-in) reached the router through the webhook func start serves.
    assert any(
        p.startswith("/runtime/webhooks/eventgrid?functionName=route_order_events")
        for p in app.gate.paths()
    )


def test_an_import_runs_through_the_core_tools_surface(app: GatedApp) -> None:
    name = f"core-tools-{uuid.uuid4().hex[:8]}.csv"
    customer = f"ct-{uuid.uuid4().hex[:8]}"
    content = (
        "external_id,customer_id,sku,quantity,unit_price,currency\r\n"
        f"E1,{customer},SKU-1,1,2.00,EUR\r\n"
        f"E2,{customer},SKU-2,0,2.00,EUR\r\n"
    )
    with BlobServiceClient.from_connection_string(app.stack.storage_connection_string) as blobs:
        blobs.get_blob_client(IMPORTS_BLOB_CONTAINER, name).upload_blob(content.encode())

    def finished() -> bool:
        status, body = app.request("GET", f"/api/v1/imports/{name}")
        return status == 200 and body.get("state") in {"completed", "failed"}

    wait_until(finished, 60, "the import")
    _, body = app.request("GET", f"/api/v1/imports/{name}")
    assert body["state"] == "completed"
    assert (body["rowsRead"], body["accepted"], body["rejected"]) == (2, 1, 1)
    # Only a reference travelled, through a queue: no blob webhook call reached the host.
    assert not any(p.startswith("/runtime/webhooks/blobs") for p in app.gate.paths())


def test_the_host_needed_nothing_outside_the_core_tools_surface(app: GatedApp) -> None:
    refused = [entry for entry in app.gate.seen if not core_tools_serves(entry[1])]
    assert refused == []
    # And the host itself answers no topic: events go to the stand-in, not to the host.
    answer = app.host.request("POST", "/runtime/eventgrid/topics/orderflow/api/events", body=b"[]")
    assert answer.status == 404
