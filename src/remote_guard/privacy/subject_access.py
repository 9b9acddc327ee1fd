"""Subject access: everything remote_guard holds about one pupil or member of staff.

``build`` gathers, for one person id: the sessions they were in (their own part of each stored
snapshot: identity, presence, chat messages, recordings they started, and who else was there by
kind only), what the live notifications recorded of them (their stays in a live call, that they
posted in a live chat, live alerts to SLT naming them), the findings naming them with their
history, the consents and registrations about them or recorded by them, the exemptions naming
them, and the audit entries that mention them.

Nothing about anyone else: other people's ids, names and e-mail addresses are replaced by a
placeholder ("[other person 3]", the same number for the same person throughout one export), and
names typed into free-text fields (who granted a consent or an exemption) are withheld. The
school should still read the export before sending it, as the ICO expects: a meeting's subject
or an exemption's reason may mention someone in words remote_guard cannot recognise.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, select_autoescape
from sqlalchemy import Text, cast, or_, select
from sqlalchemy.orm import Session

from remote_guard.audit.chain import canonical, utc_text
from remote_guard.audit.models import AuditEntryRow
from remote_guard.collect.models import SessionRow, SnapshotRow
from remote_guard.consent.models import ConsentRow, RegistrationRow
from remote_guard.exemptions.models import ExemptionRow
from remote_guard.findings.models import FindingEventRow, FindingRow

WITHHELD = "[withheld: another person]"
# Keys under which remote_guard stores one person's id (registers, evidence, audit content).
_PERSON_KEYS = frozenset(
    {
        "pupil_id",
        "staff_id",
        "person_id",
        "organizer_id",
        "initiator_id",
        "sender_id",
        "recorded_by",
        "approved_by",
        "subject",
    }
)
# Keys under which staff type a person's name.
_NAME_KEYS = frozenset({"granted_by", "revoked_by"})
_MIN_NAME = 3  # shorter display names are not searched for in text (too many false matches)


class SubjectAccessError(Exception):
    """The person id cannot be searched for (empty or too short to be an id)."""


class _Scrubber:
    """Replaces other people's ids, names and e-mail addresses with numbered placeholders."""

    def __init__(self, person_id: str) -> None:
        self.person_id = person_id
        self.own_names: set[str] = set()
        self._placeholders: dict[str, str] = {}
        self._texts: dict[str, str] = {}  # a name or e-mail address -> its placeholder
        self._pattern: re.Pattern[str] | None = None

    def other(self, person_id: str) -> str:
        if person_id not in self._placeholders:
            self._placeholders[person_id] = f"[other person {len(self._placeholders) + 1}]"
        return self._placeholders[person_id]

    def who(self, person_id: str | None) -> str | None:
        """``person_id`` if it is the subject's (or none), else a placeholder."""
        if person_id is None or person_id in {self.person_id, "system"}:
            return person_id
        return self.other(person_id)

    def learn(self, people: Mapping[str, Mapping[str, Any]]) -> None:
        """Note the names and addresses of the people of a snapshot, to find them in text."""
        for person_id, person in people.items():
            names = [person.get("display_name"), person.get("email")]
            if person_id == self.person_id:
                self.own_names.update(n for n in names if isinstance(n, str) and n)
                continue
            placeholder = self.other(person_id)
            for name in names:
                if isinstance(name, str) and len(name) >= _MIN_NAME:
                    self._texts.setdefault(name, placeholder)
            self._texts.setdefault(person_id, placeholder)
        self._pattern = None

    def free_text_name(self, name: str | None) -> str | None:
        """A name typed by staff (who granted a consent, an exemption): withheld unless it is
        the subject's own."""
        if name is None or name in self.own_names or name == self.person_id:
            return name
        return WITHHELD

    def text(self, value: str) -> str:
        if value == self.person_id:
            return value
        if value in self._placeholders:
            return self._placeholders[value]
        targets = {t: p for t, p in self._texts.items() if t not in self.own_names}
        if not targets:
            return value
        if self._pattern is None:
            ordered = sorted(targets, key=len, reverse=True)
            self._pattern = re.compile("|".join(re.escape(t) for t in ordered))
        return self._pattern.sub(lambda m: targets.get(m.group(0), WITHHELD), value)

    def value(self, value: Any) -> Any:
        """``value`` (JSON) with other people replaced, at any depth: known names and ids in
        text, any value under a key that holds a person's id, and names typed by staff."""
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, Mapping):
            cleaned: dict[str, Any] = {}
            for key, item in value.items():
                name = self.text(str(key))
                if key in _PERSON_KEYS and isinstance(item, str):
                    cleaned[name] = self.who(item)
                elif key in _NAME_KEYS and isinstance(item, str):
                    cleaned[name] = self.free_text_name(item)
                else:
                    cleaned[name] = self.value(item)
            return cleaned
        if isinstance(value, list | tuple):
            return [self.value(item) for item in value]
        return value


def _mentions(value: Any, person_id: str) -> bool:
    if isinstance(value, str):
        return person_id in value
    if isinstance(value, Mapping):
        return any(_mentions(k, person_id) or _mentions(v, person_id) for k, v in value.items())
    if isinstance(value, list | tuple):
        return any(_mentions(item, person_id) for item in value)
    return False


def _strings_with(value: Any, person_id: str) -> list[str]:
    if isinstance(value, str):
        return [value] if person_id in value else []
    if isinstance(value, Mapping):
        return [t for item in value.values() for t in _strings_with(item, person_id)]
    if isinstance(value, list | tuple):
        return [t for item in value for t in _strings_with(item, person_id)]
    return []


def _time(value: datetime | None) -> str | None:
    return utc_text(value) if value is not None else None


def _in_snapshot(data: Mapping[str, Any], person_id: str) -> bool:
    if person_id in (data.get("people") or {}) or data.get("organizer_id") == person_id:
        return True
    lists = [
        data.get("invitee_ids"),
        data.get("member_ids"),
        (data.get("channel") or {}).get("member_ids"),
    ]
    if any(person_id in (ids or []) for ids in lists):
        return True
    items = [
        *(data.get("presence") or []),
        *(data.get("chat") or []),
        *(data.get("recordings") or []),
    ]
    return any(
        person_id in {item.get("person_id"), item.get("sender_id"), item.get("initiator_id")}
        for item in items
    )


def _your_part(data: Mapping[str, Any], scrub: _Scrubber) -> dict[str, Any]:
    me = scrub.person_id
    people: Mapping[str, Mapping[str, Any]] = data.get("people") or {}
    identity = dict(people.get(me) or {})
    identity.pop("id", None)
    channel = data.get("channel") or {}
    return {
        "identity": identity or None,
        "organiser": data.get("organizer_id") == me,
        "invited": me in (data.get("invitee_ids") or []),
        "chat_member": me in (data.get("member_ids") or []),
        "channel_team_member": me in (channel.get("member_ids") or []),
        "presence": [
            {"source": p.get("source"), "intervals": p.get("intervals")}
            for p in data.get("presence") or []
            if p.get("person_id") == me
        ],
        "chat_messages": [
            {k: c.get(k) for k in ("message_id", "created", "text") if c.get(k) is not None}
            for c in data.get("chat") or []
            if c.get("sender_id") == me
        ],
        "recordings_started": [
            {k: r.get(k) for k in ("id", "kind", "started", "source")}
            for r in data.get("recordings") or []
            if r.get("initiator_id") == me
        ],
        "participants": [
            {
                "who": "you" if pid == me else scrub.other(pid),
                "kind": person.get("kind"),
                "organiser": data.get("organizer_id") == pid,
            }
            for pid, person in sorted(people.items())
        ],
    }


def _sessions(session: Session, scrub: _Scrubber) -> tuple[list[dict[str, Any]], set[str]]:
    me = scrub.person_id
    rows = session.execute(
        select(SnapshotRow.session_id, SnapshotRow.collected_at, SnapshotRow.data)
        .where(
            or_(
                cast(SnapshotRow.data, Text).contains(me, autoescape=True),
                SnapshotRow.session_id.in_(
                    select(SessionRow.id).where(SessionRow.organizer_id == me)
                ),
            )
        )
        .order_by(SnapshotRow.session_id, SnapshotRow.collected_at, SnapshotRow.id)
    ).all()
    by_session: dict[str, list[tuple[datetime, dict[str, Any]]]] = {}
    for session_id, collected_at, data in rows:
        if _in_snapshot(data, me):
            scrub.learn(data.get("people") or {})
            by_session.setdefault(session_id, []).append((collected_at, data))
    sessions: list[dict[str, Any]] = []
    for session_id, versions in by_session.items():
        latest = versions[-1][1]
        seen: set[str] = set()
        parts: list[dict[str, Any]] = []
        for collected_at, data in versions:
            part = scrub.value(_your_part(data, scrub))
            marker = canonical(part)
            if marker in seen:
                continue
            seen.add(marker)
            parts.append({"collected_at": _time(collected_at), **part})
        channel = latest.get("channel") or {}
        sessions.append(
            {
                "session_id": session_id,
                "kind": latest.get("kind"),
                "subject": scrub.value(latest.get("subject")),
                "team": channel.get("team_name"),
                "channel": channel.get("channel_name"),
                "scheduled_start": latest.get("scheduled_start"),
                "scheduled_end": latest.get("scheduled_end"),
                "actual_start": latest.get("actual_start"),
                "actual_end": latest.get("actual_end"),
                "snapshots": parts,
            }
        )
    sessions.sort(key=lambda s: (s["scheduled_start"] or s["actual_start"] or "", s["session_id"]))
    return sessions, set(by_session)


def _cases(session: Session, scrub: _Scrubber, session_ids: set[str]) -> list[dict[str, Any]]:
    """The DSL's review of each session the person was in: status, resolution and notes (other
    people in a note's text replaced like everywhere else; the author shown by role)."""
    from remote_guard.cases.models import CaseNoteRow, CaseRow

    cases: list[dict[str, Any]] = []
    for row in session.scalars(
        select(CaseRow).where(CaseRow.session_id.in_(sorted(session_ids))).order_by(CaseRow.id)
    ):
        notes = session.scalars(
            select(CaseNoteRow).where(CaseNoteRow.case_id == row.id).order_by(CaseNoteRow.id)
        )
        cases.append(
            {
                "case": str(row.id),
                "session_id": row.session_id,
                "status": row.status,
                "resolution": row.resolution,
                "opened_at": _time(row.opened_at),
                "closed_at": _time(row.closed_at),
                "notes": [
                    {
                        "at": _time(note.created_at),
                        "kind": note.kind,
                        "author": note.author_role,
                        "text": scrub.text(note.text),
                    }
                    for note in notes
                ],
            }
        )
    return cases


def _findings(
    session: Session, scrub: _Scrubber, session_ids: set[str]
) -> tuple[list[dict[str, Any]], set[str]]:
    me = scrub.person_id
    candidates = list(
        session.scalars(
            select(FindingRow)
            .where(
                or_(
                    FindingRow.subject_key == me,
                    FindingRow.session_id.in_(sorted(session_ids)),
                    cast(FindingRow.evidence, Text).contains(me, autoescape=True),
                )
            )
            .order_by(FindingRow.first_seen_at, FindingRow.key)
        )
    )
    names = [n for n in scrub.own_names if len(n) >= _MIN_NAME]
    found: list[dict[str, Any]] = []
    for row in candidates:
        texts = f"{row.observed}\n{row.message}"
        if not (
            row.subject_key == me
            or _mentions(row.evidence, me)
            or any(name in texts for name in names)
        ):
            continue
        events = session.scalars(
            select(FindingEventRow)
            .where(FindingEventRow.finding_key == row.key)
            .order_by(FindingEventRow.at, FindingEventRow.id)
        )
        exemption = dict(row.exemption) if row.exemption else None
        found.append(
            scrub.value(
                {
                    "finding": row.key,
                    "session_id": row.session_id,
                    "rule": row.rule_id,
                    "clause": f"{row.clause_id} v{row.clause_version}",
                    "profile": row.profile_id,
                    "about": "you" if row.subject_key == me else (row.subject_key or "the session"),
                    "status": row.status,
                    "severity": row.severity,
                    "observed": row.observed,
                    "message": row.message,
                    "next_step": row.next_step,
                    "evidence": row.evidence,
                    "exemption": exemption,
                    "first_seen_at": _time(row.first_seen_at),
                    "last_changed_at": _time(row.last_changed_at),
                    "history": [
                        {
                            "at": _time(e.at),
                            "from": e.from_status,
                            "to": e.to_status,
                            "reason": e.reason,
                        }
                        for e in events
                    ],
                }
            )
        )
    return found, {item["finding"] for item in found}


def _withdrawals(session: Session, scrub: _Scrubber, consent_id: str) -> list[dict[str, Any]]:
    """How a withdrawal of the consent was recorded; who told the school is theirs, withheld."""
    from remote_guard.one_to_ones.models import ConsentWithdrawalRow

    return [
        {
            "withdrawn_at": _time(w.withdrawn_at),
            "told_by": scrub.free_text_name(w.told_by),
            "note": scrub.text(w.note) if w.note else None,
            "recorded_by": scrub.who(w.recorded_by),
            "recorded_at": _time(w.recorded_at),
        }
        for w in session.scalars(
            select(ConsentWithdrawalRow)
            .where(ConsentWithdrawalRow.consent_id == consent_id)
            .order_by(ConsentWithdrawalRow.recorded_at, ConsentWithdrawalRow.id)
        )
    ]


def _registers(session: Session, scrub: _Scrubber) -> dict[str, list[dict[str, Any]]]:
    me = scrub.person_id
    consents = session.scalars(
        select(ConsentRow)
        .where(or_(ConsentRow.pupil_id == me, ConsentRow.recorded_by == me))
        .order_by(ConsentRow.granted_at, ConsentRow.id)
    )
    registrations = session.scalars(
        select(RegistrationRow)
        .where(
            or_(
                RegistrationRow.pupil_id == me,
                RegistrationRow.staff_id == me,
                RegistrationRow.approved_by == me,
                RegistrationRow.recorded_by == me,
            )
        )
        .order_by(RegistrationRow.recorded_at, RegistrationRow.id)
    )
    exemptions = session.scalars(
        select(ExemptionRow)
        .where(or_(ExemptionRow.pupil_id == me, ExemptionRow.staff_id == me))
        .order_by(ExemptionRow.granted_at, ExemptionRow.id)
    )
    return {
        "consents": [
            {
                "consent": c.id,
                "pupil": scrub.who(c.pupil_id),
                "scope": c.scope,
                # The parent's or carer's name and address are theirs, not the pupil's.
                "granted_by": scrub.free_text_name(c.granted_by),
                "relationship": c.relationship,
                "contact_email": WITHHELD if c.contact_email else None,
                "granted_at": _time(c.granted_at),
                "method": c.method,
                "evidence_ref": scrub.value(c.evidence_ref),
                "expires_at": _time(c.expires_at),
                "withdrawn_at": _time(c.withdrawn_at),
                "withdrawals": _withdrawals(session, scrub, c.id),
                "recorded_by": scrub.who(c.recorded_by),
                "recorded_at": _time(c.recorded_at),
            }
            for c in consents
        ],
        "registrations": [
            {
                "registration": r.id,
                "staff": scrub.who(r.staff_id),
                "pupil": scrub.who(r.pupil_id),
                "activity": r.activity,
                "starts_at": _time(r.starts_at),
                "ends_at": _time(r.ends_at),
                "status": r.status,
                "approved_by": scrub.who(r.approved_by),
                "approved_at": _time(r.approved_at),
                "consent": r.consent_id,
                "recorded_by": scrub.who(r.recorded_by),
                "recorded_at": _time(r.recorded_at),
            }
            for r in registrations
        ],
        "exemptions": [
            {
                "exemption": x.id,
                "rule": x.rule_id,
                "scope": x.scope,
                "pupil": scrub.who(x.pupil_id),
                "staff": scrub.who(x.staff_id),
                "session_id": x.session_id,
                "reason": scrub.value(x.reason),
                "granted_by": scrub.free_text_name(x.granted_by),
                "granted_at": _time(x.granted_at),
                "expires_at": _time(x.expires_at),
                "revoked_at": _time(x.revoked_at),
                "revoked_by": scrub.free_text_name(x.revoked_by),
            }
            for x in exemptions
        ],
    }


def _live(session: Session, scrub: _Scrubber) -> dict[str, list[dict[str, Any]]]:
    """What the live notifications recorded of the person: their stays in live calls, their live
    chat posts (who and when; the text is never stored) and the live alerts that name them."""
    from remote_guard.subscriptions.models import (
        LiveAlertRow,
        LiveChatMessageRow,
        LiveParticipantRow,
    )

    me = scrub.person_id
    stays = session.scalars(
        select(LiveParticipantRow)
        .where(LiveParticipantRow.person_id == me)
        .order_by(LiveParticipantRow.joined_at, LiveParticipantRow.id)
    )
    posts = session.scalars(
        select(LiveChatMessageRow)
        .where(LiveChatMessageRow.sender_id == me)
        .order_by(LiveChatMessageRow.created_at, LiveChatMessageRow.message_id)
    )
    alerts = session.scalars(
        select(LiveAlertRow)
        .where(or_(LiveAlertRow.staff_id == me, LiveAlertRow.pupil_id == me))
        .order_by(LiveAlertRow.raised_at, LiveAlertRow.id)
    )
    return {
        "live_presence": [
            {
                "session_id": stay.session_id,
                "display_name": stay.display_name,
                "joined_at": _time(stay.joined_at),
                "left_at": _time(stay.left_at),
            }
            for stay in stays
        ],
        "live_chat_posts": [
            {
                "session_id": post.session_id,
                "message_id": post.message_id,
                "posted_at": _time(post.created_at),
                "received_at": _time(post.received_at),
            }
            for post in posts
        ],
        "live_alerts": [
            scrub.value(
                {
                    "alert": alert.id,
                    "session_id": alert.session_id,
                    "staff_id": alert.staff_id,
                    "pupil_id": alert.pupil_id,
                    "reason": alert.reason,
                    "status": alert.status,
                    "raised_at": _time(alert.raised_at),
                    "cleared_at": _time(alert.cleared_at),
                    "cleared_reason": alert.cleared_reason,
                }
            )
            for alert in alerts
        ],
    }


def _audit_entries(session: Session, scrub: _Scrubber, objects: set[str]) -> list[dict[str, Any]]:
    me = scrub.person_id
    conditions = [
        AuditEntryRow.actor_id == me,
        AuditEntryRow.object_id == me,
        AuditEntryRow.payload.contains(me, autoescape=True),
    ]
    rows = list(
        session.scalars(select(AuditEntryRow).where(or_(*conditions)).order_by(AuditEntryRow.seq))
    )
    # Entries about the person's records, including those whose content was purged.
    listed = sorted(objects)
    for start in range(0, len(listed), 500):
        rows.extend(
            session.scalars(
                select(AuditEntryRow)
                .where(AuditEntryRow.object_id.in_(listed[start : start + 500]))
                .order_by(AuditEntryRow.seq)
            )
        )
    entries: dict[int, dict[str, Any]] = {}
    for row in rows:
        if row.seq in entries:
            continue
        payload = json.loads(row.payload) if row.payload is not None else None
        own = me in (row.actor_id, row.object_id) or row.object_id in objects
        if not own and not _mentions(payload, me):
            continue
        content: Any
        if payload is None:
            content = "removed by retention"
        elif own:
            content = scrub.value(payload)
        else:
            # An entry about something else (a poll run) that mentions the person in passing:
            # only the words that mention them.
            content = {"mentions": [scrub.text(text) for text in _strings_with(payload, me)]}
        entries[row.seq] = {
            "seq": row.seq,
            "at": _time(row.at),
            "actor": scrub.who(row.actor_id),
            "actor_role": row.actor_role,
            "action": row.action,
            "object_type": row.object_type,
            "object_id": scrub.text(row.object_id),
            "content": content,
        }
    return [entries[seq] for seq in sorted(entries)]


@dataclass(frozen=True)
class SubjectAccessExport:
    json_path: Path
    html_path: Path
    counts: dict[str, int]


def build(session: Session, person_id: str, *, now: datetime) -> dict[str, Any]:
    """Everything held about ``person_id``, other people replaced by placeholders.

    Raises:
        SubjectAccessError: ``person_id`` is empty or shorter than 8 characters.
    """
    person_id = person_id.strip()
    if len(person_id) < 8:
        raise SubjectAccessError(
            f"{person_id!r} is not a person id: give the pupil's or staff member's Entra object "
            "id (a GUID such as 3f2504e0-4f89-11d3-9a0c-0305e82c3301)"
        )
    scrub = _Scrubber(person_id)
    sessions, session_ids = _sessions(session, scrub)
    findings, finding_keys = _findings(session, scrub, session_ids)
    registers = _registers(session, scrub)
    cases = _cases(session, scrub, session_ids)
    live = _live(session, scrub)
    objects = {*session_ids, *finding_keys, *(c["case"] for c in cases)}
    objects.update(a["alert"] for a in live["live_alerts"])
    objects.update(c["consent"] for c in registers["consents"])
    objects.update(r["registration"] for r in registers["registrations"])
    objects.update(x["exemption"] for x in registers["exemptions"])
    entries = _audit_entries(session, scrub, objects)
    return {
        "person_id": person_id,
        "names_held": sorted(scrub.own_names),
        "generated_at": utc_text(now),
        "sessions": sessions,
        "findings": findings,
        "cases": cases,
        **live,
        **registers,
        "audit_entries": entries,
        "about_others": (
            "Other people are shown as [other person N] (the same number is the same person "
            f"throughout this export); names typed by staff about others read {WITHHELD}."
        ),
    }


def counts(data: Mapping[str, Any]) -> dict[str, int]:
    kinds = (
        "sessions",
        "findings",
        "cases",
        "live_presence",
        "live_chat_posts",
        "live_alerts",
        "consents",
        "registrations",
        "exemptions",
        "audit_entries",
    )
    return {kind: len(data[kind]) for kind in kinds}


def render_html(data: Mapping[str, Any]) -> str:
    environment = Environment(
        loader=FileSystemLoader(Path(__file__).parent / "templates"),
        autoescape=select_autoescape(["html"]),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    return environment.get_template("subject_access.html").render(data=data)


def write_export(
    session: Session, person_id: str, output_dir: Path, *, now: datetime
) -> SubjectAccessExport:
    """Write ``subject-access-<id>.json`` and ``.html`` into ``output_dir``.

    Raises:
        SubjectAccessError: as :func:`build`.
        OSError: the folder cannot be written.
    """
    data = build(session, person_id, now=now)
    output_dir.mkdir(parents=True, exist_ok=True)
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", data["person_id"])
    json_path = output_dir / f"subject-access-{safe}.json"
    html_path = output_dir / f"subject-access-{safe}.html"
    json_path.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    html_path.write_text(render_html(data), encoding="utf-8")
    return SubjectAccessExport(json_path=json_path, html_path=html_path, counts=counts(data))
