"""The README's run command, as a user runs it: stack + app up, ready, then a clean stop.

Uses free ports (``--ports free`` and a free host port) so it runs beside a developer's
``make run``; everything else is exactly what ``make run`` does.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
START_TIMEOUT_SECONDS = 120


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _descendants(pid: int) -> set[int]:
    """Every live process whose ancestry reaches ``pid`` (from /proc)."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parents[int(entry.name)] = int(fields[1])
    found: set[int] = set()
    frontier = {pid}
    while frontier:
        children = {child for child, parent in parents.items() if parent in frontier}
        frontier = children - found
        found |= children
    return found


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


@pytest.mark.e2e
def test_run_command_serves_a_ready_app_and_stops_cleanly(tmp_path: Path) -> None:
    port = _free_port()
    ready_file = tmp_path / "ready.json"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    log = (tmp_path / "run.log").open("wb")
    process = subprocess.Popen(
        [
            sys.executable, "-m", "localdev", "run",
            "--ports", "free", "--port", str(port), "--no-func",
            "--workdir", str(tmp_path / "work"), "--ready-file", str(ready_file),
        ],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    started_processes: set[int] = set()
    try:
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while not ready_file.exists():
            assert process.poll() is None, (tmp_path / "run.log").read_text()
            assert time.monotonic() < deadline, "run command not ready in time"
            time.sleep(0.2)
        summary = json.loads(ready_file.read_text())
        started_processes = _descendants(process.pid)
        assert summary["hostPid"] in started_processes

        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/health/ready", timeout=10) as r:
            assert r.status == 200
            body = json.loads(r.read())
        assert body["status"] == "ready"
        assert body["checks"]["cosmos"]["status"] == "up"
        assert body["checks"]["storage"]["status"] == "up"
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/health", timeout=10) as r:
            assert json.loads(r.read())["status"] == "ok"
        _readme_examples_work_with_tokens_from_make_token(port, summary["AUTH_ISSUER"])
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=60)
        finally:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
            log.close()
    assert process.returncode == 0, (tmp_path / "run.log").read_text()
    left = [pid for pid in started_processes if _alive(pid)]
    assert left == [], f"processes left running: {left}"
    assert "stopped" in (tmp_path / "run.log").read_text()


def _make_token(issuer: str, **variables: str) -> str:
    """``make token ...`` as the README runs it (the issuer is the run's, on a free port)."""
    assignments = [f"{name}={value}" for name, value in variables.items()]
    completed = subprocess.run(
        ["make", "-s", "token", *assignments, f"ARGS=--issuer {issuer}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    return completed.stdout.strip()


def _call(port: int, method: str, path: str, token: str | None, body: object = None) -> int:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/api/v1{path}",
        data=json.dumps(body).encode() if body is not None else None,
        headers={"Content-Type": "application/json"}
        | ({"Authorization": f"Bearer {token}"} if token else {}),
        method=method,
    )
    try:
        with urllib.request.urlopen(request, timeout=15) as response:
            return int(response.status)
    except urllib.error.HTTPError as error:
        with error:
            return int(error.code)


def _readme_examples_work_with_tokens_from_make_token(port: int, issuer: str) -> None:
    stock = _make_token(issuer, ROLES="Inventory.ReadWrite")
    alice = _make_token(issuer, CUSTOMER="alice")
    order = {"currency": "EUR", "lines": [{"sku": "SKU-1", "quantity": 2, "unitPrice": "10.25"}]}
    assert _call(port, "PUT", "/inventory/SKU-1", stock, {"available": 10}) == 200
    assert _call(port, "POST", "/customers/alice/orders", alice, order) == 201
    assert _call(port, "GET", "/customers/alice/orders", alice) == 200
    assert _call(port, "GET", "/customers/bob/orders", alice) == 403
    assert _call(port, "GET", "/customers/alice/orders", None) == 401
    assert _call(port, "GET", "/inventory/SKU-1", alice) == 200
