"""The DSL e-mail: a real poll of the fake tenant with ``[notify]`` on sends one message per
DSL through Graph sendMail as the service mailbox, naming no pupil; a failure is retried at the
next cycle and never stops the poller."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from remote_guard.fakegraph.server import FakeTenantServer
from remote_guard.fakegraph.tenant import TenantState
from remote_guard.poll.service import run_poll
from remote_guard.settings import NotifySettings
from tests.web.dsl_support import HOSTILE_SUBJECT, dsl_scenario, dsl_tenant

PUPIL_NAMES = ("Amelia K.", "Amelia", "Noah B.", "Isla M.")


def _mailbox() -> str:
    upn = TenantState(dsl_scenario()).identities["it"].upn
    assert upn
    return upn


@pytest.mark.database
def test_one_message_per_dsl_per_cycle_naming_no_pupil(tmp_path: Path) -> None:
    notify = NotifySettings(enabled=True, service_mailbox=_mailbox())
    with dsl_tenant(tmp_path, notify=notify) as tenant:
        state = tenant.web.server.state
        sent = {mail.to: mail for mail in state.sent_mail}
        # The DSL is in both schools' groups; the deputy only in South's.
        assert set(sent) == {("dsl@bramhamshadwell.sch.uk",), ("deputy@bramhamshadwell.sch.uk",)}
        assert len(state.sent_mail) == 2
        sender = tenant.web.person_id("it")
        assert {mail.sender_id for mail in state.sent_mail} == {sender}
        to_dsl = sent[("dsl@bramhamshadwell.sch.uk",)]
        to_deputy = sent[("deputy@bramhamshadwell.sch.uk",)]
        base = tenant.web.settings.web.base_url
        oak = tenant.session_id("oak-1to1")
        elm = tenant.session_id("elm-1to1")
        assert f"{base}/dsl/sessions/{oak}" in to_dsl.content
        assert f"{base}/dsl/sessions/{elm}" in to_dsl.content
        assert f"{base}/dsl/sessions/{oak}" not in to_deputy.content  # North is not theirs
        assert f"{base}/dsl/sessions/{elm}" in to_deputy.content
        assert "One-to-one session without approval and parental consent" in to_dsl.content
        assert "About: a pupil in Oak Class" in to_dsl.content
        assert "About: a pupil in Elm Class" in to_deputy.content
        assert "Wed 18 Nov 10:00" in to_dsl.content  # school local time
        # The pupil's name is taken out of the subject, and no name is anywhere else.
        assert '"Reading catch-up with [a pupil]"' in to_dsl.content
        for mail in state.sent_mail:
            for name in PUPIL_NAMES:
                assert name not in mail.content
                assert name not in mail.subject
            assert "Olive Oak" not in mail.content  # the organiser is not named either
        # Direction overrides are dropped, so the plain-text e-mail reads as written.
        assert "\u202e" not in to_dsl.content
        assert "evil" in to_dsl.content
        assert HOSTILE_SUBJECT not in to_dsl.content
        assert to_dsl.subject.startswith("remote_guard: ")
        # The next cycle finds nothing new: nothing is sent again.
        run_poll(tenant.poller)
        assert len(state.sent_mail) == 2
        sent_entries = tenant.audit("notify.sent")
        assert len(sent_entries) == 2
        assert {entry.actor_id for entry in sent_entries} == {"system"}


@pytest.mark.database
def test_a_failed_send_is_retried_next_cycle_and_the_poller_goes_on(tmp_path: Path) -> None:
    notify = NotifySettings(
        enabled=True,
        service_mailbox=_mailbox(),
        dsl_recipients=("safeguarding@school.example",),
    )

    def refuse_mail(server: FakeTenantServer) -> None:
        server.state.app_permissions.discard("Mail.Send")

    with dsl_tenant(tmp_path, notify=notify, before_poll=refuse_mail) as tenant:
        state = tenant.web.server.state
        # sendMail answered 403; the poll still finished and the cases were still opened.
        assert state.sent_mail == []
        assert tenant.audit("case.opened")
        state.app_permissions.add("Mail.Send")
        state.expire_tokens()  # the next token carries the permission again
        result = run_poll(tenant.poller)
        assert result.status == "ok"
        # Nothing was new in this cycle: the message is the one that failed, sent now.
        [mail] = state.sent_mail
        assert mail.to == ("safeguarding@school.example",)
        assert tenant.session_id("oak-1to1") in mail.content
        assert tenant.session_id("elm-1to1") in mail.content
        run_poll(tenant.poller)
        assert len(state.sent_mail) == 1


@pytest.mark.database
def test_nothing_is_sent_when_notify_is_off(tmp_path: Path) -> None:
    with dsl_tenant(tmp_path) as tenant:
        assert tenant.web.server.state.sent_mail == []
        assert tenant.audit("notify.sent") == []


def test_notify_needs_a_service_mailbox_when_enabled() -> None:
    with pytest.raises(ValidationError, match="is required when enabled = true"):
        NotifySettings(enabled=True)
    assert NotifySettings().enabled is False  # off until a school configures the mailbox
