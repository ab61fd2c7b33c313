"""The local Functions host over real HTTP: the sample app served by a host subprocess.

Needs no local services (no Azurite, no Cosmos): only the host and the test apps.
"""

from __future__ import annotations

import json
import re
import signal
import socket
import subprocess
import sys
import textwrap
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.fixtures.host import (
    REPO_ROOT,
    SAMPLE_APP_DIR,
    HostFactory,
    HostProcess,
    run_local_host,
)

BODY_LIMIT = 4096
TRACE_ID = "0af7651916cd43dd8448eb211c80319c"
TRACEPARENT = re.compile(r"^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$")


@pytest.fixture(scope="module")
def sample_host(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HostProcess]:
    work = tmp_path_factory.mktemp("sample-host")
    settings = work / "local.settings.json"
    settings.write_text(
        json.dumps(
            {
                "IsEncrypted": False,
                "Values": {
                    "SAMPLE_FROM_FILE": "from-file",
                    "SAMPLE_OVERRIDDEN": "from-file",
                    "FUNCTIONS_REQUEST_BODY_SIZE_LIMIT": str(BODY_LIMIT),
                },
            }
        )
    )
    env = {
        "SAMPLE_OVERRIDDEN": "from-env",
        "AzureWebJobs.disabled_function.Disabled": "true",
    }
    with run_local_host(
        SAMPLE_APP_DIR, work / "host.log", env=env, args=["--settings", str(settings)]
    ) as host:
        yield host


def function_documents(host: HostProcess) -> dict[str, dict[str, object]]:
    response = host.request("GET", "/admin/functions")
    assert response.status == 200
    return {document["name"]: document for document in response.json()}


def test_status_is_running_and_bound_to_loopback(sample_host: HostProcess) -> None:
    response = sample_host.request("GET", "/admin/host/status")
    assert response.status == 200
    assert response.header("content-type") == "application/json; charset=utf-8"
    assert response.json()["state"] == "Running"
    assert sample_host.url == f"http://127.0.0.1:{sample_host.port}"


@pytest.mark.parametrize(
    ("path", "function", "route_params"),
    [
        ("/api/items/42", "item_by_id", {"id": "42"}),
        ("/api/items/latest", "latest_item", {}),
        ("/api/items/abc", "item_by_name", {"name": "abc"}),
        ("/API/Items/LATEST/", "latest_item", {}),
    ],
)
def test_routes_constraints_precedence_and_case(
    sample_host: HostProcess, path: str, function: str, route_params: dict[str, str]
) -> None:
    response = sample_host.request("GET", path)
    assert response.status == 200
    assert response.json() == {"function": function, "route_params": route_params}


def test_optional_and_catch_all_parameters(sample_host: HostProcess) -> None:
    assert sample_host.request("GET", "/api/greet").json() == {"route_params": {}}
    assert sample_host.request("GET", "/api/greet/ann").json() == {"route_params": {"name": "ann"}}
    assert sample_host.request("GET", "/api/files/a/b%20c.txt").json() == {
        "route_params": {"path": "a/b c.txt"}
    }


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/api/nothing-here"),
        ("GET", "/nothing"),
        ("GET", "/api/items/1/extra"),
        ("DELETE", "/api/items/5"),  # route exists, method does not: Azure answers 404 too
        ("GET", "/api/echo"),
        ("HEAD", "/api/items/5"),  # HEAD is not implied by GET in the Functions host
    ],
)
def test_unknown_route_or_method_is_an_empty_404(
    sample_host: HostProcess, method: str, path: str
) -> None:
    response = sample_host.request(method, path)
    assert response.status == 404
    assert response.body == b""


def test_request_method_url_query_headers_and_body_reach_the_function(
    sample_host: HostProcess,
) -> None:
    payload = json.dumps({"sku": "A-1", "quantity": 2}).encode()
    response = sample_host.request(
        "PUT",
        "/api/echo?a=1&a=2&empty=&name=J%C3%BCrgen",
        body=payload,
        headers={"Content-Type": "application/json", "X-Sample": "yes"},
    )
    assert response.status == 200
    assert response.header("content-type") == "application/json"
    echoed = response.json()
    assert echoed["method"] == "PUT"
    assert echoed["url"] == (
        f"http://127.0.0.1:{sample_host.port}/api/echo?a=1&a=2&empty=&name=J%C3%BCrgen"
    )
    # Repeated query keys are joined with "," as the host does.
    assert echoed["params"] == {"a": "1,2", "empty": "", "name": "Jürgen"}
    assert echoed["headers"] == {
        "x-sample": "yes",
        "content-type": "application/json",
        "host": f"127.0.0.1:{sample_host.port}",
    }
    assert echoed["body_length"] == len(payload)
    assert echoed["json"] == {"sku": "A-1", "quantity": 2}


def test_auth_levels_are_recorded_but_keys_not_enforced(sample_host: HostProcess) -> None:
    response = sample_host.request("GET", "/api/admin-only")
    assert (response.status, response.body) == (200, b"admin ok")
    documents = function_documents(sample_host)
    assert documents["admin_only"]["authLevel"] == "admin"
    assert documents["echo"]["authLevel"] == "function"
    assert documents["item_by_id"]["authLevel"] == "anonymous"
    assert documents["echo"]["methods"] == ["POST", "PUT"]


def test_default_route_and_string_return(sample_host: HostProcess) -> None:
    response = sample_host.request("GET", "/api/default_route")
    assert response.status == 200
    assert response.header("content-type") == "text/plain; charset=utf-8"
    assert response.body == b"plain text"


def test_http_response_status_headers_cookies_and_bytes(sample_host: HostProcess) -> None:
    response = sample_host.request("GET", "/api/binary")
    assert response.status == 201
    assert response.header("x-sample") == "binary"
    assert response.header("content-type") == "application/octet-stream"
    assert response.header_values("set-cookie") == ["session=abc; HttpOnly; Path=/"]
    assert response.body == bytes(range(256))


def test_not_modified_has_no_body_or_content_length(sample_host: HostProcess) -> None:
    response = sample_host.request("GET", "/api/not-modified")
    assert response.status == 304
    assert response.header("etag") == '"v1"'
    assert response.header("content-length") is None
    assert response.body == b""


def test_exception_is_an_empty_500_and_the_traceback_is_logged(sample_host: HostProcess) -> None:
    response = sample_host.request("GET", "/api/boom")
    assert response.status == 500
    assert response.body == b""
    logs = sample_host.wait_for_log("HTTP GET /api/boom -> 500")
    assert "Executed 'Functions.boom' (Failed" in logs
    assert "RuntimeError: sample secret detail" in logs
    assert 'sample_routes.py", line' in logs


def test_a_return_value_the_worker_cannot_encode_is_a_500(sample_host: HostProcess) -> None:
    response = sample_host.request("GET", "/api/none")
    assert (response.status, response.body) == (500, b"")
    logs = sample_host.wait_for_log("HTTP GET /api/none -> 500")
    assert 'unsupported type "http" for Python type "NoneType"' in logs


def test_context_ids_and_trace_context(sample_host: HostProcess) -> None:
    incoming = f"00-{TRACE_ID}-b7ad6b7169203331-01"
    response = sample_host.request(
        "GET", "/api/context", headers={"traceparent": incoming, "tracestate": "vendor=1"}
    )
    assert response.status == 200
    context = response.json()
    invocation_id = context["invocation_id"]
    assert str(uuid.UUID(invocation_id)) == invocation_id
    assert context["thread_local_invocation_id"] == invocation_id
    assert context["function_name"] == "context_info"
    assert Path(context["function_directory"]) == SAMPLE_APP_DIR
    assert context["retry_count"] == 0
    # Sync functions run on the worker thread pool.
    assert context["thread"].startswith("function-worker")
    trace = TRACEPARENT.match(context["trace_parent"])
    assert trace is not None
    assert trace.group(1) == TRACE_ID
    assert trace.group(2) != "b7ad6b7169203331"  # the host's own span, child of the caller's
    assert context["trace_state"] == "vendor=1"
    logs = sample_host.wait_for_log(f"invocation {invocation_id}")
    assert re.search(
        rf"HTTP GET /api/context -> 200 \(\d+\.\d ms, invocation {invocation_id}\)", logs
    )
    assert "Executing 'Functions.context_info' (Reason=" in logs


def test_without_traceparent_each_invocation_starts_a_new_trace(sample_host: HostProcess) -> None:
    first = sample_host.request("GET", "/api/context").json()
    second = sample_host.request("GET", "/api/context").json()
    first_trace = TRACEPARENT.match(first["trace_parent"])
    second_trace = TRACEPARENT.match(second["trace_parent"])
    assert first_trace is not None
    assert second_trace is not None
    assert first_trace.group(1) != second_trace.group(1)
    assert first["invocation_id"] != second["invocation_id"]


def test_async_function_runs_on_the_event_loop(sample_host: HostProcess) -> None:
    response = sample_host.request("GET", "/api/async")
    assert response.status == 200
    document = response.json()
    assert document["running_loop"] is True
    assert document["thread"] == "MainThread"
    assert str(uuid.UUID(document["invocation_id"])) == document["invocation_id"]


def test_local_settings_apply_but_the_environment_wins(sample_host: HostProcess) -> None:
    assert sample_host.request("GET", "/api/setting").json() == {
        "SAMPLE_FROM_FILE": "from-file",
        "SAMPLE_OVERRIDDEN": "from-env",
        "AZURE_FUNCTIONS_ENVIRONMENT": "Development",
    }


def test_disabled_function_is_listed_but_not_served(sample_host: HostProcess) -> None:
    assert sample_host.request("GET", "/api/disabled").status == 404
    document = function_documents(sample_host)["disabled_function"]
    assert document["isDisabled"] is True
    assert document["isDelivered"] is False


def test_timer_function_is_indexed_but_has_no_route(sample_host: HostProcess) -> None:
    document = function_documents(sample_host)["sample_tick"]
    assert document["trigger"] == "timerTrigger"
    assert "invoke_url_template" not in document
    assert document["config"] == {
        "bindings": [
            {
                "direction": "IN",
                "type": "timerTrigger",
                "name": "timer",
                "schedule": "0 */5 * * * *",
                "runOnStartup": False,
            }
        ]
    }
    assert sample_host.request("GET", "/api/sample_tick").status == 404


def test_body_limit_gives_413_before_the_function_runs(sample_host: HostProcess) -> None:
    at_limit = sample_host.request("POST", "/api/echo", body=b"x" * BODY_LIMIT)
    assert (at_limit.status, at_limit.json()["body_length"]) == (200, BODY_LIMIT)

    declared = sample_host.request("POST", "/api/echo", body=b"x" * (BODY_LIMIT + 1))
    assert (declared.status, declared.body) == (413, b"")

    streamed = sample_host.request("POST", "/api/echo", body=b"x" * (BODY_LIMIT * 2), chunked=True)
    assert streamed.status == 413
    # Neither oversized request reached the function.
    logs = sample_host.wait_for_log("HTTP POST /api/echo -> 413", times=2)
    assert logs.count("HTTP POST /api/echo -> 413") == 2
    assert sample_host.request("GET", "/admin/host/status").status == 200


def test_concurrent_requests_are_served(sample_host: HostProcess) -> None:
    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(lambda i: sample_host.request("GET", f"/api/items/{i}"), range(24)))
    assert [result.json()["route_params"]["id"] for result in results] == [
        str(i) for i in range(24)
    ]


def test_sigterm_stops_the_host_cleanly(local_host_factory: HostFactory) -> None:
    host = local_host_factory(SAMPLE_APP_DIR, args=["--settings", "/nonexistent/settings.json"])
    assert host.request("GET", "/api/items/1").status == 200
    assert host.process is not None
    assert host.stop(signal.SIGTERM) == 0
    logs = host.logs()
    assert "Application shutdown complete." in logs
    assert "Traceback" not in logs
    with (
        pytest.raises(ConnectionRefusedError),
        socket.create_connection(("127.0.0.1", host.port), timeout=1),
    ):
        pass


def test_sigint_stops_the_host_cleanly(local_host_factory: HostFactory) -> None:
    host = local_host_factory(SAMPLE_APP_DIR)
    assert host.stop(signal.SIGINT) == 0
    assert "Application shutdown complete." in host.logs()


def test_real_app_http_routes_are_in_the_route_table(
    local_host_factory: HostFactory, tmp_path: Path
) -> None:
    if not (REPO_ROOT / "function_app.py").is_file():
        pytest.skip("the app's function_app.py is not there yet")
    host = local_host_factory(REPO_ROOT, args=["--settings", str(tmp_path / "none.json")])
    documents = function_documents(host)
    expected = {
        "health_live": "/api/health",
        "health_ready": "/api/health/ready",
    }
    for name, path in expected.items():
        assert documents[name]["invoke_url_template"] == host.url + path
        assert documents[name]["methods"] == ["GET"]
        assert documents[name]["authLevel"] == "anonymous"


def test_an_app_the_worker_would_reject_does_not_start(tmp_path: Path) -> None:
    app_dir = tmp_path / "broken_app"
    app_dir.mkdir()
    (app_dir / "function_app.py").write_text(
        textwrap.dedent(
            """
            import azure.functions as func

            app = func.FunctionApp()

            @app.route(route="x")
            def mismatched(request: func.HttpRequest) -> func.HttpResponse:
                return func.HttpResponse("never")
            """
        )
    )
    completed = subprocess.run(
        [sys.executable, "-m", "localdev.host", "--app-dir", str(app_dir), "--port", "0"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert completed.returncode == 1
    assert "cannot load the mismatched function" in completed.stderr
    assert "{'request'}" in completed.stderr


def test_programmatic_local_host(tmp_path: Path) -> None:
    from localdev.host import LocalHost

    module = f"inproc_app_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{module}.py").write_text(
        textwrap.dedent(
            """
            import azure.functions as func

            app = func.FunctionApp(http_auth_level=func.AuthLevel.ANONYMOUS)

            @app.route(route="hello/{name:alpha}", methods=["GET"])
            async def hello(req: func.HttpRequest) -> func.HttpResponse:
                return func.HttpResponse(f"hello {req.route_params['name']}")
            """
        )
    )
    (tmp_path / "host.json").write_text(
        '{"version": "2.0", "extensions": {"http": {"routePrefix": ""}}}'
    )
    environ: dict[str, str] = {}
    host = LocalHost(tmp_path, port=0, function_module=module, environ=environ)
    try:
        with host:
            with urllib.request.urlopen(f"{host.url}/hello/World", timeout=5) as response:
                assert response.read() == b"hello World"
            with pytest.raises(urllib.error.HTTPError) as not_found:
                urllib.request.urlopen(f"{host.url}/hello/W0rld", timeout=5)
            assert not_found.value.code == 404
            assert environ["AZURE_FUNCTIONS_ENVIRONMENT"] == "Development"
        with (
            pytest.raises(ConnectionRefusedError),
            socket.create_connection(("127.0.0.1", host.port), timeout=1),
        ):
            pass
    finally:
        # Loading an app in-process leaves its directory and module behind; tidy up.
        sys.modules.pop(module, None)
        if str(tmp_path) in sys.path:
            sys.path.remove(str(tmp_path))
