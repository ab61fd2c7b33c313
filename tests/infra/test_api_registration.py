"""The API's Entra ID application (infra/identity/api-registration.json, applied by
infra/scripts/api_registration.py): it declares exactly the delegated scope and app roles the
app's authorization checks, with stable ids, and its client id becomes the token audience of the
app, Easy Auth and the gateway."""

from __future__ import annotations

import importlib.util
import json
import os
import uuid
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from tests.infra import app_facts
from tests.infra.bicep import INFRA, ROOT, Expr, load


def script() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "api_registration", ROOT / "infra" / "scripts" / "api_registration.py"
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def manifest() -> dict[str, Any]:
    data = json.loads((INFRA / "identity" / "api-registration.json").read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


def test_infra_declares_exactly_the_scopes_the_code_checks() -> None:
    declared = {s["value"] for s in manifest()["delegatedScopes"]}
    checked = set(app_facts.api_permissions().delegated_scopes)
    assert declared - checked == set(), "declared in infra, never checked by the app"
    assert checked - declared == set(), "checked by the app, not declared in infra"


def test_infra_declares_exactly_the_app_roles_the_code_checks() -> None:
    declared = {r["value"] for r in manifest()["appRoles"]}
    checked = set(app_facts.api_permissions().app_roles)
    assert declared - checked == set(), "declared in infra, never checked by the app"
    assert checked - declared == set(), "checked by the app, not declared in infra"


def test_permissions_have_unique_fixed_ids_and_the_right_kinds() -> None:
    data = manifest()
    permissions = [*data["delegatedScopes"], *data["appRoles"]]
    ids = [str(uuid.UUID(p["id"])) for p in permissions]
    assert ids == [p["id"] for p in permissions], "ids are lowercase GUIDs"
    assert len(set(ids)) == len(ids)
    assert len({p["value"] for p in permissions}) == len(permissions)
    for scope in data["delegatedScopes"]:
        assert scope["type"] in {"User", "Admin"}
        for key in ("adminConsentDisplayName", "adminConsentDescription"):
            assert scope[key], f"{scope['value']}: {key} is shown when consenting"
    for role in data["appRoles"]:
        # Roles are for calling applications (client credentials); support staff may also be
        # assigned the any-customer role (docs/SECURITY.md), nobody else's role is for users.
        members = (
            ["Application", "User"] if role["value"] == "Orders.ReadWrite.All" else ["Application"]
        )
        assert role["allowedMemberTypes"] == members, role["value"]
        assert role["displayName"]
        assert role["description"]


def test_tokens_are_v2_so_the_audience_is_the_client_id() -> None:
    data = manifest()
    assert data["requestedAccessTokenVersion"] == 2
    assert data["signInAudience"] == "AzureADMyOrg"
    main = load("main.bicep")
    assert main.variables["authIssuer"] == Expr(
        "'${environment().authentication.loginEndpoint}${tenant().tenantId}/v2.0'"
    )
    functionapp = next(m for m in main.modules if m.symbol == "functionApp")
    assert functionapp.params["authAudience"] == Expr("apiAppId")
    assert functionapp.params["authIssuer"] == Expr("authIssuer")


def test_the_script_applies_the_manifest() -> None:
    """The script's Graph calls, against an in-memory directory (no Azure here)."""
    module = script()
    directory: dict[str, dict[str, Any]] = {}
    calls: list[tuple[str, str]] = []

    def graph(method: str, path: str, body: dict[str, Any] | None) -> dict[str, Any] | None:
        calls.append((method, path))
        if method == "GET":
            return directory.get(path)
        if method == "PATCH":
            current = directory.setdefault(
                path, {"appId": "00000000-0000-0000-0000-00000000abcd", "identifierUris": []}
            )
            current.update(body or {})
            return {}
        assert method == "POST"
        assert path == "v1.0/servicePrincipals"
        assert body is not None
        directory[f"v1.0/servicePrincipals(appId='{body['appId']}')"] = body
        return body

    outputs = module.apply(module.load_manifest(), "orderflow-prod", graph)
    application = directory["v1.0/applications(uniqueName='orderflow-api-orderflow-prod')"]
    assert outputs == {
        "ORDERFLOW_API_APP_ID": "00000000-0000-0000-0000-00000000abcd",
        "ORDERFLOW_API_IDENTIFIER_URI": "api://00000000-0000-0000-0000-00000000abcd",
    }
    assert application["identifierUris"] == ["api://00000000-0000-0000-0000-00000000abcd"]
    assert {s["value"] for s in application["api"]["oauth2PermissionScopes"]} == set(
        app_facts.api_permissions().delegated_scopes
    )
    assert {r["value"] for r in application["appRoles"]} == set(
        app_facts.api_permissions().app_roles
    )
    assert all(r["isEnabled"] for r in application["appRoles"])
    assert ("POST", "v1.0/servicePrincipals") in calls

    # A second run changes nothing and creates no second service principal.
    calls.clear()
    assert module.apply(module.load_manifest(), "orderflow-prod", graph) == outputs
    assert ("POST", "v1.0/servicePrincipals") not in calls


def test_a_retired_role_is_disabled_before_it_is_removed() -> None:
    module = script()
    data = module.load_manifest()
    retired = {
        "id": "5b0c1a52-0000-4000-8000-000000000001",
        "value": "Old.Role",
        "isEnabled": True,
    }
    existing = {"appRoles": [*module.app_roles(data), retired], "api": {}}
    body = module.disable_body(data, existing)
    assert body is not None
    assert {"id": retired["id"], "value": "Old.Role", "isEnabled": False} in body["appRoles"]
    assert module.disable_body(data, {"appRoles": module.app_roles(data), "api": {}}) is None


@pytest.mark.parametrize("name", ["", "a b", "x" * 65, "-lead", "a'b"])
def test_environment_names_cannot_break_the_graph_url(name: str) -> None:
    module = script()
    with pytest.raises(ValueError, match="environment name"):
        module.unique_name(module.load_manifest(), name)


def test_deployments_register_the_api_before_provisioning() -> None:
    azure_yaml = (ROOT / "azure.yaml").read_text(encoding="utf-8")
    assert "preprovision:" in azure_yaml
    assert "infra/scripts/api-registration.sh" in azure_yaml
    deploy = (ROOT / "infra" / "scripts" / "deploy.sh").read_text(encoding="utf-8")
    assert deploy.index("api_registration.py") < deploy.index("az deployment sub create")
    assert 'apiAppId="$api_app_id"' in deploy
    parameters = json.loads((INFRA / "main.parameters.json").read_text(encoding="utf-8"))
    assert parameters["parameters"]["apiAppId"]["value"] == "${ORDERFLOW_API_APP_ID}"


FAKE_AZ = """#!/bin/sh
# Stands in for the Azure CLI: records its arguments, answers like az rest does.
printf '%s\\n' "$*" >> "$AZ_LOG"
case "$*" in
  "cloud show"*) echo "https://graph.example.test/" ;;
  *"--method GET"*"applications(uniqueName="*)
    echo "ERROR: Not Found(Request_ResourceNotFound)" >&2; exit 1 ;;
  *"--method GET"*) echo '{"appId": "x"}' ;;
  *) echo '' ;;
esac
"""


def test_graph_calls_go_through_az_rest(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The real command lines, against a stand-in az on PATH: the current cloud's Graph root,
    one --headers option (a repeated one would replace the first), 404 as None."""
    az = tmp_path / "az"
    az.write_text(FAKE_AZ, encoding="utf-8")
    az.chmod(0o755)
    log = tmp_path / "az.log"
    monkeypatch.setenv("PATH", f"{tmp_path}:{os.environ['PATH']}")
    monkeypatch.setenv("AZ_LOG", str(log))
    graph = script().az_graph()
    assert graph("GET", "v1.0/applications(uniqueName='orderflow-api-x')", None) is None
    assert graph("GET", "v1.0/servicePrincipals(appId='x')", None) == {"appId": "x"}
    assert graph("PATCH", "v1.0/applications(uniqueName='orderflow-api-x')", {"a": 1}) == {}
    calls = log.read_text(encoding="utf-8").splitlines()
    assert calls[0].startswith("cloud show")
    patch = calls[-1]
    assert (
        "--url https://graph.example.test/v1.0/applications(uniqueName='orderflow-api-x')" in patch
    )
    assert patch.count("--headers") == 1
    assert "Content-Type=application/json Prefer=create-if-missing" in patch
    assert '--body {"a": 1}' in patch
