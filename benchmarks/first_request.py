"""Cold start to the first answer: the first GET of an order in a fresh process, beside a fresh
process doing one raw azure-cosmos point read of the same order on the same stand-in.

    .venv/bin/python -m benchmarks.first_request [--quick] [--runs 15]

Starts its own stack (free ports; stopped at the end) and places one order through the app.
Then fresh interpreters, alternating (order flipped every pair, after one unmeasured warm-up
pair, as in benchmarks/cold_start.py), each timed inside with ``perf_counter``:

- app: ``import azure.functions``, then the local host's own steps: import and index
  ``function_app`` (``localdev.host.loader``, the worker's indexing), and the GET through
  ``HttpTriggerSource.handle_http`` (a real ``func.HttpRequest``, the invoker's thread pool,
  the worker's response converter). On its first call the handler loads its service, pydantic,
  the Cosmos SDK and the settings, creates the client and reads the order.
- raw: ``import azure.functions`` (any function app pays it), then ``import azure.cosmos``,
  a client with the app's options, ``read_item``.

Both start from the same process: the worker library, the local host's server and an event
loop loaded before any clock starts, and the local host's own modules loaded (not counted)
after ``import azure.functions``, as in Azure, whose host and worker have them loaded before
the first request arrives. (A raw child that starts from a bare interpreter pays the standard
library modules the worker has already loaded, which made the floor look slower than it is.)
Goal: the first GET costs at most 1.5x the raw read; median of ``--runs`` processes each.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

from benchmarks.app_calls import WEBHOOK_SECRET, AppApi
from benchmarks.fresh_process import last_json_line, run_python
from benchmarks.local_app import (
    configure_this_process,
    quiet_local_tls_warnings,
    running_stack,
    stop_on_sigterm,
)
from benchmarks.table import Figure, add_arguments, report
from tests.fixtures.eventgrid import EventGridSink

REPOSITORY_ROOT = Path(__file__).resolve().parents[1]
GOAL_RATIO = 1.5
CHILD_TIMEOUT_SECONDS = 120

# What both children do before and between their clocks (the same process model); each child
# prints {"seconds": ..., "parts": {...}}. Placeholder: repository.
_PREAMBLE = """
import asyncio, json, logging, os, sys, time, warnings
from pathlib import Path
repository = Path({repository!r})
sys.path.insert(0, str(repository))
warnings.filterwarnings("ignore", message="Unverified HTTPS request")
import azure_functions_runtime  # the worker: loaded before the host sends a request
import uvicorn  # the local host's server
loop = asyncio.new_event_loop()

started = time.perf_counter()
import azure.functions
parts = {{"import azure.functions": time.perf_counter() - started}}

from localdev.host.http_trigger import HttpTriggerSource
from localdev.host.invoker import Invoker
from localdev.host.loader import load_function_app
from localdev.host.messages import HostRequest
from localdev.host.settings import read_host_json
from localdev.host.sources import HostServices
"""

# Placeholders: path, token (a bearer token: the first GET also loads PyJWT and reads the
# issuer's keys, as a new instance does).
_APP_CHILD = (
    _PREAMBLE
    + """
started = time.perf_counter()
loaded = load_function_app(repository, "function_app", os.environ)
parts["import + index function_app"] = time.perf_counter() - started

services = HostServices(
    invoker=Invoker(os.environ),
    app_dir=repository,
    host_json=read_host_json(repository),
    environ=os.environ,
    base_url="http://127.0.0.1",
    logger=logging.getLogger("localdev.host"),
)
source = HttpTriggerSource(
    services, [f for f in loaded.functions if f.trigger_type == "httpTrigger"]
)
request = HostRequest(
    "GET", {path!r}, "", (("Authorization", "Bearer " + {token!r}),), b"",
    "http://127.0.0.1" + {path!r},
)

started = time.perf_counter()
response = loop.run_until_complete(source.handle_http(request))
parts["first GET"] = time.perf_counter() - started
services.invoker.close()
if response is None or response.status != 200:
    sys.stderr.write(f"GET answered {{getattr(response, 'status', None)}}\\n")
    sys.exit(3)
print(json.dumps({{"seconds": sum(parts.values()), "parts": parts}}))
"""
)

# Placeholders: endpoint, key, database, container, item, partition.
_RAW_CHILD = (
    _PREAMBLE
    + """
started = time.perf_counter()
from azure.cosmos import CosmosClient
client = CosmosClient(
    {endpoint!r}, credential={key!r}, enable_endpoint_discovery=False,
    connection_timeout={connection_timeout!r}, retry_total={retry_total!r},
    retry_backoff_max={retry_backoff_max!r},
)
container = client.get_database_client({database!r}).get_container_client({container!r})
container.read_item(item={item!r}, partition_key={partition!r})
parts["raw read_item"] = time.perf_counter() - started
print(json.dumps({{"seconds": sum(parts.values()), "parts": parts}}))
"""
)


def run_child(source: str, settings: dict[str, str]) -> dict[str, Any]:
    from tests.fixtures.worker_indexing import clean_environment

    output = run_python(
        ["-c", source],
        what="a fresh process",
        timeout=CHILD_TIMEOUT_SECONDS,
        env=clean_environment(settings),
    )
    return last_json_line(output)


def child_sources(order: dict[str, Any], endpoint: str, token: str) -> tuple[str, str]:
    from localdev.stack import COSMOS_EMULATOR_KEY
    from shared import clients
    from shared.names import COSMOS_DATABASE_DEFAULT, ORDERS_CONTAINER

    path = f"/api/v1/customers/{order['customerId']}/orders/{order['id']}"
    app = _APP_CHILD.format(repository=str(REPOSITORY_ROOT), path=path, token=token)
    raw = _RAW_CHILD.format(
        repository=str(REPOSITORY_ROOT),
        endpoint=endpoint,
        key=COSMOS_EMULATOR_KEY,
        connection_timeout=clients.CONNECTION_TIMEOUT,
        retry_total=clients.RETRY_TOTAL,
        retry_backoff_max=clients.RETRY_BACKOFF_MAX,
        database=COSMOS_DATABASE_DEFAULT,
        container=ORDERS_CONTAINER,
        item=order["id"],
        partition=order["customerId"],
    )
    return app, raw


def measure(runs: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    quiet_local_tls_warnings()
    sink = EventGridSink()
    sink.start()
    try:
        with (
            tempfile.TemporaryDirectory(prefix="orderflow-bench-first-") as directory,
            running_stack(Path(directory)) as stack,
        ):
            settings = {
                **stack.app_settings(),
                **sink.app_settings(),
                "PAYMENT_WEBHOOK_SECRET": WEBHOOK_SECRET,
            }
            configure_this_process(settings)
            api = AppApi()
            order = api.post_order("first-request")
            token = api.authorization["Authorization"].removeprefix("Bearer ")
            app_source, raw_source = child_sources(order, stack.cosmos_endpoint, token)
            run_child(app_source, settings)  # warm-up: bytecode and file caches, not counted
            run_child(raw_source, settings)
            app_samples: list[dict[str, Any]] = []
            raw_samples: list[dict[str, Any]] = []
            for index in range(runs):
                pair = ("app", "raw") if index % 2 == 0 else ("raw", "app")
                for side in pair:
                    if side == "app":
                        app_samples.append(run_child(app_source, settings))
                    else:
                        raw_samples.append(run_child(raw_source, settings))
    finally:
        sink.stop()
    return app_samples, raw_samples


def _parts(samples: list[dict[str, Any]]) -> str:
    return ", ".join(
        f"{part} {statistics.median(s['parts'][part] for s in samples) * 1000:.0f}"
        for part in samples[0]["parts"]
    )


def run(runs: int) -> list[Figure]:
    app_samples, raw_samples = measure(runs)
    app_ms = statistics.median(sample["seconds"] for sample in app_samples) * 1000
    raw_ms = statistics.median(sample["seconds"] for sample in raw_samples) * 1000
    print(
        f"first request, median of {runs} fresh processes each: app {app_ms:.0f} ms "
        f"({_parts(app_samples)}), raw {raw_ms:.0f} ms ({_parts(raw_samples)})",
        flush=True,
    )
    return [
        Figure("cold start: first GET order vs raw read_item", app_ms, raw_ms, "ms", GOAL_RATIO)
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    add_arguments(parser)
    parser.add_argument("--runs", type=int, default=None, help="fresh processes per side")
    args = parser.parse_args(argv)
    stop_on_sigterm()
    runs = args.runs or (5 if args.quick else 15)
    report(run(runs), args.figures_out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
