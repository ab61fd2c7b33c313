"""Both pipelines pass every perimeter setting infra/scripts/deploy.sh reads (API registration,
Easy Auth, gateway, private network), and the deployed smoke run checks the perimeter: a token
for the API, the gateway as base URL when there is one, its limit for the bounded 429 loop."""

from __future__ import annotations

import re
from typing import Any

import pytest
from ruamel.yaml import YAML

from tests.infra.bicep import INFRA, ROOT, load

DEPLOY = INFRA / "scripts" / "deploy.sh"
SMOKE = INFRA / "scripts" / "smoke-deployed.sh"
# Settings deploy.sh reads that the pipelines deliberately leave to it: the operator's type has a
# default per pipeline, the budget start is read back from the last deployment.
DERIVED = {"ORDERFLOW_OPERATOR_PRINCIPAL_TYPE", "ORDERFLOW_BUDGET_START_DATE"}
PERIMETER = {
    "ORDERFLOW_API_APP_ID",
    "ORDERFLOW_EASY_AUTH_ENABLED",
    "ORDERFLOW_API_GATEWAY_SKU",
    "ORDERFLOW_GATEWAY_PUBLISHER_EMAIL",
    "ORDERFLOW_GATEWAY_RATE_LIMIT_CALLS",
    "ORDERFLOW_GATEWAY_QUOTA_CALLS",
    "ORDERFLOW_VNET_ENABLED",
}


def yaml(name: str) -> Any:
    return YAML(typ="safe").load((ROOT / name).read_text(encoding="utf-8"))


def deploy_settings() -> set[str]:
    code = "\n".join(
        line for line in DEPLOY.read_text(encoding="utf-8").splitlines() if not line.startswith("#")
    )
    return set(re.findall(r"\$\{(ORDERFLOW_[A-Z_]+)", code)) - DERIVED


def github_deploy_envs() -> dict[str, dict[str, str]]:
    workflow = yaml(".github/workflows/deploy.yml")
    return {
        name: job.get("env", {})
        for name, job in workflow["jobs"].items()
        if any("deploy.sh" in str(step.get("run", "")) for step in job.get("steps", []))
    }


def devops_deploy_envs() -> dict[str, dict[str, str]]:
    found: dict[str, dict[str, str]] = {}
    for stage in yaml("azure-pipelines.yml")["stages"]:
        for job in stage["jobs"]:
            steps = job.get("steps") or job["strategy"]["runOnce"]["deploy"]["steps"]
            for step in steps:
                if "deploy.sh" in str(step.get("inputs", {}).get("scriptPath", "")):
                    found[stage["stage"]] = step.get("env", {})
    return found


def test_deploy_script_reads_every_perimeter_setting() -> None:
    assert deploy_settings() >= PERIMETER


@pytest.mark.parametrize("pipeline", ["github", "azure-devops"])
def test_pipelines_pass_every_setting_to_both_stages(pipeline: str) -> None:
    envs = github_deploy_envs() if pipeline == "github" else devops_deploy_envs()
    assert len(envs) == 2, f"{pipeline}: staging and production deploy with deploy.sh"
    for stage, env in envs.items():
        missing = deploy_settings() - env.keys()
        assert missing == set(), f"{pipeline} {stage} does not pass {sorted(missing)}"
        for name in PERIMETER:
            expected = f"${{{{ vars.{name} }}}}" if pipeline == "github" else f"$({name})"
            assert env[name] == expected


def test_deploy_script_maps_each_setting_to_its_parameter() -> None:
    text = DEPLOY.read_text(encoding="utf-8")
    parameters = load("main.bicep").parameters
    for parameter, setting in [
        ("easyAuthEnabled", "ORDERFLOW_EASY_AUTH_ENABLED"),
        ("apiGatewaySku", "ORDERFLOW_API_GATEWAY_SKU"),
        ("gatewayPublisherEmail", "ORDERFLOW_GATEWAY_PUBLISHER_EMAIL"),
        ("gatewayRateLimitCalls", "ORDERFLOW_GATEWAY_RATE_LIMIT_CALLS"),
        ("gatewayQuotaCalls", "ORDERFLOW_GATEWAY_QUOTA_CALLS"),
        ("vnetEnabled", "ORDERFLOW_VNET_ENABLED"),
    ]:
        assert parameter in parameters
        assert re.search(rf'{parameter}="\$\{{{setting}:-', text), f"{parameter} <- {setting}"


def test_deployed_smoke_run_checks_the_perimeter() -> None:
    text = SMOKE.read_text(encoding="utf-8")
    outputs = load("main.bicep").outputs
    for output in (
        "ORDERFLOW_API_IDENTIFIER_URI",
        "ORDERFLOW_GATEWAY_URL",
        "ORDERFLOW_GATEWAY_RATE_LIMIT_CALLS",
    ):
        assert output in outputs
        assert output in text
    assert 'mask "$api_token"' in text
    assert 'SMOKE_TOKEN="$api_token"' in text
    assert 'base_url="$ORDERFLOW_GATEWAY_URL"' in text
    assert "RATE_LIMIT_CALLS=" in text
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    assert "smoke: export SMOKE_RATE_LIMIT_CALLS := $(RATE_LIMIT_CALLS)" in makefile
