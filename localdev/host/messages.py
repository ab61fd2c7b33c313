"""The host's own HTTP request and response values, independent of the ASGI server."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, unquote


@dataclass(frozen=True)
class HostRequest:
    method: str
    raw_path: str  # still percent-encoded, as routing wants it
    query_string: str
    headers: Sequence[tuple[str, str]]
    body: bytes
    url: str

    @property
    def path(self) -> str:
        return unquote(self.raw_path)

    def header(self, name: str) -> str | None:
        """A header's values joined with ", " (ASP.NET's StringValues), or None."""
        values = [value for key, value in self.headers if key.lower() == name.lower()]
        return ", ".join(values) if values else None

    def header_map(self) -> dict[str, str]:
        """Lower-cased names, repeated headers joined with ", ", as the host hands them over."""
        merged: dict[str, list[str]] = {}
        for key, value in self.headers:
            merged.setdefault(key.lower(), []).append(value)
        return {key: ", ".join(values) for key, values in merged.items()}

    def query_map(self) -> dict[str, str]:
        """Query parameters; a repeated key's values are joined with "," as the host does."""
        merged: dict[str, list[str]] = {}
        for key, value in parse_qsl(self.query_string, keep_blank_values=True):
            merged.setdefault(key, []).append(value)
        return {key: ",".join(values) for key, values in merged.items()}


@dataclass(frozen=True)
class HostResponse:
    status: int
    headers: Sequence[tuple[str, str]] = ()
    body: bytes = b""
    # Not sent to the client: it goes into the request log line.
    invocation_id: str | None = field(default=None, compare=False)

    @classmethod
    def empty(cls, status: int, *, invocation_id: str | None = None) -> HostResponse:
        return cls(status=status, invocation_id=invocation_id)

    @classmethod
    def json(cls, status: int, document: Any) -> HostResponse:
        body = json.dumps(document, separators=(",", ":")).encode()
        return cls(
            status=status, headers=(("content-type", "application/json; charset=utf-8"),), body=body
        )
