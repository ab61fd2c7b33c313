"""Run the Event Grid stand-in in the foreground until SIGINT/SIGTERM.

python -m localdev.eventgrid --port 60101 --functions-url http://127.0.0.1:7071
    [--subscriptions localdev/eventgrid/subscriptions.json]
    [--blob-endpoint URL] [--queue-endpoint URL]   Azurite (dead letters, StorageQueue)
    [--retry-delays 1,2,5,10,30]                   seconds; else LOCALDEV_EVENTGRID_RETRY_DELAYS
    [--delivery-timeout 30]
    [--state-dir DIR] [--storage-poll-seconds 0.5]  storage events: what was published, how often

The topic key is ``EVENTGRID_TOPIC_KEY`` from the environment, else the local development key.
Prints ``Event Grid stand-in listening on http://HOST:PORT`` once it accepts requests.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import socket
import sys
from pathlib import Path

from localdev.eventgrid import (
    DEFAULT_PORT,
    LOCAL_TOPIC_KEY,
    READY_MARKER,
    TOPIC_KEY_SETTING,
)
from localdev.eventgrid.app import EventGridApp
from localdev.eventgrid.delivery import (
    DELIVERY_TIMEOUT_SECONDS,
    RETRY_DELAYS_SETTING,
    Deliverer,
    StorageEndpoints,
    parse_retry_delays,
)
from localdev.eventgrid.storage_events import (
    DEFAULT_POLL_SECONDS,
    STORAGE_TOPIC_TYPE,
    StorageEventSource,
)
from localdev.eventgrid.subscriptions import (
    DEFAULT_FILE,
    SubscriptionsFileError,
    load_subscriptions,
)

logger = logging.getLogger("localdev.eventgrid")


def _loopback(value: str) -> str:
    if value not in {"127.0.0.1", "localhost"}:
        raise argparse.ArgumentTypeError("the stand-in listens on loopback only")
    return value


async def _serve(app: EventGridApp, host: str, port: int) -> None:
    import uvicorn

    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind((host, port))
    listener.listen()
    config = uvicorn.Config(
        app, lifespan="on", log_level="warning", access_log=False, timeout_graceful_shutdown=5
    )
    server = uvicorn.Server(config)
    serving = asyncio.create_task(server.serve(sockets=[listener]))
    while not server.started and not serving.done():
        await asyncio.sleep(0.01)
    if server.started:
        bound = listener.getsockname()
        print(f"{READY_MARKER}{bound[0]}:{bound[1]}", flush=True)
    await serving


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m localdev.eventgrid", description=__doc__)
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument("--host", type=_loopback, default="127.0.0.1")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT)
    parser.add_argument("--functions-url", default="http://127.0.0.1:7071")
    parser.add_argument("--subscriptions", type=Path, default=DEFAULT_FILE)
    parser.add_argument("--blob-endpoint")
    parser.add_argument("--queue-endpoint")
    parser.add_argument("--retry-delays")
    parser.add_argument("--delivery-timeout", type=float, default=DELIVERY_TIMEOUT_SECONDS)
    parser.add_argument("--state-dir", type=Path)
    parser.add_argument("--storage-poll-seconds", type=float, default=DEFAULT_POLL_SECONDS)
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", stream=sys.stdout
    )
    logging.getLogger("azure").setLevel(logging.WARNING)  # no line per storage request
    try:
        subscriptions = load_subscriptions(args.subscriptions)
        subscriptions.custom_topic()
        delays = parse_retry_delays(args.retry_delays or os.environ.get(RETRY_DELAYS_SETTING))
    except (SubscriptionsFileError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    storage = StorageEndpoints(args.blob_endpoint, args.queue_endpoint)
    deliverer = Deliverer(
        subscriptions,
        functions_url=args.functions_url,
        storage=storage,
        retry_delays=delays,
        timeout=args.delivery_timeout,
        logger=logger,
    )
    sources = [
        StorageEventSource(
            topic.name,
            subscriptions.of_topic(topic.name),
            blob_service=storage.blobs,
            blob_endpoint=args.blob_endpoint,
            publish=deliverer.publish,
            logger=logger,
            state_dir=args.state_dir,
            poll_seconds=args.storage_poll_seconds,
        )
        for topic in subscriptions.topics.values()
        if topic.topic_type == STORAGE_TOPIC_TYPE
        and subscriptions.of_topic(topic.name)
        and args.blob_endpoint
    ]
    app = EventGridApp(
        subscriptions,
        topic_key=os.environ.get(TOPIC_KEY_SETTING) or LOCAL_TOPIC_KEY,
        deliverer=deliverer,
        logger=logger,
        sources=sources,
    )
    for subscription in subscriptions.subscriptions:
        logger.info(
            "subscription %s: topic %s -> %s %s",
            subscription.name,
            subscription.topic,
            subscription.destination.endpoint_type,
            subscription.destination.function_name
            or subscription.destination.functions_path
            or subscription.destination.queue_name,
        )
    asyncio.run(_serve(app, args.host, args.port))
    return 0


if __name__ == "__main__":
    sys.exit(main())
