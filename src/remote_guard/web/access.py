"""Who may see and do what. One function per decision; every route and API endpoint asks here.

Roles come from the configured Entra groups (``[directory]``), never from anything the browser
sends: STAFF is any member of the staff groups, TEACHER a member of staff who owns a class team
(a team with pupils in it), SLT, DSL and DEPUTY_DSL the members of those groups. In a federation
(``[[schools]]``), staff see only the schools whose groups they are in; someone in two schools'
groups sees both.

Decisions take the signed-in :class:`User` and the stored row (or its ids) and return a bool;
a route that gets False answers 403 (see ``auth.deny``). Unknown is refused: a session whose
school is not known is visible only to those who see every school.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol


class Role(StrEnum):
    STAFF = "staff"
    TEACHER = "teacher"
    SLT = "slt"
    DSL = "dsl"
    DEPUTY_DSL = "deputy_dsl"


ROLE_LABELS = {
    Role.STAFF: "Staff",
    Role.TEACHER: "Teacher",
    Role.SLT: "SLT",
    Role.DSL: "DSL",
    Role.DEPUTY_DSL: "Deputy DSL",
}

# The role a person acts in when they hold several: it picks their home page and is the role
# written in the audit trail.
_PRECEDENCE = (Role.DSL, Role.DEPUTY_DSL, Role.SLT, Role.TEACHER, Role.STAFF)


@dataclass(frozen=True)
class User:
    """A signed-in member of staff, as the configured groups and class teams describe them.

    ``schools`` holds the keys of the ``[[schools]]`` whose groups they are in (empty when no
    federation is configured). ``class_pupil_ids`` are the pupils of the class teams they own.
    """

    id: str  # the Entra object id (the id token's oid claim)
    name: str
    username: str
    roles: frozenset[Role]
    schools: frozenset[str] = frozenset()
    class_team_ids: frozenset[str] = frozenset()
    class_pupil_ids: frozenset[str] = frozenset()
    federation: frozenset[str] = field(default=frozenset(), repr=False)  # every school key

    def has(self, *roles: Role) -> bool:
        """Whether the user holds any of ``roles``."""
        return any(role in self.roles for role in roles)

    @property
    def role(self) -> Role:
        """The role they act in when they hold several (DSL before SLT before teacher)."""
        return next((role for role in _PRECEDENCE if role in self.roles), Role.STAFF)

    @property
    def role_label(self) -> str:
        return ROLE_LABELS[self.role]


class SessionLike(Protocol):
    """What access decisions read from a stored session (``collect.models.SessionRow``)."""

    @property
    def organizer_id(self) -> str | None: ...

    @property
    def school(self) -> str | None: ...


# --- the pages of each role ------------------------------------------------------------------


def can_use_app(user: User) -> bool:
    """Only staff use remote_guard; a pupil or guest account never gets a session."""
    return user.has(Role.STAFF)


def can_see_dsl_queue(user: User) -> bool:
    """The review queue of findings: the DSL and deputy DSLs."""
    return user.has(Role.DSL, Role.DEPUTY_DSL)


def can_see_slt_board(user: User) -> bool:
    """The board of live and upcoming sessions, approvals and drop-ins: SLT."""
    return user.has(Role.SLT)


def can_see_my_sessions(user: User) -> bool:
    """Every member of staff may see the sessions they run themselves."""
    return can_use_app(user)


def home_path(user: User) -> str:
    """Where ``/`` sends the user: the page of the role they act in."""
    if can_see_dsl_queue(user):
        return "/dsl"
    if can_see_slt_board(user):
        return "/slt"
    return "/my-sessions"


# --- schools --------------------------------------------------------------------------------


def can_see_school(user: User, school: str | None) -> bool:
    """Whether the user may see records of ``school`` (a ``[[schools]]`` key).

    Without a federation every member of staff sees the one school. In a federation a record
    of an unknown school is shown only to someone who sees every school.
    """
    if not user.federation:
        return True
    if school is None:
        return user.federation <= user.schools
    return school in user.schools


def visible_schools(user: User) -> frozenset[str] | None:
    """The school keys a query must be limited to, or None when no federation is configured."""
    return user.schools if user.federation else None


# --- sessions, findings and pupils ----------------------------------------------------------


def can_see_session(user: User, session: SessionLike) -> bool:
    """DSLs and SLT see every session of their schools; other staff only those they organise."""
    if not can_use_app(user) or not can_see_school(user, session.school):
        return False
    if user.has(Role.DSL, Role.DEPUTY_DSL, Role.SLT):
        return True
    return session.organizer_id is not None and session.organizer_id == user.id


def can_see_findings_of(user: User, session: SessionLike) -> bool:
    """A session's findings are seen by whoever may see the session."""
    return can_see_session(user, session)


def can_review_findings(user: User, session: SessionLike) -> bool:
    """Moving a finding through new -> in review -> closed: the DSL and deputy DSLs."""
    return user.has(Role.DSL, Role.DEPUTY_DSL) and can_see_session(user, session)


def can_assign_findings(user: User) -> bool:
    """Assigning a case to a deputy DSL: the DSL."""
    return user.has(Role.DSL)


# --- the DSL's cases (web/routes/dsl.py, web/dsl_api.py) --------------------------------------
#
# Deputy DSLs are trained to the DSL's standard and act when the DSL is away, so they do
# everything the DSL does with a case (open its evidence, review, close with a resolution,
# reopen, note, export the hand-off) except hand out work: only the DSL assigns a case to
# someone else. A deputy may take an unassigned case for themselves, or give back one they
# hold, so work is never stuck while the DSL is away. Everyone else, SLT included, is refused:
# a case is the DSL's safeguarding record.


def can_open_case(user: User, session: SessionLike) -> bool:
    """A session's evidence page and its case: the DSL and deputy DSLs of its school. Opening
    it is recorded in the audit trail as a view."""
    return user.has(Role.DSL, Role.DEPUTY_DSL) and can_see_session(user, session)


def can_change_case(user: User, session: SessionLike) -> bool:
    """Moving a case new -> in review -> closed (with a resolution), reopening it, and adding
    notes: the DSL and deputy DSLs of the session's school."""
    return can_open_case(user, session)


def can_export_case(user: User, session: SessionLike) -> bool:
    """The hand-off summary for CPOMS or MyConcern (page and CSV): whoever may open the case."""
    return can_open_case(user, session)


def can_assign_case(
    user: User, session: SessionLike, *, assignee_id: str | None, current_id: str | None
) -> bool:
    """Giving a case to ``assignee_id`` (None: to nobody) while ``current_id`` holds it.

    The DSL gives any case of their schools to anyone (the caller checks that the assignee is
    a DSL or deputy DSL of that school). A deputy DSL only takes an unassigned case for
    themselves, or gives back a case they hold.
    """
    if not can_open_case(user, session):
        return False
    if user.has(Role.DSL):
        return True
    taking = assignee_id == user.id and current_id in (None, user.id)
    giving_back = assignee_id is None and current_id == user.id
    return taking or giving_back


def runs_session(user: User, session: SessionLike) -> bool:
    """The sessions on a member of staff's "My sessions": those they organise, whatever their
    role (a DSL's own lessons are theirs; their school's others are in the DSL queue). Who
    co-organises or presents is not in the stored session, so only the organiser counts."""
    return (
        can_use_app(user)
        and session.organizer_id is not None
        and session.organizer_id == user.id
        and can_see_school(user, session.school)
    )


def can_add_context(user: User, session: SessionLike) -> bool:
    """A teacher adds context to flags on their own sessions (they cannot close them)."""
    return can_use_app(user) and session.organizer_id == user.id and can_see_session(user, session)


def can_see_pupil(user: User, pupil_id: str, school: str | None) -> bool:
    """DSLs and SLT see the pupils of their schools; a teacher only the pupils of their classes."""
    if not can_use_app(user):
        return False
    if user.has(Role.DSL, Role.DEPUTY_DSL, Role.SLT):
        return can_see_school(user, school)
    return pupil_id in user.class_pupil_ids


def visible_pupils(user: User, pupil_ids: Iterable[str]) -> list[str]:
    """The pupils of ``pupil_ids`` a teacher may see (all of them for DSL and SLT)."""
    if user.has(Role.DSL, Role.DEPUTY_DSL, Role.SLT):
        return list(pupil_ids)
    return [pupil for pupil in pupil_ids if pupil in user.class_pupil_ids]


# --- one-to-one registrations and drop-ins ----------------------------------------------------


def can_register_one_to_one(user: User, pupil_id: str) -> bool:
    """A teacher registers a one-to-one only with a pupil of their own classes."""
    return user.has(Role.TEACHER) and pupil_id in user.class_pupil_ids


def can_register_one_to_ones(user: User) -> bool:
    """The register form: a teacher with at least one class (any pupil is then checked with
    :func:`can_register_one_to_one`)."""
    return user.has(Role.TEACHER) and bool(user.class_pupil_ids)


def can_manage_consent(
    user: User, pupil_id: str, school: str | None, *, runs_registration: bool = False
) -> bool:
    """Seeing a pupil's parental consent (the parent's name and contact, the evidence) and
    recording its withdrawal: the teacher of the pupil's class, the adult who runs the
    registered one-to-one (``runs_registration``), and SLT and DSLs of the pupil's school.
    A withdrawal only ever makes the rules stricter, so whoever hears of it may record it."""
    if not can_use_app(user):
        return False
    if runs_registration or pupil_id in user.class_pupil_ids:
        return True
    return user.has(Role.SLT, Role.DSL, Role.DEPUTY_DSL) and can_see_school(user, school)


def can_decide_registrations(user: User) -> bool:
    """Approving or declining one-to-one registrations and keeping the activity list: SLT."""
    return user.has(Role.SLT)


def can_schedule_drop_ins(user: User) -> bool:
    """Scheduling a monitoring drop-in and recording its outcome: SLT."""
    return user.has(Role.SLT)


def can_decide_registration(user: User, *, staff_id: str, school: str | None) -> bool:
    """Approving or declining one registration: SLT of the pupil's school, and never for a
    one-to-one they run themselves (someone else must approve it)."""
    return can_decide_registrations(user) and staff_id != user.id and can_see_school(user, school)


def can_see_registration(user: User, school: str | None) -> bool:
    """A registration and its consent on the approvals page: SLT of the pupil's school."""
    return can_decide_registrations(user) and can_see_school(user, school)


class DropInLike(Protocol):
    """What access decisions read from a stored drop-in (``dropins.models.DropInRow``)."""

    @property
    def slt_user_id(self) -> str: ...

    @property
    def school(self) -> str | None: ...


def can_schedule_drop_in(user: User, session: SessionLike) -> bool:
    """A drop-in into one session: SLT who may see the session, not into a session they run
    themselves (monitoring oneself is no monitoring)."""
    return (
        can_schedule_drop_ins(user)
        and can_see_session(user, session)
        and session.organizer_id != user.id
    )


def can_see_drop_in(user: User, dropin: DropInLike) -> bool:
    """Drop-ins of their schools are seen by SLT (to share out who visits whom)."""
    return can_schedule_drop_ins(user) and can_see_school(user, dropin.school)


def can_manage_drop_in(user: User, dropin: DropInLike) -> bool:
    """Recording the outcome, putting it in the calendar again, cancelling: only the SLT member
    whose drop-in it is (the event is in their own calendar; they saw what happened)."""
    return can_see_drop_in(user, dropin) and dropin.slt_user_id == user.id


def can_see_coverage(user: User) -> bool:
    """Drop-in coverage this half-term: SLT (limited to the schools they see)."""
    return user.has(Role.SLT)
