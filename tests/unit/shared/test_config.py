"""Settings: read once, typed, and every bad value refused with a message naming the setting."""

from __future__ import annotations

import json

import pytest

from shared.config import (
    Settings,
    clear_settings_cache,
    get_settings,
    is_loopback_url,
    load_settings,
)
from shared.errors import ConfigurationError
from tests.paths import REPO_ROOT

SAMPLE = REPO_ROOT / "local.settings.json.sample"


def sample_values() -> dict[str, str]:
    values: dict[str, str] = json.loads(SAMPLE.read_text())["Values"]
    return values


AZURE = {
    "COSMOS_ENDPOINT": "https://orderflow.documents.azure.com:443/",
    "ImportsStorage__blobServiceUri": "https://orderflow.blob.core.windows.net",
    "ImportsStorage__queueServiceUri": "https://orderflow.queue.core.windows.net",
    "ServiceBusConnection__fullyQualifiedNamespace": "orderflow.servicebus.windows.net",
    "KEY_VAULT_URL": "https://orderflow-kv.vault.azure.net",
}


def test_sample_settings_are_valid_and_local() -> None:
    settings = load_settings(sample_values())
    assert settings.environment == "local"
    assert settings.cosmos_endpoint == "https://127.0.0.1:8081/"
    assert settings.cosmos_key is not None
    assert settings.storage.connection_string is not None
    assert settings.key_vault_url is None  # empty setting means "not set"
    assert settings.payment_timeout_minutes == 30


def test_identity_based_azure_settings() -> None:
    settings = load_settings(AZURE)
    assert settings.environment == "azure"
    assert settings.cosmos_key is None
    assert settings.storage.uses_identity
    assert settings.storage.blob_service_uri == "https://orderflow.blob.core.windows.net/"
    assert settings.service_bus is not None
    assert settings.service_bus.fully_qualified_namespace == "orderflow.servicebus.windows.net"
    assert settings.key_vault_url == "https://orderflow-kv.vault.azure.net/"


def test_account_name_derives_both_storage_uris() -> None:
    env = {k: v for k, v in AZURE.items() if not k.startswith("ImportsStorage")}
    settings = load_settings({**env, "ImportsStorage__accountName": "acct"})
    assert settings.storage.blob_service_uri == "https://acct.blob.core.windows.net/"
    assert settings.storage.queue_service_uri == "https://acct.queue.core.windows.net/"


def _without(env: dict[str, str], *names: str) -> dict[str, str]:
    return {k: v for k, v in env.items() if k not in names}


@pytest.mark.parametrize(
    ("change", "setting", "fragment"),
    [
        (lambda e: _without(e, "COSMOS_ENDPOINT"), "COSMOS_ENDPOINT", "is required"),
        (lambda e: {**e, "COSMOS_ENDPOINT": ""}, "COSMOS_ENDPOINT", "is required"),
        (lambda e: {**e, "COSMOS_ENDPOINT": "ftp://x"}, "COSMOS_ENDPOINT", "http(s) URL"),
        (lambda e: {**e, "COSMOS_ENDPOINT": "not a url"}, "COSMOS_ENDPOINT", "http(s) URL"),
        (lambda e: {**e, "COSMOS_ENDPOINT": "http://example.com"}, "COSMOS_ENDPOINT", "https"),
        (lambda e: {**e, "PAYMENT_TIMEOUT_MINUTES": "abc"}, "PAYMENT_TIMEOUT_MINUTES", "integer"),
        (
            lambda e: {**e, "PAYMENT_TIMEOUT_MINUTES": "0"},
            "PAYMENT_TIMEOUT_MINUTES",
            "greater than or equal to 1",
        ),
        (
            lambda e: {**e, "HEALTH_PROBE_TIMEOUT_SECONDS": "-1"},
            "HEALTH_PROBE_TIMEOUT_SECONDS",
            "greater than 0",
        ),
        (
            lambda e: {**e, "BULKHEAD_THREAD_SHARE": "0"},
            "BULKHEAD_THREAD_SHARE",
            "greater than 0",
        ),
        (
            lambda e: {**e, "BULKHEAD_THREAD_SHARE": "1.5"},
            "BULKHEAD_THREAD_SHARE",
            "less than or equal to 1",
        ),
        (lambda e: {**e, "ORDERFLOW_ENVIRONMENT": "prod"}, "ORDERFLOW_ENVIRONMENT", "'local'"),
        (lambda e: {**e, "COSMOS_DATABASE": "bad name/"}, "COSMOS_DATABASE", "pattern"),
        (
            lambda e: {**e, "EXPIRE_UNPAID_ORDERS_SCHEDULE": "*/5 * * * *"},
            "EXPIRE_UNPAID_ORDERS_SCHEDULE",
            "needs 6",
        ),
        (lambda e: _without(e, "ImportsStorage"), "ImportsStorage", "is required"),
        (lambda e: {**e, "KEY_VAULT_URL": "kv.vault.azure.net"}, "KEY_VAULT_URL", "URL"),
        (lambda e: {**e, "API_DOCS_SCOPES": "a  b"}, "API_DOCS_SCOPES", "pattern"),
        (lambda e: {**e, "API_DOCS_SCOPES": "Orders.ReadWrite\n"}, "API_DOCS_SCOPES", "pattern"),
        (lambda e: {**e, "API_DOCS_CLIENT_ID": "a b"}, "API_DOCS_CLIENT_ID", "pattern"),
    ],
)
def test_bad_local_values_name_the_setting(change, setting: str, fragment: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ConfigurationError) as caught:
        load_settings(change(sample_values()))
    assert caught.value.setting == setting
    assert setting in str(caught.value)
    assert fragment in str(caught.value)


def test_half_identity_storage_is_refused() -> None:
    env = _without(AZURE, "ImportsStorage__queueServiceUri")
    with pytest.raises(ConfigurationError, match="ImportsStorage__queueServiceUri is required"):
        load_settings(env)


def test_identity_storage_uri_must_be_https() -> None:
    env = {**AZURE, "ImportsStorage__blobServiceUri": "http://acct.blob.core.windows.net"}
    with pytest.raises(ConfigurationError, match="ImportsStorage__blobServiceUri must use https"):
        load_settings(env)


@pytest.mark.parametrize(
    ("extra", "setting"),
    [
        ({"COSMOS_KEY": "a2V5"}, "COSMOS_KEY"),
        (
            {
                "EVENTGRID_TOPIC_ENDPOINT": "https://t.eventgrid.azure.net",
                "EVENTGRID_TOPIC_KEY": "k",
            },
            "EVENTGRID_TOPIC_KEY",
        ),
        ({"ImportsStorage": "UseDevelopmentStorage=true"}, "ImportsStorage"),
        ({"ServiceBusConnection": "Endpoint=sb://x/;SharedAccessKey=k"}, "ServiceBusConnection"),
    ],
)
def test_keys_and_connection_strings_are_refused_in_azure(
    extra: dict[str, str], setting: str
) -> None:
    with pytest.raises(ConfigurationError) as caught:
        load_settings({**AZURE, **extra})
    assert caught.value.setting == setting
    assert "managed identity" in str(caught.value) or "ORDERFLOW_ENVIRONMENT=local" in str(
        caught.value
    )


def test_local_key_for_a_remote_endpoint_is_refused() -> None:
    env = {**sample_values(), "COSMOS_ENDPOINT": "https://orderflow.documents.azure.com:443/"}
    with pytest.raises(ConfigurationError, match="COSMOS_KEY is set, but keys are accepted only"):
        load_settings(env)


def test_unresolved_key_vault_reference_is_refused_first() -> None:
    reference = "@Microsoft.KeyVault(SecretUri=https://kv.vault.azure.net/secrets/payment/)"
    env = {**_without(sample_values(), "COSMOS_ENDPOINT"), "PAYMENT_WEBHOOK_SECRET": reference}
    with pytest.raises(ConfigurationError) as caught:
        load_settings(env)
    assert caught.value.setting == "PAYMENT_WEBHOOK_SECRET"
    assert "unresolved Key Vault reference" in str(caught.value)
    assert "Key Vault Secrets User" in str(caught.value)


def test_secrets_never_appear_in_repr() -> None:
    settings = load_settings(sample_values())
    key = sample_values()["COSMOS_KEY"]
    assert key not in repr(settings)
    assert key not in str(settings.model_dump())


def test_settings_are_read_once_and_cache_can_be_cleared(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in sample_values().items():
        monkeypatch.setenv(name, value)
    clear_settings_cache()
    try:
        first = get_settings()
        monkeypatch.setenv("PAYMENT_TIMEOUT_MINUTES", "45")
        assert get_settings() is first
        assert get_settings().payment_timeout_minutes == 30
        clear_settings_cache()
        assert get_settings().payment_timeout_minutes == 45
    finally:
        clear_settings_cache()


def test_settings_are_immutable() -> None:
    settings = load_settings(sample_values())
    with pytest.raises(ValueError, match="frozen"):
        settings.payment_timeout_minutes = 5  # type: ignore[misc]


def test_every_sample_setting_is_known_to_the_app() -> None:
    """The sample documents exactly what the app reads (plus host-owned settings)."""
    host_owned = {"FUNCTIONS_WORKER_RUNTIME", "AzureWebJobsStorage"}
    secrets_stand_ins = {"PAYMENT_WEBHOOK_SECRET", "PAYMENT_WEBHOOK_SECRET_PREVIOUS"}
    aliases = {field.alias for field in Settings.model_fields.values()}
    unknown = set(sample_values()) - aliases - host_owned - secrets_stand_ins
    assert unknown == set()
    undocumented = {a for a in aliases if a not in sample_values()} - {
        "ORDERFLOW_VERSION",
        "ServiceBusConnection",  # the broker arrives with the event-processing pattern
        "EVENTGRID_TOPIC_ENDPOINT",
        "EVENTGRID_TOPIC_KEY",
        "AZURE_CLIENT_ID",  # Azure only: the user-assigned identity
    }
    assert undocumented == set()


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://127.0.0.1:8081/", True),
        ("http://localhost:10000", True),
        ("https://[::1]:8081", True),
        ("https://127.8.9.1", True),
        ("https://example.com", False),
        ("https://10.0.0.1", False),
        ("127.0.0.1:5672", True),
    ],
)
def test_loopback_detection(url: str, expected: bool) -> None:
    assert is_loopback_url(url) is expected


ENTRA_ISSUER = "https://login.microsoftonline.com/00000000-0000-0000-0000-000000000001/v2.0"


def test_token_settings_are_read_exactly() -> None:
    settings = load_settings(
        {**AZURE, "AUTH_ISSUER": ENTRA_ISSUER, "AUTH_AUDIENCE": "api://orderflow"}
    )
    assert settings.auth_issuer == ENTRA_ISSUER  # not normalised: compared exactly with iss
    assert settings.auth_audience == "api://orderflow"
    assert settings.auth_customer_claim == "sub"
    sample = load_settings(sample_values())
    assert (sample.auth_issuer, sample.auth_audience) == (
        "http://127.0.0.1:8091",
        "api://orderflow-local",
    )


@pytest.mark.parametrize(
    ("environment", "issuer"),
    [
        ("azure", "http://127.0.0.1:8091"),  # plain http outside local
        ("local", "http://issuer.example.com"),  # plain http off loopback
        ("azure", "ftp://login.example.com/x"),
        ("azure", "login.microsoftonline.com/tenant/v2.0"),
        ("azure", "https://login.example.com/t/v2.0?x=1"),
    ],
)
def test_an_unsafe_issuer_is_refused(environment: str, issuer: str) -> None:
    env = {**AZURE, "ORDERFLOW_ENVIRONMENT": environment, "AUTH_ISSUER": issuer}
    if environment == "local":
        env = {**sample_values(), "AUTH_ISSUER": issuer}
    with pytest.raises(ConfigurationError, match="AUTH_ISSUER"):
        load_settings({**env, "AUTH_AUDIENCE": "api://x"})


def test_a_bad_customer_claim_name_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="AUTH_CUSTOMER_CLAIM"):
        load_settings({**AZURE, "AUTH_CUSTOMER_CLAIM": "has space"})


@pytest.mark.parametrize(
    ("preset", "expected"), [(None, "__all__"), ("some_plugin", "some_plugin")]
)
def test_pydantic_plugins_are_not_looked_for_unless_the_environment_says(
    preset: str | None, expected: str
) -> None:
    """The plugin scan (every installed distribution's entry points) would run on the first
    model of every instance; an explicit PYDANTIC_DISABLE_PLUGINS is left as it is."""
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "PYDANTIC_DISABLE_PLUGINS"}
    if preset is not None:
        env["PYDANTIC_DISABLE_PLUGINS"] = preset
    code = (
        "import os, shared.config; from pydantic.plugin import _loader; "
        "print(os.environ['PYDANTIC_DISABLE_PLUGINS'], _loader._plugins is None)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        env=env,
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    # No scan happened while shared.config built its settings model (the cache stays empty).
    assert result.stdout.split() == [expected, str(preset is None)]
