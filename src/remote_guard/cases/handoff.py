"""The hand-off summary for the school's safeguarding record system (CPOMS, MyConcern).

One CSV a DSL can open in a spreadsheet or attach to the child's record: a ``case`` row with
the session's facts and the case's status, one ``finding`` row per open or exempted finding
with the clause's text, and one ``note`` row per note. Every row repeats the session's facts, so the rows still
make sense when filtered or sorted.

Cells are made safe for spreadsheets: a value starting with ``=``, ``+``, ``-``, ``@``, a tab
or a carriage return (after any leading spaces) is prefixed with ``'`` so it is shown as text
and never run as a formula (subjects, names and notes come from Teams and from users).
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from zoneinfo import ZoneInfo

from remote_guard.cases.evidence import Evidence
from remote_guard.cases.models import CaseStatus, NoteKind, Resolution
from remote_guard.cases.service import NOTE_KIND_LABELS, RESOLUTION_LABELS, STATUS_LABELS

COLUMNS = (
    "record",
    "session_id",
    "session_subject",
    "session_start",
    "organiser",
    "school",
    "case_status",
    "resolution",
    "assigned_to",
    "rule",
    "clause",
    "clause_version",
    "clause_text",
    "severity",
    "finding_status",
    "observed",
    "message",
    "next_step",
    "first_seen",
    "note_by",
    "note_kind",
    "note_time",
    "note_text",
)

_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def safe_cell(value: object) -> str:
    """``value`` as text a spreadsheet shows as text (never as a formula)."""
    text = "" if value is None else str(value)
    if text.lstrip(" ").startswith(_FORMULA_START) or text.startswith(_FORMULA_START):
        return "'" + text
    return text


def case_status_label(evidence: Evidence) -> str:
    case_row = evidence.case
    if case_row is None:
        return "New (not opened yet)"
    return STATUS_LABELS.get(CaseStatus(case_row.status), case_row.status)


def resolution_label(evidence: Evidence) -> str:
    case_row = evidence.case
    if case_row is None or case_row.resolution is None:
        return ""
    return RESOLUTION_LABELS.get(Resolution(case_row.resolution), case_row.resolution)


def handoff_rows(
    evidence: Evidence, *, names: Mapping[str, str], timezone: str, school_names: Mapping[str, str]
) -> list[dict[str, str]]:
    """The hand-off's rows (unescaped), in the order of :data:`COLUMNS`."""
    zone = ZoneInfo(timezone)

    def local(moment: datetime | None) -> str:
        return moment.astimezone(zone).strftime("%Y-%m-%d %H:%M") if moment else ""

    session = evidence.session
    case_row = evidence.case
    base = {
        "session_id": session.id,
        "session_subject": session.subject or "",
        "session_start": local(session.scheduled_start),
        "organiser": evidence.organizer_name,
        "school": school_names.get(session.school or "", session.school or ""),
        "case_status": case_status_label(evidence),
        "resolution": resolution_label(evidence),
        "assigned_to": names.get(case_row.assignee_id, case_row.assignee_id)
        if case_row is not None and case_row.assignee_id
        else "",
    }
    rows = [{**dict.fromkeys(COLUMNS, ""), **base, "record": "case"}]
    # The problems only (open or exempted): passed checks are not safeguarding records.
    for finding in (finding for finding in evidence.findings if finding.active):
        status = "exempted" if finding.exemption is not None else finding.status
        rows.append(
            {
                **dict.fromkeys(COLUMNS, ""),
                **base,
                "record": "finding",
                "rule": finding.rule_title,
                "clause": finding.clause_id,
                "clause_version": str(finding.clause_version),
                "clause_text": finding.clause_text or "",
                "severity": finding.severity,
                "finding_status": status,
                "observed": finding.observed,
                "message": finding.message,
                "next_step": finding.next_step,
                "first_seen": local(finding.first_seen_at),
            }
        )
    for note in evidence.notes:
        rows.append(
            {
                **dict.fromkeys(COLUMNS, ""),
                **base,
                "record": "note",
                "note_by": names.get(note.author_id, note.author_id),
                "note_kind": NOTE_KIND_LABELS.get(NoteKind(note.kind), note.kind),
                "note_time": local(note.created_at),
                "note_text": note.text,
            }
        )
    return rows


def to_csv(rows: Iterable[Mapping[str, str]], columns: Sequence[str] = COLUMNS) -> str:
    """The rows as CSV text (a header line first), every cell made spreadsheet-safe."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow([safe_cell(row.get(column, "")) for column in columns])
    return out.getvalue()


def csv_filename(evidence: Evidence, *, timezone: str) -> str:
    """A file name built only from safe parts (a date and the case number), never the subject."""
    start = evidence.session.scheduled_start
    day = start.astimezone(ZoneInfo(timezone)).strftime("%Y-%m-%d") if start else "undated"
    number = f"case-{evidence.case.id}" if evidence.case is not None else "session"
    name = f"remote-guard-handoff-{day}-{number}.csv"
    return re.sub(r"[^A-Za-z0-9._-]", "_", name)
