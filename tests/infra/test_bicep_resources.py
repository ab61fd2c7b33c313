"""The Bicep templates: they parse, hang together, disable local auth everywhere, and create
exactly the containers, queues and partition keys the app's code names (shared/names.py)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from shared import names
from tests.infra import app_facts
from tests.infra.bicep import INFRA, ROOT, Expr, all_resources, bicep_paths, load, parse


def relative(path: Path) -> str:
    return path.relative_to(INFRA).as_posix()


@pytest.mark.parametrize("path", bicep_paths(), ids=relative)
def test_bicep_file_parses_without_errors(path: Path) -> None:
    bicep = parse(path)
    assert bicep.syntax_errors() == []
    assert bicep.resources or bicep.modules, f"{relative(path)} declares nothing"


def test_every_module_exists_and_gets_its_required_params() -> None:
    for path in bicep_paths():
        for module in load(relative(path)).modules:
            target = path.parent / module.source
            assert target.exists(), f"{relative(path)}: module {module.source} does not exist"
            declared = load(relative(target)).parameters
            passed = set(module.params)
            assert passed <= declared.keys(), f"{module.symbol}: unknown {passed - declared.keys()}"
            required = {n for n, p in declared.items() if not p.has_default}
            assert required <= passed, f"{module.symbol}: missing {required - passed}"


def test_parameters_file_matches_main() -> None:
    data = json.loads((INFRA / "main.parameters.json").read_text(encoding="utf-8"))
    given = set(data["parameters"])
    declared = load("main.bicep").parameters
    assert given <= declared.keys()
    assert {n for n, p in declared.items() if not p.has_default} <= given


def dig(body: dict[str, Any], dotted: str) -> Any:
    value: Any = body
    for key in dotted.split("."):
        value = value[key]
    return value


LOCAL_AUTH_OFF = [
    ("modules/storage.bicep", "storage", "properties.allowSharedKeyAccess", False),
    ("modules/cosmos.bicep", "account", "properties.disableLocalAuth", True),
    ("modules/cosmos.bicep", "account", "properties.disableKeyBasedMetadataWriteAccess", True),
    ("modules/servicebus.bicep", "namespace", "properties.disableLocalAuth", True),
    ("modules/eventgrid.bicep", "topic", "properties.disableLocalAuth", True),
    ("modules/monitoring.bicep", "appInsights", "properties.DisableLocalAuth", True),
    ("modules/monitoring.bicep", "workspace", "properties.features.disableLocalAuth", True),
    ("modules/keyvault.bicep", "vault", "properties.enableRbacAuthorization", True),
    ("modules/keyvault.bicep", "vault", "properties.enableSoftDelete", True),
    ("modules/keyvault.bicep", "vault", "properties.enablePurgeProtection", True),
    ("modules/storage.bicep", "storage", "properties.allowBlobPublicAccess", False),
    ("modules/storage.bicep", "storage", "properties.minimumTlsVersion", "TLS1_2"),
    ("modules/functionapp.bicep", "site", "properties.httpsOnly", True),
    ("modules/functionapp.bicep", "ftpCredentials", "properties.allow", False),
    ("modules/functionapp.bicep", "scmCredentials", "properties.allow", False),
]


@pytest.mark.parametrize(
    ("module", "symbol", "path", "expected"),
    LOCAL_AUTH_OFF,
    ids=[f"{m.split('/')[-1]}:{s}.{p.split('.')[-1]}" for m, s, p, _ in LOCAL_AUTH_OFF],
)
def test_local_auth_is_disabled(module: str, symbol: str, path: str, expected: object) -> None:
    actual = dig(load(module).resource(symbol).body, path)
    assert actual == expected, f"{module} {symbol}.{path} is {actual!r}, must be {expected!r}"


def test_cosmos_containers_and_partition_keys_match_the_code() -> None:
    cosmos = load("modules/cosmos.bicep")
    containers = {
        c.properties["resource"]["id"]: c.properties["resource"]["partitionKey"]["paths"]
        for c in cosmos.resources_of(
            "Microsoft.DocumentDB/databaseAccounts/sqlDatabases/containers"
        )
    }
    assert containers == {name: [key] for name, key in names.COSMOS_CONTAINERS.items()}
    assert load("main.bicep").variables["cosmosDatabaseName"] == names.COSMOS_DATABASE_DEFAULT


def test_idempotency_records_expire() -> None:
    cosmos = load("modules/cosmos.bicep")
    resource = cosmos.resource("idempotency").properties["resource"]
    assert resource["id"] == names.IDEMPOTENCY_CONTAINER
    assert resource["defaultTtl"] == Expr("idempotencyTtlSeconds")
    assert cosmos.parameters["idempotencyTtlSeconds"].default > 0


@pytest.mark.parametrize("container", [names.INVENTORY_CONTAINER, names.IMPORTS_CONTAINER])
def test_ttl_is_on_so_markers_expire_and_aggregates_do_not(container: str) -> None:
    resource = load("modules/cosmos.bicep").resource(container).properties["resource"]
    assert resource["defaultTtl"] == names.COSMOS_CONTAINER_DEFAULT_TTL[container]
    assert resource["defaultTtl"] == -1


def test_order_queries_have_composite_indexes() -> None:
    """List by customer newest first (optionally by status); expire pending orders by age."""
    policy = load("modules/cosmos.bicep").resource("orders").properties["resource"]
    composites = [
        tuple((p["path"], p["order"]) for p in index)
        for index in policy["indexingPolicy"]["compositeIndexes"]
    ]
    assert (("/customerId", "ascending"), ("/createdAt", "descending")) in composites
    assert (
        ("/customerId", "ascending"),
        ("/status", "ascending"),
        ("/createdAt", "descending"),
    ) in composites
    assert (("/status", "ascending"), ("/createdAt", "ascending")) in composites


def test_blob_containers_and_queues_match_the_code() -> None:
    main = load("main.bicep")
    assert main.variables["appBlobContainers"] == list(names.BLOB_CONTAINERS)
    assert main.variables["storageQueues"] == list(names.STORAGE_QUEUES)


def test_fulfillment_queue_detects_duplicates_and_dead_letters() -> None:
    assert load("main.bicep").variables["fulfillmentQueueName"] == names.FULFILLMENT_QUEUE
    queue = load("modules/servicebus.bicep").resource("fulfillmentQueue").properties
    assert queue["requiresDuplicateDetection"] is True
    assert queue["deadLetteringOnMessageExpiration"] is True
    assert queue["maxDeliveryCount"] == Expr("maxDeliveryCount")


def test_flex_consumption_app() -> None:
    functionapp = load("modules/functionapp.bicep")
    assert functionapp.resource("plan").body["sku"] == {"name": "FC1", "tier": "FlexConsumption"}
    config = functionapp.resource("site").properties["functionAppConfig"]
    assert config["runtime"] == {"name": "python", "version": "3.13"}
    storage = config["deployment"]["storage"]
    assert storage["type"] == "blobContainer"
    assert storage["authentication"]["type"] == "UserAssignedIdentity"
    assert config["scaleAndConcurrency"]["alwaysReady"] == Expr("alwaysReady")
    assert load("main.bicep").parameters["alwaysReady"].default == []


DIAGNOSED = [
    ("modules/keyvault.bicep", "vault"),
    ("modules/cosmos.bicep", "account"),
    ("modules/servicebus.bicep", "namespace"),
    ("modules/eventgrid.bicep", "topic"),
    ("modules/eventgrid.bicep", "systemTopic"),
    ("modules/storage.bicep", "blobService"),
    ("modules/storage.bicep", "queueService"),
    ("modules/functionapp.bicep", "site"),
]


@pytest.mark.parametrize(("module", "symbol"), DIAGNOSED, ids=[s for _, s in DIAGNOSED])
def test_diagnostic_settings_go_to_the_workspace(module: str, symbol: str) -> None:
    settings = [
        r
        for r in load(module).resources_of("Microsoft.Insights/diagnosticSettings")
        if r.body.get("scope") == Expr(symbol)
    ]
    assert settings, f"{module}: {symbol} has no diagnostic setting"
    assert settings[0].properties["workspaceId"] == Expr("logAnalyticsWorkspaceId")
    assert settings[0].properties["logs"], f"{symbol}: no logs collected"


def test_order_events_reach_the_router_function() -> None:
    subscriptions = load("event-subscriptions.bicep")
    router = subscriptions.parameters["routerFunctionName"].default
    assert router == "route_order_events"
    destination = subscriptions.resource("orderEvents").properties["destination"]
    assert destination["endpointType"] == "AzureFunction"
    assert destination["properties"]["resourceId"] == Expr(
        "'${site.id}/functions/${routerFunctionName}'"
    )
    assert load("modules/eventgrid.bicep").resource("topic").properties["inputSchema"] == (
        "CloudEventSchemaV1_0"
    )
    deployed = app_facts.function_named(router)
    if deployed is not None:  # the router has landed: it must be an Event Grid trigger
        assert deployed.trigger["type"] == "eventGridTrigger"


def test_blob_uploads_reach_the_import_queue_keylessly() -> None:
    """BlobCreated events of order-imports go to the queue the import function reads, written
    with the system topic's identity: no webhook, no function key, no post-deploy step."""
    module = load("modules/import-events.bicep")
    assert module.parameters["importsContainerName"].default == names.IMPORTS_BLOB_CONTAINER
    assert module.parameters["importEventsQueueName"].default == names.IMPORT_EVENTS_QUEUE
    subscription = module.resource("orderImports")
    assert subscription.body["parent"] == Expr("systemTopic")
    properties = subscription.properties
    assert "destination" not in properties, "deliver with the identity, not keys"
    delivery = properties["deliveryWithResourceIdentity"]
    assert delivery["identity"] == {"type": "SystemAssigned"}
    assert delivery["destination"]["endpointType"] == "StorageQueue"
    assert delivery["destination"]["properties"]["resourceId"] == Expr("storage.id")
    assert delivery["destination"]["properties"]["queueName"] == Expr("importEventsQueueName")
    assert properties["eventDeliverySchema"] == "EventGridSchema"
    assert properties["filter"]["includedEventTypes"] == ["Microsoft.Storage.BlobCreated"]
    assert properties["filter"]["subjectBeginsWith"] == Expr(
        "'/blobServices/default/containers/${importsContainerName}/blobs/'"
    )
    assert properties["retryPolicy"]["maxDeliveryAttempts"] >= 1
    assert properties["retryPolicy"]["eventTimeToLiveInMinutes"] >= 60
    dead_letter = properties["deadLetterWithResourceIdentity"]
    assert dead_letter["identity"] == {"type": "SystemAssigned"}
    assert dead_letter["deadLetterDestination"]["properties"]["blobContainerName"] == Expr(
        "deadLetterContainerName"
    )
    (deployed,) = [
        m for m in load("main.bicep").modules if m.source == "modules/import-events.bicep"
    ]
    assert "rbac" in str(deployed.body.get("dependsOn")), "Event Grid checks the role on create"
    main = load("main.bicep").variables
    assert main["importEventsQueueName"] == names.IMPORT_EVENTS_QUEUE
    assert main["importsContainerName"] == names.IMPORTS_BLOB_CONTAINER
    importer = app_facts.function_named("import_order_file")
    assert importer is not None
    assert importer.trigger["type"] == "queueTrigger"
    assert importer.trigger["queueName"] == names.IMPORT_EVENTS_QUEUE


def test_no_function_is_a_blob_trigger_in_azure() -> None:
    """A blob trigger has the host read the whole blob into memory before the function runs."""
    assert [
        f.name for f in app_facts.indexed_functions() if f.trigger["type"] == "blobTrigger"
    ] == []


def test_nothing_in_infra_reads_keys() -> None:
    """No listKeys() and its kin (ARM list* functions) anywhere in infra/, templates or scripts."""
    pattern = re.compile(r"listKeys|listConnectionStrings|listAccountSas|listServiceSas")
    offenders = [
        f"{path.relative_to(INFRA)}:{number}"
        for path in sorted(INFRA.rglob("*"))
        if path.is_file() and path.suffix in {".bicep", ".sh", ".json", ".bicepparam", ".ps1"}
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1)
        if pattern.search(line)
    ]
    assert offenders == []


def test_event_subscriptions_dead_letter_with_identity() -> None:
    subscriptions = load("event-subscriptions.bicep")
    properties = subscriptions.resource("orderEvents").properties
    assert properties["deadLetterWithResourceIdentity"] == Expr("deadLetter")
    dead_letter = subscriptions.variables["deadLetter"]
    assert dead_letter["identity"] == {"type": "SystemAssigned"}
    assert (
        subscriptions.parameters["deadLetterContainerName"].default
        == load("main.bicep").variables["deadLetterContainerName"]
    )


def test_outputs_cover_what_the_hook_needs() -> None:
    script = (INFRA / "scripts" / "event-subscriptions.sh").read_text(encoding="utf-8")
    needed = set(re.findall(r'^: "\$\{(\w+):\?', script, flags=re.MULTILINE))
    assert needed, "the hook declares no required variables"
    assert needed <= load("main.bicep").outputs.keys()


def test_every_resource_is_declared_at_top_level() -> None:
    """Nested child resources are invisible to the offline checks: use `parent:` instead."""
    source = "\n".join(p.read_text(encoding="utf-8") for p in bicep_paths())
    assert all_resources(), "no resources found"
    assert "\n    resource " not in source
    assert "\n  resource " not in source


def test_azd_project() -> None:
    from ruamel.yaml import YAML

    project = YAML(typ="safe").load((ROOT / "azure.yaml").read_text(encoding="utf-8"))
    assert project["infra"] == {"provider": "bicep", "path": "infra", "module": "main"}
    service = project["services"]["api"]
    assert service == {"project": ".", "language": "python", "host": "function"}
    tags = load("modules/functionapp.bicep").parameters["serviceName"].default
    assert tags == "api", "the function app's azd-service-name tag must match azure.yaml"
    hook = project["hooks"]["postdeploy"]["posix"]["run"]
    assert (ROOT / hook).exists()
