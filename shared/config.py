"""Typed application settings, read once from the environment (app settings in Azure,
``local.settings.json`` locally).

Every setting the app reads is a field here; nothing else in the app reads ``os.environ``.
A missing or invalid setting raises :class:`ConfigurationError` naming the setting, and so does
an unresolved Key Vault reference: when the platform cannot resolve ``@Microsoft.KeyVault(...)``
(identity lacks access, wrong URI) it passes the reference through as text, which would otherwise
surface much later as a confusing authentication failure.

pydantic validates the values; pydantic-settings is deliberately not used: it costs ~90 ms of
import time (asyncio, dotenv, argparse) on every cold start for features this app does not need.
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from typing import Annotated, Literal
from urllib.parse import urlsplit

# pydantic looks for plugins when it builds its first model: an entry-point scan of every
# installed distribution, on the first request of every instance. The app uses none; a value
# set in the environment still wins.
os.environ.setdefault("PYDANTIC_DISABLE_PLUGINS", "__all__")

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    model_validator,
)

from shared import __version__
from shared.errors import ConfigurationError
from shared.names import COSMOS_DATABASE_DEFAULT, FULFILLMENT_QUEUE
from shared.process_state import on_reset

# Binding connection names. Blueprints pass these as ``connection=``; the host resolves
# ``<Name>`` (connection string, local stand-ins only) or ``<Name>__<property>`` (identity-based).
STORAGE_CONNECTION = "ImportsStorage"
SERVICE_BUS_CONNECTION = "ServiceBusConnection"

KEY_VAULT_REFERENCE = re.compile(r"^\s*@Microsoft\.KeyVault\(", re.IGNORECASE)


def is_loopback_url(url: str) -> bool:
    """True for URLs that point at this machine (where the local stand-ins listen)."""
    host = urlsplit(url if "//" in url else f"//{url}").hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _https_or_loopback_url(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("must be an absolute http(s) URL")
    if parts.scheme == "http" and not is_loopback_url(value):
        raise ValueError("must use https (plain http is accepted only for local stand-ins)")
    return value.rstrip("/") + "/"


def _ncrontab(value: str) -> str:
    from shared.ncrontab import ncrontab_problems

    problems = ncrontab_problems(value)
    if problems:
        raise ValueError("is not a valid NCRONTAB schedule: " + "; ".join(problems))
    return value


Url = Annotated[str, AfterValidator(_https_or_loopback_url)]
Ncrontab = Annotated[str, AfterValidator(_ncrontab)]


@dataclass(frozen=True, slots=True)
class StorageConnection:
    """How the app reaches its storage account: a connection string (Azurite) or service URIs
    (identity-based, Azure)."""

    connection_string: str | None = None
    blob_service_uri: str | None = None
    queue_service_uri: str | None = None

    @property
    def uses_identity(self) -> bool:
        return self.connection_string is None


@dataclass(frozen=True, slots=True)
class ServiceBusConnection:
    """A connection string (local broker, ``UseDevelopmentEmulator=true``) or a namespace."""

    connection_string: str | None = None
    fully_qualified_namespace: str | None = None

    @property
    def uses_identity(self) -> bool:
        return self.connection_string is None


class Settings(BaseModel):
    """The app's settings. Field aliases are the app setting names."""

    model_config = ConfigDict(frozen=True, extra="ignore", populate_by_name=True)

    environment: Literal["local", "azure"] = Field(
        default="azure",
        alias="ORDERFLOW_ENVIRONMENT",
        description="`local` allows keys and connection strings for loopback stand-ins only.",
    )
    version: str = Field(default=__version__, alias="ORDERFLOW_VERSION", min_length=1)

    cosmos_endpoint: Url = Field(alias="COSMOS_ENDPOINT")
    cosmos_key: SecretStr | None = Field(default=None, alias="COSMOS_KEY")
    cosmos_database: str = Field(
        default=COSMOS_DATABASE_DEFAULT, alias="COSMOS_DATABASE", pattern=r"^[A-Za-z0-9_-]{1,255}$"
    )

    storage: StorageConnection = Field(alias=STORAGE_CONNECTION)
    service_bus: ServiceBusConnection | None = Field(default=None, alias=SERVICE_BUS_CONNECTION)
    fulfillment_queue: str = Field(
        default=FULFILLMENT_QUEUE, alias="FULFILLMENT_QUEUE", min_length=1
    )

    eventgrid_topic_endpoint: Url | None = Field(default=None, alias="EVENTGRID_TOPIC_ENDPOINT")
    eventgrid_topic_key: SecretStr | None = Field(default=None, alias="EVENTGRID_TOPIC_KEY")

    key_vault_url: Url | None = Field(default=None, alias="KEY_VAULT_URL")
    secret_cache_ttl_seconds: float = Field(
        default=300.0, alias="SECRET_CACHE_TTL_SECONDS", gt=0, le=86_400
    )

    managed_identity_client_id: str | None = Field(default=None, alias="AZURE_CLIENT_ID")
    applicationinsights_connection_string: SecretStr | None = Field(
        default=None, alias="APPLICATIONINSIGHTS_CONNECTION_STRING"
    )

    auth_issuer: str | None = Field(
        default=None,
        alias="AUTH_ISSUER",
        max_length=2048,
        description="OpenID Connect issuer of the bearer tokens; compared exactly with `iss`.",
    )
    auth_audience: str | None = Field(
        default=None, alias="AUTH_AUDIENCE", min_length=1, max_length=2048
    )
    auth_customer_claim: str = Field(
        default="sub", alias="AUTH_CUSTOMER_CLAIM", pattern=r"^[\x21-\x7e]{1,128}$"
    )

    payment_timeout_minutes: int = Field(
        default=30, alias="PAYMENT_TIMEOUT_MINUTES", ge=1, le=7 * 24 * 60
    )
    health_probe_timeout_seconds: float = Field(
        default=2.0, alias="HEALTH_PROBE_TIMEOUT_SECONDS", gt=0, le=30
    )
    # The Azure SDKs' own loggers (AMQP link and session states, HTTP requests): every record
    # is billed ingestion in Application Insights, so they log warnings only unless asked.
    sdk_log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        default="WARNING", alias="SDK_LOG_LEVEL"
    )
    # Total time of one HTTP invocation: below the clients' and payment providers' own timeouts
    # (10-30 s), so a caller gets a 503 + Retry-After rather than a dropped connection.
    http_deadline_seconds: float = Field(default=8.0, alias="HTTP_DEADLINE_SECONDS", ge=1, le=120)
    # Share of the worker's threads that calls to one dependency may hold at once (bulkhead,
    # shared/resilience.py): floor(threads x share), at least 1 and at most threads - 1, so a
    # hung dependency leaves the rest to liveness and the routes that do not need it. Raise it
    # for a worker with many threads and one main dependency; lower it to keep more in reserve.
    bulkhead_thread_share: float = Field(default=0.67, alias="BULKHEAD_THREAD_SHARE", gt=0, le=1)

    # The API reference's "Authorize" (/api/docs): the OAuth 2.0 client it signs in as (Entra
    # ID: a single-page-application registration whose redirect URI is
    # https://<host>/api/docs/oauth2-redirect.html) and the scopes ticked at first, by their
    # names in the OpenAPI document, space-separated. Public values: the page shows them.
    api_docs_client_id: str | None = Field(
        default=None, alias="API_DOCS_CLIENT_ID", pattern=r"^[\x21-\x7e]{1,256}$"
    )
    api_docs_scopes: str = Field(
        default="",
        alias="API_DOCS_SCOPES",
        pattern=r"^[\x21-\x7e]{1,256}( [\x21-\x7e]{1,256}){0,31}$",
    )

    expire_unpaid_orders_schedule: Ncrontab = Field(
        default="0 */5 * * * *", alias="EXPIRE_UNPAID_ORDERS_SCHEDULE"
    )
    daily_sales_report_schedule: Ncrontab = Field(
        default="0 30 1 * * *", alias="DAILY_SALES_REPORT_SCHEDULE"
    )
    dead_letter_watch_schedule: Ncrontab = Field(
        default="0 */15 * * * *", alias="DEAD_LETTER_WATCH_SCHEDULE"
    )
    outbox_relay_schedule: Ncrontab = Field(default="30 * * * * *", alias="OUTBOX_RELAY_SCHEDULE")
    import_reconcile_schedule: Ncrontab = Field(
        default="15 */5 * * * *", alias="IMPORT_RECONCILE_SCHEDULE"
    )
    # An upload older than this without its import run is started by the reconciliation (its
    # event had time to arrive); a file pass silent for longer than the stuck time has died.
    import_reconcile_grace_seconds: int = Field(
        default=300, alias="IMPORT_RECONCILE_GRACE_SECONDS", ge=0, le=7 * 24 * 3600
    )
    import_stuck_seconds: int = Field(
        default=900, alias="IMPORT_STUCK_SECONDS", ge=60, le=7 * 24 * 3600
    )

    @model_validator(mode="after")
    def _keys_only_for_local_stand_ins(self) -> Settings:
        """Local auth is disabled in Azure: a key or connection string is a mistake there."""
        keyed = {
            "COSMOS_KEY": (self.cosmos_key, self.cosmos_endpoint),
            "EVENTGRID_TOPIC_KEY": (self.eventgrid_topic_key, self.eventgrid_topic_endpoint),
        }
        for name, (key, endpoint) in keyed.items():
            if key is None:
                continue
            if self.environment != "local" or endpoint is None or not is_loopback_url(endpoint):
                raise ConfigurationError(
                    name,
                    "is set, but keys are accepted only for local stand-ins "
                    "(ORDERFLOW_ENVIRONMENT=local and a 127.0.0.1/localhost endpoint); "
                    "in Azure remove it so the managed identity is used",
                )
        self._check_issuer()
        if self.storage.connection_string is not None and self.environment != "local":
            raise ConfigurationError(
                STORAGE_CONNECTION,
                "is a connection string, which is accepted only with ORDERFLOW_ENVIRONMENT=local;"
                f" in Azure set {STORAGE_CONNECTION}__blobServiceUri and"
                f" {STORAGE_CONNECTION}__queueServiceUri",
            )
        if (
            self.service_bus is not None
            and self.service_bus.connection_string is not None
            and self.environment != "local"
        ):
            raise ConfigurationError(
                SERVICE_BUS_CONNECTION,
                "is a connection string, which is accepted only with ORDERFLOW_ENVIRONMENT=local;"
                f" in Azure set {SERVICE_BUS_CONNECTION}__fullyQualifiedNamespace",
            )
        return self

    def _check_issuer(self) -> None:
        """The issuer is compared exactly with ``iss``, so it is not normalised; plain http
        only for the local issuer (ORDERFLOW_ENVIRONMENT=local, on loopback)."""
        issuer = self.auth_issuer
        if issuer is None:
            return  # protected routes answer 503 until it is set (shared.auth.tokens)
        parts = urlsplit(issuer)
        if parts.scheme not in ("http", "https") or not parts.hostname or parts.query:
            raise ConfigurationError("AUTH_ISSUER", "must be an absolute https URL")
        if parts.scheme == "http" and (self.environment != "local" or not is_loopback_url(issuer)):
            raise ConfigurationError(
                "AUTH_ISSUER",
                "uses plain http, which is accepted only for the local issuer "
                "(ORDERFLOW_ENVIRONMENT=local and a 127.0.0.1/localhost URL)",
            )


def _storage_from(env: Mapping[str, str]) -> StorageConnection | None:
    name = STORAGE_CONNECTION
    if env.get(name):
        return StorageConnection(connection_string=env[name])
    account = env.get(f"{name}__accountName")
    blob = env.get(f"{name}__blobServiceUri") or (
        f"https://{account}.blob.core.windows.net/" if account else None
    )
    queue = env.get(f"{name}__queueServiceUri") or (
        f"https://{account}.queue.core.windows.net/" if account else None
    )
    if blob is None and queue is None:
        return None
    if blob is None or queue is None:
        missing = f"{name}__blobServiceUri" if blob is None else f"{name}__queueServiceUri"
        raise ConfigurationError(missing, "is required with identity-based storage connections")
    return StorageConnection(
        blob_service_uri=_checked_url(f"{name}__blobServiceUri", blob),
        queue_service_uri=_checked_url(f"{name}__queueServiceUri", queue),
    )


def _checked_url(setting: str, url: str) -> str:
    try:
        return _https_or_loopback_url(url)
    except ValueError as exc:
        raise ConfigurationError(setting, str(exc)) from None


def _service_bus_from(env: Mapping[str, str]) -> ServiceBusConnection | None:
    name = SERVICE_BUS_CONNECTION
    if env.get(name):
        return ServiceBusConnection(connection_string=env[name])
    namespace = env.get(f"{name}__fullyQualifiedNamespace")
    if namespace:
        return ServiceBusConnection(fully_qualified_namespace=namespace)
    return None


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    """Build settings from a mapping (``os.environ`` by default). Raises ConfigurationError."""
    env = dict(os.environ if environ is None else environ)
    for name, value in env.items():
        if KEY_VAULT_REFERENCE.match(value):  # checked first: it is the root cause
            raise ConfigurationError(
                name,
                "is an unresolved Key Vault reference: the platform could not read the secret. "
                "Check the reference URI and that the app's identity has 'Key Vault Secrets User'",
            )
    raw: dict[str, object] = {key: value for key, value in env.items() if value != ""}
    storage = _storage_from(env)
    if storage is not None:
        raw[STORAGE_CONNECTION] = storage
    service_bus = _service_bus_from(env)
    if service_bus is not None:
        raw[SERVICE_BUS_CONNECTION] = service_bus
    try:
        return Settings.model_validate(raw)
    except ValidationError as exc:
        error = exc.errors()[0]
        setting = str(error["loc"][0]) if error["loc"] else "settings"
        if setting == STORAGE_CONNECTION and error["type"] == "missing":
            message = (
                f"is required: a connection string (local) or {STORAGE_CONNECTION}__blobServiceUri"
                f" and {STORAGE_CONNECTION}__queueServiceUri (Azure)"
            )
        else:
            message = _friendly(error["msg"])
        raise ConfigurationError(setting, message) from None


def _friendly(message: str) -> str:
    message = message.removeprefix("Value error, ")
    if message == "Field required":
        return "is required"
    message = message.removeprefix("Input ")
    return message[0].lower() + message[1:] if message else message


@cache
def get_settings() -> Settings:
    """The process-wide settings, read on first use (never at import time)."""
    return load_settings()


@on_reset
def clear_settings_cache() -> None:
    """Forget the cached settings (tests, or after changing the environment)."""
    get_settings.cache_clear()
