"""`python -m localdev run`: the local stack plus the app, in the foreground, until Ctrl-C.

1. Creates ``local.settings.json`` from the sample when it is missing.
2. Starts the stand-ins (Azurite, the Cosmos DB stand-in) and provisions the database,
   containers, blob containers and queues the app uses.
3. Serves the app: with ``func start`` when Azure Functions Core Tools is on PATH, else with the
   project's local host (``python -m localdev.host``). The stack's settings are passed as
   environment variables, which take precedence over ``local.settings.json`` in both hosts.
4. On Ctrl-C, SIGTERM or when the host exits: stops the host, then every stand-in.
"""

from __future__ import annotations

import argparse
import dataclasses
import http.client
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.parse
from pathlib import Path
from types import FrameType

from localdev.stack import LocalStack, StackPorts

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_HOST_PORT = 7071
HOST_READY_TIMEOUT_SECONDS = 60.0
STOP_GRACE_SECONDS = 10.0


def ensure_local_settings(app_dir: Path) -> Path:
    """Create local.settings.json from the sample, or warn about settings it lacks (a copy made
    before the sample gained them) so a stale file does not silently disable a feature."""
    settings = app_dir / "local.settings.json"
    sample = app_dir / "local.settings.json.sample"
    if not settings.exists():
        shutil.copyfile(sample, settings)
        print(f"created {settings.name} from the sample", flush=True)
        return settings
    try:
        have = set(json.loads(settings.read_text()).get("Values", {}))
        want = set(json.loads(sample.read_text()).get("Values", {}))
    except (OSError, ValueError) as error:
        print(f"warning: cannot read {settings.name}: {error}", file=sys.stderr, flush=True)
        return settings
    if missing := sorted(want - have):
        print(
            f"warning: {settings.name} lacks {', '.join(missing)}; copy them from "
            f"{sample.name} (or delete {settings.name} to recreate it)",
            file=sys.stderr,
            flush=True,
        )
    return settings


def host_command(app_dir: Path, port: int, settings: Path, use_func: bool) -> list[str]:
    func = shutil.which("func") if use_func else None
    if func:
        return [func, "start", "--port", str(port)]
    return [
        sys.executable,
        "-m",
        "localdev.host",
        "--app-dir",
        str(app_dir),
        "--port",
        str(port),
        "--settings",
        str(settings),
    ]


def wait_for_http(url: str, process: subprocess.Popen[bytes], timeout: float) -> None:
    """Poll ``url`` until it answers (any HTTP status) or the process dies or time runs out."""
    # http.client, not urlopen: plain HTTP to the host we started, no other scheme possible.
    parts = urllib.parse.urlsplit(url)
    if parts.scheme != "http" or not parts.hostname:
        raise ValueError(f"not an http:// URL: {url}")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the host exited with code {process.returncode} while starting")
        connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=2)
        try:
            connection.request("GET", parts.path or "/")
            connection.getresponse().read()
            return
        except (OSError, http.client.HTTPException):
            time.sleep(0.2)
        finally:
            connection.close()
    raise TimeoutError(f"the host did not answer {url} within {timeout:.0f} s")


def stop_process(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM the process group, then SIGKILL after a grace period; always reaps it."""
    if process.poll() is not None:
        return
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=STOP_GRACE_SECONDS)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    except ProcessLookupError:
        process.wait()


def run(
    *,
    app_dir: Path,
    ports: StackPorts,
    host_port: int,
    workdir: Path,
    use_func: bool,
    ready_file: Path | None = None,
) -> int:
    settings_file = ensure_local_settings(app_dir)
    stop_requested = threading.Event()

    def request_stop(signum: int, frame: FrameType | None) -> None:
        stop_requested.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)

    # Event Grid delivers to whichever host serves the app on host_port.
    stack = LocalStack(dataclasses.replace(ports, functions=host_port), workdir, foreground=True)
    host: subprocess.Popen[bytes] | None = None
    try:
        started = time.perf_counter()
        stack.start()
        stack.provision()
        environment = {**os.environ, **stack.app_settings()}
        command = host_command(app_dir, host_port, settings_file, use_func)
        host = subprocess.Popen(command, cwd=app_dir, env=environment, start_new_session=True)
        base_url = f"http://127.0.0.1:{host_port}"
        wait_for_http(f"{base_url}/api/health", host, HOST_READY_TIMEOUT_SECONDS)
        elapsed = time.perf_counter() - started
        summary = {
            "app": f"{base_url}/api",
            "health": f"{base_url}/api/health/ready",
            "host": "func" if command[0] != sys.executable else "localdev.host",
            "hostPid": host.pid,
            "startedInSeconds": round(elapsed, 2),
            **{name: value for name, value in stack.app_settings().items() if "KEY" not in name},
        }
        if ready_file is not None:
            ready_file.write_text(json.dumps(summary))
        print(f"Orderflow is running at {base_url}/api (ready in {elapsed:.1f} s).", flush=True)
        print(
            f"Bearer tokens from the local issuer {stack.issuer_url}: `make token CUSTOMER=alice`"
            " or `make token ROLES=Inventory.ReadWrite` (docs/SECURITY.md).",
            flush=True,
        )
        print("Press Ctrl-C to stop.", flush=True)
        while not stop_requested.wait(0.5):
            if host.poll() is not None:
                print(f"the host exited with code {host.returncode}", file=sys.stderr)
                return host.returncode or 1
        return 0
    finally:
        if host is not None:
            stop_process(host)
        stack.stop()
        print("stopped", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m localdev run", description=__doc__)
    parser.add_argument("--app-dir", type=Path, default=ROOT)
    parser.add_argument(
        "--ports",
        choices=["standard", "free"],
        default="standard",
        help="standard local ports (Azurite 10000-10002, Cosmos 8081) or free ones",
    )
    parser.add_argument("--port", type=int, default=DEFAULT_HOST_PORT, help="host HTTP port")
    parser.add_argument("--workdir", type=Path, default=ROOT / ".localdev")
    parser.add_argument(
        "--no-func", action="store_true", help="use the project's local host even if func exists"
    )
    parser.add_argument("--ready-file", type=Path, help="write a JSON summary here when ready")
    args = parser.parse_args(argv)
    ports = StackPorts.free() if args.ports == "free" else StackPorts()
    return run(
        app_dir=args.app_dir.resolve(),
        ports=ports,
        host_port=args.port,
        workdir=args.workdir.resolve(),
        use_func=not args.no_func,
        ready_file=args.ready_file,
    )
