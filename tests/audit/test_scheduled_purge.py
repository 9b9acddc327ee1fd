"""The daily purge is a job of the poller's scheduler, at night in the school's time zone."""

from __future__ import annotations

from pathlib import Path

import pytest

from remote_guard.poll.scheduler import PURGE_HOUR, daily_purge
from remote_guard.privacy.retention import PURGE_ACTION
from tests.e2e.conftest import school, start

pytestmark = pytest.mark.database


def test_daily_purge_runs_and_is_audited(tmp_path: Path) -> None:
    """Called as the scheduler calls it, the purge runs (nothing is due yet) and the audit trail
    records it, so a night's purge is never silent."""
    from sqlalchemy import select

    from remote_guard.audit.models import AuditEntryRow  # the stored trail

    assert 0 <= PURGE_HOUR < 6
    for running in start(school(), tmp_path):
        daily_purge(running.poller)
        with running.poller.db() as session:
            actions = list(session.scalars(select(AuditEntryRow.action)))
        assert PURGE_ACTION in actions
