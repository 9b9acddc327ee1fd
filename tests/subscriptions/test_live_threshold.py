"""A live one-to-one's finding once the stretch has lasted the rule's threshold.

The live alert is raised the moment a teacher is left alone with a pupil; the rule's finding
needs the stretch to pass ``threshold_seconds`` (120 s). Nothing new arrives from Graph while
they stay alone, so the open alert's session is judged again with the reading time moved on.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select

from remote_guard.findings.models import FindingRow
from tests.subscriptions.conftest import school, start_live, wait_for
from tests.subscriptions.test_e2e import _alerts, _start_group

pytestmark = [pytest.mark.e2e, pytest.mark.database]


def test_a_live_one_to_one_is_a_finding_once_it_passes_the_threshold(tmp_path: Path) -> None:
    """p5 leaves: Mr Patel is alone with p4. Judged again 3 minutes on (no roster change), the
    one_to_one_without_consent finding for p4 is stored; judged at once, it is not."""
    run_iter = start_live(school(), tmp_path)
    run = next(run_iter)
    try:
        run.setup()
        _start_group(run)
        run.live.leave("group", "p5")
        wait_for(lambda: _alerts(run, "group"), what="the live alert")
        session_id = run.session_id("group")
        pupil = run.person_id("p4")

        def breach() -> list[FindingRow]:
            with run.poller.db() as db:
                return list(
                    db.scalars(
                        select(FindingRow).where(
                            FindingRow.rule_id == "one_to_one_without_consent",
                            FindingRow.session_id == session_id,
                            FindingRow.subject_key == pupil,
                            FindingRow.status == "fail",
                        )
                    )
                )

        run.hub.live.refresh(session_id, now=run.clock())
        assert breach() == []

        run.clock.shift(minutes=3)
        run.hub.live.refresh(session_id, now=run.clock())

        assert len(breach()) == 1
    finally:
        run_iter.close()
