"""The bearer-token validator and the signing-key cache, with keys this test makes: every hostile
token the issue lists, and the cache's refresh, cooldown and stale-on-error behaviour. The
issuer is a dictionary of documents here; tests/e2e/test_auth*.py use the real local issuer."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from shared.auth.policy import Caller
from shared.auth.tokens import (
    MAX_TOKEN_BYTES,
    IssuerFetchError,
    SigningKeys,
    TokenValidator,
    bearer_token,
)
from shared.errors import (
    AuthenticationRequiredError,
    ConfigurationError,
    DependencyUnavailableError,
    InvalidTokenError,
)

ISSUER = "https://login.example.test/tenant-1/v2.0"
AUDIENCE = "api://orderflow-test"
DISCOVERY = f"{ISSUER}/.well-known/openid-configuration"
JWKS = "https://login.example.test/tenant-1/discovery/v2.0/keys"


def _rsa() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


RSA_KEY = _rsa()
OTHER_RSA_KEY = _rsa()
EC_KEY = ec.generate_private_key(ec.SECP256R1())


def _jwk(key: Any, kid: str) -> dict[str, Any]:
    public = key.public_key()
    text = (
        RSAAlgorithm.to_jwk(public)
        if isinstance(key, rsa.RSAPrivateKey)
        else ECAlgorithm.to_jwk(public)
    )
    return {**json.loads(text), "kid": kid, "use": "sig"}


class Issuer:
    """Discovery and JWKS documents by URL; ``down`` makes every fetch fail."""

    def __init__(self, *keys: tuple[Any, str]) -> None:
        self.keys = list(keys)
        self.down = False
        self.calls: list[str] = []

    def fetch(self, url: str) -> Any:
        self.calls.append(url)
        if self.down:
            raise IssuerFetchError("connection refused")
        if url == DISCOVERY:
            return {"issuer": ISSUER, "jwks_uri": JWKS}
        if url == JWKS:
            return {"keys": [_jwk(key, kid) for key, kid in self.keys]}
        raise IssuerFetchError(f"404 {url}")


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _claims(**overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    claims: dict[str, Any] = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": "alice",
        "azp": "client-1",
        "iat": now,
        "nbf": now,
        "exp": now + 600,
        "scp": "Orders.ReadWrite",
    }
    claims.update(overrides)
    return {key: value for key, value in claims.items() if value is not None}


def sign(
    claims: dict[str, Any] | None = None,
    *,
    key: Any = RSA_KEY,
    kid: str | None = "k1",
    algorithm: str = "RS256",
    headers: dict[str, Any] | None = None,
) -> str:
    extra = dict(headers or {})
    if kid is not None:
        extra["kid"] = kid
    return jwt.encode(claims or _claims(), key, algorithm=algorithm, headers=extra)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _validator(issuer: Issuer, clock: Clock | None = None, **options: Any) -> TokenValidator:
    keys = SigningKeys(ISSUER, fetch=issuer.fetch, clock=clock or Clock(), **options)
    return TokenValidator(ISSUER, AUDIENCE, keys=keys)


@pytest.fixture
def issuer() -> Issuer:
    return Issuer((RSA_KEY, "k1"), (EC_KEY, "e1"))


def _refused(validator: TokenValidator, token: str) -> InvalidTokenError:
    with pytest.raises(InvalidTokenError) as caught:
        validator.validate(token)
    if len(token) > 8:  # a short token's text may occur in any message
        assert token not in caught.value.detail
        assert token not in caught.value.reason
    return caught.value


# ------------------------------------------------------------------ valid tokens


def test_a_valid_rs256_token_names_its_caller(issuer: Issuer) -> None:
    caller = _validator(issuer).validate(sign(_claims(roles=["Imports.Read"])))
    assert caller == Caller(
        subject="alice",
        client_id="client-1",
        scopes=frozenset({"Orders.ReadWrite"}),
        roles=frozenset({"Imports.Read"}),
        customer="alice",
    )


def test_a_valid_es256_token_is_accepted(issuer: Issuer) -> None:
    token = sign(key=EC_KEY, kid="e1", algorithm="ES256")
    assert _validator(issuer).validate(token).subject == "alice"


def test_v1_tokens_name_the_client_in_appid_and_the_customer_claim_is_configurable(
    issuer: Issuer,
) -> None:
    keys = SigningKeys(ISSUER, fetch=issuer.fetch)
    validator = TokenValidator(ISSUER, AUDIENCE, customer_claim="oid", keys=keys)
    caller = validator.validate(sign(_claims(azp=None, appid="legacy-app", oid="oid-7")))
    assert (caller.client_id, caller.customer) == ("legacy-app", "oid-7")
    assert validator.validate(sign(_claims())).customer is None  # no oid claim


# ------------------------------------------------------------------ hostile tokens


@dataclass(frozen=True)
class FromNow:
    """A time claim relative to when the test runs, not to collection: a full run collects
    minutes before it gets here, which would let "600 s from now" pass as valid."""

    seconds: int


@pytest.mark.parametrize(
    ("overrides", "hint"),
    [
        ({"exp": FromNow(-120)}, "expired"),
        ({"nbf": FromNow(600)}, "not valid yet"),
        ({"iat": FromNow(600)}, "not valid yet"),
        ({"iss": "https://login.example.test/other/v2.0"}, "another issuer"),
        ({"iss": ISSUER + "/"}, "another issuer"),  # exact comparison, no normalisation
        ({"aud": "api://someone-else"}, "another audience"),
        ({"aud": [AUDIENCE, "api://other"]}, "audience"),  # strict: one audience, this one
        ({"exp": None}, "exp"),
        ({"sub": None}, "sub"),
        ({"aud": None}, "aud"),
        ({"scp": ["Orders.ReadWrite"]}, "scp"),
        ({"roles": "Orders.ReadWrite.All"}, "roles"),
        ({"roles": [1, 2]}, "roles"),
    ],
)
def test_claims_are_checked(issuer: Issuer, overrides: dict[str, Any], hint: str) -> None:
    now = int(time.time())
    claims = {k: now + v.seconds if isinstance(v, FromNow) else v for k, v in overrides.items()}
    error = _refused(_validator(issuer), sign(_claims(**claims)))
    assert hint in error.detail


def test_a_small_clock_skew_is_tolerated(issuer: Issuer) -> None:
    token = sign(_claims(exp=int(time.time()) - 10, nbf=int(time.time()) + 10))
    assert _validator(issuer).validate(token).subject == "alice"


def test_alg_none_is_refused_before_any_key_lookup(issuer: Issuer) -> None:
    header = _b64(json.dumps({"alg": "none", "kid": "k1"}).encode())
    payload = _b64(json.dumps(_claims()).encode())
    validator = _validator(issuer)
    assert "algorithm" in _refused(validator, f"{header}.{payload}.").detail
    assert issuer.calls == []


def test_hs256_signed_with_the_public_key_is_refused(issuer: Issuer) -> None:
    """The classic algorithm confusion: an HMAC 'signature' keyed with the published key."""
    public_pem = RSA_KEY.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    header = _b64(json.dumps({"alg": "HS256", "kid": "k1", "typ": "JWT"}).encode())
    payload = _b64(json.dumps(_claims()).encode())
    import hashlib
    import hmac

    mac = hmac.new(public_pem, f"{header}.{payload}".encode(), hashlib.sha256).digest()
    validator = _validator(issuer)
    assert "algorithm" in _refused(validator, f"{header}.{payload}.{_b64(mac)}").detail
    assert issuer.calls == []


def test_an_rs256_header_on_an_ec_key_is_refused(issuer: Issuer) -> None:
    """The key's own type fixes the algorithm: a token cannot pick another one for it."""
    token = sign(key=RSA_KEY, kid="e1", algorithm="RS256")
    _refused(_validator(issuer), token)


@pytest.mark.parametrize("algorithm", ["RS384", "PS256", "ES384", "HS512", "EdDSA"])
def test_only_rs256_and_es256_are_accepted(issuer: Issuer, algorithm: str) -> None:
    header = _b64(json.dumps({"alg": algorithm, "kid": "k1"}).encode())
    payload = _b64(json.dumps(_claims()).encode())
    assert "algorithm" in _refused(_validator(issuer), f"{header}.{payload}.c2ln").detail


def test_a_wrong_signature_is_refused(issuer: Issuer) -> None:
    forged = sign(key=OTHER_RSA_KEY, kid="k1")
    assert "signature" in _refused(_validator(issuer), forged).detail
    good = sign()
    tampered_payload = _b64(json.dumps(_claims(sub="mallory")).encode())
    header, _, signature = good.split(".")
    assert (
        "signature"
        in _refused(_validator(issuer), f"{header}.{tampered_payload}.{signature}").detail
    )


@pytest.mark.parametrize(
    "token",
    [
        "",
        "abc",
        "a.b",
        "a.b.c.d",
        "!!!.e30.sig",
        f"{_b64(b'not json')}.{_b64(b'{}')}.c2ln",
        f"{_b64(b'[1]')}.{_b64(b'{}')}.c2ln",
        f"{_b64(json.dumps({'alg': 'RS256', 'kid': 'k1'}).encode())}.{_b64(b'[]')}.c2ln",
        f"{_b64(json.dumps({'alg': 'RS256', 'kid': 'k1'}).encode())}.@@@.c2ln",
    ],
)
def test_malformed_tokens_are_refused(issuer: Issuer, token: str) -> None:
    _refused(_validator(issuer), token)


def test_an_oversized_token_is_refused_without_parsing(issuer: Issuer) -> None:
    token = sign(_claims(padding="x" * MAX_TOKEN_BYTES))
    assert "too large" in _refused(_validator(issuer), token).detail
    assert issuer.calls == []


def test_duplicate_claims_are_refused(issuer: Issuer) -> None:
    """PyJWT would keep the last "aud"; another parser the first: the token is ambiguous."""
    header = _b64(json.dumps({"alg": "RS256", "kid": "k1", "typ": "JWT"}).encode())
    claims = json.dumps(_claims())[:-1] + ', "aud": "api://someone-else"}'
    payload = _b64(claims.encode())
    signing_input = f"{header}.{payload}".encode()
    signature = RSAAlgorithm(RSAAlgorithm.SHA256).sign(signing_input, RSA_KEY)
    error = _refused(_validator(issuer), f"{header}.{payload}.{_b64(signature)}")
    assert "duplicate" in error.reason


def test_duplicate_header_members_are_refused(issuer: Issuer) -> None:
    header = _b64(b'{"alg": "RS256", "kid": "k1", "kid": "e1"}')
    payload = _b64(json.dumps(_claims()).encode())
    assert "duplicate" in _refused(_validator(issuer), f"{header}.{payload}.c2ln").reason


def test_a_token_without_kid_or_with_crit_is_refused(issuer: Issuer) -> None:
    assert "kid" in _refused(_validator(issuer), sign(kid=None)).detail
    _refused(_validator(issuer), sign(headers={"crit": ["exp"], "exp": 1}))


# ------------------------------------------------------------------ the key cache


def test_keys_are_discovered_once_and_cached(issuer: Issuer) -> None:
    validator = _validator(issuer)
    for _ in range(5):
        validator.validate(sign())
    assert issuer.calls == [DISCOVERY, JWKS]


def test_an_unknown_kid_refreshes_once_then_waits_for_the_cooldown(issuer: Issuer) -> None:
    clock = Clock()
    validator = _validator(issuer, clock, cooldown_seconds=5.0)
    validator.validate(sign())
    issuer.calls.clear()
    for number in range(50):  # a flood of made-up kids
        clock.now += 0.01
        _refused(validator, sign(kid=f"bogus-{number}"))
    assert issuer.calls == [JWKS]  # the first one looked; the rest came within the cooldown
    clock.now += 5
    _refused(validator, sign(kid="bogus-late"))
    assert issuer.calls == [JWKS, JWKS]
    assert validator.validate(sign()).subject == "alice"  # known keys never wait


def test_rotation_new_key_works_at_once_old_keeps_working_until_it_leaves(issuer: Issuer) -> None:
    clock = Clock()
    validator = _validator(issuer, clock, cooldown_seconds=5.0)
    old_token = sign()
    validator.validate(old_token)
    clock.now += 0.1  # moments after the keys were fetched
    new_key = _rsa()
    issuer.keys.append((new_key, "k2"))  # the issuer publishes the new key, then signs with it
    assert validator.validate(sign(key=new_key, kid="k2")).subject == "alice"
    assert validator.validate(old_token).subject == "alice"
    issuer.keys = [(new_key, "k2")]  # the old key leaves the JWKS
    clock.now += 3601  # the next scheduled refresh
    assert validator.validate(sign(key=new_key, kid="k2")).subject == "alice"
    _refused(validator, old_token)


def test_issuer_down_with_a_warm_cache_serves_the_cached_keys(issuer: Issuer) -> None:
    clock = Clock()
    validator = _validator(issuer, clock)
    validator.validate(sign())
    issuer.down = True
    clock.now += 7200  # past the refresh interval: the refresh fails, the cached keys serve
    assert validator.validate(sign()).subject == "alice"
    assert validator.validate(sign(key=EC_KEY, kid="e1", algorithm="ES256")).subject == "alice"
    # An unknown kid cannot be judged while the issuer is down: 503, not 401.
    with pytest.raises(DependencyUnavailableError):
        validator.validate(sign(kid="unknown"))


def test_issuer_down_with_a_cold_cache_is_unavailable_not_unauthorized(issuer: Issuer) -> None:
    issuer.down = True
    clock = Clock()
    validator = _validator(issuer, clock, cooldown_seconds=5.0)
    with pytest.raises(DependencyUnavailableError) as caught:
        validator.validate(sign())
    assert caught.value.retry_after_seconds > 0
    calls = len(issuer.calls)
    with pytest.raises(DependencyUnavailableError):
        validator.validate(sign())  # within the cooldown: the issuer is not asked again
    assert len(issuer.calls) == calls
    issuer.down = False
    clock.now += 5
    assert validator.validate(sign()).subject == "alice"  # back as soon as the issuer is


def test_cached_keys_expire_after_the_stale_limit(issuer: Issuer) -> None:
    clock = Clock()
    validator = _validator(issuer, clock, refresh_seconds=100, max_stale_seconds=1000)
    validator.validate(sign())
    issuer.down = True
    clock.now += 500
    validator.validate(sign())
    clock.now += 1000
    with pytest.raises(DependencyUnavailableError):
        validator.validate(sign())


def test_a_discovery_document_for_another_issuer_is_a_configuration_error() -> None:
    def fetch(url: str) -> Any:
        return {"issuer": "https://login.example.test/other/v2.0", "jwks_uri": JWKS}

    validator = TokenValidator(ISSUER, AUDIENCE, keys=SigningKeys(ISSUER, fetch=fetch))
    with pytest.raises(ConfigurationError, match="AUTH_ISSUER"):
        validator.validate(sign())


@pytest.mark.parametrize(
    "document",
    [
        {"keys": []},
        {"keys": "nope"},
        {"keys": [{"kty": "oct", "k": "c2VjcmV0", "kid": "k1"}]},  # symmetric: never
        {"keys": [{**_jwk(RSA_KEY, "k1"), "use": "enc"}]},
        {"keys": [{"kty": "RSA", "kid": "k1", "n": "bad", "e": "AQAB"}]},
    ],
)
def test_a_jwks_without_usable_signing_keys_is_an_outage(document: dict[str, Any]) -> None:
    def fetch(url: str) -> Any:
        return {"issuer": ISSUER, "jwks_uri": JWKS} if url == DISCOVERY else document

    validator = TokenValidator(ISSUER, AUDIENCE, keys=SigningKeys(ISSUER, fetch=fetch))
    with pytest.raises(DependencyUnavailableError):
        validator.validate(sign())


def test_a_plain_http_jwks_uri_is_refused_unless_local_and_loopback() -> None:
    documents: dict[str, Callable[[], Any]] = {}

    def fetch(url: str) -> Any:
        return documents[url]()

    local_issuer = "http://127.0.0.1:8091"
    documents[f"{local_issuer}/.well-known/openid-configuration"] = lambda: {
        "issuer": local_issuer,
        "jwks_uri": f"{local_issuer}/jwks",
    }
    documents[f"{local_issuer}/jwks"] = lambda: {"keys": [_jwk(RSA_KEY, "k1")]}
    token = sign(_claims(iss=local_issuer))
    strict = TokenValidator(local_issuer, AUDIENCE, keys=SigningKeys(local_issuer, fetch=fetch))
    with pytest.raises(DependencyUnavailableError):
        strict.validate(token)
    local = TokenValidator(
        local_issuer, AUDIENCE, keys=SigningKeys(local_issuer, fetch=fetch, allow_http=True)
    )
    assert local.validate(token).subject == "alice"


# ------------------------------------------------------------------ the Authorization header


@pytest.mark.parametrize(
    ("header", "token"),
    [("Bearer abc.def.ghi", "abc.def.ghi"), ("bearer   abc.def.ghi", "abc.def.ghi")],
)
def test_bearer_token_from_the_header(header: str, token: str) -> None:
    assert bearer_token(header) == token


@pytest.mark.parametrize(
    "header",
    [None, "", "   ", "Basic dXNlcjpwYXNz", "Bearer", "Bearer a b", "Bearer a\nb", "Token x"],
)
def test_missing_or_malformed_credentials(header: str | None) -> None:
    with pytest.raises(AuthenticationRequiredError):
        bearer_token(header)


def test_an_issuer_that_keeps_timing_out_is_short_circuited_and_probed_on_its_own() -> None:
    """The JWKS/discovery fetch runs under the issuer's breaker: a silent issuer (a listening
    socket that never answers) costs the fetch timeout (or what is left of the deadline) for
    the first few fetches, then fetches fail at once; a refused connection is no timeout."""
    import socket

    from shared.auth.tokens import (
        IssuerFetchError,
        IssuerTimeoutError,
        IssuerUnreachableError,
        _default_fetch,
        fetch_json,
    )
    from shared.resilience import FAILURE_THRESHOLD, deadline, dependency, reset_dependencies

    silent = socket.socket()  # takes connections into its backlog, never answers
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    refused_port = closed.getsockname()[1]
    closed.close()
    url = f"http://127.0.0.1:{silent.getsockname()[1]}/.well-known/openid-configuration"
    reset_dependencies()
    try:
        with pytest.raises(IssuerUnreachableError):
            fetch_json(f"http://127.0.0.1:{refused_port}/", timeout=1)
        for _ in range(FAILURE_THRESHOLD):
            began = time.monotonic()
            with deadline(0.6), pytest.raises(IssuerTimeoutError):
                _default_fetch(url)
            assert time.monotonic() - began < 1.0
        guard = dependency("identity")
        assert guard.breaker.state == "open"
        assert guard.prober is not None
        began = time.monotonic()
        with pytest.raises(IssuerFetchError) as raised:
            _default_fetch(url)
        assert time.monotonic() - began < 0.05
        assert not isinstance(raised.value, IssuerTimeoutError)
        assert guard.prober(0.2) == "timeout"
    finally:
        reset_dependencies()
        silent.close()


# ------------------------------------------------------------------ tokens already validated


def test_a_validated_token_is_remembered_until_its_exp(issuer: Issuer) -> None:
    wall = [time.time()]
    keys = SigningKeys(ISSUER, fetch=issuer.fetch)
    validator = TokenValidator(ISSUER, AUDIENCE, keys=keys, wall_clock=lambda: wall[0])
    token = sign(_claims(exp=int(wall[0]) + 60))
    first = validator.validate(token)
    assert validator.validate(token) == first
    assert validator.cache_hits == 1
    wall[0] += 60 + 31  # past exp and the leeway: judged again (here with the real clock)
    validator.validate(token)
    assert validator.cache_hits == 1


def test_a_refusal_is_never_remembered_and_cached_false_checks_everything(issuer: Issuer) -> None:
    validator = _validator(issuer)
    forged = sign(key=OTHER_RSA_KEY, kid="k1")
    for _ in range(2):
        _refused(validator, forged)
    token = sign()
    validator.validate(token)
    validator.validate(token, cached=False)
    assert validator.cache_hits == 0


def test_the_cache_is_bounded_and_forgets_the_least_recent(issuer: Issuer) -> None:
    keys = SigningKeys(ISSUER, fetch=issuer.fetch)
    validator = TokenValidator(ISSUER, AUDIENCE, keys=keys, cache_size=2)
    tokens = [sign(_claims(sub=f"user-{number}")) for number in range(3)]
    for token in tokens:
        validator.validate(token)
    validator.validate(tokens[2])
    validator.validate(tokens[1])
    assert validator.cache_hits == 2
    validator.validate(tokens[0])  # evicted: validated again
    assert validator.cache_hits == 2


def test_reading_the_keys_again_forgets_validated_tokens(issuer: Issuer) -> None:
    clock = Clock()
    validator = _validator(issuer, clock)
    token = sign()
    validator.validate(token)
    _refused(validator, sign(kid="unknown-kid"))  # a JWKS read
    validator.validate(token)
    assert validator.cache_hits == 0
    clock.now += 3601  # keys due for a refresh: cached tokens wait for it too
    issuer.keys = [(EC_KEY, "e1")]  # ... and k1 is gone by then
    _refused(validator, token)


def test_while_one_request_reads_the_keys_again_the_others_use_the_cached_ones(
    issuer: Issuer,
) -> None:
    """A scheduled refresh waits for the issuer (up to the fetch timeout); requests whose key is
    cached do not queue behind it. A kid nobody has seen still waits for the read."""
    import threading

    clock = Clock()
    keys = SigningKeys(ISSUER, fetch=issuer.fetch, clock=clock)
    cached = keys.key("k1")
    in_fetch, release = threading.Event(), threading.Event()

    def slow_fetch(url: str) -> Any:
        in_fetch.set()
        release.wait(30)
        return issuer.fetch(url)

    keys._fetch = slow_fetch
    clock.now += 3601  # the keys are due for their scheduled refresh
    refreshing = threading.Thread(target=keys.key, args=("k1",))
    refreshing.start()
    try:
        assert in_fetch.wait(10), "the refresh started"
        served: list[Any] = []
        other = threading.Thread(target=lambda: served.append(keys.key("k1")))
        other.start()
        other.join(10)
        assert not other.is_alive(), "a request with a cached key waited for the refresh"
        assert served == [cached]
        outcomes: list[str] = []

        def unknown_kid() -> None:
            try:
                keys.key("k9")
            except InvalidTokenError:
                outcomes.append("refused after the read")

        unknown = threading.Thread(target=unknown_kid)
        unknown.start()
        unknown.join(0.2)
        assert unknown.is_alive(), "a key that must be read waits for the read in progress"
    finally:
        release.set()
        refreshing.join(10)
    unknown.join(10)
    assert not refreshing.is_alive()
    assert not unknown.is_alive()
    assert outcomes == ["refused after the read"]
    assert keys.fresh()
