"""schemathesis against the app's own OpenAPI document (/api/v1/openapi.json): every operation,
called in-process with generated parameters and bodies (valid and invalid ones) as a signed-in teacher, SLT member and
DSL (session cookie + X-CSRF-Token header), never answers with a server error.

The number of examples per operation is bounded so the whole module stays well under a minute;
the tenant is the DSL pages' one (sessions polled, cases open), so some generated ids hit rows.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error

from tests.web.conftest import csrf_token, sign_in
from tests.web.dsl_support import DslTenant, dsl_tenant

pytestmark = pytest.mark.database

EXAMPLES = 25  # per operation and role: 26 operations x 3 roles x 25 takes about 15 s
PEOPLE = ("t.oak", "head", "dsl")  # a teacher, SLT, the DSL


@pytest.fixture(scope="module")
def dsl(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DslTenant]:
    with dsl_tenant(tmp_path_factory.mktemp("api-schema")) as tenant:
        yield tenant


@pytest.fixture(scope="module")
def schema(dsl: DslTenant) -> Any:
    return schemathesis.openapi.from_asgi("/api/v1/openapi.json", dsl.web.app)


def test_the_document_lists_every_api_operation(schema: Any) -> None:
    """The fuzzing below covers what the document describes; make sure it describes the API
    (an empty or broken document would make the fuzz test pass vacuously)."""
    labels = {op.ok().label for op in schema.get_all_operations()}
    assert "POST /api/v1/cases/{case_id}/status" in labels
    assert "POST /api/v1/one-to-ones" in labels
    assert "POST /api/v1/drop-ins" in labels
    assert len(labels) >= 25


@pytest.mark.parametrize("person", PEOPLE)
def test_no_operation_answers_with_a_server_error(dsl: DslTenant, schema: Any, person: str) -> None:
    """Raises AssertionError (through schemathesis' FailureGroup) naming the operation and the
    request that got a 5xx."""
    with dsl.web.client() as client:
        sign_in(client, dsl.web, person)
        headers = {"X-CSRF-Token": csrf_token(client)}
        cookies = dict(client.cookies.items())
    # The test client's requests go to the app's public address, so the same-origin check
    # sees its own host.
    base_url = dsl.web.settings.web.base_url

    # Random ids mostly find nothing (404); real ones take generated bodies deeper.
    session_id = dsl.session_id("oak-1to1")
    known = {"session_id": session_id, "case_id": _case_id(dsl, session_id)}

    failures: list[str] = []
    for result in schema.get_all_operations():
        operation = result.ok()
        real = {name: value for name, value in known.items() if f"{{{name}}}" in operation.path}
        strategies = [operation.as_strategy(mode) for mode in GenerationMode]
        if real:
            strategies.append(operation.as_strategy(path_parameters=real))

        @given(case=st.one_of(strategies))
        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            database=None,
            derandomize=True,  # the same requests every run: a failure reproduces
            phases=[Phase.explicit, Phase.generate],
            suppress_health_check=list(HealthCheck),
        )
        def call(case: Any) -> None:
            response = case.call(base_url=base_url, headers=headers, cookies=cookies)
            case.validate_response(response, checks=[not_a_server_error])

        try:
            call()
        except Exception as exc:  # noqa: BLE001 (collect every operation's failure, then report)
            failures.append(f"{operation.label}: {exc}")
    assert not failures, "\n\n".join(failures)


def _case_id(dsl: DslTenant, session_id: str) -> int:
    from remote_guard.cases.service import case_for_session

    with dsl.web.db() as db:
        found = case_for_session(db, session_id)
        assert found is not None  # opened by the poll
        return found.id
