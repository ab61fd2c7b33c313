"""Contract between the code and the infrastructure: every setting the app reads is set by Bicep
(identity-based forms for connections) and documented in local.settings.json.sample; keys,
connection strings and secrets are local-only and never appear in Bicep."""

from __future__ import annotations

import re
from typing import Any

import pytest

from shared.config import SERVICE_BUS_CONNECTION, STORAGE_CONNECTION
from tests.infra import app_facts
from tests.infra.bicep import Expr, load

NCRONTAB_FIELDS = 6  # seconds first

# Keys for the local stand-ins: refused by shared.config outside ORDERFLOW_ENVIRONMENT=local.
LOCAL_ONLY = {"COSMOS_KEY", "EVENTGRID_TOPIC_KEY"}
# Optional in Azure: the version defaults to the code's.
OPTIONAL_IN_AZURE = {"ORDERFLOW_VERSION"}
# Azure only: the client id of the user-assigned identity; locally the developer's sign-in is used.
AZURE_ONLY = {"AZURE_CLIENT_ID"}
# The connection aliases are not set under their own name in Azure (that would be a connection
# string) but through identity-based settings.
CONNECTION_ALIASES = {STORAGE_CONNECTION, SERVICE_BUS_CONNECTION}

# Identity-based settings a connection needs, by what uses it.
IDENTITY_PROPERTIES = {
    "storageClients": {"blobServiceUri", "queueServiceUri"},  # shared.config reads both
    "blobTrigger": {"blobServiceUri"},
    "blob": {"blobServiceUri"},
    "queueTrigger": {"queueServiceUri"},
    "queue": {"queueServiceUri"},
    "serviceBusClient": {"fullyQualifiedNamespace"},
    "serviceBusTrigger": {"fullyQualifiedNamespace"},
    "serviceBus": {"fullyQualifiedNamespace"},
    "eventHubTrigger": {"fullyQualifiedNamespace"},
    "eventHub": {"fullyQualifiedNamespace"},
    "cosmosDBTrigger": {"accountEndpoint"},
    "cosmosDB": {"accountEndpoint"},
    "eventGrid": {"topicEndpointUri"},
}

# Text that means a key or connection string made it into a setting or an output.
SECRET_MARKERS = re.compile(
    r"listKeys|listConnectionStrings|listAccountSas|listServiceSas|AccountKey=|SharedAccessKey|"
    r"primaryKey|secondaryKey|primaryMasterKey|connectionStrings|\.keys\(",
    re.IGNORECASE,
)
# Settings Flex Consumption rejects (the runtime and package location are in functionAppConfig).
FLEX_FORBIDDEN = {
    "FUNCTIONS_WORKER_RUNTIME",
    "FUNCTIONS_EXTENSION_VERSION",
    "WEBSITE_RUN_FROM_PACKAGE",
    "WEBSITE_CONTENTSHARE",
    "WEBSITE_CONTENTAZUREFILECONNECTIONSTRING",
    "AzureWebJobsStorage",
}


def bicep_settings() -> dict[str, Any]:
    """App settings of the function app: name -> value (literal or Expr)."""
    site = load("modules/functionapp.bicep").resource("site")
    entries = site.properties["siteConfig"]["appSettings"]
    settings = {str(entry["name"]): entry["value"] for entry in entries}
    assert len(settings) == len(entries), "an app setting is declared twice"
    return settings


def parameter_default(name: str) -> Any:
    return load("modules/functionapp.bicep").parameters[name].default


def resolved(value: Any) -> Any:
    """A setting's value, with a bare parameter reference replaced by the parameter's default."""
    module = load("modules/functionapp.bicep")
    if isinstance(value, Expr):
        text = value.text
        if text in module.parameters:
            return module.parameters[text].default
        match = re.fullmatch(r"string\((\w+)\)", text)
        if match and match.group(1) in module.parameters:
            return str(module.parameters[match.group(1)].default)
    return value


def required_in_azure() -> set[str]:
    return app_facts.settings_aliases() - LOCAL_ONLY - OPTIONAL_IN_AZURE - CONNECTION_ALIASES


@pytest.mark.parametrize("setting", sorted(required_in_azure()))
def test_setting_read_by_the_app_is_set_by_bicep(setting: str) -> None:
    assert setting in bicep_settings(), (
        f"shared.config reads {setting}, but infra/modules/functionapp.bicep does not set it"
    )


@pytest.mark.parametrize("setting", sorted(app_facts.percent_settings()))
def test_percent_setting_in_a_binding_is_set_by_bicep(setting: str) -> None:
    """The host resolves %NAME% in bindings (timer schedules) from app settings only."""
    assert setting in bicep_settings(), f"a binding uses %{setting}%, but Bicep does not set it"


@pytest.mark.parametrize("connection", sorted(app_facts.binding_connections()))
def test_connection_has_identity_based_settings_in_bicep(connection: str) -> None:
    settings = bicep_settings()
    users = app_facts.binding_connections()[connection]
    unknown = users - IDENTITY_PROPERTIES.keys()
    assert not unknown, f"{connection}: teach tests/infra which settings {unknown} need"
    needed = set().union(*(IDENTITY_PROPERTIES[use] for use in users))
    missing = {f"{connection}__{p}" for p in needed} - settings.keys()
    assert not missing, f"{connection} is used by {sorted(users)} but Bicep lacks {missing}"
    assert settings.get(f"{connection}__credential") == "managedidentity"
    assert settings.get(f"{connection}__clientId") == Expr("identityClientId")
    assert connection not in settings, f"{connection} must not be a connection string in Azure"


def test_host_storage_is_identity_based() -> None:
    settings = bicep_settings()
    assert {"AzureWebJobsStorage__blobServiceUri", "AzureWebJobsStorage__queueServiceUri"} <= set(
        settings
    )
    assert settings["AzureWebJobsStorage__credential"] == "managedidentity"
    assert settings["AzureWebJobsStorage__clientId"] == Expr("identityClientId")


@pytest.mark.parametrize("setting", sorted(LOCAL_ONLY | app_facts.secret_stand_ins()))
def test_local_only_setting_is_not_in_bicep(setting: str) -> None:
    assert setting not in bicep_settings(), f"{setting} is for local stand-ins only"


def test_no_setting_flex_consumption_rejects() -> None:
    assert not FLEX_FORBIDDEN & bicep_settings().keys()


def test_azure_values() -> None:
    settings = bicep_settings()
    assert settings["ORDERFLOW_ENVIRONMENT"] == "azure"
    assert settings["AZURE_CLIENT_ID"] == Expr("identityClientId")
    # Application Insights with local auth disabled: ingestion with the user-assigned identity.
    assert settings["APPLICATIONINSIGHTS_AUTHENTICATION_STRING"] == Expr(
        "'Authorization=AAD;ClientId=${identityClientId}'"
    )
    assert settings["EVENTGRID_TOPIC_ENDPOINT"] == Expr("eventGridTopicEndpoint")


@pytest.mark.parametrize(
    "setting", sorted(s for s in app_facts.settings_aliases() if s.endswith("_SCHEDULE"))
)
def test_schedule_is_ncrontab_with_seconds(setting: str) -> None:
    value = resolved(bicep_settings()[setting])
    assert isinstance(value, str), f"{setting} should default to a literal schedule"
    assert len(value.split()) == NCRONTAB_FIELDS, f"{setting}={value!r} is not 6-field NCRONTAB"


def test_no_key_connection_string_or_secret_in_settings_or_outputs() -> None:
    from tests.infra.bicep import INFRA, bicep_paths

    offenders: list[str] = []
    for name, value in bicep_settings().items():
        if SECRET_MARKERS.search(str(value)):
            offenders.append(f"setting {name}: {value}")
    for path in bicep_paths():
        for name, value in load(path.relative_to(INFRA).as_posix()).outputs.items():
            if SECRET_MARKERS.search(str(value)) or "secret" in name.lower():
                offenders.append(f"{path.name} output {name}: {value}")
    assert offenders == []


@pytest.mark.parametrize(
    "setting",
    sorted(
        (app_facts.settings_aliases() | app_facts.secret_stand_ins())
        - AZURE_ONLY
        - OPTIONAL_IN_AZURE
    ),
)
def test_setting_read_by_the_app_is_in_the_local_sample(setting: str) -> None:
    assert setting in app_facts.local_sample(), f"add {setting} to local.settings.json.sample"
