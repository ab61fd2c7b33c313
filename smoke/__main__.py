"""``python -m smoke --base-url URL [options]``: exit code 0 when no scenario failed."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from smoke.http import LOCAL_TOKEN_URL, Client, client_credentials_token
from smoke.perimeter import PERIMETER_SCENARIOS
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
        "--token",
        default=env("SMOKE_TOKEN"),
        help="bearer token sent on every API call (env SMOKE_TOKEN); without it one is taken "
        "by client credentials from --token-url",
    )
    parser.add_argument(
        "--token-url",
        default=env("SMOKE_TOKEN_URL"),
        help="OAuth 2.0 token endpoint (env SMOKE_TOKEN_URL), e.g. https://login.microsoft"
        "online.com/<tenant>/oauth2/v2.0/token; default for a loopback base URL: the local "
        f"issuer, {LOCAL_TOKEN_URL}",
    )
    parser.add_argument(
        "--client-id",
        default=env("SMOKE_CLIENT_ID") or "orderflow-smoke",
        help="(env SMOKE_CLIENT_ID)",
    )
    parser.add_argument(
        "--client-secret", default=env("SMOKE_CLIENT_SECRET"), help="(env SMOKE_CLIENT_SECRET)"
    )
    parser.add_argument(
        "--scope",
        default=env("SMOKE_SCOPE"),
        help="e.g. api://<client-id>/.default (env SMOKE_SCOPE)",
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
        "--rate-limit-calls",
        type=int,
        default=int(env("SMOKE_RATE_LIMIT_CALLS") or 0) or None,
        help="the gateway's per-caller limit: also expect its 429 within a bounded loop "
        "(env SMOKE_RATE_LIMIT_CALLS; default: no gateway)",
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
    if args.rate_limit_calls is not None and not 0 < args.rate_limit_calls <= 10_000:
        parser.error("--rate-limit-calls must be 1..10000 (the loop makes at most twice as many)")
    return args


def say(line: str) -> None:
    """One line of the report on stdout, flushed at once (a CI log shows progress)."""
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def _token(args: argparse.Namespace) -> str | None:
    if args.token:
        return str(args.token)
    token_url = args.token_url
    if not token_url:
        from urllib.parse import urlsplit

        if urlsplit(args.base_url).hostname not in {"127.0.0.1", "localhost"}:
            return None  # the API calls will fail with 401, which the report names
        token_url = LOCAL_TOKEN_URL
    return client_credentials_token(
        token_url, args.client_id, client_secret=args.client_secret, scope=args.scope
    )


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        client = Client(args.base_url, _token(args))
    except ValueError as error:
        sys.stderr.write(f"error: {error}\n")
        return 2
    context = Context(
        client=client,
        webhook_secret=args.webhook_secret,
        storage=StorageAccess(args.storage_connection_string, args.storage_account_url),
        timeout=args.timeout,
        rate_limit_calls=args.rate_limit_calls,
    )
    say(f"smoke run {context.run_id} against {client.base_url}")
    results = run_all((*SCENARIOS, *PERIMETER_SCENARIOS), context, say)
    failed = [result.name for result in results if result.outcome is Outcome.FAIL]
    passed = sum(result.outcome is Outcome.PASS for result in results)
    skipped = sum(result.outcome is Outcome.SKIP for result in results)
    say(f"{passed} passed, {len(failed)} failed, {skipped} skipped")
    if failed:
        say(f"failed: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
