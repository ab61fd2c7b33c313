"""``python -m benchmarks.brownout [--quick] [--hang S] [--clients N] [--deadline S]``: a Cosmos
DB hang under load.

The local stack and host (its worker with 6 threads, as a 2-core instance), and in a process
of its own (:mod:`benchmarks.brownout_load`: asyncio, one keep-alive connection per client)
``--clients`` concurrent clients: half read an order in a loop, half send the payment webhook
for an order of their own until it is accepted, then keep repeating it, as a provider does;
and one liveness poller. After a warm-up and a baseline of the same load with nothing hung,
the Cosmos stand-in is frozen (SIGSTOP) for ``--hang`` seconds, then resumed, and the run
goes on until every paid order is fulfilled. Figures, each beside its floor from the same run:

- p99 of GET order and of the webhook for requests started during the hang, before the circuit
  opened (goal: the deadline + 0.5 s; floor: the deadline), and after it opened (goal < 50 ms;
  floor: the same p99 in the baseline);
- p99 of ``GET /api/health`` during the hang (goal < 100 ms; floor: its p99 in the baseline);
- resume -> first 200 of GET order (goal <= 2 s);
- requests lost (no answer, or an answer other than 200/503; goal 0); messages lost or
  duplicated in effect (orders not fulfilled exactly once, stock not taken exactly once; goal 0).

The machine's load average is printed beside the figures: on a shared machine the floors say
how much of a figure is the machine.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.local_app import quiet_local_tls_warnings, stop_on_sigterm
from benchmarks.table import Figure, add_arguments, report
from tests.fixtures.app import REPO_ROOT, SAMPLE_SETTINGS, WEBHOOK_SECRET, app_environment
from tests.fixtures.host import HostProcess
from tests.fixtures.stack import start_stack_on_free_ports

JSON = {"Content-Type": "application/json"}
THREADS = 6
WARM_UP_SECONDS = 3.0
THINK_SECONDS = 0.02  # between one client's requests
HEALTH_INTERVAL_SECONDS = 0.05
CLIENT_TIMEOUT_SECONDS = 30.0


@dataclass(frozen=True)
class Sample:
    kind: str  # "get", "webhook", "health"
    started: float  # system-wide monotonic clock
    seconds: float
    status: int  # 0: no answer


def p99_ms(samples: list[Sample]) -> float:
    if not samples:
        return 0.0
    ordered = sorted(sample.seconds for sample in samples)
    return ordered[min(len(ordered) - 1, math.ceil(0.99 * len(ordered)) - 1)] * 1000


class LoadProcess:
    """:mod:`benchmarks.brownout_load` as a child process; stops when its stdin closes."""

    def __init__(self, spec: dict[str, Any], workdir: Path) -> None:
        self.spec_path = workdir / "load-spec.json"
        self.samples_path = workdir / "load-samples.json"
        self.spec_path.write_text(json.dumps(spec), encoding="utf-8")
        self.process: subprocess.Popen[str] | None = None
        self.started = 0.0

    def start(self) -> float:
        environment = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "benchmarks.brownout_load",
                str(self.spec_path),
                str(self.samples_path),
            ],
            cwd=REPO_ROOT,
            env=environment,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.process.stdout is not None  # noqa: S101 (stdout=PIPE)
        line = self.process.stdout.readline()
        if not line.startswith("started "):
            self.stop()
            raise RuntimeError(f"the load generator did not start: {line!r}")
        self.started = float(line.split()[1])
        return self.started

    def stop(self) -> list[Sample]:
        process = self.process
        if process is None:
            return []
        if process.stdin is not None:
            process.stdin.close()
        try:
            process.wait(timeout=CLIENT_TIMEOUT_SECONDS + 15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        self.process = None
        if not self.samples_path.exists():
            return []
        raw = json.loads(self.samples_path.read_text(encoding="utf-8"))
        return [Sample(str(k), float(b), float(s), int(c)) for k, b, s, c in raw]


def _place(host: HostProcess, sku: str) -> dict[str, Any]:
    response = host.request(
        "POST",
        f"/api/v1/customers/bo-{uuid.uuid4().hex[:8]}/orders",
        body=json.dumps(
            {"lines": [{"sku": sku, "quantity": 1, "unitPrice": "1.00"}], "currency": "EUR"}
        ).encode(),
        headers=JSON,
    )
    if response.status != 201:
        raise RuntimeError(f"placing an order failed: {response.status} {response.body!r}")
    order: dict[str, Any] = response.json()
    return order


def run(  # noqa: PLR0917 (the bench's knobs)
    hang: float,
    clients: int,
    deadline: float,
    baseline: float,
    honour_retry_after: bool,
    workdir: Path,
) -> list[Figure]:
    stack = start_stack_on_free_ports(workdir, eventgrid_retry_delays="0.5,1,2,2,2,2,2,2,2,2")
    try:
        stack.provision()
        env = {
            **app_environment(stack, None),
            "HTTP_DEADLINE_SECONDS": str(deadline),
            "PYTHON_THREADPOOL_THREAD_COUNT": str(THREADS),
        }
        host = HostProcess(
            REPO_ROOT,
            workdir / "host.log",
            env=env,
            args=["--settings", str(SAMPLE_SETTINGS)],
            port=stack.ports.functions,
        )
        host.start()
        try:
            return _measure(
                stack,
                host,
                hang=hang,
                clients=clients,
                deadline=deadline,
                baseline=baseline,
                honour_retry_after=honour_retry_after,
                workdir=workdir,
            )
        finally:
            host.stop()
    finally:
        stack.resume_all()
        stack.stop()


def _measure(
    stack: Any,
    host: HostProcess,
    *,
    hang: float,
    clients: int,
    deadline: float,
    baseline: float,
    honour_retry_after: bool,
    workdir: Path,
) -> list[Figure]:
    stock = 10 * clients
    sku = f"SKU-{uuid.uuid4().hex[:10]}"
    host.request(
        "PUT",
        f"/api/v1/inventory/{sku}",
        body=json.dumps({"available": stock}).encode(),
        headers=JSON,
    )
    readers = clients // 2
    payers = clients - readers
    read_orders = [_place(host, sku) for _ in range(readers)]
    pay_orders = [_place(host, sku) for _ in range(payers)]
    total = WARM_UP_SECONDS + baseline + hang + max(3.0, deadline)
    load = LoadProcess(
        {
            "port": host.port,
            "read_paths": [
                f"/api/v1/customers/{o['customerId']}/orders/{o['id']}" for o in read_orders
            ],
            "pay_orders": [(o, f"evt_{uuid.uuid4().hex}") for o in pay_orders],
            # The readers' bearer token (from the stack's issuer), as a client sends it.
            "headers": {"Authorization": f"Bearer {host.token()}"} if host.token() else {},
            "webhook_secret": WEBHOOK_SECRET,
            "think_seconds": THINK_SECONDS,
            "health_interval": HEALTH_INTERVAL_SECONDS,
            "client_timeout": CLIENT_TIMEOUT_SECONDS,
            "honour_retry_after": honour_retry_after,
            "max_seconds": total + 60,
        },
        workdir,
    )
    print(
        f"{clients} clients in their own process, warm-up {WARM_UP_SECONDS:.0f} s, "
        f"baseline {baseline:.0f} s, "
        + ("waiting as a 503's Retry-After asks" if honour_retry_after else "ignoring Retry-After"),
        flush=True,
    )
    started = load.start()
    samples: list[Sample] = []
    try:
        time.sleep(WARM_UP_SECONDS + baseline)
        print(f"freezing Cosmos for {hang:.0f} s", flush=True)
        stack.pause_service("cosmos")
        paused_at = time.monotonic()
        time.sleep(hang)
        hang_load = os.getloadavg()[0]
        stack.resume_service("cosmos")
        resumed_at = time.monotonic()
        print("Cosmos resumed", flush=True)
        time.sleep(max(3.0, deadline))
    finally:
        stack.resume_all()
        samples = load.stop()

    def of(kind: str, start: float, end: float) -> list[Sample]:
        return [s for s in samples if s.kind == kind and start <= s.started < end]

    # The circuit opens once the first calls time out: about one deadline into the hang.
    opened_at = paused_at + deadline + 1.0
    before = (started + WARM_UP_SECONDS, paused_at)
    after_resume = [s for s in of("get", resumed_at, math.inf) if s.status == 200]
    first_200 = (
        min(s.started + s.seconds for s in after_resume) - resumed_at if after_resume else math.inf
    )
    lost = sum(1 for s in samples if s.status not in (200, 503))

    # Messages in effect: every paid order fulfilled once, stock taken once per order.
    def statuses() -> list[str]:
        return [
            host.request("GET", f"/api/v1/customers/{o['customerId']}/orders/{o['id']}")
            .json()
            .get("status", "?")
            for o in pay_orders
        ]

    settle_by = time.monotonic() + 60
    while time.monotonic() < settle_by and set(statuses()) != {"fulfilled"}:
        time.sleep(0.5)
    not_fulfilled = sum(1 for status in statuses() if status != "fulfilled")
    available = host.request("GET", f"/api/v1/inventory/{sku}").json().get("available", 0)
    stock_error = abs((stock - len(pay_orders)) - int(available))
    hang_end = min(resumed_at, paused_at + hang)

    figures = []
    for kind, label in (("get", "GET order"), ("webhook", "payment webhook")):
        base = p99_ms(of(kind, *before))
        figures += [
            Figure(
                f"hang: {label} p99 until the circuit opens",
                p99_ms(of(kind, paused_at, opened_at)),
                deadline * 1000,
                "ms",
                deadline * 1000 + 500,
                goal_on="value",
            ),
            Figure(
                f"hang: {label} p99 with the circuit open",
                p99_ms(of(kind, opened_at, hang_end)),
                base,
                "ms",
                50,
                goal_on="value",
            ),
        ]

    # Closed-loop clients: a latency is clients / throughput (Little's law) once the host is
    # saturated, so the throughput of each window says how much of a figure is queueing.
    def rate(start: float, end: float) -> str:
        count = sum(1 for s in samples if s.kind != "health" and start <= s.started < end)
        return f"{count / max(end - start, 1e-9):.0f} req/s"

    print(
        f"GET order + webhook: {rate(*before)} in the baseline, "
        f"{rate(paused_at, opened_at)} until the circuit opens, "
        f"{rate(opened_at, hang_end)} with it open",
        flush=True,
    )
    # On a shared machine the floors and this say how much of a figure is the machine.
    print(
        f"load average (1 min): {hang_load:.1f} at the end of the hang, "
        f"{os.getloadavg()[0]:.1f} after the run ({os.cpu_count()} cores)",
        flush=True,
    )
    figures += [
        Figure(
            "hang: GET /api/health p99 during the hang",
            p99_ms(of("health", paused_at, hang_end)),
            p99_ms(of("health", *before)),
            "ms",
            100,
            goal_on="value",
        ),
        Figure("hang: resume -> first 200 GET order", first_200 * 1000, 0, "ms", 2000, "value"),
        Figure("hang: requests lost", lost, 0, "requests", 0, "value"),
        Figure(
            "hang: messages lost or duplicated in effect",
            not_fulfilled + stock_error,
            0,
            "orders",
            0,
            "value",
        ),
    ]
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.brownout")
    add_arguments(parser)
    parser.add_argument("--hang", type=float, default=None, help="seconds (30; quick: 6)")
    parser.add_argument("--clients", type=int, default=None, help="concurrent (50; quick: 12)")
    parser.add_argument(
        "--deadline", type=int, default=None, help="HTTP_DEADLINE_SECONDS (8; quick: 2)"
    )
    parser.add_argument(
        "--baseline", type=float, default=None, help="seconds of load before it (10; quick: 3)"
    )
    parser.add_argument(
        "--ignore-retry-after",
        action="store_true",
        help="clients send again after the usual pause, whatever a 503's Retry-After asks",
    )
    args = parser.parse_args(argv)
    hang = args.hang or (6.0 if args.quick else 30.0)
    clients = args.clients or (12 if args.quick else 50)
    deadline = args.deadline or (2 if args.quick else 8)
    baseline = args.baseline or (3.0 if args.quick else 10.0)
    stop_on_sigterm()
    quiet_local_tls_warnings()
    with tempfile.TemporaryDirectory(prefix="orderflow-brownout-") as directory:
        figures = run(
            hang, clients, deadline, baseline, not args.ignore_retry_after, Path(directory)
        )
    report(figures, args.figures_out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
