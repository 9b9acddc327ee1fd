"""A session with pupils organised by someone outside the school tenant.

Enforces WPS-3.4 / BSF-3.4 (every contact with pupils goes through the school's approved
channels) and NG-3 (school accounts only, never personal ones, for remote teaching and contact):
a meeting or call with pupils whose organiser belongs to another Microsoft 365 organisation, or
is a guest, anonymous or phone identity, is not contact through a school account, whoever the
organiser is. The school sees such a meeting only through the invitation in its users'
calendars, so it is checked from the moment the invitation arrives.
"""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import BaseModel

from remote_guard.collect.snapshot import Missing, Person, PersonKind, SessionKind, SessionSnapshot
from remote_guard.rules._people import (
    OUTSIDER_KINDS,
    cancelled_or_without_pupils,
    email_domain,
    expected_pupils,
    pupil_sources,
    school_domains,
    session_label,
)
from remote_guard.rules.base import NoParams, Outcome, RuleContext, Severity, Verdict

_WHAT = {
    PersonKind.EXTERNAL: "an account of another organisation",
    PersonKind.GUEST: "a guest account",
    PersonKind.ANONYMOUS: "someone without an account",
    PersonKind.PHONE: "a phone caller",
}


class ExternalOrganiser:
    id: ClassVar[str] = "external_organiser"
    title: ClassVar[str] = "Session with pupils organised outside the school"
    clauses: ClassVar[tuple[str, ...]] = ("WPS-3.4", "BSF-3.4", "NG-3")
    severity: ClassVar[Severity] = Severity.HIGH
    requires: ClassVar[frozenset[Missing]] = frozenset({Missing.DIRECTORY})
    stage: ClassVar[int] = 1
    Params: ClassVar[type[BaseModel]] = NoParams

    def evaluate(self, snapshot: SessionSnapshot, context: RuleContext) -> list[Outcome]:
        if snapshot.kind is SessionKind.DIRECT_CHAT:
            return [
                Outcome(
                    verdict=Verdict.NOT_APPLICABLE,
                    observed="direct chat",
                    message="A chat has no organiser; direct_chat_with_pupil covers chats.",
                )
            ]
        skip = cancelled_or_without_pupils(snapshot, what="who organised it")
        if skip is not None:
            return [skip]
        pupils = sorted(expected_pupils(snapshot))
        label = session_label(snapshot, context)
        found_in = "calendar" if snapshot.scheduled_start is not None else "call_record"
        sources = tuple(dict.fromkeys((found_in, *pupil_sources(snapshot))))
        organiser = snapshot.people.get(snapshot.organizer_id) if snapshot.organizer_id else None
        tenant = snapshot.organizer_tenant_id or (organiser.tenant_id if organiser else None)
        evidence: dict[str, Any] = {
            "organizer_id": snapshot.organizer_id,
            "organizer_email": snapshot.organizer_email,
            "organizer_tenant_id": tenant,
            "organizer_kind": organiser.kind.value if organiser else None,
            "school_tenant_id": context.tenant_id,
            "expected_pupil_ids": pupils,
        }
        domain = email_domain(snapshot.organizer_email) if snapshot.organizer_email else None
        known = school_domains(snapshot, context)
        if snapshot.organizer_id is None and domain and known and domain not in known:
            # The invitation came from an address outside the school's own domains (a personal
            # or another organisation's account): the catalogue's 7.2.k and NG-3 signal.
            evidence["school_domains"] = sorted(known)
            return [
                Outcome(
                    verdict=Verdict.BREACH,
                    observed=f"organised from an outside address ({domain})",
                    message=(
                        f"{label} with {_pupil_names(snapshot, pupils)} was organised from "
                        f"{snapshot.organizer_email}, an address outside the school's domains, "
                        "not a school account."
                    ),
                    next_step=(
                        "DSL: find out who arranged the session and why pupils were invited. "
                        "Sessions with pupils must be organised from a school account in the "
                        "school's Teams; staff should not accept or forward such invitations."
                    ),
                    evidence=evidence,
                    sources=sources,
                )
            ]
        if snapshot.organizer_id is None:
            return [
                Outcome(
                    verdict=Verdict.UNKNOWN,
                    observed="organiser not known",
                    message=(
                        f"Who organised {label}, a session with pupils, could not be "
                        "identified"
                        + (
                            f" (the invitation came from {snapshot.organizer_email})"
                            if snapshot.organizer_email
                            else ""
                        )
                        + ", so whether it was a school account could not be checked."
                    ),
                    next_step=(
                        "DSL: find out who sent the invitation; if it is not a school account, "
                        "tell the pupils' parents not to use it."
                    ),
                    evidence=evidence,
                    sources=sources,
                )
            ]
        other_tenant = tenant is not None and tenant.lower() != context.tenant_id.lower()
        outsider = organiser is not None and organiser.kind in OUTSIDER_KINDS
        if not other_tenant and not outsider:
            return [
                Outcome(
                    verdict=Verdict.OK,
                    observed="organised by a school account",
                    message=f"{label} was organised from a school account.",
                    evidence=evidence,
                    sources=sources,
                )
            ]
        return [
            Outcome(
                verdict=Verdict.BREACH,
                observed=(
                    f"organised in another tenant ({tenant})"
                    if other_tenant
                    else f"organised by a {organiser.kind.value} identity"
                    if organiser
                    else "organised outside the school"
                ),
                message=(
                    f"{label} with {_pupil_names(snapshot, pupils)} was organised by "
                    f"{_who(snapshot, organiser)}, "
                    f"{_what(organiser, other_tenant=other_tenant)}, not a school account."
                ),
                next_step=(
                    "DSL: find out who arranged the session and why pupils were invited. "
                    "Sessions with pupils must be organised from a school account in the "
                    "school's Teams; staff should not accept or forward such invitations."
                ),
                evidence=evidence,
                sources=sources,
            )
        ]


def _who(snapshot: SessionSnapshot, organiser: Person | None) -> str:
    name = organiser.display_name if organiser else ""
    address = snapshot.organizer_email or (organiser.email if organiser else None)
    if name and address:
        return f"{name} ({address})"
    return name or address or "an unnamed organiser"


def _what(organiser: Person | None, *, other_tenant: bool) -> str:
    if organiser is not None and organiser.kind in _WHAT:
        return _WHAT[organiser.kind]
    return "an account of another organisation" if other_tenant else "someone outside the school"


def _pupil_names(snapshot: SessionSnapshot, pupils: list[str]) -> str:
    names = sorted(snapshot.person(pid).display_name or pid for pid in pupils)
    if len(names) == 1:
        return f"pupil {names[0]}"
    if len(names) <= 3:
        return "pupils " + ", ".join(names[:-1]) + " and " + names[-1]
    return f"{len(names)} pupils"


RULE = ExternalOrganiser()
