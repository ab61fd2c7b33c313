"""What the app's code needs from Azure, read from the code itself so the infrastructure tests
keep protecting work that lands later: the settings (``shared.config.Settings`` aliases), the
binding connections and ``%SETTING%`` references of every indexed function, and the Azure SDKs
the app imports."""

from __future__ import annotations

import ast
import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from shared import names
from shared.config import SERVICE_BUS_CONNECTION, STORAGE_CONNECTION, Settings

ROOT = Path(__file__).resolve().parents[2]

# Indexing needs a fresh process: get_functions() works once per app object.
_INDEX_SCRIPT = """
import json, sys
import function_app
functions = function_app.app.get_functions()
json.dump(
    [
        {"name": f.get_function_name(), "bindings": [json.loads(b) for b in f.get_raw_bindings()]}
        for f in functions
    ],
    sys.stdout,
)
"""


@dataclass(frozen=True, slots=True)
class IndexedFunction:
    name: str
    bindings: tuple[dict[str, Any], ...]

    @property
    def trigger(self) -> dict[str, Any]:
        return next(b for b in self.bindings if str(b.get("type", "")).endswith("Trigger"))


@cache
def indexed_functions() -> tuple[IndexedFunction, ...]:
    """Every function the host would load from function_app.py, with its bindings."""
    env = {"PATH": os.environ.get("PATH", ""), "PYTHONPATH": str(ROOT), "PYTHONHASHSEED": "0"}
    completed = subprocess.run(
        [sys.executable, "-c", _INDEX_SCRIPT],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert completed.returncode == 0, f"indexing function_app.py failed:\n{completed.stderr}"
    return tuple(
        IndexedFunction(name=item["name"], bindings=tuple(item["bindings"]))
        for item in json.loads(completed.stdout)
    )


def function_named(name: str) -> IndexedFunction | None:
    return next((f for f in indexed_functions() if f.name == name), None)


def settings_aliases() -> set[str]:
    """Every app setting ``shared.config.Settings`` reads (its field aliases)."""
    return {field.alias for field in Settings.model_fields.values() if field.alias}


def secret_stand_ins() -> set[str]:
    """Local stand-ins for Key Vault secrets: the secret name in upper snake case (+ previous)."""
    secrets = [value for key, value in vars(names).items() if key.endswith("_SECRET")]
    stand_ins = {str(secret).upper().replace("-", "_") for secret in secrets}
    return stand_ins | {f"{name}_PREVIOUS" for name in stand_ins}


def binding_connections() -> dict[str, set[str]]:
    """Connection name -> binding types using it (indexed functions and shared.config)."""
    connections: dict[str, set[str]] = {
        STORAGE_CONNECTION: {"storageClients"},
        SERVICE_BUS_CONNECTION: {"serviceBusClient"},
    }
    for function in indexed_functions():
        for binding in function.bindings:
            connection = binding.get("connection")
            if connection:
                connections.setdefault(str(connection), set()).add(str(binding["type"]))
    return connections


_PERCENT_SETTING = re.compile(r"%([A-Za-z0-9_]+)%")


def percent_settings() -> set[str]:
    """Settings referenced as %NAME% in binding properties (timer schedules, paths, ...)."""
    found: set[str] = set()
    for function in indexed_functions():
        for binding in function.bindings:
            for value in binding.values():
                if isinstance(value, str):
                    found.update(_PERCENT_SETTING.findall(value))
    return found


def azure_sdk_imports() -> set[str]:
    """``azure.*`` modules imported anywhere in the app's own code (shared/, blueprints/)."""
    modules: set[str] = set()
    sources = [ROOT / "function_app.py", *(ROOT / "shared").rglob("*.py")]
    sources += list((ROOT / "blueprints").rglob("*.py"))
    for path in sources:
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                modules.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                modules.add(node.module)
    return {m for m in modules if m == "azure" or m.startswith("azure.")}


def local_sample() -> dict[str, str]:
    data = json.loads((ROOT / "local.settings.json.sample").read_text(encoding="utf-8"))
    return dict(data["Values"])


# Calls that record a custom metric: their ``attributes=`` and ``fields=`` become log fields.
_METRIC_CALLS = frozenset({"record_gauge", "add_to_counter", "record_histogram"})
_FIELD_KEYWORDS = frozenset({"attributes", "fields"})


def _dict_keys(node: ast.expr) -> set[str]:
    if not isinstance(node, ast.Dict):
        return set()
    return {k.value for k in node.keys if isinstance(k, ast.Constant) and isinstance(k.value, str)}


def _called_name(call: ast.Call) -> str:
    func = call.func
    return func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")


def emitted_log_fields() -> set[str]:
    """Structured log fields the app's code sets (what Application Insights shows as
    ``customDimensions``): the keys of every literal ``extra={...}`` passed to a logging call,
    the ``attributes={...}`` and ``fields={...}`` of every metric call (shared/metrics.py logs
    them), and the ids ``shared.observability.ContextFilter`` puts on every record."""
    found: set[str] = set()
    sources = [*(ROOT / "shared").rglob("*.py"), *(ROOT / "blueprints").rglob("*.py")]
    for path in sources:
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Call):
                metric_call = _called_name(node) in _METRIC_CALLS
                for keyword in node.keywords:
                    if keyword.arg == "extra" or (metric_call and keyword.arg in _FIELD_KEYWORDS):
                        found |= _dict_keys(keyword.value)
            elif isinstance(node, ast.ClassDef) and node.name == "ContextFilter":
                for assign in ast.walk(node):
                    if isinstance(assign, ast.Assign):
                        found |= {
                            target.attr
                            for target in assign.targets
                            if isinstance(target, ast.Attribute)
                            and isinstance(target.value, ast.Name)
                            and target.value.id == "record"
                        }
    return found


# -- Who may call what -------------------------------------------------------------------------

# The app's authorization defines the delegated scope and the app roles once, in
# shared/auth/permissions.py; the contract test (tests/infra/test_api_registration.py) reads them.


@dataclass(frozen=True, slots=True)
class ApiPermissions:
    delegated_scopes: frozenset[str]
    app_roles: frozenset[str]


def api_permissions() -> ApiPermissions:
    """The scope and roles the app's authorization checks."""
    from shared.auth.permissions import APP_ROLES, DELEGATED_SCOPES

    return ApiPermissions(frozenset(DELEGATED_SCOPES), frozenset(APP_ROLES))


def route_prefix() -> str:
    host = json.loads((ROOT / "host.json").read_text(encoding="utf-8"))
    return str(host.get("extensions", {}).get("http", {}).get("routePrefix", "api")).strip("/")


@dataclass(frozen=True, slots=True)
class HttpRoute:
    function: str
    path: str  # as the platform sees it: /<routePrefix>/<route template>
    methods: tuple[str, ...]
    auth_level: str

    def sample(self) -> str:
        """A concrete request path for the template ({x} -> 'x', {*rest} -> 'a/b')."""
        path = re.sub(r"\{\*[^}]+\}", "a/b", self.path)
        return re.sub(r"\{[^}]+\}", "x", path)


def http_routes() -> list[HttpRoute]:
    prefix = route_prefix()
    routes: list[HttpRoute] = []
    for function in indexed_functions():
        trigger = function.trigger
        if trigger.get("type") != "httpTrigger":
            continue
        route = str(trigger.get("route") or function.name).strip("/")
        path = "/" + "/".join(part for part in (prefix, route) if part)
        methods = tuple(str(m).upper() for m in trigger.get("methods") or ("GET", "POST"))
        auth = str(trigger.get("authLevel", "FUNCTION")).upper()
        routes.append(HttpRoute(function.name, path, methods, auth))
    return routes


def _openapi_security(path: str, method: str) -> list[Any] | None:
    """The security requirement of an operation in docs/openapi.json (None: not documented)."""
    document = json.loads((ROOT / "docs" / "openapi.json").read_text(encoding="utf-8"))
    operation = document.get("paths", {}).get(path, {}).get(method.lower())
    if not isinstance(operation, dict):
        return None
    security = operation.get("security", document.get("security", []))
    return list(security)


def public_routes() -> list[HttpRoute]:
    """HTTP routes anyone may call without a token: the host does not ask for a key
    (authLevel ANONYMOUS) and the OpenAPI document asks for nothing (``security: []``), or the
    route is not in the document at all (a page or asset served beside the API). A token-guarded
    route is also ANONYMOUS to the host, but its operation names a security scheme."""
    public: list[HttpRoute] = []
    for route in http_routes():
        if route.auth_level != "ANONYMOUS":
            continue
        securities = [_openapi_security(route.path, method) for method in route.methods]
        if all(security is None or security == [] for security in securities):
            public.append(route)
    return public


# Event Grid delivers to these runtime endpoints, with the extension's system key, not a token.
_RUNTIME_WEBHOOKS = {
    "eventGridTrigger": "/runtime/webhooks/eventgrid",
    "blobTrigger": "/runtime/webhooks/blobs",  # blob triggers with source EventGrid
}


def runtime_webhook_paths() -> set[str]:
    paths: set[str] = set()
    for function in indexed_functions():
        trigger = function.trigger
        kind = str(trigger.get("type"))
        if kind == "blobTrigger" and str(trigger.get("source")) != "EventGrid":
            continue
        if kind in _RUNTIME_WEBHOOKS:
            paths.add(_RUNTIME_WEBHOOKS[kind])
    return paths
