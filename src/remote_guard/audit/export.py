"""An excerpt of the audit trail for an inspector: the entries of a period, as JSON lines.

Each line is exactly the line the trail's own file holds, so the excerpt can be checked against
the file, and each entry's ``prev`` against the ``hash`` of the line before it. The last
``hash`` can be compared with the ``audit.head`` anchors in the structured log.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TextIO

from sqlalchemy import Engine, select

from remote_guard.audit.models import AuditEntryRow
from remote_guard.audit.trail import row_line

_ENTRIES = AuditEntryRow.__table__


@dataclass(frozen=True)
class Excerpt:
    entries: int
    first_seq: int | None
    last_seq: int | None


def export_entries(engine: Engine, *, start: datetime, end: datetime, out: TextIO) -> Excerpt:
    """Write the entries with ``start <= at < end`` to ``out``, in sequence order.

    Raises:
        sqlalchemy.exc.SQLAlchemyError: the database cannot be read.
        OSError: ``out`` cannot be written.
    """
    count = 0
    first: int | None = None
    last: int | None = None
    with engine.connect() as connection:
        rows = connection.execution_options(yield_per=5000).execute(
            select(_ENTRIES)
            .where(_ENTRIES.c.at >= start, _ENTRIES.c.at < end)
            .order_by(_ENTRIES.c.seq)
        )
        for row in rows:
            out.write(row_line(row) + "\n")
            count += 1
            first = int(row.seq) if first is None else first
            last = int(row.seq)
    return Excerpt(entries=count, first_seq=first, last_seq=last)
