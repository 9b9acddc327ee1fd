"""A large multi-academy trust's remote-learning day, built in code as a :class:`Scenario`.

:func:`trust_scenario` builds, deterministically for a seed, a trust of ``schools`` primary
schools (50 by default) with 2,500 staff, 25,000 pupils and 5,000 remote sessions on one school
day: class lessons (channel meetings and private meetings with the class group invited, each
class's morning registration a recurring series), one-to-ones with and without a registration,
direct teacher-pupil calls and chats, staff meetings and a few meetings on other platforms.
A seeded share of the lessons carry a breach: a pupil posting in the meeting chat, an
anonymous or outside joiner admitted, the lobby open to everyone, a pupil starting the
recording. Times are written against the scenario's fixed ``now`` (by default 14:30 on a
Wednesday in term), so at start-up the morning's sessions have ended, the 14:15 lessons are
live and the late one-to-ones are still to come.

The same seed gives the same scenario (names, breaches, join times); :class:`TrustFacts` says
what was generated, for the benchmarks to size and check their figures against.
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from remote_guard.fakegraph.scenario import (
    AppSpec,
    AttendanceSpec,
    ChannelSpec,
    ChatMessageSpec,
    ConsentSpec,
    DirectChatSpec,
    ExternalJoinerSpec,
    FaultSpec,
    GroupSpec,
    MeetingSettingsSpec,
    MeetingSpec,
    PeerCallSpec,
    PersonSpec,
    RecordingSpec,
    RegistrationSpec,
    Scenario,
    TeamSpec,
    TenantSpec,
    resolve_time,
)

# A Wednesday in the autumn term; London is on GMT then, so local time is UTC.
DEFAULT_NOW = "2026-11-18T14:30:00Z"
PUPILS_PER_CLASS = 36

_FIRST = (
    "Olivia", "Amelia", "Isla", "Ava", "Ivy", "Freya", "Lily", "Florence", "Mia", "Willow",
    "Oliver", "George", "Harry", "Noah", "Jack", "Leo", "Arthur", "Muhammad", "Oscar", "Charlie",
    "Aisha", "Maryam", "Zainab", "Amira", "Ibrahim", "Yusuf", "Kai", "Callum", "Niamh", "Erin",
)  # fmt: skip
_SURNAMES = (
    "Ackroyd", "Ahmed", "Atkinson", "Bailey", "Barker", "Clarke", "Crowther", "Dawson", "Ellis",
    "Fletcher", "Gill", "Haigh", "Iqbal", "Jackson", "Kaur", "Khan", "Lister", "Nowak", "Patel",
    "Quinn", "Rashid", "Shaw", "Singh", "Taylor", "Walsh", "Wright", "Young", "Zaman",
)  # fmt: skip
_SUBJECTS = ("Maths", "English", "Phonics", "Science", "History", "Geography", "Reading", "Art")
_YEARS = ("Reception", "Year 1", "Year 2", "Year 3", "Year 4", "Year 5", "Year 6")

# Lesson slots, local time (start, end); the first is the morning registration (a series).
_REGISTRATION = ((8, 45), (9, 0))
_LESSON_SLOTS = (
    ((9, 15), (10, 0)),
    ((10, 30), (11, 15)),
    ((13, 0), (13, 45)),
    ((14, 15), (15, 0)),
)
# The trust's central team: (key, job title, roles). TRUST_DSL sees every school's queue.
TRUST_DSL = "trust.dsl"
TRUST_CENTRAL: tuple[tuple[str, str, list[str]], ...] = (
    (TRUST_DSL, "Trust Designated Safeguarding Lead", ["dsl"]),
    ("trust.ceo", "Chief Executive Officer", ["slt"]),
)
# What share of class lessons carry each breach (drawn independently, seeded).
BREACH_RATES = {
    "pupil_chat": 0.04,
    "outside_joiner": 0.015,
    "lobby_everyone": 0.01,
    "pupil_recording": 0.005,
}
# The day's sessions besides class lessons, as shares of each school's sessions.
_SHARES = {
    "one_to_one": 0.15,
    "call": 0.05,
    "staff_meeting": 0.05,
    "chat": 0.03,
    "other": 0.02,
    "small_group": 0.01,
}
# Outside joiners who attend nothing in the scenario: benchmarks make them join live lessons.
LIVE_JOINERS = 100


@dataclass(frozen=True)
class TrustSize:
    """How big the trust is; the defaults are the issue's large trust."""

    schools: int = 50
    staff_per_school: int = 50
    pupils_per_school: int = 500
    sessions_per_school: int = 100

    @property
    def classes_per_school(self) -> int:
        by_pupils = max(1, round(self.pupils_per_school / PUPILS_PER_CLASS))
        # Six posts are not class teachers: head, deputy, DSL, two TAs, office.
        return max(1, min(by_pupils, self.staff_per_school - 6))

    @property
    def staff(self) -> int:
        return self.schools * self.staff_per_school

    @property
    def pupils(self) -> int:
        return self.schools * self.pupils_per_school

    @property
    def sessions(self) -> int:
        return self.schools * self.sessions_per_school


LARGE = TrustSize()


@dataclass
class TrustFacts:
    """What :func:`trust_scenario` generated, by kind."""

    sessions: Counter[str] = field(default_factory=Counter)  # kind -> count, today only
    breaches: Counter[str] = field(default_factory=Counter)  # kind -> count
    # Keys of today's live class lessons (running at ``now``), for run-time breaches.
    live_lessons: list[str] = field(default_factory=list)
    # Keys of class lessons still to come today.
    upcoming_lessons: list[str] = field(default_factory=list)
    # Live lessons held in a private meeting (meeting chat on), a subset of live_lessons.
    live_chat_lessons: list[str] = field(default_factory=list)
    # Live small-group sessions (a teacher and three pupils, no registration): if two pupils
    # leave, the teacher is alone with the third. Key -> (teacher, pupils).
    small_groups: dict[str, tuple[str, list[str]]] = field(default_factory=dict)
    # Outside joiner keys that attend nothing in the scenario.
    live_joiners: list[str] = field(default_factory=list)
    # Keys of lessons the scenario already puts a breach in.
    breach_sessions: set[str] = field(default_factory=set)
    # Lesson key -> (teacher key, class pupil keys).
    lesson_people: dict[str, tuple[str, list[str]]] = field(default_factory=dict)
    # Person keys: each school's DSL, SLT members, teachers and pupils by class (school/class).
    teachers: dict[str, str] = field(default_factory=dict)  # class key -> teacher key
    class_pupils: dict[str, list[str]] = field(default_factory=dict)  # class key -> pupil keys

    @property
    def total_sessions(self) -> int:
        return sum(self.sessions.values())


@dataclass(frozen=True)
class Trust:
    scenario: Scenario
    facts: TrustFacts
    size: TrustSize


def trust_scenario(
    size: TrustSize = LARGE, *, seed: int = 2026, now: str = DEFAULT_NOW, page_size: int = 100
) -> Trust:
    """The trust and its day; the same ``size``, ``seed`` and ``now`` give the same scenario.

    ``page_size`` is the fake tenant's default page size (Graph's default for users is 100).

    Raises:
        ValueError: a size is too small to build a school (fewer than 7 staff or 1 pupil).
        pydantic.ValidationError: only if this module and the scenario schema disagree.
    """
    if size.staff_per_school < 7 or size.pupils_per_school < 1 or size.schools < 1:
        raise ValueError("a school needs at least 7 staff and 1 pupil, and a trust one school")
    zone = ZoneInfo("Europe/London")
    local_now = resolve_time(now, now=datetime.now(UTC), zone=zone).astimezone(zone)
    builder = _TrustBuilder(
        size=size, rng=random.Random(seed), now_minutes=local_now.hour * 60 + local_now.minute
    )
    for school in range(size.schools):
        builder.school(school)
    for number in range(LIVE_JOINERS):
        builder.facts.live_joiners.append(builder.live_joiner(number))
    facts = builder.facts
    scenario = Scenario.model_construct(
        name="trust",
        description=(
            f"A multi-academy trust of {size.schools} primary schools ({size.staff} staff, "
            f"{size.pupils} pupils) on a remote-learning day with {facts.total_sessions} "
            "sessions."
        ),
        now=now,
        timezone="Europe/London",
        profile="bramham-shadwell",
        tenant=TenantSpec(
            id="5e0c7a41-2b9d-4c6e-8f13-a7d2b9e4c058",
            domain="northernlights.sch.uk",
            name="Northern Lights Primary Trust",
        ),
        app=AppSpec(),
        people=builder.people,
        groups=builder.groups(),
        teams=builder.teams,
        externals=builder.externals,
        meetings=builder.meetings,
        calls=builder.calls,
        chats=builder.chats,
        approved_activities=["reading", "Talk Times"],
        registrations=builder.registrations,
        consents=[],
        exemptions=[],
        packs=[],
        scope=[],
        school_day={},
        faults=FaultSpec(page_size=page_size),
        expect=[],
        expect_absent=[],
    )
    return Trust(scenario=scenario, facts=facts, size=size)


def validate(trust: Trust) -> Scenario:
    """The trust's scenario validated as a file would be (references, times); slow at full size.

    Raises:
        pydantic.ValidationError: a reference or time in the scenario is broken.
    """
    return Scenario.model_validate(trust.scenario.model_dump())


def _at(hour: int, minute: int, second: int = 0) -> str:
    return f"today {hour:02d}:{minute:02d}:{second:02d}"


def _shift(clock: tuple[int, int], seconds: int) -> str:
    total = clock[0] * 3600 + clock[1] * 60 + seconds
    total = max(0, min(total, 24 * 3600 - 1))
    hours, rest = divmod(total, 3600)
    return _at(hours, *divmod(rest, 60))


@dataclass
class _Class:
    key: str  # "s07-c03"
    name: str
    teacher: str
    pupils: list[str]
    school: str


@dataclass
class _TrustBuilder:
    size: TrustSize
    rng: random.Random
    now_minutes: int  # "now" as minutes after local midnight: what has ended, what is live
    people: list[PersonSpec] = field(default_factory=list)
    school_groups: list[GroupSpec] = field(default_factory=list)
    teams: list[TeamSpec] = field(default_factory=list)
    externals: list[ExternalJoinerSpec] = field(default_factory=list)
    meetings: list[MeetingSpec] = field(default_factory=list)
    calls: list[PeerCallSpec] = field(default_factory=list)
    chats: list[DirectChatSpec] = field(default_factory=list)
    registrations: list[RegistrationSpec] = field(default_factory=list)
    facts: TrustFacts = field(default_factory=TrustFacts)
    by_role: dict[str, list[str]] = field(default_factory=dict)

    def name(self) -> str:
        return f"{self.rng.choice(_FIRST)} {self.rng.choice(_SURNAMES)}"

    def person(self, key: str, kind: str, school: str, title: str, roles: list[str]) -> str:
        self.people.append(
            PersonSpec.model_construct(
                key=key,
                name=self.name(),
                kind=kind,
                id=None,
                upn=None,
                school=school,
                roles=roles,
                job_title=title,
            )
        )
        for role in roles:
            self.by_role.setdefault(role, []).append(key)
        return key

    # --- one school ---------------------------------------------------------------------------

    def school(self, number: int) -> None:
        size = self.size
        school = f"s{number:02d}"
        head = self.person(f"{school}.head", "staff", school, "Headteacher", ["slt"])
        deputy = self.person(
            f"{school}.deputy", "staff", school, "Deputy Head and Deputy DSL", ["slt", "deputy_dsl"]
        )
        dsl = self.person(f"{school}.dsl", "staff", school, "SENCo and DSL", ["dsl"])
        central = len(TRUST_CENTRAL) if number == 0 else 0
        if central:
            # The trust's central team (its safeguarding lead and CEO) works in every school;
            # two of the first school's posts are theirs, so the staff total stays as asked.
            for key, title, roles in TRUST_CENTRAL:
                self.person(key, "staff", school, title, roles)
        others = [
            self.person(f"{school}.st{index:02d}", "staff", school, "Teaching Assistant", [])
            for index in range(size.staff_per_school - 3 - central - size.classes_per_school)
        ]
        teachers = [
            self.person(f"{school}.t{index:02d}", "staff", school, "Class Teacher", ["teacher"])
            for index in range(size.classes_per_school)
        ]
        pupils = [
            self.person(f"{school}.p{index:04d}", "pupil", school, "Pupil", [])
            for index in range(size.pupils_per_school)
        ]
        classes: list[_Class] = []
        for index, teacher in enumerate(teachers):
            members = pupils[index :: len(teachers)]
            class_key = f"{school}-c{index:02d}"
            year = _YEARS[index * len(_YEARS) // len(teachers)]
            classes.append(_Class(class_key, f"{year} Class {index + 1}", teacher, members, school))
            self.facts.teachers[class_key] = teacher
            self.facts.class_pupils[class_key] = members
        staff = [head, deputy, dsl, *others, *teachers]
        self.directory(school, staff, classes)
        self.day(school, classes, staff, slt=[head, deputy], others=others)

    def directory(self, school: str, staff: list[str], classes: list[_Class]) -> None:
        class_groups = [
            GroupSpec.model_construct(
                key=school_class.key,
                name=f"{school.upper()} {school_class.name} Pupils",
                id=None,
                role=None,
                school=None,
                members=school_class.pupils,
            )
            for school_class in classes
        ]
        self.school_groups.extend(class_groups)
        self.school_groups.append(_group(f"{school}-staff", f"{school.upper()} Staff", staff))
        self.school_groups.append(
            _group(f"{school}-pupils", f"{school.upper()} Pupils", [c.key for c in classes])
        )
        school_group = _group(
            f"school-{school}",
            f"School {school.upper()}",
            [f"{school}-staff", f"{school}-pupils", "trust-central"],
        )
        self.school_groups.append(
            school_group.model_copy(update={"role": "school", "school": school})
        )
        for school_class in classes:
            self.teams.append(
                TeamSpec.model_construct(
                    key=f"team-{school_class.key}",
                    name=f"{school.upper()} {school_class.name}",
                    id=None,
                    school=school,
                    owners=[school_class.teacher],
                    members=school_class.pupils,
                    channels=[ChannelSpec.model_construct(key="general", name="General", id=None)],
                )
            )

    def groups(self) -> list[GroupSpec]:
        schools = [f"s{number:02d}" for number in range(self.size.schools)]
        central = [key for key, _title, _roles in TRUST_CENTRAL]
        trust_wide = [
            _group("trust-central", "Trust Central Team", central),
            _group(
                "all-staff",
                "All Staff",
                [*(f"{s}-staff" for s in schools), "trust-central"],
                role="staff",
            ),
            _group("all-pupils", "All Pupils", [f"{s}-pupils" for s in schools], role="pupils"),
            _group("slt", "Senior Leadership", self.by_role.get("slt", []), role="slt"),
            _group("dsl", "Designated Safeguarding Leads", self.by_role.get("dsl", []), role="dsl"),
            _group(
                "deputy-dsl",
                "Deputy Designated Safeguarding Leads",
                self.by_role.get("deputy_dsl", []),
                role="deputy_dsl",
            ),
        ]
        return [*trust_wide, *self.school_groups]

    # --- the day ------------------------------------------------------------------------------

    def day(
        self,
        school: str,
        classes: list[_Class],
        staff: list[str],
        *,
        slt: list[str],
        others: list[str],
    ) -> None:
        size = self.size
        budget = size.sessions_per_school
        # At least one of each kind, however small the school.
        extras = {kind: max(1, round(share * budget)) for kind, share in _SHARES.items()}
        lessons = max(0, budget - sum(extras.values()))
        # A school's timetable is a few minutes off its neighbours'.
        offset = self.rng.randint(-10, 10) * 60
        slots = [_REGISTRATION, *_LESSON_SLOTS]
        for index in range(lessons):
            school_class = classes[index % len(classes)]
            lesson_number = index // len(classes)
            slot_number = lesson_number % len(slots)
            self.lesson(school_class, lesson_number, slots[slot_number], offset)
        for index in range(extras["one_to_one"]):
            self.one_to_one(school, classes[index % len(classes)], others, slt, index)
        for index in range(extras["call"]):
            self.call(school, classes[index % len(classes)], index)
        for index in range(extras["staff_meeting"]):
            self.staff_meeting(school, staff, index)
        for index in range(extras["chat"]):
            self.chat(school, classes[index % len(classes)], index)
        for index in range(extras["small_group"]):
            self.small_group(school, classes[index % len(classes)], index)
        for index in range(extras["other"]):
            self.other_platform(school, classes[index % len(classes)], index)

    def attendance(
        self,
        start: tuple[int, int],
        end: tuple[int, int],
        offset: int,
        staff: list[str],
        pupils: list[str],
    ) -> list[AttendanceSpec]:
        """Join and leave times: adults a few minutes early and last out; pupils around the
        start and end, ten seconds apart, a few absent."""
        rng = self.rng
        present = [pupil for pupil in pupils if rng.random() > 0.06]
        rng.shuffle(present)
        records = [
            AttendanceSpec.model_construct(
                who=adult,
                intervals=[
                    (
                        _shift(start, offset - rng.randint(120, 300)),
                        _shift(end, offset + rng.randint(30, 60)),
                    )
                ],
            )
            for adult in staff
        ]
        for position, pupil in enumerate(present):
            records.append(
                AttendanceSpec.model_construct(
                    who=pupil,
                    intervals=[
                        (
                            _shift(start, offset - 90 + 2 * position + rng.randint(0, 5)),
                            _shift(end, offset - 60 + 2 * position + rng.randint(0, 4)),
                        )
                    ],
                )
            )
        return records

    def lesson(
        self,
        school_class: _Class,
        lesson_number: int,
        slot: tuple[tuple[int, int], tuple[int, int]],
        offset: int,
    ) -> None:
        rng = self.rng
        start, end = slot
        registration = slot == _REGISTRATION
        # Half the classes teach in their team's channel, half in private meetings.
        channel = not registration and int(school_class.key[-2:]) % 2 == 0
        subject = "Registration" if registration else rng.choice(_SUBJECTS)
        key = f"{school_class.key}-l{lesson_number}"
        settings = MeetingSettingsSpec(allow_meeting_chat="disabled" if channel else "enabled")
        chat: list[ChatMessageSpec] = []
        recordings: list[RecordingSpec] = []
        attendance = self.attendance(
            start, end, offset, [school_class.teacher], school_class.pupils
        )
        kind = "lesson_channel" if channel else "lesson_private"
        breaches: list[str] = []
        if not registration and attendance:
            pupils_present = [a.who for a in attendance[1:]]
            if pupils_present and rng.random() < BREACH_RATES["pupil_chat"] and not channel:
                chat.append(
                    ChatMessageSpec.model_construct(
                        at=_shift(start, offset + rng.randint(300, 1800)),
                        sender=rng.choice(pupils_present),
                        event=None,
                        text="can u hear me",
                        initiator=None,
                    )
                )
                breaches.append("pupil_chat")
            if rng.random() < BREACH_RATES["outside_joiner"]:
                joiner = self.outside_joiner(len(self.externals))
                attendance.append(
                    AttendanceSpec.model_construct(
                        who=joiner,
                        intervals=[
                            (
                                _shift(start, offset + rng.randint(300, 900)),
                                _shift(end, offset - rng.randint(0, 300)),
                            )
                        ],
                    )
                )
                breaches.append("outside_joiner")
            if rng.random() < BREACH_RATES["lobby_everyone"]:
                settings = settings.model_copy(update={"lobby_scope": "everyone"})
                breaches.append("lobby_everyone")
            if pupils_present and not channel and rng.random() < BREACH_RATES["pupil_recording"]:
                settings = settings.model_copy(update={"allowed_presenters": "everyone"})
                recordings.append(
                    RecordingSpec.model_construct(
                        kind="recording",
                        started_by=rng.choice(pupils_present),
                        at=_shift(start, offset + rng.randint(600, 1200)),
                        end=_shift(start, offset + rng.randint(1300, 1800)),
                    )
                )
                breaches.append("pupil_recording")
        meeting = MeetingSpec(
            key=key,
            subject=f"{school_class.name} - {subject}",
            organizer=school_class.teacher,
            start=_shift(start, offset),
            end=_shift(end, offset),
            invitees=[] if channel else [school_class.key],
            channel=f"team-{school_class.key}/general" if channel else None,
            series=f"{school_class.key}-registration-{lesson_number}" if registration else None,
            settings=settings,
            attendance=attendance,
            chat=chat,
            recordings=recordings,
        )
        self.meetings.append(meeting)
        self.facts.sessions[kind] += 1
        for breach in breaches:
            self.facts.breaches[breach] += 1
            self.facts.breach_sessions.add(key)
        start_minutes = start[0] * 60 + start[1] + offset // 60
        end_minutes = end[0] * 60 + end[1] + offset // 60
        self.facts.lesson_people[key] = (school_class.teacher, school_class.pupils)
        if start_minutes <= self.now_minutes < end_minutes:
            self.facts.live_lessons.append(key)
            if not channel and not registration:
                self.facts.live_chat_lessons.append(key)
        elif start_minutes > self.now_minutes:
            self.facts.upcoming_lessons.append(key)
        if registration:
            # Yesterday's occurrence of the series, outside a short look-back window.
            yesterday = meeting.model_copy(
                update={
                    "key": f"{key}-yesterday",
                    "start": meeting.start.replace("today", "yesterday"),
                    "end": meeting.end.replace("today", "yesterday"),
                    "attendance": [],
                    "chat": [],
                    "recordings": [],
                }
            )
            self.meetings.append(yesterday)

    def small_group(self, school: str, school_class: _Class, index: int) -> None:
        """A group of three pupils with their teacher, running from ten minutes before "now"
        to 35 minutes after it."""
        pupils = school_class.pupils[index * 3 : index * 3 + 3]
        key = f"{school}-group-{index:02d}"
        start = divmod(self.now_minutes - 10, 60)
        end = divmod(self.now_minutes + 35, 60)
        people = [school_class.teacher, *pupils]
        self.meetings.append(
            MeetingSpec(
                key=key,
                subject="Phonics group",
                organizer=school_class.teacher,
                start=_at(*start),
                end=_at(*end),
                invitees=pupils,
                attendance=[
                    AttendanceSpec.model_construct(
                        who=who, intervals=[(_shift(start, 30 * n), _at(*end))]
                    )
                    for n, who in enumerate(people)
                ],
            )
        )
        self.facts.sessions["small_group"] += 1
        self.facts.small_groups[key] = (school_class.teacher, pupils)

    def outside_joiner(self, number: int) -> str:
        kind = ("anonymous", "external", "phone")[number % 3]
        key = f"ext.{kind}.{number:04d}"
        self.externals.append(
            ExternalJoinerSpec.model_construct(
                key=key,
                kind=kind,
                name=f"Visitor {number}" if kind != "phone" else f"+44 7700 9{number:05d}",
                tenant_id=None,
                phone=f"+447700{number:06d}" if kind == "phone" else None,
                email=f"visitor{number}@example.org" if kind == "external" else None,
            )
        )
        return key

    def live_joiner(self, number: int) -> str:
        key = f"ext.live.{number:04d}"
        self.externals.append(
            ExternalJoinerSpec.model_construct(
                key=key,
                kind="anonymous",
                name=f"Guest {number}",
                tenant_id=None,
                phone=None,
                email=None,
            )
        )
        return key

    def one_to_one(
        self, school: str, school_class: _Class, others: list[str], slt: list[str], index: int
    ) -> None:
        rng = self.rng
        pupil = school_class.pupils[index % len(school_class.pupils)]
        adult = others[index % len(others)] if others and index % 3 else school_class.teacher
        hour = 9 + (index * 7) % 8  # 09:00 to 16:00
        start = (hour, 20 * (index % 3))
        end_minutes = start[0] * 60 + start[1] + 20
        end = divmod(end_minutes, 60)
        key = f"{school}-1to1-{index:02d}"
        registered = index % 3 != 2
        ended = end_minutes <= self.now_minutes
        attendance = (
            [
                AttendanceSpec.model_construct(
                    who=adult, intervals=[(_shift(start, -60), _shift(end, 30))]
                ),
                AttendanceSpec.model_construct(
                    who=pupil,
                    intervals=[
                        (_shift(start, rng.randint(0, 60)), _shift(end, -rng.randint(0, 60)))
                    ],
                ),
            ]
            if ended
            else []
        )
        self.meetings.append(
            MeetingSpec(
                key=key,
                subject="Reading one-to-one" if registered else "Catch-up",
                organizer=adult,
                start=_at(*start),
                end=_at(*end),
                invitees=[pupil],
                settings=MeetingSettingsSpec(allow_meeting_chat="disabled", lobby_scope="invited"),
                attendance=attendance,
            )
        )
        self.facts.sessions["one_to_one"] += 1
        if not registered:
            self.facts.breaches["unregistered_one_to_one"] += 1
            return
        self.registrations.append(
            RegistrationSpec.model_construct(
                key=f"reg-{key}",
                teacher=adult,
                pupil=pupil,
                activity="reading",
                meeting=key,
                starts_at=None,
                ends_at=None,
                status="approved",
                approved_by=slt[0],
                approved_at="now-5d",
                consent=ConsentSpec.model_construct(
                    granted_by="A Parent",
                    relationship="parent",
                    contact_email=None,
                    granted_at="now-14d",
                    method="online_form",
                    evidence_ref=f"Consent form {key}",
                    scope="one_to_one",
                    expires_at=None,
                    withdrawn_at=None,
                ),
            )
        )

    def call(self, school: str, school_class: _Class, index: int) -> None:
        pupil = school_class.pupils[(index * 5) % len(school_class.pupils)]
        start = (12, 5 * (index % 10))
        self.calls.append(
            PeerCallSpec.model_construct(
                key=f"{school}-call-{index:02d}",
                caller=school_class.teacher,
                callee=pupil,
                start=_at(*start),
                end=_shift(start, 300 + 30 * index),
                modalities=["audio", "video"],
            )
        )
        self.facts.sessions["call"] += 1
        self.facts.breaches["teacher_pupil_call"] += 1

    def staff_meeting(self, school: str, staff: list[str], index: int) -> None:
        rng = self.rng
        invited = rng.sample(staff, min(len(staff), 6))
        start = (12, 15) if index % 2 == 0 else (15, 45)
        end = (12, 45) if index % 2 == 0 else (16, 30)
        ended = end[0] * 60 + end[1] <= self.now_minutes
        self.meetings.append(
            MeetingSpec(
                key=f"{school}-staff-{index:02d}",
                subject="Phase meeting",
                organizer=invited[0],
                start=_at(*start),
                end=_at(*end),
                invitees=invited[1:],
                attendance=self.attendance(start, end, 0, invited, []) if ended else [],
            )
        )
        self.facts.sessions["staff_meeting"] += 1

    def chat(self, school: str, school_class: _Class, index: int) -> None:
        pupil = school_class.pupils[(index * 7 + 1) % len(school_class.pupils)]
        self.chats.append(
            DirectChatSpec.model_construct(
                key=f"{school}-chat-{index:02d}",
                members=[school_class.teacher, pupil],
                messages=[
                    ChatMessageSpec.model_construct(
                        at=_at(11, 10 + index),
                        sender=pupil,
                        event=None,
                        text="help",
                        initiator=None,
                    ),
                    ChatMessageSpec.model_construct(
                        at=_at(11, 12 + index),
                        sender=school_class.teacher,
                        event=None,
                        text="see Files",
                        initiator=None,
                    ),
                ],
                created="now-20d",
            )
        )
        self.facts.sessions["chat"] += 1
        self.facts.breaches["direct_chat"] += 1

    def other_platform(self, school: str, school_class: _Class, index: int) -> None:
        self.meetings.append(
            MeetingSpec(
                key=f"{school}-zoom-{index:02d}",
                subject="Author visit",
                organizer=school_class.teacher,
                start=_at(10, 0),
                end=_at(10, 45),
                invitees=[school_class.key],
                provider="unknown",
                body=f"Join Zoom: https://us06web.zoom.us/j/8{index:09d}",
            )
        )
        self.facts.sessions["other_platform"] += 1
        self.facts.breaches["other_platform"] += 1


def _group(key: str, name: str, members: list[str], *, role: str | None = None) -> GroupSpec:
    return GroupSpec.model_construct(
        key=key, name=name, id=None, role=role, school=None, members=members
    )
