"""The stored calendars: what is kept of an event, and how delta rounds are stored."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from remote_guard.collect.calendar_store import (
    CalendarEntry,
    CalendarStore,
    RoundResult,
    event_digest,
    slim_event,
)
from remote_guard.collect.collector import foreign_links, invitation_text
from remote_guard.collect.models import CalendarEventRow
from remote_guard.graph.models import Event, parse
from remote_guard.store.db import make_engine, migrate, session_factory

WINDOW = (datetime(2026, 11, 17, tzinfo=UTC), datetime(2026, 11, 27, tzinfo=UTC))
NOW = datetime(2026, 11, 18, 12, tzinfo=UTC)
MAILBOX = "11111111-1111-1111-1111-111111111111"


pytestmark = pytest.mark.database


@pytest.fixture
def db(database_url: str) -> sessionmaker[Session]:
    engine = make_engine(database_url)
    migrate(engine)
    return session_factory(engine)


def _raw(
    event_id: str, *, subject: str = "Reading", body: str = "", hour: int = 10
) -> dict[str, Any]:
    return {
        "@odata.etag": 'W/"x"',
        "id": event_id,
        "changeKey": "x",
        "subject": subject,
        "bodyPreview": body[:20],
        "body": {"contentType": "html", "content": body},
        "start": {"dateTime": f"2026-11-18T{hour:02d}:00:00.0000000", "timeZone": "UTC"},
        "end": {"dateTime": f"2026-11-18T{hour:02d}:30:00.0000000", "timeZone": "UTC"},
        "isOnlineMeeting": True,
        "location": {"displayName": "Microsoft Teams Meeting"},
        "lastModifiedDateTime": "2026-11-01T09:00:00Z",
        "categories": ["Blue"],
        "responseStatus": {"response": "organizer"},
    }


def _entry(raw: dict[str, Any]) -> CalendarEntry:
    body = raw.get("body", {}).get("content", "")
    return CalendarEntry.from_payload(MAILBOX, slim_event(raw, foreign_links(body)))


@pytest.mark.parametrize(
    "body",
    [
        "<p>Join on <a href='https://us06web.zoom.us/j/8123?pwd=secret'>Zoom</a>.</p>",
        "Meet at https://meet.google.com/abc-defg-hij, or skype:live:.cid.1234 if it fails.",
        "<a href='https://eur01.safelinks.protection.outlook.com/?url=https%3A%2F%2Fzoom.us%2Fj%2F9"
        "&data=x'>link</a> and https://teams.live.com/meet/9876?p=abc.",
        "Nothing but text about the lesson.",
    ],
)
def test_the_body_is_kept_only_as_its_meeting_links_and_reads_the_same(body: str) -> None:
    """What the collector finds in the stored event is what it finds in Graph's: the same
    links, and nothing else of the invitation's text."""
    raw = _raw("e1", body=body)
    slim = slim_event(raw, foreign_links(body))
    stored = parse(Event, slim, what="event")
    original = parse(Event, raw, what="event")
    assert foreign_links(invitation_text(stored)) == foreign_links(invitation_text(original))
    assert "bodyPreview" not in slim
    assert "pwd" not in str(slim)
    assert "lesson" not in str(slim)


def test_the_digest_ignores_saves_that_change_nothing_the_collector_reads() -> None:
    base = slim_event(_raw("e1"), [])
    touched = {**base, "lastModifiedDateTime": "2026-11-02T09:00:00Z"}
    renamed = {**base, "subject": "Reading (moved)"}
    assert event_digest(touched) == event_digest(base)
    assert event_digest(renamed) != event_digest(base)


def test_a_full_round_replaces_and_a_delta_round_changes_the_stored_events(
    db: sessionmaker[Session],
) -> None:
    store = CalendarStore(db)
    store.save(
        [
            RoundResult(
                MAILBOX,
                WINDOW,
                full=True,
                delta_link="https://graph/d1",
                changed={e.event_id: e for e in (_entry(_raw("e1")), _entry(_raw("e2", hour=9)))},
            )
        ],
        now=NOW,
    )
    assert [e.event_id for e in store.events([MAILBOX])[MAILBOX]] == ["e2", "e1"]
    first = store.syncs([MAILBOX])[MAILBOX]
    assert (first.delta_link, first.window, first.revision) == ("https://graph/d1", WINDOW, 1)

    store.save(
        [
            RoundResult(
                MAILBOX,
                WINDOW,
                full=False,
                delta_link="https://graph/d2",
                changed={"e1": _entry(_raw("e1", subject="Reading (moved)"))},
                removed={"e2", "never-stored"},
            )
        ],
        now=NOW,
    )
    events = store.events([MAILBOX])[MAILBOX]
    assert [(e.event_id, e.event.subject) for e in events] == [("e1", "Reading (moved)")]
    assert store.syncs([MAILBOX])[MAILBOX].revision == 2
    # A fresh store (another process) reads the same from the database.
    assert [e.event_id for e in CalendarStore(db).events([MAILBOX])[MAILBOX]] == ["e1"]


def test_a_round_without_changes_moves_the_link_only(db: sessionmaker[Session]) -> None:
    store = CalendarStore(db)
    entry = _entry(_raw("e1"))
    store.save([RoundResult(MAILBOX, WINDOW, True, "https://graph/d1", {"e1": entry})], now=NOW)
    # The same event again (a duplicate on a page, or a save that changed nothing we read).
    store.save(
        [RoundResult(MAILBOX, WINDOW, False, "https://graph/d2", {"e1": _entry(_raw("e1"))})],
        now=NOW,
    )
    sync = store.syncs([MAILBOX])[MAILBOX]
    assert (sync.delta_link, sync.revision) == ("https://graph/d2", 1)


def test_a_copy_in_memory_follows_a_change_made_by_another_process(
    db: sessionmaker[Session],
) -> None:
    mine, theirs = CalendarStore(db), CalendarStore(db)
    mine.save(
        [RoundResult(MAILBOX, WINDOW, True, "https://graph/d1", {"e1": _entry(_raw("e1"))})],
        now=NOW,
    )
    assert [e.event_id for e in mine.events([MAILBOX])[MAILBOX]] == ["e1"]
    theirs.save(
        [RoundResult(MAILBOX, WINDOW, False, "https://graph/d2", {}, removed={"e1"})], now=NOW
    )
    assert mine.events([MAILBOX])[MAILBOX] == []


def test_a_refused_link_is_forgotten_and_the_events_kept(db: sessionmaker[Session]) -> None:
    """Graph refused the stored link and the fresh round failed too: the next poll starts
    afresh, and until one succeeds the mailbox's events are still there to be found."""
    store = CalendarStore(db)
    store.save(
        [RoundResult(MAILBOX, WINDOW, True, "https://graph/d1", {"e1": _entry(_raw("e1"))})],
        now=NOW,
    )
    store.save([], stale=[MAILBOX], now=NOW)
    assert store.syncs([MAILBOX])[MAILBOX].delta_link is None
    assert [e.event_id for e in store.events([MAILBOX])[MAILBOX]] == ["e1"]
    with db() as session:
        assert session.scalars(select(CalendarEventRow.event_id)).all() == ["e1"]
