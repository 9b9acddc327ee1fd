"""Re-evaluating stored sessions between polls (``poll.service.reevaluate_sessions``), as the
web app does after a register changes: the current registers, the stored snapshot, no Graph."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from remote_guard.consent.models import ConsentRow
from remote_guard.poll.service import load_school_domains, reevaluate_sessions
from remote_guard.store.db import transaction
from remote_guard.web.evaluation import evaluation_poller
from tests.web.teacher_tenant import TeacherTenant, teacher_tenant

pytestmark = pytest.mark.database

__all__ = ["teacher_tenant"]  # the module-scoped fixture, used by name

ONE_TO_ONE = "one_to_one_without_consent"


def test_a_withdrawal_changes_the_stored_finding_without_graph_calls(
    teacher_tenant: TeacherTenant,
) -> None:
    web = teacher_tenant.web.app.state.web
    poller = evaluation_poller(web)
    assert evaluation_poller(web) is poller  # built once per app
    tomorrow = teacher_tenant.sessions["oak-1to1-tomorrow"]
    assert teacher_tenant.status("oak-1to1-tomorrow", ONE_TO_ONE, "p2") == "pass"
    with transaction(teacher_tenant.web.db) as db:
        consent = db.scalars(
            select(ConsentRow).where(ConsentRow.pupil_id == teacher_tenant.person_id("p2"))
        ).one()
        consent.withdrawn_at = teacher_tenant.web.clock()
    requests_before = poller.graph.stats.total

    result = reevaluate_sessions(poller, [tomorrow, "no-such-session"])

    assert result.session_ids == [tomorrow]  # a session with no snapshot is skipped
    assert poller.graph.stats.total == requests_before
    assert teacher_tenant.status("oak-1to1-tomorrow", ONE_TO_ONE, "p2") == "fail"
    assert [(previous, finding.rule_id) for previous, finding in result.changed] == [
        ("pass", ONE_TO_ONE)
    ]
    [finding] = teacher_tenant.findings("oak-1to1-tomorrow", ONE_TO_ONE)
    assert "parental consent was withdrawn" in finding.message
    # Nothing else about the session changed, so evaluating again changes nothing.
    assert reevaluate_sessions(poller, [tomorrow]).changed == []


def test_the_poll_keeps_the_school_domains_for_re_evaluation(
    teacher_tenant: TeacherTenant,
) -> None:
    poller = evaluation_poller(teacher_tenant.web.app.state.web)

    domains = load_school_domains(poller)

    assert domains is not None
    assert teacher_tenant.web.scenario.tenant.domain in domains
    assert reevaluate_sessions(poller, []).session_ids == []
