"""Tokens from the local OpenID Connect issuer, for people (``make token``), tests, smoke runs
and benchmarks.

    python -m localdev token --customer alice            # a customer's app: scp Orders.ReadWrite
    python -m localdev token --roles "Inventory.ReadWrite"
    python -m localdev token                              # every app role (a backend)

The issuer's token contract (``localdev/stack/issuer.mjs``): ``POST {issuer}/token``,
form-encoded ``grant_type=client_credentials``, ``client_id``, and optional ``sub``, ``scp``,
``roles`` (space-separated), ``aud``, ``expires_in`` copied into the claims.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import sys
import urllib.parse
from collections.abc import Iterable

from shared.auth.permissions import APP_ROLES, ORDERS_SCOPE

DEFAULT_ISSUER = "http://127.0.0.1:8091"
DEFAULT_CLIENT_ID = "orderflow-local-client"
TIMEOUT_SECONDS = 5.0


class TokenRequestError(RuntimeError):
    """The issuer did not answer with a token."""


def request_token(
    issuer: str,
    *,
    client_id: str = DEFAULT_CLIENT_ID,
    sub: str | None = None,
    scp: str | Iterable[str] | None = None,
    roles: str | Iterable[str] | None = None,
    aud: str | None = None,
    expires_in: int | None = None,
    timeout: float = TIMEOUT_SECONDS,
) -> str:
    """An access token from the local issuer at ``issuer`` (plain http on loopback)."""
    parts = urllib.parse.urlsplit(issuer)
    if parts.scheme != "http" or not parts.hostname:
        raise ValueError(f"the local issuer is an http:// URL, not {issuer!r}")
    fields: dict[str, str] = {"grant_type": "client_credentials", "client_id": client_id}
    optional = {
        "sub": sub,
        "scp": scp if isinstance(scp, str) or scp is None else " ".join(scp),
        "roles": roles if isinstance(roles, str) or roles is None else " ".join(roles),
        "aud": aud,
        "expires_in": None if expires_in is None else str(expires_in),
    }
    fields.update({name: value for name, value in optional.items() if value is not None})
    body = urllib.parse.urlencode(fields)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)
    try:
        connection.request(
            "POST",
            parts.path.rstrip("/") + "/token",
            body=body,
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
        response = connection.getresponse()
        payload = response.read()
    except OSError as error:
        raise TokenRequestError(
            f"the issuer at {issuer} does not answer ({error}); is the stack up?"
        ) from None
    finally:
        connection.close()
    if response.status != 200:
        raise TokenRequestError(f"the issuer answered {response.status}: {payload[:200]!r}")
    token = json.loads(payload).get("access_token")
    if not isinstance(token, str):
        raise TokenRequestError("the issuer's answer has no access_token")
    return token


def all_roles_token(
    issuer: str, *, sub: str = "orderflow-backend", expires_in: int | None = None
) -> str:
    """A backend's token: every app role and the delegated scope, so it may call everything."""
    return request_token(issuer, sub=sub, scp=ORDERS_SCOPE, roles=APP_ROLES, expires_in=expires_in)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m localdev token",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--issuer", default=os.environ.get("AUTH_ISSUER") or DEFAULT_ISSUER)
    parser.add_argument(
        "--customer", help=f"a customer's token: sub=<customer>, scp={ORDERS_SCOPE}"
    )
    parser.add_argument("--roles", help="space-separated app roles, e.g. 'Inventory.ReadWrite'")
    parser.add_argument("--scp", help="space-separated delegated scopes (overrides the default)")
    parser.add_argument("--sub", help="subject (default: the customer, else the client id)")
    parser.add_argument("--client-id", default=DEFAULT_CLIENT_ID)
    parser.add_argument("--aud", help="audience (default: the issuer's, AUTH_AUDIENCE)")
    parser.add_argument("--expires-in", type=int, help="lifetime in seconds (negative: expired)")
    args = parser.parse_args(argv)
    scp = args.scp or (ORDERS_SCOPE if args.customer else None)
    roles = args.roles
    if not args.customer and roles is None and scp is None:
        roles = " ".join(APP_ROLES)  # no choice made: a backend token that may call everything
    try:
        token = request_token(
            args.issuer,
            client_id=args.client_id,
            sub=args.sub or args.customer,
            scp=scp,
            roles=roles,
            aud=args.aud,
            expires_in=args.expires_in,
        )
    except (TokenRequestError, ValueError) as error:
        print(f"token: {error}", file=sys.stderr)
        return 1
    print(token)
    return 0


if __name__ == "__main__":
    sys.exit(main())
