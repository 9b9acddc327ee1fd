"""A recording of pupils saved where pupils can open it, or in a pupil's own OneDrive.

Enforces BSF Appendix A, staff in school, photographs (BSF-A.staff-school.8: pupil images are
stored centrally where only teaching staff can reach them) and WPS-AN1.aup.8 (pupil images only
for professional purposes, not shared beyond the school); national guidance NG-11. Where Teams
saves a recording (Microsoft's documented behaviour, not read from Graph):

* a channel meeting's recording goes to the team's SharePoint site, in the channel's folder,
  where every team member (in a class team, the pupils) can open it by default;
* any other meeting's recording goes to the organiser's OneDrive, or, where the tenant's
  ``MeetingRecordingOwnership`` policy says so, to the OneDrive of whoever started it;
* a direct call's recording goes to the OneDrive of whoever started it.

Microsoft also shares a non-channel meeting's recording with the people invited from the
tenant; whether pupils invited to a lesson can open it is ``invitees_can_open``. Transcripts are
text, not images, and are not checked.
"""

from __future__ import annotations

from typing import ClassVar

from pydantic import BaseModel, ConfigDict

from remote_guard.collect.snapshot import Missing, PersonKind, SessionKind, SessionSnapshot
from remote_guard.rules._people import (
    channel_member_ids,
    channel_pupils,
    invited_pupils,
    local_time,
    present_pupils,
)
from remote_guard.rules._recordings import (
    Recording,
    distinct_recordings,
    not_recordable,
    recording_sources,
    recordings_not_read,
)
from remote_guard.rules.base import Outcome, RuleContext, Severity, Verdict

# How many pupils a message names; the evidence lists them all.
_NAMES_IN_MESSAGE = 3


class Params(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    # True: the school accepts that pupils who were in a lesson can watch its recording.
    pupils_may_open: bool = False
    # The tenant's Teams MeetingRecordingOwnership: True (RecordingInitiator) saves a
    # non-channel meeting's recording in the OneDrive of whoever started it, not the organiser's.
    stored_with_initiator: bool = False
    # True (Microsoft's default): Teams shares a non-channel meeting's recording, view only, with
    # the people invited from the tenant, so pupils invited to a lesson can open it from the
    # organiser's OneDrive. False only if the school has changed that sharing.
    invitees_can_open: bool = True


class RecordingStorage:
    id: ClassVar[str] = "recording_storage"
    title: ClassVar[str] = "Recording stored where pupils can reach it"
    clauses: ClassVar[tuple[str, ...]] = ("BSF-A.staff-school.8", "WPS-AN1.aup.8", "NG-11")
    severity: ClassVar[Severity] = Severity.MEDIUM
    requires: ClassVar[frozenset[Missing]] = frozenset({Missing.RECORDINGS, Missing.DIRECTORY})
    stage: ClassVar[int] = 1
    Params: ClassVar[type[BaseModel]] = Params

    def evaluate(self, snapshot: SessionSnapshot, context: RuleContext) -> list[Outcome]:
        params = context.params
        if not isinstance(params, Params):
            raise TypeError(f"{self.id} needs its own Params, got {type(params).__name__}")
        not_applicable = not_recordable(snapshot)
        if not_applicable is not None:
            return [not_applicable]
        if snapshot.recordings is None:
            return [recordings_not_read(snapshot, context, "where its recordings are stored")]
        recordings = [r for r in distinct_recordings(snapshot) if r.kind == "recording"]
        outcomes = [
            outcome
            for recording in recordings
            if (outcome := _judge(snapshot, recording, params, context)) is not None
        ]
        if outcomes:
            return outcomes
        return [
            Outcome(
                verdict=Verdict.OK,
                observed="stored with staff" if recordings else "no recordings",
                message=(
                    "This session's recordings are stored where only staff can open them."
                    if recordings
                    else "This session was not recorded."
                ),
                evidence={"recording_ids": [r.id for r in recordings]},
                sources=("recordings",),
            )
        ]


def _judge(
    snapshot: SessionSnapshot, recording: Recording, params: Params, context: RuleContext
) -> Outcome | None:
    """A BREACH or UNKNOWN outcome for ``recording``, or None when it is stored with staff."""
    if snapshot.kind is SessionKind.CHANNEL_MEETING:
        return _in_team_site(snapshot, recording, params, context)
    if snapshot.kind is SessionKind.PEER_TO_PEER or params.stored_with_initiator:
        owner_id, role = recording.initiator_id, "whoever started it"
    else:
        owner_id, role = snapshot.organizer_id, "the organiser"
    if owner_id is None:
        return _unknown(
            snapshot,
            recording,
            context,
            f"it is saved in the OneDrive of {role}, who is not known",
        )
    owner = snapshot.person(owner_id)
    if owner.kind is PersonKind.PUPIL:
        return _breach(
            snapshot,
            recording,
            context,
            location=f"pupil {owner.display_name or owner_id}'s own OneDrive",
            pupil_ids=[owner_id],
            observed="stored in a pupil's OneDrive",
            extra={"owner_id": owner_id},
        )
    if owner.kind is not PersonKind.STAFF:
        return _unknown(
            snapshot,
            recording,
            context,
            f"it is saved in the OneDrive of {owner.display_name or owner_id}, who is not a "
            "member of staff",
        )
    if params.invitees_can_open and not params.pupils_may_open:
        # Only a meeting has invitees; a direct call's other party is in present_pupils.
        pupils = sorted(invited_pupils(snapshot) | present_pupils(snapshot))
        if pupils:
            return _breach(
                snapshot,
                recording,
                context,
                location=f"{owner.display_name or 'the organiser'}'s OneDrive, shared with the "
                "meeting's invitees",
                pupil_ids=pupils,
                observed="shared with pupils",
                extra={"owner_id": owner_id},
            )
    return None


def _in_team_site(
    snapshot: SessionSnapshot, recording: Recording, params: Params, context: RuleContext
) -> Outcome | None:
    team = snapshot.channel.team_name if snapshot.channel else None
    location = f"the {team} team's SharePoint site" if team else "the team's SharePoint site"
    pupils = sorted(channel_pupils(snapshot) | present_pupils(snapshot))
    if pupils:
        if params.pupils_may_open:
            return None
        return _breach(
            snapshot,
            recording,
            context,
            location=location,
            pupil_ids=pupils,
            observed="stored in a class team's site",
            extra={"team_id": snapshot.channel.team_id if snapshot.channel else None},
        )
    if not channel_member_ids(snapshot):
        return _unknown(
            snapshot,
            recording,
            context,
            f"it is saved in {location}, whose members could not be read",
        )
    return None


def _breach(
    snapshot: SessionSnapshot,
    recording: Recording,
    context: RuleContext,
    *,
    location: str,
    pupil_ids: list[str],
    observed: str,
    extra: dict[str, object],
) -> Outcome:
    names = sorted(snapshot.person(pid).display_name or pid for pid in pupil_ids)
    if len(names) == 1:
        who = names[0]
    else:
        shown = ", ".join(names[:_NAMES_IN_MESSAGE])
        more = len(names) - _NAMES_IN_MESSAGE
        who = f"{len(names)} pupils ({shown}{f' and {more} more' if more > 0 else ''})"
    return Outcome(
        verdict=Verdict.BREACH,
        subject_key=recording.subject_key,
        observed=observed,
        message=(
            f"The recording of {_label(snapshot, recording, context)} is saved in {location}, "
            f"where {who} can open it, not only teaching staff."
        ),
        next_step=(
            "Teacher or IT: move the recording to a staff-only location (or restrict the "
            "Recordings folder to the team's owners), and check who has opened or downloaded it."
        ),
        evidence={
            "recording_id": recording.id,
            "started": recording.started.isoformat() if recording.started else None,
            "initiator_id": recording.initiator_id,
            "location": location,
            "pupil_ids": pupil_ids,
            **extra,
        },
        sources=(*recording_sources([recording]), "directory"),
    )


def _unknown(
    snapshot: SessionSnapshot, recording: Recording, context: RuleContext, why: str
) -> Outcome:
    return Outcome(
        verdict=Verdict.UNKNOWN,
        subject_key=recording.subject_key,
        observed="where it is stored is not known",
        message=(
            f"Who can open the recording of {_label(snapshot, recording, context)} is not "
            f"known: {why}."
        ),
        next_step="Teacher or IT: find the recording in Teams and check who can open it.",
        evidence={"recording_id": recording.id, "initiator_id": recording.initiator_id},
        sources=recording_sources([recording]),
    )


def _label(snapshot: SessionSnapshot, recording: Recording, context: RuleContext) -> str:
    subject = f"\u201c{snapshot.subject}\u201d" if snapshot.subject else "a session"
    if recording.started is None:
        return subject
    return f"{subject} (started {local_time(recording.started, context)})"


RULE = RecordingStorage()
