"""Create or update the Entra ID application of the Orderflow API and its service principal.

The application (identifier URI, the delegated scope, the app roles) is declared in
``infra/identity/api-registration.json``; this script applies it through Microsoft Graph with the
Azure CLI's sign-in (``az rest``). It runs before ``infra/main.bicep`` is provisioned (the azd
``preprovision`` hook, ``infra/scripts/deploy.sh``), because the API's client id becomes the
``AUTH_AUDIENCE`` setting and the audience Easy Auth and the gateway accept. Idempotent: the
application is found by its unique name (``orderflow-api-<environment>``), and permissions keep
their ids, so a re-run updates them and client apps keep their grants.

    python3 infra/scripts/api_registration.py --environment orderflow-prod
    # prints ORDERFLOW_API_APP_ID=<client id> and ORDERFLOW_API_IDENTIFIER_URI=api://<client id>

Needs permission to create applications in the tenant (by default every member may; a pipeline
identity needs Microsoft Graph ``Application.ReadWrite.OwnedBy``, docs/DEPLOY.md). A team whose
administrators register the API themselves sets ``ORDERFLOW_API_APP_ID`` and skips this script.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
MANIFEST = ROOT / "infra" / "identity" / "api-registration.json"
AZ_TIMEOUT_SECONDS = 60
ENVIRONMENT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9-]{0,63}$")

# Calls Microsoft Graph: (method, path below the Graph root, body) -> parsed JSON or None (404).
Graph = Callable[[str, str, dict[str, Any] | None], dict[str, Any] | None]


def load_manifest(path: Path = MANIFEST) -> dict[str, Any]:
    data = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a JSON object")
    return data


def unique_name(manifest: dict[str, Any], environment: str) -> str:
    if not ENVIRONMENT_NAME.match(environment):
        raise ValueError(f"environment name {environment!r}: letters, digits and '-', 1-64")
    return f"{manifest['uniqueNamePrefix']}-{environment}"


def scopes(manifest: dict[str, Any], *, enabled: bool = True) -> list[dict[str, Any]]:
    return [{**scope, "isEnabled": enabled} for scope in manifest["delegatedScopes"]]


def app_roles(manifest: dict[str, Any], *, enabled: bool = True) -> list[dict[str, Any]]:
    return [{**role, "isEnabled": enabled} for role in manifest["appRoles"]]


def _retired(
    existing: list[dict[str, Any]], declared: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """Permissions the application has but the manifest no longer declares, switched off.

    Graph refuses to delete an enabled scope or role: it must be disabled in an update of its
    own first, and is then dropped by the next update."""
    ids = {item["id"] for item in declared}
    return [{**item, "isEnabled": False} for item in existing if item.get("id") not in ids]


def disable_body(manifest: dict[str, Any], existing: dict[str, Any]) -> dict[str, Any] | None:
    """The update that disables retired permissions, or None when none is still enabled."""
    old_scopes = existing.get("api", {}).get("oauth2PermissionScopes", [])
    old_roles = existing.get("appRoles", [])
    declared_ids = {p["id"] for p in [*manifest["delegatedScopes"], *manifest["appRoles"]]}
    if not any(
        p.get("isEnabled") and p.get("id") not in declared_ids for p in [*old_scopes, *old_roles]
    ):
        return None
    return {
        "api": {
            "oauth2PermissionScopes": [*scopes(manifest), *_retired(old_scopes, scopes(manifest))]
        },
        "appRoles": [*app_roles(manifest), *_retired(old_roles, app_roles(manifest))],
    }


def application_body(manifest: dict[str, Any], environment: str) -> dict[str, Any]:
    """The application as the manifest declares it (create-or-update body)."""
    return {
        "displayName": f"{manifest['displayNamePrefix']} ({environment})",
        "signInAudience": manifest["signInAudience"],
        "api": {
            "requestedAccessTokenVersion": manifest["requestedAccessTokenVersion"],
            "oauth2PermissionScopes": scopes(manifest),
        },
        "appRoles": app_roles(manifest),
    }


def identifier_uri(manifest: dict[str, Any], app_id: str) -> str:
    return str(manifest["identifierUriTemplate"]).format(appId=app_id)


def apply(manifest: dict[str, Any], environment: str, graph: Graph) -> dict[str, str]:
    """Create or update the application and its service principal; returns the outputs."""
    name = unique_name(manifest, environment)
    path = f"v1.0/applications(uniqueName='{name}')"
    existing = graph("GET", path, None)
    if existing is not None:
        disabling = disable_body(manifest, existing)
        if disabling is not None:
            graph("PATCH", path, disabling)
    graph("PATCH", path, application_body(manifest, environment))
    application = graph("GET", path, None)
    if application is None:
        raise RuntimeError(f"application {name} was not created")
    app_id = str(application["appId"])
    uri = identifier_uri(manifest, app_id)
    if uri not in application.get("identifierUris", []):
        graph("PATCH", path, {"identifierUris": [uri]})
    if graph("GET", f"v1.0/servicePrincipals(appId='{app_id}')", None) is None:
        graph("POST", "v1.0/servicePrincipals", {"appId": app_id})
    return {"ORDERFLOW_API_APP_ID": app_id, "ORDERFLOW_API_IDENTIFIER_URI": uri}


def az_graph() -> Graph:
    """Microsoft Graph through ``az rest`` (the CLI's sign-in, the current cloud's Graph)."""
    az = shutil.which("az")
    if az is None:
        raise RuntimeError("the Azure CLI (az) is not on PATH")
    root = _run([az, "cloud", "show", "--query", "endpoints.microsoftGraphResourceId", "-o", "tsv"])
    graph_root = root.stdout.strip().rstrip("/") or "https://graph.microsoft.com"

    def call(method: str, path: str, body: dict[str, Any] | None) -> dict[str, Any] | None:
        command = [az, "rest", "--method", method, "--url", f"{graph_root}/{path}"]
        headers = ["Content-Type=application/json"]
        if method == "PATCH" and path.startswith("v1.0/applications(uniqueName="):
            headers.append("Prefer=create-if-missing")  # upsert by unique name
        if body is not None:
            command += ["--body", json.dumps(body)]
        command += ["--headers", *headers]  # one option: a repeated --headers replaces the last
        completed = _run(command, check=False)
        if completed.returncode != 0:
            if (
                method == "GET"
                and "Request_ResourceNotFound" in completed.stderr + completed.stdout
            ):
                return None
            raise RuntimeError(f"az rest {method} {path} failed: {completed.stderr.strip()}")
        text = completed.stdout.strip()
        return json.loads(text) if text else {}

    return call


def _run(command: Sequence[str], *, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # noqa: S603  # fixed argument lists, no shell
        list(command),
        capture_output=True,
        text=True,
        timeout=AZ_TIMEOUT_SECONDS,
        check=check,
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--environment", required=True, help="azd environment name")
    args = parser.parse_args(argv)
    manifest = load_manifest()
    try:
        outputs = apply(manifest, args.environment, az_graph())
    except (RuntimeError, ValueError, subprocess.TimeoutExpired) as error:
        sys.stderr.write(f"api-registration: {error}\n")
        return 1
    for key, value in outputs.items():
        sys.stdout.write(f"{key}={value}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
