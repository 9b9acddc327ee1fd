"""The fake tenant as one ASGI application: identity, Graph v1.0 and a request log."""

from __future__ import annotations

from fastapi import FastAPI
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from remote_guard.fakegraph.faults import ChaosMiddleware
from remote_guard.fakegraph.graph_v1 import GraphService, graph_router
from remote_guard.fakegraph.identity import identity_router
from remote_guard.fakegraph.tenant import TenantState
from remote_guard.fakegraph.throttling import ThrottleMiddleware


class RequestLog:
    """ASGI middleware that records every HTTP request served, with its final status."""

    def __init__(self, app: ASGIApp, state: TenantState) -> None:
        self.app = app
        self.state = state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        recorded = False

        def note(status: int) -> None:
            raw = scope.get("raw_path") or scope["path"].encode()
            path = raw.decode("latin-1")
            query = scope.get("query_string", b"").decode("latin-1")
            if query:
                path = f"{path}?{query}"
            self.state.record_request(scope["method"], path, status, in_batch=False)

        async def send_and_note(message: Message) -> None:
            nonlocal recorded
            if message["type"] == "http.response.start" and not recorded:
                # Logged before the client can see the answer, so a test that has its response
                # always finds the request in the log.
                recorded = True
                note(int(message["status"]))
            await send(message)

        try:
            await self.app(scope, receive, send_and_note)
        finally:
            if not recorded:
                note(500)  # the app failed before answering; the server answers 500


def create_app(state: TenantState) -> FastAPI:
    """The FastAPI app serving ``state``: Graph under ``/v1.0``, identity under ``/{tenant}``."""
    app = FastAPI(
        title="remote_guard fake Microsoft 365 tenant",
        openapi_url=None,
        docs_url=None,
        redoc_url=None,
    )
    # Graph first: "/v1.0/..." must never be read as a tenant called "v1.0".
    app.include_router(graph_router(GraphService(state)))
    app.include_router(identity_router(state))
    # Inside the request log, so injected faults are logged with the status the client saw.
    app.add_middleware(ChaosMiddleware, state=state)
    # Outlook's concurrency limit and the time a $batch's items take; inside the request log,
    # so a refusal is logged with its 429.
    app.add_middleware(ThrottleMiddleware, state=state)
    app.add_middleware(RequestLog, state=state)
    return app
