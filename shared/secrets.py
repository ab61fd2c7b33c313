"""Third-party secrets: read from Key Vault, cached with a TTL, served stale through short outages.

Where the values come from, first match wins:

1. an explicit ``SecretStore(client=...)`` (tests, scripts);
2. Key Vault at ``KEY_VAULT_URL`` through :func:`shared.clients.get_secret_client` (Azure);
3. without ``KEY_VAULT_URL``: local settings named after the secret in upper snake case
   (``payment-webhook-secret`` -> ``PAYMENT_WEBHOOK_SECRET``, previous version in
   ``PAYMENT_WEBHOOK_SECRET_PREVIOUS``). These names depend on the secret, so they are read from
   the environment here rather than declared in :mod:`shared.config`.

Key Vault behaviour:

- A value younger than the TTL (``SECRET_CACHE_TTL_SECONDS``, default 300 s) is served from
  memory: no call. Concurrent callers of an expired secret share one refresh (single flight).
- Calls per refresh: :meth:`SecretStore.get` makes 1 (``get_secret``).
  :meth:`SecretStore.get_versions` makes 2 (``get_secret`` for the current version, then
  ``list_properties_of_secret_versions``, 25 versions a page) plus 1 ``get_secret(version)`` only
  when the previous version's value is not already known; after a rotation it is the old current
  value, so rotation costs no extra call. Once versions were asked for, refreshes keep them.
- Transient failures (connection error, timeout, 408, 429, 5xx) and lost access (401/403,
  logged as an error because someone must fix the role assignment) serve the cached value for
  up to ``max_stale_seconds`` and retry Key Vault at most every ``min(ttl, 30 s)``, so an outage
  neither floods Key Vault nor slows every request down. Without a usable cached value they raise
  :class:`DependencyUnavailableError` (HTTP 503, never 401/500).
- 404, and a disabled current version, raise :class:`SecretNotFoundError` and drop the cache:
  deleting or disabling a secret is deliberate, so it is not papered over with a stale copy.
- Other errors (a 400 means a bug) propagate unchanged.

No network call and no Azure SDK import happen at module import time.
"""

from __future__ import annotations

import os
import re
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import Future
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Literal

from shared.clients import get_secret_client
from shared.config import get_settings
from shared.errors import DependencyUnavailableError, SecretNotFoundError
from shared.names import PAYMENT_WEBHOOK_SECRET
from shared.observability import get_logger
from shared.process_state import on_reset

if TYPE_CHECKING:
    from azure.keyvault.secrets import SecretClient, SecretProperties

KEY_VAULT = "Key Vault"
LOCAL_SETTINGS = "local settings"
PREVIOUS_SUFFIX = "_PREVIOUS"
# After this long without a successful refresh a cached value is no longer served.
DEFAULT_MAX_STALE_SECONDS = 24 * 60 * 60.0
# While Key Vault fails, ask it again at most this often (or every TTL, if shorter).
FAILED_REFRESH_RETRY_SECONDS = 30.0

# Key Vault's own rule for secret names; checked first so a typo fails loudly and locally.
_SECRET_NAME = re.compile(r"^[0-9A-Za-z-]{1,127}$")

_logger = get_logger("secrets")

_FailureKind = Literal["transient", "denied"]


@dataclass(frozen=True, slots=True)
class SecretVersions:
    """The current value of a secret and the previous enabled one (None if there is none)."""

    current: str = field(repr=False)
    previous: str | None = field(default=None, repr=False)

    @property
    def values(self) -> tuple[str, ...]:
        """Values to accept, current first (for example HMAC keys during a rotation)."""
        return (self.current,) if self.previous is None else (self.current, self.previous)


@dataclass(frozen=True, slots=True)
class _Version:
    version: str
    value: str = field(repr=False)


@dataclass(frozen=True, slots=True)
class _Entry:
    current: _Version
    previous: _Version | None
    has_previous: bool  # whether versions were listed, i.e. ``previous`` is meaningful
    fetched_at: float  # last successful read from Key Vault
    refresh_at: float  # when to ask Key Vault again
    backing_off: bool = False  # the last refresh failed; this copy is served stale until refresh_at

    @property
    def versions(self) -> SecretVersions:
        previous = self.previous.value if self.previous is not None else None
        return SecretVersions(self.current.value, previous)


class _SecretGoneError(Exception):
    """404 or a disabled version: the secret (version) exists no more, as far as reads go."""


def local_setting_name(secret_name: str) -> str:
    """Local setting of a secret: ``payment-webhook-secret`` -> ``PAYMENT_WEBHOOK_SECRET``."""
    return _checked(secret_name).upper().replace("-", "_")


def _checked(name: str) -> str:
    """``name`` if Key Vault would accept it; raises ValueError otherwise."""
    if not _SECRET_NAME.match(name):
        raise ValueError(f"invalid secret name {name!r}: use 1-127 letters, digits and dashes")
    return name


class SecretStore:
    """Secrets by name, cached per the module docstring. Thread-safe."""

    def __init__(
        self,
        *,
        client: SecretClient | None = None,
        ttl_seconds: float | None = None,
        max_stale_seconds: float = DEFAULT_MAX_STALE_SECONDS,
        environ: Mapping[str, str] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """Explicit arguments win over settings.

        ``client``: read from this Key Vault client; None means Key Vault if ``KEY_VAULT_URL`` is
        set (client from :mod:`shared.clients`), else local settings from ``environ``
        (``os.environ`` when None). ``ttl_seconds``: None means ``SECRET_CACHE_TTL_SECONDS``.
        ``clock``: seconds from a monotonic clock (tests pass a controllable one).
        """
        if ttl_seconds is not None and ttl_seconds < 0:
            raise ValueError("ttl_seconds must be >= 0")
        if max_stale_seconds < 0:
            raise ValueError("max_stale_seconds must be >= 0")
        self._client = client
        self._ttl_seconds = ttl_seconds
        self._max_stale_seconds = max_stale_seconds
        self._environ = environ
        self._clock = clock
        self._lock = threading.Lock()
        self._entries: dict[str, _Entry] = {}
        self._in_flight: dict[str, Future[_Entry]] = {}

    def get(self, name: str) -> str:
        """The current value of secret ``name``.

        Raises SecretNotFoundError, DependencyUnavailableError (Key Vault unreachable or access
        denied and nothing cached) or ValueError (invalid name).
        """
        _checked(name)
        client = self._key_vault_client()
        if client is None:
            return self._local(name).current
        return self._entry(client, name, want_previous=False).current.value

    def get_versions(self, name: str) -> SecretVersions:
        """The current value and the newest enabled, unexpired, active version before it.

        Same errors as :meth:`get`. While a refresh fails and only :meth:`get` had cached the
        secret, ``previous`` is None.
        """
        _checked(name)
        client = self._key_vault_client()
        if client is None:
            return self._local(name)
        return self._entry(client, name, want_previous=True).versions

    def probe(self, name: str = PAYMENT_WEBHOOK_SECRET) -> None:
        """Readiness check: raise DependencyUnavailableError unless ``name`` can be served.

        A fresh or stale cached value counts as served, so probes do not hammer Key Vault and a
        short Key Vault outage does not take every instance out of rotation.
        """
        try:
            self.get(name)
        except SecretNotFoundError as exc:
            source = KEY_VAULT if self._key_vault_client() is not None else LOCAL_SETTINGS
            raise DependencyUnavailableError(source, str(exc)) from exc

    def clear(self) -> None:
        """Forget every cached value (a refresh in flight still completes for its callers)."""
        with self._lock:
            self._entries.clear()

    # Local settings -----------------------------------------------------------------------

    def _local(self, name: str) -> SecretVersions:
        environ = os.environ if self._environ is None else self._environ
        setting = local_setting_name(name)
        current = environ.get(setting)
        if not current:
            raise SecretNotFoundError(name, f"{LOCAL_SETTINGS} (set {setting})")
        return SecretVersions(current, environ.get(setting + PREVIOUS_SUFFIX) or None)

    # Key Vault ----------------------------------------------------------------------------

    def _key_vault_client(self) -> SecretClient | None:
        if self._client is not None:
            return self._client
        if get_settings().key_vault_url is None:
            return None
        return get_secret_client()

    def _ttl(self) -> float:
        if self._ttl_seconds is not None:
            return self._ttl_seconds
        return get_settings().secret_cache_ttl_seconds

    def _entry(self, client: SecretClient, name: str, *, want_previous: bool) -> _Entry:
        while True:
            with self._lock:
                entry = self._entries.get(name)
                if (
                    entry is not None
                    and self._clock() < entry.refresh_at
                    and (entry.has_previous or entry.backing_off or not want_previous)
                ):
                    return entry
                flight = self._in_flight.get(name)
                leader = flight is None
                if flight is None:
                    flight = self._in_flight[name] = Future()
            if not leader:
                result = flight.result()  # re-raises the leader's error
                if want_previous and not result.has_previous and not result.backing_off:
                    continue  # the leader read the current value only: go again, with versions
                return result
            with_previous = want_previous or (entry is not None and entry.has_previous)
            try:
                result = self._refresh(client, name, entry, with_previous=with_previous)
            except BaseException as exc:
                self._land(name)
                flight.set_exception(exc)
                raise
            self._land(name)
            flight.set_result(result)
            return result

    def _land(self, name: str) -> None:
        """End a refresh before waking its followers, so none of them waits on it again."""
        with self._lock:
            del self._in_flight[name]

    def _refresh(
        self, client: SecretClient, name: str, cached: _Entry | None, *, with_previous: bool
    ) -> _Entry:
        try:
            fresh = self._fetch(client, name, cached, with_previous=with_previous)
        except _SecretGoneError as exc:
            with self._lock:
                self._entries.pop(name, None)
            raise SecretNotFoundError(name, f"{KEY_VAULT} ({exc})") from None
        except Exception as exc:
            kind = _failure_kind(exc)
            if kind is None:
                raise
            return self._serve_stale(name, cached, exc, kind)
        with self._lock:
            self._entries[name] = fresh
        return fresh

    def _serve_stale(
        self, name: str, cached: _Entry | None, error: Exception, kind: _FailureKind
    ) -> _Entry:
        now = self._clock()
        detail = _describe(error)
        if kind == "denied":
            # Not a blip: the app's identity lost its role or the token is rejected.
            _logger.error(
                "Key Vault denied reading secret %s: %s; check the app identity's "
                "'Key Vault Secrets User' role",
                name,
                detail,
                extra={"secret": name},
            )
        age = None if cached is None else now - cached.fetched_at
        if cached is None or age is None or age > self._max_stale_seconds:
            reason = "no cached value" if cached is None else f"cached value too old ({age:.0f} s)"
            raise DependencyUnavailableError(
                KEY_VAULT,
                f"cannot read secret {name!r}: {detail}; {reason}",
                retry_after_seconds=_retry_after(error),
            ) from error
        _logger.warning(
            "Key Vault read of secret %s failed (%s); serving the cached value, %.0f s old",
            name,
            detail,
            age,
            extra={"secret": name, "stale_age_seconds": round(age, 1)},
        )
        stale = replace(
            cached,
            refresh_at=now + min(self._ttl(), FAILED_REFRESH_RETRY_SECONDS),
            backing_off=True,
        )
        with self._lock:
            self._entries[name] = stale
        return stale

    def _fetch(
        self, client: SecretClient, name: str, cached: _Entry | None, *, with_previous: bool
    ) -> _Entry:
        from azure.core.exceptions import ResourceNotFoundError

        try:
            secret = client.get_secret(name)
        except ResourceNotFoundError:
            raise _SecretGoneError("not found") from None
        except Exception as exc:
            if _is_disabled(exc):
                raise _SecretGoneError("its current version is disabled") from None
            raise
        current = _Version(secret.properties.version or "", secret.value or "")
        previous: _Version | None = None
        if with_previous:
            candidate = newest_usable_version(
                client.list_properties_of_secret_versions(name),
                exclude=current.version,
                now=datetime.now(UTC),
            )
            if candidate is not None:
                previous = _known_value(cached, candidate) or _read_version(client, name, candidate)
        now = self._clock()
        return _Entry(
            current, previous, with_previous, fetched_at=now, refresh_at=now + self._ttl()
        )


def newest_usable_version(
    versions: Iterable[SecretProperties], *, exclude: str, now: datetime
) -> str | None:
    """The newest version id that is enabled, not expired and already active, except ``exclude``.

    Newest by creation time (the order of Key Vault's listing is unspecified).
    """
    usable = [
        props
        for props in versions
        if props.version
        and props.version != exclude
        and props.enabled
        and (props.expires_on is None or props.expires_on > now)
        and (props.not_before is None or props.not_before <= now)
    ]
    if not usable:
        return None
    oldest = datetime.min.replace(tzinfo=UTC)
    newest = max(usable, key=lambda props: (props.created_on or oldest, props.version or ""))
    return newest.version


def _known_value(cached: _Entry | None, version: str) -> _Version | None:
    """A version's value never changes, so one already read needs no second call."""
    if cached is None:
        return None
    for known in (cached.current, cached.previous):
        if known is not None and known.version == version:
            return known
    return None


def _read_version(client: SecretClient, name: str, version: str) -> _Version | None:
    from azure.core.exceptions import ResourceNotFoundError

    try:
        secret = client.get_secret(name, version)
    except ResourceNotFoundError:
        return None  # deleted since it was listed
    except Exception as exc:
        if _is_disabled(exc):
            return None  # disabled since it was listed
        raise
    return _Version(version, secret.value or "")


def _failure_kind(error: Exception) -> _FailureKind | None:
    from azure.core.exceptions import (
        ClientAuthenticationError,
        HttpResponseError,
        ServiceRequestError,
        ServiceResponseError,
    )

    if isinstance(error, ServiceRequestError | ServiceResponseError):
        return "transient"  # connection refused/reset, TLS failure, timeouts
    if isinstance(error, ClientAuthenticationError):
        return "denied"  # 401, or the credential could not get a token
    if isinstance(error, HttpResponseError):
        status = error.status_code or 0
        if status == 403:
            return "denied"
        if status in (408, 429) or status >= 500:
            return "transient"
    return None


def _is_disabled(error: Exception) -> bool:
    from azure.core.exceptions import HttpResponseError

    if not isinstance(error, HttpResponseError) or error.status_code != 403:
        return False
    inner = getattr(error.error, "innererror", None) or {}
    return isinstance(inner, dict) and inner.get("code") == "SecretDisabled"


def _describe(error: Exception) -> str:
    status = getattr(error, "status_code", None)
    message = str(error).splitlines()[0] if str(error) else type(error).__name__
    return (
        f"{type(error).__name__} {status}: {message}"
        if status
        else f"{type(error).__name__}: {message}"
    )


def _retry_after(error: Exception) -> int:
    response = getattr(error, "response", None)
    header = response.headers.get("Retry-After") if response is not None else None
    value = header.strip() if header else ""
    if value.isascii() and value.isdigit():  # isdigit alone also takes "²", which int() refuses
        return min(max(1, int(value)), 3600)
    return 5


_store_lock = threading.Lock()
_store: SecretStore | None = None


def get_secret_store() -> SecretStore:
    """The process-wide store, created on first use."""
    global _store
    with _store_lock:
        if _store is None:
            _store = SecretStore()
        return _store


@on_reset
def clear_secret_cache() -> None:
    """Forget the process-wide store and its cached values (tests; after settings changes)."""
    global _store
    with _store_lock:
        store, _store = _store, None
    if store is not None:
        store.clear()
