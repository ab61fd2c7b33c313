"""Health endpoints (anonymous, so load balancers and deployment gates can call them).

- ``GET /api/health``: liveness: the process runs this code; never touches a dependency and
  needs none of the worker's threads (async, on the worker's event loop).
- ``GET /api/health/ready``: readiness: every configured dependency answers within a short
  timeout; 503 with per-dependency status when one does not.
"""

from __future__ import annotations

import azure.functions as func

from blueprints._invocation import http_invocation, json_response

bp = func.Blueprint()

RETRY_AFTER_SECONDS = "10"


@bp.function_name("health_live")
@bp.route(route="health", methods=[func.HttpMethod.GET], auth_level=func.AuthLevel.ANONYMOUS)
async def health_live(req: func.HttpRequest, context: func.Context) -> func.HttpResponse:
    # async: the worker runs it on its event loop, not on one of its threads, so liveness
    # answers even while every thread is busy (a hung dependency holding its bulkhead share,
    # the rest serving a queue of fast 503s). It must never block: it reads settings only.
    from shared.services.health import liveness_version

    with http_invocation(req, context) as scope:
        return json_response({"status": "ok", "version": liveness_version()}, scope=scope)


@bp.function_name("health_ready")
@bp.route(route="health/ready", methods=[func.HttpMethod.GET], auth_level=func.AuthLevel.ANONYMOUS)
def health_ready(req: func.HttpRequest, context: func.Context) -> func.HttpResponse:
    from shared.observability import get_logger
    from shared.services.health import readiness

    with http_invocation(req, context) as scope:
        result = readiness()
        if result.ready:
            return json_response(result.to_json(), scope=scope)
        get_logger("health").warning(
            "not ready: %s unavailable",
            ", ".join(result.unavailable),
            extra={"unavailable": list(result.unavailable)},
        )
        return json_response(
            result.to_json(),
            status_code=503,
            scope=scope,
            headers={"Retry-After": RETRY_AFTER_SECONDS},
        )
