"""Key Vault unreachable, over real HTTP on the local host: the app reads the webhook secret
from a local Key Vault (tests/fixtures/keyvault.py) with its unmodified ``DefaultAzureCredential``
(tokens from a local managed identity endpoint, as the Functions platform provides them).

- warm cache: the vault is stopped and the cached secret's TTL has run out; the webhook still
  verifies (200, order paid) from the stale copy;
- cold cache: a host started while the vault is down answers 503 with ``Retry-After``
  (problem+json), not 401 and not 500, and nothing changes; once the vault is back, the
  provider's retry is applied.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import pytest
import trustme

from localdev.stack import LocalStack
from shared.names import PAYMENT_WEBHOOK_SECRET
from shared.webhooks import signed_payment_succeeded
from tests.fixtures.app import REPO_ROOT, SAMPLE_SETTINGS, app_environment, timers_disabled
from tests.fixtures.host import HostProcess, HttpResult, run_local_host
from tests.fixtures.keyvault import FakeKeyVault, LocalIdentityEndpoint
from tests.fixtures.stack import start_stack_on_free_ports

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]

VAULT_SECRET = "webhook-secret-from-key-vault"
CACHE_TTL_SECONDS = 1.0
JSON = {"Content-Type": "application/json"}


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    stack = start_stack_on_free_ports(tmp_path_factory.mktemp("keyvault-fault"))
    try:
        stack.provision()
        yield stack
    finally:
        stack.stop()


@pytest.fixture(scope="module")
def vault(keyvault_ca: trustme.CA) -> Iterator[FakeKeyVault]:
    vault = FakeKeyVault(keyvault_ca)
    vault.start()
    vault.set_secret(PAYMENT_WEBHOOK_SECRET, VAULT_SECRET)
    try:
        yield vault
    finally:
        vault.stop()


@pytest.fixture(scope="module")
def identity(vault: FakeKeyVault) -> Iterator[LocalIdentityEndpoint]:
    with LocalIdentityEndpoint(vault.token) as endpoint:
        yield endpoint


@pytest.fixture
def host_env(
    stack: LocalStack, vault: FakeKeyVault, identity: LocalIdentityEndpoint, keyvault_ca_path: Path
) -> dict[str, str]:
    vault.start()  # each test starts with the vault up; tests stop it themselves
    return {
        **app_environment(stack, None),
        **timers_disabled(),
        **identity.app_settings(),
        "KEY_VAULT_URL": vault.url,
        # Set, but not used once a vault is configured: the signature needs the vault's value.
        "PAYMENT_WEBHOOK_SECRET": "local-setting-is-not-the-secret",
        "SECRET_CACHE_TTL_SECONDS": str(CACHE_TTL_SECONDS),
        "REQUESTS_CA_BUNDLE": str(keyvault_ca_path),  # trust the local vault's certificate
    }


def start_host(env: dict[str, str], log: Path) -> AbstractContextManager[HostProcess]:
    return run_local_host(REPO_ROOT, log, env=env, args=["--settings", str(SAMPLE_SETTINGS)])


def place(host: HostProcess) -> dict[str, Any]:
    body = {"lines": [{"sku": "SKU-KV", "quantity": 1, "unitPrice": "4.20"}], "currency": "EUR"}
    response = host.request(
        "POST",
        f"/api/v1/customers/kv-{uuid.uuid4().hex[:8]}/orders",
        body=json.dumps(body).encode(),
        headers=JSON,
    )
    assert response.status == 201, response.body
    order: dict[str, Any] = response.json()
    return order


def pay(host: HostProcess, order: dict[str, Any], event_id: str) -> HttpResult:
    body, headers = signed_payment_succeeded(order, VAULT_SECRET, event_id=event_id)
    # The first read after an outage waits for the SDK's own retries before giving up.
    return host.request("POST", "/api/v1/payments/webhook", body=body, headers=headers, timeout=60)


def status_of(host: HostProcess, order: dict[str, Any]) -> str:
    path = f"/api/v1/customers/{order['customerId']}/orders/{order['id']}"
    status: str = host.request("GET", path).json()["status"]
    return status


def test_a_warm_cache_verifies_webhooks_while_key_vault_is_down(
    host_env: dict[str, str], vault: FakeKeyVault, tmp_path: Path
) -> None:
    with start_host(host_env, tmp_path / "host.log") as host:
        first, second = place(host), place(host)
        vault.reset_counts()
        assert pay(host, first, f"evt_{uuid.uuid4().hex}").status == 200
        assert vault.count("get_secret") == 1  # the secret came from the vault

        vault.stop()
        time.sleep(CACHE_TTL_SECONDS + 0.5)  # expired: the next request must ask the vault
        response = pay(host, second, f"evt_{uuid.uuid4().hex}")

        assert response.status == 200, response.body
        assert response.json() == {"status": "applied"}
        assert status_of(host, second) == "paid"
        logs = host.wait_for_log("serving the cached value")
        assert f"Key Vault read of secret {PAYMENT_WEBHOOK_SECRET} failed" in logs


def test_a_cold_cache_is_503_with_retry_after_until_key_vault_is_back(
    host_env: dict[str, str], vault: FakeKeyVault, tmp_path: Path
) -> None:
    with start_host(host_env, tmp_path / "host.log") as host:
        order = place(host)
        event_id = f"evt_{uuid.uuid4().hex}"
        vault.stop()

        refused = pay(host, order, event_id)

        assert refused.status == 503, refused.body
        assert refused.header("Content-Type") == "application/problem+json"
        retry_after = refused.header("Retry-After")
        assert retry_after is not None
        assert int(retry_after) >= 1
        problem = refused.json()
        assert problem["status"] == 503
        assert "Key Vault" in problem["detail"]
        assert status_of(host, order) == "pending"

        vault.start()  # same port: the vault is back
        retried = pay(host, order, event_id)  # the provider retries the same event

        assert retried.status == 200, retried.body
        assert status_of(host, order) == "paid"


def test_a_deleted_secret_is_503_problem_json_until_it_is_back(
    host_env: dict[str, str], vault: FakeKeyVault, tmp_path: Path
) -> None:
    """Deleting (or disabling) the secret is an operator's doing: the webhook answers 503 with
    ``Retry-After`` as a problem (not the host's bare 500), naming neither secret nor vault."""
    with start_host(host_env, tmp_path / "host.log") as host:
        order = place(host)
        event_id = f"evt_{uuid.uuid4().hex}"
        vault.delete_secret(PAYMENT_WEBHOOK_SECRET)
        try:
            refused = pay(host, order, event_id)

            assert refused.status == 503, refused.body
            assert refused.header("Content-Type") == "application/problem+json"
            assert int(refused.header("Retry-After") or 0) >= 1
            problem = refused.json()
            assert (problem["status"], problem["type"]) == (
                503,
                "urn:orderflow:problem:unavailable",
            )
            assert PAYMENT_WEBHOOK_SECRET not in refused.body.decode()
            assert vault.url not in refused.body.decode()
            assert status_of(host, order) == "pending"
            host.wait_for_log("SecretNotFoundError in payment_webhook")
        finally:
            vault.set_secret(PAYMENT_WEBHOOK_SECRET, VAULT_SECRET)

        retried = pay(host, order, event_id)  # the provider retries the same event

        assert retried.status == 200, retried.body
        assert status_of(host, order) == "paid"
