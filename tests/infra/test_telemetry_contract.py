"""The alerts and the workbook query only telemetry the app really emits.

Every custom metric name (a quoted ``'orderflow.…'`` in a query) must be in
``shared.metrics.METRIC_NAMES``, and every custom log field (``customDimensions.<field>``) must be
set somewhere in the app's code (``app_facts.emitted_log_fields``). A renamed or removed metric or
field would otherwise leave an alert that never fires and a chart that stays empty, silently.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from shared import metrics
from tests.infra import app_facts
from tests.infra.bicep import INFRA, all_resources

WORKBOOK = INFRA / "workbooks" / "orderflow.json"
METRIC_NAME = re.compile(r"""['"](orderflow\.[A-Za-z0-9_.]+)['"]""")
LOG_FIELD = re.compile(r"""customDimensions(?:\.([A-Za-z_]\w*)|\[\s*['"]([^'"]+)['"]\s*\])""")


@dataclass(frozen=True, slots=True)
class Query:
    where: str
    text: str

    def metric_names(self) -> set[str]:
        return set(METRIC_NAME.findall(self.text))

    def log_fields(self) -> set[str]:
        return {dotted or indexed for dotted, indexed in LOG_FIELD.findall(self.text)}


def alert_queries() -> list[Query]:
    queries = []
    for rule in all_resources():
        if rule.type.lower() != "microsoft.insights/scheduledqueryrules":
            continue
        for condition in rule.properties["criteria"]["allOf"]:
            queries.append(Query(f"alert rule {rule}", str(condition["query"])))
    return queries


def _workbook_items(items: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for item in items:
        yield item
        content = item.get("content") or {}
        yield from _workbook_items(content.get("items") or [])  # groups nest items
        for parameter in content.get("parameters") or []:
            yield {"name": f"{item.get('name')}/{parameter.get('name')}", "content": parameter}


def workbook_queries() -> list[Query]:
    workbook = json.loads(WORKBOOK.read_text(encoding="utf-8"))
    return [
        Query(f"workbook item {item.get('name')!r} ({WORKBOOK.name})", item["content"]["query"])
        for item in _workbook_items(workbook["items"])
        if (item.get("content") or {}).get("query")
    ]


SOURCES = {"alerts": alert_queries, "workbook": workbook_queries}


def not_emitted(queries: list[Query], kind: str, emitted: set[str]) -> dict[str, list[str]]:
    """Referenced name -> where it is referenced, for every name the app does not emit."""
    missing: dict[str, list[str]] = {}
    for query in queries:
        referenced = query.metric_names() if kind == "metric" else query.log_fields()
        for name in sorted(referenced - emitted):
            missing.setdefault(name, []).append(query.where)
    return missing


def report(missing: dict[str, list[str]], what: str) -> str:
    lines = [f"{what} that the app does not emit:"]
    lines += [f"  {name!r} queried by {', '.join(where)}" for name, where in missing.items()]
    return "\n".join(lines)


@pytest.mark.parametrize("source", SOURCES)
def test_queried_custom_metrics_are_emitted(source: str) -> None:
    queries = SOURCES[source]()
    assert queries, f"no {source} queries found"
    assert any(q.metric_names() for q in queries), f"the {source} queries name no custom metric"
    missing = not_emitted(queries, "metric", set(metrics.METRIC_NAMES))
    assert not missing, report(missing, "custom metrics (shared/metrics.py METRIC_NAMES)")


@pytest.mark.parametrize("source", SOURCES)
def test_queried_log_fields_are_emitted(source: str) -> None:
    queries = SOURCES[source]()
    assert any(q.log_fields() for q in queries), f"the {source} queries name no log field"
    missing = not_emitted(queries, "field", app_facts.emitted_log_fields())
    assert not missing, report(missing, "log fields (customDimensions)")


def test_every_metric_name_is_unique_and_namespaced() -> None:
    assert len(set(metrics.METRIC_NAMES)) == len(metrics.METRIC_NAMES)
    for name in metrics.METRIC_NAMES:
        assert METRIC_NAME.fullmatch(f"'{name}'"), f"{name} is not an orderflow.* name"


# Constants of shared/metrics.py the workbook must chart (looked up when the test runs, so a
# removed constant fails that test with its name instead of breaking collection).
WORKBOOK_SHOWS = [
    "ORDERS_TRANSITIONED",
    "FULFILLMENT_LATENCY_SECONDS",
    "IMPORT_ROWS_ACCEPTED",
    "IMPORT_ROWS_REJECTED",
    "DEAD_LETTER_DEPTH",
    "POISON_QUEUE_DEPTH",
    "COLD_STARTS",
]


@pytest.mark.parametrize("constant", WORKBOOK_SHOWS)
def test_the_workbook_charts_each_operational_metric(constant: str) -> None:
    metric = getattr(metrics, constant, None)
    assert metric in metrics.METRIC_NAMES, f"shared/metrics.py has no metric {constant}"
    assert any(metric in q.metric_names() for q in workbook_queries()), metric


def test_the_workbook_follows_one_order_by_its_id_and_trace() -> None:
    (trace,) = [q for q in workbook_queries() if "{OrderId}" in q.text]
    assert {"orderId", "trace_id", "invocation_id", "correlation_id"} <= trace.log_fields()
    assert "operation_Id" in trace.text  # the host's request telemetry of the same trace
