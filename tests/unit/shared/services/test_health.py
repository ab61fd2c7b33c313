"""Readiness aggregation: concurrency, deadlines, and reasons that never leak details."""

from __future__ import annotations

import threading
import time

import pytest
from azure.core.exceptions import HttpResponseError, ServiceRequestError

from shared.errors import ConfigurationError
from shared.services.health import Probe, check_readiness, describe_failure, readiness


def _ok(timeout: float) -> None:
    return None


def _refused(timeout: float) -> None:
    raise ServiceRequestError("Connection refused: https://127.0.0.1:8081/?key=SECRET")


def test_all_up_is_ready() -> None:
    result = check_readiness([Probe("cosmos", _ok), Probe("storage", _ok)], 1.0)
    assert result.ready
    assert result.to_json()["status"] == "ready"
    checks = result.to_json()["checks"]
    assert isinstance(checks, dict)
    assert checks["cosmos"]["status"] == "up"


def test_one_down_names_it_without_details() -> None:
    result = check_readiness([Probe("cosmos", _refused), Probe("storage", _ok)], 1.0)
    assert not result.ready
    assert result.unavailable == ("cosmos",)
    body = result.to_json()
    assert body["status"] == "unavailable"
    assert body["checks"]["cosmos"] == {  # type: ignore[index]
        "status": "down",
        "durationMs": body["checks"]["cosmos"]["durationMs"],  # type: ignore[index]
        "reason": "ServiceRequestError",
    }
    assert "SECRET" not in str(body)
    assert "127.0.0.1" not in str(body)


def test_not_configured_is_not_a_failure() -> None:
    result = check_readiness([Probe("cosmos", _ok), Probe("keyVault", None)], 1.0)
    assert result.ready
    assert result.to_json()["checks"]["keyVault"] == {"status": "not_configured"}  # type: ignore[index]


def test_hanging_probe_times_out_while_others_run_concurrently() -> None:
    release = threading.Event()

    def hang(timeout: float) -> None:
        release.wait(10)

    def slowish(timeout: float) -> None:
        time.sleep(0.2)

    started = time.perf_counter()
    try:
        result = check_readiness(
            [Probe("cosmos", hang), Probe("storage", slowish), Probe("keyVault", slowish)], 0.5
        )
    finally:
        release.set()
    elapsed = time.perf_counter() - started
    assert result.unavailable == ("cosmos",)
    assert result.to_json()["checks"]["cosmos"]["reason"] == "timeout"  # type: ignore[index]
    # Concurrent: two 0.2 s probes and one 0.5 s deadline finish well under their 0.9 s sum.
    assert elapsed < 0.85


@pytest.mark.parametrize(
    ("exc", "reason"),
    [
        (
            ConfigurationError("COSMOS_ENDPOINT", "is required"),
            "configuration: setting COSMOS_ENDPOINT is required",
        ),
        (ServiceRequestError("https://x?sig=abc"), "ServiceRequestError"),
        (TimeoutError("slow"), "TimeoutError"),
    ],
)
def test_failure_descriptions(exc: BaseException, reason: str) -> None:
    assert describe_failure(exc) == reason


def test_http_errors_are_reported_by_status() -> None:
    error = HttpResponseError(message="Forbidden for principal 1234")
    error.status_code = 403
    assert describe_failure(error) == "HTTP 403"


def test_invalid_configuration_makes_the_instance_unready(monkeypatch: pytest.MonkeyPatch) -> None:
    from shared.config import clear_settings_cache

    monkeypatch.delenv("COSMOS_ENDPOINT", raising=False)
    clear_settings_cache()
    try:
        result = readiness()
    finally:
        clear_settings_cache()
    assert not result.ready
    assert result.unavailable == ("configuration",)
    assert "COSMOS_ENDPOINT" in str(result.to_json())
