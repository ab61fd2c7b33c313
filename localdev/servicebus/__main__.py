"""Run the Service Bus test broker in the foreground until SIGINT/SIGTERM.

python -m localdev.servicebus --host 127.0.0.1 --port 5672 [--queues fulfillment [more ...]]
    [--max-delivery-count 10] [--lock-duration 30] [--duplicate-window 600] [--data-dir DIR]

With ``--data-dir`` the messages are kept on disk there, so a restarted broker still has them.

Prints ``Service Bus broker listening on amqp://HOST:PORT (queues: ...)`` once it listens.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import signal
import sys
from pathlib import Path
from types import FrameType

from localdev.servicebus import DEFAULT_PORT
from localdev.servicebus.broker import BrokerConfig, serve


def _positive(value: str) -> float:
    number = float(value)
    if not number > 0:
        raise argparse.ArgumentTypeError("must be positive")
    return number


def _count(value: str) -> int:
    number = int(value)
    if number < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return number


def _queue(value: str) -> str:
    if not value or "/" in value or "$" in value or len(value) > 260:
        raise argparse.ArgumentTypeError(f"invalid queue name {value!r}")
    return value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m localdev.servicebus", description=__doc__)
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT)
    parser.add_argument("--queues", nargs="+", type=_queue, default=["fulfillment"])
    parser.add_argument("--max-delivery-count", type=_count, default=10)
    parser.add_argument("--lock-duration", type=_positive, default=30.0, help="seconds")
    parser.add_argument("--duplicate-window", type=float, default=600.0, help="seconds")
    parser.add_argument(
        "--data-dir", type=Path, default=None, help="keep messages on disk here (default: memory)"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", stream=sys.stdout
    )

    def stop(signum: int, _frame: FrameType | None) -> None:
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, stop)
    config = BrokerConfig(
        queues=tuple(dict.fromkeys(args.queues)),
        max_delivery_count=args.max_delivery_count,
        lock_duration=args.lock_duration,
        duplicate_window=max(0.0, args.duplicate_window),
        data_dir=args.data_dir,
    )
    with contextlib.suppress(KeyboardInterrupt):
        serve(args.host, args.port, config)
    return 0


if __name__ == "__main__":
    sys.exit(main())
