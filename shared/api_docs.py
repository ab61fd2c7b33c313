"""The interactive API reference (``GET /api/docs``): Swagger UI over the served OpenAPI document.

Everything the page loads comes from the app itself: Swagger UI's files ship inside the package
(``api_docs_assets/swagger-ui-dist/``, byte for byte the pinned npm package's, see
scripts/vendor_swagger_ui.py) and its start-up code is a served file, not an inline script. So
the Content-Security-Policy can be strict (scripts and styles from the app only) and a reader's
browser talks to no third party.

Assets are read, hashed and compressed on the first request that needs them, never at import:
indexing the app (every function's cold start) must not pay for two megabytes of files. A
request names an asset from a fixed catalog; no part of a request ever becomes a file path, so
nothing outside the catalog can be served whatever the path holds (``..``, encoded slashes,
backslashes, NUL, very long names: all simply unknown names).
"""

from __future__ import annotations

import gzip
import hashlib
import html
import json
import re
import threading
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Final, Literal

ASSETS_DIR: Final = Path(__file__).resolve().with_name("api_docs_assets")
VENDOR_DIR: Final = ASSETS_DIR / "swagger-ui-dist"
# What the app ships of the npm package: what the page loads, plus the package's manifest (its
# version) and the licence texts Apache-2.0 asks to ship with it. No source maps.
VENDOR_FILES: Final = (
    "package.json",
    "LICENSE",
    "NOTICE",
    "swagger-ui-bundle.js",
    "swagger-ui-bundle.js.LICENSE.txt",
    "swagger-ui.css",
    "oauth2-redirect.html",
    "oauth2-redirect.js",
    "favicon-32x32.png",
)
START_SCRIPT: Final = "orderflow-docs.js"

# Relative to the page (/api/docs): its assets are below it, the document beside it.
OPENAPI_URL: Final = "openapi.json"
ASSET_PREFIX: Final = "docs/"
OAUTH2_REDIRECT: Final = "oauth2-redirect.html"

IMMUTABLE: Final = "public, max-age=31536000, immutable"  # versioned names: a new file, a new URL
REVALIDATE: Final = "no-cache"  # stable names: cached, but checked with If-None-Match each time
# Longer than any file the catalog holds is a name it cannot hold; checked before any lookup.
MAX_ASSET_NAME: Final = 128

_TEXT_TYPES: Final = {
    ".js": "text/javascript",
    ".css": "text/css",
    ".html": "text/html",
}
_BINARY_TYPES: Final = {".png": "image/png"}


# The OAuth 2.0 security scheme of the OpenAPI document that "Authorize" signs in with.
OAUTH_SCHEME: Final = "entraId"
Flow = Literal["clientCredentials", "authorizationCode"]
# Entra ID's v2.0 issuer, ``https://<login host>/<tenant id>/v2.0``, in any cloud.
_ENTRA_ISSUER = re.compile(r"(https://login\.[a-z0-9.-]+)/([0-9A-Za-z.-]+)/v2\.0/?")


@dataclass(frozen=True)
class DocsConfig:
    """How the page's "Authorize" signs in, from the settings (no flow: only a pasted bearer
    token). The served OpenAPI document describes Entra ID in general; the page replaces its
    OAuth 2.0 scheme's flows with this deployment's (``orderflow-docs.js``).

    - ``flow``/``token_url``/``authorization_url``: the one flow offered and its endpoints.
    - ``client_id``: pre-filled in the dialog (a reader may type another).
    - ``scope_prefix``: put before the document's scope names (Entra ID wants
      ``<API app id>/Orders.ReadWrite``); ``scopes``: the ones ticked at first.
    - ``roles_from_scopes``: the local issuer puts app roles in a token only when asked with its
      ``roles`` field, so the page asks for the ticked roles there (locally any client may hold
      any role, as ``make token`` shows).
    """

    flow: Flow | None = None
    token_url: str | None = None
    authorization_url: str | None = None
    client_id: str | None = None
    scope_prefix: str = ""
    scopes: tuple[str, ...] = ()
    roles_from_scopes: bool = False

    @property
    def token_origins(self) -> tuple[str, ...]:
        """Where the page may send requests besides the app: the token endpoint's origin."""
        if self.token_url is None:
            return ()
        parts = urllib.parse.urlsplit(self.token_url)
        return (f"{parts.scheme}://{parts.netloc}",)


def docs_config_for(
    *,
    environment: str,
    issuer: str | None,
    audience: str | None,
    client_id: str | None,
    scopes: tuple[str, ...],
) -> DocsConfig:
    """Locally: client credentials at the local issuer's token endpoint. In Azure: authorization
    code with PKCE at the Entra ID tenant of the issuer. Without an issuer (or one that is not
    Entra ID's in Azure): no sign-in flow, a bearer token can still be pasted."""
    if issuer is None or audience is None:
        return DocsConfig()
    if environment == "local":
        return DocsConfig(
            flow="clientCredentials",
            token_url=issuer.rstrip("/") + "/token",
            client_id=client_id,
            scopes=scopes,
            roles_from_scopes=True,
        )
    entra = _ENTRA_ISSUER.fullmatch(issuer)
    if entra is None:
        return DocsConfig()
    endpoints = f"{entra.group(1)}/{entra.group(2)}/oauth2/v2.0"
    return DocsConfig(
        flow="authorizationCode",
        token_url=f"{endpoints}/token",
        authorization_url=f"{endpoints}/authorize",
        client_id=client_id,
        scope_prefix=audience.rstrip("/") + "/",
        scopes=scopes,
    )


def docs_config() -> DocsConfig:
    """The page's sign-in for this deployment. With settings that do not load, the page still
    documents the API (without a sign-in flow); readiness names the bad setting."""
    from shared.config import get_settings
    from shared.errors import ConfigurationError

    try:
        settings = get_settings()
    except ConfigurationError:
        return DocsConfig()
    return docs_config_for(
        environment=settings.environment,
        issuer=settings.auth_issuer,
        audience=settings.auth_audience,
        client_id=settings.api_docs_client_id,
        scopes=tuple(settings.api_docs_scopes.split()),
    )


def content_security_policy(config: DocsConfig) -> str:
    """Scripts and styles from the app only, no inline code, no plugins, no framing; fetches to
    the app and the configured issuer; images from the app or data: URLs (Swagger UI's icons
    are inlined in its CSS)."""
    connect = " ".join(("'self'", *config.token_origins))
    return (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        f"font-src 'self'; connect-src {connect}; form-action 'self'; base-uri 'none'; "
        "frame-ancestors 'none'"
    )


def security_headers(config: DocsConfig) -> dict[str, str]:
    """Headers on every answer under /api/docs (the pages, the assets and the 404s)."""
    return {
        "Content-Security-Policy": content_security_policy(config),
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
        "X-Frame-Options": "DENY",
        "Cross-Origin-Resource-Policy": "same-origin",
    }


@dataclass(frozen=True)
class Asset:
    name: str  # as requested below /api/docs/
    content_type: str
    body: bytes
    cache_control: str
    _gzipped: list[bytes] = field(default_factory=list, repr=False, compare=False)

    @property
    def etag(self) -> str:
        return _strong_etag(self.body)

    @property
    def compressible(self) -> bool:
        return self.content_type.startswith("text/")

    def gzipped(self) -> bytes:
        """The gzip encoding, made once (1.7 MB of JavaScript compress to about a quarter)."""
        if not self._gzipped:
            with _gzip_lock:
                if not self._gzipped:
                    self._gzipped.append(gzip.compress(self.body, compresslevel=6, mtime=0))
        return self._gzipped[0]


_gzip_lock = threading.Lock()


@dataclass(frozen=True)
class DocsResponse:
    status: int
    headers: dict[str, str]
    body: bytes = b""


def _strong_etag(body: bytes) -> str:
    return '"' + hashlib.sha256(body).hexdigest()[:32] + '"'


def _content_type(name: str) -> str:
    suffix = Path(name).suffix
    if suffix in _TEXT_TYPES:
        return f"{_TEXT_TYPES[suffix]}; charset=utf-8"
    return _BINARY_TYPES[suffix]


@cache
def swagger_ui_version() -> str:
    manifest = json.loads((VENDOR_DIR / "package.json").read_text(encoding="utf-8"))
    return str(manifest["version"])


@dataclass(frozen=True)
class _Catalog:
    assets: dict[str, Asset]
    names: dict[str, str]  # by role: bundle, css, start, redirect, favicon


@cache
def _catalog() -> _Catalog:
    """Every servable asset by its name under /api/docs/, read once on first use."""
    version = swagger_ui_version()
    start_script = (ASSETS_DIR / START_SCRIPT).read_bytes()
    names = {
        # Versioned names: the version or content hash is in the URL, so they never change.
        "bundle": f"swagger-ui-bundle-{version}.js",
        "css": f"swagger-ui-{version}.css",
        "start": f"orderflow-docs-{hashlib.sha256(start_script).hexdigest()[:12]}.js",
        # Stable names: the OAuth redirect page is registered with the identity provider, and
        # it loads its script by this name.
        "redirect": OAUTH2_REDIRECT,
        "redirect_script": "oauth2-redirect.js",
        "favicon": "favicon-32x32.png",
    }
    files = {
        "bundle": (VENDOR_DIR / "swagger-ui-bundle.js", IMMUTABLE),
        "css": (VENDOR_DIR / "swagger-ui.css", IMMUTABLE),
        "start": (ASSETS_DIR / START_SCRIPT, IMMUTABLE),
        "redirect": (VENDOR_DIR / "oauth2-redirect.html", REVALIDATE),
        "redirect_script": (VENDOR_DIR / "oauth2-redirect.js", REVALIDATE),
        "favicon": (VENDOR_DIR / "favicon-32x32.png", REVALIDATE),
    }
    assets = {
        names[role]: Asset(names[role], _content_type(path.name), path.read_bytes(), caching)
        for role, (path, caching) in files.items()
    }
    return _Catalog(assets, names)


def asset_names() -> dict[str, str]:
    """The catalog's names by role: ``bundle``, ``css``, ``start``, ``redirect``,
    ``redirect_script``, ``favicon``."""
    return dict(_catalog().names)


def find_asset(name: str) -> Asset | None:
    """The asset with exactly this name, or None. The name is only ever a dictionary key."""
    if not name or len(name) > MAX_ASSET_NAME:
        return None
    return _catalog().assets.get(name)


@cache
def _page(config: DocsConfig) -> Asset:
    names = asset_names()

    def attr(value: str) -> str:
        return html.escape(value, quote=True)

    data = {
        "data-openapi-url": OPENAPI_URL,
        "data-oauth2-redirect-url": ASSET_PREFIX + names["redirect"],
        "data-oauth-scheme": OAUTH_SCHEME if config.flow else "",
        "data-oauth-flow": config.flow or "",
        "data-oauth-token-url": config.token_url or "",
        "data-oauth-authorization-url": config.authorization_url or "",
        "data-oauth-client-id": config.client_id or "",
        "data-oauth-scope-prefix": config.scope_prefix,
        "data-oauth-scopes": " ".join(config.scopes),
        "data-oauth-roles-from-scopes": "true" if config.roles_from_scopes else "",
    }
    attributes = " ".join(f'{key}="{attr(value)}"' for key, value in data.items())
    prefix = ASSET_PREFIX
    page = f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Orderflow API reference</title>
<link rel="stylesheet" href="{attr(prefix + names["css"])}">
<link rel="icon" type="image/png" href="{attr(prefix + names["favicon"])}">
</head>
<body>
<noscript>The API reference needs JavaScript; the OpenAPI document is at
<a href="{OPENAPI_URL}">{OPENAPI_URL}</a>.</noscript>
<div id="swagger-ui" {attributes}></div>
<script src="{attr(prefix + names["bundle"])}"></script>
<script src="{attr(prefix + names["start"])}"></script>
</body>
</html>
"""
    return Asset("", _content_type("page.html"), page.encode("utf-8"), REVALIDATE)


def _accepts_gzip(accept_encoding: str | None) -> bool:
    for item in (accept_encoding or "").split(","):
        coding, _, parameters = item.strip().partition(";")
        if coding.strip().lower() not in ("gzip", "x-gzip"):
            continue
        quality = parameters.strip().lower()
        if quality.startswith("q="):
            try:
                return float(quality[2:]) > 0
            except ValueError:
                return False
        return True
    return False


def _if_none_match(header: str | None, etag: str) -> bool:
    """Weak comparison, as If-None-Match asks (RFC 9110 section 13.1.2)."""
    if not header:
        return False
    for candidate in header.split(","):
        value = candidate.strip().removeprefix("W/")
        if value in ("*", etag):
            return True
    return False


def respond(
    asset_name: str,
    config: DocsConfig,
    request_headers: Mapping[str, str | None],
) -> DocsResponse | None:
    """The answer for ``GET /api/docs/<asset_name>`` (``""`` is the page), or None when there
    is no such asset. ``request_headers`` maps lower-case names to values."""
    asset = _page(config) if asset_name == "" else find_asset(asset_name)
    if asset is None:
        return None
    body = asset.body
    etag = asset.etag
    headers = {**security_headers(config), "Cache-Control": asset.cache_control}
    if asset.compressible:
        headers["Vary"] = "Accept-Encoding"
        if _accepts_gzip(request_headers.get("accept-encoding")):
            body = asset.gzipped()
            # Another representation, another strong validator (RFC 9110 section 8.8.3).
            etag = etag[:-1] + '-gzip"'
            headers["Content-Encoding"] = "gzip"
    headers["ETag"] = etag
    if _if_none_match(request_headers.get("if-none-match"), etag):
        headers.pop("Content-Encoding", None)
        return DocsResponse(304, headers)
    headers["Content-Type"] = asset.content_type
    return DocsResponse(200, headers, body)
