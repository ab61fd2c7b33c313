"""Operations resources in Bicep: the action group, every alert rule (severity, the action group
wired, a runbook in docs/OPERATIONS.md, a query that yields what the rule measures), the budget
(80% and 100%, a start date that survives redeployment) and the workbook (valid JSON, every
placeholder filled). Telemetry names in the queries are checked in test_telemetry_contract.py."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from shared import names
from tests.infra.bicep import INFRA, ROOT, Expr, Resource, load

ALERTS = "modules/alerts.bicep"
METRIC_ALERT = "Microsoft.Insights/metricAlerts"
LOG_ALERT = "Microsoft.Insights/scheduledQueryRules"
OPERATIONS_DOC = ROOT / "docs" / "OPERATIONS.md"
DURATION = re.compile(r"^PT(?:(\d+)H)?(?:(\d+)M)?$")


def alert_rules() -> list[Resource]:
    alerts = load(ALERTS)
    return alerts.resources_of(METRIC_ALERT) + alerts.resources_of(LOG_ALERT)


def minutes(duration: str) -> int:
    match = DURATION.match(duration)
    assert match, f"unexpected duration {duration!r}"
    return int(match.group(1) or 0) * 60 + int(match.group(2) or 0)


def github_anchor(heading: str) -> str:
    """The anchor GitHub gives a Markdown heading."""
    slug = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return slug.replace(" ", "-")


def runbook_anchors() -> set[str]:
    text = OPERATIONS_DOC.read_text(encoding="utf-8")
    return {github_anchor(h) for h in re.findall(r"^#{2,4} (.+)$", text, flags=re.MULTILINE)}


def test_the_alerts_cover_what_operations_needs() -> None:
    symbols = {rule.symbol for rule in alert_rules()}
    assert symbols == {
        "deadLetters",
        "parkedCommands",
        "http5xxRate",
        "functionDurationP95",
        "functionFailures",
        "poisonQueue",
        "importRowsRejected",
        "importsReconciled",
    }


def test_the_action_group_mails_the_configured_address() -> None:
    alerts = load(ALERTS)
    group = alerts.resource("actionGroup")
    assert group.body["location"] == "global"
    properties = group.properties
    assert properties["enabled"] is True
    assert 1 <= len(properties["groupShortName"]) <= 12  # Azure's limit for the SMS/e-mail sender
    assert properties["emailReceivers"] == Expr("empty(alertEmailAddress) ? [] : [operatorsEmail]")
    assert alerts.variables["operatorsEmail"]["emailAddress"] == Expr("alertEmailAddress")
    main = load("main.bicep")
    (module,) = [m for m in main.modules if m.symbol == "alerts"]
    assert module.params["alertEmailAddress"] == Expr("alertEmailAddress")
    parameters = json.loads((INFRA / "main.parameters.json").read_text(encoding="utf-8"))
    assert parameters["parameters"]["alertEmailAddress"]["value"] == "${ORDERFLOW_ALERT_EMAIL}"
    deploy = (INFRA / "scripts" / "deploy.sh").read_text(encoding="utf-8")
    assert 'alertEmailAddress="${ORDERFLOW_ALERT_EMAIL:-}"' in deploy


@pytest.mark.parametrize("rule", alert_rules(), ids=lambda r: r.symbol)
def test_every_alert_has_a_severity_the_action_group_and_a_runbook(rule: Resource) -> None:
    properties = rule.properties
    assert properties["severity"] in range(5), "severity must be 0 (critical) .. 4 (verbose)"
    assert properties["enabled"] is True
    assert properties["autoMitigate"] is True, "an alert resolves itself once the cause is gone"
    if rule.type == METRIC_ALERT:
        assert rule.body["location"] == "global"
        assert properties["actions"] == [{"actionGroupId": Expr("actionGroup.id")}]
    else:
        assert rule.body["kind"] == "LogAlert"
        assert properties["actions"] == {"actionGroups": [Expr("actionGroup.id")]}
    assert minutes(properties["windowSize"]) >= minutes(properties["evaluationFrequency"])
    runbook = re.search(r"docs/OPERATIONS\.md#([\w-]+)", str(properties["description"]))
    assert runbook, f"{rule.symbol}: the description links no runbook"
    assert runbook.group(1) in runbook_anchors(), f"docs/OPERATIONS.md has no #{runbook.group(1)}"


@pytest.mark.parametrize("rule", load(ALERTS).resources_of(LOG_ALERT), ids=lambda r: r.symbol)
def test_log_alerts_query_application_insights_for_what_they_measure(rule: Resource) -> None:
    properties = rule.properties
    assert properties["scopes"] == [Expr("appInsights.id")]
    (condition,) = properties["criteria"]["allOf"]
    query = str(condition["query"])
    # The measured column and each dimension must be columns the query produces.
    assert re.search(rf"\b{condition['metricMeasureColumn']}\s*=", query), query
    for dimension in condition.get("dimensions", []):
        assert re.search(rf"\b{dimension['name']}\s*=", query), dimension["name"]
        assert dimension["operator"] == "Include"
    assert condition["timeAggregation"] in {"Count", "Average", "Minimum", "Maximum", "Total"}
    assert condition["operator"] in {"GreaterThan", "GreaterThanOrEqual"}


def test_alert_thresholds_are_parameters_of_main() -> None:
    thresholds = {
        "http5xxRate": "http5xxPercentThreshold",
        "functionDurationP95": "functionDurationP95ThresholdMs",
        "functionFailures": "functionFailuresThreshold",
        "importRowsRejected": "importRowsRejectedThreshold",
    }
    alerts = load(ALERTS)
    (module,) = [m for m in load("main.bicep").modules if m.symbol == "alerts"]
    for symbol, parameter in thresholds.items():
        (condition,) = alerts.resource(symbol).properties["criteria"]["allOf"]
        assert condition["threshold"] == Expr(parameter), symbol
        assert module.params[parameter] == Expr(parameter), f"main.bicep does not pass {parameter}"
        assert parameter in load("main.bicep").parameters


def metric_criterion(symbol: str) -> dict[str, Any]:
    properties = load(ALERTS).resource(symbol).properties
    assert properties["scopes"] == [Expr("namespace.id")]
    criteria = properties["criteria"]
    assert criteria["odata.type"] == "Microsoft.Azure.Monitor.SingleResourceMultipleMetricCriteria"
    (criterion,) = criteria["allOf"]
    assert isinstance(criterion, dict)
    assert criterion["metricNamespace"] == "Microsoft.ServiceBus/namespaces"
    assert (criterion["operator"], criterion["threshold"]) == ("GreaterThan", 0)
    (dimension,) = criterion["dimensions"]
    assert (dimension["name"], dimension["operator"]) == ("EntityName", "Include")
    return criterion


def test_dead_letters_alert_on_both_fulfillment_queues() -> None:
    criterion = metric_criterion("deadLetters")
    assert criterion["metricName"] == "DeadletteredMessages"
    assert criterion["dimensions"][0]["values"] == [
        Expr("fulfillmentQueueName"),
        Expr("parkedQueueName"),
    ]
    (module,) = [m for m in load("main.bicep").modules if m.symbol == "alerts"]
    assert module.params["fulfillmentQueueName"] == Expr("serviceBus.outputs.fulfillmentQueueName")
    assert module.params["parkedQueueName"] == Expr("serviceBus.outputs.parkedQueueName")
    main = load("main.bicep").variables
    assert (main["fulfillmentQueueName"], main["parkedQueueName"]) == (
        names.FULFILLMENT_QUEUE,
        names.FULFILLMENT_PARKED_QUEUE,
    )


def test_parked_commands_alert_on_any_active_message_in_the_parked_queue() -> None:
    criterion = metric_criterion("parkedCommands")
    assert criterion["metricName"] == "ActiveMessages"
    assert criterion["dimensions"][0]["values"] == [Expr("parkedQueueName")]


def test_budget_notifies_at_80_and_100_percent_of_the_monthly_amount() -> None:
    budget = load("modules/budget.bicep").resource("budget")
    properties = budget.properties
    assert budget.api_version
    assert budget.type == "Microsoft.Consumption/budgets"
    assert (properties["category"], properties["timeGrain"]) == ("Cost", "Monthly")
    assert properties["amount"] == Expr("amount")
    notifications = list(properties["notifications"].values())
    assert sorted(n["threshold"] for n in notifications) == [80, 100]
    for notification in notifications:
        assert notification["enabled"] is True
        assert notification["thresholdType"] == "Actual"
        assert notification["operator"] == "GreaterThanOrEqualTo"
        assert notification["contactGroups"] == [Expr("actionGroupId")]
    (module,) = [m for m in load("main.bicep").modules if m.symbol == "budget"]
    assert module.params["amount"] == Expr("monthlyBudgetAmount")
    assert module.params["actionGroupId"] == Expr("alerts.outputs.actionGroupId")


def test_budget_start_date_survives_redeployment() -> None:
    """Azure refuses to change a budget's start date: the first deployment's date is output and
    passed back by azd (parameters file) and by deploy.sh (the last deployment's outputs)."""
    main = load("main.bicep")
    (module,) = [m for m in main.modules if m.symbol == "budget"]
    assert module.params["startDate"] == Expr("budgetStart")
    assert main.variables["budgetStart"] == Expr(
        "!empty(budgetStartDate) ? budgetStartDate : currentMonthStart"
    )
    assert main.parameters["currentMonthStart"].default == Expr("utcNow('yyyy-MM-01')")
    assert main.outputs["ORDERFLOW_BUDGET_START_DATE"] == Expr("budgetStart")
    parameters = json.loads((INFRA / "main.parameters.json").read_text(encoding="utf-8"))
    assert parameters["parameters"]["budgetStartDate"]["value"] == "${ORDERFLOW_BUDGET_START_DATE}"
    deploy = (INFRA / "scripts" / "deploy.sh").read_text(encoding="utf-8")
    assert "properties.outputs.ORDERFLOW_BUDGET_START_DATE.value" in deploy
    assert 'budgetStartDate="$budget_start"' in deploy


def test_workbook_is_linked_to_application_insights_and_fills_its_placeholders() -> None:
    module = load("modules/workbook.bicep")
    workbook = module.resource("workbook")
    assert workbook.type == "Microsoft.Insights/workbooks"
    assert str(workbook.body["name"]).startswith("guid(")  # a workbook's name must be a GUID
    assert workbook.body["kind"] == "shared"
    assert workbook.properties["sourceId"] == Expr("appInsights.id")
    assert workbook.properties["category"] == "workbook"
    source = module.path.read_text(encoding="utf-8")
    (loaded,) = re.findall(r"loadTextContent\('([^']+)'\)", source)
    path = (module.path.parent / loaded).resolve()
    assert path == INFRA / "workbooks" / "orderflow.json"
    definition = json.loads(path.read_text(encoding="utf-8"))
    assert definition["version"] == "Notebook/1.0"
    placeholders = set(re.findall(r"__[A-Z_]+__", path.read_text(encoding="utf-8")))
    replaced = set(re.findall(r"replace\(\w+, '(__[A-Z_]+__)'", source))
    assert placeholders, "the workbook names no resource"
    assert placeholders == replaced, f"unfilled: {placeholders - replaced}"
    assert definition["fallbackResourceIds"] == ["__APPLICATION_INSIGHTS_ID__"]


def test_operations_modules_are_deployed_by_main() -> None:
    deployed = {m.symbol: m.source for m in load("main.bicep").modules}
    assert deployed["alerts"] == "modules/alerts.bicep"
    assert deployed["workbook"] == "modules/workbook.bicep"
    assert deployed["budget"] == "modules/budget.bicep"
