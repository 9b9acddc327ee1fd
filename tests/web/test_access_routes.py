"""The access matrix is complete: every route of the app appears in an access-matrix table
(tests/web/test_access*.py) that tries it as each of the six kinds of visitor: a teacher,
another school's teacher, SLT, the DSL, a deputy DSL (of the other school) and a signed-out
visitor. And the rows that were missing: the foundation's own routes and every SLT route as
each of the six (test_access_slt.py tries SLT's changes only as the refused roles).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.routing import iter_route_contexts
from fastapi.testclient import TestClient

from tests.web import test_access, test_access_dsl, test_access_slt, test_access_teacher
from tests.web.conftest import csrf_token, sign_in
from tests.web.slt_tenant import SltTenant, slt_tenant

pytestmark = pytest.mark.database

__all__ = ["slt_tenant"]  # the module-scoped fixture, used by name

# teacher (North), another school's teacher, SLT (North), DSL (both), deputy DSL (South), out.
KINDS: tuple[str | None, ...] = ("t.oak", "t.elm", "head", "dsl", "deputy", None)

# Not routes anyone is refused or allowed: the static files, the OpenAPI document itself, and
# the probe routes only the tests' app has (conftest.add_probe_routes).
NOT_IN_MATRIX = {"/static", "/api/v1/openapi.json", "/api/v1/probe", "/probe/form", "/probe/boom"}

# Signed out: a page sends the visitor to sign in (303), the API answers 401, and a POST is
# refused by the CSRF check before anything else (403: no session, no token).
PAGE, API, POST = 303, 401, 403
# A change an allowed user sends with something missing comes back with the problem (pages 400,
# the API 422, a conflict with the data 409); refused users get 403 before the body is read.
ROUTE_TABLE: list[tuple[str, str, dict[str, str] | None, tuple[int, ...]]] = [
    # method, path, body (form for pages, JSON for /api), status per KINDS
    # -- the foundation --------------------------------------------------------------------
    ("GET", "/", None, (303, 303, 303, 303, 303, 200)),  # signed in: sent to one's home
    ("GET", "/sign-in", None, (303, 303, 303, 303, 303, 303)),  # on to Entra (the fake)
    ("GET", "/auth/callback", None, (400, 400, 400, 400, 400, 400)),  # no flow to finish
    ("GET", "/signed-out", None, (200, 200, 200, 200, 200, 200)),
    ("GET", "/api/v1/me", None, (200, 200, 200, 200, 200, API)),
    ("GET", "/healthz", None, (200, 200, 200, 200, 200, 200)),  # for the load balancer
    ("GET", "/readyz", None, (200, 200, 200, 200, 200, 200)),
    # Only for Prometheus: its bearer token, or a request from this machine (the test client
    # is neither), whoever is signed in.
    ("GET", "/metrics", None, (403, 403, 403, 403, 403, 403)),
    # -- SLT: pages -------------------------------------------------------------------------
    ("GET", "/slt", None, (403, 403, 200, 403, 403, PAGE)),
    ("GET", "/slt/one-to-ones", None, (403, 403, 200, 403, 403, PAGE)),
    ("POST", "/slt/one-to-ones/{amelia}/approve", None, (403, 403, 303, 403, 403, POST)),
    # No reason given: the page comes back with the problem (409), nothing declined.
    ("POST", "/slt/one-to-ones/{knitting}/decline", {}, (403, 403, 409, 403, 403, POST)),
    ("GET", "/slt/activities", None, (403, 403, 200, 403, 403, PAGE)),
    ("POST", "/slt/activities", {"name": ""}, (403, 403, 400, 403, 403, POST)),
    # No such activity on the list (409), so nothing is retired.
    ("POST", "/slt/activities/retire", {"name": ""}, (403, 403, 409, 403, 403, POST)),
    ("GET", "/slt/drop-ins", None, (403, 403, 200, 403, 403, PAGE)),
    ("GET", "/slt/drop-ins/new?session_id={session}", None, (403, 403, 200, 403, 403, PAGE)),
    ("POST", "/slt/drop-ins", {"session_id": ""}, (403, 403, 400, 403, 403, POST)),
    ("GET", "/slt/drop-ins/{dropin}", None, (403, 403, 200, 403, 403, PAGE)),
    ("POST", "/slt/drop-ins/{dropin}/calendar", None, (403, 403, 303, 403, 403, POST)),
    ("POST", "/slt/drop-ins/{dropin}/outcome", {"outcome": ""}, (403, 403, 400, 403, 403, POST)),
    ("POST", "/slt/drop-ins/{dropin}/cancel", None, (403, 403, 303, 403, 403, POST)),
    ("GET", "/slt/coverage", None, (403, 403, 200, 403, 403, PAGE)),
    # -- SLT: API ---------------------------------------------------------------------------
    ("GET", "/api/v1/board", None, (403, 403, 200, 403, 403, API)),
    ("GET", "/api/v1/approvals", None, (403, 403, 200, 403, 403, API)),
    # Knitting club is not an approved activity: SLT get past access to the conflict (409).
    (
        "POST",
        "/api/v1/approvals/{knitting}/approve",
        None,
        (403, 403, 409, 403, 403, POST),
    ),
    (
        "POST",
        "/api/v1/approvals/{knitting}/decline",
        {},
        (403, 403, 422, 403, 403, POST),
    ),
    ("GET", "/api/v1/activities", None, (403, 403, 200, 403, 403, API)),
    ("POST", "/api/v1/activities", {}, (403, 403, 422, 403, 403, POST)),
    ("POST", "/api/v1/activities/retire", {}, (403, 403, 422, 403, 403, POST)),
    ("GET", "/api/v1/drop-ins", None, (403, 403, 200, 403, 403, API)),
    ("POST", "/api/v1/drop-ins", {}, (403, 403, 422, 403, 403, POST)),
    ("GET", "/api/v1/drop-ins/{dropin}", None, (403, 403, 200, 403, 403, API)),
    ("POST", "/api/v1/drop-ins/{dropin}/calendar", None, (403, 403, 200, 403, 403, POST)),
    ("POST", "/api/v1/drop-ins/{dropin}/outcome", {}, (403, 403, 422, 403, 403, POST)),
    ("POST", "/api/v1/drop-ins/{dropin}/cancel", None, (403, 403, 200, 403, 403, POST)),
    ("GET", "/api/v1/coverage", None, (403, 403, 200, 403, 403, API)),
]


# Rows that start a new sign-in, which replaces the visitor's session: tried with fresh clients.
FRESH_SESSION = {"/sign-in", "/auth/callback"}


def _template(path: str) -> str:
    """A path with its parameters (and query) blanked, so table rows match route paths."""
    return re.sub(r"\{[^}]*\}", "{}", path.split("?", 1)[0])


def _covered() -> set[tuple[str, str]]:
    """(method, path template) of every row of every access-matrix table."""
    rows: set[tuple[str, str]] = set()
    rows |= {("GET", path) for path in test_access.PAGES}
    rows |= {(method, path) for method, path, *_ in test_access_dsl.ROUTE_TABLE}
    rows |= set(test_access_teacher.ROUTES)
    rows |= {("GET", path) for path in test_access_slt.PAGES + test_access_slt.API}
    rows |= {(method, path) for method, path, *_ in ROUTE_TABLE}
    rows.add(("POST", "/sign-out"))  # test_signing_out_for_every_kind_of_visitor
    return {(method, _template(path)) for method, path in rows}


def test_every_route_is_in_an_access_matrix_table(slt_tenant: SltTenant) -> None:
    """A route added without a row in a matrix table fails here, naming it."""
    routes = {
        (method, _template(route.path))
        for route in iter_route_contexts(slt_tenant.web.app.routes)
        if route.path not in NOT_IN_MATRIX
        for method in (route.methods or set()) - {"HEAD"}
    }
    assert len(routes) > 60  # the enumeration found the included routers' routes
    missing = sorted(routes - _covered())
    assert not missing, f"routes without a row in a tests/web/test_access*.py table: {missing}"


@pytest.fixture(scope="module")
def clients(slt_tenant: SltTenant) -> Iterator[dict[str | None, tuple[TestClient, str]]]:
    """A signed-in client (and its CSRF token) per kind of visitor."""
    made: dict[str | None, tuple[TestClient, str]] = {}
    for key in KINDS:
        client = slt_tenant.web.client()
        client.__enter__()
        token = ""
        if key is not None:
            sign_in(client, slt_tenant.web, key)
            token = csrf_token(client)
        made[key] = (client, token)
    yield made
    for client, _ in made.values():
        client.__exit__(None, None, None)


def _new_drop_in(slt_tenant: SltTenant, head: TestClient, token: str) -> str:
    """Head's drop-in into Olive Oak's live lesson (each row gets its own: rows cancel them)."""
    answer = head.post(
        "/api/v1/drop-ins",
        json={"session_id": slt_tenant.sessions["oak-live"]},
        headers={"X-CSRF-Token": token},
    )
    assert answer.status_code == 201, answer.text
    dropin_id: str = answer.json()["id"]
    return dropin_id


def _send(
    client: TestClient, token: str, method: str, path: str, body: dict[str, Any] | None
) -> int:
    if method == "GET":
        return client.get(path, follow_redirects=False).status_code
    if path.startswith("/api/"):
        headers = {"X-CSRF-Token": token} if token else {}
        return client.post(path, json=body, headers=headers, follow_redirects=False).status_code
    data = {**(body or {}), **({"csrf_token": token} if token else {})}
    return client.post(path, data=data, follow_redirects=False).status_code


@pytest.mark.parametrize(
    ("method", "path", "body", "expected"),
    ROUTE_TABLE,
    ids=[f"{method} {path}" for method, path, *_ in ROUTE_TABLE],
)
def test_route_for_every_kind_of_visitor(  # noqa: PLR0917 (pytest passes parameters by name)
    slt_tenant: SltTenant,
    clients: dict[str | None, tuple[TestClient, str]],
    method: str,
    path: str,
    body: dict[str, str] | None,
    expected: tuple[int, ...],
) -> None:
    head, head_token = clients["head"]
    values = {
        "amelia": "registration-amelia",  # approved once, by SLT, last in the row
        "knitting": "registration-knitting",  # never decided: each allowed try is refused
        "session": slt_tenant.sessions["oak-live"],
        "dropin": _new_drop_in(slt_tenant, head, head_token) if "{dropin}" in path else "",
    }
    filled = path.format(**values)
    # The allowed kinds go last, so a change they make does not alter what the others get.
    order = sorted(range(len(KINDS)), key=lambda i: expected[i] < 400 and KINDS[i] is not None)
    got = {}
    for i in order:
        if path in FRESH_SESSION:
            with slt_tenant.web.client() as fresh:
                if KINDS[i] is not None:
                    sign_in(fresh, slt_tenant.web, KINDS[i])
                got[KINDS[i]] = _send(fresh, "", method, filled, body)
            continue
        client, token = clients[KINDS[i]]
        got[KINDS[i]] = _send(client, token, method, filled, body)
    assert got == dict(zip(KINDS, expected, strict=True)), filled


def test_signing_out_for_every_kind_of_visitor(slt_tenant: SltTenant) -> None:
    """POST /sign-out: each signed-in kind is signed out (303 to /signed-out); a signed-out
    visitor has no session, so no CSRF token, and is refused."""
    for key in KINDS:
        with slt_tenant.web.client() as client:
            token = ""
            if key is not None:
                sign_in(client, slt_tenant.web, key)
                token = csrf_token(client)
            answer = client.post(
                "/sign-out", data={"csrf_token": token} if token else {}, follow_redirects=False
            )
            if key is None:
                assert answer.status_code == 403
            else:
                assert answer.status_code == 303, key
                assert answer.headers["location"] == "/signed-out"
                assert client.get("/api/v1/me").status_code == 401
