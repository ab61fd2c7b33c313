"""The interactive API reference: ``GET /api/docs`` (Swagger UI) and ``GET /api/docs/{*asset}``.

Who may call it: anyone. Both are anonymous (``auth_level=ANONYMOUS``, no function key and no
bearer token): the page and its files are public documentation of a public document
(``/api/openapi.json``) and hold no data. The API calls the page makes ("Try it out") carry the
reader's own token, which every API route checks as for any other client.
"""

from __future__ import annotations

import urllib.parse
from typing import Final

import azure.functions as func

from blueprints._problems import ProblemError, api_handler
from shared.auth.policy import API_REFERENCE
from shared.observability import InvocationContext

bp = func.Blueprint()

# One function for the page and its files: a catch-all also matches "docs" with no asset, and
# the host tries the longer template first, so a separate "docs" route would never be reached.
DOCS_ROUTE: Final = "docs/{*asset}"
_CONDITIONAL_HEADERS: Final = ("accept-encoding", "if-none-match")


@bp.function_name("api_docs")
@bp.route(route=DOCS_ROUTE, methods=[func.HttpMethod.GET], auth_level=func.AuthLevel.ANONYMOUS)
@api_handler(API_REFERENCE)
def api_docs(req: func.HttpRequest, scope: InvocationContext) -> func.HttpResponse:
    """Anonymous: the reference page (no asset) or one file of it; anything else is a 404."""
    from shared.api_docs import docs_config, respond, security_headers

    config = docs_config()
    asset = str(req.route_params.get("asset") or "")
    if not asset and urllib.parse.urlsplit(req.url).path.endswith("/"):
        # The page links its files relative to /api/docs; from /api/docs/ they would miss.
        return func.HttpResponse(
            status_code=308, headers={"Location": "../docs", **security_headers(config)}
        )
    answer = respond(asset, config, {name: req.headers.get(name) for name in _CONDITIONAL_HEADERS})
    if answer is None:
        raise ProblemError(
            404,
            "Not found",
            "the API reference has no such file",
            slug="not-found",
            headers=security_headers(config),
        )
    return func.HttpResponse(answer.body, status_code=answer.status, headers=answer.headers)
