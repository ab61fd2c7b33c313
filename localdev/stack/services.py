"""The stack's services, how to start them, and how to tell that they are ready.

A service counts as ready when *its own* log says it listens on every expected port (so an
older server still holding the port cannot fool the check) and each port answers a real
request the way that service does.
"""

from __future__ import annotations

import http.client
import shutil
import socket
import ssl
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from localdev.stack.processes import StackError

LOCALDEV_DIR = Path(__file__).resolve().parent.parent
NODE_MODULES = LOCALDEV_DIR / "node_modules"
AZURITE_BIN = NODE_MODULES / ".bin" / "azurite"
COSMOS_SERVER_PACKAGE = NODE_MODULES / "@vercel" / "cosmosdb-server"
COSMOS_LAUNCHER = Path(__file__).resolve().parent / "cosmos_launcher.js"
ISSUER_PACKAGE = NODE_MODULES / "oauth2-mock-server"
ISSUER_LAUNCHER = Path(__file__).resolve().parent / "issuer.mjs"

AZURITE = "azurite"
COSMOS = "cosmos"
SERVICEBUS = "servicebus"
EVENTGRID = "eventgrid"
IDENTITY = "identity"
SERVICE_NAMES = (AZURITE, COSMOS, SERVICEBUS, EVENTGRID, IDENTITY)

_PROBE_TIMEOUT_SECONDS = 1.0


@dataclass(frozen=True)
class ServiceSpec:
    name: str
    argv: tuple[str, ...]
    ports: dict[str, int]  # what listens where, for error messages
    log_markers: tuple[str, ...]  # lines the service prints once it listens
    probe: Callable[[], bool]  # one request to each port, answered the way the service does


def node_executable() -> str:
    node = shutil.which("node")
    if node is None:
        raise StackError("Node.js is not on PATH; run scripts/bootstrap.sh to install it")
    return node


def check_node_modules() -> None:
    """Fail with instructions when the local stand-ins are not installed."""
    missing = [
        path for path in (AZURITE_BIN, COSMOS_SERVER_PACKAGE, ISSUER_PACKAGE) if not path.exists()
    ]
    if missing:
        raise StackError(
            f"the local stand-ins are not installed ({', '.join(map(str, missing))} missing); "
            "run scripts/bootstrap.sh"
        )


class _Answer(NamedTuple):
    status: int
    server: str
    body: bytes


def _http_get(port: int, path: str, *, tls: bool) -> _Answer | None:
    """GET ``path`` on 127.0.0.1:port; None if nothing answers (yet)."""
    connection: http.client.HTTPConnection
    if tls:
        # The Cosmos stand-in serves a bundled self-signed (expired) certificate on loopback.
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        connection = http.client.HTTPSConnection(
            "127.0.0.1", port, timeout=_PROBE_TIMEOUT_SECONDS, context=context
        )
    else:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=_PROBE_TIMEOUT_SECONDS)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        return _Answer(response.status, response.getheader("Server", ""), response.read())
    except (OSError, http.client.HTTPException):
        return None
    finally:
        connection.close()


def _azurite_answers(ports: dict[str, int]) -> bool:
    # Unauthenticated requests get 403/400, but the Server header names the Azurite service.
    for label, port in ports.items():
        answer = _http_get(port, "/devstoreaccount1?comp=list", tls=False)
        if answer is None or not answer.server.lower().startswith(f"azurite-{label}/"):
            return False
    return True


def _cosmos_answers(port: int) -> bool:
    # GET / is the database account document the SDKs read first.
    answer = _http_get(port, "/", tls=True)
    return answer is not None and answer.status == 200 and b"writableLocations" in answer.body


def azurite_spec(blob: int, queue: int, table: int, data_dir: Path) -> ServiceSpec:
    ports = {"blob": blob, "queue": queue, "table": table}
    argv = [node_executable(), str(AZURITE_BIN)]
    for label, port in ports.items():
        argv += [f"--{label}Host", "127.0.0.1", f"--{label}Port", str(port)]
    argv += [
        "--location",
        str(data_dir),  # on disk, so data survives a stop_service/start_service outage
        "--skipApiVersionCheck",  # the Python SDKs default to newer API versions than Azurite
        "--disableTelemetry",
        "--loose",  # ignore headers Azurite does not implement instead of failing the request
    ]
    return ServiceSpec(
        name=AZURITE,
        argv=tuple(argv),
        ports=ports,
        log_markers=tuple(
            f"successfully listening at http://127.0.0.1:{port}" for port in ports.values()
        ),
        probe=lambda: _azurite_answers(ports),
    )


def cosmos_spec(port: int, data_dir: Path | None = None) -> ServiceSpec:
    """The Cosmos stand-in; with ``data_dir`` its data survives a restart (the launcher keeps
    ``<data_dir>/cosmos.json``), as Azurite's and the broker's do."""
    persistence = ("--data-dir", str(data_dir)) if data_dir is not None else ()
    return ServiceSpec(
        name=COSMOS,
        argv=(
            node_executable(),
            str(COSMOS_LAUNCHER),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            *persistence,
        ),
        ports={"cosmos": port},
        log_markers=(f"listening on https://127.0.0.1:{port}/",),
        probe=lambda: _cosmos_answers(port),
    )


def _issuer_answers(port: int, issuer: str) -> bool:
    # The discovery document must already name the configured issuer (set after listening).
    answer = _http_get(port, "/.well-known/openid-configuration", tls=False)
    return (
        answer is not None
        and answer.status == 200
        and f'"issuer":"{issuer}"'.encode() in (answer.body)
    )


def identity_spec(port: int, issuer: str, audience: str, data_dir: Path) -> ServiceSpec:
    """The local OpenID Connect issuer (oauth2-mock-server behind ``issuer.mjs``); its signing
    keys live in ``data_dir``, so they survive a stop_service/start_service outage."""
    return ServiceSpec(
        name=IDENTITY,
        argv=(
            node_executable(),
            str(ISSUER_LAUNCHER),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--issuer",
            issuer,
            "--audience",
            audience,
            "--data-dir",
            str(data_dir),
        ),
        ports={"issuer": port},
        log_markers=(f"listening on http://127.0.0.1:{port}",),
        probe=lambda: _issuer_answers(port, issuer),
    )


def amqp_answers(port: int) -> bool:
    """An AMQP 1.0 server answers the SASL protocol header with its own SASL header."""
    header = b"AMQP\x03\x01\x00\x00"
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=_PROBE_TIMEOUT_SECONDS) as sock:
            sock.sendall(header)
            return sock.recv(8) == header
    except OSError:
        return False


def servicebus_spec(
    port: int, queues: tuple[str, ...], data_dir: Path | None = None
) -> ServiceSpec:
    """The Service Bus test broker (``localdev.servicebus``), run with this interpreter; with
    ``data_dir`` its messages survive a stop_service/start_service outage, as in Service Bus."""
    from localdev.servicebus import READY_MARKER

    persistence = ("--data-dir", str(data_dir)) if data_dir is not None else ()
    return ServiceSpec(
        name=SERVICEBUS,
        argv=(
            sys.executable,
            "-c",  # importable from any working directory
            f"import sys; sys.path.insert(0, {str(LOCALDEV_DIR.parent)!r}); "
            "from localdev.servicebus.__main__ import main; sys.exit(main())",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--queues",
            *queues,
            *persistence,
        ),
        ports={"servicebus": port},
        log_markers=(f"{READY_MARKER}127.0.0.1:{port}",),
        probe=lambda: amqp_answers(port),
    )


def _eventgrid_answers(port: int) -> bool:
    # An unauthenticated publish is refused with Event Grid's error document.
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=_PROBE_TIMEOUT_SECONDS)
    try:
        connection.request("POST", "/api/events", body=b"[]")
        response = connection.getresponse()
        return response.status == 401 and b'"Unauthorized"' in response.read()
    except (OSError, http.client.HTTPException):
        return False
    finally:
        connection.close()


def eventgrid_spec(
    port: int,
    *,
    functions_url: str,
    blob_endpoint: str,
    queue_endpoint: str,
    retry_delays: str | None = None,
    subscriptions: Path | None = None,
    state_dir: Path | None = None,
) -> ServiceSpec:
    """The Event Grid stand-in (``localdev.eventgrid``): the custom topic on ``port``, delivering
    to the Functions host at ``functions_url``, dead letters and storage queues in Azurite; with
    ``state_dir`` the storage events it published survive a restart."""
    from localdev.eventgrid import READY_MARKER

    delays = ("--retry-delays", retry_delays) if retry_delays else ()
    wiring = ("--subscriptions", str(subscriptions)) if subscriptions else ()
    state = ("--state-dir", str(state_dir)) if state_dir else ()
    return ServiceSpec(
        name=EVENTGRID,
        argv=(
            sys.executable,
            "-c",  # importable from any working directory
            f"import sys; sys.path.insert(0, {str(LOCALDEV_DIR.parent)!r}); "
            "from localdev.eventgrid.__main__ import main; sys.exit(main())",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--functions-url",
            functions_url,
            "--blob-endpoint",
            blob_endpoint,
            "--queue-endpoint",
            queue_endpoint,
            *delays,
            *wiring,
            *state,
        ),
        ports={"eventgrid": port},
        log_markers=(f"{READY_MARKER}127.0.0.1:{port}",),
        probe=lambda: _eventgrid_answers(port),
    )
