"""SDK clients: lazily created, cached, keyless in Azure, and free of import-time cost."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator

import pytest

from shared import clients
from shared.errors import ConfigurationError
from shared.process_state import reset_process_state
from tests.paths import REPO_ROOT

ROOT = REPO_ROOT
AZURE = {
    "COSMOS_ENDPOINT": "https://orderflow.documents.azure.com:443/",
    "ImportsStorage__blobServiceUri": "https://orderflow.blob.core.windows.net",
    "ImportsStorage__queueServiceUri": "https://orderflow.queue.core.windows.net",
    "ServiceBusConnection__fullyQualifiedNamespace": "orderflow.servicebus.windows.net",
    "EVENTGRID_TOPIC_ENDPOINT": "https://orderflow.westeurope-1.eventgrid.azure.net/api/events",
    "KEY_VAULT_URL": "https://orderflow-kv.vault.azure.net",
}
LOCAL_STORAGE = (
    "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;"
    "AccountKey=Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==;"
    "BlobEndpoint=http://127.0.0.1:10000/devstoreaccount1;"
    "QueueEndpoint=http://127.0.0.1:10001/devstoreaccount1;"
)


@pytest.fixture
def environment(monkeypatch: pytest.MonkeyPatch) -> Iterator[pytest.MonkeyPatch]:
    for name in [*AZURE, "ORDERFLOW_ENVIRONMENT", "COSMOS_KEY", "ImportsStorage"]:
        monkeypatch.delenv(name, raising=False)
    reset_process_state()
    yield monkeypatch
    reset_process_state()


def _set(monkeypatch: pytest.MonkeyPatch, values: dict[str, str]) -> None:
    for name, value in values.items():
        monkeypatch.setenv(name, value)


def test_importing_the_module_imports_no_azure_sdk() -> None:
    code = (
        "import sys, shared.clients, shared.config, shared.observability\n"
        "heavy = sorted(m for m in sys.modules if m.startswith(('azure.', 'pydantic_settings')))\n"
        "print(','.join(heavy))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == ""


def test_identity_is_used_everywhere_in_azure(environment: pytest.MonkeyPatch) -> None:
    from azure.identity import DefaultAzureCredential

    _set(environment, AZURE)
    credential = clients.get_credential()
    assert isinstance(credential, DefaultAzureCredential)
    assert clients.get_blob_service().credential is credential
    assert clients.get_blob_service().url == "https://orderflow.blob.core.windows.net/"
    assert clients.get_queue_service().credential is credential
    assert clients.get_secret_client().vault_url == "https://orderflow-kv.vault.azure.net"
    assert clients.get_service_bus_client().fully_qualified_namespace == (
        "orderflow.servicebus.windows.net"
    )
    publisher = clients.get_eventgrid_client()
    endpoint = publisher._client._endpoint  # type: ignore[attr-defined]
    assert endpoint == "https://orderflow.westeurope-1.eventgrid.azure.net/api/events"


def test_clients_are_created_once_and_reset(environment: pytest.MonkeyPatch) -> None:
    _set(environment, AZURE)
    blob = clients.get_blob_service()
    assert clients.get_blob_service() is blob
    assert clients.get_credential() is clients.get_credential()
    clients.reset_clients()
    assert clients.get_blob_service() is not blob


def test_queue_clients_speak_base64_like_the_queue_trigger(
    environment: pytest.MonkeyPatch,
) -> None:
    from azure.storage.queue import TextBase64EncodePolicy

    _set(environment, {"ORDERFLOW_ENVIRONMENT": "local", "ImportsStorage": LOCAL_STORAGE})
    _set(environment, {"COSMOS_ENDPOINT": "https://127.0.0.1:8081/"})
    queue = clients.get_queue("order-import-chunks")
    assert isinstance(queue._message_encode_policy, TextBase64EncodePolicy)
    assert queue.url == "http://127.0.0.1:10001/devstoreaccount1/order-import-chunks"
    assert clients.get_queue("order-import-chunks") is queue


def test_local_storage_uses_the_connection_string(environment: pytest.MonkeyPatch) -> None:
    _set(environment, {"ORDERFLOW_ENVIRONMENT": "local", "ImportsStorage": LOCAL_STORAGE})
    _set(environment, {"COSMOS_ENDPOINT": "https://127.0.0.1:8081/"})
    blob = clients.get_blob_service()
    assert blob.url == "http://127.0.0.1:10000/devstoreaccount1/"
    assert blob.credential.account_name == "devstoreaccount1"
    assert "credential" not in clients._instances


@pytest.mark.parametrize(
    ("getter", "setting"),
    [
        (clients.get_service_bus_client, "ServiceBusConnection"),
        (clients.get_eventgrid_client, "EVENTGRID_TOPIC_ENDPOINT"),
        (clients.get_secret_client, "KEY_VAULT_URL"),
    ],
)
def test_unconfigured_optional_dependency_names_its_setting(
    environment: pytest.MonkeyPatch, getter: object, setting: str
) -> None:
    _set(environment, {"ORDERFLOW_ENVIRONMENT": "local", "ImportsStorage": LOCAL_STORAGE})
    _set(environment, {"COSMOS_ENDPOINT": "https://127.0.0.1:8081/"})
    assert callable(getter)
    with pytest.raises(ConfigurationError) as caught:
        getter()
    assert caught.value.setting == setting


def test_install_client_refuses_an_unknown_name() -> None:
    with pytest.raises(ValueError, match="unknown client 'cosmosdb'"):
        clients.install_client("cosmosdb", object())  # type: ignore[arg-type]
    assert "cosmosdb" not in clients._instances


def test_installing_a_client_drops_what_was_made_from_the_previous_one(
    environment: pytest.MonkeyPatch,
) -> None:
    _set(environment, {"ORDERFLOW_ENVIRONMENT": "local", "ImportsStorage": LOCAL_STORAGE})
    _set(environment, {"COSMOS_ENDPOINT": "https://127.0.0.1:8081/"})
    queue = clients.get_queue("order-import-chunks")
    blob = clients.get_blob_service()

    replacement = clients.get_queue_service().__class__.from_connection_string(LOCAL_STORAGE)
    clients.install_client("queue", replacement)

    assert clients.get_queue_service() is replacement
    rebuilt = clients.get_queue("order-import-chunks")
    assert rebuilt is not queue
    assert rebuilt.url == queue.url
    assert clients.get_blob_service() is blob  # other clients stay


def test_every_client_name_is_one_the_getters_use() -> None:
    source = (ROOT / "shared" / "clients.py").read_text(encoding="utf-8")
    used = set(re.findall(r'_cached(?:_from)?\(\s*"(\w+)"', source))
    assert used == set(clients.CLIENT_NAMES)
