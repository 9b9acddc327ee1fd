"""A pupil (or an unlisted school account) in a meeting they were not invited to.

Enforces BSF-A.pupil-remote.8 (BSF Appendix A, pupils working remotely: pupils should not pass on
invitations to live sessions). A pupil who turns up in a scheduled meeting without being the
organiser, on the invitation list, or (channel meeting) a member of the channel's team, most
likely got the link from someone who was invited. Staff are never reported: colleagues join
lessons and SLT may drop in on any of them (BSF-A.staff-remote.6). Guests, anonymous, phone and
other-organisation joiners are ``outsider_in_pupil_session``'s concern, so nobody is reported
twice. A school account in none of the configured groups is reported when it was there at the
same time as a pupil, since nobody can tell whether it is a pupil.

Only meetings with a calendar invitation have a list to compare with: ad-hoc ("Meet now")
meetings and direct calls are not applicable. When the invitation names addresses of the
school's own domain that the collector could not resolve (a group it could not expand, say), an
uninvited-looking pupil may well have been invited through it, so the answer is "unknown".
"""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import BaseModel

from remote_guard.collect.snapshot import (
    Missing,
    Person,
    PersonKind,
    SessionPhase,
    SessionSnapshot,
)
from remote_guard.rules._people import (
    TEAMS_MEETINGS,
    channel_member_ids,
    email_domain,
    local_clock,
    pupils_overlapping,
    school_domains,
    session_label,
)
from remote_guard.rules._presence import merged_intervals
from remote_guard.rules.base import NoParams, Outcome, RuleContext, Severity, Verdict


class UninvitedAttendee:
    id: ClassVar[str] = "uninvited_attendee"
    title: ClassVar[str] = "Pupil in a meeting they were not invited to"
    clauses: ClassVar[tuple[str, ...]] = ("BSF-A.pupil-remote.8",)
    severity: ClassVar[Severity] = Severity.MEDIUM
    requires: ClassVar[frozenset[Missing]] = frozenset(
        {Missing.PRESENCE, Missing.CALENDAR, Missing.DIRECTORY}
    )
    stage: ClassVar[int] = 1
    Params: ClassVar[type[BaseModel]] = NoParams

    def evaluate(self, snapshot: SessionSnapshot, context: RuleContext) -> list[Outcome]:
        if snapshot.kind not in TEAMS_MEETINGS or snapshot.scheduled_start is None:
            return [
                Outcome(
                    verdict=Verdict.NOT_APPLICABLE,
                    observed="no invitation list",
                    message=(
                        "Only scheduled meetings have an invitation list to compare who joined "
                        "with; ad-hoc meetings and direct calls have none."
                    ),
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
        sources = (*sorted({p.source for p in snapshot.presence}), "calendar")
        invited = set(snapshot.invitee_ids)
        if snapshot.organizer_id:
            invited.add(snapshot.organizer_id)
        invited_emails = {address.lower() for address in snapshot.invitee_emails}
        members = channel_member_ids(snapshot)
        # Who may have been invited without remote_guard being able to tell.
        unresolved = sorted(
            address
            for address in invited_emails
            if email_domain(address) in school_domains(snapshot, context)
        )
        channel_unknown = snapshot.channel is not None and not members
        outcomes: list[Outcome] = []
        for person_id, spans in sorted(merged_intervals(snapshot).items()):
            person = snapshot.person(person_id)
            if person.kind not in (PersonKind.PUPIL, PersonKind.UNKNOWN):
                continue
            if person_id in invited or person_id in members:
                continue
            if person.email and person.email.strip().lower() in invited_emails:
                continue
            together = pupils_overlapping(snapshot, person_id)
            if person.kind is PersonKind.UNKNOWN and not together:
                # Not a session with pupils as far as this account is concerned.
                continue
            evidence: dict[str, Any] = {
                "person_id": person_id,
                "kind": person.kind.value,
                "display_name": person.display_name,
                "present": [[s.isoformat(), e.isoformat()] for s, e in spans],
                "invitee_ids": sorted(snapshot.invitee_ids),
                "organizer_id": snapshot.organizer_id,
                "channel_member_count": len(members) if snapshot.channel is not None else None,
                "pupil_ids_present_together": sorted(together),
            }
            joined = local_clock(spans[0][0], context)
            who = _who(person)
            if unresolved or channel_unknown:
                reason = (
                    f"the invitation also names {len(unresolved)} school address"
                    f"{'es' if len(unresolved) != 1 else ''} remote_guard could not resolve "
                    "(perhaps a group)"
                    if unresolved
                    else "the members of the channel's team could not be read"
                )
                outcomes.append(
                    Outcome(
                        verdict=Verdict.UNKNOWN,
                        subject_key=person_id,
                        observed="not on the invitation list; list incomplete",
                        message=(
                            f"{who} joined {label} at {joined} and is not on the invitation list "
                            f"as read, but {reason}, so whether they were invited is not known."
                        ),
                        next_step=(
                            "Teacher: check whether they were invited. IT: check that "
                            "remote_guard can read the groups and teams used in invitations."
                        ),
                        evidence={**evidence, "unresolved_school_addresses": unresolved},
                        sources=sources,
                    )
                )
                continue
            outcomes.append(
                Outcome(
                    verdict=Verdict.BREACH,
                    subject_key=person_id,
                    observed="joined without an invitation",
                    message=(
                        f"{who} joined {label} at {joined} without being invited"
                        + (
                            " or being a member of the channel's team"
                            if snapshot.channel is not None
                            else ""
                        )
                        + ": someone may have passed the invitation on."
                    ),
                    next_step=_next_step(person),
                    evidence=evidence,
                    sources=sources,
                )
            )
        if outcomes:
            return outcomes
        return [
            Outcome(
                verdict=Verdict.OK,
                observed="everyone was invited",
                message=f"Every pupil who joined {label} was invited.",
                sources=sources,
            )
        ]


def _who(person: Person) -> str:
    name = person.display_name or person.id
    if person.kind is PersonKind.PUPIL:
        return f"Pupil {name}"
    return f"School account {name}, which is in neither the staff nor the pupil groups,"


def _next_step(person: Person) -> str:
    if person.kind is PersonKind.PUPIL:
        return (
            "Teacher: ask the pupil how they got the link and remind pupils and parents that "
            "invitations are not to be passed on; set Who can bypass the lobby to People who "
            "were invited."
        )
    return (
        "IT: add the account to the right staff or pupil group. Teacher: check who it was and "
        "set Who can bypass the lobby to People who were invited."
    )


RULE = UninvitedAttendee()
