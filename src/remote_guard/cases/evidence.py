"""A session's evidence as the DSL reads it: who was there when, chat, recordings, consent and
registration of the pupils involved, and each finding with the clause it is about.

Built from the stored session, its latest snapshot, its findings, the registers and the loaded
policy (for each clause's text). Pure reading: the caller records the view in the audit trail.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import structlog
from sqlalchemy import select
from sqlalchemy.orm import Session

from remote_guard.cases.models import CaseNoteRow, CaseRow
from remote_guard.cases.service import case_for_session, findings_of_session, list_notes
from remote_guard.collect.models import SessionRow, SnapshotRow
from remote_guard.collect.snapshot import PersonKind, SessionSnapshot
from remote_guard.consent.models import ConsentRow, RegistrationRow
from remote_guard.consent.registers import ApprovalStatus, Consent, Registration
from remote_guard.findings.models import FindingRow
from remote_guard.policy.profile import Clause, Policy, ProfileError, load_policy
from remote_guard.rules.base import OPEN_STATUSES, Rule
from remote_guard.rules.registry import load_rules
from remote_guard.settings import Settings

log = structlog.get_logger(__name__)

KIND_LABELS = {
    PersonKind.STAFF: "Staff",
    PersonKind.PUPIL: "Pupil",
    PersonKind.GUEST: "Guest",
    PersonKind.ANONYMOUS: "Anonymous",
    PersonKind.EXTERNAL: "Another organisation",
    PersonKind.PHONE: "Phone",
    PersonKind.APPLICATION: "App",
    PersonKind.UNKNOWN: "Unknown",
}

SOURCE_LABELS = {
    "attendance_report": "attendance report",
    "call_record": "call record",
    "roster_event": "meeting roster",
    "recordings_api": "recordings list",
    "chat_event": "chat event",
}

_OPEN = frozenset(status.value for status in OPEN_STATUSES)

NameOf = Callable[[str | None], str]


# --- the policy's clauses -------------------------------------------------------------------


class ClauseBook:
    """The configured policy's clauses by (profile id, clause id), loaded once when first asked
    for. If the profile cannot be loaded, every lookup gives None (the page says so)."""

    def __init__(self, settings: Settings, registry: Mapping[str, Rule] | None = None) -> None:
        self._settings = settings
        self._registry = registry
        self._lock = threading.Lock()
        self._loaded = False
        self._clauses: dict[tuple[str, str], Clause] = {}
        self._titles: dict[str, str] = {}

    def _load(self) -> None:
        with self._lock:
            if self._loaded:
                return
            registry = self._registry if self._registry is not None else load_rules()
            self._titles = {rule_id: rule.title for rule_id, rule in registry.items()}
            policy_settings = self._settings.policy
            try:
                policy: Policy | None = load_policy(
                    policy_settings.profile,
                    policy_settings.packs,
                    policy_settings.profile_dirs,
                    registry,
                )
            except ProfileError as exc:
                log.warning("cases.policy_unloadable", reason=str(exc))
                policy = None
            if policy is not None:
                for profile in policy.profiles:
                    for clause in profile.clauses:
                        self._clauses[(profile.id, clause.id)] = clause
            self._loaded = True

    def clause(self, profile_id: str, clause_id: str) -> Clause | None:
        self._load()
        return self._clauses.get((profile_id, clause_id))

    def rule_title(self, rule_id: str) -> str:
        self._load()
        return self._titles.get(rule_id, rule_id)


# --- what the page shows --------------------------------------------------------------------


@dataclass
class Span:
    start: datetime
    end: datetime | None  # None: still there when the data was read
    left: float = 0.0  # percent of the timeline, for the bar chart
    width: float = 0.0


@dataclass
class PersonTimeline:
    id: str
    name: str
    kind: str
    kind_label: str
    roles: list[str]
    spans: list[Span]
    minutes: int
    source: str
    is_organizer: bool = False


@dataclass
class ChatLine:
    at: datetime
    who: str
    kind_label: str
    what: str
    text: str | None  # only when the school keeps chat text


@dataclass
class RecordingLine:
    kind: str
    started: datetime | None
    by: str
    source: str


@dataclass
class PupilStatus:
    id: str
    name: str
    consent: str  # one line: "valid", "withdrawn on ...", "none recorded"
    consent_ok: bool
    registration: str
    registration_ok: bool


@dataclass
class FindingView:
    key: str
    rule_id: str
    rule_title: str
    clause_id: str
    clause_version: int
    clause_text: str | None
    clause_level: str | None
    clause_current_version: int | None
    status: str
    severity: str
    phase: str
    observed: str
    message: str
    next_step: str
    evidence: list[tuple[str, str]]
    sources: list[str]
    exemption: dict[str, Any] | None
    first_seen_at: datetime
    last_changed_at: datetime
    about: str

    @property
    def is_open(self) -> bool:
        """A problem to review: fail, warn or error, and not exempted."""
        return self.active and self.exemption is None

    @property
    def active(self) -> bool:
        """Fail, warn or error, exempted or not (what the page shows in full)."""
        return self.status in _OPEN

    @property
    def clause_ref(self) -> str:
        return f"{self.clause_id} v{self.clause_version}"


@dataclass
class Evidence:
    session: SessionRow
    snapshot: SessionSnapshot | None
    organizer_name: str
    people: list[PersonTimeline]
    axis_start: datetime | None
    axis_end: datetime | None
    chat: list[ChatLine] | None  # None: could not be read
    recordings: list[RecordingLine] | None
    pupils: list[PupilStatus]
    findings: list[FindingView]
    case: CaseRow | None
    notes: list[CaseNoteRow]
    missing: dict[str, str] = field(default_factory=dict)

    @property
    def open_findings(self) -> list[FindingView]:
        return [finding for finding in self.findings if finding.is_open]

    def counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for finding in self.open_findings:
            counts[finding.severity] = counts.get(finding.severity, 0) + 1
        return counts


def load_snapshot(db: Session, session: SessionRow) -> SessionSnapshot | None:
    if session.latest_snapshot_id is None:
        return None
    data = db.scalar(select(SnapshotRow.data).where(SnapshotRow.id == session.latest_snapshot_id))
    return SessionSnapshot.model_validate(data) if data is not None else None


def build_evidence(
    db: Session, session: SessionRow, *, clauses: ClauseBook, names: Mapping[str, str]
) -> Evidence:
    """Everything the evidence page, the hand-off and the API show about ``session``.

    ``names`` are display names from the roster, for people the snapshot does not name.
    """
    snapshot = load_snapshot(db, session)

    def name_of(person_id: str | None) -> str:
        if not person_id:
            return "Unknown"
        person = snapshot.people.get(person_id) if snapshot is not None else None
        if person is not None and person.display_name:
            return person.display_name
        return names.get(person_id, "Unknown person")

    people, axis_start, axis_end = _timeline(snapshot, name_of, session)
    findings = [
        _finding_view(row, clauses=clauses, snapshot=snapshot, name_of=name_of)
        for row in findings_of_session(db, session.id)
    ]
    case_row = case_for_session(db, session.id)
    return Evidence(
        session=session,
        snapshot=snapshot,
        organizer_name=name_of(session.organizer_id),
        people=people,
        axis_start=axis_start,
        axis_end=axis_end,
        chat=_chat(snapshot, name_of),
        recordings=_recordings(snapshot, name_of),
        pupils=_pupils(db, snapshot, session),
        findings=findings,
        case=case_row,
        notes=list_notes(db, case_row.id) if case_row is not None else [],
        missing=dict(snapshot.missing) if snapshot is not None else {},
    )


def _timeline(
    snapshot: SessionSnapshot | None, name_of: NameOf, session: SessionRow
) -> tuple[list[PersonTimeline], datetime | None, datetime | None]:
    if snapshot is None or snapshot.presence is None:
        return [], None, None
    by_person: dict[str, PersonTimeline] = {}
    for presence in snapshot.presence:
        person = snapshot.person(presence.person_id)
        entry = by_person.get(presence.person_id)
        if entry is None:
            entry = PersonTimeline(
                id=presence.person_id,
                name=name_of(presence.person_id),
                kind=person.kind.value,
                kind_label=KIND_LABELS.get(person.kind, person.kind.value),
                roles=sorted(role.value for role in person.roles),
                spans=[],
                minutes=0,
                source=SOURCE_LABELS.get(presence.source, presence.source),
                is_organizer=presence.person_id == snapshot.organizer_id,
            )
            by_person[presence.person_id] = entry
        entry.spans.extend(Span(start=i.start, end=i.end) for i in presence.intervals)
    people = list(by_person.values())
    moments = [span.start for entry in people for span in entry.spans]
    moments += [span.end for entry in people for span in entry.spans if span.end is not None]
    if snapshot.scheduled_start:
        moments.append(snapshot.scheduled_start)
    if snapshot.scheduled_end:
        moments.append(snapshot.scheduled_end)
    if not moments:
        return people, None, None
    axis_start, axis_end = min(moments), max(moments)
    total = max((axis_end - axis_start).total_seconds(), 1.0)
    for entry in people:
        entry.spans.sort(key=lambda span: span.start)
        seconds = 0.0
        for span in entry.spans:
            end = span.end or snapshot.collected_at
            seconds += max((end - span.start).total_seconds(), 0.0)
            span.left = round((span.start - axis_start).total_seconds() / total * 100, 2)
            span.width = max(
                round((min(end, axis_end) - span.start).total_seconds() / total * 100, 2), 0.5
            )
        entry.minutes = round(seconds / 60)
    people.sort(
        key=lambda entry: (
            not entry.is_organizer,
            entry.spans[0].start if entry.spans else axis_start,
            entry.name,
        )
    )
    return people, axis_start, axis_end


def _chat(snapshot: SessionSnapshot | None, name_of: NameOf) -> list[ChatLine] | None:
    if snapshot is None or snapshot.chat is None:
        return None
    lines: list[ChatLine] = []
    for message in sorted(snapshot.chat, key=lambda item: (item.created, item.message_id)):
        if message.sender_kind == "person":
            person = snapshot.person(message.sender_id or "")
            who = name_of(message.sender_id)
            kind_label = KIND_LABELS.get(person.kind, person.kind.value)
            what = "message"
        elif message.sender_kind == "application":
            who, kind_label, what = "An app", "App", "message"
        else:
            who, kind_label = "Teams", "System"
            what = _event_label(message.event_type)
        lines.append(
            ChatLine(
                at=message.created, who=who, kind_label=kind_label, what=what, text=message.text
            )
        )
    return lines


def _event_label(event_type: str | None) -> str:
    if not event_type:
        return "system event"
    label = event_type.removesuffix("EventMessageDetail")
    words = "".join(f" {char.lower()}" if char.isupper() else char for char in label).strip()
    return words or "system event"


def _recordings(snapshot: SessionSnapshot | None, name_of: NameOf) -> list[RecordingLine] | None:
    if snapshot is None or snapshot.recordings is None:
        return None
    return [
        RecordingLine(
            kind=item.kind,
            started=item.started,
            by=name_of(item.initiator_id) if item.initiator_id else "not known",
            source=SOURCE_LABELS.get(item.source, item.source),
        )
        for item in sorted(
            snapshot.recordings, key=lambda r: (r.started or snapshot.collected_at, r.id)
        )
    ]


def _pupils(
    db: Session, snapshot: SessionSnapshot | None, session: SessionRow
) -> list[PupilStatus]:
    if snapshot is None:
        return []
    pupils = sorted(
        (person for person in snapshot.people.values() if person.kind is PersonKind.PUPIL),
        key=lambda person: (person.display_name, person.id),
    )
    if not pupils:
        return []
    ids = [pupil.id for pupil in pupils]
    consents: dict[str, list[Consent]] = {}
    for row in db.scalars(select(ConsentRow).where(ConsentRow.pupil_id.in_(ids))):
        consents.setdefault(row.pupil_id, []).append(
            Consent(
                id=row.id,
                pupil_id=row.pupil_id,
                scope=row.scope,
                granted_by=row.granted_by,
                relationship=row.relationship,
                granted_at=row.granted_at,
                method=row.method,
                expires_at=row.expires_at,
                withdrawn_at=row.withdrawn_at,
            )
        )
    registrations: dict[str, list[Registration]] = {}
    for reg in db.scalars(select(RegistrationRow).where(RegistrationRow.pupil_id.in_(ids))):
        registrations.setdefault(reg.pupil_id, []).append(
            Registration(
                id=reg.id,
                staff_id=reg.staff_id,
                pupil_id=reg.pupil_id,
                activity=reg.activity,
                join_url=reg.join_url,
                starts_at=reg.starts_at,
                ends_at=reg.ends_at,
                status=ApprovalStatus(reg.status),
                approved_by=reg.approved_by,
                approved_at=reg.approved_at,
            )
        )
    start = snapshot.actual_start or snapshot.scheduled_start or session.scheduled_start
    result: list[PupilStatus] = []
    for pupil in pupils:
        consent_text, consent_ok = _consent_status(consents.get(pupil.id, []), start)
        reg_text, reg_ok = _registration_status(
            registrations.get(pupil.id, []), snapshot, pupil.id, start
        )
        result.append(
            PupilStatus(
                id=pupil.id,
                name=pupil.display_name or "Unnamed pupil",
                consent=consent_text,
                consent_ok=consent_ok,
                registration=reg_text,
                registration_ok=reg_ok,
            )
        )
    return result


def _consent_status(consents: Sequence[Consent], start: datetime | None) -> tuple[str, bool]:
    one_to_one = [consent for consent in consents if consent.scope == "one_to_one"]
    if not one_to_one:
        return "None recorded", False
    if start is not None:
        valid = [consent for consent in one_to_one if consent.valid_for(start=start)]
        if valid:
            latest = max(valid, key=lambda consent: consent.granted_at)
            return (
                f"Valid: given by {latest.relationship} ({latest.method.replace('_', ' ')})",
                True,
            )
    latest = max(one_to_one, key=lambda consent: consent.granted_at)
    if latest.withdrawn_at is not None and (start is None or latest.withdrawn_at <= start):
        return "Withdrawn before the session", False
    if latest.expires_at is not None and start is not None and latest.expires_at <= start:
        return "Expired before the session", False
    if start is not None and latest.granted_at > start:
        return "Given only after the session", False
    return "Not valid for this session", False


def _registration_status(
    registrations: Sequence[Registration],
    snapshot: SessionSnapshot,
    pupil_id: str,
    start: datetime | None,
) -> tuple[str, bool]:
    covering = [
        reg
        for reg in registrations
        if snapshot.organizer_id
        and reg.covers(
            staff_id=snapshot.organizer_id,
            pupil_id=pupil_id,
            join_url=snapshot.join_url,
            start=start,
        )
    ]
    if not covering:
        return "No one-to-one registered for this session", False
    best = next((reg for reg in covering if reg.status is ApprovalStatus.APPROVED), covering[0])
    label = {
        ApprovalStatus.APPROVED: "Registered and approved",
        ApprovalStatus.PENDING: "Registered, waiting for SLT approval",
        ApprovalStatus.DECLINED: "Registered, declined by SLT",
    }[best.status]
    return f"{label} ({best.activity})", best.status is ApprovalStatus.APPROVED


def _finding_view(
    row: FindingRow, *, clauses: ClauseBook, snapshot: SessionSnapshot | None, name_of: NameOf
) -> FindingView:
    clause = clauses.clause(row.profile_id, row.clause_id)
    about = ""
    if row.subject_key:
        person = snapshot.people.get(row.subject_key) if snapshot is not None else None
        if person is not None:
            about = f"{name_of(row.subject_key)} ({KIND_LABELS.get(person.kind, person.kind.value).lower()})"
        else:
            about = row.subject_key
    return FindingView(
        key=row.key,
        rule_id=row.rule_id,
        rule_title=clauses.rule_title(row.rule_id),
        clause_id=row.clause_id,
        clause_version=row.clause_version,
        # The profile holds the clause's current text; when its version is newer than the one
        # the finding was made under, the page says so beside the text.
        clause_text=clause.text.strip() if clause is not None else None,
        clause_level=clause.level if clause is not None else None,
        clause_current_version=clause.version if clause is not None else None,
        status=row.status,
        severity=row.severity,
        phase=row.phase,
        observed=row.observed,
        message=row.message,
        next_step=row.next_step,
        evidence=[(str(key), _evidence_text(value)) for key, value in sorted(row.evidence.items())],
        sources=list(row.sources),
        exemption=row.exemption,
        first_seen_at=row.first_seen_at,
        last_changed_at=row.last_changed_at,
        about=about,
    )


def _evidence_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, sort_keys=True, default=str)
