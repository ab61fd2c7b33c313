"""Issuer fetches over https: certificates and host names are verified, and every fetch uses
the one TLS context (the system's CA certificates are loaded once per instance, not once per
discovery or JWKS read)."""

from __future__ import annotations

import http.server
import json
import ssl
import threading
from collections.abc import Iterator

import pytest
import trustme

from shared.auth import tokens
from shared.auth.tokens import IssuerFetchError, fetch_json


class _Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = json.dumps({"path": self.path}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        return


def _serve(ca: trustme.CA, host: str) -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(host).configure_cert(context)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"https://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def ca() -> Iterator[trustme.CA]:
    tokens._tls_context.cache_clear()
    yield trustme.CA()
    tokens._tls_context.cache_clear()


def test_every_fetch_uses_the_one_verifying_context(ca: trustme.CA) -> None:
    ca.configure_trust(tokens._tls_context())  # trusted by the shared context only
    for origin in _serve(ca, "127.0.0.1"):
        discovery = fetch_json(f"{origin}/.well-known/openid-configuration")
        keys = fetch_json(f"{origin}/keys")
    # A fresh default context would not trust this CA: both reads went through the shared one.
    assert discovery == {"path": "/.well-known/openid-configuration"}
    assert keys == {"path": "/keys"}


@pytest.mark.parametrize("host", ["127.0.0.1", "login.example.test"])
def test_an_untrusted_or_misnamed_certificate_is_refused(ca: trustme.CA, host: str) -> None:
    if host != "127.0.0.1":
        ca.configure_trust(tokens._tls_context())  # trusted CA, but a certificate for another name
    for origin in _serve(ca, host):
        with pytest.raises(IssuerFetchError, match=r"CERTIFICATE_VERIFY_FAILED|certificate"):
            fetch_json(f"{origin}/keys")
