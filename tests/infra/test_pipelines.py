"""The delivery pipelines: valid against their schemas, clean under zizmor, pinned, keyless
(OIDC / workload identity federation), and running the same test command as the README."""

from __future__ import annotations

import re
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML

from tests.infra.bicep import ROOT

BIN = Path(sys.executable).parent
WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.yml"))
AZURE_PIPELINES = ROOT / "azure-pipelines.yml"
ENTRY_TEMPLATES = ("infra/main.bicep", "infra/event-subscriptions.bicep")
SHA_PIN = re.compile(r"^[\w.-]+/[\w./-]+@[0-9a-f]{40}$")


def yaml(path: Path) -> Any:
    return YAML(typ="safe").load(path.read_text(encoding="utf-8"))


def run(*command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        command, cwd=ROOT, capture_output=True, text=True, timeout=120, check=False
    )


def steps(workflow: dict[str, Any]) -> list[dict[str, Any]]:
    return [step for job in workflow["jobs"].values() for step in job.get("steps", [])]


@pytest.mark.parametrize(
    ("schema", "path"),
    [
        *[("vendor.github-workflows", p) for p in WORKFLOWS],
        ("vendor.dependabot", ROOT / ".github" / "dependabot.yml"),
        ("vendor.azure-pipelines", AZURE_PIPELINES),
    ],
    ids=lambda value: value.name if isinstance(value, Path) else value,
)
def test_pipeline_matches_its_schema(schema: str, path: Path) -> None:
    # The vendored Azure Pipelines schema uses regexes the default ECMAScript engine rejects.
    completed = run(
        str(BIN / "check-jsonschema"),
        "--regex-variant",
        "nonunicode",
        "--builtin-schema",
        schema,
        str(path),
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr


def test_zizmor_reports_nothing() -> None:
    completed = run(str(BIN / "zizmor"), "--offline", "--persona", "pedantic", ".github")
    assert completed.returncode == 0, completed.stdout + completed.stderr
    assert "No findings" in completed.stdout


def test_workflows_exist() -> None:
    assert {p.name for p in WORKFLOWS} == {"ci.yml", "deploy.yml"}


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_actions_are_pinned_to_commits(path: Path) -> None:
    workflow = yaml(path)
    uses = [str(s["uses"]) for s in steps(workflow) if "uses" in s]
    uses += [str(j["uses"]) for j in workflow["jobs"].values() if "uses" in j]
    unpinned = [u for u in uses if not (SHA_PIN.match(u) or u.startswith("$/"))]
    assert unpinned == []


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_workflows_store_no_secret(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    assert "secrets." not in text
    assert "creds:" not in text


def test_ci_runs_make_test_on_python_313_and_node_20() -> None:
    ci = yaml(ROOT / ".github" / "workflows" / "ci.yml")
    assert ci["permissions"] == {"contents": "read"}
    test_steps = ci["jobs"]["test"]["steps"]
    assert any(s.get("run") == "make test" for s in test_steps)
    with_ = {str(s.get("uses", "")).split("@")[0]: s.get("with", {}) for s in test_steps}
    assert with_["actions/setup-python"]["python-version"] == "3.13"
    assert with_["actions/setup-node"]["node-version"] == "20"
    assert "workflow_call" in ci["on"]


@pytest.mark.parametrize("path", [ROOT / ".github/workflows/ci.yml", AZURE_PIPELINES])
def test_real_bicep_compiler_builds_and_lints_every_entry_template(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    assert "az bicep build" in text
    assert "az bicep lint" in text
    for template in ENTRY_TEMPLATES:
        assert template in text


GITHUB_DEPLOY = ROOT / ".github" / "workflows" / "deploy.yml"
DEPLOY_SCRIPT = "infra/scripts/deploy.sh"
SMOKE_SCRIPT = "infra/scripts/smoke-deployed.sh"


def github_rollout() -> dict[str, dict[str, Any]]:
    """The deploy workflow's Azure jobs by role: staging deploy, smoke, production deploy."""
    jobs: dict[str, dict[str, Any]] = yaml(GITHUB_DEPLOY)["jobs"]
    return {name: jobs[name] for name in ("staging", "smoke", "production")}


def runs(job: dict[str, Any]) -> list[str]:
    return [str(s["run"]) for s in job.get("steps", []) if "run" in s]


def test_deploy_signs_in_with_oidc_and_least_permissions() -> None:
    deploy = yaml(GITHUB_DEPLOY)
    assert deploy["permissions"] == {}
    assert deploy["jobs"]["ci"]["uses"] == "$/.github/workflows/ci.yml"
    assert set(deploy["jobs"]) == {"ci", "staging", "smoke", "production"}
    for name, job in github_rollout().items():
        assert job["permissions"] == {"contents": "read", "id-token": "write"}, name
        (login,) = [s for s in job["steps"] if str(s.get("uses", "")).startswith("azure/login@")]
        assert set(login["with"]) == {"client-id", "tenant-id", "subscription-id"}, name


def test_github_rolls_out_staging_then_smoke_then_gated_production() -> None:
    jobs = github_rollout()
    staging, smoke, production = jobs["staging"], jobs["smoke"], jobs["production"]
    # The order is the chain of needs: ci -> staging -> smoke -> production.
    assert staging["needs"] == "ci"
    assert smoke["needs"] == "staging"
    assert production["needs"] == "smoke", "production must wait for the smoke tests"
    assert runs(staging) == [DEPLOY_SCRIPT]
    assert runs(smoke) == [SMOKE_SCRIPT]
    assert runs(production) == [DEPLOY_SCRIPT]
    # Staging is its own azd environment (resource group and app); production the configured one.
    assert staging["env"]["AZURE_ENV_NAME"] == "${{ vars.AZURE_ENV_NAME }}-staging"
    assert smoke["env"]["AZURE_ENV_NAME"] == staging["env"]["AZURE_ENV_NAME"]
    assert production["env"]["AZURE_ENV_NAME"] == "${{ vars.AZURE_ENV_NAME }}"
    # The approval: the GitHub environment `production` has required reviewers (docs/DEPLOY.md).
    assert production["environment"] == "production"
    assert staging["environment"] == smoke["environment"] == "staging"
    # A failed smoke step fails its job, and nothing lets production run anyway.
    assert not any(s.get("continue-on-error") for s in smoke["steps"])
    assert "continue-on-error" not in smoke
    assert "if" not in production
    assert "if" not in smoke


def ado_stages() -> dict[str, dict[str, Any]]:
    return {stage["stage"]: stage for stage in yaml(AZURE_PIPELINES)["stages"]}


def ado_steps(job: dict[str, Any]) -> list[dict[str, Any]]:
    if "strategy" in job:
        return list(job["strategy"]["runOnce"]["deploy"]["steps"])
    return list(job["steps"])


def ado_scripts(stage: dict[str, Any]) -> list[str]:
    """scriptPath of every AzureCLI@2 task of the stage, each checked to use the connection."""
    paths = []
    for job in stage["jobs"]:
        for step in ado_steps(job):
            if step.get("task") == "AzureCLI@2":
                assert step["inputs"]["azureSubscription"] == "$(serviceConnection)"
                paths.append(step["inputs"]["scriptPath"])
    return paths


def test_azure_devops_pipeline() -> None:
    pipeline = yaml(AZURE_PIPELINES)
    stages = ado_stages()
    assert list(stages) == ["test", "staging", "smoke", "production"]
    test_stage = stages["test"]
    scripts = [s.get("script") for job in test_stage["jobs"] for s in job["steps"]]
    assert "make test" in scripts
    tasks = {s.get("task"): s.get("inputs", {}) for job in test_stage["jobs"] for s in job["steps"]}
    variables = {v["name"]: v["value"] for v in pipeline["variables"] if "name" in v}
    assert variables["pythonVersion"] == "3.13"
    assert variables["nodeVersion"].startswith("20")
    assert tasks["UsePythonVersion@0"]["versionSpec"] == "$(pythonVersion)"


def test_azure_devops_rolls_out_staging_then_smoke_then_gated_production() -> None:
    stages = ado_stages()
    staging, smoke, production = stages["staging"], stages["smoke"], stages["production"]
    assert staging["dependsOn"] == "test"
    assert smoke["dependsOn"] == "staging"
    assert production["dependsOn"] == "smoke", "production must wait for the smoke tests"
    assert "refs/heads/main" in staging["condition"]
    assert smoke["condition"] == production["condition"] == "succeeded()"
    assert ado_scripts(staging) == [DEPLOY_SCRIPT]
    assert ado_scripts(smoke) == [SMOKE_SCRIPT]
    assert ado_scripts(production) == [DEPLOY_SCRIPT]
    # Deployment jobs on environments: the production environment carries the approval check.
    (staging_job,) = staging["jobs"]
    (production_job,) = production["jobs"]
    assert staging_job["environment"] == "orderflow-staging"
    assert production_job["environment"] == "orderflow-production"
    assert "deployment" in staging_job
    assert "deployment" in production_job
    staging_env = ado_steps(staging_job)[-1]["env"]
    (smoke_job,) = smoke["jobs"]
    assert staging_env["AZURE_ENV_NAME"] == "$(AZURE_ENV_NAME)-staging"
    assert ado_steps(smoke_job)[-1]["env"]["AZURE_ENV_NAME"] == staging_env["AZURE_ENV_NAME"]
    assert ado_steps(production_job)[-1]["env"]["AZURE_ENV_NAME"] == "$(AZURE_ENV_NAME)"
    assert not any(s.get("continueOnError") for s in ado_steps(smoke_job))


def test_azure_devops_optional_settings_default_to_empty() -> None:
    """An undefined $(NAME) reaches a script as the text "$(NAME)": every optional setting the
    stages pass on has an empty default, declared before the variable group that overrides it."""
    pipeline = yaml(AZURE_PIPELINES)
    names = [v.get("name") or f"group:{v['group']}" for v in pipeline["variables"]]
    group = names.index("group:orderflow-azure")
    required = {
        "AZURE_ENV_NAME",
        "AZURE_LOCATION",
        "pythonVersion",
        "nodeVersion",
        "pythonLocation",
    }
    passed = {
        ref
        for stage in pipeline["stages"]
        for job in stage["jobs"]
        for step in ado_steps(job)
        for value in (step.get("env") or {}).values()
        for ref in re.findall(r"\$\((\w+)\)", str(value))
    }
    optional = passed - required
    assert optional, "no optional settings found"
    for name in optional:
        assert name in names[:group], f"{name} has no default before the variable group"


def test_smoke_script_masks_secrets_and_keeps_them_off_command_lines() -> None:
    text = (ROOT / SMOKE_SCRIPT).read_text(encoding="utf-8")
    code = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#"))
    assert "set -x" not in code
    assert "::add-mask::" in code
    assert "##vso[task.setsecret]" in code
    (make_line,) = [line for line in code.splitlines() if "make smoke" in line]
    for secret in ("webhook_secret", "api_token"):
        assert f'mask "${secret}"' in code, f"{secret} is not masked"
        assert code.index(f'mask "${secret}"') < code.index(make_line), secret
    # Secrets travel in the environment of make (WEBHOOK_SECRET=... make smoke), not in its argv.
    assert "WEBHOOK_SECRET" not in make_line
    assert "SMOKE_TOKEN" not in make_line
    assert 'SMOKE_TOKEN="$api_token" WEBHOOK_SECRET="$webhook_secret" \\\n' + make_line in code
    # Keyless: the pipeline reads no Functions key (every route checks bearer tokens itself).
    assert "keys list" not in code
    assert "masterKey" not in code


@pytest.mark.parametrize(
    "script",
    [
        "infra/scripts/deploy.sh",
        "infra/scripts/event-subscriptions.sh",
        "infra/scripts/smoke-deployed.sh",
        "scripts/bootstrap-infra.sh",
    ],
)
def test_scripts_are_executable_and_parse(script: str) -> None:
    path = ROOT / script
    assert path.stat().st_mode & 0o111, f"{script} is not executable"
    shell = "bash" if path.read_text(encoding="utf-8").startswith("#!/usr/bin/env bash") else "sh"
    completed = run(shell, "-n", str(path))
    assert completed.returncode == 0, completed.stderr


@pytest.fixture(scope="module")
def package(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The deployment zip, built once for the tests that read it."""
    target = tmp_path_factory.mktemp("package") / "app.zip"
    completed = run(sys.executable, "infra/scripts/package_app.py", str(target))
    assert completed.returncode == 0, completed.stderr
    return target


def test_package_contains_the_app_and_nothing_else(package: Path) -> None:
    with zipfile.ZipFile(package) as archive:
        archived = set(archive.namelist())
    assert {"function_app.py", "host.json", "requirements.txt"} <= archived
    top_level = {name.split("/")[0] for name in archived}
    assert {"blueprints", "shared"} <= top_level
    assert not top_level & {"tests", "infra", "localdev", ".venv", ".venv-infra", ".git"}
    # Only what the worker runs: no docs, pipelines or development requirements.
    assert not archived & {"README.md", "azure-pipelines.yml", "requirements-infra.txt", "Makefile"}
    assert "local.settings.json" not in archived
    assert not any("__pycache__" in name for name in archived)


# The API reference's assets may add at most this much to the deployment zip (issue goal).
API_DOCS_PACKAGE_BUDGET_BYTES = 3 * 1024 * 1024


def test_package_ships_the_api_reference_assets_within_budget(package: Path) -> None:
    from shared.api_docs import ASSETS_DIR, START_SCRIPT, VENDOR_FILES

    prefix = ASSETS_DIR.relative_to(ROOT).as_posix() + "/"
    with zipfile.ZipFile(package) as archive:
        assets = [info for info in archive.infolist() if info.filename.startswith(prefix)]
    shipped = {info.filename.removeprefix(prefix) for info in assets}
    # .funcignore's "docs" pattern matches any folder named docs: the assets folder is not one.
    assert shipped == {START_SCRIPT, *(f"swagger-ui-dist/{name}" for name in VENDOR_FILES)}
    assert sum(info.compress_size for info in assets) < API_DOCS_PACKAGE_BUDGET_BYTES
