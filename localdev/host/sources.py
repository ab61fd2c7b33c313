"""Delivery sources: how each trigger type reaches the functions, keyed by trigger type.

The host indexes every function, groups them by trigger type (``httpTrigger``,
``timerTrigger``, ``blobTrigger``, ``queueTrigger``, ``serviceBusTrigger``,
``eventGridTrigger``, ...) and, for each type with a registered source, creates one source
with those functions. Sources start with the host (ASGI lifespan startup, before the first
request is served) and stop with it (lifespan shutdown, before the thread pool closes), in
registration order and reverse order. A trigger type without a source is indexed and listed
(``/admin/functions``) and logged as not delivered; nothing pretends to run it.

Adding a trigger type (the seam):

1. write a module with a subclass of :class:`DeliverySource`; set ``trigger_type``; start
   pollers/timers in :meth:`DeliverySource.start` (as asyncio tasks, or threads you join in
   :meth:`DeliverySource.stop`); invoke through ``self.services.invoker.invoke(function,
   InvocationRequest(inputs={function.trigger_parameter: value}, reason=...))`` and settle
   the message (complete, retry, poison, dead-letter) from the result or the
   ``FunctionInvocationError``;
2. decorate the class with :func:`register_delivery_source`;
3. add the module to ``BUILTIN_SOURCE_MODULES`` so the host imports it.

A source that accepts deliveries over HTTP (Event Grid's
``POST /runtime/webhooks/eventgrid?functionName=...``, the admin API's
``POST /admin/functions/{name}`` for non-HTTP functions) overrides
:meth:`DeliverySource.handle_http`; host endpoints are asked before function routes
(``http_precedence``), so an app's catch-all route cannot shadow them, as in Azure.
"""

from __future__ import annotations

import abc
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Final

from localdev.host.invoker import Invoker
from localdev.host.loader import IndexedFunction
from localdev.host.messages import HostRequest, HostResponse
from localdev.host.settings import HostJson

BUILTIN_SOURCE_MODULES: Final[tuple[str, ...]] = (
    "localdev.host.http_trigger",
    "localdev.host.timer_trigger",
    "localdev.host.blob_trigger",
    "localdev.host.queue_trigger",
    "localdev.host.eventgrid_trigger",
    "localdev.host.servicebus_trigger",
)


@dataclass(frozen=True)
class HostServices:
    """What the host shares with every source."""

    invoker: Invoker
    app_dir: Path
    host_json: HostJson
    environ: Mapping[str, str]  # the app settings (the process environment)
    base_url: str
    logger: logging.Logger


class DeliverySource(abc.ABC):
    """Delivers one trigger type to its functions for as long as the host runs."""

    trigger_type: ClassVar[str]
    # Lower values are asked first for HTTP requests; function routes come last.
    http_precedence: ClassVar[int] = 0

    def __init__(self, services: HostServices, functions: Sequence[IndexedFunction]) -> None:
        self.services = services
        self.functions = tuple(functions)

    async def start(self) -> None:  # noqa: B027 - optional hook: HTTP needs no background work
        """Begin delivering (open connections, start polling); return once running."""

    async def stop(self) -> None:  # noqa: B027 - optional hook, see start()
        """Stop delivering and wait for deliveries in flight; must not raise."""

    async def handle_http(self, request: HostRequest) -> HostResponse | None:
        """Answer a request this source owns, or None to let the next one try."""
        return None

    def describe(self, function: IndexedFunction) -> str:
        """One line for the startup function list."""
        return function.trigger_type


_SOURCES: dict[str, type[DeliverySource]] = {}


def register_delivery_source[SourceT: type[DeliverySource]](source: SourceT) -> SourceT:
    """Class decorator: make ``source`` the delivery source of its ``trigger_type``."""
    existing = _SOURCES.get(source.trigger_type)
    if existing is not None and existing is not source:
        raise ValueError(
            f"{source.trigger_type} is already delivered by {existing.__module__}."
            f"{existing.__qualname__}"
        )
    _SOURCES[source.trigger_type] = source
    return source


def delivery_source_for(trigger_type: str) -> type[DeliverySource] | None:
    return _SOURCES.get(trigger_type)


def registered_trigger_types() -> tuple[str, ...]:
    return tuple(_SOURCES)
