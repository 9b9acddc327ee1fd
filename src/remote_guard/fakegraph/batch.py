"""``POST /v1.0/$batch``: JSON batching as Graph documents it (json-batching.md, 2025-02-21).

Each item runs in-process through :meth:`GraphService.handle`, exactly as if it had been sent on
its own: its own token check, permissions, random faults and forced responses, so one item can
be throttled (429 with its own ``Retry-After`` in its ``headers``) while the others succeed.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from remote_guard.fakegraph._errors import GraphError
from remote_guard.fakegraph._odata import GraphRequest, GraphResponse

if TYPE_CHECKING:
    from remote_guard.fakegraph.graph_v1 import GraphService

MAX_BATCH_REQUESTS = 20
# Item headers Graph copies from the item's own response into the batch response.
_ITEM_HEADERS = (
    "Retry-After",
    "Location",
    "Preference-Applied",
    "Content-Type",
    "WWW-Authenticate",
)


def execute_batch(service: GraphService, envelope: GraphRequest) -> GraphResponse:
    """Run a batch and answer 200 with every item's response, in a shuffled order.

    Raises:
        GraphError: 400, the envelope is malformed (not JSON, more than 20 requests, duplicate
            ids, a body without a Content-Type header, an unknown or circular dependsOn).
    """
    payload = envelope.json_body()
    if not isinstance(payload, dict) or not isinstance(payload.get("requests"), list):
        raise GraphError(400, "BadRequest", "Invalid batch payload format.")
    items: list[dict[str, Any]] = payload["requests"]
    if len(items) > MAX_BATCH_REQUESTS:
        raise GraphError(
            400,
            "BadRequest",
            f"Number of requests in the batch ({len(items)}) exceeds the limit of "
            f"{MAX_BATCH_REQUESTS}.",
        )
    by_id: dict[str, dict[str, Any]] = {}
    for item in items:
        if not isinstance(item, dict) or not all(k in item for k in ("id", "method", "url")):
            raise GraphError(
                400, "BadRequest", "Each batch request must have an id, a method and a url."
            )
        item_id = str(item["id"])
        if item_id in by_id:
            raise GraphError(400, "BadRequest", f"Batch request id '{item_id}' is not unique.")
        headers = item.get("headers") or {}
        if not isinstance(headers, dict):
            raise GraphError(
                400, "BadRequest", f"Headers of request id '{item_id}' must be an object."
            )
        if "body" in item and not any(name.lower() == "content-type" for name in headers):
            raise GraphError(
                400,
                "BadRequest",
                f"Write request id : {item_id} does not contain Content-Type header or body.",
            )
        by_id[item_id] = item
    order = _execution_order(by_id)

    results: dict[str, dict[str, Any]] = {}
    for item_id in order:
        item = by_id[item_id]
        depends_on = [str(d) for d in item.get("dependsOn") or []]
        failed = [d for d in depends_on if not 200 <= results[d]["status"] < 300]
        url = str(item["url"])
        if failed:
            results[item_id] = {
                "id": item_id,
                "status": 424,
                "headers": {},
                "body": {
                    "error": {
                        "code": "FailedDependency",
                        "message": f"Dependent request(s) {', '.join(failed)} failed.",
                    }
                },
            }
            service.state.record_request(
                str(item["method"]).upper(), _served_path(url), 424, in_batch=True
            )
            continue
        results[item_id] = _run_item(service, envelope, item_id, item)

    responses = [results[item_id] for item_id in by_id]
    with service.state.lock:
        service.state.fault_plan.rng.shuffle(responses)
    return GraphResponse(200, {"responses": responses})


def _execution_order(by_id: dict[str, dict[str, Any]]) -> list[str]:
    order: list[str] = []
    visiting: set[str] = set()

    def visit(item_id: str) -> None:
        if item_id in order:
            return
        if item_id in visiting:
            raise GraphError(400, "BadRequest", f"Request id '{item_id}' has a circular dependsOn.")
        visiting.add(item_id)
        for dependency in by_id[item_id].get("dependsOn") or []:
            if str(dependency) not in by_id:
                raise GraphError(
                    400,
                    "BadRequest",
                    f"Request id '{item_id}' depends on '{dependency}', which is not in the batch.",
                )
            visit(str(dependency))
        visiting.discard(item_id)
        order.append(item_id)

    for item_id in by_id:
        visit(item_id)
    return order


def _served_path(url: str) -> str:
    return "/v1.0/" + url.lstrip("/")


def _run_item(
    service: GraphService, envelope: GraphRequest, item_id: str, item: dict[str, Any]
) -> dict[str, Any]:
    method = str(item["method"]).upper()
    url = str(item["url"])
    path, _, query = url.lstrip("/").partition("?")
    headers = {str(name).lower(): str(value) for name, value in (item.get("headers") or {}).items()}
    # Items run with the batch's own credentials.
    if "authorization" in envelope.headers:
        headers["authorization"] = envelope.headers["authorization"]
    body = item.get("body")
    raw_body = (
        b""
        if body is None
        else (body.encode() if isinstance(body, str) else json.dumps(body).encode())
    )
    request = GraphRequest(
        method=method,
        raw_path="/" + path,
        query_string=query,
        headers=headers,
        body=raw_body,
        base_url=envelope.base_url,
        in_batch=True,
    )
    if path.strip("/").lower() == "$batch":
        response = GraphResponse(
            400,
            {
                "error": {
                    "code": "BadRequest",
                    "message": "Nested batch requests are not supported.",
                }
            },
        )
    else:
        response = service.handle(request)
    service.state.record_request(method, _served_path(url), response.status, in_batch=True)
    item_headers = {
        name: value for name, value in response.headers.items() if name in _ITEM_HEADERS
    }
    result: dict[str, Any] = {"id": item_id, "status": response.status, "headers": item_headers}
    if response.body is not None:
        result["body"] = response.body
    return result
