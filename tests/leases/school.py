"""A school whose polling is worth sharing: six staff mailboxes, and every kind of session a
shard boundary can cut through.

- a co-taught lesson on two teachers' calendars (found by two shards, read by one);
- a recurring lesson (two occurrences, one join URL) and a "Meet now" meeting found only in
  call records;
- a direct call, and two chats outside meetings, one with two teachers in it;
- one pupil posting in three teachers' lesson chats, so a pattern across sessions (stage 2,
  repeated_breaches) needs every shard's sessions;
- an upcoming one-to-one.

``now`` is 2026-11-18 16:00 UTC, as in the scenario library; the process test moves it to the
real clock.
"""

from __future__ import annotations

from typing import Any

NOW = "2026-11-18T16:00:00Z"
STAFF = ["t.jones", "t.patel", "t.khan", "t.smith", "t.brown", "h.head"]
PUPILS = [f"p{n}" for n in range(1, 9)]


def _at(day: int, hhmm: str) -> str:
    return f"2026-11-{day:02d}T{hhmm}:00Z"


def _lesson(
    key: str,
    organizer: str,
    day: int,
    hhmm: str,
    pupils: list[str],
    *,
    poster: str | None = None,
    staff: tuple[str, ...] = (),
    **extra: Any,
) -> dict[str, Any]:
    """A 30-minute lesson everyone attends throughout; ``poster`` writes in its chat."""
    hour, minute = (int(part) for part in hhmm.split(":"))
    end = f"{hour:02d}:{minute + 30:02d}" if minute < 30 else f"{hour + 1:02d}:{minute - 30:02d}"
    chat: list[dict[str, Any]] = [
        {"at": _at(day, f"{hour:02d}:{minute + 5:02d}"), "sender": organizer, "text": "Hello all"}
    ]
    if poster is not None:
        chat.append(
            {"at": _at(day, f"{hour:02d}:{minute + 6:02d}"), "sender": poster, "text": "hi"}
        )
    return {
        "key": key,
        "subject": f"Lesson {key}",
        "organizer": organizer,
        "start": _at(day, hhmm),
        "end": _at(day, end),
        "invitees": [*staff, *pupils],
        "attendance": [
            {"who": who, "intervals": [[_at(day, hhmm), _at(day, end)]]}
            for who in (organizer, *staff, *pupils)
        ],
        "chat": chat,
        **extra,
    }


def shared_school() -> dict[str, Any]:
    """The scenario as data (``parse_scenario`` reads it; the process test shifts its times)."""
    meetings = [
        _lesson("maths-16", "t.jones", 16, "10:00", ["p1", "p2", "p3"], poster="p1"),
        _lesson(
            "music-17", "t.patel", 17, "10:00", ["p1", "p2", "p3"], poster="p1", staff=("t.khan",)
        ),
        _lesson("science-18", "t.smith", 18, "10:00", ["p1", "p2", "p3"], poster="p1"),
        _lesson("reading-16", "t.brown", 16, "11:00", ["p4", "p5"], series="reading"),
        _lesson("reading-18", "t.brown", 18, "11:00", ["p4", "p5"], series="reading"),
        _lesson(
            "meet-now",
            "t.khan",
            18,
            "12:00",
            ["p6", "p7"],
            poster="p7",
            calendar=False,
            invitees=[],
        ),
        _lesson(
            "one-to-one-19",
            "h.head",
            19,
            "10:00",
            ["p8"],
            attendance=[],
            chat=[],
            settings={"allow_meeting_chat": "disabled"},
        ),
    ]
    return {
        "name": "shared school",
        "description": "six staff mailboxes whose polling several workers share",
        "now": NOW,
        "people": [
            *[
                {
                    "key": key,
                    "name": key.replace(".", " ").title(),
                    "kind": "staff",
                    "roles": ["slt"] if key == "h.head" else ["teacher"],
                }
                for key in STAFF
            ],
            *[{"key": key, "name": f"Pupil {key[1:]}.", "kind": "pupil"} for key in PUPILS],
        ],
        "groups": [
            {"key": "staff", "name": "All staff", "role": "staff", "members": STAFF},
            {"key": "pupils", "name": "All pupils", "role": "pupils", "members": PUPILS},
            {"key": "slt", "name": "SLT", "role": "slt", "members": ["h.head"]},
        ],
        "meetings": meetings,
        "calls": [
            {
                "key": "call-patel-p8",
                "caller": "t.patel",
                "callee": "p8",
                "start": _at(18, "13:00"),
                "end": _at(18, "13:08"),
            }
        ],
        "chats": [
            {
                "key": "group-chat",
                "members": ["t.jones", "t.smith", "p2"],
                "created": _at(18, "09:00"),
                "messages": [
                    {"at": _at(18, "09:05"), "sender": "p2", "text": "is there homework"},
                    {"at": _at(18, "09:07"), "sender": "t.smith", "text": "Yes, page 4"},
                ],
            },
            {
                "key": "brown-p5",
                "members": ["t.brown", "p5"],
                "created": _at(18, "08:00"),
                "messages": [{"at": _at(18, "08:30"), "sender": "p5", "text": "sir"}],
            },
        ],
        "expect": [],
    }
