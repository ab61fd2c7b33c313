"""RFC 9457 problem details: every HTTP failure the API returns, and how requests are parsed.

Handlers wrap their work in :func:`api_handler`, which also enforces the route's declared
:class:`~shared.auth.policy.Access` before the handler runs (bearer token validated, caller
authorized; 401/403 per RFC 6750). The app's errors become problem+json with the right
status, pydantic validation errors become 422 with one entry per field (``pointer`` is a
JSON pointer into the request body), and anything unexpected is logged with its stack trace and
answered with a plain 500 problem that never contains it.
"""

from __future__ import annotations

import contextvars
import json
import threading
import urllib.parse
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Final

import azure.functions as func

from blueprints._invocation import http_invocation, json_response
from shared import errors
from shared.auth.policy import Access
from shared.observability import InvocationContext, bind_caller, get_logger

if TYPE_CHECKING:
    # pydantic loads with the first request's service, not at indexing (cold start).
    from pydantic import BaseModel, ValidationError

MAX_BODY_BYTES: Final = 256 * 1024
PROBLEM_JSON: Final = "application/problem+json"
PROBLEM_TYPE: Final = "urn:orderflow:problem:"

log = get_logger("http")


class ProblemError(Exception):
    """Raised inside a handler to answer with a specific problem."""

    def __init__(
        self,
        status: int,
        title: str,
        detail: str,
        *,
        slug: str | None = None,
        field_errors: list[dict[str, str]] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.title = title
        self.detail = detail
        self.slug = slug
        self.field_errors = field_errors
        self.headers = dict(headers or {})


def problem_response(problem: ProblemError, scope: InvocationContext) -> func.HttpResponse:
    body: dict[str, Any] = {
        "type": f"{PROBLEM_TYPE}{problem.slug}" if problem.slug else "about:blank",
        "title": problem.title,
        "status": problem.status,
        "detail": problem.detail,
    }
    if problem.field_errors:
        body["errors"] = problem.field_errors
    body["traceId"] = scope.trace_id or scope.correlation_id
    return json_response(
        body,
        status_code=problem.status,
        scope=scope,
        headers=problem.headers,
        mimetype=PROBLEM_JSON,
    )


def _pointer(location: tuple[int | str, ...]) -> str:
    parts = [str(part).replace("~", "~0").replace("/", "~1") for part in location]
    return "#/" + "/".join(parts)


def validation_problem(error: ValidationError, where: str = "") -> ProblemError:
    field_errors = [
        {
            "pointer": _pointer((where, *item["loc"]) if where else tuple(item["loc"])),
            "detail": str(item["msg"]).removeprefix("Value error, "),
        }
        for item in error.errors(include_url=False, include_input=False)
    ]
    return ProblemError(
        422,
        "Validation failed",
        f"{len(field_errors)} field(s) failed validation",
        slug="validation",
        field_errors=field_errors,
    )


def _internal_error() -> ProblemError:
    return ProblemError(500, "Internal error", errors.INTERNAL_DETAIL)


def map_error(error: Exception, where: str = "a handler") -> ProblemError:
    """The problem for any error: total, it never raises.

    A :class:`ProblemError` is answered as raised, a pydantic validation error as 422, an app
    error as its type declares (``http_problem`` in ``shared.errors``), and anything else (or an
    app error with no declared problem) as a 500 whose stack trace is logged, never returned.
    """
    from pydantic import ValidationError

    if isinstance(error, ProblemError):
        return error
    if isinstance(error, ValidationError):
        return validation_problem(error)
    if not isinstance(error, errors.OrderflowError) or error.http_problem is None:
        log.error("unhandled error in %s", where, exc_info=error)
        return _internal_error()
    problem = error.http_problem
    if problem.log_level is not None:
        log.log(
            problem.log_level,
            "%s in %s: %s",
            type(error).__name__,
            where,
            error,
            exc_info=error if problem.status == 500 else None,  # 500: a bug to trace
        )
    return ProblemError(
        problem.status,
        problem.title,
        error.problem_detail(),
        slug=problem.slug,
        headers=error.problem_headers(),
    )


# Where a client might put a token that RFC 6750 allows but this API refuses (URL, form body).
_TOKEN_PARAMETERS = ("access_token",)

Handler = Callable[[func.HttpRequest, InvocationContext], func.HttpResponse]
Wrapped = Callable[[func.HttpRequest, func.Context], func.HttpResponse]


def authenticate(req: func.HttpRequest, access: Access) -> None:
    """Enforce ``access`` for this request: validate the bearer token and authorize its caller,
    or raise the app's 401/403 errors. The caller's ids are bound to the invocation's logs."""
    if not access.requires_token:
        return
    from shared.auth.policy import authorize
    from shared.auth.tokens import bearer_token, token_validator

    if any(name in req.params for name in _TOKEN_PARAMETERS):
        raise errors.AuthenticationRequiredError(
            "tokens in the URL are not accepted: send Authorization: Bearer <token>"
        )
    token = bearer_token(req.headers.get("authorization"))
    caller = token_validator().validate(token)
    bind_caller(caller.subject, caller.client_id)
    authorize(caller, access, {str(k): str(v) for k, v in req.route_params.items()})
    # The audit trail: who did what. The ids are also on the record (caller_subject,
    # caller_client_id: custom dimensions in Application Insights), for every later line too.
    log.info(
        "authorized %s %s for subject %s (client %s, %s)",
        req.method,
        urllib.parse.urlsplit(req.url).path,
        caller.subject,
        caller.client_id or "-",
        access.kind,
    )


def _keys_not_read_yet() -> bool:
    """True until this instance has read the issuer's signing keys (its first token)."""
    from shared.auth.tokens import token_validator

    try:
        return not token_validator().keys.loaded()
    except errors.ConfigurationError:
        return False  # authenticate() answers the missing setting


def _make_quietly(service: Callable[[], object]) -> None:
    try:
        service()
    except Exception:
        # The handler makes the service itself and reports the failure as its answer.
        log.debug("making the service beside the first token failed", exc_info=True)


@contextmanager
def _service_beside_first_token(
    service: Callable[[], object] | None, access: Access
) -> Iterator[None]:
    """On an instance's first protected request, make the route's service (its SDK client:
    TLS set-up, the first metadata read) on a second thread while the block validates the
    token (the issuer's discovery and JWKS reads, PyJWT's imports): the two wait on different
    things, so a cold start pays about the longer of them instead of their sum.

    Nothing of the caller's reaches the service before the token is validated and authorized:
    the handler only runs after the block, and the thread is joined at its end whatever the
    block raised (no thread outlives the request). The thread runs in a copy of the
    invocation's context, so the SDK calls keep its deadline, breaker and bulkhead.
    """
    if service is None or not access.requires_token or not _keys_not_read_yet():
        yield
        return
    # The service's imports first, on this thread: they are CPU (the GIL), so they would
    # only take turns with PyJWT's; making the client afterwards waits on the network and
    # the CA store (no GIL), which is what overlaps the token's own CPU.
    load = getattr(service, "load", None)
    if callable(load):
        try:
            load()
        except Exception:
            log.debug("loading the service's modules failed; the handler reports it", exc_info=True)
    context = contextvars.copy_context()
    thread = threading.Thread(
        target=context.run, args=(_make_quietly, service), name="orderflow-first-service"
    )
    thread.start()
    try:
        yield
    finally:
        thread.join()


def api_handler(
    access: Access, *, service: Callable[[], object] | None = None
) -> Callable[[Handler], Wrapped]:
    """Run ``handler(req, scope)`` inside the invocation scope, after the route's ``access``
    is enforced, and map every failure. Every API route declares its access here.

    ``service`` is the provider (``shared.services.providers``) the handler calls: on the
    instance's first protected request it is made while the token is validated
    (:func:`_service_beside_first_token`)."""

    def decorate(handler: Handler) -> Wrapped:
        wrapper = _wrap(handler, access, service)
        wrapper.access = access  # type: ignore[attr-defined]  # read by tests and docs checks
        # The handler itself (not ``__wrapped__``: the worker would read its signature), so the
        # benchmark can time the same work without the token check (benchmarks/auth.py).
        wrapper.handler = handler  # type: ignore[attr-defined]
        return wrapper

    return decorate


def route_access(function: Callable[..., object]) -> Access | None:
    """The access a function wrapped by :func:`api_handler` declared (None if it is not one)."""
    access = getattr(function, "access", None)
    return access if isinstance(access, Access) else None


def _wrap(handler: Handler, access: Access, service: Callable[[], object] | None = None) -> Wrapped:
    def wrapper(req: func.HttpRequest, context: func.Context) -> func.HttpResponse:
        with http_invocation(req, context) as scope:
            try:
                with _service_beside_first_token(service, access):
                    authenticate(req, access)
                return handler(req, scope)
            except Exception as error:
                return problem_response(map_error(error, handler.__name__), scope)

    # Not functools.wraps: the worker reads the signature, which must stay (req, context).
    wrapper.__name__ = handler.__name__
    wrapper.__qualname__ = handler.__qualname__
    wrapper.__doc__ = handler.__doc__
    wrapper.__module__ = handler.__module__
    return wrapper


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise ValueError(f"duplicate key {key!r}")
        result[key] = value
    return result


def parse_body[ModelT: BaseModel](req: func.HttpRequest, model: type[ModelT]) -> ModelT:
    """Content type, size, JSON syntax, then the model: 415, 413, 400, 422 in that order."""
    content_type = (req.headers.get("content-type") or "").split(";")[0].strip().lower()
    if content_type != "application/json" and not content_type.endswith("+json"):
        raise ProblemError(
            415,
            "Unsupported media type",
            "send the body as application/json",
            slug="media-type",
        )
    body = req.get_body() or b""
    if len(body) > MAX_BODY_BYTES:
        raise ProblemError(
            413,
            "Payload too large",
            f"the body is {len(body)} bytes; the limit is {MAX_BODY_BYTES}",
            slug="too-large",
        )
    try:
        payload = json.loads(body, object_pairs_hook=_no_duplicate_keys)
    except (ValueError, RecursionError) as error:  # JSONDecodeError and UnicodeDecodeError
        raise ProblemError(
            400, "Malformed JSON", f"the body is not valid JSON: {_short(error)}", slug="json"
        ) from None
    if not isinstance(payload, dict):
        raise ProblemError(400, "Malformed JSON", "the body must be a JSON object", slug="json")
    return model.model_validate(payload)


def _short(error: Exception) -> str:
    return str(error).splitlines()[0][:200]
