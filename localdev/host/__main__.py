"""``python -m localdev.host``: serve a Functions app on http://127.0.0.1:7071.

    python -m localdev.host [--app-dir .] [--port 7071] [--settings local.settings.json]
                            [--function-module function_app] [--max-request-body-size BYTES]
                            [--verbose]

``--settings`` defaults to ``<app-dir>/local.settings.json``; a missing file is fine. Without
``--port``, ``Host.LocalHttpPort`` from the settings file, else 7071; ``--port 0`` picks a free
port. Once serving, stdout carries ``Host listening on http://127.0.0.1:<port>``.
Exit codes: 0 after a clean shutdown (SIGINT/SIGTERM), 1 when the app cannot be loaded.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import override

from localdev.host.loader import FunctionAppLoadError
from localdev.host.routing import RouteTemplateError
from localdev.host.server import LocalHost
from localdev.host.settings import SettingsError


class _UtcFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("[%(asctime)s] %(message)s")

    @override
    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        stamp = datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds")
        return stamp.replace("+00:00", "Z")


def configure_logging(verbose: bool) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_UtcFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    # The worker's modules (azure_functions_runtime) log under "azure.functions".
    logging.getLogger("azure.functions").setLevel(logging.DEBUG if verbose else logging.WARNING)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m localdev.host",
        description="Serve an Azure Functions (Python v2) app locally, like `func start`.",
        epilog=(
            "Once serving, stdout carries 'Host listening on http://127.0.0.1:<port>'. "
            "Exit codes: 0 after SIGINT/SIGTERM, 1 when the app cannot be loaded."
        ),
    )
    parser.add_argument(
        "--app-dir", type=Path, default=Path.cwd(), help="the app root (default: current dir)"
    )
    parser.add_argument(
        "--port",
        type=int,
        default=None,
        help="port on 127.0.0.1; 0 picks a free one (default: Host.LocalHttpPort, else 7071)",
    )
    parser.add_argument(
        "--settings",
        type=Path,
        default=None,
        help="local settings file (default: <app-dir>/local.settings.json; may be missing)",
    )
    parser.add_argument(
        "--function-module",
        default=None,
        help="module holding the FunctionApp (default: PYTHON_SCRIPT_FILE_NAME or function_app)",
    )
    parser.add_argument(
        "--max-request-body-size",
        type=int,
        default=None,
        metavar="BYTES",
        help="larger bodies get 413 (default: FUNCTIONS_REQUEST_BODY_SIZE_LIMIT, else 100 MB)",
    )
    parser.add_argument("--verbose", action="store_true", help="debug logs, worker logs too")
    return parser.parse_args(argv)


def _exit_cleanly(signum: int, frame: FrameType | None) -> None:
    # uvicorn re-raises the signal after its graceful shutdown; by then all is stopped.
    raise SystemExit(0)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    configure_logging(args.verbose)
    signal.signal(signal.SIGTERM, _exit_cleanly)
    signal.signal(signal.SIGINT, _exit_cleanly)
    host = LocalHost(
        args.app_dir,
        port=args.port,
        settings_file=args.settings,
        function_module=args.function_module,
        max_request_body_size=args.max_request_body_size,
    )
    try:
        runtime = host.load()
    except (FunctionAppLoadError, SettingsError, RouteTemplateError, OSError) as error:
        logging.getLogger("localdev.host").error("Cannot start the host: %s", error)
        return 1
    print("\nFunctions:\n", flush=True)
    for line in runtime.function_lines():
        print(f"\t{line}", flush=True)
    print(f"\nHost listening on {host.url}", flush=True)
    host.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
