"""The API reference (GET /api/docs): the function object called directly, and its assets.

Over real HTTP on the local host (the host's own percent-decoding of hostile paths) in
tests/e2e/test_api_docs.py; in a real browser in tests/e2e/test_api_docs_browser.py.
"""

from __future__ import annotations

import gzip
import html.parser
import json

import azure.functions as func
import pytest

from blueprints import api_docs as blueprint
from shared import api_docs
from shared.api_docs import (
    ASSETS_DIR,
    IMMUTABLE,
    REVALIDATE,
    START_SCRIPT,
    VENDOR_DIR,
    VENDOR_FILES,
    DocsConfig,
)
from tests.paths import REPO_ROOT

ROOT = REPO_ROOT
NPM_PACKAGE = ROOT / "localdev" / "node_modules" / "swagger-ui-dist"
HANDLER = blueprint.api_docs.build().get_user_function()


def call(
    asset: str | None = None, *, headers: dict[str, str] | None = None, url: str = ""
) -> func.HttpResponse:
    path = "/api/docs" + (f"/{asset}" if asset else "")
    request = func.HttpRequest(
        "GET",
        url or f"http://127.0.0.1:7071{path}",
        headers=headers or {},
        route_params={"asset": asset} if asset is not None else {},
        body=b"",
    )
    response: func.HttpResponse = HANDLER(request, None)
    return response


def header(response: func.HttpResponse, name: str) -> str | None:
    value = response.headers.get(name)
    return None if value is None else str(value)


class _PageParser(html.parser.HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.scripts: list[dict[str, str | None]] = []
        self.links: list[dict[str, str | None]] = []
        self.inline_handlers: list[str] = []
        self.style_elements = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        self.inline_handlers += [name for name in attributes if name.startswith("on")]
        if "style" in attributes:
            self.inline_handlers.append("style")
        if tag == "script":
            self.scripts.append(attributes)
        elif tag == "link":
            self.links.append(attributes)
        elif tag == "style":
            self.style_elements += 1

    def handle_data(self, data: str) -> None:
        if self.lasttag == "script" and data.strip():
            self.inline_handlers.append("inline script")


def parse_page(body: bytes) -> _PageParser:
    parser = _PageParser()
    parser.feed(body.decode("utf-8"))
    return parser


# ------------------------------------------------------------------------------ the page


def test_page_is_html_with_a_strict_policy_and_no_inline_code() -> None:
    response = call()

    assert response.status_code == 200
    assert header(response, "Content-Type") == "text/html; charset=utf-8"
    policy = header(response, "Content-Security-Policy") or ""
    directives = dict(item.strip().split(" ", 1) for item in policy.split(";"))
    assert directives["default-src"] == "'none'"
    assert directives["script-src"] == "'self'"
    assert directives["style-src"] == "'self'"
    assert directives["frame-ancestors"] == "'none'"
    assert "unsafe" not in policy
    assert header(response, "X-Content-Type-Options") == "nosniff"
    assert header(response, "Cache-Control") == REVALIDATE
    page = parse_page(response.get_body())
    assert page.inline_handlers == []
    assert page.style_elements == 0
    assert len(page.scripts) == 2
    assert all(script.get("src") for script in page.scripts)


def test_every_file_the_page_links_is_served_from_below_it() -> None:
    page = parse_page(call().get_body())
    linked = [str(s["src"]) for s in page.scripts] + [str(link["href"]) for link in page.links]

    assert linked
    for reference in linked:
        assert reference.startswith("docs/"), reference  # relative: same origin, below /api/docs
        response = call(reference.removeprefix("docs/"))
        assert response.status_code == 200, reference


def test_page_names_the_openapi_document_and_the_redirect_page() -> None:
    body = call().get_body().decode()

    assert 'data-openapi-url="openapi.json"' in body
    assert 'data-oauth2-redirect-url="docs/oauth2-redirect.html"' in body


def test_page_settings_are_escaped() -> None:
    config = DocsConfig(
        flow="clientCredentials",
        token_url="http://127.0.0.1:8091/token",
        client_id='"><script>alert(1)</script>',
        scopes=("a&b",),
    )
    answer = api_docs.respond("", config, {})

    assert answer is not None
    body = answer.body.decode()
    assert "<script>alert" not in body
    assert "&quot;&gt;&lt;script&gt;" in body
    assert "a&amp;b" in body


def test_trailing_slash_redirects_to_the_page() -> None:
    response = call("", url="http://127.0.0.1:7071/api/docs/")

    assert response.status_code == 308
    assert header(response, "Location") == "../docs"


TENANT = "0b9a1c2d-3e4f-4a5b-8c6d-7e8f9a0b1c2d"
API_APP = "5f0e2a1b-6c7d-4e8f-9a0b-1c2d3e4f5a6b"


def test_local_sign_in_is_client_credentials_at_the_local_issuer() -> None:
    config = api_docs.docs_config_for(
        environment="local",
        issuer="http://127.0.0.1:8091",
        audience="api://orderflow-local",
        client_id="orderflow-local-client",
        scopes=("Inventory.ReadWrite",),
    )

    assert config.flow == "clientCredentials"
    assert config.token_url == "http://127.0.0.1:8091/token"
    assert config.authorization_url is None
    assert config.scope_prefix == ""
    assert config.roles_from_scopes is True
    policy = api_docs.content_security_policy(config)
    assert "connect-src 'self' http://127.0.0.1:8091;" in policy


def test_azure_sign_in_is_authorization_code_at_the_entra_tenant() -> None:
    config = api_docs.docs_config_for(
        environment="azure",
        issuer=f"https://login.microsoftonline.com/{TENANT}/v2.0",
        audience=API_APP,
        client_id="docs-client",
        scopes=("Orders.ReadWrite",),
    )

    base = f"https://login.microsoftonline.com/{TENANT}/oauth2/v2.0"
    assert config.flow == "authorizationCode"
    assert config.authorization_url == f"{base}/authorize"
    assert config.token_url == f"{base}/token"
    assert config.scope_prefix == f"{API_APP}/"
    assert config.roles_from_scopes is False
    policy = api_docs.content_security_policy(config)
    assert "connect-src 'self' https://login.microsoftonline.com;" in policy


@pytest.mark.parametrize(
    ("environment", "issuer", "audience"),
    [
        ("local", None, None),
        ("azure", None, None),
        ("azure", "https://issuer.example.com/", API_APP),  # not Entra ID: no endpoints to guess
        ("azure", f"https://sts.windows.net/{TENANT}/", API_APP),  # v1 tokens: not this app's
    ],
)
def test_no_sign_in_flow_without_a_known_issuer(
    environment: str, issuer: str | None, audience: str | None
) -> None:
    config = api_docs.docs_config_for(
        environment=environment, issuer=issuer, audience=audience, client_id=None, scopes=()
    )

    assert config == DocsConfig()
    assert "connect-src 'self';" in api_docs.content_security_policy(config)
    answer = api_docs.respond("", config, {})
    assert answer is not None
    assert 'data-oauth-flow=""' in answer.body.decode()


def test_page_carries_the_sign_in_settings() -> None:
    config = api_docs.docs_config_for(
        environment="azure",
        issuer=f"https://login.microsoftonline.com/{TENANT}/v2.0",
        audience=API_APP,
        client_id="docs-client",
        scopes=("Orders.ReadWrite",),
    )
    answer = api_docs.respond("", config, {})

    assert answer is not None
    body = answer.body.decode()
    assert 'data-oauth-scheme="entraId"' in body
    assert 'data-oauth-flow="authorizationCode"' in body
    assert 'data-oauth-client-id="docs-client"' in body
    assert f'data-oauth-scope-prefix="{API_APP}/"' in body
    assert 'data-oauth-scopes="Orders.ReadWrite"' in body


# ------------------------------------------------------------------------------ the assets


@pytest.mark.parametrize(
    ("role", "content_type", "caching"),
    [
        ("bundle", "text/javascript; charset=utf-8", IMMUTABLE),
        ("css", "text/css; charset=utf-8", IMMUTABLE),
        ("start", "text/javascript; charset=utf-8", IMMUTABLE),
        ("redirect", "text/html; charset=utf-8", REVALIDATE),
        ("redirect_script", "text/javascript; charset=utf-8", REVALIDATE),
        ("favicon", "image/png", REVALIDATE),
    ],
)
def test_asset_has_its_type_caching_validator_and_policy(
    role: str, content_type: str, caching: str
) -> None:
    name = api_docs.asset_names()[role]
    response = call(name)

    assert response.status_code == 200
    assert header(response, "Content-Type") == content_type
    assert header(response, "Cache-Control") == caching
    assert header(response, "X-Content-Type-Options") == "nosniff"
    assert "script-src 'self'" in (header(response, "Content-Security-Policy") or "")
    etag = header(response, "ETag") or ""
    assert etag.startswith('"')
    assert etag.endswith('"')
    assert len(etag) > 10
    assert call(name).headers.get("ETag") == etag  # stable


def test_versioned_names_carry_the_swagger_ui_version_and_the_script_hash() -> None:
    names = api_docs.asset_names()
    version = api_docs.swagger_ui_version()

    assert names["bundle"] == f"swagger-ui-bundle-{version}.js"
    assert names["css"] == f"swagger-ui-{version}.css"
    import hashlib

    digest = hashlib.sha256((ASSETS_DIR / START_SCRIPT).read_bytes()).hexdigest()[:12]
    assert names["start"] == f"orderflow-docs-{digest}.js"


@pytest.mark.parametrize(
    "if_none_match", ["{etag}", "W/{etag}", '"other", {etag}', "*", " {etag} "]
)
def test_matching_validator_gives_304_without_body(if_none_match: str) -> None:
    name = api_docs.asset_names()["bundle"]
    etag = str(call(name).headers.get("ETag"))

    response = call(name, headers={"If-None-Match": if_none_match.format(etag=etag)})

    assert response.status_code == 304
    assert response.get_body() == b""
    assert header(response, "ETag") == etag
    assert header(response, "Cache-Control") == IMMUTABLE


def test_other_validator_gives_the_file() -> None:
    name = api_docs.asset_names()["css"]

    response = call(name, headers={"If-None-Match": '"not-this-one"'})

    assert response.status_code == 200
    assert response.get_body() == (VENDOR_DIR / "swagger-ui.css").read_bytes()


def test_page_revalidates_with_its_etag() -> None:
    etag = str(call().headers.get("ETag"))

    assert call(headers={"If-None-Match": etag}).status_code == 304


def test_gzip_when_accepted_with_its_own_validator() -> None:
    name = api_docs.asset_names()["bundle"]
    plain = call(name)

    zipped = call(name, headers={"Accept-Encoding": "br, gzip;q=0.8"})

    assert header(zipped, "Content-Encoding") == "gzip"
    assert header(zipped, "Vary") == "Accept-Encoding"
    assert gzip.decompress(zipped.get_body()) == plain.get_body()
    assert len(zipped.get_body()) < len(plain.get_body()) / 2
    assert header(zipped, "ETag") != header(plain, "ETag")
    assert header(plain, "Content-Encoding") is None
    refused = call(name, headers={"Accept-Encoding": "gzip;q=0"})
    assert header(refused, "Content-Encoding") is None
    assert call(name, headers={"If-None-Match": str(header(zipped, "ETag")),
                               "Accept-Encoding": "gzip"}).status_code == 304  # fmt: skip


def test_png_is_never_compressed() -> None:
    response = call("favicon-32x32.png", headers={"Accept-Encoding": "gzip"})

    assert header(response, "Content-Encoding") is None
    assert response.get_body() == (VENDOR_DIR / "favicon-32x32.png").read_bytes()


HOSTILE_NAMES = [
    "../host.json",
    "../../function_app.py",
    "..%2Fhost.json",
    "%2e%2e/host.json",
    "swagger-ui-dist/package.json",
    "swagger-ui-dist%2Fpackage.json",
    "swagger-ui-dist\\package.json",
    "..\\..\\host.json",
    "/etc/passwd",
    "swagger-ui-bundle.js",  # the file's own name: only the versioned name is served
    "swagger-ui.css.map",
    "LICENSE",
    START_SCRIPT,
    "favicon-32x32.png\x00.js",
    "favicon-32x32.png/",
    "FAVICON-32X32.PNG",
    " favicon-32x32.png",
    "a" * 5000,
    "favicon-32x32.png" + "/x" * 2000,
    "oauth2-redirect.html?x=1",
    "%00",
    "\u202eoauth2-redirect.html",
]


@pytest.mark.parametrize("name", HOSTILE_NAMES, ids=lambda name: repr(name[:40]))
def test_unknown_or_hostile_names_are_404_problems(name: str) -> None:
    response = call(name)

    assert response.status_code == 404
    assert response.mimetype == "application/problem+json"
    assert header(response, "X-Content-Type-Options") == "nosniff"
    assert "default-src 'none'" in (header(response, "Content-Security-Policy") or "")
    problem = json.loads(response.get_body())
    assert problem["status"] == 404
    assert problem["type"] == "urn:orderflow:problem:not-found"
    assert name not in response.get_body().decode()  # the name is not echoed


def test_names_are_never_paths() -> None:
    """The catalog holds exactly the assets; no name contains a separator or a dot segment."""
    names = api_docs.asset_names().values()

    for name in names:
        assert "/" not in name
        assert "\\" not in name
        assert not name.startswith(".")
        assert api_docs.find_asset(name) is not None


# ---------------------------------------------------------- the copy of the npm package


def test_vendored_files_are_the_pinned_npm_packages_bytes() -> None:
    """Refresh with scripts/vendor_swagger_ui.py after changing the pin (make setup first)."""
    pinned = json.loads((ROOT / "localdev" / "package.json").read_text())["dependencies"][
        "swagger-ui-dist"
    ]
    installed = json.loads((NPM_PACKAGE / "package.json").read_text())["version"]
    assert installed == pinned, "localdev/node_modules is stale: run make setup"
    assert api_docs.swagger_ui_version() == pinned

    assert sorted(path.name for path in VENDOR_DIR.iterdir()) == sorted(VENDOR_FILES)
    for name in VENDOR_FILES:
        assert (VENDOR_DIR / name).read_bytes() == (NPM_PACKAGE / name).read_bytes(), name


def test_pinned_version_is_locked() -> None:
    lock = json.loads((ROOT / "localdev" / "package-lock.json").read_text())
    entry = lock["packages"]["node_modules/swagger-ui-dist"]

    assert entry["version"] == api_docs.swagger_ui_version()
    assert entry["integrity"].startswith("sha512-")
