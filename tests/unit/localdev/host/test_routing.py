"""Route templates, constraints and precedence of the local host (localdev.host.routing)."""

from __future__ import annotations

import pytest

from localdev.host.routing import RouteTable, RouteTemplate, RouteTemplateError, split_path


def match(template: str, path: str) -> dict[str, str] | None:
    return RouteTemplate.parse(template).match(split_path(path))


def table(*routes: tuple[str, str, list[str] | None], prefix: str = "api") -> RouteTable:
    return RouteTable.from_triggers(
        ((name, {"route": route, "methods": methods}) for name, route, methods in routes), prefix
    )


def matched_function(route_table: RouteTable, method: str, path: str) -> str | None:
    found = route_table.match(method, path)
    return found.route.function_name if found else None


@pytest.mark.parametrize(
    ("template", "path", "expected"),
    [
        ("items/{id}", "/items/42", {"id": "42"}),
        ("items/{id}", "/items", None),
        ("items/{id}", "/items/42/more", None),
        ("Items/Latest", "/ITEMS/latest", {}),
        ("items/latest", "/items/latest/", {}),
        ("items/{id}", "/items/a%20b", {"id": "a b"}),
        ("greet/{name?}", "/greet", {}),
        ("greet/{name?}", "/greet/ann", {"name": "ann"}),
        ("page/{n=1}", "/page", {"n": "1"}),
        ("page/{n=1}", "/page/3", {"n": "3"}),
        ("files/{*path}", "/files/a/b/c.txt", {"path": "a/b/c.txt"}),
        ("files/{*path}", "/files", {}),
        ("files/{**path}", "/files/x/y", {"path": "x/y"}),
        ("dl/{file}.{ext?}", "/dl/report.tar.gz", {"file": "report.tar", "ext": "gz"}),
        ("dl/{file}.{ext?}", "/dl/readme", {"file": "readme"}),
        ("range/{from}-{to}", "/range/1-2-3", {"from": "1-2", "to": "3"}),
        ("", "/", {}),
    ],
)
def test_template_matching(template: str, path: str, expected: dict[str, str] | None) -> None:
    assert match(template, path) == expected


@pytest.mark.parametrize(
    ("constraint", "accepted", "rejected"),
    [
        ("int", ["0", "-7", "2147483647"], ["2147483648", "1.5", "x", "0x1"]),
        ("long", ["9223372036854775807"], ["9223372036854775808", "abc"]),
        ("alpha", ["abc", "ABC"], ["ab1", "a-b"]),
        (
            "guid",
            ["d3b07384-d9a0-4c3b-9f5e-1a2b3c4d5e6f", "d3b07384d9a04c3b9f5e1a2b3c4d5e6f"],
            ["d3b07384-d9a0-4c3b-9f5e", "not-a-guid"],
        ),
        ("bool", ["true", "False"], ["yes", "1"]),
        ("double", ["1.5", "-2e3", "7"], ["1,5", "nan", "inf"]),
        ("decimal", ["1.50", "1,000.25"], ["1e3", "abc"]),
        ("datetime", ["2026-11-21", "2026-11-21T10:00:00"], ["21/11/2026", "tomorrow"]),
        ("min(10)", ["10", "11"], ["9", "ten"]),
        ("max(10)", ["10", "-1"], ["11"]),
        ("range(1,3)", ["1", "3"], ["0", "4"]),
        ("minlength(2)", ["ab"], ["a"]),
        ("maxlength(2)", ["ab"], ["abc"]),
        ("length(2)", ["ab"], ["a", "abc"]),
        ("length(1,2)", ["a", "ab"], ["abc"]),
        (r"regex(^\d{{3}}$)", ["123"], ["1234", "12a"]),
        ("regex(ab)", ["xaby", "AB"], ["ba"]),
        ("int:min(5)", ["5"], ["4", "x"]),
    ],
)
def test_constraints(constraint: str, accepted: list[str], rejected: list[str]) -> None:
    template = RouteTemplate.parse(f"v/{{value:{constraint}}}")
    for value in accepted:
        assert template.match(["v", value]) == {"value": value}, value
    for value in rejected:
        assert template.match(["v", value]) is None, value


@pytest.mark.parametrize(
    "template",
    [
        "a/{x?}/b",
        "{*rest}/b",
        "{a}{b}",
        "a//b",
        "{x:nope}",
        "{id}/{ID}",
        "{unclosed",
        "a}b",
        "{x:int(3)}",
        "{x:min(a)}",
        "{*rest?}",
        "{x?=1}",
        "a-{*rest}",
    ],
)
def test_invalid_templates_are_refused(template: str) -> None:
    with pytest.raises(RouteTemplateError):
        RouteTemplate.parse(template)


def test_literal_route_wins_over_parameter_regardless_of_registration_order() -> None:
    routes = table(
        ("by_name", "items/{name}", None),
        ("by_id", "items/{id:int}", None),
        ("latest", "items/latest", None),
    )
    assert [route.function_name for route in routes] == ["latest", "by_id", "by_name"]
    assert matched_function(routes, "GET", "/api/items/latest") == "latest"
    assert matched_function(routes, "GET", "/api/items/LATEST") == "latest"
    assert matched_function(routes, "GET", "/api/items/7") == "by_id"
    assert matched_function(routes, "GET", "/api/items/seven") == "by_name"


def test_longer_template_is_tried_before_its_prefix_and_catch_all_last() -> None:
    routes = table(
        ("everything", "{*rest}", None),
        ("orders", "orders", None),
        ("order", "orders/{id}", None),
    )
    assert matched_function(routes, "GET", "/api/orders") == "orders"
    assert matched_function(routes, "GET", "/api/orders/9") == "order"
    assert matched_function(routes, "GET", "/api/anything/else") == "everything"


def test_method_mismatch_skips_the_route() -> None:
    routes = table(
        ("read", "things/{id}", ["GET"]),
        ("write", "things/{id}", ["post", "PUT"]),
    )
    assert matched_function(routes, "GET", "/api/things/1") == "read"
    assert matched_function(routes, "put", "/api/things/1") == "write"
    # Wrong method is no match (the host answers 404), and HEAD is not implied by GET.
    assert routes.match("DELETE", "/api/things/1") is None
    assert routes.match("HEAD", "/api/things/1") is None


def test_no_methods_means_every_method() -> None:
    routes = table(("any", "any", None))
    for method in ("GET", "POST", "DELETE", "PATCH", "OPTIONS", "HEAD"):
        assert matched_function(routes, method, "/api/any") == "any"


def test_route_prefix_is_applied_and_can_be_empty() -> None:
    prefixed = table(("health", "health", ["GET"]), prefix="v1/")
    assert matched_function(prefixed, "GET", "/v1/health") == "health"
    assert prefixed.match("GET", "/api/health") is None
    unprefixed = table(("health", "health", ["GET"]), prefix="")
    assert matched_function(unprefixed, "GET", "/health") == "health"
    assert next(iter(unprefixed)).url_template == "/health"


def test_default_route_is_the_function_name_and_auth_level_is_recorded() -> None:
    routes = RouteTable.from_triggers(
        [
            ("health_live", {"route": None, "authLevel": "ANONYMOUS"}),
            ("orders", {"route": "v1/orders", "authLevel": "FUNCTION", "methods": ["POST"]}),
        ]
    )
    by_name = {route.function_name: route for route in routes}
    assert by_name["health_live"].url_template == "/api/health_live"
    assert by_name["health_live"].auth_level == "anonymous"
    assert by_name["orders"].auth_level == "function"
    assert by_name["orders"].methods == frozenset({"POST"})
    found = routes.match("POST", "/API/V1/Orders/")
    assert found is not None
    assert found.route.function_name == "orders"


def test_route_params_come_back_decoded() -> None:
    routes = table(("customer", "customers/{customerId}/orders/{orderId:guid}", ["GET"]))
    found = routes.match("GET", "/api/customers/c%2B1/orders/d3b07384-d9a0-4c3b-9f5e-1a2b3c4d5e6f")
    assert found is not None
    assert found.route_params == {
        "customerId": "c+1",
        "orderId": "d3b07384-d9a0-4c3b-9f5e-1a2b3c4d5e6f",
    }
    assert routes.match("GET", "/api/customers/c1/orders/not-a-guid") is None
