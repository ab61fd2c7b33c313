"""Bearer tokens (RFC 6750): taken from the ``Authorization`` header only, validated against the
configured OpenID Connect issuer (``AUTH_ISSUER``) and audience (``AUTH_AUDIENCE``).

What a token must be, checked in this order (cheap checks before any key lookup or crypto):

1. at most ``MAX_TOKEN_BYTES``, three base64url segments, a JSON header and payload with no
   duplicate member (PyJWT would silently keep the last one, so ``{"aud": A, "aud": B}`` could
   mean different things to different parsers);
2. ``alg`` RS256 or ES256 (never ``none``, never HMAC: an HS256 token "signed" with the public
   key is refused before any key is looked at), no ``crit`` extensions, a ``kid``;
3. signed by the issuer's key with that ``kid`` (the key's own type fixes the algorithm);
4. ``iss`` exactly the configured issuer, ``aud`` exactly the configured audience, ``exp``
   required, ``exp``/``nbf``/``iat`` within ``LEEWAY_SECONDS``, ``sub`` a string, ``scp`` a
   space-separated string, ``roles`` a list of strings.

Signing keys come from ``{issuer}/.well-known/openid-configuration`` -> ``jwks_uri`` and are
cached (:class:`SigningKeys`): refreshed every ``KEY_REFRESH_SECONDS``, and at once for a token
whose ``kid`` is unknown (a key rotation works with its first token); a refresh that does not
find the kid, or fails, starts a cooldown of ``UNKNOWN_KID_COOLDOWN_SECONDS`` without fetches (so
a flood of made-up kids costs the issuer one request per cooldown). While the issuer is
unreachable the cached keys keep serving for up to ``MAX_STALE_SECONDS``, like the Key Vault
secrets cache, and while one request reads them again the others use the cached ones instead of
waiting for it; without cached keys the request gets 503
with ``Retry-After`` (the token may be fine: 401 would tell the client to get a new one).

Why PyJWT's ``PyJWKSet`` and ``jwt.decode`` rather than ``PyJWKClient``: the client fetches a
fixed JWKS URL (no discovery), refetches on every unknown ``kid`` without a cooldown and has no
stale-on-error mode, which are the three properties this cache exists for. Parsing keys and
verifying tokens is still PyJWT's own, well-reviewed code.

PyJWT (and ``cryptography``) load on the first token, never at import time (cold start).
"""

from __future__ import annotations

import base64
import binascii
import http.client
import json
import re
import ssl
import threading
import time
import urllib.parse
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING, Any, Final

from shared.auth.policy import Caller
from shared.config import get_settings, is_loopback_url
from shared.errors import (
    AuthenticationRequiredError,
    ConfigurationError,
    DependencyUnavailableError,
    InvalidTokenError,
)
from shared.observability import get_logger
from shared.process_state import on_reset

if TYPE_CHECKING:
    from jwt import PyJWK

    from shared.resilience import ProbeOutcome

ALLOWED_ALGORITHMS: Final = ("RS256", "ES256")
MAX_TOKEN_BYTES: Final = 16 * 1024  # Entra ID tokens with many claims stay far below this
LEEWAY_SECONDS: Final = 30  # clock skew between the issuer and this instance
KEY_REFRESH_SECONDS: Final = 3600.0  # Entra ID rotates keys with weeks of overlap
UNKNOWN_KID_COOLDOWN_SECONDS: Final = 5.0
MAX_STALE_SECONDS: Final = 24 * 3600.0
FETCH_TIMEOUT_SECONDS: Final = 3.0  # per discovery / JWKS request
MAX_DOCUMENT_BYTES: Final = 1024 * 1024
VALIDATED_CACHE_SIZE: Final = 1024  # tokens remembered as valid (about 1 KiB each)
RETRY_AFTER_SECONDS: Final = 5
IDENTITY_PROVIDER: Final = "identity provider"

# RFC 6750 section 2.1: b64token after "Bearer" and one or more spaces.
_BEARER = re.compile(r"^Bearer +([A-Za-z0-9\-._~+/]+=*) *$", re.IGNORECASE)
_SEGMENT = re.compile(r"^[A-Za-z0-9_-]*$")

_log = get_logger("auth")


class IssuerFetchError(Exception):
    """The issuer's discovery document or JWKS could not be read (network, status, format)."""


class IssuerTimeoutError(IssuerFetchError):
    """The issuer did not answer in time (a hang: what opens its circuit)."""


class IssuerUnreachableError(IssuerFetchError):
    """The issuer refused or reset the connection (down: fails fast by itself)."""


@cache
def _tls_context() -> ssl.SSLContext:
    """One verifying TLS context for every issuer fetch. Each new context loads the system's
    CA certificates (tens of milliseconds of CPU); without this every discovery and JWKS read
    paid that again. Made on first use, never at import time."""
    return ssl.create_default_context()


def fetch_json(url: str, *, timeout: float = FETCH_TIMEOUT_SECONDS) -> Any:
    """GET ``url`` and parse its JSON body: the only outbound call of token validation.

    http.client rather than urllib: no redirects, no proxies or other schemes, a hard size
    limit. ``timeout`` bounds connecting and each read. Certificates and host names are
    verified (``ssl.create_default_context``). Raises IssuerFetchError.
    """
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise IssuerFetchError(f"not an http(s) URL: {url}")
    connection: http.client.HTTPConnection
    if parts.scheme == "https":
        connection = http.client.HTTPSConnection(
            parts.hostname, parts.port, timeout=timeout, context=_tls_context()
        )
    else:
        connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)
    path = parts.path or "/"
    if parts.query:
        path += f"?{parts.query}"
    try:
        connection.request("GET", path, headers={"Accept": "application/json"})
        response = connection.getresponse()
        body = response.read(MAX_DOCUMENT_BYTES + 1)
    except (OSError, http.client.HTTPException) as error:
        failure = (
            IssuerTimeoutError
            if isinstance(error, TimeoutError)
            else IssuerUnreachableError
            if isinstance(error, OSError)
            else IssuerFetchError
        )
        raise failure(f"GET {url} failed: {type(error).__name__}: {error}") from None
    finally:
        connection.close()
    if response.status != 200:
        raise IssuerFetchError(f"GET {url} answered {response.status}")
    if len(body) > MAX_DOCUMENT_BYTES:
        raise IssuerFetchError(f"GET {url} answered more than {MAX_DOCUMENT_BYTES} bytes")
    try:
        return json.loads(body)
    except ValueError:
        raise IssuerFetchError(f"GET {url} did not answer JSON") from None


Fetch = Callable[[str], Any]


def _default_fetch(url: str) -> Any:
    """At most ``FETCH_TIMEOUT_SECONDS``, and no longer than the invocation's deadline leaves
    (``shared.resilience``: DeadlineExceededError, a 503, when too little is left), under the
    issuer's circuit breaker and bulkhead: an issuer that keeps timing out is not asked for a
    while (one probe of its discovery document on a thread of its own), so requests needing
    keys fail at once instead of each waiting the fetch timeout, holding the key cache's lock.
    An open circuit is a failed fetch to the cache: stale keys still serve, no keys is 503."""
    from shared.errors import BulkheadFullError, CircuitOpenError
    from shared.resilience import dependency

    guard = dependency("identity")
    if guard.prober is None:
        guard.prober = lambda timeout: _probe(url, timeout)
    try:
        return guard.call(
            lambda timeout: fetch_json(url, timeout=timeout),
            cap=FETCH_TIMEOUT_SECONDS,
            is_timeout=lambda error: isinstance(error, IssuerTimeoutError),
            is_unreachable=lambda error: isinstance(error, IssuerUnreachableError),
        )
    except (CircuitOpenError, BulkheadFullError) as error:
        raise IssuerFetchError(f"GET {url} not tried: {error}") from None


def _probe(url: str, timeout: float) -> ProbeOutcome:
    """The half-open probe: any answer of the issuer, even one the cache could not use."""
    try:
        fetch_json(url, timeout=timeout)
    except IssuerTimeoutError:
        return "timeout"
    except IssuerUnreachableError:
        return "unreachable"
    except IssuerFetchError:
        return "answered"
    return "answered"


@dataclass(frozen=True, slots=True)
class _KeySet:
    keys: Mapping[str, PyJWK]
    fetched_at: float


class SigningKeys:
    """The issuer's signing keys by ``kid``, cached as the module docstring says. Thread-safe."""

    def __init__(
        self,
        issuer: str,
        *,
        allow_http: bool = False,
        fetch: Fetch = _default_fetch,
        clock: Callable[[], float] = time.monotonic,
        refresh_seconds: float = KEY_REFRESH_SECONDS,
        cooldown_seconds: float = UNKNOWN_KID_COOLDOWN_SECONDS,
        max_stale_seconds: float = MAX_STALE_SECONDS,
    ) -> None:
        self.issuer = issuer
        self._allow_http = allow_http
        self._fetch = fetch
        self._clock = clock
        self._refresh_seconds = refresh_seconds
        self._cooldown_seconds = cooldown_seconds
        self._max_stale_seconds = max_stale_seconds
        self._lock = threading.Lock()
        self._keys: _KeySet | None = None
        self._jwks_uri: str | None = None
        # No fetch before this moment: set by a failed fetch, and by a fetch that did not find
        # the kid it was made for (so a made-up kid costs one fetch per cooldown, and a new
        # key of a rotation is found by the first token that names it).
        self._quiet_until = float("-inf")
        self._last_failed = False
        self.fetches = 0  # JWKS documents fetched (tests and benchmarks read it)
        self.generation = 0  # bumped by every JWKS read (TokenValidator's cache keys on it)

    def loaded(self) -> bool:
        """Whether the issuer's keys were ever read (false until this instance's first token)."""
        return self._keys is not None

    def fresh(self) -> bool:
        """Whether the cached keys are younger than the refresh interval (no read due)."""
        cached = self._keys
        return cached is not None and self._clock() - cached.fetched_at < self._refresh_seconds

    def key(self, kid: str) -> PyJWK:
        """The key with this ``kid``. Raises InvalidTokenError for a key the issuer does not
        have, DependencyUnavailableError when the issuer cannot be asked and nothing usable is
        cached."""
        cached = self._keys
        now = self._clock()
        if (
            cached is not None
            and kid in cached.keys
            and now - cached.fetched_at < self._refresh_seconds
        ):
            return cached.keys[kid]
        servable = self._servable(cached, kid, now)
        if servable is not None:
            # A scheduled refresh is made by one request; while it waits for the issuer (up to
            # the fetch timeout), the others go on with the cached key instead of queueing.
            if not self._lock.acquire(blocking=False):
                return servable
        else:
            self._lock.acquire()
        try:
            now = self._clock()
            cached = self._keys
            fresh = cached is not None and now - cached.fetched_at < self._refresh_seconds
            if cached is not None and kid in cached.keys and fresh:
                return cached.keys[kid]  # another thread refreshed while this one waited
            if now >= self._quiet_until:
                try:
                    self._refresh(now)
                except IssuerFetchError as error:
                    self._quiet_until, self._last_failed = now + self._cooldown_seconds, True
                    _log.warning("cannot read the issuer's signing keys: %s", error)
                except ConfigurationError:
                    self._quiet_until, self._last_failed = now + self._cooldown_seconds, True
                    raise
                else:
                    self._last_failed = False
                    if self._keys is None or kid not in self._keys.keys:
                        self._quiet_until = now + self._cooldown_seconds
                cached = self._keys
            return self._from_cache(cached, kid, now)
        finally:
            self._lock.release()

    def _servable(self, cached: _KeySet | None, kid: str, now: float) -> PyJWK | None:
        """The cached key with this kid if the cache is young enough to serve it, stale or
        not (stale while the issuer is unreachable or being read)."""
        usable = self._refresh_seconds + self._max_stale_seconds
        if cached is not None and kid in cached.keys and now - cached.fetched_at < usable:
            return cached.keys[kid]
        return None

    def _from_cache(self, cached: _KeySet | None, kid: str, now: float) -> PyJWK:
        servable = self._servable(cached, kid, now)
        if servable is not None:
            return servable
        if self._last_failed or cached is None:
            raise DependencyUnavailableError(
                IDENTITY_PROVIDER,
                "the token issuer's signing keys cannot be read",
                retry_after_seconds=RETRY_AFTER_SECONDS,
            )
        raise InvalidTokenError(
            "the token is signed with a key the issuer does not publish; get a new token",
            f"kid {kid!r} is not in the issuer's JWKS",
        )

    def _refresh(self, now: float) -> None:
        """Read the JWKS (discovering its URL first, once) and replace the cached keys."""
        jwks_uri = self._jwks_uri or self._discover()
        try:
            document = self._fetch(jwks_uri)
        except IssuerFetchError:
            self._jwks_uri = None  # the next refresh reads the discovery document again
            raise
        keys = parse_jwks(document)
        self._jwks_uri = jwks_uri
        self._keys = _KeySet(keys, now)
        self.fetches += 1
        self.generation += 1  # tokens validated with the previous key set are judged again

    def _discover(self) -> str:
        url = self.issuer.rstrip("/") + "/.well-known/openid-configuration"
        document = self._fetch(url)
        if not isinstance(document, dict):
            raise IssuerFetchError(f"{url} is not a JSON object")
        if document.get("issuer") != self.issuer:
            # A misconfiguration, not an outage: for Entra ID use the tenant id, not a domain.
            raise ConfigurationError(
                "AUTH_ISSUER",
                f"is {self.issuer!r} but the issuer's discovery document names "
                f"{document.get('issuer')!r}; they must be equal",
            )
        jwks_uri = document.get("jwks_uri")
        if not isinstance(jwks_uri, str):
            raise IssuerFetchError(f"{url} has no jwks_uri")
        scheme = urllib.parse.urlsplit(jwks_uri).scheme
        if scheme != "https" and not (
            scheme == "http" and self._allow_http and is_loopback_url(jwks_uri)
        ):
            raise IssuerFetchError(f"jwks_uri {jwks_uri!r} is not https")
        return jwks_uri


def parse_jwks(document: Any) -> dict[str, PyJWK]:
    """Signing keys by kid from a JWKS document: RSA (RS256) and EC P-256 (ES256) keys with a
    ``kid``, ``use`` absent or ``sig``; other keys are skipped. Raises IssuerFetchError when
    none is usable."""
    from jwt import PyJWK
    from jwt.exceptions import PyJWTError

    entries = document.get("keys") if isinstance(document, dict) else None
    if not isinstance(entries, list):
        raise IssuerFetchError("the JWKS has no keys array")
    keys: dict[str, PyJWK] = {}
    for entry in entries:
        if not isinstance(entry, dict) or not isinstance(entry.get("kid"), str):
            continue
        if entry.get("use", "sig") != "sig" or entry.get("kty") not in ("RSA", "EC"):
            continue
        try:
            key = PyJWK(entry)
        except PyJWTError:
            continue
        if key.algorithm_name in ALLOWED_ALGORITHMS:
            keys[entry["kid"]] = key
    if not keys:
        raise IssuerFetchError("the JWKS has no usable RS256/ES256 signing key")
    return keys


def bearer_token(authorization: str | None) -> str:
    """The token in an ``Authorization: Bearer <token>`` header. Raises
    AuthenticationRequiredError when the header is missing, uses another scheme or is
    malformed."""
    if authorization is None or not authorization.strip():
        raise AuthenticationRequiredError(
            "this operation needs a bearer token: send Authorization: Bearer <token>"
        )
    match = _BEARER.match(authorization)
    if match is None:
        if authorization.split(" ", 1)[0].lower() != "bearer":
            raise AuthenticationRequiredError(
                "only bearer tokens are accepted: send Authorization: Bearer <token>"
            )
        raise AuthenticationRequiredError(
            "the Authorization header is malformed: send Authorization: Bearer <token>"
        )
    return match.group(1)


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise ValueError(f"duplicate member {key!r}")
        result[key] = value
    return result


def _segment(segment: str, what: str) -> dict[str, Any]:
    if not _SEGMENT.match(segment):
        raise InvalidTokenError("the token is malformed", f"the {what} is not base64url")
    try:
        raw = base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
        value = json.loads(raw, object_pairs_hook=_no_duplicates)
    except (binascii.Error, ValueError, RecursionError) as error:
        raise InvalidTokenError("the token is malformed", f"the {what}: {error}") from None
    if not isinstance(value, dict):
        raise InvalidTokenError("the token is malformed", f"the {what} is not a JSON object")
    return value


class TokenValidator:
    """Validates access tokens of one issuer for one audience (module docstring)."""

    def __init__(
        self,
        issuer: str,
        audience: str,
        *,
        customer_claim: str = "sub",
        keys: SigningKeys | None = None,
        leeway_seconds: float = LEEWAY_SECONDS,
        cache_size: int = VALIDATED_CACHE_SIZE,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.issuer = issuer
        self.audience = audience
        self.customer_claim = customer_claim
        self.keys = keys or SigningKeys(issuer)
        self.leeway_seconds = leeway_seconds
        self._cache_size = cache_size
        self._wall_clock = wall_clock
        # token -> (caller, valid until (wall clock), key-set generation it was checked with)
        self._validated: OrderedDict[str, tuple[Caller, float, int]] = OrderedDict()
        self._cache_lock = threading.Lock()
        self.cache_hits = 0  # tests and benchmarks read it

    def validate(self, token: str, *, cached: bool = True) -> Caller:
        """The caller a token names, or InvalidTokenError (DependencyUnavailableError when the
        issuer's keys cannot be read).

        A client sends the same token for up to an hour, so a token that passed every check is
        remembered (``cached``; at most ``VALIDATED_CACHE_SIZE``): the same string is accepted
        again without parsing or crypto until its ``exp`` (plus the leeway) passes, or until the
        issuer's keys are due for a refresh or read again (a key that left the JWKS takes its
        tokens with it). Only
        the exact string that was verified is ever looked up; a refusal is never remembered."""
        if len(token) > MAX_TOKEN_BYTES:
            raise InvalidTokenError(
                "the token is too large", f"{len(token)} bytes > {MAX_TOKEN_BYTES}"
            )
        if cached:
            hit = self._remembered(token)
            if hit is not None:
                return hit
        caller, expires = self._validated_caller(token)
        if cached and self._cache_size > 0:
            with self._cache_lock:
                self._validated[token] = (caller, expires, self.keys.generation)
                self._validated.move_to_end(token)
                while len(self._validated) > self._cache_size:
                    self._validated.popitem(last=False)
        return caller

    def _remembered(self, token: str) -> Caller | None:
        with self._cache_lock:
            entry = self._validated.get(token)
            if entry is None:
                return None
            caller, expires, generation = entry
            stale = generation != self.keys.generation or not self.keys.fresh()
            if stale or self._wall_clock() >= expires:
                del self._validated[token]
                return None
            self._validated.move_to_end(token)
            self.cache_hits += 1
            return caller

    def _validated_caller(self, token: str) -> tuple[Caller, float]:
        """Every check of the module docstring; the caller and until when the token is valid."""
        segments = token.split(".")
        if len(segments) != 3:
            raise InvalidTokenError(
                "the token is malformed", f"{len(segments)} segments, expected a signed JWT"
            )
        header = _segment(segments[0], "header")
        _segment(segments[1], "payload")  # duplicates and syntax, before any crypto
        algorithm = header.get("alg")
        if algorithm not in ALLOWED_ALGORITHMS:
            raise InvalidTokenError(
                "the token's signing algorithm is not accepted (RS256 or ES256 only)",
                f"alg {algorithm!r}",
            )
        if "crit" in header:
            raise InvalidTokenError("the token is not accepted", "crit header present")
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid or len(kid) > 256:
            raise InvalidTokenError("the token has no key id (kid)", f"kid {kid!r}")
        key = self.keys.key(kid)
        claims = self._verified_claims(token, key, algorithm)
        return self._caller(claims), float(claims["exp"]) + self.leeway_seconds

    def _verified_claims(self, token: str, key: PyJWK, algorithm: str) -> dict[str, Any]:
        import jwt

        try:
            return jwt.decode(
                token,
                key,
                algorithms=[algorithm],
                audience=self.audience,
                issuer=self.issuer,
                leeway=self.leeway_seconds,
                options={"require": ["exp", "iss", "aud", "sub"], "strict_aud": True},
            )
        except jwt.ExpiredSignatureError:
            raise InvalidTokenError("the token has expired; get a new one", "exp passed") from None
        except jwt.ImmatureSignatureError:
            raise InvalidTokenError(
                "the token is not valid yet (nbf/iat in the future)", "nbf or iat in the future"
            ) from None
        except jwt.InvalidAudienceError as error:
            raise InvalidTokenError(
                f"the token is for another audience; request one for {self.audience}",
                f"aud: {error}",
            ) from None
        except jwt.InvalidIssuerError as error:
            raise InvalidTokenError(
                f"the token is from another issuer; this API accepts tokens of {self.issuer}",
                f"iss: {error}",
            ) from None
        except jwt.MissingRequiredClaimError as error:
            raise InvalidTokenError(
                f"the token lacks the {error.claim} claim", f"missing {error.claim}"
            ) from None
        except jwt.InvalidSignatureError:
            raise InvalidTokenError(
                "the token's signature is invalid", "signature verification failed"
            ) from None
        except jwt.PyJWTError as error:
            raise InvalidTokenError(
                "the token is invalid", f"{type(error).__name__}: {error}"
            ) from None

    def _caller(self, claims: Mapping[str, Any]) -> Caller:
        subject = claims["sub"]
        scp = claims.get("scp", "")
        roles = claims.get("roles", [])
        client_id = claims.get("azp", claims.get("appid"))
        customer = claims.get(self.customer_claim)
        if not isinstance(subject, str) or not subject:
            raise InvalidTokenError("the token's sub claim is invalid", "sub is not a string")
        if not isinstance(scp, str):
            raise InvalidTokenError("the token's scp claim is invalid", "scp is not a string")
        if not isinstance(roles, list) or not all(isinstance(role, str) for role in roles):
            raise InvalidTokenError(
                "the token's roles claim is invalid", "roles is not a list of strings"
            )
        return Caller(
            subject=subject,
            client_id=client_id if isinstance(client_id, str) else None,
            scopes=frozenset(scp.split()),
            roles=frozenset(roles),
            customer=customer if isinstance(customer, str) and customer else None,
        )


@cache
def token_validator() -> TokenValidator:
    """The process-wide validator for the configured issuer; ConfigurationError when the
    app has no issuer or audience configured (protected routes then answer 503)."""
    settings = get_settings()
    if settings.auth_issuer is None or settings.auth_audience is None:
        raise ConfigurationError(
            "AUTH_ISSUER",
            "and AUTH_AUDIENCE are required: every protected route validates bearer tokens",
        )
    keys = SigningKeys(settings.auth_issuer, allow_http=settings.environment == "local")
    return TokenValidator(
        settings.auth_issuer,
        settings.auth_audience,
        customer_claim=settings.auth_customer_claim,
        keys=keys,
    )


@on_reset
def reset_token_validator() -> None:
    """Forget the validator and its cached keys (tests, or after changing settings)."""
    token_validator.cache_clear()
