"""The Azure Functions host would load every function of the app.

The app is indexed by the Python worker's own code (``azure-functions-runtime``, see
tests/fixtures/worker_indexing.py) in a fresh process without app settings, and the result is
checked for what the host adds on top (function names, HTTP routes). The second half builds small
broken apps and proves the same harness rejects each with the worker's own error, so a green run
here means something.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from tests.fixtures.worker_indexing import (
    IndexedFunction,
    IndexingReport,
    host_problems,
    index_app_in_subprocess,
    repository_app_report,
    repository_blueprint_scan,
    scan_blueprints,
)

# Importing these at index time costs hundreds of milliseconds of cold start for every
# instance; shared/clients.py imports them on first use instead. pydantic (~90 ms) loads with
# the first request's service: blueprints reference its types only under TYPE_CHECKING. The API
# reference (shared.api_docs) loads with its own first request, so its assets cost nothing here.
SDKS_FORBIDDEN_AT_INDEX_TIME = (
    "pydantic",
    "azure.cosmos",
    "azure.identity",
    "azure.storage.blob",
    "azure.storage.queue",
    "azure.servicebus",
    "azure.eventgrid",
    "azure.keyvault.secrets",
    "azure.monitor.opentelemetry",
    "opentelemetry",
    "msal",
    "jwt",  # PyJWT loads with the first bearer token (cold start)
    "cryptography",
    "aiohttp",
    "proton",
    "shared.api_docs",
)


def _describe(report: IndexingReport) -> str:
    return f"{report.load_failure()}\n{report.stack_trace or ''}"


def write_app(root: Path, files: dict[str, str]) -> Path:
    """Write a small app (relative path -> source) under ``root`` and return its directory."""
    for relative, source in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(source), encoding="utf-8")
    return root


# ---------------------------------------------------------------------------- the real app


def test_worker_indexes_every_function_of_the_app() -> None:
    report = repository_app_report()

    assert report.load_failure() is None, _describe(report)
    assert all(function.trigger is not None for function in report.functions)
    assert all(function.script_file == "function_app.py" for function in report.functions)


def test_every_blueprint_is_registered_in_function_app() -> None:
    scan = repository_blueprint_scan()
    declared = {name for names in scan.functions_by_module.values() for name in names}

    assert scan.errors_by_module == {}
    assert declared, "no blueprint under blueprints/ declares a function"
    indexed = set(repository_app_report().function_names)
    assert declared - indexed == set(), "declared in a blueprint that function_app.py omits"
    assert indexed - declared == set(), "function_app.py should only register blueprints"


def test_host_accepts_the_indexed_names_and_routes() -> None:
    assert host_problems(repository_app_report().functions) == []


def test_every_http_route_is_anonymous_to_the_host_and_declares_who_may_call_it() -> None:
    """Functions keys are shared secrets, so no route relies on them: the host lets every
    request through (auth level anonymous) and the app enforces each route's declared access
    (a bearer token and its scope or role, or a stated reason to need none: health, the
    OpenAPI document, the HMAC-signed payment webhook). tests/e2e/test_auth.py shows the
    401/403 answers over HTTP."""
    import azure.functions as func

    from blueprints import api_docs, health, http_api
    from blueprints._problems import route_access
    from shared.openapi import OPERATIONS

    documented = {op.function_name: op.access for op in OPERATIONS}
    http_functions = 0
    for function in repository_app_report().functions:
        trigger = function.trigger
        if trigger is None or trigger["type"] != "httpTrigger":
            continue
        http_functions += 1
        assert trigger["authLevel"].lower() == "anonymous", function.name
        assert function.name in documented, function.name
    assert http_functions == len(documented)
    checked = set()
    for module in (http_api, health, api_docs):
        for value in vars(module).values():
            if not isinstance(value, func.decorators.function_app.FunctionBuilder):
                continue
            built = value.build()
            name = str(built.get_function_name())
            declared = route_access(built.get_user_function())
            if declared is None:  # health: plain handlers, anonymous by design
                assert not documented[name].requires_token, name
            else:
                assert declared == documented[name], name
            checked.add(name)
    assert checked == set(documented)


def test_indexing_imports_no_azure_sdk() -> None:
    loaded = set(repository_app_report().loaded_watched_modules)

    assert loaded.isdisjoint(SDKS_FORBIDDEN_AT_INDEX_TIME), sorted(
        loaded & set(SDKS_FORBIDDEN_AT_INDEX_TIME)
    )


# ---------------------------------------------------------------- the harness itself, on apps

WORKING_APP = {
    "function_app.py": """
        import azure.functions as func

        from blueprints import orders

        app = func.FunctionApp(http_auth_level=func.AuthLevel.FUNCTION)
        app.register_functions(orders.bp)
    """,
    "blueprints/__init__.py": "",
    "blueprints/orders.py": """
        import azure.functions as func

        bp = func.Blueprint()


        @bp.function_name("create_order")
        @bp.route(route="v1/orders", methods=["POST"])
        @bp.queue_output(arg_name="outbox", queue_name="orders", connection="Storage")
        def create_order(
            req: func.HttpRequest, outbox: func.Out[str], context: func.Context
        ) -> func.HttpResponse:
            return func.HttpResponse(status_code=201)


        @bp.function_name("expire_orders")
        @bp.timer_trigger(arg_name="timer", schedule="%EXPIRE_SCHEDULE%", use_monitor=True)
        def expire_orders(timer: func.TimerRequest) -> None:
            pass


        @bp.function_name("fulfil_order")
        @bp.service_bus_queue_trigger(
            arg_name="message", queue_name="fulfillment", connection="ServiceBus"
        )
        async def fulfil_order(message: func.ServiceBusMessage) -> None:
            pass
    """,
}


def test_a_working_app_is_indexed_with_its_bindings(tmp_path: Path) -> None:
    report = index_app_in_subprocess(write_app(tmp_path, WORKING_APP))

    assert report.load_failure() is None, _describe(report)
    assert sorted(report.function_names) == ["create_order", "expire_orders", "fulfil_order"]
    by_name = {function.name: function for function in report.functions}
    assert by_name["create_order"].bindings_of_type("queue")[0]["name"] == "outbox"
    assert by_name["expire_orders"].trigger == {
        "direction": "IN",
        "type": "timerTrigger",
        "name": "timer",
        "schedule": "%EXPIRE_SCHEDULE%",
        "useMonitor": True,
    }
    assert host_problems(report.functions) == []


def _single_function_app(function_source: str) -> dict[str, str]:
    header = "import azure.functions as func\n\napp = func.FunctionApp()\n\n"
    return {"function_app.py": header + textwrap.dedent(function_source)}


BROKEN_APPS = {
    "parameter name differs from the trigger's arg_name": (
        _single_function_app("""
            @app.route(route="orders")
            def list_orders(request: func.HttpRequest) -> func.HttpResponse:
                return func.HttpResponse()
        """),
        [
            "FunctionLoadError",
            "cannot load the list_orders function",
            "declared in Python but not in the function definition",
            "request",
        ],
    ),
    "binding without a parameter": (
        _single_function_app("""
            @app.route(route="orders", methods=["POST"])
            @app.queue_output(arg_name="outbox", queue_name="orders", connection="Storage")
            def create_order(req: func.HttpRequest) -> func.HttpResponse:
                return func.HttpResponse()
        """),
        ["FunctionLoadError", "Extra parameters in binding definition", "outbox"],
    ),
    "output binding not annotated func.Out": (
        _single_function_app("""
            @app.route(route="orders", methods=["POST"])
            @app.queue_output(arg_name="outbox", queue_name="orders", connection="Storage")
            def create_order(req: func.HttpRequest, outbox: str) -> func.HttpResponse:
                return func.HttpResponse()
        """),
        [
            "FunctionLoadError",
            'binding outbox is declared to have the "out" direction',
            "not a subclass of azure.functions.Out",
        ],
    ),
    "input binding annotated func.Out": (
        _single_function_app("""
            @app.route(route="orders")
            @app.blob_input(arg_name="report", path="reports/x.json", connection="Storage")
            def read_report(req: func.HttpRequest, report: func.Out[str]) -> func.HttpResponse:
                return func.HttpResponse()
        """),
        ["FunctionLoadError", 'binding report is declared to have the "in" direction'],
    ),
    "bare func.Out without a type": (
        _single_function_app("""
            @app.route(route="orders", methods=["POST"])
            @app.queue_output(arg_name="outbox", queue_name="orders", connection="Storage")
            def create_order(req: func.HttpRequest, outbox: func.Out) -> func.HttpResponse:
                return func.HttpResponse()
        """),
        ["FunctionLoadError", "binding outbox has invalid Out annotation"],
    ),
    "trigger annotated with the wrong type": (
        _single_function_app("""
            @app.queue_trigger(arg_name="chunk", queue_name="chunks", connection="Storage")
            def import_chunk(chunk: func.HttpRequest) -> None:
                pass
        """),
        ["FunctionLoadError", "cannot load the import_chunk function", "HttpRequest"],
    ),
    "context parameter of the wrong type": (
        _single_function_app("""
            @app.route(route="orders")
            def list_orders(req: func.HttpRequest, context: str) -> func.HttpResponse:
                return func.HttpResponse()
        """),
        ["FunctionLoadError", '"context" parameter is expected to be of type'],
    ),
    "function without a trigger": (
        _single_function_app("""
            @app.function_name("orphan")
            @app.blob_input(arg_name="report", path="reports/x.json", connection="Storage")
            def orphan(report: str) -> None:
                pass
        """),
        ["ValueError", "Function orphan does not have a trigger"],
    ),
    "same function name in two blueprints": (
        {
            "function_app.py": """
                import azure.functions as func

                from blueprints import api, imports

                app = func.FunctionApp()
                app.register_functions(api.bp)
                app.register_functions(imports.bp)
            """,
            "blueprints/__init__.py": "",
            "blueprints/api.py": """
                import azure.functions as func

                bp = func.Blueprint()


                @bp.function_name("create_order")
                @bp.route(route="orders", methods=["POST"])
                def create_order(req: func.HttpRequest) -> func.HttpResponse:
                    return func.HttpResponse()
            """,
            "blueprints/imports.py": """
                import azure.functions as func

                bp = func.Blueprint()


                @bp.function_name("create_order")
                @bp.queue_trigger(arg_name="chunk", queue_name="chunks", connection="Storage")
                def create_orders_from_chunk(chunk: func.QueueMessage) -> None:
                    pass
            """,
        },
        ["ValueError", "Function create_order does not have a unique function name"],
    ),
    "import error in a blueprint": (
        {
            "function_app.py": """
                import azure.functions as func

                from blueprints import broken

                app = func.FunctionApp()
                app.register_functions(broken.bp)
            """,
            "blueprints/__init__.py": "",
            "blueprints/broken.py": """
                import azure.functions as func
                import orderflow_missing_dependency

                bp = func.Blueprint()
            """,
        },
        [
            "ModuleNotFoundError",
            "orderflow_missing_dependency",
            "Please check the requirements.txt file",
        ],
    ),
    "a setting read at import time": (
        {
            "function_app.py": """
                import os

                import azure.functions as func

                COSMOS_ENDPOINT = os.environ["COSMOS_ENDPOINT"]
                app = func.FunctionApp()
            """,
        },
        ["KeyError", "COSMOS_ENDPOINT"],
    ),
    "two FunctionApp objects": (
        {
            "function_app.py": """
                import azure.functions as func

                app = func.FunctionApp()
                admin_app = func.FunctionApp()
            """,
        },
        ["ValueError", "More than one FunctionApp"],
    ),
    "no FunctionApp object": (
        {"function_app.py": "import azure.functions as func\n\nbp = func.Blueprint()\n"},
        ["ValueError", "Could not find top level function app instances"],
    ),
}


@pytest.mark.parametrize(("files", "expected_fragments"), BROKEN_APPS.values(), ids=BROKEN_APPS)
def test_the_worker_rejects_a_broken_app(
    tmp_path: Path, files: dict[str, str], expected_fragments: list[str]
) -> None:
    report = index_app_in_subprocess(write_app(tmp_path, files))

    assert not report.succeeded
    assert report.load_failure() is not None
    for fragment in expected_fragments:
        assert fragment in (report.error or ""), report.error


def test_an_unregistered_blueprint_indexes_nothing_and_is_found(tmp_path: Path) -> None:
    app_dir = write_app(
        tmp_path,
        {
            "function_app.py": """
                import azure.functions as func

                from blueprints import health  # imported, but register_functions was forgotten

                app = func.FunctionApp()
            """,
            "blueprints/__init__.py": "",
            "blueprints/health.py": """
                import azure.functions as func

                bp = func.Blueprint()


                @bp.route(route="health", auth_level=func.AuthLevel.ANONYMOUS)
                def health(req: func.HttpRequest) -> func.HttpResponse:
                    return func.HttpResponse()
            """,
        },
    )

    report = index_app_in_subprocess(app_dir)
    scan = scan_blueprints(app_dir)

    # The worker itself reports success: this is the silent "0 functions found".
    assert report.succeeded
    assert "0 functions" in (report.load_failure() or "")
    assert scan.functions_by_module == {"blueprints.health": ["health"]}


def test_a_missing_function_app_py_indexes_nothing(tmp_path: Path) -> None:
    app_dir = write_app(
        tmp_path, {"main.py": "import azure.functions as func\n\napp = func.FunctionApp()\n"}
    )

    report = index_app_in_subprocess(app_dir)

    assert report.succeeded
    assert "0 functions" in (report.load_failure() or "")


def test_a_blueprint_that_fails_to_import_is_named_by_the_scan(tmp_path: Path) -> None:
    app_dir = write_app(
        tmp_path,
        {
            "blueprints/__init__.py": "",
            "blueprints/good.py": """
                import azure.functions as func

                bp = func.Blueprint()


                @bp.schedule(schedule="0 0 * * * *", arg_name="timer")
                def hourly(timer: func.TimerRequest) -> None:
                    pass
            """,
            "blueprints/bad.py": "raise RuntimeError('boom at import')\n",
        },
    )

    scan = scan_blueprints(app_dir)

    assert scan.functions_by_module == {"blueprints.good": ["hourly"]}
    assert scan.errors_by_module == {"blueprints.bad": "RuntimeError: boom at import"}


# ------------------------------------------------------------------ what the host adds


def _http(name: str, route: str | None, methods: list[str] | None) -> IndexedFunction:
    trigger: dict[str, object] = {"type": "httpTrigger", "direction": "IN", "name": "req"}
    if route is not None:
        trigger["route"] = route
    if methods is not None:
        trigger["methods"] = methods
    return IndexedFunction(name=name, script_file="function_app.py", bindings=(trigger,))


def test_host_checks_pass_distinct_routes_and_methods() -> None:
    functions = [
        _http("create_order", "v1/customers/{customerId}/orders", ["POST"]),
        _http("list_orders", "/v1/customers/{customerId}/orders/", ["GET"]),
        _http("health_live", None, ["GET"]),
    ]

    assert host_problems(functions) == []


@pytest.mark.parametrize(
    ("functions", "expected"),
    [
        ([_http("orders-1", None, None), _http("Orders-1", "x", None)], "case-insensitively"),
        ([_http("1orders", None, None)], "not a valid function name"),
        ([_http("host", None, None)], "not a valid function name"),
        ([_http("a" * 129, None, None)], "not a valid function name"),
        ([_http("get_order", "Orders/", ["GET"]), _http("read", "/orders", None)], "conflicts"),
        ([_http("a", "orders", ["GET", "PUT"]), _http("b", "orders", ["put"])], "conflicts"),
        ([_http("status", "admin/status", ["GET"])], "reserved for the host"),
    ],
    ids=["case", "leading-digit", "reserved-name", "too-long", "same-route", "method", "admin"],
)
def test_host_checks_reject(functions: list[IndexedFunction], expected: str) -> None:
    problems = host_problems(functions)

    assert any(expected in problem for problem in problems), problems


def test_host_checks_catch_names_the_worker_accepts(tmp_path: Path) -> None:
    app_dir = write_app(
        tmp_path,
        _single_function_app("""
            @app.function_name("Create_Order")
            @app.route(route="orders", methods=["POST"])
            def create_a(req: func.HttpRequest) -> func.HttpResponse:
                return func.HttpResponse()


            @app.function_name("create_order")
            @app.route(route="orders/bulk", methods=["POST"])
            def create_b(req: func.HttpRequest) -> func.HttpResponse:
                return func.HttpResponse()
        """),
    )

    report = index_app_in_subprocess(app_dir)

    assert report.load_failure() is None, _describe(report)
    assert any("case-insensitively" in problem for problem in host_problems(report.functions))
