"""Contract: the local Event Grid stand-in's subscriptions file says what infra/ deploys.

``localdev/eventgrid/subscriptions.json`` is rebuilt here from the Bicep (the topics of
``infra/modules/eventgrid.bicep``, every subscription of ``infra/event-subscriptions.bicep`` and
``infra/modules/import-events.bicep`` with its parameters' defaults filled in, the dead-letter
container of ``infra/main.bicep``) and must be equal to it: a filter, a destination, a schema or
a retry policy changed on one side only fails here, so local and Azure wiring cannot drift apart.
"""

from __future__ import annotations

import json
import re
from typing import Any

from localdev.eventgrid.subscriptions import DEFAULT_FILE, load_subscriptions
from tests.infra import app_facts
from tests.infra.bicep import BicepFile, Expr, Resource, load

SUBSCRIPTION_TYPES = {
    "microsoft.eventgrid/topics/eventsubscriptions": "custom",
    "microsoft.eventgrid/systemtopics/eventsubscriptions": "system",
}
_INTERPOLATION = re.compile(r"\$\{(\w+)\}")


def _resolve(value: Any, bicep: BicepFile) -> Any:
    """A value with parameter references replaced by the parameters' defaults (an expression
    that is more than that stays an Expr, and then cannot equal the file's literal)."""
    if isinstance(value, Expr):
        text = value.text
        if text in bicep.parameters:
            return bicep.parameters[text].default
        if text.startswith("'") and text.endswith("'"):

            def default(match: re.Match[str]) -> str:
                name = match.group(1)
                if name not in bicep.parameters:
                    return match.group(0)
                return str(bicep.parameters[name].default)

            resolved = _INTERPOLATION.sub(default, text[1:-1])
            return resolved if "${" not in resolved else Expr(resolved)
        return value
    if isinstance(value, list):
        return [_resolve(item, bicep) for item in value]
    if isinstance(value, dict):
        return {key: _resolve(item, bicep) for key, item in value.items()}
    return value


def _destination(raw: dict[str, Any], bicep: BicepFile) -> dict[str, Any]:
    properties = _resolve(raw.get("properties", {}), bicep)
    endpoint_type = raw["endpointType"]
    destination: dict[str, Any] = {"endpointType": endpoint_type}
    if endpoint_type == "AzureFunction":
        resource_id = str(properties["resourceId"])
        destination["functionName"] = resource_id.rsplit("/functions/", 1)[-1]
    elif endpoint_type == "WebHook":
        # https://<app host>/runtime/webhooks/...?functionName=...&code=<key>: the path and the
        # query without the key (the local host, like func start, enforces no keys).
        url = str(properties["endpointUrl"])
        path = url[url.index("/runtime/webhooks/") :]
        destination["functionsPath"] = re.sub(r"&code=.*$", "", path)
    elif endpoint_type == "StorageQueue":
        destination["queueName"] = properties["queueName"]
    if endpoint_type != "StorageQueue":
        destination["maxEventsPerBatch"] = properties.get("maxEventsPerBatch", 1)
    return destination


def _subscription(resource: Resource, bicep: BicepFile, topics: dict[str, str]) -> dict[str, Any]:
    properties = resource.properties
    parent = str(resource.body["parent"])
    described: dict[str, Any] = {
        "name": _resolve(resource.body["name"], bicep),
        "topic": topics[parent],
        # Delivery with the topic's identity nests the destination (StorageQueue imports).
        "destination": _destination(
            properties.get("destination")
            or properties["deliveryWithResourceIdentity"]["destination"],
            bicep,
        ),
        "eventDeliverySchema": properties.get("eventDeliverySchema", "EventGridSchema"),
        "filter": _resolve(properties.get("filter", {}), bicep),
    }
    if "retryPolicy" in properties:
        described["retryPolicy"] = _resolve(properties["retryPolicy"], bicep)
    return described


def what_infra_declares() -> dict[str, Any]:
    eventgrid = load("modules/eventgrid.bicep")
    subscriptions_bicep = load("event-subscriptions.bicep")
    import_events = load("modules/import-events.bicep")
    custom = eventgrid.resource("topic")
    system = eventgrid.resource("systemTopic")
    # The stand-in names its topics; infra names them by parameter. Map the parents.
    local_names = {"custom": "orderflow", "system": "storage"}
    topics = {
        local_names["custom"]: {
            "kind": "custom",
            "inputSchema": custom.properties.get("inputSchema", "EventGridSchema"),
        },
        local_names["system"]: {"kind": "system", "topicType": system.properties["topicType"]},
    }
    subscriptions: list[dict[str, Any]] = []
    for bicep in (subscriptions_bicep, import_events):
        parents: dict[str, str] = {}
        for resource in bicep.resources:
            if resource.existing and resource.type.lower() == "microsoft.eventgrid/topics":
                parents[resource.symbol] = local_names["custom"]
            elif resource.existing and resource.type.lower() == "microsoft.eventgrid/systemtopics":
                parents[resource.symbol] = local_names["system"]
        subscriptions.extend(
            _subscription(resource, bicep, parents)
            for resource in bicep.resources
            if resource.type.lower() in SUBSCRIPTION_TYPES
        )
    dead_letters = subscriptions_bicep.parameters["deadLetterContainerName"].default
    assert dead_letters == load("main.bicep").variables["deadLetterContainerName"]
    return {"deadLetterContainer": dead_letters, "topics": topics, "subscriptions": subscriptions}


def the_local_file() -> dict[str, Any]:
    document = json.loads(DEFAULT_FILE.read_text(encoding="utf-8"))
    document.pop("$comment", None)
    return dict(document)


def test_the_local_subscriptions_are_the_ones_infra_deploys() -> None:
    infra = what_infra_declares()
    local = the_local_file()
    assert local["deadLetterContainer"] == infra["deadLetterContainer"]
    assert local["topics"] == infra["topics"]
    by_name = {sub["name"]: sub for sub in local["subscriptions"]}
    assert sorted(by_name) == sorted(sub["name"] for sub in infra["subscriptions"])
    for declared in infra["subscriptions"]:
        assert by_name[declared["name"]] == declared, (
            f"subscription {declared['name']!r} differs between infra/ and {DEFAULT_FILE.name}"
        )


def test_the_stand_in_loads_the_file_and_its_functions_exist() -> None:
    subscriptions = load_subscriptions()
    assert subscriptions.custom_topic().name == "orderflow"
    for subscription in subscriptions.subscriptions:
        destination = subscription.destination
        name = destination.function_name
        if destination.functions_path is not None:
            name = destination.functions_path.rsplit("Host.Functions.", 1)[-1]
        if name is None:
            continue  # a StorageQueue destination: the queue's trigger is checked elsewhere
        function = app_facts.function_named(name)
        assert function is not None, f"{subscription.name} delivers to {name}, which is not indexed"
        if destination.endpoint_type == "AzureFunction":
            assert function.trigger["type"] == "eventGridTrigger"
