"""Who a session is for and who was in it together: the helpers the invitation and settings
rules share.

"Pupils expected in the session" are the pupils the organiser invited (group invitations are
expanded by the collector), the pupils who actually turned up, and, for a channel meeting, the
pupils who are members of the channel's team, because a channel meeting is open to all of them
without an invitation.
"""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from remote_guard.collect.snapshot import PersonKind, SessionKind, SessionSnapshot
from remote_guard.rules._presence import merged_intervals
from remote_guard.rules.base import Outcome, RuleContext, Verdict

Span = tuple[datetime, datetime]

TEAMS_MEETINGS = frozenset({SessionKind.MEETING, SessionKind.CHANNEL_MEETING})

# People who come from outside the school tenant (or, for guests, live in it only as visitors).
OUTSIDER_KINDS = frozenset(
    {PersonKind.GUEST, PersonKind.ANONYMOUS, PersonKind.EXTERNAL, PersonKind.PHONE}
)

# Used when a rule runs without the school day (unit tests, ad-hoc evaluation).
DEFAULT_TIMEZONE = "Europe/London"


def channel_member_ids(snapshot: SessionSnapshot) -> set[str]:
    """The members of the channel's team for a channel meeting; empty for any other session."""
    if snapshot.channel is None:
        return set()
    return set(snapshot.channel.member_ids)


def invited_pupils(snapshot: SessionSnapshot) -> set[str]:
    """Pupils on the invitation list."""
    return {pid for pid in snapshot.invitee_ids if snapshot.person(pid).kind is PersonKind.PUPIL}


def present_pupils(snapshot: SessionSnapshot) -> set[str]:
    """Pupils who were present at some point (empty while attendance is not known)."""
    return {
        presence.person_id
        for presence in snapshot.presence or []
        if snapshot.person(presence.person_id).kind is PersonKind.PUPIL
    }


def channel_pupils(snapshot: SessionSnapshot) -> set[str]:
    """Pupils who are members of a channel meeting's team."""
    return {
        pid for pid in channel_member_ids(snapshot) if snapshot.person(pid).kind is PersonKind.PUPIL
    }


def expected_pupils(snapshot: SessionSnapshot) -> set[str]:
    """Pupils invited, present, or (channel meeting) members of the channel's team."""
    return invited_pupils(snapshot) | present_pupils(snapshot) | channel_pupils(snapshot)


def channel_members_unknown(snapshot: SessionSnapshot) -> bool:
    """Whether this is a channel meeting whose team members could not be read, so the pupils
    it is open to are not known (a team always has at least its owner)."""
    return snapshot.channel is not None and not channel_member_ids(snapshot)


def pupil_sources(snapshot: SessionSnapshot) -> tuple[str, ...]:
    """Which parts of the snapshot named the expected pupils, for an outcome's ``sources``."""
    sources: list[str] = []
    if invited_pupils(snapshot):
        sources.append("calendar")
    if present_pupils(snapshot):
        sources.append("attendance")
    if channel_pupils(snapshot):
        sources.append("channel")
    return tuple(sources)


def overlap(left: list[Span], right: list[Span]) -> Span | None:
    """The first stretch of time covered by both lists of spans, or None if they never meet.

    Spans that only touch (one ends as the other starts) do not overlap: nobody was there
    together.
    """
    for left_start, left_end in left:
        for right_start, right_end in right:
            start, end = max(left_start, right_start), min(left_end, right_end)
            if start < end:
                return start, end
    return None


def pupils_overlapping(snapshot: SessionSnapshot, person_id: str) -> dict[str, Span]:
    """Each pupil who was present at the same time as ``person_id``, with the first shared
    stretch. Application identities have no spans, so they never overlap anyone."""
    spans = merged_intervals(snapshot)
    mine = spans.get(person_id, [])
    together: dict[str, Span] = {}
    for other_id, other_spans in spans.items():
        if other_id == person_id or snapshot.person(other_id).kind is not PersonKind.PUPIL:
            continue
        shared = overlap(mine, other_spans)
        if shared is not None:
            together[other_id] = shared
    return together


def school_zone(context: RuleContext) -> ZoneInfo:
    return ZoneInfo(context.school_day.timezone if context.school_day else DEFAULT_TIMEZONE)


def local_time(moment: datetime, context: RuleContext) -> str:
    """``2026-11-18T10:00Z`` -> ``Wed 18 Nov 10:00`` on the school's clock."""
    local = moment.astimezone(school_zone(context))
    return f"{local:%a} {local.day} {local:%b %H:%M}"


def local_clock(moment: datetime, context: RuleContext) -> str:
    """``2026-11-18T10:05:30Z`` -> ``10:05`` on the school's clock."""
    return f"{moment.astimezone(school_zone(context)):%H:%M}"


def session_label(snapshot: SessionSnapshot, context: RuleContext) -> str:
    """How messages name a session: its subject and, when known, its start on the school's
    clock, e.g. ``"Year 3 Maths" (Wed 18 Nov 10:00)``."""
    subject = f"\u201c{snapshot.subject}\u201d" if snapshot.subject else "a meeting"
    start = snapshot.scheduled_start or snapshot.actual_start
    return f"{subject} ({local_time(start, context)})" if start is not None else subject


_SCHOOL_ACCOUNT_KINDS = frozenset({PersonKind.STAFF, PersonKind.PUPIL})


def email_domain(address: str) -> str:
    return address.rpartition("@")[2].strip().lower()


def school_domains(snapshot: SessionSnapshot, context: RuleContext) -> set[str]:
    """The school's e-mail domains: from the directory when the poller gave them, plus those of
    the school's own accounts seen in the session."""
    domains = set(context.school_domains)
    domains |= {
        email_domain(person.email)
        for person in snapshot.people.values()
        if person.kind in _SCHOOL_ACCOUNT_KINDS and person.email
    }
    organizer = snapshot.people.get(snapshot.organizer_id or "")
    if (
        organizer is not None
        and organizer.kind in _SCHOOL_ACCOUNT_KINDS
        and snapshot.organizer_email
    ):
        domains.add(email_domain(snapshot.organizer_email))
    return domains


def staff_involved(snapshot: SessionSnapshot) -> set[str]:
    """Members of staff who organised, were invited to, or attended the session."""
    candidates = {snapshot.organizer_id or "", *snapshot.invitee_ids} | {
        presence.person_id for presence in snapshot.presence or []
    }
    return {pid for pid in candidates if pid and snapshot.person(pid).kind is PersonKind.STAFF}


def cancelled_or_without_pupils(snapshot: SessionSnapshot, *, what: str) -> Outcome | None:
    """NOT_APPLICABLE when the meeting was cancelled and nobody attended, or no pupil is
    invited to or took part in it; ``what`` names what then does not matter ("its provider")."""
    if snapshot.is_cancelled and not snapshot.presence:
        return Outcome(
            verdict=Verdict.NOT_APPLICABLE,
            observed="meeting cancelled",
            message=f"The meeting was cancelled, so {what} does not matter.",
            sources=("calendar",),
        )
    if not expected_pupils(snapshot):
        return Outcome(
            verdict=Verdict.NOT_APPLICABLE,
            observed="no pupils expected",
            message="No pupil is invited to or took part in this meeting.",
            sources=("calendar",),
        )
    return None


def options_not_applicable(snapshot: SessionSnapshot, *, what: str) -> Outcome | None:
    """NOT_APPLICABLE for a meeting-options check: not a Teams meeting, cancelled (``what``
    then does not matter), or no pupil expected and none possible (a channel meeting whose team
    could not be read may be a class's, so it is checked)."""
    if snapshot.kind not in TEAMS_MEETINGS:
        return Outcome(
            verdict=Verdict.NOT_APPLICABLE,
            observed=f"not a Teams meeting ({snapshot.kind.value})",
            message="Only Teams meetings have meeting options to check.",
        )
    if snapshot.is_cancelled:
        return Outcome(
            verdict=Verdict.NOT_APPLICABLE,
            observed="meeting cancelled",
            message=f"The meeting was cancelled, so {what} does not matter.",
            sources=("calendar",),
        )
    if not expected_pupils(snapshot) and not channel_members_unknown(snapshot):
        return Outcome(
            verdict=Verdict.NOT_APPLICABLE,
            observed="no pupils expected",
            message="No pupil is invited to or took part in this meeting.",
            sources=("calendar",),
        )
    return None
