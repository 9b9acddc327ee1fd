"""What frugal polling remembers from one poll to the next.

- the staff calendars as change tracking left them (:class:`CalendarStore`);
- the directory and the lookups that go with it, read at most every
  ``[poll] directory_refresh_minutes`` (:class:`DirectoryCache`, :class:`Lookups`);
- what each stored session was built from (``sessions.source_digest``), so a session whose
  calendar entries, call records and place in its series are unchanged is not read again
  (:meth:`CollectMemory.stored_sessions`).

One ``CollectMemory`` belongs to one poller and lives as long as it does; everything in it that
matters is in the database too, so a restarted poller picks up where the last one left off
(reading the directory once more).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from remote_guard.collect.calendar_store import CalendarStore
from remote_guard.collect.lookups import Lookups
from remote_guard.collect.models import SessionRow
from remote_guard.directory.service import DirectoryCache


@dataclass(frozen=True)
class StoredSession:
    """What the store says about a session read in an earlier poll."""

    session_id: str
    source_digest: str | None
    last_collected_at: datetime
    final: bool
    has_snapshot: bool
    has_gaps: bool  # the latest snapshot has something in ``missing`` (or it is not known)


def source_digest(parts: Iterable[object]) -> str:
    """A digest of what a snapshot is built from (JSON-serialisable parts, in a fixed order)."""
    canonical = json.dumps(list(parts), sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


class CollectMemory:
    """The state frugal polling keeps for one tenant's poller."""

    def __init__(self, db: sessionmaker[Session], *, directory_refresh: timedelta) -> None:
        self.db = db
        self.calendars = CalendarStore(db)
        self.directory = DirectoryCache(directory_refresh)
        self.lookups = Lookups()
        # When the call records listed by the last poll started: where they are dense, the
        # next listing is cut into more slices, so that each is about one page (None: no
        # complete listing yet).
        self.call_record_starts: list[datetime] | None = None
        # Call records found not to concern the code of practice (no pupil in the call, or
        # pupils only), by id, with their version: not read again until Graph updates them.
        self.ignored_calls: dict[str, str] = {}

    def stored_sessions(self, session_ids: Collection[str]) -> dict[str, StoredSession]:
        """The stored state of those of ``session_ids`` that were read before.

        Raises:
            sqlalchemy.exc.SQLAlchemyError: the database cannot be read.
        """
        wanted = sorted(set(session_ids))
        found: dict[str, StoredSession] = {}
        with self.db() as session:
            # Chunked: a database limits how many values one IN (...) may hold.
            for index in range(0, len(wanted), 500):
                rows = session.execute(
                    select(
                        SessionRow.id,
                        SessionRow.source_digest,
                        SessionRow.last_collected_at,
                        SessionRow.final_collected_at,
                        SessionRow.latest_snapshot_id,
                        SessionRow.has_gaps,
                    ).where(SessionRow.id.in_(wanted[index : index + 500]))
                ).all()
                for session_id, digest, collected, final, snapshot, gaps in rows:
                    found[session_id] = StoredSession(
                        session_id=session_id,
                        source_digest=digest,
                        last_collected_at=collected,
                        final=final is not None,
                        has_snapshot=snapshot is not None,
                        has_gaps=gaps is not False,
                    )
        return found
