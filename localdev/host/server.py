"""``LocalHost``: load the app, bind 127.0.0.1, serve it with uvicorn, stop cleanly.

Two ways to run it:

- :meth:`LocalHost.run` blocks in the calling thread; in the main thread uvicorn turns SIGINT
  and SIGTERM into a graceful shutdown (requests in flight finish, then sources stop);
- :meth:`LocalHost.start` / :meth:`LocalHost.stop` serve from a background thread, for
  programs and tests (``port=0`` picks a free port; :attr:`LocalHost.url` tells which).

The socket is bound before the app is loaded, so the port is known to the app's sources, and
is listening before uvicorn starts, so early connections queue instead of being refused.

App settings from ``local.settings.json`` go into ``os.environ`` (the worker's app settings
are environment variables): loading an app changes the process environment, ``sys.path`` and
``sys.modules``, which is why one process hosts one app.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import threading
import time
from collections.abc import Mapping, MutableMapping
from pathlib import Path
from types import TracebackType
from typing import Final, Self

import uvicorn

from localdev.host.asgi import HostAsgiApp
from localdev.host.invoker import Invoker, OutputSink
from localdev.host.loader import default_function_module, load_function_app
from localdev.host.runtime import HostRuntime
from localdev.host.settings import (
    apply_app_settings,
    max_request_body_size,
    read_host_json,
    read_local_settings,
)
from localdev.host.sources import HostServices

DEFAULT_PORT: Final = 7071
BIND_ADDRESS: Final = "127.0.0.1"
GRACEFUL_SHUTDOWN_SECONDS: Final = 10
logger = logging.getLogger("localdev.host")


def listening_socket(address: str, port: int) -> socket.socket:
    """A listening TCP socket that says it is TCP (``proto=IPPROTO_TCP``).

    ``socket.create_server`` leaves ``proto`` at 0, and asyncio sets TCP_NODELAY on accepted
    connections only when the listener's ``proto`` is TCP: without it, Nagle's algorithm holds
    each response body until the client's delayed ACK, about 40 ms per keep-alive request.
    """
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as create_server does
        listener.bind((address, port))
        listener.listen()
    except BaseException:
        listener.close()
        raise
    return listener


class LocalHost:
    def __init__(
        self,
        app_dir: Path | str,
        *,
        port: int | None = DEFAULT_PORT,
        settings_file: Path | str | None = None,
        function_module: str | None = None,
        max_request_body_size: int | None = None,
        environ: MutableMapping[str, str] | None = None,
        output_sinks: Mapping[str, OutputSink] | None = None,
    ) -> None:
        """``port=None`` takes ``Host.LocalHttpPort`` from the settings file, else 7071.
        ``output_sinks`` deliver output-binding values, by binding type (see ``Invoker``)."""
        self.app_dir = Path(app_dir).resolve()
        self.settings_file = (
            Path(settings_file)
            if settings_file is not None
            else self.app_dir / "local.settings.json"
        )
        self._requested_port = port
        self._function_module = function_module
        self._max_request_body_size = max_request_body_size
        self._output_sinks = dict(output_sinks or {})
        self.environ: MutableMapping[str, str] = os.environ if environ is None else environ
        self.runtime: HostRuntime | None = None
        self._socket: socket.socket | None = None
        self._bound_port: int | None = None
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        if self._bound_port is None:
            raise RuntimeError("the host is not bound yet: call load() or start()")
        return self._bound_port

    @property
    def url(self) -> str:
        return f"http://{BIND_ADDRESS}:{self.port}"

    def load(self) -> HostRuntime:
        """Apply settings, bind the port, import and index the app (once)."""
        if self.runtime is not None:
            return self.runtime
        settings = read_local_settings(self.settings_file)
        apply_app_settings(settings.values, self.environ)
        port = self._requested_port
        if port is None:
            port = settings.local_http_port or DEFAULT_PORT
        self._socket = listening_socket(BIND_ADDRESS, port)
        self._bound_port = self._socket.getsockname()[1]
        try:
            module = self._function_module or default_function_module(self.environ)
            loaded = load_function_app(self.app_dir, module, self.environ)
            services = HostServices(
                invoker=Invoker(self.environ, output_sinks=self._output_sinks),
                app_dir=self.app_dir,
                host_json=read_host_json(self.app_dir),
                environ=self.environ,
                base_url=self.url,
                logger=logger,
            )
            self.runtime = HostRuntime(loaded, services)
        except BaseException:
            self._close_socket()
            raise
        return self.runtime

    def _create_server(self) -> tuple[uvicorn.Server, socket.socket]:
        runtime = self.load()
        if self._socket is None:
            raise RuntimeError("the host was stopped; create a new LocalHost")
        limit = self._max_request_body_size or max_request_body_size(self.environ)
        config = uvicorn.Config(
            HostAsgiApp(runtime, limit),
            host=BIND_ADDRESS,
            port=self.port,
            http="h11",
            ws="none",
            loop="asyncio",
            lifespan="on",
            log_config=None,
            access_log=False,
            server_header=False,
            timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_SECONDS,
        )
        self._server = uvicorn.Server(config)
        return self._server, self._socket

    def run(self) -> None:
        """Serve until SIGINT/SIGTERM (main thread) or until :meth:`stop` is called."""
        server, listener = self._create_server()
        try:
            asyncio.run(server.serve(sockets=[listener]))
        finally:
            self._close_socket()

    def start(self, timeout: float = 30.0) -> None:
        """Serve from a background thread; returns once requests are answered."""
        server, listener = self._create_server()
        sockets = [listener]
        self._thread = threading.Thread(
            target=lambda: asyncio.run(server.serve(sockets=sockets)),
            name="localdev-host",
            daemon=True,
        )
        self._thread.start()
        deadline = time.monotonic() + timeout
        # uvicorn flips `started` once it accepts connections; poll it like a readiness probe.
        while not server.started:
            if not self._thread.is_alive():
                self._close_socket()
                raise RuntimeError("the local host failed to start; see the log")
            if time.monotonic() > deadline:
                self.stop()
                raise TimeoutError(f"the local host did not start within {timeout:.0f} s")
            time.sleep(0.01)

    def stop(self, timeout: float = 30.0) -> None:
        """Graceful shutdown: finish requests in flight, stop sources, release the port."""
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                raise TimeoutError(f"the local host did not stop within {timeout:.0f} s")
            self._thread = None
        self._close_socket()

    def _close_socket(self) -> None:
        if self._socket is not None:
            self._socket.close()
            self._socket = None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()
