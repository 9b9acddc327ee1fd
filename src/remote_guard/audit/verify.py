"""Checking the audit trail: recompute the chain from the table, and compare the file with it.

Every entry is checked in order: its sequence number follows the previous one, its content
matches the digest its hash covers (or it was blanked by an audited purge), its previous-hash
field is the previous entry's hash, and its hash is the SHA-256 (HMAC with the key) of its
header. The head row must name the last entry, and the JSON-lines file must hold the same
entries, line for line. The first problem, by sequence number, is the first bad entry.
"""

from __future__ import annotations

import bisect
import contextlib
import json
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from sqlalchemy import Engine, select

from remote_guard.audit.chain import Header, content_digest, entry_hash
from remote_guard.audit.models import GENESIS_HASH, HEAD_ROW_ID, AuditEntryRow, AuditHeadRow
from remote_guard.audit.trail import TrailConfig, config_for, row_header, row_line

PURGE_ACTION = "retention.purged"
_ENTRIES = AuditEntryRow.__table__
_HEAD = AuditHeadRow.__table__
_RECENT = 4096  # hashes remembered to say which entry a misplaced one follows


@dataclass(frozen=True)
class Problem:
    """One thing wrong; ``seq`` is the entry it concerns (None: the trail as a whole)."""

    seq: int | None
    where: Literal["table", "file"]
    message: str

    def __str__(self) -> str:
        place = "the database" if self.where == "table" else "the JSON-lines file"
        subject = f"entry #{self.seq}" if self.seq is not None else "the trail"
        return f"{subject} ({place}): {self.message}"


@dataclass
class VerifyReport:
    entries: int = 0
    head_seq: int = 0
    head_hash: str = GENESIS_HASH
    keyed: int = 0
    purged: int = 0
    file: Path | None = None
    file_lines: int = 0
    problems: list[Problem] = field(default_factory=list)
    more_problems: bool = False  # stopped counting at the limit

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def first(self) -> Problem | None:
        """The first bad entry: the problem with the lowest sequence number."""
        if not self.problems:
            return None
        return min(
            self.problems,
            key=lambda p: (p.seq if p.seq is not None else 1 << 62, p.where != "table"),
        )


def _parse_cutoff(text: str) -> datetime | None:
    try:
        return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
    except ValueError:
        return None


def _diff_keys(line: str, expected: str) -> str:
    try:
        found: dict[str, Any] = json.loads(line)
    except ValueError:
        return "it is not valid JSON"
    wanted: dict[str, Any] = json.loads(expected)
    keys = sorted(k for k in set(found) | set(wanted) if found.get(k) != wanted.get(k))
    return "fields differ: " + ", ".join(keys) if keys else "the text differs"


class _Checker:
    """Walks the entries in order, keeping only what the next entry is checked against."""

    def __init__(
        self,
        config: TrailConfig,
        purges: list[tuple[int, str]],
        file_lines: Iterator[bytes] | None,
        max_problems: int,
    ) -> None:
        self.config = config
        self.report = VerifyReport(file=config.file)
        self.limit = max_problems
        self.previous_seq, self.previous_hash = 0, GENESIS_HASH
        self.seen_keyed = self.reported_no_key = False
        self.recent: dict[str, int] = {}
        self.order: deque[str] = deque()
        self.file_lines = file_lines
        self.file_stopped = file_lines is None
        # A blanked entry is legitimate only if a later purge's cut-off is after it: for each
        # purge, the latest cut-off of it and every purge after it.
        self.purge_seqs = [seq for seq, _ in purges]
        self.latest_cutoff: list[datetime | None] = [None] * len(purges)
        running: datetime | None = None
        for index in range(len(purges) - 1, -1, -1):
            cutoff = _parse_cutoff(purges[index][1])
            if cutoff is not None and (running is None or cutoff > running):
                running = cutoff
            self.latest_cutoff[index] = running

    def add(self, seq: int | None, where: Literal["table", "file"], message: str) -> None:
        if len(self.report.problems) >= self.limit:
            self.report.more_problems = True
            return
        self.report.problems.append(Problem(seq, where, message))

    def entry(self, row: Any) -> None:
        seq = int(row.seq)
        self.report.entries += 1
        gap = seq != self.previous_seq + 1
        if gap:
            self.add(
                self.previous_seq + 1,
                "table",
                f"is missing: the entry after #{self.previous_seq} is #{seq} (entries deleted)",
            )
        self._content(row, seq)
        if not gap and row.prev_hash != self.previous_hash:
            named = self.recent.get(row.prev_hash)
            hint = (
                f"it names #{named}'s hash instead (entries reordered or inserted)"
                if named is not None
                else "entries were deleted, inserted or reordered here"
            )
            self.add(
                seq,
                "table",
                f"does not follow entry #{self.previous_seq}: its previous-hash field is not "
                f"#{self.previous_seq}'s hash; {hint}",
            )
        header = row_header(row)
        self._hash(row, seq, header)
        if not self.file_stopped:
            self._file_line(row, seq, header)
        self.recent[row.hash] = seq
        self.order.append(row.hash)
        if len(self.order) > _RECENT:
            self.recent.pop(self.order.popleft(), None)
        self.previous_seq, self.previous_hash = seq, row.hash

    def _content(self, row: Any, seq: int) -> None:
        """The content against the digest the hash covers, or a purge that removed it."""
        if row.payload is None and row.salt is None:
            self.report.purged += 1
            index = bisect.bisect_right(self.purge_seqs, seq)
            cover = self.latest_cutoff[index] if index < len(self.latest_cutoff) else None
            if cover is None or row.at >= cover:
                self.add(
                    seq,
                    "table",
                    "has no content, but no later audited purge removed it (content deleted)",
                )
        elif row.payload is None or row.salt is None:
            self.add(seq, "table", "has half of its content removed (content edited)")
        elif content_digest(row.salt, row.payload) != row.content_digest:
            self.add(
                seq,
                "table",
                "its content does not match the digest its hash covers (content edited)",
            )

    def _hash(self, row: Any, seq: int, header: Header) -> None:
        key: bytes | None = None
        if row.keyed:
            self.seen_keyed = True
            self.report.keyed += 1
            key = self.config.key
            if key is None:
                if not self.reported_no_key:
                    self.reported_no_key = True
                    self.add(
                        seq,
                        "table",
                        "is signed with the audit key (HMAC) and cannot be checked without it; "
                        "give the key ([audit] hmac_key_file or REMOTE_GUARD_AUDIT__HMAC_KEY)",
                    )
                return
        elif self.seen_keyed and self.config.key is not None:
            self.add(
                seq,
                "table",
                "is not signed with the key although earlier entries are "
                "(written by someone without the key)",
            )
        if entry_hash(header, key) != row.hash:
            self.add(
                seq,
                "table",
                "its hash does not match its fields (the entry was edited"
                + (", or forged without the key)" if key is not None else ")"),
            )

    def _file_line(self, row: Any, seq: int, header: Header) -> None:
        raw = next(self.file_lines, None) if self.file_lines is not None else None
        if raw is None:
            self.add(
                seq,
                "file",
                f"is missing: the file ends after line {self.report.file_lines} (the file was "
                "cut short)",
            )
            self.file_stopped = True
            return
        self.report.file_lines += 1
        line = self.report.file_lines
        text = raw.decode("utf-8", errors="replace")
        expected = row_line(row, header)
        if not text.endswith("\n"):
            self.add(seq, "file", f"line {line} is cut short (no line end)")
            self.file_stopped = True
        elif text[:-1] != expected:
            try:
                found_seq = json.loads(text).get("seq")
            except (ValueError, AttributeError):
                found_seq = seq
            if found_seq != seq:
                self.add(
                    seq,
                    "file",
                    f"line {line} holds entry #{found_seq} where #{seq} belongs (lines deleted, "
                    "inserted or reordered)",
                )
                self.file_stopped = True
            else:
                self.add(
                    seq,
                    "file",
                    f"line {line} differs from the database ({_diff_keys(text[:-1], expected)})",
                )

    def finish(self, head: tuple[int, str] | None) -> VerifyReport:
        report = self.report
        report.head_seq, report.head_hash = self.previous_seq, self.previous_hash
        if head is None:
            self.add(None, "table", "the head row (audit_head) is missing")
        elif head[0] > self.previous_seq:
            self.add(
                self.previous_seq + 1,
                "table",
                f"is missing: the head records #{head[0]} but the table ends at "
                f"#{self.previous_seq} (the last entries were deleted)",
            )
        elif head[0] < self.previous_seq:
            self.add(
                head[0] + 1,
                "table",
                f"is beyond the head, which records #{head[0]} (entries appended without "
                "taking the lock: forged)",
            )
        elif head[1] != self.previous_hash:
            self.add(self.previous_seq, "table", "its hash is not the one the head row records")
        if self.config.file is not None:
            if self.file_lines is None and report.entries:
                self.add(1, "file", f"is missing: the file {self.config.file} does not exist")
            elif (
                self.file_lines is not None
                and not self.file_stopped
                and next(self.file_lines, None) is not None
            ):
                self.add(
                    self.previous_seq + 1,
                    "file",
                    f"line {report.file_lines + 1} holds an entry the database does not "
                    "have (entries deleted from the database, or forged in the file)",
                )
        if self.config.key is not None and report.entries and not self.seen_keyed:
            self.add(
                None,
                "table",
                "a key is configured but no entry is signed with it (the trail was rewritten "
                "without the key, or the key was set after the last entry)",
            )
        return report


def verify(
    engine: Engine, config: TrailConfig | None = None, *, max_problems: int = 50
) -> VerifyReport:
    """Check the whole trail; the report names every problem found, the first bad entry first.

    Raises:
        sqlalchemy.exc.SQLAlchemyError: the database cannot be read.
        OSError: the JSON-lines file exists but cannot be read.
    """
    config = config or config_for(engine)
    with contextlib.ExitStack() as stack:
        file_lines: Iterator[bytes] | None = None
        if config.file is not None and config.file.exists():
            file_lines = iter(stack.enter_context(config.file.open("rb")))
        connection = stack.enter_context(engine.connect())
        purges = [
            (int(seq), str(text))
            for seq, text in connection.execute(
                select(_ENTRIES.c.seq, _ENTRIES.c.object_id)
                .where(_ENTRIES.c.action == PURGE_ACTION)
                .order_by(_ENTRIES.c.seq)
            )
        ]
        found = connection.execute(
            select(_HEAD.c.seq, _HEAD.c.hash).where(_HEAD.c.id == HEAD_ROW_ID)
        ).one_or_none()
        checker = _Checker(config, purges, file_lines, max_problems)
        rows = connection.execution_options(yield_per=5000).execute(
            select(_ENTRIES).order_by(_ENTRIES.c.seq)
        )
        for row in rows:
            checker.entry(row)
        return checker.finish(None if found is None else (int(found[0]), str(found[1])))
