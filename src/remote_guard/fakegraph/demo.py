"""The demo scenario: a remote-learning day at a two-school federation, relative to "now".

:func:`demo_scenario` builds, deterministically for a seed, the Bramham and Shadwell Federation
(two village primary schools sharing an executive head, a DSL and an IT technician) on a day of
remote learning. Every time is written relative to the moment the scenario is loaded (``now-3h``,
``now+40m``), so whatever the time of day the demo always has ended, live and upcoming sessions,
and the ended ones already carry attendance, call records and chat, so findings appear within
a minute of starting. The one exception is the out-of-hours session, written ``yesterday 19:30``
because it must be 19:30 local time; a time on the previous day is always in the past.

The seed only changes the pupils' names (and the seconds of their joining and leaving); which
pupil does what is fixed by position, so the ground truth follows the names.

Which session demonstrates which clause of the clause catalogue (WPS = Whingate, BSF = Bramham
and Shadwell). Live sessions run from ``now-20m`` to ``now+25m``. Rules written later can add
``expect`` rows for these sessions; the two existing rules have theirs below.

=====================================  =========================================================
Session key                            What happens, and the clause it demonstrates
=====================================  =========================================================
bramham-oak-maths                      Compliant: channel meeting, chat off, lobby organisation,
                                       teacher and TA; one pupil absent, one late.
bramham-willow-phonics                 Compliant: private meeting with the class group invited;
                                       only the teacher chats (plus system call messages)
                                       (BSF-A.pupil-remote.7, negative case).
bramham-hazel-english                  Two pupils post in the meeting chat, one of them twice;
                                       system callStarted/callEnded and a teacher message do
                                       not count (BSF-A.pupil-remote.7).
bramham-rowan-science                  Lesson tail: one pupil stays ~6 min alone with the teacher
                                       after the class leaves (BSF-A.staff-remote.3/4, S-1TO1).
bramham-beech-history                  An anonymous joiner and a parent's external-tenant account
                                       admitted from the lobby to a lesson with pupils
                                       (BSF-A.pupil-remote.8).
bramham-acorn-story                    Lobby bypass "everyone" and presenters "everyone"
                                       (BSF-A.pupil-remote.8 preventive; BSF-A.pupil-remote.2
                                       preventive: attendees who present can record).
bramham-oak-reading-1to1               Compliant one-to-one: "reading", approved registration,
                                       consent granted two weeks before (BSF-A.staff-remote.3/4).
bramham-hazel-catchup-1to1             Planned one-to-one (teacher + one pupil), no registration
                                       or consent, held for 20 min (BSF-A.staff-remote.3/4).
shadwell-puffins-talktimes-1to1        Registered "Talk Times" one-to-one whose consent was
                                       withdrawn the day before (BSF-A.staff-remote.4).
shadwell-kestrels-maths                A guest account (a parent) in a lesson with pupils
                                       (BSF-A.pupil-remote.8, S-EXT).
shadwell-owls-geography                A dial-in (phone) joiner, dial-in lobby bypass on
                                       (BSF-A.pupil-remote.8, WPS-3.4/BSF-3.4 PSTN leg).
shadwell-owls-author-visit             Zoom link in the invitation body, provider "unknown":
                                       pupil contact off the approved platform (WPS-3.4/BSF-3.4).
shadwell-owls-bikeability              Organised in another tenant by an outside coach, pupils
                                       invited (WPS-3.4/BSF-3.4, WPS-7.2.k/BSF-7.2.k).
shadwell-kestrels-spelling-evening     Staff-pupil session at 19:30 the previous evening
                                       (WPS-10.1 contact hours; optional for BSF).
shadwell-kingfishers-science           A pupil starts the recording, possible because presenters
                                       are "everyone" (BSF-A.pupil-remote.2; WPS-5.1/BSF-5.1);
                                       the system recording message is not pupil chat.
shadwell-wrens-phonics                 Compliant: channel meeting, chat off, teacher and TA.
shadwell-robins-reading (live)         A pupil posts in the chat while the lesson is on
                                       (BSF-A.pupil-remote.7); the head of school drops in for
                                       safeguarding monitoring (BSF-A.staff-remote.6).
bramham-willow-maths (live)            Compliant live lesson; one pupil drops out and rejoins.
bramham-beech-talktimes-1to1 (live)    Compliant live "Talk Times" one-to-one with the deputy DSL
                                       (BSF-A.staff-remote.3/4/5).
bramham-oak-spelling (upcoming)        Pupils invited and meeting chat enabled: pre-session
                                       warning (BSF-A.pupil-remote.7 preventive).
shadwell-robins-reading-1to1 (upc.)    Planned one-to-one, no registration or consent:
                                       pre-session breach (BSF-A.staff-remote.3/4).
bramham-rowan-reading-1to1 (upc.)      Planned one-to-one with approved registration and consent:
                                       compliant (BSF-A.staff-remote.3/4).
shadwell-kingfishers-maths (tomorrow)  Compliant channel meeting, chat off.
bramham-hazel-phonics (tomorrow)       Compliant channel meeting, chat off.
bramham-acorn-music (cancelled)        Cancelled lesson: nothing to check.
federation-staff-briefing              Staff only; staff chat is not pupil chat.
call-owls-teacher-pupil                Peer-to-peer Teams call, teacher and pupil, 9 min
                                       (BSF-A.staff-remote.3/4, WPS-3.1/BSF-3.1 proxy).
call-kingfishers-pupils                Peer-to-peer call between two pupils: no staff member.
call-staff-pearson-whitley             Peer-to-peer call between two staff members.
chat-rowan-teacher-pupil               Direct oneOnOne chat, teacher and pupil (WPS-3.1/BSF-3.1,
                                       WPS-3.4/BSF-3.4 proxy); not a meeting chat.
=====================================  =========================================================
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal

from remote_guard.fakegraph.scenario import (
    AttendanceSpec,
    ChannelSpec,
    ChatMessageSpec,
    ConsentSpec,
    DirectChatSpec,
    ExpectationSpec,
    ExternalJoinerSpec,
    GroupSpec,
    MeetingSettingsSpec,
    MeetingSpec,
    PeerCallSpec,
    PersonSpec,
    RecordingSpec,
    RegistrationSpec,
    Scenario,
    TeamSpec,
    When,
)

PUPIL_CHAT = "pupil_meeting_chat"
ONE_TO_ONE = "one_to_one_without_consent"

_RoleName = Literal["teacher", "slt", "dsl", "deputy_dsl"]
_SystemEvent = Literal["callStarted", "callEnded", "callRecording"]

_MINUTE = 60
_HOUR = 3600
_DAY = 86400

_GIRLS = (
    "Olivia", "Amelia", "Isla", "Ava", "Ivy", "Freya", "Lily", "Florence", "Mia", "Willow",
    "Rosie", "Sophia", "Isabella", "Grace", "Daisy", "Sienna", "Poppy", "Elsie", "Emily", "Ella",
    "Evelyn", "Phoebe", "Sofia", "Evie", "Charlotte", "Harper", "Millie", "Matilda", "Maya",
    "Sophie", "Alice", "Emilia", "Ruby", "Aria", "Maisie", "Esme", "Layla", "Hannah", "Ellie",
    "Zara", "Aisha", "Maryam", "Niamh", "Erin", "Imogen", "Martha", "Nancy", "Iris", "Eliza",
    "Harriet", "Amira", "Zainab", "Lottie", "Bethany", "Hollie", "Jessica", "Lola", "Orla",
    "Scarlett", "Thea",
)  # fmt: skip
_BOYS = (
    "Oliver", "George", "Harry", "Noah", "Jack", "Leo", "Arthur", "Muhammad", "Oscar", "Charlie",
    "Jacob", "Thomas", "Henry", "Freddie", "Alfie", "Theo", "William", "Archie", "Joshua",
    "Alexander", "James", "Isaac", "Edward", "Lucas", "Tommy", "Finley", "Max", "Logan", "Ethan",
    "Teddy", "Benjamin", "Arlo", "Joseph", "Sebastian", "Harrison", "Elijah", "Adam", "Daniel",
    "Samuel", "Louie", "Mason", "Reuben", "Albie", "Rory", "Jude", "Hugo", "Dylan", "Zachary",
    "Ronnie", "Riley", "Frankie", "Toby", "Ibrahim", "Yusuf", "Ollie", "Kai", "Callum", "Ryan",
    "Jayden", "Harvey",
)  # fmt: skip
_SURNAMES = (
    "Ackroyd", "Ahmed", "Akhtar", "Atkinson", "Bailey", "Barker", "Brook", "Clarke", "Crowther",
    "Dawson", "Ellis", "Fletcher", "Gill", "Haigh", "Hall", "Iqbal", "Jackson", "Kaur", "Kelly",
    "Khan", "Lister", "Mahmood", "Marshall", "Moorhouse", "Newton", "Nowak", "Parkin", "Patel",
    "Quinn", "Rashid", "Robinson", "Sagar", "Shaw", "Singh", "Sutcliffe", "Taylor", "Thornton",
    "Varley", "Walsh", "Whiteley", "Wright", "Young", "Zaman",
)  # fmt: skip
_PARENT_FIRST_NAMES = (
    "Sarah", "Claire", "Gemma", "Rebecca", "Nadia", "Amy", "Rukhsana", "Kirsty", "Mark", "Paul",
    "Imran", "Lee",
)  # fmt: skip

_OTHER_TENANT_PARENT = "3b8e5f21-6c4d-4a97-8e1f-0d2c7a9b6e54"
_OTHER_TENANT_CYCLING = "c41d7e09-2a8f-4b3c-9d65-7e1a0f4b2c88"


@dataclass(frozen=True)
class _Class:
    school: str
    key: str  # e.g. "oak"
    name: str  # e.g. "Oak Class"
    year: str  # e.g. "Year 3"
    teacher: str  # person key
    size: int


@dataclass(frozen=True)
class _Staff:
    key: str
    name: str
    job_title: str
    school: str | None  # None: works across the federation
    roles: tuple[_RoleName, ...] = ()


_SCHOOL_NAMES = {
    "bramham": "Bramham Primary School",
    "shadwell": "Shadwell Primary School",
}

_STAFF = (
    _Staff("h.ashworth", "Helen Ashworth", "Executive Headteacher", None, ("slt",)),
    _Staff("d.pearson", "David Pearson", "Head of School, Bramham", "bramham", ("slt",)),
    _Staff("p.chauhan", "Priya Chauhan", "Head of School, Shadwell", "shadwell", ("slt",)),
    _Staff(
        "j.whitley", "Joanne Whitley", "SENDCo and Designated Safeguarding Lead", None, ("dsl",)
    ),
    _Staff("t.ridley", "Tom Ridley", "Learning Mentor and Deputy DSL", None, ("deputy_dsl",)),
    _Staff("l.kitching", "Laura Kitching", "Reception Teacher", "bramham", ("teacher",)),
    _Staff("s.hirst", "Sam Hirst", "Year 1 Teacher", "bramham", ("teacher",)),
    _Staff("r.dunn", "Rachel Dunn", "Year 2 Teacher", "bramham", ("teacher",)),
    _Staff("b.fairbairn", "Ben Fairbairn", "Year 3 Teacher", "bramham", ("teacher",)),
    _Staff("e.clegg", "Emma Clegg", "Year 4 Teacher", "bramham", ("teacher",)),
    _Staff("c.metcalfe", "Chris Metcalfe", "Year 5/6 Teacher", "bramham", ("teacher",)),
    _Staff("h.booth", "Hannah Booth", "Reception Teacher", "shadwell", ("teacher",)),
    _Staff("a.sharma", "Anita Sharma", "Year 1 Teacher", "shadwell", ("teacher",)),
    _Staff("j.oldroyd", "Jess Oldroyd", "Year 2 Teacher", "shadwell", ("teacher",)),
    _Staff("m.pickles", "Matthew Pickles", "Year 3 Teacher", "shadwell", ("teacher",)),
    _Staff("c.holroyd", "Claire Holroyd", "Year 4 Teacher", "shadwell", ("teacher",)),
    _Staff("i.hussain", "Imran Hussain", "Year 5/6 Teacher", "shadwell", ("teacher",)),
    _Staff("k.wood", "Karen Wood", "Teaching Assistant", "bramham"),
    _Staff("d.senior", "Dawn Senior", "Teaching Assistant", "bramham"),
    _Staff("n.begum", "Nazia Begum", "Teaching Assistant", "shadwell"),
    _Staff("g.lowe", "Gareth Lowe", "Network Manager and IT Technician", None),
)

_CLASSES = (
    _Class("bramham", "acorn", "Acorn Class", "Reception", "l.kitching", 9),
    _Class("bramham", "willow", "Willow Class", "Year 1", "s.hirst", 10),
    _Class("bramham", "hazel", "Hazel Class", "Year 2", "r.dunn", 11),
    _Class("bramham", "oak", "Oak Class", "Year 3", "b.fairbairn", 10),
    _Class("bramham", "rowan", "Rowan Class", "Year 4", "e.clegg", 12),
    _Class("bramham", "beech", "Beech Class", "Year 5/6", "c.metcalfe", 11),
    _Class("shadwell", "wrens", "Wrens Class", "Reception", "h.booth", 8),
    _Class("shadwell", "robins", "Robins Class", "Year 1", "a.sharma", 10),
    _Class("shadwell", "puffins", "Puffins Class", "Year 2", "j.oldroyd", 9),
    _Class("shadwell", "kingfishers", "Kingfishers Class", "Year 3", "m.pickles", 11),
    _Class("shadwell", "kestrels", "Kestrels Class", "Year 4", "c.holroyd", 10),
    _Class("shadwell", "owls", "Owls Class", "Year 5/6", "i.hussain", 12),
)

_CLASS_BY_KEY = {school_class.key: school_class for school_class in _CLASSES}

# Teaching assistants co-own the class teams of the classes they support.
_CLASS_TAS = {"oak": ("k.wood",), "acorn": ("d.senior",), "wrens": ("n.begum",)}


def _externals() -> list[ExternalJoinerSpec]:
    return [
        ExternalJoinerSpec(key="anon.kieran", kind="anonymous", name="Kieran"),
        ExternalJoinerSpec(
            key="ext.s.greenwood",
            kind="external",
            name="Stuart Greenwood",
            tenant_id=_OTHER_TENANT_PARENT,
            email="stuart.greenwood@airevalleyengineering.example",
        ),
        ExternalJoinerSpec(
            key="phone.owls.grandparent",
            kind="phone",
            name="+44 7700 9****18",
            phone="+447700900318",  # Ofcom's drama range: never a real number
        ),
        ExternalJoinerSpec(
            key="ext.coach.b.travis",
            kind="external",
            name="Ben Travis (Ridings Cycle Training)",
            tenant_id=_OTHER_TENANT_CYCLING,
            email="ben.travis@ridingscycletraining.example",
        ),
    ]


def _rel(seconds: int) -> When:
    """A time expression ``seconds`` from now, in the largest whole unit that fits."""
    if seconds == 0:
        return "now"
    sign = "+" if seconds > 0 else "-"
    size = abs(seconds)
    for unit, unit_seconds in (("d", _DAY), ("h", _HOUR), ("m", _MINUTE)):
        if size % unit_seconds == 0:
            return f"now{sign}{size // unit_seconds}{unit}"
    return f"now{sign}{size}s"


def _yesterday(seconds_after_midnight: int) -> When:
    """A local wall-clock time on the previous day, e.g. ``yesterday 19:30:00``."""
    hours, rest = divmod(seconds_after_midnight, _HOUR)
    minutes, seconds = divmod(rest, _MINUTE)
    return f"yesterday {hours:02d}:{minutes:02d}:{seconds:02d}"


# Who was present when, in seconds on one time line (from now, or after midnight yesterday).
_Offsets = dict[str, list[tuple[int, int]]]


def _attendance(offsets: _Offsets, at: Callable[[int], When] = _rel) -> list[AttendanceSpec]:
    return [
        AttendanceSpec(who=who, intervals=[(at(start), at(end)) for start, end in intervals])
        for who, intervals in offsets.items()
    ]


def _lesson_offsets(
    rng: random.Random,
    *,
    start: int,
    end: int,
    staff: Sequence[str],
    pupils: Sequence[str],
    must_attend: Sequence[str] = (),
    absentees: int = 1,
) -> _Offsets:
    """Join and leave times for a class lesson with no one-to-one stretch over twenty seconds.

    The lead adult joins a few minutes early and leaves last; pupils arrive about ten seconds
    apart around the start and leave about six seconds apart at the end, so the first and the
    last pupil are alone with the teacher for seconds only. One pupil not in ``must_attend``
    arrives six to nine minutes late, when the others are already there.
    """
    optional = [pupil for pupil in pupils if pupil not in must_attend]
    away = set(rng.sample(optional, absentees)) if absentees else set()
    attendees = [pupil for pupil in pupils if pupil not in away]
    rng.shuffle(attendees)
    offsets: _Offsets = {staff[0]: [(start - rng.randint(150, 300), end + 30 + rng.randint(0, 30))]}
    for helper in staff[1:]:
        offsets[helper] = [(start - rng.randint(60, 120), end + rng.randint(0, 20))]
    for index, pupil in enumerate(attendees):
        joined = start - 90 + 10 * index + rng.randint(0, 5)
        left = end - 60 + 6 * index + rng.randint(0, 4)
        offsets[pupil] = [(joined, left)]
    late_candidates = [pupil for pupil in attendees[2:] if pupil not in must_attend]
    if late_candidates:
        late = rng.choice(late_candidates)
        offsets[late] = [(start + rng.randint(360, 540), offsets[late][0][1])]
    return offsets


def _system(at: When, event: _SystemEvent, initiator: str | None = None) -> ChatMessageSpec:
    return ChatMessageSpec(at=at, sender="system", event=event, text="", initiator=initiator)


def _said(at: When, sender: str, text: str) -> ChatMessageSpec:
    return ChatMessageSpec(at=at, sender=sender, text=text)


def _chat_off() -> MeetingSettingsSpec:
    return MeetingSettingsSpec(allow_meeting_chat="disabled")


@dataclass(frozen=True)
class _Pupil:
    key: str
    first: str
    surname: str

    @property
    def display(self) -> str:
        return f"{self.first} {self.surname[0]}."


def _make_pupils(rng: random.Random) -> dict[str, list[_Pupil]]:
    """Pupils per class key, with unique keys ``first.initial`` (hence unique display names)."""
    first_names = [*_GIRLS, *_BOYS]
    rng.shuffle(first_names)
    taken: set[str] = set()
    by_class: dict[str, list[_Pupil]] = {}
    name_index = 0
    for school_class in _CLASSES:
        pupils: list[_Pupil] = []
        while len(pupils) < school_class.size:
            first = first_names[name_index % len(first_names)]
            name_index += 1
            surname = rng.choice(_SURNAMES)
            key = f"{first}.{surname[0]}".lower()
            if key not in taken:
                taken.add(key)
                pupils.append(_Pupil(key=key, first=first, surname=surname))
        by_class[school_class.key] = pupils
    return by_class


def demo_scenario(*, seed: int = 7) -> Scenario:
    """The demo federation and its remote-learning day; the same ``seed`` gives the same scenario.

    Raises:
        pydantic.ValidationError: only if this module and the scenario schema disagree.
    """
    day = _DemoDay(rng=random.Random(seed))
    day.ended_lessons()
    day.ended_specials()
    day.live_lessons()
    day.upcoming_lessons()
    day.one_to_ones()
    day.calls_and_chats()
    return Scenario(
        name="demo",
        description=(
            "Bramham and Shadwell Federation: a remote-learning day relative to now, with "
            "compliant lessons and at least one instance of each breach the rules look for."
        ),
        people=day.people(),
        groups=day.groups(),
        teams=day.teams(),
        externals=_externals(),
        meetings=day.meetings,
        calls=day.calls,
        chats=day.chats,
        registrations=day.registrations,
        expect=day.expect,
        expect_absent=day.expect_absent,
    )


@dataclass
class _DemoDay:
    """Collects the day's sessions, registrations and ground truth as they are written."""

    rng: random.Random
    pupils: dict[str, list[_Pupil]] = field(default_factory=dict)
    meetings: list[MeetingSpec] = field(default_factory=list)
    calls: list[PeerCallSpec] = field(default_factory=list)
    chats: list[DirectChatSpec] = field(default_factory=list)
    registrations: list[RegistrationSpec] = field(default_factory=list)
    expect: list[ExpectationSpec] = field(default_factory=list)
    expect_absent: list[ExpectationSpec] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.pupils = _make_pupils(self.rng)

    # --- helpers ----------------------------------------------------------------------------

    def pupil(self, class_key: str, index: int) -> _Pupil:
        return self.pupils[class_key][index]

    def class_keys(self, class_key: str) -> list[str]:
        return [pupil.key for pupil in self.pupils[class_key]]

    def breach(self, rule: str, session: str, subject: str | None) -> None:
        self.expect.append(ExpectationSpec(rule=rule, session=session, subject=subject))

    def absent(self, rule: str, session: str, subject: str | None) -> None:
        self.expect_absent.append(ExpectationSpec(rule=rule, session=session, subject=subject))

    def class_offsets(
        self,
        class_key: str,
        start: int,
        end: int,
        *,
        must_attend: Sequence[str] = (),
        absentees: int = 1,
    ) -> _Offsets:
        return _lesson_offsets(
            self.rng,
            start=start,
            end=end,
            staff=[_CLASS_BY_KEY[class_key].teacher, *_CLASS_TAS.get(class_key, ())],
            pupils=self.class_keys(class_key),
            must_attend=must_attend,
            absentees=absentees,
        )

    def lesson(
        self,
        key: str,
        class_key: str,
        topic: str,
        start: int,
        end: int,
        *,
        channel_meeting: bool = True,
        settings: MeetingSettingsSpec | None = None,
        offsets: _Offsets | None = None,
        chat: Sequence[ChatMessageSpec] = (),
        recordings: Sequence[RecordingSpec] = (),
        cancelled: bool = False,
    ) -> None:
        """A class lesson: in the class team's General channel, or privately with the class
        group invited."""
        school_class = _CLASS_BY_KEY[class_key]
        self.meetings.append(
            MeetingSpec(
                key=key,
                subject=f"{school_class.year} {school_class.name} - {topic}",
                organizer=school_class.teacher,
                start=_rel(start),
                end=_rel(end),
                invitees=[] if channel_meeting else [f"{school_class.school}-{class_key}"],
                channel=(
                    f"team-{school_class.school}-{class_key}/general" if channel_meeting else None
                ),
                cancelled=cancelled,
                settings=settings or MeetingSettingsSpec(),
                attendance=_attendance(offsets or {}),
                chat=list(chat),
                recordings=list(recordings),
            )
        )

    def one_to_one(
        self, key: str, subject: str, *, staff: str, who: _Pupil, start: int, end: int
    ) -> None:
        """A planned one-to-one (the adult and one pupil invited), held as planned if past."""
        offsets: _Offsets = {}
        if start < 0:
            offsets = {
                staff: [(start - self.rng.randint(60, 120), end + self.rng.randint(10, 40))],
                who.key: [(start + self.rng.randint(0, 90), end - self.rng.randint(0, 60))],
            }
        self.meetings.append(
            MeetingSpec(
                key=key,
                subject=subject,
                organizer=staff,
                start=_rel(start),
                end=_rel(end),
                invitees=[who.key],
                settings=MeetingSettingsSpec(allow_meeting_chat="disabled", lobby_scope="invited"),
                attendance=_attendance(offsets),
            )
        )

    def consent(
        self, who: _Pupil, *, granted_at: When, withdrawn_at: When | None = None
    ) -> ConsentSpec:
        return ConsentSpec(
            granted_by=f"{self.rng.choice(_PARENT_FIRST_NAMES)} {who.surname}",
            relationship="parent",
            granted_at=granted_at,
            method="online_form",
            evidence_ref=f"Consent form OTO-{who.key}",
            withdrawn_at=withdrawn_at,
        )

    # --- the day ----------------------------------------------------------------------------

    def ended_lessons(self) -> None:
        start, end = -4 * _HOUR, -3 * _HOUR - 15 * _MINUTE
        self.lesson(
            "bramham-oak-maths",
            "oak",
            "Maths: column addition",
            start,
            end,
            settings=_chat_off(),
            offsets=self.class_offsets("oak", start, end),
        )
        self.absent(PUPIL_CHAT, "bramham-oak-maths", None)
        self.absent(ONE_TO_ONE, "bramham-oak-maths", None)

        start, end = -3 * _HOUR - 30 * _MINUTE, -2 * _HOUR - 50 * _MINUTE
        willow_pupil = self.pupil("willow", 0).key
        self.lesson(
            "bramham-willow-phonics",
            "willow",
            "Phonics: Phase 5 sounds",
            start,
            end,
            channel_meeting=False,
            offsets=self.class_offsets("willow", start, end, must_attend=[willow_pupil]),
            chat=[
                _system(_rel(start - 3 * _MINUTE), "callStarted", "s.hirst"),
                _said(
                    _rel(start + _MINUTE),
                    "s.hirst",
                    "Good morning Willow Class! Microphones off until I ask, please.",
                ),
                _said(
                    _rel(start + 25 * _MINUTE),
                    "s.hirst",
                    "Brilliant work today. Your phonics sheet is in the Files tab.",
                ),
                _system(_rel(end + _MINUTE), "callEnded"),
            ],
        )
        self.absent(PUPIL_CHAT, "bramham-willow-phonics", "s.hirst")
        self.absent(PUPIL_CHAT, "bramham-willow-phonics", willow_pupil)

        start, end = -2 * _HOUR - 30 * _MINUTE, -1 * _HOUR - 50 * _MINUTE
        chatty, chatty_too = self.pupil("hazel", 0), self.pupil("hazel", 1)
        self.lesson(
            "bramham-hazel-english",
            "hazel",
            "English: writing instructions",
            start,
            end,
            offsets=self.class_offsets(
                "hazel", start, end, must_attend=[chatty.key, chatty_too.key]
            ),
            chat=[
                _system(_rel(start - 2 * _MINUTE), "callStarted", "r.dunn"),
                _said(
                    _rel(start + _MINUTE),
                    "r.dunn",
                    "Morning Hazel Class! Today we're writing instructions for a jam sandwich.",
                ),
                _said(_rel(start + 12 * _MINUTE), chatty.key, "miss my mic isnt working"),
                _said(_rel(start + 12 * _MINUTE + 40), chatty.key, "can u hear me now"),
                _said(_rel(start + 21 * _MINUTE), chatty_too.key, f"hi {chatty.first} lol"),
                _said(
                    _rel(start + 22 * _MINUTE),
                    "r.dunn",
                    "Remember, we don't use the chat in lessons. Put your hand up instead.",
                ),
                _system(_rel(end + 20), "callEnded"),
            ],
        )
        self.breach(PUPIL_CHAT, "bramham-hazel-english", chatty.key)
        self.breach(PUPIL_CHAT, "bramham-hazel-english", chatty_too.key)
        self.absent(PUPIL_CHAT, "bramham-hazel-english", "r.dunn")
        self.absent(ONE_TO_ONE, "bramham-hazel-english", chatty.key)

        start, end = -2 * _HOUR, -1 * _HOUR - 20 * _MINUTE
        stayer = self.pupil("rowan", 3).key
        rowan = self.class_offsets("rowan", start, end, must_attend=[stayer])
        for who, intervals in rowan.items():
            if who not in (stayer, "e.clegg"):
                # Everyone else has gone by the scheduled end ...
                rowan[who] = [(joined, min(left, end)) for joined, left in intervals]
        # ... but one pupil stays behind, alone with the teacher, for six minutes.
        rowan[stayer] = [(rowan[stayer][0][0], end + 6 * _MINUTE)]
        rowan["e.clegg"] = [(rowan["e.clegg"][0][0], end + 6 * _MINUTE + 20)]
        self.lesson(
            "bramham-rowan-science",
            "rowan",
            "Science: states of matter",
            start,
            end,
            settings=_chat_off(),
            offsets=rowan,
        )
        self.breach(ONE_TO_ONE, "bramham-rowan-science", stayer)
        for other in self.class_keys("rowan"):
            if other != stayer:
                self.absent(ONE_TO_ONE, "bramham-rowan-science", other)

        start, end = -1 * _HOUR - 30 * _MINUTE, -50 * _MINUTE
        beech = self.class_offsets("beech", start, end)
        beech["anon.kieran"] = [(start + 6 * _MINUTE, start + 19 * _MINUTE)]
        beech["ext.s.greenwood"] = [(start + 9 * _MINUTE, start + 31 * _MINUTE)]
        self.lesson(
            "bramham-beech-history",
            "beech",
            "History: the Anglo-Saxons",
            start,
            end,
            channel_meeting=False,
            settings=_chat_off(),
            offsets=beech,
        )
        self.absent(ONE_TO_ONE, "bramham-beech-history", None)

        start, end = -5 * _HOUR, -4 * _HOUR - 30 * _MINUTE
        self.lesson(
            "bramham-acorn-story",
            "acorn",
            "Story time: The Gruffalo",
            start,
            end,
            settings=MeetingSettingsSpec(
                allow_meeting_chat="disabled", lobby_scope="everyone", allowed_presenters="everyone"
            ),
            offsets=self.class_offsets("acorn", start, end, absentees=2),
        )

        start, end = -3 * _HOUR, -2 * _HOUR - 40 * _MINUTE
        self.lesson(
            "shadwell-wrens-phonics",
            "wrens",
            "Phonics: Set 1 sounds",
            start,
            end,
            settings=_chat_off(),
            offsets=self.class_offsets("wrens", start, end),
        )
        self.absent(ONE_TO_ONE, "shadwell-wrens-phonics", None)

        start, end = -4 * _HOUR - 30 * _MINUTE, -3 * _HOUR - 45 * _MINUTE
        kestrels = self.class_offsets("kestrels", start, end)
        kestrels["guest.l.marsh"] = [(start + 3 * _MINUTE, end)]
        self.lesson(
            "shadwell-kestrels-maths",
            "kestrels",
            "Maths: times tables",
            start,
            end,
            settings=_chat_off(),
            offsets=kestrels,
        )

        start, end = -3 * _HOUR - 20 * _MINUTE, -2 * _HOUR - 40 * _MINUTE
        owls = self.class_offsets("owls", start, end)
        owls["phone.owls.grandparent"] = [(start + 2 * _MINUTE, start + 25 * _MINUTE)]
        self.lesson(
            "shadwell-owls-geography",
            "owls",
            "Geography: rivers of Yorkshire",
            start,
            end,
            channel_meeting=False,
            settings=MeetingSettingsSpec(allow_meeting_chat="disabled", dial_in_bypass=True),
            offsets=owls,
        )

        start, end = -1 * _HOUR - 45 * _MINUTE, -1 * _HOUR - 5 * _MINUTE
        recorder = self.pupil("kingfishers", 4).key
        self.lesson(
            "shadwell-kingfishers-science",
            "kingfishers",
            "Science: rocks and soils",
            start,
            end,
            channel_meeting=False,
            # Presenters "everyone" is what let a pupil start the recording.
            settings=MeetingSettingsSpec(allowed_presenters="everyone"),
            offsets=self.class_offsets("kingfishers", start, end, must_attend=[recorder]),
            chat=[
                _system(_rel(start - 2 * _MINUTE), "callStarted", "m.pickles"),
                _said(
                    _rel(start + 30),
                    "m.pickles",
                    "Welcome Kingfishers! Have your rock samples ready, please.",
                ),
                _system(_rel(start + 14 * _MINUTE), "callRecording", recorder),
                _system(_rel(end + 30), "callEnded"),
            ],
            recordings=[
                RecordingSpec(
                    started_by=recorder,
                    at=_rel(start + 10 * _MINUTE),
                    end=_rel(start + 14 * _MINUTE),
                )
            ],
        )
        # The recording notice in the chat is a system message, not the pupil chatting.
        self.absent(PUPIL_CHAT, "shadwell-kingfishers-science", recorder)

    def ended_specials(self) -> None:
        """Sessions that are not ordinary lessons: off Teams, external, evening, staff only."""
        self.meetings.append(
            MeetingSpec(
                key="shadwell-owls-author-visit",
                subject="Owls Class - Author visit on Zoom",
                organizer="i.hussain",
                start=_rel(-6 * _HOUR),
                end=_rel(-5 * _HOUR - 15 * _MINUTE),
                invitees=["shadwell-owls"],
                is_online=False,
                provider="unknown",
                location="Zoom",
                body=(
                    "Our visiting author will read from her new book and answer questions.\n"
                    "Join Zoom Meeting https://us06web.zoom.us/j/84512345678?pwd=VGhpc0lzRmFrZQ\n"
                    "Meeting ID: 845 1234 5678  Passcode: 482913"
                ),
                call_record=False,
                attendance_report=False,
            )
        )
        self.meetings.append(
            MeetingSpec(
                key="shadwell-owls-bikeability",
                subject="Bikeability Level 2 - theory session",
                organizer="ext.coach.b.travis",
                start=_rel(-2 * _HOUR - 10 * _MINUTE),
                end=_rel(-1 * _HOUR - 40 * _MINUTE),
                invitees=["i.hussain", *self.class_keys("owls")[:8]],
                # It lives in the coach's tenant: the school sees the invitation only.
                call_record=False,
                attendance_report=False,
            )
        )

        evening_start = 19 * _HOUR + 30 * _MINUTE  # seconds after midnight, local time
        evening_pupils = self.class_keys("kestrels")[:3]
        evening: _Offsets = {
            "c.holroyd": [(evening_start - 120, evening_start + 30 * _MINUTE + 40)]
        }
        for index, who in enumerate(evening_pupils):
            evening[who] = [
                (evening_start - 30 + 15 * index, evening_start + 30 * _MINUTE - 20 + 5 * index)
            ]
        self.meetings.append(
            MeetingSpec(
                key="shadwell-kestrels-spelling-evening",
                subject="Kestrels spelling catch-up (extra session)",
                organizer="c.holroyd",
                start=_yesterday(evening_start),
                end=_yesterday(evening_start + 30 * _MINUTE),
                invitees=evening_pupils,
                settings=_chat_off(),
                attendance=_attendance(evening, _yesterday),
            )
        )
        for who in evening_pupils:
            self.absent(ONE_TO_ONE, "shadwell-kestrels-spelling-evening", who)

        start, end = -7 * _HOUR, -6 * _HOUR - 40 * _MINUTE
        briefing_staff = ["h.ashworth", "d.pearson", "p.chauhan", "j.whitley", "t.ridley", "g.lowe"]
        self.meetings.append(
            MeetingSpec(
                key="federation-staff-briefing",
                subject="Federation staff briefing - remote learning day",
                organizer="h.ashworth",
                start=_rel(start),
                end=_rel(end),
                invitees=["all-staff"],
                attendance=_attendance(
                    _lesson_offsets(
                        self.rng, start=start, end=end, staff=briefing_staff, pupils=[], absentees=0
                    )
                ),
                chat=[
                    _said(
                        _rel(start + 2 * _MINUTE),
                        "h.ashworth",
                        "Reminder: one-to-ones only once they are registered and consent is in.",
                    ),
                    _said(
                        _rel(start + 4 * _MINUTE),
                        "g.lowe",
                        "Lobby on class meetings should be 'People in my org', not 'Everyone'.",
                    ),
                ],
            )
        )
        self.absent(PUPIL_CHAT, "federation-staff-briefing", None)

    def live_lessons(self) -> None:
        start, end = -20 * _MINUTE, 25 * _MINUTE
        live_chatter = self.pupil("robins", 2).key
        robins = self.class_offsets("robins", start, end, must_attend=[live_chatter])
        robins["p.chauhan"] = [(-12 * _MINUTE, -4 * _MINUTE)]  # a safeguarding drop-in
        self.lesson(
            "shadwell-robins-reading",
            "robins",
            "Reading: Owl Babies",
            start,
            end,
            offsets=robins,
            chat=[
                _system(_rel(start - 3 * _MINUTE), "callStarted", "a.sharma"),
                _said(_rel(start + _MINUTE), "a.sharma", "Hello Robins! Find your reading books."),
                _said(_rel(-6 * _MINUTE), live_chatter, "i finished the book"),
            ],
        )
        self.breach(PUPIL_CHAT, "shadwell-robins-reading", live_chatter)
        self.absent(PUPIL_CHAT, "shadwell-robins-reading", "a.sharma")

        wobbly = self.pupil("willow", 5).key
        willow = self.class_offsets("willow", start, end, must_attend=[wobbly])
        joined, left = willow[wobbly][0]
        willow[wobbly] = [(joined, -9 * _MINUTE), (-7 * _MINUTE, left)]  # the Wi-Fi dropped
        self.lesson(
            "bramham-willow-maths",
            "willow",
            "Maths: number bonds to 10",
            start,
            end,
            settings=_chat_off(),
            offsets=willow,
        )
        self.absent(ONE_TO_ONE, "bramham-willow-maths", wobbly)

    def upcoming_lessons(self) -> None:
        # Pupils invited and chat left on: a pre-session warning for the chat settings rule.
        self.lesson(
            "bramham-oak-spelling",
            "oak",
            "Spelling: the suffix -ly",
            40 * _MINUTE,
            1 * _HOUR + 20 * _MINUTE,
            channel_meeting=False,
        )
        self.absent(PUPIL_CHAT, "bramham-oak-spelling", None)
        self.lesson(
            "shadwell-kingfishers-maths",
            "kingfishers",
            "Maths: measuring length",
            _DAY,
            _DAY + 45 * _MINUTE,
            settings=_chat_off(),
        )
        self.lesson(
            "bramham-hazel-phonics",
            "hazel",
            "Phonics: alternative spellings",
            _DAY + _HOUR,
            _DAY + _HOUR + 40 * _MINUTE,
            settings=_chat_off(),
        )
        self.lesson(
            "bramham-acorn-music",
            "acorn",
            "Music and movement",
            3 * _HOUR,
            3 * _HOUR + 30 * _MINUTE,
            settings=_chat_off(),
            cancelled=True,
        )

    def one_to_ones(self) -> None:
        """Planned one-to-ones, registered or not: ended, live and upcoming."""
        reader = self.pupil("oak", 5)
        self.one_to_one(
            "bramham-oak-reading-1to1",
            "Reading with Mrs Wood",
            staff="k.wood",
            who=reader,
            start=-1 * _HOUR - 10 * _MINUTE,
            end=-55 * _MINUTE,
        )
        self.registrations.append(
            RegistrationSpec(
                key="reg-oak-reading",
                teacher="k.wood",
                pupil=reader.key,
                activity="reading",
                meeting="bramham-oak-reading-1to1",
                approved_by="d.pearson",
                approved_at=_rel(-6 * _DAY),
                consent=self.consent(reader, granted_at=_rel(-14 * _DAY)),
            )
        )
        self.absent(ONE_TO_ONE, "bramham-oak-reading-1to1", reader.key)

        catch_up = self.pupil("hazel", 4)
        self.one_to_one(
            "bramham-hazel-catchup-1to1",
            "Maths catch-up",
            staff="r.dunn",
            who=catch_up,
            start=-50 * _MINUTE,
            end=-30 * _MINUTE,
        )
        self.breach(ONE_TO_ONE, "bramham-hazel-catchup-1to1", catch_up.key)

        talker = self.pupil("puffins", 1)
        self.one_to_one(
            "shadwell-puffins-talktimes-1to1",
            "Talk Times - Puffins Class",
            staff="j.oldroyd",
            who=talker,
            start=-3 * _HOUR,
            end=-2 * _HOUR - 45 * _MINUTE,
        )
        self.registrations.append(
            RegistrationSpec(
                key="reg-puffins-talktimes",
                teacher="j.oldroyd",
                pupil=talker.key,
                activity="Talk Times",
                meeting="shadwell-puffins-talktimes-1to1",
                approved_by="p.chauhan",
                approved_at=_rel(-20 * _DAY),
                consent=self.consent(
                    talker, granted_at=_rel(-30 * _DAY), withdrawn_at=_rel(-1 * _DAY)
                ),
            )
        )
        self.breach(ONE_TO_ONE, "shadwell-puffins-talktimes-1to1", talker.key)

        live_talker = self.pupil("beech", 2)
        self.one_to_one(
            "bramham-beech-talktimes-1to1",
            "Talk Times - Beech Class",
            staff="t.ridley",
            who=live_talker,
            start=-10 * _MINUTE,
            end=10 * _MINUTE,
        )
        self.registrations.append(
            RegistrationSpec(
                key="reg-beech-talktimes",
                teacher="t.ridley",
                pupil=live_talker.key,
                activity="Talk Times",
                meeting="bramham-beech-talktimes-1to1",
                approved_by="d.pearson",
                approved_at=_rel(-10 * _DAY),
                consent=self.consent(live_talker, granted_at=_rel(-21 * _DAY)),
            )
        )
        self.absent(ONE_TO_ONE, "bramham-beech-talktimes-1to1", live_talker.key)

        unregistered = self.pupil("robins", 6)
        self.one_to_one(
            "shadwell-robins-reading-1to1",
            "Reading catch-up - Robins Class",
            staff="a.sharma",
            who=unregistered,
            start=1 * _HOUR + 30 * _MINUTE,
            end=1 * _HOUR + 50 * _MINUTE,
        )
        self.breach(ONE_TO_ONE, "shadwell-robins-reading-1to1", unregistered.key)

        upcoming_reader = self.pupil("rowan", 7)
        self.one_to_one(
            "bramham-rowan-reading-1to1",
            "Reading with Mrs Clegg",
            staff="e.clegg",
            who=upcoming_reader,
            start=2 * _HOUR,
            end=2 * _HOUR + 20 * _MINUTE,
        )
        self.registrations.append(
            RegistrationSpec(
                key="reg-rowan-reading",
                teacher="e.clegg",
                pupil=upcoming_reader.key,
                activity="reading",
                meeting="bramham-rowan-reading-1to1",
                approved_by="d.pearson",
                approved_at=_rel(-2 * _DAY),
                consent=self.consent(upcoming_reader, granted_at=_rel(-10 * _DAY)),
            )
        )
        self.absent(ONE_TO_ONE, "bramham-rowan-reading-1to1", upcoming_reader.key)

    def calls_and_chats(self) -> None:
        """Direct calls and a 1:1 chat outside any meeting."""
        called = self.pupil("owls", 0).key
        caller, callee = self.pupil("kingfishers", 8).key, self.pupil("kingfishers", 9).key
        self.calls.extend(
            [
                PeerCallSpec(
                    key="call-owls-teacher-pupil",
                    caller="i.hussain",
                    callee=called,
                    start=_rel(-1 * _HOUR - 25 * _MINUTE),
                    end=_rel(-1 * _HOUR - 16 * _MINUTE),
                ),
                PeerCallSpec(
                    key="call-kingfishers-pupils",
                    caller=caller,
                    callee=callee,
                    start=_rel(-55 * _MINUTE),
                    end=_rel(-40 * _MINUTE),
                ),
                PeerCallSpec(
                    key="call-staff-pearson-whitley",
                    caller="d.pearson",
                    callee="j.whitley",
                    start=_rel(-35 * _MINUTE),
                    end=_rel(-28 * _MINUTE),
                    modalities=["audio"],
                ),
            ]
        )
        self.breach(ONE_TO_ONE, "call-owls-teacher-pupil", called)
        self.absent(ONE_TO_ONE, "call-kingfishers-pupils", caller)
        self.absent(ONE_TO_ONE, "call-kingfishers-pupils", callee)

        chatter = self.pupil("rowan", 1)
        self.chats.append(
            DirectChatSpec(
                key="chat-rowan-teacher-pupil",
                members=["e.clegg", chatter.key],
                created=_rel(-3 * _DAY),
                messages=[
                    _said(_rel(-1 * _HOUR), chatter.key, "Mrs Clegg I cant open the science sheet"),
                    _said(
                        _rel(-58 * _MINUTE),
                        "e.clegg",
                        f"Hi {chatter.first}, it's in the Files tab of our class team.",
                    ),
                ],
            )
        )
        # A 1:1 chat is not a meeting chat, and messages are not time spent together in a call.
        self.absent(PUPIL_CHAT, "chat-rowan-teacher-pupil", chatter.key)
        self.absent(ONE_TO_ONE, "chat-rowan-teacher-pupil", chatter.key)

    # --- the directory ----------------------------------------------------------------------

    def people(self) -> list[PersonSpec]:
        people = [
            PersonSpec(
                key=staff.key,
                name=staff.name,
                kind="staff",
                school=staff.school,
                roles=list(staff.roles),
                job_title=staff.job_title,
            )
            for staff in _STAFF
        ]
        for school_class in _CLASSES:
            people.extend(
                PersonSpec(
                    key=pupil.key,
                    name=pupil.display,
                    kind="pupil",
                    school=school_class.school,
                    job_title=f"Pupil, {school_class.year} {school_class.name}",
                )
                for pupil in self.pupils[school_class.key]
            )
        people.append(
            PersonSpec(
                key="guest.l.marsh",
                name="Lisa Marsh (Guest)",
                kind="guest",
                upn="lisa.marsh_outlook.example#EXT#@bramhamshadwell.sch.uk",
                job_title="Parent (PTA guest account)",
            )
        )
        return people

    def groups(self) -> list[GroupSpec]:
        federation_wide = [staff.key for staff in _STAFF if staff.school is None]
        groups = [
            GroupSpec(
                key="all-staff",
                name="All Staff",
                role="staff",
                members=["bramham-staff", "shadwell-staff", *federation_wide],
            ),
            GroupSpec(
                key="all-pupils",
                name="All Pupils",
                role="pupils",
                members=["bramham-pupils", "shadwell-pupils"],
            ),
            GroupSpec(key="slt", name="Senior Leadership Team", role="slt", members=_with("slt")),
            GroupSpec(
                key="dsl", name="Designated Safeguarding Lead", role="dsl", members=_with("dsl")
            ),
            GroupSpec(
                key="deputy-dsl",
                name="Deputy Designated Safeguarding Leads",
                role="deputy_dsl",
                members=_with("deputy_dsl"),
            ),
        ]
        for school, school_name in _SCHOOL_NAMES.items():
            groups.append(
                GroupSpec(
                    key=f"{school}-staff",
                    name=f"{school_name} Staff",
                    members=[staff.key for staff in _STAFF if staff.school == school],
                )
            )
            class_groups = [
                GroupSpec(
                    key=f"{school}-{school_class.key}",
                    name=f"{school_name} {school_class.year} {school_class.name} Pupils",
                    members=self.class_keys(school_class.key),
                )
                for school_class in _CLASSES
                if school_class.school == school
            ]
            groups.extend(class_groups)
            groups.append(
                GroupSpec(
                    key=f"{school}-pupils",
                    name=f"{school_name} Pupils",
                    members=[group.key for group in class_groups],
                )
            )
            groups.append(
                GroupSpec(
                    key=f"school-{school}",
                    name=school_name,
                    role="school",
                    school=school,
                    members=[f"{school}-staff", f"{school}-pupils", *federation_wide],
                )
            )
        return groups

    def teams(self) -> list[TeamSpec]:
        teams = [
            TeamSpec(
                key=f"team-{school_class.school}-{school_class.key}",
                name=(
                    f"{_SCHOOL_NAMES[school_class.school].removesuffix(' Primary School')} "
                    f"{school_class.year} {school_class.name}"
                ),
                school=school_class.school,
                owners=[school_class.teacher, *_CLASS_TAS.get(school_class.key, ())],
                members=self.class_keys(school_class.key),
                channels=[ChannelSpec(key="general", name="General")],
            )
            for school_class in _CLASSES
        ]
        leads = ("h.ashworth", "g.lowe")
        teams.append(
            TeamSpec(
                key="team-federation-staff",
                name="Federation Staff",
                owners=list(leads),
                members=[staff.key for staff in _STAFF if staff.key not in leads],
                channels=[
                    ChannelSpec(key="general", name="General"),
                    ChannelSpec(key="remote-learning", name="Remote Learning"),
                ],
            )
        )
        return teams


def _with(role: _RoleName) -> list[str]:
    return [staff.key for staff in _STAFF if role in staff.roles]
