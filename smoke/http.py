"""A small HTTP client over urllib: base URL, bearer token, JSON in and out."""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from email.message import Message
from typing import Any
from urllib.parse import urlsplit


@dataclass(frozen=True)
class Response:
    status: int
    headers: Message
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)

    def header(self, name: str) -> str | None:
        return self.headers.get(name)

    def excerpt(self, limit: int = 300) -> str:
        """The start of the body, for failure reasons (never a header: keys stay out of logs)."""
        text = self.body.decode("utf-8", errors="replace").strip()
        return text if len(text) <= limit else text[:limit] + "..."


@dataclass
class Client:
    base_url: str
    bearer_token: str | None = None
    request_timeout: float = 30.0
    user_agent: str = "orderflow-smoke/1"
    _opener: urllib.request.OpenerDirector = field(init=False, repr=False)

    def __post_init__(self) -> None:
        parts = urlsplit(self.base_url)
        if parts.scheme not in {"http", "https"} or not parts.netloc:
            raise ValueError(f"base URL must be http(s)://host[:port], got {self.base_url!r}")
        self.base_url = self.base_url.rstrip("/")
        # No redirect following: a redirect (to a login page, say) is a failure to report.
        self._opener = urllib.request.build_opener(_NoRedirect)

    def request(
        self,
        method: str,
        path: str,
        *,
        json_body: Any = None,
        body: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        authenticated: bool = True,
    ) -> Response:
        all_headers = {"User-Agent": self.user_agent, "Accept": "application/json"}
        if json_body is not None:
            body = json.dumps(json_body).encode()
            all_headers["Content-Type"] = "application/json"
        if authenticated and self.bearer_token:
            all_headers["Authorization"] = f"Bearer {self.bearer_token}"
        all_headers.update(headers or {})
        request = urllib.request.Request(  # noqa: S310 - the scheme is checked in __post_init__
            self.base_url + path, data=body, headers=all_headers, method=method
        )
        try:
            with self._opener.open(request, timeout=self.request_timeout) as response:
                return Response(response.status, response.headers, response.read())
        except urllib.error.HTTPError as error:
            with error:
                return Response(error.code, error.headers, error.read())


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


# The local issuer's token endpoint (make run); its tokens carry the roles the form asks for.
LOCAL_TOKEN_URL = "http://127.0.0.1:8091/token"  # noqa: S105 - a URL, not a secret
# The app roles the scenarios need (set stock, any customer's orders, import status).
SMOKE_ROLES = "Orders.ReadWrite.All Inventory.ReadWrite Imports.Read"


def client_credentials_token(
    token_url: str,
    client_id: str,
    *,
    client_secret: str | None = None,
    scope: str | None = None,
    timeout: float = 30.0,
) -> str:
    """An access token by the OAuth 2.0 client credentials grant (RFC 6749 section 4.4): Entra
    ID (``scope=<App ID URI>/.default``) or the local issuer (loopback: it is also asked for the
    roles the scenarios need, which Entra ID grants through app role assignments instead)."""
    parts = urlsplit(token_url)
    if parts.scheme not in {"http", "https"} or not parts.netloc:
        raise ValueError(f"token URL must be http(s)://..., got {token_url!r}")
    if parts.scheme == "http" and parts.hostname not in {"127.0.0.1", "localhost", "::1"}:
        raise ValueError("a token URL with plain http must be the local issuer on loopback")
    form = {"grant_type": "client_credentials", "client_id": client_id}
    if client_secret:
        form["client_secret"] = client_secret
    if scope:
        form["scope"] = scope
    if parts.scheme == "http":
        form["roles"] = SMOKE_ROLES
    request = urllib.request.Request(  # noqa: S310 - the scheme is checked above
        token_url,
        data=urllib.parse.urlencode(form).encode(),
        headers={"Content-Type": "application/x-www-form-urlencoded", "Accept": "application/json"},
        method="POST",
    )
    opener = urllib.request.build_opener(_NoRedirect)
    try:
        with opener.open(request, timeout=timeout) as response:
            payload = json.loads(response.read())
    except urllib.error.HTTPError as error:
        with error:
            raise ValueError(f"the token endpoint answered {error.code}") from None
    except (OSError, ValueError) as error:
        raise ValueError(f"no token from {token_url}: {type(error).__name__}") from None
    token = payload.get("access_token") if isinstance(payload, dict) else None
    if not isinstance(token, str):
        raise ValueError("the token endpoint's answer has no access_token")
    return token
