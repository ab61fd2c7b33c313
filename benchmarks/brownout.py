"""``python -m benchmarks.brownout [--quick] [--hang S] [--clients N] [--deadline S]``: a Cosmos
DB hang under load.

The local stack and host (its worker with 6 threads, as a 2-core instance), ``--clients``
concurrent clients (half read an order in a loop, half send the payment webhook for an order
of their own until it is accepted, then keep repeating it, as a provider does) and one
liveness poller. After a warm-up the Cosmos stand-in is frozen (SIGSTOP) for ``--hang``
seconds, then resumed, and the run goes on until every paid order is fulfilled. Figures:

- p99 of GET order and of the webhook for requests started during the hang, before the circuit
  opened (goal: the deadline + 0.5 s), and after it opened (goal < 50 ms; floor: the same p99
  before the hang);
- p99 of ``GET /api/health`` during the hang (goal < 100 ms; floor: before the hang);
- resume -> first 200 of GET order (goal <= 2 s);
- requests lost (no answer, or an answer other than 200/503; goal 0); messages lost or
  duplicated in effect (orders not fulfilled exactly once, stock not taken exactly once; goal 0).
"""

from __future__ import annotations

import argparse
import json
import math
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.local_app import quiet_local_tls_warnings, stop_on_sigterm
from benchmarks.table import Figure, add_arguments, report
from shared.webhooks import signed_payment_succeeded
from tests.fixtures.app import REPO_ROOT, SAMPLE_SETTINGS, WEBHOOK_SECRET, app_environment
from tests.fixtures.host import HostProcess
from tests.fixtures.stack import start_stack_on_free_ports

JSON = {"Content-Type": "application/json"}
THREADS = 6
WARM_UP_SECONDS = 3.0
THINK_SECONDS = 0.02  # between one client's requests
CLIENT_TIMEOUT_SECONDS = 30.0


@dataclass(frozen=True)
class Sample:
    kind: str  # "get", "webhook", "health"
    started: float
    seconds: float
    status: int  # 0: no answer


def p99_ms(samples: list[Sample]) -> float:
    if not samples:
        return 0.0
    ordered = sorted(sample.seconds for sample in samples)
    return ordered[min(len(ordered) - 1, math.ceil(0.99 * len(ordered)) - 1)] * 1000


class Load:
    def __init__(self, host: HostProcess) -> None:
        self.host = host
        self.samples: list[Sample] = []
        self._lock = threading.Lock()
        self.stop = threading.Event()

    def _timed(self, kind: str, method: str, path: str, **options: Any) -> int:
        began = time.monotonic()
        try:
            status = self.host.request(
                method, path, timeout=CLIENT_TIMEOUT_SECONDS, **options
            ).status
        except OSError:
            status = 0
        with self._lock:
            self.samples.append(Sample(kind, began, time.monotonic() - began, status))
        return status

    def reader(self, order: dict[str, Any]) -> None:
        path = f"/api/v1/customers/{order['customerId']}/orders/{order['id']}"
        while not self.stop.is_set():
            self._timed("get", "GET", path)
            time.sleep(THINK_SECONDS)

    def payer(self, order: dict[str, Any], event_id: str) -> None:
        while not self.stop.is_set():
            body, headers = signed_payment_succeeded(order, WEBHOOK_SECRET, event_id=event_id)
            self._timed("webhook", "POST", "/api/v1/payments/webhook", body=body, headers=headers)
            time.sleep(THINK_SECONDS)

    def health(self) -> None:
        while not self.stop.is_set():
            self._timed("health", "GET", "/api/health")
            time.sleep(0.05)


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


def run(hang: float, clients: int, deadline: float, workdir: Path) -> list[Figure]:
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
            return _measure(stack, host, hang, clients, deadline)
        finally:
            host.stop()
    finally:
        stack.resume_all()
        stack.stop()


def _measure(
    stack: Any, host: HostProcess, hang: float, clients: int, deadline: float
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
    load = Load(host)
    threads = [threading.Thread(target=load.reader, args=(o,)) for o in read_orders]
    threads += [
        threading.Thread(target=load.payer, args=(o, f"evt_{uuid.uuid4().hex}")) for o in pay_orders
    ]
    threads.append(threading.Thread(target=load.health))
    print(f"{clients} clients, warm-up {WARM_UP_SECONDS:.0f} s", flush=True)
    for thread in threads:
        thread.start()
    try:
        time.sleep(WARM_UP_SECONDS)
        print(f"freezing Cosmos for {hang:.0f} s", flush=True)
        stack.pause_service("cosmos")
        paused_at = time.monotonic()
        time.sleep(hang)
        stack.resume_service("cosmos")
        resumed_at = time.monotonic()
        print("Cosmos resumed", flush=True)
        time.sleep(max(3.0, deadline))
    finally:
        stack.resume_all()
        load.stop.set()
        for thread in threads:
            thread.join(timeout=CLIENT_TIMEOUT_SECONDS + 5)
    samples = list(load.samples)

    def of(kind: str, start: float, end: float) -> list[Sample]:
        return [s for s in samples if s.kind == kind and start <= s.started < end]

    # The circuit opens once the first calls time out: about one deadline into the hang.
    opened_at = paused_at + deadline + 1.0
    before = (paused_at - WARM_UP_SECONDS + 1.0, paused_at)
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
    args = parser.parse_args(argv)
    hang = args.hang or (6.0 if args.quick else 30.0)
    clients = args.clients or (12 if args.quick else 50)
    deadline = args.deadline or (2 if args.quick else 8)
    stop_on_sigterm()
    quiet_local_tls_warnings()
    with tempfile.TemporaryDirectory(prefix="orderflow-brownout-") as directory:
        figures = run(hang, clients, deadline, Path(directory))
    report(figures, args.figures_out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
