"""SecretStore against Key Vault's protocol: the real SecretClient over HTTPS to the fake vault.

Time is a controllable clock, so TTL and outage windows need no sleeping.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor, wait
from pathlib import Path

import pytest
import trustme
from azure.keyvault.secrets import SecretClient

from shared.errors import DependencyUnavailableError, SecretNotFoundError
from shared.names import PAYMENT_WEBHOOK_SECRET
from shared.secrets import FAILED_REFRESH_RETRY_SECONDS, SecretStore, SecretVersions
from tests.fixtures.keyvault import FakeKeyVault, StaticTokenCredential, make_secret_client

pytestmark = pytest.mark.integration

TTL = 60.0
NAME = PAYMENT_WEBHOOK_SECRET
LOGGER = "orderflow.secrets"


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def store(keyvault_secret_client: SecretClient, clock: FakeClock) -> SecretStore:
    return SecretStore(client=keyvault_secret_client, ttl_seconds=TTL, clock=clock)


def records(caplog: pytest.LogCaptureFixture, level: int) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == LOGGER and r.levelno == level]


def test_challenge_then_bearer_token_for_the_vault_scope(
    fake_keyvault: FakeKeyVault, keyvault_ca_path: Path
) -> None:
    fake_keyvault.set_secret(NAME, "s3cret")
    credential = StaticTokenCredential(fake_keyvault.token)
    client = SecretClient(
        fake_keyvault.url,
        credential=credential,
        verify_challenge_resource=False,
        connection_verify=str(keyvault_ca_path),
    )
    try:
        assert SecretStore(client=client, ttl_seconds=TTL).get(NAME) == "s3cret"
    finally:
        client.close()
    assert credential.scopes == ["https://vault.azure.net/.default"]
    # Without a token first (the challenge), unless this process already met a vault on this port.
    assert [r.authorized for r in fake_keyvault.requests] in ([False, True], [True])


def test_fresh_hit_makes_no_request(fake_keyvault: FakeKeyVault, store: SecretStore) -> None:
    fake_keyvault.set_secret(NAME, "v1")

    assert store.get(NAME) == "v1"
    for _ in range(5):
        assert store.get(NAME) == "v1"

    assert fake_keyvault.count() == 1
    assert fake_keyvault.count("get_secret") == 1


def test_ttl_expiry_refetches(
    fake_keyvault: FakeKeyVault, store: SecretStore, clock: FakeClock
) -> None:
    fake_keyvault.set_secret(NAME, "v1")
    assert store.get(NAME) == "v1"
    fake_keyvault.set_secret(NAME, "v2")

    clock.advance(TTL - 1)
    assert store.get(NAME) == "v1"
    assert fake_keyvault.count() == 1

    clock.advance(1)
    assert store.get(NAME) == "v2"
    assert fake_keyvault.count() == 2


def test_stale_value_served_while_the_vault_is_down(
    fake_keyvault: FakeKeyVault,
    store: SecretStore,
    clock: FakeClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    fake_keyvault.set_secret(NAME, "v1")
    assert store.get(NAME) == "v1"
    fake_keyvault.stop()
    clock.advance(TTL + 5)

    assert store.get(NAME) == "v1"

    [warning] = records(caplog, logging.WARNING)
    assert NAME in warning.getMessage()
    assert "65 s old" in warning.getMessage()
    assert warning.stale_age_seconds == 65.0  # type: ignore[attr-defined]

    fake_keyvault.set_secret(NAME, "v2")
    fake_keyvault.start()  # same port: the vault is back
    clock.advance(FAILED_REFRESH_RETRY_SECONDS)
    assert store.get(NAME) == "v2"
    assert len(records(caplog, logging.WARNING)) == 1


def _closed_connection(vault: FakeKeyVault) -> None:
    vault.fail_with_closed_connections()


@pytest.mark.parametrize(
    "break_vault",
    [
        pytest.param(lambda vault: vault.fail(503), id="503"),
        pytest.param(lambda vault: vault.fail(500), id="500"),
        pytest.param(lambda vault: vault.fail(429, retry_after=1), id="429"),
        pytest.param(_closed_connection, id="closed-connection"),
    ],
)
def test_transient_failure_serves_stale_and_asks_again_only_after_the_retry_interval(
    fake_keyvault: FakeKeyVault,
    store: SecretStore,
    clock: FakeClock,
    caplog: pytest.LogCaptureFixture,
    break_vault: Callable[[FakeKeyVault], None],
) -> None:
    fake_keyvault.set_secret(NAME, "v1")
    assert store.get(NAME) == "v1"
    break_vault(fake_keyvault)
    clock.advance(TTL)

    assert store.get(NAME) == "v1"
    assert fake_keyvault.count("get_secret") == 2
    assert len(records(caplog, logging.WARNING)) == 1

    # During the retry interval the stale copy is served without asking the failing vault.
    clock.advance(FAILED_REFRESH_RETRY_SECONDS - 1)
    for _ in range(3):
        assert store.get(NAME) == "v1"
    assert fake_keyvault.count("get_secret") == 2

    fake_keyvault.heal()
    fake_keyvault.set_secret(NAME, "v2")
    clock.advance(1)
    assert store.get(NAME) == "v2"
    assert fake_keyvault.count("get_secret") == 3


def test_timeout_serves_stale(
    fake_keyvault: FakeKeyVault, keyvault_ca_path: Path, clock: FakeClock
) -> None:
    client = make_secret_client(fake_keyvault, keyvault_ca_path, read_timeout=0.3)
    try:
        store = SecretStore(client=client, ttl_seconds=TTL, clock=clock)
        fake_keyvault.set_secret(NAME, "v1")
        assert store.get(NAME) == "v1"
        fake_keyvault.hold_requests()
        clock.advance(TTL)

        started = time.monotonic()
        assert store.get(NAME) == "v1"
        assert time.monotonic() - started < 3
        assert fake_keyvault.count("get_secret") == 2
    finally:
        fake_keyvault.release_held()
        client.close()


def test_cold_cache_and_vault_down_raises_dependency_unavailable(
    fake_keyvault: FakeKeyVault, store: SecretStore
) -> None:
    fake_keyvault.set_secret(NAME, "v1")
    fake_keyvault.stop()

    with pytest.raises(DependencyUnavailableError) as raised:
        store.get(NAME)

    assert raised.value.dependency == "Key Vault"
    assert NAME in raised.value.detail


def test_cold_cache_and_throttled_passes_retry_after_on(
    fake_keyvault: FakeKeyVault, store: SecretStore
) -> None:
    fake_keyvault.set_secret(NAME, "v1")
    fake_keyvault.fail(429, retry_after=7)

    with pytest.raises(DependencyUnavailableError) as raised:
        store.get_versions(NAME)

    assert raised.value.retry_after_seconds == 7


def test_stale_copy_is_served_only_up_to_max_stale(
    fake_keyvault: FakeKeyVault, keyvault_secret_client: SecretClient, clock: FakeClock
) -> None:
    store = SecretStore(
        client=keyvault_secret_client, ttl_seconds=TTL, max_stale_seconds=100, clock=clock
    )
    fake_keyvault.set_secret(NAME, "v1")
    assert store.get(NAME) == "v1"
    fake_keyvault.fail(503)

    clock.advance(100)
    assert store.get(NAME) == "v1"
    clock.advance(FAILED_REFRESH_RETRY_SECONDS)
    with pytest.raises(DependencyUnavailableError, match="too old"):
        store.get(NAME)


def test_missing_secret_raises_secret_not_found(
    fake_keyvault: FakeKeyVault, store: SecretStore
) -> None:
    with pytest.raises(SecretNotFoundError) as raised:
        store.get("no-such-secret")
    assert raised.value.name == "no-such-secret"


def test_deleted_secret_is_not_served_from_cache(
    fake_keyvault: FakeKeyVault, store: SecretStore, clock: FakeClock
) -> None:
    fake_keyvault.set_secret(NAME, "v1")
    assert store.get(NAME) == "v1"
    fake_keyvault.delete_secret(NAME)
    clock.advance(TTL)

    with pytest.raises(SecretNotFoundError):
        store.get(NAME)
    with pytest.raises(SecretNotFoundError):  # the cached copy is gone too
        store.get(NAME)
    assert fake_keyvault.count("get_secret") == 3


def test_disabled_current_version_is_not_served(
    fake_keyvault: FakeKeyVault, store: SecretStore, clock: FakeClock
) -> None:
    version = fake_keyvault.set_secret(NAME, "v1")
    assert store.get(NAME) == "v1"
    fake_keyvault.update_version(NAME, version, enabled=False)
    clock.advance(TTL)

    with pytest.raises(SecretNotFoundError, match="disabled"):
        store.get(NAME)


def test_access_denied_is_logged_as_error_and_served_stale(
    fake_keyvault: FakeKeyVault,
    store: SecretStore,
    clock: FakeClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    fake_keyvault.set_secret(NAME, "v1")
    assert store.get(NAME) == "v1"
    fake_keyvault.fail(403, inner_code="ForbiddenByRbac")
    clock.advance(TTL)

    assert store.get(NAME) == "v1"

    [error] = records(caplog, logging.ERROR)
    assert "denied" in error.getMessage()
    assert "403" in error.getMessage()


def test_access_denied_on_cold_cache_raises_dependency_unavailable(
    fake_keyvault: FakeKeyVault, store: SecretStore, caplog: pytest.LogCaptureFixture
) -> None:
    fake_keyvault.set_secret(NAME, "v1")
    fake_keyvault.fail(403, inner_code="ForbiddenByRbac")

    with pytest.raises(DependencyUnavailableError):
        store.get(NAME)
    assert len(records(caplog, logging.ERROR)) == 1


def test_rejected_token_raises_dependency_unavailable_and_logs_error(
    fake_keyvault: FakeKeyVault, keyvault_ca_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    fake_keyvault.set_secret(NAME, "v1")
    client = make_secret_client(fake_keyvault, keyvault_ca_path, token="not-the-vault-token")
    try:
        with pytest.raises(DependencyUnavailableError):
            SecretStore(client=client, ttl_seconds=TTL).get(NAME)
    finally:
        client.close()
    [error] = records(caplog, logging.ERROR)
    assert "ClientAuthenticationError 401" in error.getMessage()
    assert fake_keyvault.count() == 0


def test_rotation_serves_new_current_and_old_as_previous_without_extra_reads(
    fake_keyvault: FakeKeyVault, store: SecretStore, clock: FakeClock
) -> None:
    fake_keyvault.set_secret(NAME, "old")
    assert store.get_versions(NAME) == SecretVersions("old", None)
    assert (fake_keyvault.count("get_secret"), fake_keyvault.count("list_versions")) == (1, 1)

    fake_keyvault.set_secret(NAME, "new")
    assert store.get_versions(NAME).current == "old"  # still fresh
    clock.advance(TTL)

    versions = store.get_versions(NAME)

    assert versions == SecretVersions("new", "old")
    assert versions.values == ("new", "old")
    assert store.get(NAME) == "new"
    # The previous value was the cached current one: no read of a specific version needed.
    assert fake_keyvault.count("get_secret") == 2
    assert fake_keyvault.count("list_versions") == 2
    assert fake_keyvault.count("get_secret_version") == 0


def test_previous_is_newest_usable_version_across_pages(
    fake_keyvault: FakeKeyVault, store: SecretStore
) -> None:
    now = int(time.time())
    fake_keyvault.set_secret(NAME, "older", created=now - 200)
    fake_keyvault.set_secret(NAME, "usable", created=now - 100)
    fake_keyvault.set_secret(NAME, "disabled", created=now - 50, enabled=False)
    fake_keyvault.set_secret(NAME, "expired", created=now - 40, expires=now - 1)
    fake_keyvault.set_secret(NAME, "not-yet-active", created=now - 30, not_before=now + 3600)
    fake_keyvault.set_secret(NAME, "current", created=now - 10)

    assert store.get_versions(NAME) == SecretVersions("current", "usable")
    assert fake_keyvault.count("list_versions") == 3  # 6 versions, pages of 2
    assert fake_keyvault.count("get_secret_version") == 1


def test_get_versions_after_get_lists_versions_once(
    fake_keyvault: FakeKeyVault, store: SecretStore, clock: FakeClock
) -> None:
    fake_keyvault.set_secret(NAME, "old")
    fake_keyvault.set_secret(NAME, "new")
    assert store.get(NAME) == "new"

    assert store.get_versions(NAME) == SecretVersions("new", "old")
    assert store.get_versions(NAME) == SecretVersions("new", "old")
    clock.advance(TTL)
    assert store.get_versions(NAME) == SecretVersions("new", "old")

    assert fake_keyvault.count("get_secret") == 3
    assert fake_keyvault.count("list_versions") == 2
    assert fake_keyvault.count("get_secret_version") == 1


def test_probe_is_served_from_a_fresh_cache(
    fake_keyvault: FakeKeyVault, store: SecretStore
) -> None:
    fake_keyvault.set_secret(NAME, "v1")
    store.get_versions(NAME)
    calls = fake_keyvault.count()

    store.probe()
    fake_keyvault.stop()
    store.probe()

    assert fake_keyvault.count() == calls


def test_probe_raises_dependency_unavailable_for_missing_or_unreachable_secret(
    fake_keyvault: FakeKeyVault, store: SecretStore
) -> None:
    with pytest.raises(DependencyUnavailableError, match="not found"):
        store.probe()
    fake_keyvault.set_secret(NAME, "v1")
    fake_keyvault.stop()
    with pytest.raises(DependencyUnavailableError):
        store.probe()


@pytest.fixture
def pool() -> Iterator[ThreadPoolExecutor]:
    with ThreadPoolExecutor(max_workers=8) as executor:
        yield executor


def test_concurrent_callers_of_an_expired_secret_share_one_fetch(
    fake_keyvault: FakeKeyVault, store: SecretStore, clock: FakeClock, pool: ThreadPoolExecutor
) -> None:
    fake_keyvault.set_secret(NAME, "v1")
    assert store.get(NAME) == "v1"
    fake_keyvault.set_secret(NAME, "v2")
    clock.advance(TTL)
    fake_keyvault.hold_requests()
    try:
        futures = [pool.submit(store.get, NAME) for _ in range(8)]
        fake_keyvault.wait_for_held(1)
        # Everyone is blocked behind the one held fetch (none can finish before the release).
        _, still_running = wait(futures, timeout=0.2)
        assert len(still_running) == 8
    finally:
        fake_keyvault.release_held()

    assert [future.result(timeout=10) for future in futures] == ["v2"] * 8
    assert fake_keyvault.count("get_secret") == 2


def test_concurrent_callers_on_a_cold_cache_share_one_failure(
    fake_keyvault: FakeKeyVault, store: SecretStore, pool: ThreadPoolExecutor
) -> None:
    fake_keyvault.set_secret(NAME, "v1")
    fake_keyvault.fail(503)
    fake_keyvault.hold_requests()
    try:
        futures = [pool.submit(store.get_versions, NAME) for _ in range(6)]
        fake_keyvault.wait_for_held(1)
        _, still_running = wait(futures, timeout=0.2)
        assert len(still_running) == 6
    finally:
        fake_keyvault.release_held()

    for future in futures:
        with pytest.raises(DependencyUnavailableError):
            future.result(timeout=10)
    assert fake_keyvault.count("get_secret") == 1


def test_stopping_the_vault_leaves_no_thread_running(
    keyvault_ca: trustme.CA, keyvault_ca_path: Path
) -> None:
    before = set(threading.enumerate())
    vault = FakeKeyVault(keyvault_ca)
    with vault:
        vault.set_secret(NAME, "v1")
        client = make_secret_client(vault, keyvault_ca_path)
        try:
            SecretStore(client=client, ttl_seconds=TTL).get(NAME)
        finally:
            client.close()
    assert set(threading.enumerate()) - before == set()


def test_a_single_failure_is_absorbed_by_the_sdk_retry_policy(
    fake_keyvault: FakeKeyVault,
    keyvault_ca_path: Path,
    clock: FakeClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    client = make_secret_client(fake_keyvault, keyvault_ca_path, retry_total=1)
    try:
        store = SecretStore(client=client, ttl_seconds=TTL, clock=clock)
        fake_keyvault.set_secret(NAME, "v1")
        assert store.get(NAME) == "v1"
        fake_keyvault.set_secret(NAME, "v2")
        fake_keyvault.fail(503, times=1)
        clock.advance(TTL)

        assert store.get(NAME) == "v2"
    finally:
        client.close()
    assert fake_keyvault.count("get_secret") == 3
    assert records(caplog, logging.WARNING) == []
