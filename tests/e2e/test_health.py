"""Health endpoints over real HTTP on the local host, against the real stand-ins."""

from __future__ import annotations

import json

import pytest

from tests.fixtures.app import IsolatedApp
from tests.fixtures.host import HostProcess

pytestmark = pytest.mark.e2e


def test_liveness_reports_version(app_host: HostProcess) -> None:
    response = app_host.request("GET", "/api/health")
    assert response.status == 200
    assert response.json() == {"status": "ok", "version": "0.1.0"}
    assert (response.header("Content-Type") or "").startswith("application/json")
    assert response.header("Cache-Control") == "no-store"
    assert response.header("X-Correlation-Id")


def test_correlation_id_is_echoed(app_host: HostProcess) -> None:
    response = app_host.request("GET", "/api/health", headers={"X-Correlation-Id": "checkout-77"})
    assert response.header("X-Correlation-Id") == "checkout-77"


def test_ready_when_every_dependency_answers(app_host: HostProcess) -> None:
    response = app_host.request("GET", "/api/health/ready")
    assert response.status == 200, response.body
    body = response.json()
    assert body["status"] == "ready"
    assert body["checks"]["cosmos"]["status"] == "up"
    assert body["checks"]["storage"]["status"] == "up"
    assert body["checks"]["keyVault"] == {"status": "not_configured"}
    assert body["checks"]["serviceBus"]["status"] == "up"


def _assert_no_details(body: object) -> None:
    text = json.dumps(body)
    for leak in ("127.0.0.1", "AccountKey", "https://", "http://", "Traceback"):
        assert leak not in text


def test_readiness_is_503_naming_cosmos_while_it_is_down(isolated_app: IsolatedApp) -> None:
    host, stack = isolated_app.host, isolated_app.stack
    assert host.request("GET", "/api/health/ready").status == 200
    stack.stop_service("cosmos")
    try:
        response = host.request("GET", "/api/health/ready", timeout=20)
        assert response.status == 503
        assert response.header("Retry-After") == "10"
        body = response.json()
        assert body["status"] == "unavailable"
        assert body["checks"]["cosmos"]["status"] == "down"
        assert body["checks"]["storage"]["status"] == "up"
        _assert_no_details(body)
    finally:
        stack.start_service("cosmos")
    response = host.request("GET", "/api/health/ready", timeout=20)
    assert response.status == 200, response.body


def test_readiness_is_503_naming_storage_while_azurite_is_down(isolated_app: IsolatedApp) -> None:
    host, stack = isolated_app.host, isolated_app.stack
    stack.stop_service("azurite")
    try:
        response = host.request("GET", "/api/health/ready", timeout=20)
        assert response.status == 503
        body = response.json()
        assert body["checks"]["storage"]["status"] == "down"
        assert body["checks"]["cosmos"]["status"] == "up"
        _assert_no_details(body)
    finally:
        stack.start_service("azurite")
    assert host.request("GET", "/api/health/ready", timeout=20).status == 200


def test_readiness_is_503_naming_service_bus_while_the_broker_is_down(
    isolated_app: IsolatedApp,
) -> None:
    host, stack = isolated_app.host, isolated_app.stack
    assert (
        host.request("GET", "/api/health/ready", timeout=20).json()["checks"]["serviceBus"][
            "status"
        ]
        == "up"
    )
    stack.stop_service("servicebus")
    try:
        response = host.request("GET", "/api/health/ready", timeout=20)
        assert response.status == 503
        body = response.json()
        assert body["checks"]["serviceBus"]["status"] == "down"
        assert body["checks"]["cosmos"]["status"] == "up"
        _assert_no_details(body)
    finally:
        stack.start_service("servicebus")
    response = host.request("GET", "/api/health/ready", timeout=20)
    assert response.status == 200, response.body
