"""Easy Auth (``authsettingsV2``): every request needs a valid Entra ID token for the API, with
401 for anonymous callers, except exactly the routes the app serves to anyone and the Functions
runtime webhooks Event Grid delivers to. The anonymous routes are read from the app itself, so a
new one cannot be forgotten, and an exclusion may never open a protected route."""

from __future__ import annotations

import re

import pytest

from tests.infra import app_facts
from tests.infra.bicep import Expr, load


def auth_settings() -> dict[str, object]:
    resource = load("modules/functionapp.bicep").resource("authSettings")
    assert resource.type == "Microsoft.Web/sites/config"
    assert resource.body["name"] == "authsettingsV2"
    assert resource.condition == "(easyAuthEnabled)"
    return resource.properties


def excluded_paths() -> list[str]:
    paths = load("modules/functionapp.bicep").variables["easyAuthExcludedPaths"]
    assert isinstance(paths, list)
    assert all(isinstance(p, str) for p in paths), "excluded paths must be literals"
    return [str(p) for p in paths]


def excludes(pattern: str, path: str) -> bool:
    """Easy Auth's matching: the exact path, or everything below a pattern ending in ``/*``."""
    if pattern.endswith("/*"):
        return path.startswith(pattern[:-1])
    return path == pattern


def required_exclusions(route: app_facts.HttpRoute) -> list[str]:
    """Paths a public route needs excluded: its path, or its literal part and everything below
    it when the template has parameters (``docs/{*path}`` -> ``/api/docs``, ``/api/docs/*``)."""
    if "{" not in route.path:
        return [route.path]
    literal = route.path.split("{", 1)[0].rstrip("/")
    needed = [f"{literal}/*"]
    if re.search(r"/\{\*[^}]+\}$", route.path) and route.path.count("{") == 1:
        needed.append(literal)  # a catch-all also matches the bare prefix
    return needed


def test_easy_auth_requires_a_token_and_answers_401() -> None:
    validation = auth_settings()["globalValidation"]
    assert isinstance(validation, dict)
    assert validation["requireAuthentication"] is True
    assert validation["unauthenticatedClientAction"] == "Return401"
    assert validation["excludedPaths"] == Expr("easyAuthExcludedPaths")
    assert load("modules/functionapp.bicep").parameters["easyAuthEnabled"].type == "bool"


def test_easy_auth_accepts_the_same_issuer_and_audience_as_the_app() -> None:
    provider = auth_settings()["identityProviders"]
    assert isinstance(provider, dict)
    aad = provider["azureActiveDirectory"]
    assert aad["enabled"] is True
    assert aad["registration"]["openIdIssuer"] == Expr("authIssuer")
    assert aad["registration"]["clientId"] == Expr("authAudience")
    audiences = str(aad["validation"]["allowedAudiences"])
    assert "authAudience" in audiences
    settings = {
        str(s["name"]): s["value"]
        for s in load("modules/functionapp.bicep")
        .resource("site")
        .properties["siteConfig"]["appSettings"]
    }
    assert settings["AUTH_ISSUER"] == Expr("authIssuer")
    assert settings["AUTH_AUDIENCE"] == Expr("authAudience")


@pytest.mark.parametrize("route", app_facts.public_routes(), ids=lambda r: f"{r.function}:{r.path}")
def test_public_route_is_excluded(route: app_facts.HttpRoute) -> None:
    patterns = excluded_paths()
    for needed in required_exclusions(route):
        assert needed in patterns or any(excludes(p, needed) for p in patterns), (
            f"{route.function} ({route.path}) is served to anyone, but Easy Auth would answer "
            f"401: add {needed!r} to easyAuthExcludedPaths in infra/modules/functionapp.bicep"
        )
    assert any(excludes(p, route.sample()) for p in patterns)


@pytest.mark.parametrize("path", sorted(app_facts.runtime_webhook_paths()))
def test_runtime_webhook_event_grid_delivers_to_is_excluded(path: str) -> None:
    assert any(excludes(p, path) for p in excluded_paths()), (
        f"Event Grid delivers to {path}: add it to easyAuthExcludedPaths"
    )


def test_no_exclusion_opens_a_protected_route() -> None:
    public = {r.function for r in app_facts.public_routes()}
    opened = [
        f"{route.function} ({route.path}) by {pattern!r}"
        for route in app_facts.http_routes()
        if route.function not in public
        for pattern in excluded_paths()
        if excludes(pattern, route.sample()) or excludes(pattern, route.path)
    ]
    assert opened == []


def test_every_exclusion_is_for_a_public_route_or_a_runtime_webhook() -> None:
    public = app_facts.public_routes()
    webhooks = app_facts.runtime_webhook_paths()
    stale = [
        pattern
        for pattern in excluded_paths()
        if pattern not in webhooks
        and not any(pattern in required_exclusions(route) for route in public)
    ]
    assert stale == [], f"excluded but nothing anonymous is served there: {stale}"


def test_the_matching_handles_wildcard_templates() -> None:
    """What issue 18's ``docs/{*path}`` page will need, checked on a made-up route."""
    route = app_facts.HttpRoute("docs", "/api/docs/{*path}", ("GET",), "ANONYMOUS")
    assert required_exclusions(route) == ["/api/docs/*", "/api/docs"]
    assert excludes("/api/docs/*", route.sample())
    assert not excludes("/api/docs/*", "/api/docsx")
    assert not excludes("/api/health", "/api/health/ready")
