"""An azure-core transport that runs every HTTP attempt of an SDK client under its dependency's
deadline, circuit breaker and bulkhead (:mod:`shared.resilience`).

It sits beneath the SDK's own retry policy, so each retry is a new attempt with the time that
is left: its connection and read timeouts are the client's own, or less when the invocation's
deadline is nearer, and an attempt with no time left, or against an open circuit, raises the
app's :class:`~shared.errors.DependencyUnavailableError` subclasses, which the SDKs' retry
policies do not retry (they are not ``AzureError``). Imported by ``shared.clients`` only when a
client is created (it imports azure-core).
"""

from __future__ import annotations

from typing import Any, Self
from urllib.parse import urlsplit

from azure.core.exceptions import (
    ServiceRequestError,
    ServiceRequestTimeoutError,
    ServiceResponseError,
    ServiceResponseTimeoutError,
)
from azure.core.pipeline.transport import HttpTransport, RequestsTransport
from azure.core.rest import HttpRequest

from shared.resilience import Dependency, ProbeOutcome

# Per-request options of the SDK that the probe needs too (the local Cosmos stand-in's
# self-signed certificate is accepted by connection_verify=False).
_CONNECTION_OPTIONS = ("connection_verify", "connection_cert")


def is_timeout(error: BaseException) -> bool:
    """The dependency took the request and did not answer in time (or did not accept it)."""
    if isinstance(error, ServiceRequestTimeoutError | ServiceResponseTimeoutError | TimeoutError):
        return True
    inner = getattr(error, "inner_exception", None)
    return inner is not None and inner is not error and "timed out" in str(inner).lower()


def is_unreachable(error: BaseException) -> bool:
    """Refused or reset: the dependency is down, which fails fast by itself."""
    return isinstance(error, ServiceRequestError | ServiceResponseError) and not is_timeout(error)


class GuardedTransport(HttpTransport):  # type: ignore[type-arg]
    def __init__(
        self,
        dependency: Dependency,
        *,
        connection_timeout: float,
        read_timeout: float,
        inner: HttpTransport | None = None,  # type: ignore[type-arg]
        **transport_options: Any,
    ) -> None:
        self.dependency = dependency
        self._connection_timeout = connection_timeout
        self._read_timeout = read_timeout
        self._inner = inner or RequestsTransport(
            connection_timeout=connection_timeout, read_timeout=read_timeout, **transport_options
        )
        self._probe_target: tuple[str, dict[str, Any]] | None = None

    def __enter__(self) -> Self:
        self._inner.__enter__()
        return self

    def __exit__(self, *args: Any) -> None:
        self._inner.__exit__(*args)

    def open(self) -> None:
        self._inner.open()

    def close(self) -> None:
        self._inner.close()

    def send(self, request: Any, **kwargs: Any) -> Any:
        # What the SDK asked for is a cap; this client's own timeouts are another.
        read_cap = min(_seconds(kwargs.pop("read_timeout", None)) or 1e9, self._read_timeout)
        connect_cap = min(
            _seconds(kwargs.pop("connection_timeout", None)) or 1e9, self._connection_timeout
        )

        if self._probe_target is None:
            parts = urlsplit(str(request.url))
            options = {name: kwargs[name] for name in _CONNECTION_OPTIONS if name in kwargs}
            self._probe_target = (f"{parts.scheme}://{parts.netloc}/", options)
            self.dependency.prober = self._probe

        def attempt(timeout: float) -> Any:
            return self._inner.send(
                request,
                connection_timeout=min(connect_cap, timeout),
                read_timeout=timeout,
                **kwargs,
            )

        return self.dependency.call(
            attempt, cap=read_cap, is_timeout=is_timeout, is_unreachable=is_unreachable
        )

    def _probe(self, timeout: float) -> ProbeOutcome:
        """A GET of the endpoint's root: unauthenticated, so it changes nothing, and any
        answer (401, 404, ...) shows the dependency is answering again."""
        target = self._probe_target
        if target is None:  # pragma: no cover (set before the prober is)
            return "unreachable"
        url, options = target
        try:
            response = self._inner.send(
                HttpRequest("GET", url),
                connection_timeout=timeout,
                read_timeout=timeout,
                **options,
            )
        except Exception as error:
            if is_timeout(error):
                return "timeout"
            if is_unreachable(error):
                return "unreachable"
            raise
        response.close()
        return "answered"


def _seconds(value: object) -> float | None:
    if isinstance(value, int | float) and value > 0:
        return float(value)
    return None
