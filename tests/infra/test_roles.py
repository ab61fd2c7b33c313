"""Least privilege: every Azure service the code talks to has a role assignment for the app's
identity, each the narrowest built-in role for what the code does, and nothing more."""

from __future__ import annotations

import re
from dataclasses import dataclass

import pytest

from tests.infra import app_facts
from tests.infra.bicep import Expr, load

# Built-in role definition ids (Azure RBAC) the infrastructure may use.
BUILT_IN_ROLES = {
    "storageBlobDataOwner": "b7e6dc6d-f1e8-4753-8033-0f276bb0955b",
    "storageBlobDataContributor": "ba92f5b4-2d11-453d-a403-e96b0029c9fe",
    "storageQueueDataContributor": "974c5e8b-45b9-4653-ba55-5f855dd0fb88",
    "storageQueueDataMessageSender": "c6a89b2d-59bc-44d0-9896-0f6e12d7b80a",
    "keyVaultSecretsUser": "4633458b-17de-408a-b874-0445c86b69e6",
    "keyVaultSecretsOfficer": "b86a8fe4-44ce-4948-aee5-eccb2c155cd7",
    "serviceBusDataSender": "69a216fc-b8fb-44d8-bc22-1f3c2cd27a39",
    "serviceBusDataReceiver": "4f6d3b9b-027b-4f4c-9142-0e5a2a2247e0",
    "eventGridDataSender": "d5a91429-5739-47e2-a06b-3470a27159e7",
    "monitoringMetricsPublisher": "3913510d-42f4-4e42-8a64-420c390055eb",
}
COSMOS_DATA_CONTRIBUTOR = "00000000-0000-0000-0000-000000000002"
COSMOS_ACCOUNT = "Microsoft.DocumentDB/databaseAccounts"

# What each Azure SDK the app imports needs: (resource type of the scope, role).
SDK_NEEDS: dict[str, tuple[str, str]] = {
    "azure.cosmos": (COSMOS_ACCOUNT, "cosmosDataContributor"),
    "azure.storage.blob": ("Microsoft.Storage/storageAccounts", "storageBlobDataOwner"),
    "azure.storage.queue": ("Microsoft.Storage/storageAccounts", "storageQueueDataContributor"),
    "azure.servicebus": ("Microsoft.ServiceBus/namespaces/queues", "serviceBusDataSender"),
    "azure.eventgrid": ("Microsoft.EventGrid/topics", "eventGridDataSender"),
    "azure.keyvault.secrets": ("Microsoft.KeyVault/vaults", "keyVaultSecretsUser"),
    "azure.monitor.opentelemetry": ("Microsoft.Insights/components", "monitoringMetricsPublisher"),
}
# Azure packages that reach no service by themselves.
SDK_WITHOUT_SERVICE = {"azure", "azure.core", "azure.identity", "azure.functions"}
# What each trigger or binding type needs.
BINDING_NEEDS: dict[str, tuple[str, str]] = {
    "serviceBusTrigger": ("Microsoft.ServiceBus/namespaces/queues", "serviceBusDataReceiver"),
    "serviceBus": ("Microsoft.ServiceBus/namespaces/queues", "serviceBusDataSender"),
    "blobTrigger": ("Microsoft.Storage/storageAccounts", "storageBlobDataOwner"),
    "blob": ("Microsoft.Storage/storageAccounts", "storageBlobDataOwner"),
    "queueTrigger": ("Microsoft.Storage/storageAccounts", "storageQueueDataContributor"),
    "queue": ("Microsoft.Storage/storageAccounts", "storageQueueDataContributor"),
    "eventGrid": ("Microsoft.EventGrid/topics", "eventGridDataSender"),
    "cosmosDBTrigger": (COSMOS_ACCOUNT, "cosmosDataContributor"),
    "cosmosDB": (COSMOS_ACCOUNT, "cosmosDataContributor"),
}
# Binding types that need no data role (HTTP, timers, Event Grid push delivery).
BINDINGS_WITHOUT_ROLE = {"httpTrigger", "http", "timerTrigger", "eventGridTrigger"}
# The Functions host on Flex Consumption: deployment package, leases and keys in blob storage.
HOST_NEEDS = ("Microsoft.Storage/storageAccounts", "storageBlobDataOwner")
# Roles the app may hold at all; broader ones (Owner, Contributor, *Data Owner of Service Bus,
# Key Vault Administrator / Secrets Officer, ...) fail test_app_holds_only_narrow_roles.
APP_ALLOWED_ROLES = {need[1] for need in (*SDK_NEEDS.values(), *BINDING_NEEDS.values())}
APP_PRINCIPAL = "appPrincipalId"


@dataclass(frozen=True, slots=True)
class Grant:
    symbol: str
    role: str
    scope_type: str
    principal: str
    name: str
    condition: str | None


def _scope_type(symbol: str) -> str:
    return load("modules/rbac.bicep").resource(symbol).type


def grants() -> list[Grant]:
    rbac = load("modules/rbac.bicep")
    found: list[Grant] = []
    for resource in rbac.resources_of("Microsoft.Authorization/roleAssignments"):
        if resource.existing:
            continue
        definition = str(resource.properties["roleDefinitionId"])
        match = re.search(r"roles\.(\w+)", definition)
        assert match, f"{resource}: roleDefinitionId should use the roles variable: {definition}"
        found.append(
            Grant(
                symbol=resource.symbol,
                role=match.group(1),
                scope_type=_scope_type(str(resource.body["scope"])),
                principal=str(resource.properties["principalId"]),
                name=str(resource.body["name"]),
                condition=resource.condition,
            )
        )
    for resource in rbac.resources_of(f"{COSMOS_ACCOUNT}/sqlRoleAssignments"):
        definition = str(resource.properties["roleDefinitionId"])
        assert definition.endswith("${cosmosDataContributor}'"), definition
        found.append(
            Grant(
                symbol=resource.symbol,
                role="cosmosDataContributor",
                scope_type=_scope_type(str(resource.body["parent"])),
                principal=str(resource.properties["principalId"]),
                name=str(resource.body["name"]),
                condition=resource.condition,
            )
        )
    return found


def app_grants() -> set[tuple[str, str]]:
    return {(g.scope_type, g.role) for g in grants() if g.principal == APP_PRINCIPAL}


def needs_from_code() -> dict[str, tuple[str, str]]:
    """What the code needs, keyed by the reason (SDK module or binding type)."""
    needs: dict[str, tuple[str, str]] = {"Functions host (AzureWebJobsStorage)": HOST_NEEDS}
    for module in sorted(app_facts.azure_sdk_imports()):
        package = next((p for p in SDK_NEEDS if module == p or module.startswith(p + ".")), None)
        if package is not None:
            needs[package] = SDK_NEEDS[package]
        elif not any(module == p or module.startswith(p + ".") for p in SDK_WITHOUT_SERVICE):
            needs[module] = ("unknown", f"teach tests/infra/test_roles.py what {module} needs")
    for function in app_facts.indexed_functions():
        for binding in function.bindings:
            kind = str(binding["type"])
            if kind in BINDING_NEEDS:
                needs[f"{function.name} ({kind})"] = BINDING_NEEDS[kind]
            elif kind not in BINDINGS_WITHOUT_ROLE:
                needs[f"{function.name} ({kind})"] = ("unknown", f"teach tests/infra about {kind}")
    if "azure.servicebus" in needs:  # the app both sends (router) and receives (fulfillment)
        needs["azure.servicebus (receive)"] = (
            "Microsoft.ServiceBus/namespaces/queues",
            "serviceBusDataReceiver",
        )
    return needs


@pytest.mark.parametrize(
    ("reason", "need"), sorted(needs_from_code().items()), ids=sorted(needs_from_code())
)
def test_app_identity_has_role_for(reason: str, need: tuple[str, str]) -> None:
    assert need in app_grants(), (
        f"{reason} needs role {need[1]} on {need[0]}; infra/modules/rbac.bicep does not assign it"
    )


def test_app_holds_only_narrow_roles() -> None:
    broader = {role for _, role in app_grants()} - APP_ALLOWED_ROLES
    assert broader == set(), f"the app identity holds roles broader than it needs: {broader}"


def test_every_app_role_is_needed_by_the_code() -> None:
    unused = app_grants() - set(needs_from_code().values())
    assert unused == set(), f"roles nothing in the code needs: {unused}"


def test_role_ids_are_the_built_in_ones() -> None:
    assert load("modules/rbac.bicep").variables["roles"] == BUILT_IN_ROLES
    assert load("modules/rbac.bicep").variables["cosmosDataContributor"] == COSMOS_DATA_CONTRIBUTOR


@pytest.mark.parametrize("grant", grants(), ids=lambda g: g.symbol)
def test_role_assignment_name_is_a_stable_guid(grant: Grant) -> None:
    assert re.fullmatch(r"guid\(\w+\.id, \w+, (roles\.\w+|cosmosDataContributor)\)", grant.name), (
        f"{grant.symbol}: name it guid(<scope>.id, <principal>, <role>), not {grant.name}"
    )


def test_assignments_declare_principal_type() -> None:
    rbac = load("modules/rbac.bicep")
    for resource in rbac.resources_of("Microsoft.Authorization/roleAssignments"):
        if not resource.existing:
            assert "principalType" in resource.properties, resource.symbol


def test_cosmos_role_is_scoped_to_the_database() -> None:
    (assignment,) = load("modules/rbac.bicep").resources_of(f"{COSMOS_ACCOUNT}/sqlRoleAssignments")
    assert assignment.properties["scope"] == Expr("'${cosmos.id}/dbs/${cosmosDatabaseName}'")


def test_service_bus_roles_are_scoped_to_the_queue() -> None:
    service_bus = [g for g in grants() if g.role.startswith("serviceBus")]
    assert {g.scope_type for g in service_bus} == {"Microsoft.ServiceBus/namespaces/queues"}


def test_event_grid_identities_hold_only_what_delivery_needs() -> None:
    """The topics' identities dead-letter to their container; the storage system topic also adds
    messages to the one queue the import events go to. Nothing else."""
    event_grid = [g for g in grants() if g.principal != APP_PRINCIPAL and g.condition is None]
    dead_letter = (
        "Microsoft.Storage/storageAccounts/blobServices/containers",
        "storageBlobDataContributor",
    )
    import_events = (
        "Microsoft.Storage/storageAccounts/queueServices/queues",
        "storageQueueDataMessageSender",
    )
    held = {(g.principal, g.scope_type, g.role) for g in event_grid}
    assert held == {
        ("eventGridTopicPrincipalId", *dead_letter),
        ("systemTopicPrincipalId", *dead_letter),
        ("systemTopicPrincipalId", *import_events),
    }
    (queue_grant,) = [g for g in event_grid if g.role == "storageQueueDataMessageSender"]
    queue = load("modules/rbac.bicep").resource(queue_grant.symbol).body["scope"]
    assert load("modules/rbac.bicep").resource(str(queue)).body["name"] == Expr(
        "importEventsQueueName"
    )


def test_operator_role_is_optional_and_for_secrets_only() -> None:
    operator = [g for g in grants() if g.principal == "operatorPrincipalId"]
    assert [(g.role, g.condition) for g in operator] == [
        ("keyVaultSecretsOfficer", "(!empty(operatorPrincipalId))")
    ]


def test_rbac_module_gets_the_app_identity() -> None:
    (module,) = [m for m in load("main.bicep").modules if m.source == "modules/rbac.bicep"]
    assert module.params[APP_PRINCIPAL] == Expr("identity.outputs.principalId")
