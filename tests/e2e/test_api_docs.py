"""The API reference over real HTTP on the local host: anonymous, cached, and closed to hostile
paths (the host decodes the path before the app sees it, so this is where encodings matter).
Every request here is sent without a token (``token=None``): the reference is for anyone."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from shared import api_docs
from tests.fixtures.host import HostProcess, HttpResult

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
# Bytes that would only appear if a file outside the assets were served.
SECRETS_OF_THE_PACKAGE = (
    (ROOT / "host.json").read_bytes()[:40],
    b"import azure.functions",
    b"AccountKey=",
    b"root:x:0:0",
)


def _assert_problem_404(response: HttpResult) -> None:
    assert response.status == 404, response.body[:200]
    assert (response.header("Content-Type") or "").startswith("application/problem+json")
    assert response.json()["status"] == 404
    assert response.header("X-Content-Type-Options") == "nosniff"


def test_page_is_served_to_anyone_without_a_token(app_host: HostProcess) -> None:
    response = app_host.request("GET", "/api/docs", token=None)

    assert response.status == 200
    assert response.header("Content-Type") == "text/html; charset=utf-8"
    assert "script-src 'self'" in (response.header("Content-Security-Policy") or "")
    assert response.header("X-Content-Type-Options") == "nosniff"
    assert b'id="swagger-ui"' in response.body


def test_every_asset_with_its_type_and_validator(app_host: HostProcess) -> None:
    for role, name in api_docs.asset_names().items():
        response = app_host.request("GET", f"/api/docs/{name}", token=None)
        assert response.status == 200, role
        asset = api_docs.find_asset(name)
        assert asset is not None
        assert response.header("Content-Type") == asset.content_type
        assert response.body == asset.body
        assert response.header("Cache-Control") == asset.cache_control
        etag = response.header("ETag")
        assert etag
        again = app_host.request(
            "GET", f"/api/docs/{name}", headers={"If-None-Match": etag}, token=None
        )
        assert again.status == 304, role
        assert again.body == b""


def test_bundle_is_compressed_for_browsers(app_host: HostProcess) -> None:
    name = api_docs.asset_names()["bundle"]

    response = app_host.request(
        "GET", f"/api/docs/{name}", headers={"Accept-Encoding": "gzip, deflate, br"}, token=None
    )

    assert response.status == 200
    assert response.header("Content-Encoding") == "gzip"
    bundle = (api_docs.VENDOR_DIR / "swagger-ui-bundle.js").read_bytes()
    assert gzip.decompress(response.body) == bundle


def test_trailing_slash_redirects_to_the_page(app_host: HostProcess) -> None:
    response = app_host.request("GET", "/api/docs/", token=None)

    assert response.status == 308
    assert response.header("Location") == "../docs"


HOSTILE_PATHS = [
    "/api/docs/..%2Fhost.json",
    "/api/docs/..%2F..%2Fhost.json",
    "/api/docs/%2e%2e%2fhost.json",
    "/api/docs/%2E%2E%5Chost.json",
    "/api/docs/..\\host.json",
    "/api/docs/swagger-ui-dist%2Fpackage.json",
    "/api/docs/swagger-ui-dist/package.json",
    "/api/docs/swagger-ui-dist%5Cpackage.json",
    "/api/docs/%2Fetc%2Fpasswd",
    "/api/docs//etc/passwd",
    "/api/docs/favicon-32x32.png%00.js",
    "/api/docs/%00",
    "/api/docs/%252e%252e%252fhost.json",
    "/api/docs/%C0%AE%C0%AE%2Fhost.json",
    "/api/docs/swagger-ui-bundle.js",
    "/api/docs/swagger-ui.css.map",
    "/api/docs/" + "a" * 2000,
    "/api/docs/" + "%2e" * 600,
    "/api/docs/" + "x/" * 500 + "host.json",
]


@pytest.mark.parametrize("path", HOSTILE_PATHS, ids=lambda path: path[10:50])
def test_hostile_paths_are_404_problems(app_host: HostProcess, path: str) -> None:
    response = app_host.request("GET", path, token=None)

    _assert_problem_404(response)
    for secret in SECRETS_OF_THE_PACKAGE:
        assert secret not in response.body


@pytest.mark.parametrize("path", ["/api/docs/../host.json", "/api/docs/../../function_app.py"])
def test_dot_segments_never_reach_a_file(app_host: HostProcess, path: str) -> None:
    """Raw dot segments: whether the host resolves them (Azure's front end does) or passes them
    on, the answer is a 404 and never the file."""
    response = app_host.request("GET", path, token=None)

    assert response.status == 404
    for secret in SECRETS_OF_THE_PACKAGE:
        assert secret not in response.body


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH"])
def test_only_get_is_routed(app_host: HostProcess, method: str) -> None:
    response = app_host.request(method, "/api/docs", body=b"{}", token=None)

    assert response.status == 404


def test_openapi_document_does_not_list_the_reference_itself(app_host: HostProcess) -> None:
    document = json.loads(app_host.request("GET", "/api/openapi.json", token=None).body)

    assert not [path for path in document["paths"] if path.startswith("/api/docs")]
