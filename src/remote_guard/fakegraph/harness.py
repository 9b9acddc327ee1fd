"""Runs the real service stack against the fake tenant: ``demo``, ``check`` and ``fake-tenant``.

Only the CLI and the tests import this; the product never imports ``fakegraph``.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from sqlalchemy import select

from remote_guard.clock import Clock, utc_now
from remote_guard.collect.collector import (
    TEAMS_JOIN,
    session_id_for_chat,
    session_id_for_event,
    session_id_for_join_url,
)
from remote_guard.consent.registers import ApprovalStatus, Consent, Registration
from remote_guard.consent.service import save_approved_activity, save_consent, save_registration
from remote_guard.exemptions.exemption import Exemption, ExemptionScope
from remote_guard.exemptions.service import save_exemption
from remote_guard.fakegraph.demo import demo_scenario
from remote_guard.fakegraph.scenario import ConsentSpec, ExemptionSpec, Scenario, load_scenario
from remote_guard.fakegraph.server import FakeTenantServer
from remote_guard.findings.models import FindingRow
from remote_guard.policy.profile import Policy
from remote_guard.poll.service import Poller, PollResult, run_poll
from remote_guard.rules.base import OPEN_STATUSES, Finding
from remote_guard.runtime import build_poller
from remote_guard.settings import NotifySettings, Settings, settings_from_mapping
from remote_guard.store.db import transaction

if TYPE_CHECKING:
    from remote_guard.web.server import WebServer


def scenario_clock(scenario: Scenario) -> Clock:
    """A clock that starts at the scenario's "now" and runs at real speed."""
    start = scenario.reference_now()
    origin = time.monotonic()

    def now() -> datetime:
        return start + timedelta(seconds=time.monotonic() - origin)

    return now


def settings_for(
    server: FakeTenantServer, scenario: Scenario, *, database_url: str, clock: Clock
) -> Settings:
    """Settings that point the real client at the fake tenant, as a school's file would."""
    now = clock()
    starts = (
        [scenario.when(m.start, now) for m in scenario.meetings]
        + [scenario.when(c.start, now) for c in scenario.calls]
        # A direct chat is a session from its first message in the window: reach them all.
        + [scenario.when(m.at, now) for chat in scenario.chats for m in chat.messages]
    )
    earliest = min(starts, default=now)
    latest = max(starts, default=now)
    lookback = max(36, int((now - earliest).total_seconds() // 3600) + 2)
    lookahead = max(7, int((latest - now).total_seconds() // 86400) + 1)
    schools = [
        {
            "key": group.school or group.key,
            "name": group.name,
            "group_ids": [scenario.group_id(group.key)],
        }
        for group in scenario.groups
        if group.role == "school"
    ]
    data: dict[str, Any] = {
        "tenant": server.tenant_settings(),
        "directory": server.directory_settings(),
        "schools": schools,
        "database": {"url": database_url},
        "poll": {"lookback_hours": min(lookback, 24 * 29), "lookahead_days": min(lookahead, 60)},
        "policy": {
            "profile": scenario.profile_ref(scenario.profile),
            "packs": [scenario.profile_ref(pack) for pack in scenario.packs],
        },
        "school_day": {"timezone": scenario.timezone, **scenario.school_day},
    }
    return settings_from_mapping(data, source=f"scenario {scenario.name}")


def import_registers(
    poller: Poller, scenario: Scenario, server: FakeTenantServer, *, clock: Clock
) -> int:
    """Load the scenario's one-to-one registrations, consents and approved activities into the
    store, as teachers and SLT would have recorded them. Returns how many registrations."""
    now = clock()
    with transaction(poller.db) as session:
        for activity in scenario.approved_activities:
            save_approved_activity(session, name=activity, approved_by=None, now=now)
        for spec in scenario.registrations:
            consent_id: str | None = None
            if spec.consent is not None:
                consent_id = f"consent-{spec.key}"
                save_consent(
                    session,
                    consent=_consent(scenario, spec.consent, consent_id, spec.pupil, now),
                    recorded_by=scenario.person_id(spec.teacher),
                    now=now,
                )
            save_registration(
                session,
                registration=Registration(
                    id=f"registration-{spec.key}",
                    staff_id=scenario.person_id(spec.teacher),
                    pupil_id=scenario.person_id(spec.pupil),
                    activity=spec.activity,
                    join_url=server.join_url(spec.meeting) if spec.meeting else None,
                    starts_at=scenario.when(spec.starts_at, now) if spec.starts_at else None,
                    ends_at=scenario.when(spec.ends_at, now) if spec.ends_at else None,
                    status=ApprovalStatus(spec.status),
                    approved_by=scenario.person_id(spec.approved_by) if spec.approved_by else None,
                    approved_at=scenario.when(spec.approved_at, now) if spec.approved_at else None,
                ),
                consent_id=consent_id,
                recorded_by=scenario.person_id(spec.teacher),
                now=now,
            )
        for standalone in scenario.consents:
            save_consent(
                session,
                consent=_consent(
                    scenario, standalone, f"consent-{standalone.key}", standalone.pupil, now
                ),
                recorded_by=None,
                now=now,
            )
        for waiver in scenario.exemptions:
            save_exemption(session, _exemption(scenario, waiver, server, now))
    return len(scenario.registrations)


def _consent(
    scenario: Scenario, spec: ConsentSpec, consent_id: str, pupil: str, now: datetime
) -> Consent:
    return Consent(
        id=consent_id,
        pupil_id=scenario.person_id(pupil),
        scope=spec.scope,
        granted_by=spec.granted_by,
        relationship=spec.relationship,
        contact_email=spec.contact_email,
        granted_at=scenario.when(spec.granted_at, now),
        method=spec.method,
        evidence_ref=spec.evidence_ref,
        expires_at=scenario.when(spec.expires_at, now) if spec.expires_at else None,
        withdrawn_at=scenario.when(spec.withdrawn_at, now) if spec.withdrawn_at else None,
    )


def _exemption(
    scenario: Scenario, spec: ExemptionSpec, server: FakeTenantServer, now: datetime
) -> Exemption:
    session_id = series_id = None
    if spec.session is not None:
        # The session id the collector gives the scenario's meeting, call or chat.
        sessions, _ = key_maps(scenario, server)
        session_id = next((sid for sid, key in sessions.items() if key == spec.session), None)
        if session_id is None:
            session_id = spec.session  # nothing the collector can find: matches no session
        meeting_keys = {meeting.key for meeting in scenario.meetings}
        # A series exemption names the series as the collector reports it (the organiser's
        # seriesMasterId); a meeting outside any series is its own series.
        in_series = server.series_id(spec.session) if spec.session in meeting_keys else None
        series_id = in_series or session_id
    granted_at = scenario.when(spec.granted_at, now)
    return Exemption(
        id=f"exemption-{spec.key}",
        rule_id=spec.rule,
        scope=ExemptionScope(spec.scope),
        pupil_id=scenario.person_id(spec.pupil) if spec.pupil else None,
        staff_id=scenario.person_id(spec.staff) if spec.staff else None,
        series_id=series_id if spec.scope == "series" else None,
        session_id=session_id if spec.scope == "session" else None,
        reason=spec.reason,
        granted_by=spec.granted_by,
        granted_at=granted_at,
        expires_at=scenario.when(spec.expires_at, now)
        if spec.expires_at
        else granted_at + timedelta(days=365),
    )


@dataclass
class CheckResult:
    scenario: Scenario
    poll: PollResult
    findings: list[dict[str, Any]]
    policy: Policy  # what the findings were judged against
    session_keys: dict[str, str] = field(default_factory=dict)
    subject_keys: dict[str, str] = field(default_factory=dict)


def key_maps(scenario: Scenario, server: FakeTenantServer) -> tuple[dict[str, str], dict[str, str]]:
    """Session id -> scenario session key, and person id -> scenario person/joiner key."""
    sessions: dict[str, str] = {}
    for meeting in scenario.meetings:
        url = server.join_url(meeting.key)
        if url and TEAMS_JOIN.match(url):
            # The occurrences of a series share one join URL; each is its own session, named by
            # its start in the series.
            occurrence = server.occurrence_start(meeting.key)
            sessions[session_id_for_join_url(url, occurrence)] = meeting.key
        else:
            # A meeting not on Teams is known by its calendar event's iCalUId.
            sessions[session_id_for_event(server.ical_uid(meeting.key))] = meeting.key
    for call in scenario.calls:
        record_id = server.call_record_id(call.key)
        if record_id:
            sessions[f"call_{record_id}"] = call.key
    for chat in scenario.chats:
        chat_id = server.chat_id(chat.key)
        if chat_id:
            sessions[session_id_for_chat(chat_id)] = chat.key
    subjects = {scenario.person_id(person.key): person.key for person in scenario.people}
    for identity_id, key in server.external_identity_ids().items():
        # The collector prefixes ids that are not Entra object ids with the kind of joiner.
        for prefix in ("", "anon:", "phone:", "app:"):
            subjects[prefix + identity_id] = key
    return sessions, subjects


def _finding_dict(
    row: FindingRow, sessions: dict[str, str], subjects: dict[str, str]
) -> dict[str, Any]:
    return {
        "rule": row.rule_id,
        "clause": f"{row.clause_id}v{row.clause_version}",
        "profile": row.profile_id,
        "status": row.status,
        "exempted": row.exemption is not None,
        "exemption": row.exemption,
        "severity": row.severity,
        "phase": row.phase,
        "session": sessions.get(row.session_id, row.session_id),
        "session_id": row.session_id,
        "subject": subjects.get(row.subject_key, row.subject_key) if row.subject_key else None,
        "subject_id": row.subject_key or None,
        "observed": row.observed,
        "message": row.message,
        "next_step": row.next_step,
        "evidence": row.evidence,
        "sources": row.sources,
    }


def run_check(
    scenario: Scenario, *, state_dir: Path, database_url: str | None = None
) -> CheckResult:
    """Serve ``scenario`` over HTTPS, run one full poll with the real client, return findings.

    The findings are stored in ``database_url`` (an empty database), or by default in a new
    SQLite file ``check.db`` in ``state_dir``.
    """
    clock = scenario_clock(scenario)
    state_dir.mkdir(parents=True, exist_ok=True)
    if database_url is None:
        database = state_dir / "check.db"
        for suffix in ("", "-wal", "-shm"):
            Path(f"{database}{suffix}").unlink(missing_ok=True)
        database_url = f"sqlite:///{database}"
    with FakeTenantServer(scenario, state_dir=state_dir / "tenant", clock=clock) as server:
        settings = settings_for(server, scenario, database_url=database_url, clock=clock)
        poller = build_poller(settings, clock=clock)
        import_registers(poller, scenario, server, clock=clock)
        result = run_poll(poller)
        sessions, subjects = key_maps(scenario, server)
    with poller.db() as session:
        rows = list(
            session.scalars(
                select(FindingRow).order_by(
                    FindingRow.rule_id, FindingRow.session_id, FindingRow.subject_key
                )
            )
        )
    findings = [_finding_dict(row, sessions, subjects) for row in rows]
    return CheckResult(
        scenario=scenario,
        poll=result,
        findings=findings,
        policy=poller.policy,
        session_keys=sessions,
        subject_keys=subjects,
    )


def run_check_file(path: Path, *, state_dir: Path | None) -> CheckResult:
    """``run_check`` for a scenario file, in a temporary folder unless one is given.

    Raises:
        ScenarioError: the file is not a valid scenario.
    """
    scenario = load_scenario(path)
    if state_dir is not None:
        return run_check(scenario, state_dir=state_dir)
    with tempfile.TemporaryDirectory(prefix="remote-guard-check-") as folder:
        return run_check(scenario, state_dir=Path(folder))


def print_check(
    result: CheckResult, *, output_format: str, include_all: bool, out: TextIO = sys.stdout
) -> None:
    shown = [
        f for f in result.findings if include_all or f["status"] in {s.value for s in OPEN_STATUSES}
    ]
    poll = {
        "status": result.poll.status,
        "seconds": round(result.poll.seconds, 3),
        "graph_requests": result.poll.graph.get("requests_this_run"),
        "errors": result.poll.errors,
    }
    if output_format == "json":
        json.dump(
            {"scenario": result.scenario.name, "poll": poll, "findings": shown},
            out,
            indent=2,
            default=str,
        )
        out.write("\n")
        return
    out.write(
        f"Scenario {result.scenario.name}: poll {poll['status']}, "
        f"{poll['graph_requests']} Graph requests in {poll['seconds']} s\n"
    )
    for finding in shown:
        out.write(_line(finding) + "\n")
    if not shown:
        out.write("No findings.\n")


def _line(finding: dict[str, Any]) -> str:
    exempted = " (exempted)" if finding.get("exempted") or finding.get("exemption") else ""
    return (
        f"[{finding['status'].upper():5}] {finding['severity']:<6} {finding['clause']:<24} "
        f"{finding['rule']}: {finding['message']}{exempted}"
    )


def start_web_app(
    server: FakeTenantServer,
    settings: Settings,
    *,
    clock: Clock,
    host: str = "127.0.0.1",
    port: int = 0,
) -> tuple[WebServer, Settings]:
    """Serve the web app for the fake tenant in a thread, on ``port`` (0: a free one).

    The settings gain a ``[web]`` section with a fresh session secret, and the fake tenant
    accepts the app's sign-in return address, as an admin registers it in Entra.

    Raises:
        OSError: the port cannot be bound.
    """
    import secrets

    from pydantic import SecretStr

    from remote_guard import audit
    from remote_guard.fakegraph.identity import allow_redirect_uri
    from remote_guard.graph.client import GraphClient
    from remote_guard.settings import WebSettings
    from remote_guard.store.db import make_engine, migrate, session_factory
    from remote_guard.web.app import create_app
    from remote_guard.web.server import WebServer, bind

    sock = bind(host, port)
    web = WebSettings(
        host=host,
        port=int(sock.getsockname()[1]),
        session_secret=SecretStr(secrets.token_hex(32)),
    )
    settings = settings.model_copy(update={"web": web})
    allow_redirect_uri(server.state, web.redirect_uri)
    engine = make_engine(settings.database.url)
    migrate(engine)
    audit.configure(engine, settings.audit)
    app = create_app(settings, session_factory(engine), GraphClient(settings.tenant), clock)
    running = WebServer(app, sock)
    running.start()
    return running, settings


def sign_in_guide(scenario: Scenario) -> str:
    """How to sign in as each role of ``scenario``, for the demo's banner."""
    labels = (("dsl", "DSL"), ("deputy_dsl", "Deputy DSL"), ("slt", "SLT"), ("teacher", "teacher"))
    lines = []
    for role, label in labels:
        names = [person.name for person in scenario.people if role in person.roles]
        if names:
            shown = ", ".join(names[:3]) + (f" (+{len(names) - 3} more)" if len(names) > 3 else "")
            lines.append(f"    as {label:<12} pick {shown}\n")
    pupil = next((person.name for person in scenario.people if person.kind == "pupil"), None)
    if pupil:
        lines.append(f"    a pupil account ({pupil}) is offered too: remote_guard refuses it\n")
    return "".join(lines)


def run_demo(
    *,
    state_dir: Path,
    interval: float,
    cycles: int | None,
    out: TextIO = sys.stdout,
    stop: threading.Event | None = None,
    web_port: int | None = 8000,
) -> int:
    """The demo: the simulated federation over HTTPS, polled into SQLite, findings printed, and
    the web app on ``web_port`` (a free port if that one is taken; None: no web app). Change
    notifications are on: the fake tenant posts them over HTTPS to the receiver on loopback, so
    what happens live (``fakegraph.live.demo_live_scenario``) shows within seconds."""
    from remote_guard.fakegraph.live import (
        DEMO_LIVE_STORY,
        LiveTenant,
        demo_live_scenario,
        notification_settings,
        receiver_for,
    )
    from remote_guard.logs import configure_logging
    from remote_guard.poll.scheduler import run_scheduled
    from remote_guard.settings import LoggingSettings
    from remote_guard.subscriptions.hub import Notifications
    from remote_guard.subscriptions.models import LiveAlertRow

    configure_logging(LoggingSettings(level="warning"), stream=sys.stderr)
    scenario = demo_live_scenario(demo_scenario())
    shutil.rmtree(state_dir, ignore_errors=True)
    state_dir.mkdir(parents=True, exist_ok=True)
    database = state_dir / "remote_guard.db"
    clock = utc_now
    with FakeTenantServer(scenario, state_dir=state_dir / "tenant", clock=clock) as server:
        live = LiveTenant(server)
        receiver = receiver_for(live)
        settings = settings_for(server, scenario, database_url=f"sqlite:///{database}", clock=clock)
        settings = settings.model_copy(
            update={
                "notify": demo_notify(server, scenario),
                "notifications": notification_settings(receiver),
            }
        )
        out.write(
            "remote_guard demo: a simulated school tenant\n"
            f"  fake Microsoft 365 tenant   {server.base_url} (identity + Graph v1.0, HTTPS)\n"
            f"  its CA certificate          {server.ca_path}\n"
            f"  database                    {database}\n"
            f"  profile                     {settings.policy.profile}\n"
            f"  change notifications        {settings.notifications.notification_url}\n"
            "Polling with the real MSAL and requests client. Ctrl-C stops.\n"
            f"{DEMO_LIVE_STORY}\n\n"
        )
        out.flush()

        def on_finding(finding: Finding, previous: str | None) -> None:
            change = f" (was {previous})" if previous else ""
            shown = {
                **finding.model_dump(mode="json"),
                "rule": finding.rule_id,
                "clause": finding.clause_ref,
            }
            out.write(f"  {_line(shown)}{change}\n")
            out.flush()

        poller = build_poller(settings, clock=clock, on_finding=on_finding)
        import_registers(poller, scenario, server, clock=clock)
        hub = Notifications(poller)
        hub.attach()

        def on_alert(alert: LiveAlertRow) -> None:
            out.write(
                "  LIVE ALERT to SLT: a member of staff is alone with a pupil now; drop in: "
                f"{alert.join_url}\n"
            )
            out.flush()

        hub.alerts.listeners.append(on_alert)
        hub.start()
        receiver.start(hub.app())
        web = _start_demo_web(server, settings, scenario, clock=clock, port=web_port, out=out)

        def on_result(result: PollResult) -> None:
            with poller.db() as session:
                open_count = len(
                    list(
                        session.scalars(
                            select(FindingRow.key).where(
                                FindingRow.status.in_([s.value for s in OPEN_STATUSES])
                            )
                        )
                    )
                )
            out.write(
                f"\npoll {result.status}: {result.counts.get('sessions', 0)} sessions, "
                f"{result.graph.get('requests_this_run')} Graph requests, "
                f"{result.graph.get('tokens_issued')} token(s), {result.seconds:.1f} s; "
                f"{open_count} open findings. Next poll in {interval:.0f} s.\n\n"
            )
            out.flush()

        try:
            run_scheduled(
                poller,
                interval_seconds=interval,
                max_cycles=cycles,
                on_result=on_result,
                stop=stop,
                wake=hub.waker.due,
                jobs=hub.jobs(),
            )
        finally:
            if web is not None:
                web.stop()
            receiver.stop()
            hub.stop()
            live.close()
    return 0


def demo_notify(server: FakeTenantServer, scenario: Scenario) -> NotifySettings:
    """The DSL e-mail for the demo, sent as the IT technician's mailbox (the demo tenant has no
    shared mailbox; a school creates one for remote_guard). The fake tenant keeps each message
    (``TenantState.sent_mail``) instead of delivering it."""
    it = next(
        (person.key for person in scenario.people if "IT" in (person.job_title or "")),
        next(person.key for person in scenario.people if person.kind == "staff"),
    )
    identity = server.state.identities[it]
    return NotifySettings(enabled=True, service_mailbox=identity.upn or identity.id)


def _start_demo_web(
    server: FakeTenantServer,
    settings: Settings,
    scenario: Scenario,
    *,
    clock: Clock,
    port: int | None,
    out: TextIO,
) -> WebServer | None:
    """Start the demo's web app and say where it is and how to sign in as each role."""
    if port is None:
        return None
    try:
        web, web_settings = start_web_app(server, settings, clock=clock, port=port)
    except OSError:
        # Port taken (another demo, another app): any free port will do for a demo.
        web, web_settings = start_web_app(server, settings, clock=clock, port=0)
    out.write(
        f"Web app: open {web_settings.web.base_url} and sign in. The sign-in page is the fake "
        "tenant's (simulated Microsoft sign-in): pick who to be.\n"
        + sign_in_guide(scenario)
        + "  Your browser will warn that the simulated tenant's certificate is not trusted: it is "
        f"signed by the demo's own CA ({server.ca_path}). Continue past the warning, or import "
        "that CA into the browser.\n\n"
    )
    out.flush()
    return web


def serve_fake_tenant(
    *,
    scenario_path: Path | None,
    demo: bool,
    port: int,
    state_dir: Path,
    wait: Callable[[], None] | None = None,
) -> int:
    """Serve a scenario until Ctrl-C, printing where it is and how to point remote_guard at it.

    Raises:
        ScenarioError: the scenario file is not valid.
    """
    scenario = demo_scenario() if demo or scenario_path is None else load_scenario(scenario_path)
    with FakeTenantServer(
        scenario, state_dir=state_dir, clock=scenario_clock(scenario), port=port
    ) as server:
        tenant = server.tenant_settings()
        sys.stdout.write(
            f"Fake tenant {scenario.tenant.name} serving on {server.base_url}\n"
            f"  authority      {server.authority_host}/{scenario.tenant.id}\n"
            f"  Graph          {server.graph_base_url}\n"
            f"  CA certificate {server.ca_path}\n\n"
            "[tenant] settings for remote_guard:\n"
            + "".join(f"{key} = {json.dumps(str(value))}\n" for key, value in tenant.items())
            + "\nCtrl-C stops.\n"
        )
        sys.stdout.flush()
        with contextlib.suppress(KeyboardInterrupt):
            (wait or threading.Event().wait)()
    return 0
