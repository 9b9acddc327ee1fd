"""Who was present when: the time-line arithmetic the one-to-one rules share."""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from datetime import datetime

from remote_guard.collect.snapshot import PersonKind, SessionSnapshot


@dataclass(frozen=True)
class Stretch:
    """A continuous stretch during which exactly one staff member and one pupil were present
    and no other person was."""

    staff_id: str
    pupil_id: str
    start: datetime
    end: datetime

    @property
    def seconds(self) -> float:
        return (self.end - self.start).total_seconds()


def merged_intervals(snapshot: SessionSnapshot) -> dict[str, list[tuple[datetime, datetime]]]:
    """Each present person's intervals, from every source, merged where they overlap.

    An interval still open when the data was read ends at ``collected_at``. Application (bot)
    identities are left out: they are not people in the room.
    """
    raw: dict[str, list[tuple[datetime, datetime]]] = {}
    for presence in snapshot.presence or []:
        person = snapshot.person(presence.person_id)
        if not person.is_human:
            continue
        for interval in presence.intervals:
            end = interval.end or snapshot.collected_at
            if end > interval.start:
                raw.setdefault(presence.person_id, []).append((interval.start, end))
    merged: dict[str, list[tuple[datetime, datetime]]] = {}
    for person_id, intervals in raw.items():
        intervals.sort()
        out: list[tuple[datetime, datetime]] = [intervals[0]]
        for start, end in intervals[1:]:
            last_start, last_end = out[-1]
            if start <= last_end:
                out[-1] = (last_start, max(last_end, end))
            else:
                out.append((start, end))
        merged[person_id] = out
    return merged


def alone_stretches(snapshot: SessionSnapshot) -> list[Stretch]:
    """Every stretch in which one staff member and one pupil were alone together."""
    intervals = merged_intervals(snapshot)
    boundaries = sorted({t for spans in intervals.values() for span in spans for t in span})
    stretches: list[Stretch] = []
    current: tuple[str, str, datetime, datetime] | None = None
    for left, right in itertools.pairwise(boundaries):
        present = [
            person_id
            for person_id, spans in intervals.items()
            if any(start <= left and right <= end for start, end in spans)
        ]
        pair = _staff_pupil_pair(snapshot, present)
        if pair is not None and current is not None and current[:2] == pair and current[3] == left:
            current = (pair[0], pair[1], current[2], right)
            continue
        if current is not None:
            stretches.append(Stretch(*current))
            current = None
        if pair is not None:
            current = (pair[0], pair[1], left, right)
    if current is not None:
        stretches.append(Stretch(*current))
    return stretches


def _staff_pupil_pair(snapshot: SessionSnapshot, present: list[str]) -> tuple[str, str] | None:
    if len(present) != 2:
        return None
    kinds = {snapshot.person(person_id).kind: person_id for person_id in present}
    if set(kinds) == {PersonKind.STAFF, PersonKind.PUPIL}:
        return kinds[PersonKind.STAFF], kinds[PersonKind.PUPIL]
    return None


def planned_pair(snapshot: SessionSnapshot) -> tuple[str, str] | None:
    """The staff member and pupil of a meeting planned for exactly the two of them, if it is."""
    if snapshot.channel is not None or snapshot.invitee_emails:
        return None
    if snapshot.organizer_id is None and snapshot.organizer_email:
        # An organiser nobody could identify (an outside address) is a third person.
        return None
    invited = set(snapshot.invitee_ids)
    if snapshot.organizer_id:
        invited.add(snapshot.organizer_id)
    humans = [pid for pid in invited if snapshot.person(pid).is_human]
    return _staff_pupil_pair(snapshot, humans)


def describe_duration(seconds: float) -> str:
    """``367`` -> ``6 min 7 s``."""
    whole = round(seconds)
    minutes, secs = divmod(whole, 60)
    if minutes and secs:
        return f"{minutes} min {secs} s"
    return f"{minutes} min" if minutes else f"{secs} s"
