"""``/healthz``, ``/readyz`` and ``/metrics`` in the web app (no sign-in: see OpsSettings)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse, PlainTextResponse

from remote_guard.ops import metrics
from remote_guard.ops.health import TokenProbe, readiness
from remote_guard.web.context import web_context

# Paths that never load a session or the signed-in user (probes send no cookie, and must not
# depend on the roster being readable).
OPS_PATHS = ("/healthz", "/readyz", "/metrics")

router = APIRouter(include_in_schema=False)


def _probe(request: Request) -> TokenProbe:
    """One token probe per app, so the once-a-minute limit holds across requests."""
    state = request.app.state
    probe: TokenProbe | None = getattr(state, "ops_token_probe", None)
    if probe is None:
        web = web_context(request)
        probe = TokenProbe(web.graph.tokens, clock=web.clock)
        state.ops_token_probe = probe
    return probe


@router.get("/healthz")
def healthz() -> dict[str, str]:
    """Alive: the process answers. Touches neither the database nor Graph."""
    return {"status": "ok"}


@router.get("/readyz")
def readyz(request: Request) -> Response:
    """200 when the database answers, a poll finished within three intervals and a Graph token
    can be had; 503 otherwise. The body says what each check found."""
    web = web_context(request)
    report = readiness(web.db, web.settings, _probe(request), now=web.clock())
    body: dict[str, Any] = report.as_json()
    return JSONResponse(body, status_code=200 if report.ready else 503)


@router.get("/metrics")
def prometheus(request: Request) -> Response:
    """Prometheus metrics, for the bearer token of ``[ops] metrics_token`` or, with none set,
    for clients on this machine only."""
    web = web_context(request)
    allowed = metrics.metrics_allowed(
        authorization=request.headers.get("authorization"),
        client_host=request.client.host if request.client else None,
        token=web.settings.ops.metrics_token,
    )
    if not allowed:
        return PlainTextResponse(
            "metrics need the bearer token of [ops] metrics_token, or a request from this "
            "machine when none is set\n",
            status_code=403,
        )
    text = metrics.render(web.db, graph={"web": web.graph.stats}, now=web.clock())
    return Response(text, media_type=metrics.CONTENT_TYPE)
