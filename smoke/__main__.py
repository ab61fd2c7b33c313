"""``python -m smoke --base-url URL [options]``: exit code 0 when no scenario failed."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from smoke.http import Client
from smoke.results import Outcome
from smoke.runner import run_all
from smoke.scenarios import SCENARIOS, Context
from smoke.storage import StorageAccess

# The local sample settings' secret (local.settings.json.sample), so `make run` works as is:
# a public development default, never a real secret.
LOCAL_WEBHOOK_SECRET = "local-webhook-secret-change-me"  # noqa: S105  # pragma: allowlist secret


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    env = os.environ.get
    parser = argparse.ArgumentParser(
        prog="python -m smoke",
        description="End-to-end smoke tests against a running Orderflow app (docs/SMOKE.md). "
        "Secrets can come from the environment instead of the command line.",
    )
    parser.add_argument("--base-url", required=True, help="e.g. http://127.0.0.1:7071")
    parser.add_argument(
        "--function-key",
        default=env("SMOKE_FUNCTION_KEY"),
        help="sent as x-functions-key; must be the master (admin) key in Azure, as setting "
        "stock is admin level (env SMOKE_FUNCTION_KEY)",
    )
    parser.add_argument(
        "--webhook-secret",
        default=env("SMOKE_WEBHOOK_SECRET") or LOCAL_WEBHOOK_SECRET,
        help="the payment-webhook-secret the app verifies (env SMOKE_WEBHOOK_SECRET; default: "
        "the local sample's)",
    )
    storage = parser.add_mutually_exclusive_group()
    storage.add_argument(
        "--storage-connection-string",
        default=env("SMOKE_STORAGE_CONNECTION_STRING"),
        help="imports storage account (env SMOKE_STORAGE_CONNECTION_STRING)",
    )
    storage.add_argument(
        "--storage-account-url",
        default=env("SMOKE_STORAGE_ACCOUNT_URL"),
        help="imports storage account's blob URL, reached with DefaultAzureCredential "
        "(env SMOKE_STORAGE_ACCOUNT_URL)",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=60.0,
        help="seconds to wait for fulfilment and for the import (default 60)",
    )
    args = parser.parse_args(argv)
    if args.storage_connection_string and args.storage_account_url:
        parser.error("give either a storage connection string or an account URL, not both")
    if args.timeout <= 0:
        parser.error("--timeout must be positive")
    return args


def say(line: str) -> None:
    """One line of the report on stdout, flushed at once (a CI log shows progress)."""
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        client = Client(args.base_url, args.function_key or None)
    except ValueError as error:
        sys.stderr.write(f"error: {error}\n")
        return 2
    context = Context(
        client=client,
        webhook_secret=args.webhook_secret,
        storage=StorageAccess(args.storage_connection_string, args.storage_account_url),
        timeout=args.timeout,
    )
    say(f"smoke run {context.run_id} against {client.base_url}")
    results = run_all(SCENARIOS, context, say)
    failed = [result.name for result in results if result.outcome is Outcome.FAIL]
    passed = sum(result.outcome is Outcome.PASS for result in results)
    skipped = sum(result.outcome is Outcome.SKIP for result in results)
    say(f"{passed} passed, {len(failed)} failed, {skipped} skipped")
    if failed:
        say(f"failed: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
