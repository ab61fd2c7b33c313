"""A small HTTP client over urllib: base URL, function key, JSON in and out."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from email.message import Message
from typing import Any
from urllib.parse import urlsplit

FUNCTION_KEY_HEADER = "x-functions-key"


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
    function_key: str | None = None
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
        if authenticated and self.function_key:
            all_headers[FUNCTION_KEY_HEADER] = self.function_key
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
