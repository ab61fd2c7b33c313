"""Event processing latency and throughput over the running local host: prints figures,
asserts nothing.

    .venv/bin/python benchmarks/fulfillment.py [--orders 20] [--burst 200]

Starts its own local stack and host on free ports (nothing else is touched, everything is
stopped at the end), then measures:

1. latency from the payment webhook's answer to the order reading ``fulfilled`` (HTTP ->
   outbox -> local Event Grid topic -> route_order_events -> Service Bus -> fulfil_order), for
   ``--orders`` orders paid one after the other: p50, p95, max (goal: p95 under 2 s);
2. a burst of ``--burst`` orders for one SKU with a quarter of them in stock, paid
   concurrently: time until every order is fulfilled or backordered, and orders per second.

The Cosmos DB stand-in serialises requests, so the figures describe the local stack, not Azure.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
import uuid
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from localdev.stack import LocalStack  # noqa: E402
from shared.webhooks import signed_payment_succeeded  # noqa: E402
from tests.fixtures.host import HostProcess  # noqa: E402

# The webhook secret of the benchmark's own local app: a made-up value, not a real secret.
SECRET = "benchmark-webhook-secret"  # noqa: S105  # pragma: allowlist secret
JSON = {"Content-Type": "application/json"}


def place(host: HostProcess, customer: str, sku: str) -> dict[str, Any]:
    body = {"lines": [{"sku": sku, "quantity": 1, "unitPrice": "1.00"}], "currency": "EUR"}
    response = host.request(
        "POST", f"/api/v1/customers/{customer}/orders", body=json.dumps(body).encode(), headers=JSON
    )
    if response.status != 201:
        raise RuntimeError(f"create failed: {response.status} {response.body!r}")
    order: dict[str, Any] = response.json()
    return order


def pay(host: HostProcess, order: dict[str, Any]) -> None:
    body, headers = signed_payment_succeeded(order, SECRET)
    response = host.request(
        "POST", "/api/v1/payments/webhook", body=body, headers=headers, timeout=60
    )
    if response.status != 200:
        raise RuntimeError(f"payment failed: {response.status} {response.body!r}")


def status(host: HostProcess, order: dict[str, Any]) -> str:
    path = f"/api/v1/customers/{order['customerId']}/orders/{order['id']}"
    value: str = host.request("GET", path).json()["status"]
    return value


def wait_terminal(host: HostProcess, order: dict[str, Any], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while status(host, order) not in ("fulfilled", "backordered"):
        if time.monotonic() > deadline:
            raise TimeoutError(f"order {order['id']} not fulfilled within {timeout} s")
        time.sleep(0.01)


def set_stock(host: HostProcess, sku: str, available: int) -> None:
    host.request(
        "PUT",
        f"/api/v1/inventory/{sku}",
        body=json.dumps({"available": available}).encode(),
        headers=JSON,
    )


def latency(host: HostProcess, orders: int) -> None:
    sku = f"SKU-{uuid.uuid4().hex[:8]}"
    set_stock(host, sku, orders)
    samples = []
    for i in range(orders):
        order = place(host, f"lat-{i}", sku)
        pay(host, order)
        started = time.perf_counter()
        wait_terminal(host, order)
        samples.append(time.perf_counter() - started)
    samples.sort()
    p95 = samples[min(len(samples) - 1, int(len(samples) * 0.95))]
    print(
        f"paid -> fulfilled, {orders} orders one at a time: "
        f"p50 {statistics.median(samples):.2f} s, p95 {p95:.2f} s, max {samples[-1]:.2f} s "
        "(goal: p95 < 2 s)"
    )


def burst(host: HostProcess, count: int) -> None:
    sku = f"SKU-{uuid.uuid4().hex[:8]}"
    set_stock(host, sku, count // 4)
    with ThreadPoolExecutor(8) as pool:
        orders = list(pool.map(lambda i: place(host, f"burst-{i % 20}", sku), range(count)))
        started = time.perf_counter()
        list(pool.map(lambda order: pay(host, order), orders))
        paid = time.perf_counter()
        list(pool.map(lambda order: wait_terminal(host, order, 300), orders))
    done = time.perf_counter()
    statuses = [status(host, order) for order in orders]
    print(
        f"burst of {count} orders for {count // 4} units: paid in {paid - started:.1f} s, all "
        f"terminal after {done - started:.1f} s ({count / (done - started):.0f} orders/s); "
        f"fulfilled {statuses.count('fulfilled')}, backordered {statuses.count('backordered')}"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=20)
    parser.add_argument("--burst", type=int, default=200)
    args = parser.parse_args()
    # The Cosmos stand-in's certificate is self-signed (loopback only).
    warnings.filterwarnings("ignore", message="Unverified HTTPS request")
    with tempfile.TemporaryDirectory(prefix="orderflow-bench-") as workdir:
        stack = LocalStack.start_on_free_ports(Path(workdir))
        host: HostProcess | None = None
        try:
            stack.provision()
            host = HostProcess(
                REPO,
                Path(workdir) / "host.log",
                env={**stack.app_settings(), "PAYMENT_WEBHOOK_SECRET": SECRET},
                args=["--settings", str(REPO / "local.settings.json.sample")],
                port=stack.ports.functions,  # where the stack's Event Grid stand-in delivers
            ).start()
            latency(host, args.orders)
            burst(host, args.burst)
        finally:
            if host is not None:
                host.stop()
            stack.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
