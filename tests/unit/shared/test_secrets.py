"""Secrets without a vault: local settings named after the secret, and the module's contract."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from types import SimpleNamespace

import pytest

from shared.errors import DependencyUnavailableError, SecretNotFoundError
from shared.names import PAYMENT_WEBHOOK_SECRET
from shared.process_state import reset_process_state
from shared.secrets import (
    SecretStore,
    SecretVersions,
    _retry_after,
    clear_secret_cache,
    get_secret_store,
    local_setting_name,
)
from tests.paths import REPO_ROOT

ROOT = REPO_ROOT
LOCAL_SETTINGS = {
    "ORDERFLOW_ENVIRONMENT": "local",
    "COSMOS_ENDPOINT": "https://127.0.0.1:8081/",
    "ImportsStorage": "UseDevelopmentStorage=true",
}


@pytest.fixture
def local_settings(monkeypatch: pytest.MonkeyPatch) -> Iterator[pytest.MonkeyPatch]:
    """Settings of a developer machine: no KEY_VAULT_URL."""
    for name, value in LOCAL_SETTINGS.items():
        monkeypatch.setenv(name, value)
    for name in ("KEY_VAULT_URL", "PAYMENT_WEBHOOK_SECRET", "PAYMENT_WEBHOOK_SECRET_PREVIOUS"):
        monkeypatch.delenv(name, raising=False)
    reset_process_state()
    try:
        yield monkeypatch
    finally:
        reset_process_state()


def test_importing_the_module_imports_no_azure_sdk() -> None:
    code = (
        "import sys, shared.secrets\n"
        "print(','.join(sorted(m for m in sys.modules if m.startswith('azure'))))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == ""


@pytest.mark.parametrize(
    ("secret", "setting"),
    [
        ("payment-webhook-secret", "PAYMENT_WEBHOOK_SECRET"),
        ("Partner-Api-Key2", "PARTNER_API_KEY2"),
    ],
)
def test_local_setting_name_is_upper_snake_case(secret: str, setting: str) -> None:
    assert local_setting_name(secret) == setting


@pytest.mark.parametrize("name", ["", "has_underscore", "has space", "x" * 128, "../secrets"])
def test_invalid_secret_names_are_rejected(local_settings: pytest.MonkeyPatch, name: str) -> None:
    with pytest.raises(ValueError, match="invalid secret name"):
        SecretStore(environ={}).get(name)


def test_reads_current_and_previous_from_explicit_settings(
    local_settings: pytest.MonkeyPatch,
) -> None:
    store = SecretStore(
        environ={"PAYMENT_WEBHOOK_SECRET": "new", "PAYMENT_WEBHOOK_SECRET_PREVIOUS": "old"}
    )

    assert store.get(PAYMENT_WEBHOOK_SECRET) == "new"
    assert store.get_versions(PAYMENT_WEBHOOK_SECRET) == SecretVersions("new", "old")
    store.probe()


def test_previous_is_none_when_not_set(local_settings: pytest.MonkeyPatch) -> None:
    versions = SecretStore(environ={"PAYMENT_WEBHOOK_SECRET": "only"}).get_versions(
        PAYMENT_WEBHOOK_SECRET
    )

    assert versions == SecretVersions("only", None)
    assert versions.values == ("only",)


@pytest.mark.parametrize("environ", [{}, {"PAYMENT_WEBHOOK_SECRET": ""}])
def test_missing_local_secret_names_the_setting(
    local_settings: pytest.MonkeyPatch, environ: dict[str, str]
) -> None:
    store = SecretStore(environ=environ)

    with pytest.raises(SecretNotFoundError, match="PAYMENT_WEBHOOK_SECRET") as raised:
        store.get_versions(PAYMENT_WEBHOOK_SECRET)
    assert raised.value.name == PAYMENT_WEBHOOK_SECRET

    with pytest.raises(DependencyUnavailableError) as unavailable:
        store.probe()
    assert unavailable.value.dependency == "local settings"


def test_default_store_reads_the_process_environment(local_settings: pytest.MonkeyPatch) -> None:
    local_settings.setenv("PAYMENT_WEBHOOK_SECRET", "from-env")

    store = get_secret_store()

    assert store is get_secret_store()
    assert store.get(PAYMENT_WEBHOOK_SECRET) == "from-env"
    local_settings.setenv("PAYMENT_WEBHOOK_SECRET", "changed")  # local values are not cached
    assert store.get(PAYMENT_WEBHOOK_SECRET) == "changed"


def test_clear_secret_cache_forgets_the_process_wide_store(
    local_settings: pytest.MonkeyPatch,
) -> None:
    first = get_secret_store()
    clear_secret_cache()
    assert get_secret_store() is not first


def test_values_do_not_appear_in_reprs() -> None:
    assert "hunter2" not in repr(SecretVersions("hunter2", "hunter1"))
    assert "hunter1" not in repr(SecretVersions("hunter2", "hunter1"))


def test_negative_durations_are_rejected() -> None:
    with pytest.raises(ValueError, match="ttl_seconds"):
        SecretStore(ttl_seconds=-1)
    with pytest.raises(ValueError, match="max_stale_seconds"):
        SecretStore(max_stale_seconds=-1)


@pytest.mark.parametrize(
    ("header", "seconds"), [("7", 7), (" 3 ", 3), ("²", 5), ("-1", 5), ("99999", 3600), (None, 5)]
)
def test_key_vault_retry_after_header(header: str | None, seconds: int) -> None:
    headers = {"Retry-After": header} if header is not None else {}
    error = SimpleNamespace(response=SimpleNamespace(headers=headers))

    assert _retry_after(error) == seconds  # type: ignore[arg-type]
