"""Azure SDK clients: one credential, each client created on first use and then reused.

Nothing here touches the network or imports an Azure SDK at module import time: the SDKs cost
hundreds of milliseconds to import, and a Flex Consumption instance that only serves HTTP should
never pay for the Service Bus SDK. Each getter imports its SDK when first called.

In Azure every client authenticates with the app's managed identity (``DefaultAzureCredential``).
Keys and connection strings are used only for the local stand-ins; ``shared.config`` refuses them
anywhere else. Retries are the SDKs' own policies, tuned here once.

Every HTTP-based client sends through :class:`shared.guarded_transport.GuardedTransport`: each
attempt gets its timeout from what is left of the invocation's deadline and runs under its
dependency's circuit breaker and bulkhead (``shared.resilience``).
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final, Literal, get_args

from shared.config import SERVICE_BUS_CONNECTION, get_settings, is_loopback_url
from shared.errors import ConfigurationError
from shared.process_state import on_reset

if TYPE_CHECKING:
    from azure.core.credentials import TokenCredential
    from azure.cosmos import ContainerProxy, CosmosClient, DatabaseProxy
    from azure.eventgrid import EventGridPublisherClient
    from azure.keyvault.secrets import SecretClient
    from azure.servicebus import ServiceBusClient, ServiceBusReceiver
    from azure.storage.blob import BlobServiceClient
    from azure.storage.queue import QueueClient, QueueServiceClient

# Connection and read timeouts (seconds) for every data-plane call unless a caller passes its own.
CONNECTION_TIMEOUT = 5
READ_TIMEOUT = 30
# SDK retry policy: a few quick retries with exponential backoff; throttling (429/503) is retried
# by the SDKs honouring Retry-After.
RETRY_TOTAL = 3
RETRY_BACKOFF_MAX = 8

# The clients this module caches: what install_client accepts, and the keys of _instances.
ClientName = Literal["credential", "cosmos", "blob", "queue", "servicebus", "eventgrid", "keyvault"]
CLIENT_NAMES: Final[tuple[ClientName, ...]] = get_args(ClientName)

_lock = threading.RLock()
_instances: dict[ClientName, Any] = {}
# Objects made from a client (a Cosmos container proxy, one queue's client), by the client they
# come from and their own name: replacing or resetting the client drops them with it.
_derived: dict[tuple[ClientName, str], Any] = {}


def _once[K, T](store: dict[K, Any], key: K, factory: Callable[[], T]) -> T:
    instance: T | None = store.get(key)
    if instance is None:
        with _lock:
            instance = store.get(key)
            if instance is None:
                instance = factory()
                store[key] = instance
    return instance


def _cached[T](name: ClientName, factory: Callable[[], T]) -> T:
    """Create client ``name`` once per process (thread-safe) and return it afterwards."""
    return _once(_instances, name, factory)


def _cached_from[T](client: ClientName, part: str, factory: Callable[[], T]) -> T:
    """Create ``part`` of ``client`` once (until the client is reset or replaced)."""
    return _once(_derived, (client, part), factory)


def _transport(dependency_name: str) -> Any:
    """A guarded transport for one client (each client closes its own)."""
    from shared.guarded_transport import GuardedTransport
    from shared.resilience import dependency

    return GuardedTransport(
        dependency(dependency_name),
        connection_timeout=CONNECTION_TIMEOUT,
        read_timeout=READ_TIMEOUT,
    )


@on_reset
def reset_clients() -> None:
    """Close and forget every cached client and the credential (tests; settings changes), and
    the dependencies' breakers and bulkheads with them."""
    from shared.resilience import reset_dependencies

    reset_dependencies()
    with _lock:
        instances = [*_derived.values(), *_instances.values()]
        _derived.clear()
        _instances.clear()
    for instance in instances:
        close = getattr(instance, "close", None)
        if callable(close):
            try:
                close()
            except Exception:  # noqa: S112 - closing is best effort; the object is discarded
                continue


def install_client(name: ClientName, instance: object) -> None:
    """Use ``instance`` for client ``name`` (one of :data:`CLIENT_NAMES`) instead of creating
    one: for tests that need a client with a custom transport (fault injection, request
    counting) and for tools. What was made from the previous client (container proxies, queue
    clients) is dropped. Undone by :func:`reset_clients`. An unknown name is refused: a
    misspelt one would otherwise install nothing that the app uses."""
    if name not in CLIENT_NAMES:
        raise ValueError(f"unknown client {name!r}; expected one of {', '.join(CLIENT_NAMES)}")
    with _lock:
        for key in [key for key in _derived if key[0] == name]:
            del _derived[key]
        _instances[name] = instance


def get_credential() -> TokenCredential:
    """The app's one token credential: its managed identity in Azure, developer sign-in locally."""

    def create() -> TokenCredential:
        from azure.identity import DefaultAzureCredential

        settings = get_settings()
        return DefaultAzureCredential(
            managed_identity_client_id=settings.managed_identity_client_id,
            exclude_interactive_browser_credential=True,
        )

    return _cached("credential", create)


def cosmos_client_options() -> dict[str, Any]:
    """The Cosmos client's options besides endpoint and credential: timeouts, and the retry
    policy. With ``retry_total`` the SDK retries a throttled request (429) up to that many times,
    waiting what ``x-ms-retry-after-ms`` says, at most ``retry_backoff_max`` seconds in all;
    then the app answers 503 with ``Retry-After`` (shared.repositories.cosmos_errors)."""
    s = get_settings()
    return {
        "connection_timeout": CONNECTION_TIMEOUT,
        "retry_total": RETRY_TOTAL,
        "retry_backoff_max": RETRY_BACKOFF_MAX,
        # The local stand-in has no regions to discover.
        "enable_endpoint_discovery": s.environment != "local",
        "user_agent_suffix": "orderflow",
    }


def get_cosmos_client() -> CosmosClient:
    def create() -> CosmosClient:
        from azure.cosmos import CosmosClient

        s = get_settings()
        credential: Any = (
            s.cosmos_key.get_secret_value() if s.cosmos_key is not None else get_credential()
        )
        if s.environment == "local":
            # The stand-in's certificate is self-signed; azure-cosmos skips verification for
            # loopback endpoints and urllib3 would warn on every request.
            import warnings

            from urllib3.exceptions import InsecureRequestWarning

            warnings.filterwarnings(
                "ignore", category=InsecureRequestWarning, message=r".*'(127\.0\.0\.1|localhost)'"
            )
        return CosmosClient(
            s.cosmos_endpoint,
            credential=credential,
            transport=_transport("cosmos"),
            **cosmos_client_options(),
        )

    return _cached("cosmos", create)


def get_cosmos_database() -> DatabaseProxy:
    s = get_settings()
    return get_cosmos_client().get_database_client(s.cosmos_database)


def get_container(name: str) -> ContainerProxy:
    """A Cosmos container proxy (no network call until an operation runs)."""
    return _cached_from(
        "cosmos", f"container:{name}", lambda: get_cosmos_database().get_container_client(name)
    )


def _storage_kwargs() -> dict[str, Any]:
    return {
        "connection_timeout": CONNECTION_TIMEOUT,
        "read_timeout": READ_TIMEOUT,
        "retry_total": RETRY_TOTAL,
        "user_agent": "orderflow",
        "transport": _transport("storage"),
    }


def get_blob_service() -> BlobServiceClient:
    def create() -> BlobServiceClient:
        from azure.storage.blob import BlobServiceClient

        storage = (get_settings()).storage
        if storage.connection_string is not None:
            return BlobServiceClient.from_connection_string(
                storage.connection_string, **_storage_kwargs()
            )
        assert storage.blob_service_uri is not None  # noqa: S101 - guaranteed by config
        return BlobServiceClient(storage.blob_service_uri, get_credential(), **_storage_kwargs())

    return _cached("blob", create)


def get_queue_service() -> QueueServiceClient:
    def create() -> QueueServiceClient:
        from azure.storage.queue import QueueServiceClient

        storage = (get_settings()).storage
        if storage.connection_string is not None:
            return QueueServiceClient.from_connection_string(
                storage.connection_string, **_storage_kwargs()
            )
        assert storage.queue_service_uri is not None  # noqa: S101 - guaranteed by config
        return QueueServiceClient(storage.queue_service_uri, get_credential(), **_storage_kwargs())

    return _cached("queue", create)


def get_queue(name: str) -> QueueClient:
    """A queue client whose messages are base64, as the Functions queue trigger expects."""

    def create() -> QueueClient:
        from azure.storage.queue import TextBase64DecodePolicy, TextBase64EncodePolicy

        return get_queue_service().get_queue_client(
            name,
            message_encode_policy=TextBase64EncodePolicy(),
            message_decode_policy=TextBase64DecodePolicy(),
        )

    return _cached_from("queue", name, create)


def get_service_bus_client() -> ServiceBusClient:
    def create() -> ServiceBusClient:
        from azure.servicebus import ServiceBusClient

        s = get_settings()
        if s.service_bus is None:
            raise ConfigurationError(
                SERVICE_BUS_CONNECTION,
                f"is required (or {SERVICE_BUS_CONNECTION}__fullyQualifiedNamespace)",
            )
        if s.service_bus.connection_string is not None:
            return ServiceBusClient.from_connection_string(
                s.service_bus.connection_string, retry_total=RETRY_TOTAL
            )
        assert s.service_bus.fully_qualified_namespace is not None  # noqa: S101
        return ServiceBusClient(
            s.service_bus.fully_qualified_namespace, get_credential(), retry_total=RETRY_TOTAL
        )

    return _cached("servicebus", create)


def get_service_bus_peeker(queue: str) -> ServiceBusReceiver:
    """A receiver of ``queue`` kept open for peeking only (the readiness probe): opening one
    costs an AMQP connection, session and link (about a second, and dozens of SDK records).
    ``prefetch_count=0`` and peek-only use mean it never takes or locks a message."""
    return _cached_from(
        "servicebus",
        f"peek:{queue}",
        lambda: get_service_bus_client().get_queue_receiver(queue, prefetch_count=0),
    )


def forget_service_bus_peeker(queue: str) -> None:
    """Close and drop the peeking receiver (after it failed): the next probe opens a new one."""
    with _lock:
        instance = _derived.pop(("servicebus", f"peek:{queue}"), None)
    close = getattr(instance, "close", None)
    if callable(close):
        with contextlib.suppress(Exception):  # best effort; the object is discarded
            close()


def get_eventgrid_client() -> EventGridPublisherClient:
    def create() -> EventGridPublisherClient:
        from azure.eventgrid import EventGridPublisherClient

        s = get_settings()
        if s.eventgrid_topic_endpoint is None:
            raise ConfigurationError("EVENTGRID_TOPIC_ENDPOINT", "is required to publish events")
        credential: Any
        if s.eventgrid_topic_key is not None:
            from azure.core.credentials import AzureKeyCredential

            credential = AzureKeyCredential(s.eventgrid_topic_key.get_secret_value())
        else:
            credential = get_credential()
        # The topic endpoint is the full URL Azure gives (``https://<topic>.<region>-1.eventgrid
        # .azure.net/api/events``). Basic-topic clients ignore constructor transport options, so
        # retry settings go on each ``send()`` call.
        return EventGridPublisherClient(
            s.eventgrid_topic_endpoint.rstrip("/"), credential, transport=_transport("eventGrid")
        )

    return _cached("eventgrid", create)


def get_secret_client() -> SecretClient:
    def create() -> SecretClient:
        from azure.keyvault.secrets import SecretClient

        s = get_settings()
        if s.key_vault_url is None:
            raise ConfigurationError("KEY_VAULT_URL", "is required to read secrets from Key Vault")
        return SecretClient(
            s.key_vault_url,
            get_credential(),
            connection_timeout=CONNECTION_TIMEOUT,
            read_timeout=READ_TIMEOUT,
            retry_total=RETRY_TOTAL,
            transport=_transport("keyVault"),
            # A vault stand-in on 127.0.0.1 cannot have a *.vault.azure.net name, which the
            # client otherwise requires of the challenge's resource. Only locally.
            verify_challenge_resource=not (
                s.environment == "local" and is_loopback_url(s.key_vault_url)
            ),
        )

    return _cached("keyvault", create)
