"""Error bodies in the two shapes Microsoft uses: Graph's ``{"error":{...}}`` and Entra ID's."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any


class GraphError(Exception):
    """A Graph request fails with ``status`` and a Graph error body (``code``, ``message``)."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.headers = dict(headers or {})


def graph_error_body(
    code: str, message: str, *, now: datetime, request_id: str, client_request_id: str
) -> dict[str, Any]:
    """The body Graph sends with every error, including the ``innerError`` diagnostics."""
    return {
        "error": {
            "code": code,
            "message": message,
            "innerError": {
                # Graph writes this date without an offset (it is UTC).
                "date": now.strftime("%Y-%m-%dT%H:%M:%S"),
                "request-id": request_id,
                "client-request-id": client_request_id,
            },
        }
    }


def aad_timestamp(now: datetime) -> str:
    """Entra ID's timestamp format in error bodies, e.g. ``2026-11-21 13:05:09Z``."""
    return now.strftime("%Y-%m-%d %H:%M:%SZ")


def aad_error_body(
    error: str,
    aadsts: int,
    description: str,
    *,
    now: datetime,
    correlation_id: str,
    error_uri_base: str,
) -> dict[str, Any]:
    """An Entra ID (AADSTS) error body as the token and discovery endpoints send it."""
    trace_id = str(uuid.uuid4())
    stamp = aad_timestamp(now)
    return {
        "error": error,
        "error_description": (
            # Entra ID separates the trailer lines with CRLF.
            f"AADSTS{aadsts}: {description}\r\nTrace ID: {trace_id}\r\nCorrelation ID: "
            f"{correlation_id}\r\nTimestamp: {stamp}"
        ),
        "error_codes": [aadsts],
        "timestamp": stamp,
        "trace_id": trace_id,
        "correlation_id": correlation_id,
        "error_uri": f"{error_uri_base}/error?code={aadsts}",
    }
