"""The running host: the indexed app, its delivery sources, admin endpoints and state.

Admin endpoints (keys are not required locally, as with ``func start``):

- ``GET /admin/host/status``: ``{"id", "state", "version", "versionDetails", "processUptime"}``
  like the Functions host; ``state`` is ``Running`` once every source has started, which makes
  it the readiness check for scripts and tests.
- ``POST /admin/functions/{name}`` with ``{"input": "..."}``: run a non-HTTP function on demand
  (202); see :mod:`localdev.host.admin_invoke`.
- ``GET /admin/functions`` and ``GET /admin/functions/{name}``: each function's name, bindings
  (``config``), trigger type, whether it is disabled, whether the local host delivers it and,
  for HTTP functions, ``invoke_url_template`` and the auth level.

Requests go to the admin endpoints first, then to the sources by ``http_precedence`` (function
routes last); nothing answering gives an empty 404, as in Azure.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import time
from importlib.metadata import PackageNotFoundError, version
from typing import Any, Final

from localdev.host.admin_invoke import OnDemandInvocations, is_on_demand_request
from localdev.host.http_trigger import HttpTriggerSource
from localdev.host.loader import IndexedFunction, LoadedApp
from localdev.host.messages import HostRequest, HostResponse
from localdev.host.sources import (
    BUILTIN_SOURCE_MODULES,
    DeliverySource,
    HostServices,
    delivery_source_for,
)

HOST_VERSION: Final = "4.0.0-localdev"
logger = logging.getLogger("localdev.host")


def _package_version(name: str) -> str:
    try:
        return version(name)
    except PackageNotFoundError:
        return "unknown"


def create_sources(
    services: HostServices, functions: tuple[IndexedFunction, ...]
) -> tuple[list[DeliverySource], list[IndexedFunction]]:
    """One source per trigger type present; the functions no source delivers."""
    for module in BUILTIN_SOURCE_MODULES:
        importlib.import_module(module)
    by_type: dict[str, list[IndexedFunction]] = {}
    for function in functions:
        by_type.setdefault(function.trigger_type, []).append(function)
    sources: list[DeliverySource] = []
    undelivered: list[IndexedFunction] = []
    for trigger_type, typed_functions in by_type.items():
        source_class = delivery_source_for(trigger_type)
        if source_class is None:
            undelivered.extend(typed_functions)
        else:
            sources.append(source_class(services, typed_functions))
    return sources, undelivered


class HostRuntime:
    def __init__(self, loaded: LoadedApp, services: HostServices) -> None:
        self.loaded = loaded
        self.services = services
        self.sources, self.undelivered = create_sources(services, loaded.functions)
        self._by_precedence = sorted(self.sources, key=lambda source: source.http_precedence)
        self._started: list[DeliverySource] = []
        self._source_of = {
            function.name: source for source in self.sources for function in source.functions
        }
        self.state = "Default"
        self.host_id = f"localdev-{loaded.app_dir.name}".lower()[:32]
        self._created = time.monotonic()
        self.on_demand = OnDemandInvocations()

    def source_of(self, function_name: str) -> DeliverySource | None:
        return self._source_of.get(function_name)

    @property
    def http_source(self) -> HttpTriggerSource | None:
        return next((s for s in self.sources if isinstance(s, HttpTriggerSource)), None)

    async def startup(self) -> None:
        self.state = "Initialized"
        for source in self.sources:
            await source.start()
            self._started.append(source)
        for function in self.undelivered:
            logger.warning(
                "Function '%s' (%s) is indexed but not delivered: the local host has no "
                "%s source yet",
                function.name,
                function.trigger_type,
                function.trigger_type,
            )
        self.state = "Running"

    async def shutdown(self) -> None:
        self.state = "Stopping"
        for source in reversed(self._started):
            try:
                await source.stop()
            except Exception:
                logger.exception("Stopping the %s source failed", source.trigger_type)
        self._started.clear()
        await self.on_demand.drain()
        await asyncio.to_thread(self.services.invoker.close)
        self.state = "Stopped"

    def function_lines(self) -> list[str]:
        lines = []
        for function in self.loaded.functions:
            source = self._source_of.get(function.name)
            if function.disabled:
                described = f"{function.trigger_type} (disabled)"
            elif source is None:
                described = f"{function.trigger_type} (not delivered by the local host yet)"
            else:
                described = source.describe(function)
            lines.append(f"{function.name}: {described}")
        return lines

    def status_document(self) -> dict[str, Any]:
        return {
            "id": self.host_id,
            "state": self.state,
            "version": HOST_VERSION,
            "versionDetails": (
                f"localdev.host (azure-functions {_package_version('azure-functions')}, "
                f"azure-functions-runtime {_package_version('azure-functions-runtime')})"
            ),
            "processUptime": int((time.monotonic() - self._created) * 1000),
        }

    def function_document(self, function: IndexedFunction) -> dict[str, Any]:
        document: dict[str, Any] = {
            "name": function.name,
            "language": "python",
            "trigger": function.trigger_type,
            "isDisabled": function.disabled,
            "isDelivered": function.name in self._source_of and not function.disabled,
            "config": {"bindings": list(function.bindings)},
        }
        http = self.http_source
        route = http.route_for(function) if http is not None else None
        if route is not None:
            document["invoke_url_template"] = self.services.base_url + route.url_template
            document["methods"] = sorted(route.methods) if route.methods else None
            document["authLevel"] = route.auth_level
        return document

    def _admin(self, request: HostRequest) -> HostResponse | None:
        path = request.path.rstrip("/").lower()
        if not path.startswith("/admin/") or request.method != "GET":
            return None
        if path == "/admin/host/status":
            return HostResponse.json(200, self.status_document())
        if path == "/admin/functions":
            return HostResponse.json(
                200, [self.function_document(function) for function in self.loaded.functions]
            )
        if path.startswith("/admin/functions/"):
            name = request.path.rstrip("/").split("/")[-1]
            try:
                function = self.loaded.function(name)
            except KeyError:
                return HostResponse.empty(404)
            return HostResponse.json(200, self.function_document(function))
        return None

    async def handle(self, request: HostRequest) -> HostResponse:
        if is_on_demand_request(request):
            return await self.on_demand.handle(request, self)
        admin = self._admin(request)
        if admin is not None:
            return admin
        for source in self._by_precedence:
            response = await source.handle_http(request)
            if response is not None:
                return response
        return HostResponse.empty(404)
