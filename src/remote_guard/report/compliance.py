"""The compliance report: every clause of the policy, how it is checked, and what was found.

The report walks the profile, not the findings: a clause with no findings still appears (with
zero counts), and a clause no machine can check appears as manual with the reason. Findings are
counted by the local date their session started, in the school's time zone.
"""

from __future__ import annotations

import csv
import io
import json
from collections import Counter
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from jinja2 import Environment, FileSystemLoader, select_autoescape
from sqlalchemy import select
from sqlalchemy.orm import Session

from remote_guard.collect.models import SessionRow
from remote_guard.findings.models import FindingRow
from remote_guard.policy.profile import Policy
from remote_guard.rules.base import Rule, Status

STATUS_COLUMNS = ("fail", "warn", "error", "pass", "not_applicable")
FORMATS = ("html", "json", "csv")
MAX_EXAMPLES = 10  # open findings listed under each clause


@dataclass
class ClauseExample:
    session_subject: str
    session_start: str
    rule_id: str
    status: str
    message: str
    exempted: bool


@dataclass
class ClauseLine:
    profile_id: str
    clause_id: str
    version: int
    level: str
    text: str
    source: str
    check: str  # "automatic", "manual", or "covered" (by the clause in covered_by)
    rules: list[dict[str, Any]] = field(default_factory=list)  # rule id, title, params
    manual_reason: str | None = None
    covered_by: str | None = None
    counts: dict[str, int] = field(default_factory=dict)
    exempted: int = 0
    examples: list[ClauseExample] = field(default_factory=list)

    @property
    def verdict(self) -> str:
        """One word for a governor: how this clause stands over the period."""
        if self.check == "manual":
            return "manual"
        if self.check == "covered":
            return f"see {self.covered_by}"
        if self.counts.get("fail"):
            return "breached"
        if self.counts.get("warn"):
            return "concerns"
        if self.counts.get("error"):
            return "incomplete"
        if self.counts.get("pass"):
            return "met"
        return "no sessions"


@dataclass
class ProfileSection:
    id: str
    name: str
    school: str
    source_document: str
    version: str
    clauses: list[ClauseLine]

    @property
    def enforced(self) -> int:
        return sum(1 for c in self.clauses if c.check == "automatic")

    @property
    def manual(self) -> int:
        return sum(1 for c in self.clauses if c.check == "manual")


@dataclass
class ComplianceReport:
    period_from: date
    period_to: date
    timezone: str
    generated_at: datetime
    profiles: list[ProfileSection]
    sessions: int

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        for profile, section in zip(data["profiles"], self.profiles, strict=True):
            profile["enforced"] = section.enforced
            profile["manual"] = section.manual
            for clause, line in zip(profile["clauses"], section.clauses, strict=True):
                clause["verdict"] = line.verdict
        return data


def build_report(
    session: Session,
    *,
    policy: Policy,
    registry: Mapping[str, Rule],
    period_from: date,
    period_to: date,
    timezone: str,
    now: datetime,
) -> ComplianceReport:
    """Count the findings of sessions that started between the two local dates (inclusive).

    Raises:
        ValueError: ``period_to`` is before ``period_from``.
    """
    if period_to < period_from:
        raise ValueError(f"--to {period_to} is before --from {period_from}")
    zone = ZoneInfo(timezone)
    start = datetime.combine(period_from, time(0), tzinfo=zone)
    end = datetime.combine(period_to + timedelta(days=1), time(0), tzinfo=zone)
    rows = session.execute(
        select(FindingRow, SessionRow.subject, SessionRow.scheduled_start)
        .join(SessionRow, SessionRow.id == FindingRow.session_id)
        .where(SessionRow.scheduled_start >= start, SessionRow.scheduled_start < end)
        .order_by(SessionRow.scheduled_start, FindingRow.key)
    ).all()
    by_clause: dict[tuple[str, str], list[tuple[FindingRow, str | None, datetime | None]]] = {}
    sessions: set[str] = set()
    for row, subject, started in rows:
        sessions.add(row.session_id)
        by_clause.setdefault((row.profile_id, row.clause_id), []).append((row, subject, started))

    sections: list[ProfileSection] = []
    for profile in policy.profiles:
        lines: list[ClauseLine] = []
        for clause in profile.clauses:
            found = by_clause.get((profile.id, clause.id), [])
            counts = Counter(row.status for row, _, _ in found)
            line = ClauseLine(
                profile_id=profile.id,
                clause_id=clause.id,
                version=clause.version,
                level=clause.level,
                text=clause.text,
                source=clause.source,
                check="manual"
                if clause.manual
                else "covered"
                if clause.covered_by
                else "automatic",
                rules=[
                    {
                        "rule": binding.rule,
                        "title": getattr(registry.get(binding.rule), "title", binding.rule),
                        "params": binding.params,
                    }
                    for binding in clause.rules
                ],
                manual_reason=clause.manual,
                covered_by=clause.covered_by,
                counts={status: counts.get(status, 0) for status in STATUS_COLUMNS},
                exempted=sum(1 for row, _, _ in found if row.exemption),
            )
            open_rows = [
                item
                for item in found
                if item[0].status in (Status.FAIL.value, Status.WARN.value, Status.ERROR.value)
            ]
            for row, subject, started in open_rows[-MAX_EXAMPLES:]:
                line.examples.append(
                    ClauseExample(
                        session_subject=subject or row.session_id,
                        session_start=started.astimezone(zone).strftime("%a %d %b %Y %H:%M")
                        if started
                        else "",
                        rule_id=row.rule_id,
                        status=row.status,
                        message=row.message,
                        exempted=row.exemption is not None,
                    )
                )
            lines.append(line)
        sections.append(
            ProfileSection(
                id=profile.id,
                name=profile.name,
                school=profile.school,
                source_document=profile.source_document,
                version=profile.version,
                clauses=lines,
            )
        )
    return ComplianceReport(
        period_from=period_from,
        period_to=period_to,
        timezone=timezone,
        generated_at=now,
        profiles=sections,
        sessions=len(sessions),
    )


def render(report: ComplianceReport, output_format: str) -> str:
    """The report as ``html``, ``json`` or ``csv`` text.

    Raises:
        ValueError: an unknown format.
    """
    if output_format == "json":
        return json.dumps(report.to_dict(), indent=2, default=str) + "\n"
    if output_format == "csv":
        return _csv(report)
    if output_format == "html":
        environment = Environment(
            loader=FileSystemLoader(Path(__file__).parent / "templates"),
            autoescape=select_autoescape(["html"]),
            trim_blocks=True,
            lstrip_blocks=True,
        )
        return environment.get_template("compliance.html").render(report=report)
    raise ValueError(f"unknown format {output_format!r}: use one of {', '.join(FORMATS)}")


def _csv(report: ComplianceReport) -> str:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(
        [
            "profile",
            "clause",
            "version",
            "level",
            "check",
            "covered_by",
            "rules",
            "verdict",
            *STATUS_COLUMNS,
            "exempted",
            "clause_text",
            "manual_reason",
        ]
    )
    for section in report.profiles:
        for line in section.clauses:
            writer.writerow(
                [
                    section.id,
                    line.clause_id,
                    line.version,
                    line.level,
                    line.check,
                    line.covered_by or "",
                    " ".join(rule["rule"] for rule in line.rules),
                    line.verdict,
                    *(line.counts[status] for status in STATUS_COLUMNS),
                    line.exempted,
                    _csv_safe(line.text),
                    _csv_safe(line.manual_reason or ""),
                ]
            )
    return out.getvalue()


def _csv_safe(text: str) -> str:
    """Neutralise spreadsheet formulas: a cell starting with = + - @ is shown as text."""
    return "'" + text if text[:1] in {"=", "+", "-", "@"} else text
