"""Someone from outside the school in a session at the same time as pupils.

Enforces BSF-A.pupil-remote.8 (BSF Appendix A, pupils working remotely: pupils should not pass
on invitations to live sessions). remote_guard cannot see who shared a link, only its effect:
an anonymous, dial-in, guest or other-organisation joiner who was in the session while pupils
were. Two kinds of outsider are expected and not reported: a guest or external person the
organiser invited (their address or account is on the invitation), and a parent or carer whose
e-mail address the school recorded on a consent for a pupil who was in the session. Anonymous
and phone joiners carry no verified address, so they can never be matched and are always
reported. School accounts that were not invited are ``uninvited_attendee``'s concern.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, ClassVar

from pydantic import BaseModel

from remote_guard.collect.snapshot import (
    Missing,
    Person,
    PersonKind,
    SessionPhase,
    SessionSnapshot,
)
from remote_guard.consent.registers import Consent
from remote_guard.rules._people import (
    OUTSIDER_KINDS,
    TEAMS_MEETINGS,
    Span,
    local_clock,
    present_pupils,
    pupils_overlapping,
    session_label,
)
from remote_guard.rules._presence import merged_intervals
from remote_guard.rules.base import NoParams, Outcome, RuleContext, Severity, Verdict

# Only people with an account (a guest in the school tenant, a user of another organisation)
# have an address Microsoft has verified; an anonymous joiner types any name they like.
_MATCHABLE = frozenset({PersonKind.GUEST, PersonKind.EXTERNAL})

_KIND_LABEL = {
    PersonKind.GUEST: "Guest",
    PersonKind.EXTERNAL: "Outside user",
    PersonKind.ANONYMOUS: "Anonymous joiner",
    PersonKind.PHONE: "Phone caller",
}


class OutsiderInPupilSession:
    id: ClassVar[str] = "outsider_in_pupil_session"
    title: ClassVar[str] = "Outsider in a session with pupils"
    clauses: ClassVar[tuple[str, ...]] = ("BSF-A.pupil-remote.8",)
    severity: ClassVar[Severity] = Severity.HIGH
    requires: ClassVar[frozenset[Missing]] = frozenset({Missing.PRESENCE, Missing.DIRECTORY})
    stage: ClassVar[int] = 1
    Params: ClassVar[type[BaseModel]] = NoParams

    def evaluate(self, snapshot: SessionSnapshot, context: RuleContext) -> list[Outcome]:
        if snapshot.kind not in TEAMS_MEETINGS:
            return [
                Outcome(
                    verdict=Verdict.NOT_APPLICABLE,
                    observed=f"not a Teams meeting ({snapshot.kind.value})",
                    message="Only meetings, which people join by link, are checked for outsiders.",
                )
            ]
        if snapshot.presence is None:
            ended = snapshot.phase(context.now) is SessionPhase.ENDED
            return [
                Outcome(
                    verdict=Verdict.NOT_APPLICABLE,
                    observed="attendance not yet available" if ended else "not ended yet",
                    message="Who joined is checked once attendance is available"
                    + ("; it is re-checked." if ended else ", after the session ends."),
                )
            ]
        label = session_label(snapshot, context)
        spans = merged_intervals(snapshot)
        sources = _sources(snapshot)
        invited_ids = set(snapshot.invitee_ids)
        invited_emails = {address.lower() for address in snapshot.invitee_emails}
        parents = _parent_contacts(snapshot, context)
        outcomes: list[Outcome] = []
        for person_id in sorted(spans):
            person = snapshot.person(person_id)
            if person.kind not in OUTSIDER_KINDS:
                continue
            name = _name(person)
            together = pupils_overlapping(snapshot, person_id)
            base = {
                "person_id": person_id,
                "kind": person.kind.value,
                "display_name": person.display_name,
                "present": [[s.isoformat(), e.isoformat()] for s, e in spans[person_id]],
            }
            if not together:
                outcomes.append(
                    Outcome(
                        verdict=Verdict.OK,
                        subject_key=person_id,
                        observed="never present with a pupil",
                        message=f"{name} was in {label}, but never at the same time as a pupil.",
                        evidence=base,
                        sources=sources,
                    )
                )
                continue
            email = (person.email or "").strip().lower()
            if person.kind in _MATCHABLE and (
                person_id in invited_ids or (email and email in invited_emails)
            ):
                outcomes.append(
                    Outcome(
                        verdict=Verdict.OK,
                        subject_key=person_id,
                        observed="invited",
                        message=f"{name} was invited to {label} by the organiser.",
                        evidence={**base, "cleared_as": "invited", "email": person.email},
                        sources=sources,
                    )
                )
                continue
            if person.kind in _MATCHABLE and email in parents:
                pupil_id, consent = parents[email]
                pupil = snapshot.person(pupil_id).display_name or pupil_id
                outcomes.append(
                    Outcome(
                        verdict=Verdict.OK,
                        subject_key=person_id,
                        observed=f"{consent.relationship} of {pupil}",
                        message=(
                            f"{name} in {label} is {pupil}'s {consent.relationship} "
                            f"({consent.granted_by}) on the school's consent register."
                        ),
                        evidence={
                            **base,
                            "cleared_as": "parent_or_carer",
                            "email": person.email,
                            "pupil_id": pupil_id,
                            "consent_id": consent.id,
                        },
                        sources=(*sources, "registers"),
                    )
                )
                continue
            outcomes.append(
                self._breach(
                    snapshot, context, person=person, label=label, together=together, base=base
                )
            )
        if outcomes:
            return outcomes
        return [
            Outcome(
                verdict=Verdict.OK,
                observed="no outsiders",
                message=f"No one from outside the school joined {label}.",
                sources=sources,
            )
        ]

    def _breach(
        self,
        snapshot: SessionSnapshot,
        context: RuleContext,
        *,
        person: Person,
        label: str,
        together: dict[str, Span],
        base: dict[str, Any],
    ) -> Outcome:
        first_id = min(together, key=lambda pid: together[pid][0])
        start: datetime = together[first_id][0]
        end: datetime = max(span[1] for span in together.values())
        pupil_names = sorted(snapshot.person(pid).display_name or pid for pid in together)
        shown = ", ".join(pupil_names[:3]) + (
            f" and {len(pupil_names) - 3} more" if len(pupil_names) > 3 else ""
        )
        if person.kind in _MATCHABLE:
            why = "was not invited and is not a parent or carer on the consent register"
        else:
            why = "joined without an account, so who they are cannot be known"
        next_step = (
            "DSL: find out who this was and how they got the link. Teacher: set Who can bypass "
            "the lobby to People who were invited, and admit only people you know."
        )
        if person.kind is PersonKind.PHONE:
            next_step += " Turn off People dialing in can bypass the lobby."
        return Outcome(
            verdict=Verdict.BREACH,
            subject_key=person.id,
            observed=f"{_KIND_LABEL[person.kind].lower()} present with pupils",
            message=(
                f"{_name(person)} was in {label} with pupil{'s' if len(together) != 1 else ''} "
                f"{shown} from {local_clock(start, context)} to {local_clock(end, context)}, but "
                f"{why}."
            ),
            next_step=next_step,
            evidence={
                **base,
                "email": person.email,
                "tenant_id": person.tenant_id,
                "pupil_ids": sorted(together),
                "together_from": start.isoformat(),
                "together_until": end.isoformat(),
                "invitee_emails": sorted(snapshot.invitee_emails),
            },
            sources=_sources(snapshot),
            severity=Severity.HIGH,
        )


def _sources(snapshot: SessionSnapshot) -> tuple[str, ...]:
    """Attendance (report or call record) for who was there; the calendar for the invitation."""
    return (*sorted({p.source for p in snapshot.presence or []}), "calendar")


def _name(person: Person) -> str:
    label = _KIND_LABEL.get(person.kind, "Participant")
    if person.display_name:
        return f"{label} \u201c{person.display_name}\u201d"
    return f"{label} {person.id}"


def _parent_contacts(
    snapshot: SessionSnapshot, context: RuleContext
) -> dict[str, tuple[str, Consent]]:
    """Lower-case contact address -> (pupil, consent) for the pupils who were in the session.

    A consent identifies the parent or carer whatever it covers and whether or not it is still
    in force: it is used here to recognise who someone is, not to permit anything.
    """
    contacts: dict[str, tuple[str, Consent]] = {}
    for pupil_id in sorted(present_pupils(snapshot)):
        for consent in context.registers.consents_for(pupil_id):
            if consent.contact_email:
                contacts.setdefault(consent.contact_email.strip().lower(), (pupil_id, consent))
    return contacts


RULE = OutsiderInPupilSession()
