"""The local Functions host: serves ``function_app.py`` without Azure Functions Core Tools.

It loads the app the way the Python worker does (the worker's own indexing and invocation code
from ``azure-functions-runtime``), serves HTTP triggers on http://127.0.0.1:7071 with the
host's routing rules, and delivers other triggers through pluggable delivery sources.

Modules:

- :mod:`~localdev.host.settings`: ``local.settings.json`` (environment wins) and ``host.json``
- :mod:`~localdev.host.loader`: import, find the ``FunctionApp``, index, validate
- :mod:`~localdev.host.routing`: ASP.NET route templates, constraints, precedence
- :mod:`~localdev.host.invoker`: ``context``, thread pool / event loop, outputs, host logs
- :mod:`~localdev.host.sources`: the delivery-source registry (the seam for timer, blob,
  queue, Service Bus and Event Grid)
- :mod:`~localdev.host.http_trigger`: the HTTP trigger source
- :mod:`~localdev.host.runtime`, :mod:`~localdev.host.asgi`, :mod:`~localdev.host.server`:
  admin endpoints, the ASGI app, uvicorn and :class:`LocalHost`

Run it with ``python -m localdev.host`` (see :mod:`localdev.host.__main__`).
"""

from localdev.host.invoker import (
    FunctionInvocationError,
    InvocationRequest,
    InvocationResult,
    Invoker,
    OutputSink,
    RetryState,
    TraceParent,
)
from localdev.host.loader import IndexedFunction, LoadedApp, load_function_app
from localdev.host.messages import HostRequest, HostResponse
from localdev.host.server import DEFAULT_PORT, LocalHost
from localdev.host.sources import DeliverySource, HostServices, register_delivery_source

__all__ = [
    "DEFAULT_PORT",
    "DeliverySource",
    "FunctionInvocationError",
    "HostRequest",
    "HostResponse",
    "HostServices",
    "IndexedFunction",
    "InvocationRequest",
    "InvocationResult",
    "Invoker",
    "LoadedApp",
    "LocalHost",
    "OutputSink",
    "RetryState",
    "TraceParent",
    "load_function_app",
    "register_delivery_source",
]
