"""Every error the app raises on purpose answers with its problem: the map is total.

The error types are found by introspection (every module of ``shared`` and ``blueprints`` is
imported, then every subclass of ``OrderflowError`` is collected), so a new error type without a
declared problem fails here rather than escaping a handler as a bare 500 from the host.
"""

from __future__ import annotations

import json
import logging

import azure.functions as func
import pytest

from blueprints._problems import PROBLEM_JSON, PROBLEM_TYPE, ProblemError, api_handler
from shared.errors import OrderflowError
from shared.observability import InvocationContext
from tests.fixtures.app_errors import app_errors, sample

APP_ERRORS = app_errors()


def _request() -> func.HttpRequest:
    return func.HttpRequest("GET", "http://127.0.0.1/api/v1/x", headers={}, body=b"")


def _call(error: BaseException) -> func.HttpResponse:
    def handler(req: func.HttpRequest, scope: InvocationContext) -> func.HttpResponse:
        raise error

    return api_handler(handler)(_request(), None)  # type: ignore[arg-type]


def test_the_walk_finds_the_app_errors() -> None:
    names = {cls.__name__ for cls in APP_ERRORS}
    # A sample of the known ones: the walk really reaches into shared.services too.
    assert {"NotFoundError", "PoisonMessageError", "SecretNotFoundError"} <= names
    assert len(APP_ERRORS) >= 13


@pytest.mark.parametrize("cls", APP_ERRORS, ids=lambda cls: cls.__name__)
def test_every_app_error_is_its_declared_problem_json_answer(cls: type[OrderflowError]) -> None:
    declared = cls.http_problem
    assert declared is not None, f"{cls.__qualname__} declares no http_problem (shared/errors.py)"
    error = sample(cls)

    response = _call(error)

    assert response.mimetype == PROBLEM_JSON
    body = json.loads(response.get_body())
    assert (response.status_code, body["status"]) == (declared.status, declared.status)
    assert body["type"] == f"{PROBLEM_TYPE}{declared.slug}"
    assert body["title"] == declared.title
    assert body["detail"] == error.problem_detail()
    assert body["traceId"]
    for name, value in error.problem_headers().items():
        assert response.headers[name] == value
    if declared.status == 503:
        assert int(response.headers["Retry-After"]) > 0
    if declared.detail is not None:  # the message is for the operator: it never leaves
        assert str(error) not in response.get_body().decode()


class _UndeclaredError(OrderflowError):
    """An app error whose type declares nothing (the base's None): answered as unexpected."""


@pytest.mark.parametrize(
    "error", [RuntimeError("secret internals"), _UndeclaredError("secret internals")], ids=type
)
def test_anything_else_is_a_logged_500_problem(
    error: Exception, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.ERROR):
        response = _call(error)

    assert response.status_code == 500
    assert response.mimetype == PROBLEM_JSON
    body = json.loads(response.get_body())
    assert "secret internals" not in response.get_body().decode()
    assert body["title"] == "Internal error"
    assert any(record.exc_info for record in caplog.records)


def test_a_problem_error_is_answered_as_raised() -> None:
    response = _call(ProblemError(418, "Teapot", "short and stout", slug="teapot"))

    assert response.status_code == 418
    assert json.loads(response.get_body())["type"] == f"{PROBLEM_TYPE}teapot"
