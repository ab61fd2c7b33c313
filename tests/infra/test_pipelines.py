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


def test_deploy_signs_in_with_oidc_and_least_permissions() -> None:
    deploy = yaml(ROOT / ".github" / "workflows" / "deploy.yml")
    assert deploy["permissions"] == {}
    job = deploy["jobs"]["deploy"]
    assert job["permissions"] == {"contents": "read", "id-token": "write"}
    assert job["needs"] == "ci"
    assert deploy["jobs"]["ci"]["uses"] == "$/.github/workflows/ci.yml"
    (login,) = [s for s in job["steps"] if str(s.get("uses", "")).startswith("azure/login@")]
    assert set(login["with"]) == {"client-id", "tenant-id", "subscription-id"}
    assert any(s.get("run") == "infra/scripts/deploy.sh" for s in job["steps"])


def test_azure_devops_pipeline() -> None:
    pipeline = yaml(AZURE_PIPELINES)
    test_stage, deploy_stage = pipeline["stages"]
    scripts = [s.get("script") for job in test_stage["jobs"] for s in job["steps"]]
    assert "make test" in scripts
    tasks = {s.get("task"): s.get("inputs", {}) for job in test_stage["jobs"] for s in job["steps"]}
    variables = {v["name"]: v["value"] for v in pipeline["variables"] if "name" in v}
    assert variables["pythonVersion"] == "3.13"
    assert variables["nodeVersion"].startswith("20")
    assert tasks["UsePythonVersion@0"]["versionSpec"] == "$(pythonVersion)"
    assert deploy_stage["dependsOn"] == "test"
    (job,) = deploy_stage["jobs"]
    (cli,) = [s for s in job["strategy"]["runOnce"]["deploy"]["steps"] if "task" in s]
    assert cli["task"] == "AzureCLI@2"
    assert cli["inputs"]["azureSubscription"] == "$(serviceConnection)"
    assert cli["inputs"]["scriptPath"] == "infra/scripts/deploy.sh"


@pytest.mark.parametrize(
    "script",
    [
        "infra/scripts/deploy.sh",
        "infra/scripts/event-subscriptions.sh",
        "scripts/bootstrap-infra.sh",
    ],
)
def test_scripts_are_executable_and_parse(script: str) -> None:
    path = ROOT / script
    assert path.stat().st_mode & 0o111, f"{script} is not executable"
    shell = "bash" if path.read_text(encoding="utf-8").startswith("#!/usr/bin/env bash") else "sh"
    completed = run(shell, "-n", str(path))
    assert completed.returncode == 0, completed.stderr


def test_package_contains_the_app_and_nothing_else(tmp_path: Path) -> None:
    target = tmp_path / "app.zip"
    completed = run(sys.executable, "infra/scripts/package_app.py", str(target))
    assert completed.returncode == 0, completed.stderr
    with zipfile.ZipFile(target) as archive:
        archived = set(archive.namelist())
    assert {"function_app.py", "host.json", "requirements.txt"} <= archived
    top_level = {name.split("/")[0] for name in archived}
    assert {"blueprints", "shared"} <= top_level
    assert not top_level & {"tests", "infra", "localdev", ".venv", ".venv-infra", ".git"}
    assert "local.settings.json" not in archived
    assert not any("__pycache__" in name for name in archived)
