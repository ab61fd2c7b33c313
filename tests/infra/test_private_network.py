"""The private network (main.bicep ``vnetEnabled``): VNet integration for the function app,
private endpoints with their DNS zones for every data service, public network access off on each
when enabled, and Event Grid deliveries that still reach the app."""

from __future__ import annotations

import json

import pytest

from tests.infra.bicep import INFRA, Expr, load
from tests.infra.variants import specialise

NETWORK = "modules/network.bicep"
# (module, resource symbol) of every data service, with the private endpoint group id and the
# private DNS zone its host names resolve in.
PRIVATE_ENDPOINTS = {
    ("storageAccountId", "blob"): "privatelink.blob.${environment().suffixes.storage}",
    ("storageAccountId", "queue"): "privatelink.queue.${environment().suffixes.storage}",
    ("storageAccountId", "table"): "privatelink.table.${environment().suffixes.storage}",
    ("cosmosAccountId", "Sql"): "privatelink.documents.azure.com",
    ("serviceBusNamespaceId", "namespace"): "privatelink.servicebus.windows.net",
    ("keyVaultId", "vault"): "privatelink.vaultcore.azure.net",
    ("eventGridTopicId", "topic"): "privatelink.eventgrid.azure.net",
}
PUBLIC_ACCESS_OFF = [
    ("modules/cosmos.bicep", "account"),
    ("modules/servicebus.bicep", "namespace"),
    ("modules/keyvault.bicep", "vault"),
    ("modules/eventgrid.bicep", "topic"),
]


def endpoints() -> list[dict[str, object]]:
    value = load(NETWORK).variables["endpoints"]
    assert isinstance(value, list)
    return value


def test_every_data_service_has_a_private_endpoint_and_zone() -> None:
    declared = {
        (str(e["resourceId"]), str(e["groupId"])): str(e["zone"]).strip("'") for e in endpoints()
    }
    assert declared == PRIVATE_ENDPOINTS


def test_endpoints_zones_and_links_are_wired() -> None:
    network = load(NETWORK)
    pe = network.resource("privateEndpoints")
    assert pe.looped
    assert pe.properties["subnet"]["id"] == Expr("vnet.properties.subnets[1].id")
    connection = pe.properties["privateLinkServiceConnections"][0]["properties"]
    assert connection["privateLinkServiceId"] == Expr("endpoint.resourceId")
    assert connection["groupIds"] == [Expr("endpoint.groupId")]
    link = network.resource("zoneLinks")
    assert link.properties["virtualNetwork"]["id"] == Expr("vnet.id")
    assert link.properties["registrationEnabled"] is False
    group = network.resource("zoneGroups")
    config = group.properties["privateDnsZoneConfigs"][0]["properties"]
    assert config["privateDnsZoneId"] == Expr("zones[i].id")
    for symbol in ("zones", "zoneLinks", "privateEndpoints", "zoneGroups"):
        assert network.resource(symbol).looped, f"{symbol}: one per endpoint"


def test_the_app_subnet_is_delegated_for_flex_consumption() -> None:
    subnets = load(NETWORK).resource("vnet").properties["subnets"]
    assert [s["name"] for s in subnets] == ["app", "private-endpoints"]
    delegation = subnets[0]["properties"]["delegations"][0]["properties"]["serviceName"]
    assert delegation == "Microsoft.App/environments"
    assert load(NETWORK).outputs["appSubnetId"] == Expr("vnet.properties.subnets[0].id")


def test_main_integrates_the_app_and_creates_the_network_only_when_enabled() -> None:
    main = load("main.bicep")
    assert main.parameters["vnetEnabled"].type == "bool"
    assert main.parameters["vnetEnabled"].default is False
    network = next(m for m in main.modules if m.symbol == "network")
    assert "if (vnetEnabled)" in main.source.decode("utf-8")
    assert network.source == "modules/network.bicep"
    app = next(m for m in main.modules if m.symbol == "functionApp")
    assert app.params["virtualNetworkSubnetId"] == Expr(
        "vnetEnabled ? network.outputs.appSubnetId : ''"
    )
    site = load("modules/functionapp.bicep").resource("site").properties
    assert site["virtualNetworkSubnetId"] == Expr(
        "empty(virtualNetworkSubnetId) ? null : virtualNetworkSubnetId"
    )


def test_every_module_with_the_parameter_gets_it_from_main() -> None:
    main = load("main.bicep")
    for module in main.modules:
        declared = load(module.source).parameters
        if "vnetEnabled" in declared:
            assert module.params.get("vnetEnabled") == Expr("vnetEnabled"), module.symbol


@pytest.mark.parametrize(
    ("module", "symbol"), PUBLIC_ACCESS_OFF, ids=[s for _, s in PUBLIC_ACCESS_OFF]
)
def test_public_network_access_is_disabled_with_the_private_network(
    module: str, symbol: str
) -> None:
    value = load(module).resource(symbol).properties["publicNetworkAccess"]
    assert value == Expr("vnetEnabled ? 'Disabled' : 'Enabled'")


def test_storage_admits_only_trusted_services_publicly_with_the_private_network() -> None:
    """Event Grid dead-letters (and delivers to storage queues) through the trusted-services
    exception; every other public caller is denied."""
    acls = load("modules/storage.bicep").resource("storage").properties["networkAcls"]
    assert acls["defaultAction"] == Expr("vnetEnabled ? 'Deny' : 'Allow'")
    assert acls["bypass"] == "AzureServices"
    vault = load("modules/keyvault.bicep").resource("vault").properties["networkAcls"]
    assert vault["defaultAction"] == Expr("vnetEnabled ? 'Deny' : 'Allow'")


def test_service_bus_is_premium_with_the_private_network() -> None:
    sku = load("modules/servicebus.bicep").resource("namespace").body["sku"]
    text = specialise(f"var s = {sku.text}\n", {"vnetEnabled": True})
    assert "'Premium'" in text
    assert "'Standard'" not in text
    assert "'Premium'" not in specialise(f"var s = {sku.text}\n", {"vnetEnabled": False})


def test_event_grid_deliveries_still_reach_the_app() -> None:
    """Event Grid is outside the VNet: it delivers order events to the app's public endpoint
    (which stays on, also with the private network), to the runtime webhook Easy Auth lets
    through and the access restrictions allow; it writes upload events to the import queue as
    a trusted Azure service with the system topic's own (system-assigned) identity, which is
    what a storage account behind a firewall accepts (networkAcls bypass AzureServices); it
    dead-letters with the topics' own identities."""
    site = load("modules/functionapp.bicep").resource("site").properties
    assert site["publicNetworkAccess"] == "Enabled"
    rules = load("modules/functionapp.bicep").variables["eventGridRules"]
    assert rules == [
        {
            "name": "event-grid",
            "action": "Allow",
            "priority": 300,
            "tag": "ServiceTag",
            "ipAddress": "AzureEventGrid",
        }
    ]
    subscriptions = load("event-subscriptions.bicep")
    assert subscriptions.resource("orderEvents").properties["destination"]["endpointType"] == (
        "AzureFunction"
    )
    dead_letter = subscriptions.variables["deadLetter"]
    assert dead_letter["identity"] == {"type": "SystemAssigned"}
    imports = load("modules/import-events.bicep").resource("orderImports").properties
    delivery = imports["deliveryWithResourceIdentity"]
    assert delivery["identity"] == {"type": "SystemAssigned"}  # user-assigned is refused there
    assert delivery["destination"]["endpointType"] == "StorageQueue"
    assert imports["deadLetterWithResourceIdentity"]["identity"] == {"type": "SystemAssigned"}
    acls = load("modules/storage.bicep").resource("storage").properties["networkAcls"]
    assert acls["bypass"] == "AzureServices"
    excluded = load("modules/functionapp.bicep").variables["easyAuthExcludedPaths"]
    assert "/runtime/webhooks/eventgrid" in excluded
    assert "/runtime/webhooks/blobs" not in excluded  # no blob trigger: nothing delivers there


def test_azd_and_the_pipelines_can_turn_it_on() -> None:
    parameters = json.loads((INFRA / "main.parameters.json").read_text(encoding="utf-8"))
    assert parameters["parameters"]["vnetEnabled"]["value"] == "${ORDERFLOW_VNET_ENABLED=false}"
    deploy = (INFRA / "scripts" / "deploy.sh").read_text(encoding="utf-8")
    assert 'vnetEnabled="${ORDERFLOW_VNET_ENABLED:-false}"' in deploy


def test_specialise_picks_branches_drops_false_declarations_and_vnet_only_skips() -> None:
    source = (
        "module n 'n.bicep' = if (vnetEnabled) {\n  name: 'n'\n}\n"
        "resource r 'A/b@1' = {\n  properties: {\n"
        "    // checkov:skip=CKV_X_1: vnetEnabled=false only: public without the network\n"
        "    // checkov:skip=CKV_X_2: always needed for another reason\n"
        "    a: vnetEnabled ? 'Disabled' : 'Enabled'\n    b: !vnetEnabled ? 1 : 2\n  }\n}\n"
    )
    on = specialise(source, {"vnetEnabled": True})
    off = specialise(source, {"vnetEnabled": False})
    assert "module n 'n.bicep' = {" in on
    assert "module n" not in off
    assert "a: 'Disabled'" in on
    assert "a: 'Enabled'" in off
    assert "b: 2" in on
    assert "b: 1" in off
    assert "CKV_X_1" not in on
    assert "CKV_X_1" in off
    assert "CKV_X_2" in on
