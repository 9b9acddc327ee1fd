"""What the collector looks up that rarely changes, kept from one poll to the next.

The groups behind invited addresses with their members, and teams' members, are kept until the
directory is read again (``[poll] directory_refresh_minutes``), so that they and the people in
them are classified against the same directory. The school's teams and channels (to recognise a
channel meeting) are kept for a day, and read again sooner only for a channel they do not hold
(see ``Collector._channel``). Only what was read successfully is kept: a lookup that failed is
tried again at the next poll.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from remote_guard.collect.snapshot import ChannelRef, Person


@dataclass(frozen=True)
class InvitedGroup:
    """A group an invitation was addressed to, with the users in it."""

    id: str
    members: tuple[Person, ...]


@dataclass
class Lookups:
    """The kept lookups; :meth:`start` empties them when the directory they go with changes."""

    channels: dict[str, ChannelRef] | None = None  # by lower-case thread id; None: not read
    channels_read_at: datetime | None = None
    groups: dict[str, InvitedGroup | None] = field(default_factory=dict)  # None: no such group
    team_members: dict[str, tuple[Person, ...]] = field(default_factory=dict)
    directory_loaded_at: datetime | None = None

    def start(self, directory_loaded_at: datetime | None) -> None:
        """Begin a poll whose directory was read at ``directory_loaded_at``."""
        if directory_loaded_at is None or directory_loaded_at != self.directory_loaded_at:
            self.groups = {}
            self.team_members = {}
        self.directory_loaded_at = directory_loaded_at
