"""``python -m smoke`` against the whole pipeline on the local host: the same command that checks
a deployment passes here, and a wrong webhook secret fails it, naming the scenario."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.fixtures.app import REPO_ROOT, WEBHOOK_SECRET, IsolatedApp

pytestmark = pytest.mark.e2e

SCENARIOS = (
    "health",
    "order-payment-fulfilled",
    "import",
    "anonymous-refused",
    "authorised-accepted",
)
# Locally there is no gateway, so its rate-limit scenario is skipped.


def run_smoke(app: IsolatedApp, *args: str) -> subprocess.CompletedProcess[str]:
    environment = {key: value for key, value in os.environ.items() if not key.startswith("SMOKE_")}
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "smoke",
            "--base-url",
            app.host.url,
            "--timeout",
            "45",
            "--token-url",
            f"{app.stack.issuer_url}/token",
            *args,
        ],
        cwd=REPO_ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )


def outcome_of(output: str, scenario: str) -> str:
    for line in output.splitlines():
        if line.startswith(f"{scenario}: "):
            return line.removeprefix(f"{scenario}: ").split(" ", 1)[0]
    raise AssertionError(f"no line for {scenario}:\n{output}")


def test_every_scenario_passes_against_the_local_pipeline(pipeline_app: IsolatedApp) -> None:
    result = run_smoke(
        pipeline_app,
        "--webhook-secret",
        WEBHOOK_SECRET,
        "--storage-connection-string",
        pipeline_app.stack.storage_connection_string,
    )

    print(f"\n{result.stdout}")
    assert result.returncode == 0, result.stdout + result.stderr
    outcomes = {scenario: outcome_of(result.stdout, scenario) for scenario in SCENARIOS}
    assert outcomes == dict.fromkeys(SCENARIOS, "PASS")
    assert outcome_of(result.stdout, "gateway-rate-limit") == "SKIP"
    assert "5 passed, 0 failed, 1 skipped" in result.stdout


def test_a_wrong_webhook_secret_fails_the_payment_scenario(pipeline_app: IsolatedApp) -> None:
    result = run_smoke(pipeline_app, "--webhook-secret", "not-the-app-secret")

    assert result.returncode != 0, result.stdout
    assert outcome_of(result.stdout, "health") == "PASS"
    assert outcome_of(result.stdout, "order-payment-fulfilled") == "FAIL"
    assert "401" in result.stdout
    assert "import: SKIP (no storage access given)" in result.stdout
    assert "failed: order-payment-fulfilled" in result.stdout


def test_a_bad_token_fails_the_authorised_scenario_not_the_anonymous_one(
    pipeline_app: IsolatedApp,
) -> None:
    result = run_smoke(pipeline_app, "--token", "not-a-token")

    assert result.returncode != 0, result.stdout
    assert outcome_of(result.stdout, "anonymous-refused") == "PASS"
    assert outcome_of(result.stdout, "authorised-accepted") == "FAIL"
    assert "GET orders with the token: expected 200, got 401" in result.stdout
