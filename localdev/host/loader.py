"""Load ``function_app.py`` and index its functions the way the Python worker does.

Mirrors ``azure_functions_runtime.loader.index_function_app`` and the worker's metadata step:

1. the app directory goes first on ``sys.path`` and the script module is imported by name
   (``PYTHON_SCRIPT_FILE_NAME`` picks another file, as in Azure);
2. exactly one top-level ``azure.functions.FunctionRegister`` (``FunctionApp``) instance must
   exist in the module, else the same error the worker raises;
3. ``get_functions()`` is called once (a second call fails on "non-unique function names");
4. every function goes through the worker's own ``Registry.add_indexed_function``, the check
   that makes a function fail to load in Azure (parameters without bindings, wrong ``Out``
   annotations, type mismatches), and yields the worker's ``FunctionInfo`` (sync or async,
   ``context`` wanted, input/output/return types) that the invoker then follows;
5. the bindings are kept as the JSON the host receives (``get_raw_bindings()``), so routes and
   trigger settings come from exactly what Azure would see.

A function is disabled, as in Azure, when the app setting ``AzureWebJobs.<name>.Disabled`` is
``true`` or ``1``: it is indexed and listed, but never invoked.
"""

from __future__ import annotations

import importlib
import json
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any, Final

import azure.functions as func

HTTP_TRIGGER: Final = "httpTrigger"
DEFAULT_FUNCTION_MODULE: Final = "function_app"
SCRIPT_FILE_SETTING: Final = "PYTHON_SCRIPT_FILE_NAME"

# The worker validates binding directions and data types against its protobuf enums; these are
# the values of BindingInfo.Direction and BindingInfo.DataType in the Functions RPC contract.
_BINDING_PROTOS: Final = SimpleNamespace(
    BindingInfo=SimpleNamespace(in_=0, out=1, inout=2, undefined=0)
)


class FunctionAppLoadError(RuntimeError):
    """The app cannot be indexed; the host would report "0 functions found" or a load error."""


@dataclass(frozen=True)
class IndexedFunction:
    """One function as the host knows it: name, bindings as JSON, and the worker's FunctionInfo."""

    name: str
    bindings: tuple[Mapping[str, Any], ...]
    info: Any  # azure_functions_runtime.functions.FunctionInfo (the package ships no types)
    disabled: bool = False

    @property
    def trigger(self) -> Mapping[str, Any]:
        return next(binding for binding in self.bindings if binding["type"].endswith("Trigger"))

    @property
    def trigger_type(self) -> str:
        return str(self.trigger["type"])

    @property
    def trigger_parameter(self) -> str:
        return str(self.trigger["name"])

    @property
    def user_function(self) -> Callable[..., Any]:
        function: Callable[..., Any] = self.info.func
        return function

    @property
    def directory(self) -> str:
        return str(self.info.directory)

    @property
    def is_async(self) -> bool:
        return bool(self.info.is_async)

    def binding(self, name: str) -> Mapping[str, Any] | None:
        return next((b for b in self.bindings if b.get("name") == name), None)


@dataclass(frozen=True)
class LoadedApp:
    app_dir: Path
    module: ModuleType
    app: func.FunctionRegister
    functions: tuple[IndexedFunction, ...]

    def function(self, name: str) -> IndexedFunction:
        for function in self.functions:
            if function.name.lower() == name.lower():
                return function
        raise KeyError(name)


def default_function_module(environ: Mapping[str, str]) -> str:
    script = environ.get(SCRIPT_FILE_SETTING)
    return Path(script).stem if script else DEFAULT_FUNCTION_MODULE


def is_disabled(name: str, environ: Mapping[str, str]) -> bool:
    return environ.get(f"AzureWebJobs.{name}.Disabled", "").strip().lower() in {"true", "1"}


def _import_app_module(app_dir: Path, module_name: str) -> ModuleType:
    if not (app_dir / f"{module_name}.py").is_file():
        raise FunctionAppLoadError(f"{app_dir / module_name}.py not found")
    app_path = str(app_dir)
    if app_path in sys.path:
        sys.path.remove(app_path)
    sys.path.insert(0, app_path)
    loaded = sys.modules.get(module_name)
    if loaded is not None:
        loaded_file = Path(getattr(loaded, "__file__", "") or "").resolve()
        if loaded_file != (app_dir / f"{module_name}.py").resolve():
            raise FunctionAppLoadError(
                f"a different module named {module_name!r} is already imported from "
                f"{loaded_file}; run the host in its own process or pick another module name"
            )
        return loaded
    return importlib.import_module(module_name)


def find_function_app(module: ModuleType) -> func.FunctionRegister:
    """The single top-level FunctionRegister, found exactly like the worker's indexer."""
    app: func.FunctionRegister | None = None
    for attribute in dir(module):
        candidate = getattr(module, attribute, None)
        if isinstance(candidate, func.FunctionRegister):
            if app is not None and candidate is not app:
                raise FunctionAppLoadError(
                    f"More than one {type(app).__name__} or other top level function app "
                    "instances are defined."
                )
            app = candidate
    if app is None:
        raise FunctionAppLoadError(
            f"Could not find top level function app instances in {module.__name__}.py."
        )
    return app


def index_functions(
    app: func.FunctionRegister, environ: Mapping[str, str]
) -> tuple[IndexedFunction, ...]:
    from azure_functions_runtime.bindings.meta import load_binding_registry
    from azure_functions_runtime.functions import FunctionLoadError, Registry

    load_binding_registry()
    registry = Registry()
    indexed: list[IndexedFunction] = []
    try:
        functions = app.get_functions()
    except ValueError as error:
        raise FunctionAppLoadError(str(error)) from error
    for function in functions:
        try:
            info = registry.add_indexed_function(function=function, protos=_BINDING_PROTOS)
        except FunctionLoadError as error:
            raise FunctionAppLoadError(str(error)) from error
        bindings = tuple(json.loads(raw) for raw in function.get_raw_bindings())
        indexed.append(
            IndexedFunction(
                name=info.name,
                bindings=bindings,
                info=info,
                disabled=is_disabled(info.name, environ),
            )
        )
    return tuple(indexed)


def load_function_app(app_dir: Path, module_name: str, environ: Mapping[str, str]) -> LoadedApp:
    """Import the app module from ``app_dir`` and index every function in it."""
    app_dir = app_dir.resolve()
    try:
        module = _import_app_module(app_dir, module_name)
    except FunctionAppLoadError:
        raise
    except Exception as error:
        raise FunctionAppLoadError(
            f"importing {module_name} from {app_dir} failed: {type(error).__name__}: {error}"
        ) from error
    app = find_function_app(module)
    return LoadedApp(
        app_dir=app_dir,
        module=module,
        app=app,
        functions=index_functions(app, environ),
    )
