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
from shared.auth.policy import Access
from shared.errors import OrderflowError
from shared.observability import InvocationContext
from tests.fixtures.app_errors import app_errors, sample

APP_ERRORS = app_errors()


def _request() -> func.HttpRequest:
    return func.HttpRequest("GET", "http://127.0.0.1/api/v1/x", headers={}, body=b"")


def _call(error: BaseException) -> func.HttpResponse:
    def handler(req: func.HttpRequest, scope: InvocationContext) -> func.HttpResponse:
        raise error

    return api_handler(Access.anonymous("a test route"))(handler)(_request(), None)  # type: ignore[arg-type]


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


# --------------------------------------------------------------------- problem documents


def test_a_problem_document_has_the_rfc_9457_fields_and_the_trace_id() -> None:
    from blueprints._problems import problem_response
    from shared.observability import invocation_scope

    problem = ProblemError(
        409, "Conflict", "it changed", slug="transition", headers={"Retry-After": "3"}
    )
    with invocation_scope("inv-1", correlation_id="corr-1") as scope:
        response = problem_response(problem, scope)

    body = json.loads(response.get_body())
    assert body == {
        "type": f"{PROBLEM_TYPE}transition",
        "title": "Conflict",
        "status": 409,
        "detail": "it changed",
        "traceId": scope.trace_id or "corr-1",
    }
    assert response.headers["Retry-After"] == "3"
    assert response.headers["X-Correlation-Id"] == "corr-1"
    assert response.headers["Cache-Control"] == "no-store"


def test_a_problem_without_a_slug_is_about_blank() -> None:
    body = json.loads(_call(ProblemError(400, "Bad", "no slug")).get_body())

    assert body["type"] == "about:blank"


def test_validation_errors_point_into_the_body_with_escaped_json_pointers() -> None:
    from pydantic import BaseModel, Field, ValidationError

    from blueprints._problems import validation_problem

    class Line(BaseModel):
        quantity: int = Field(ge=1)

    class Body(BaseModel):
        lines: list[Line]
        name_with: dict[str, int] = Field(alias="a/b~c")

    with pytest.raises(ValidationError) as raised:
        Body.model_validate({"lines": [{"quantity": 0}], "a/b~c": {"x": "y"}})
    problem = validation_problem(raised.value)

    assert (problem.status, problem.slug) == (422, "validation")
    pointers = [error["pointer"] for error in problem.field_errors or []]
    assert pointers == ["#/lines/0/quantity", "#/a~1b~0c/x"]
    assert problem.detail == "2 field(s) failed validation"


def test_a_validation_error_raised_by_a_handler_is_422_with_its_fields() -> None:
    from pydantic import BaseModel, ValidationError

    class Body(BaseModel):
        count: int

    try:
        Body.model_validate({"count": "many"})
    except ValidationError as error:
        response = _call(error)

    body = json.loads(response.get_body())
    assert response.status_code == 422
    assert [e["pointer"] for e in body["errors"]] == ["#/count"]


# ---------------------------------------------------------------------------- parse_body


def _body_request(body: bytes, content_type: str | None = "application/json") -> func.HttpRequest:
    headers = {"content-type": content_type} if content_type is not None else {}
    return func.HttpRequest("POST", "http://127.0.0.1/api/v1/x", headers=headers, body=body)


def _parse_problem(req: func.HttpRequest) -> ProblemError:
    from pydantic import BaseModel

    from blueprints._problems import parse_body

    class Body(BaseModel):
        count: int

    with pytest.raises(ProblemError) as raised:
        parse_body(req, Body)
    return raised.value


@pytest.mark.parametrize(
    ("req", "status", "slug"),
    [
        (_body_request(b"{}", "text/plain"), 415, "media-type"),
        (_body_request(b"{}", None), 415, "media-type"),
        (_body_request(b"x" * (256 * 1024 + 1), "text/plain"), 415, "media-type"),  # 415 first
        (_body_request(b"{" * (256 * 1024 + 1)), 413, "too-large"),  # 413 before JSON syntax
        (_body_request(b"{not json"), 400, "json"),
        (_body_request(b"\xff\xfe"), 400, "json"),
        (_body_request(b'{"count": 1, "count": 2}'), 400, "json"),
        (_body_request(b"[1]"), 400, "json"),
        (_body_request(b"[" * 100_000), 400, "json"),
    ],
    ids=[
        "text",
        "no-type",
        "wrong-type-and-too-large",
        "too-large",
        "syntax",
        "not-utf8",
        "duplicate-key",
        "not-object",
        "too-deep",
    ],
)
def test_bodies_are_checked_in_order_type_size_syntax(
    req: func.HttpRequest, status: int, slug: str
) -> None:
    problem = _parse_problem(req)

    assert (problem.status, problem.slug) == (status, slug)


@pytest.mark.parametrize(
    "content_type", ["application/json; charset=utf-8", "APPLICATION/JSON", "application/x+json"]
)
def test_json_media_types_are_accepted(content_type: str) -> None:
    from pydantic import BaseModel

    from blueprints._problems import parse_body

    class Body(BaseModel):
        count: int

    assert parse_body(_body_request(b'{"count": 3}', content_type), Body).count == 3


def test_a_body_that_parses_but_does_not_fit_the_model_raises_the_validation_error() -> None:
    from pydantic import BaseModel, ValidationError

    from blueprints._problems import parse_body

    class Body(BaseModel):
        count: int

    with pytest.raises(ValidationError):
        parse_body(_body_request(b'{"count": "x"}'), Body)
