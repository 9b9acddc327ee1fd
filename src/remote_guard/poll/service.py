"""One poll cycle: collect -> snapshot -> evaluate -> store, one session per transaction.

Each session's snapshot, findings and session row are committed together, so a crash mid-poll
repeats work on the next run rather than losing or half-writing it.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections import Counter
from collections.abc import Callable, Collection, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import structlog
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from remote_guard import audit
from remote_guard.clock import Clock
from remote_guard.collect.collector import (
    Collected,
    Collector,
    SessionClaim,
    StoredOccurrence,
)
from remote_guard.collect.memory import CollectMemory
from remote_guard.collect.models import SessionRow, SnapshotRow
from remote_guard.collect.snapshot import SessionSnapshot
from remote_guard.consent.registers import Registers
from remote_guard.consent.service import load_registers
from remote_guard.directory.service import load_directory
from remote_guard.findings.models import FindingRow
from remote_guard.findings.service import RecordResult, record_findings
from remote_guard.graph.client import GraphClient
from remote_guard.graph.errors import GraphError
from remote_guard.leases.lease import runs_under_live_leases
from remote_guard.ops.metrics import POLL_METRICS
from remote_guard.policy.profile import Policy
from remote_guard.poll.models import CheckpointRow, PollRunRow
from remote_guard.rules.base import (
    HISTORY_DAYS,
    OPEN_STATUSES,
    Finding,
    HistoryItem,
    PriorBreach,
    PriorUnknown,
    Rule,
    RuleContext,
    SchoolDay,
    Status,
)
from remote_guard.rules.engine import evaluate_snapshot
from remote_guard.settings import Settings
from remote_guard.store.db import transaction

log = structlog.get_logger(__name__)

FindingListener = Callable[[Finding, str | None], None]


class CycleStoppedError(Exception):
    """Raised by a :class:`CyclePart` hook to end a cycle early: the worker was told to stop, or
    another worker took its work over. The run ends ``interrupted``; the sessions it had not
    stored are read by the next run."""


@dataclass(frozen=True)
class CyclePart:
    """Which part of a tenant's poll cycle a run does, with the hooks by which several workers
    share one tenant (``remote_guard.leases.work`` builds them). The default is the whole cycle,
    as a single poller runs it.
    """

    name: str = "whole tenant"
    # Staff members whose calendars and chats are read; None: everyone's.
    mailboxes: Callable[[str], bool] | None = None
    # Asked before each session is read from Graph; False: leave it (another run has it).
    claim: SessionClaim | None = None
    # Called inside each collected session's transaction; raises to refuse the write.
    fence: Callable[[Session, str], None] | None = None
    # Called once each collected session's transaction has committed.
    stored: Callable[[str], None] | None = None
    # Called inside the transaction that records the run as started.
    started: Callable[[Session, str], None] | None = None
    # Sessions read in full, evaluated again; stage-2 (pattern) rules; the school's e-mail
    # domains: done by one part only.
    tenant_wide: bool = True
    # Other parts store sessions of this tenant too: judge patterns over every session stored
    # in the window, not only those this run read.
    patterns_over_store: bool = False
    # Appended to the chat-scan checkpoint's key: each part reads its own staff members' chats.
    chat_scope: str = ""


WHOLE_TENANT = CyclePart()


@dataclass
class Poller:
    """Everything a poll cycle needs, built once at start-up and passed in."""

    settings: Settings
    graph: GraphClient
    db: sessionmaker[Session]
    policy: Policy
    registry: Mapping[str, Rule]
    clock: Clock
    on_finding: FindingListener | None = None  # told of each new or changed open finding
    # Called once at the end of each poll cycle (cases opened, DSL e-mails sent); an error is
    # logged and never fails the cycle.
    after_cycle: Callable[[PollResult], None] | None = None
    # The e-mail domains of the school's accounts, refreshed from the directory each cycle.
    school_domains: frozenset[str] = frozenset()
    # Completes a snapshot the cycle is about to store with what change notifications said
    # while the session is live (subscriptions.live); it changes the snapshot in place.
    live_overlay: Callable[[SessionSnapshot], None] | None = None
    # Frugal polling: calendars by change tracking, reads in $batch, and only sessions that
    # changed read and evaluated again. False: the naive reading a benchmark compares against
    # (every calendar in full, every session read, one request at a time; same findings).
    frugal: bool = True
    # What frugal polling keeps between cycles (made on the first one; see collect.memory).
    memory: CollectMemory | None = None
    # When the last cycle started and the registers it judged by: what a frugal cycle must
    # evaluate again besides the sessions it read (see _reevaluation).
    previous_cycle: tuple[datetime, Registers] | None = None

    @property
    def school_day(self) -> SchoolDay:
        day = self.settings.school_day
        return SchoolDay(
            timezone=day.timezone,
            start=day.start,
            end=day.end,
            weekdays=frozenset(day.weekdays),
            terms=tuple((term.start, term.end) for term in day.terms),
        )

    def context(
        self, registers: Registers, now: datetime, history: tuple[HistoryItem, ...] = ()
    ) -> RuleContext:
        return RuleContext(
            now=now,
            tenant_id=self.settings.tenant.tenant_id,
            registers=registers,
            school_day=self.school_day,
            history=history,
            school_domains=self.school_domains,
        )

    def rule_ids(self, stage: int) -> set[str]:
        return self.policy.rule_ids(stage=stage, registry=self.registry)


@dataclass
class PollResult:
    run_id: str
    status: str
    started_at: datetime
    finished_at: datetime
    counts: Counter[str] = field(default_factory=Counter)
    errors: list[str] = field(default_factory=list)
    graph: dict[str, object] = field(default_factory=dict)

    @property
    def seconds(self) -> float:
        return (self.finished_at - self.started_at).total_seconds()


def snapshot_digest(snapshot: SessionSnapshot) -> str:
    """A digest of what a snapshot says, ignoring when it was read."""
    data = snapshot.model_dump(mode="json", exclude={"collected_at"})
    canonical = json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def run_poll(poller: Poller, part: CyclePart = WHOLE_TENANT) -> PollResult:
    """Run one poll cycle (the whole of it, or ``part``) and record it as a poll run.

    Never raises for Graph trouble: a cycle that could not read something ends ``partial`` or
    ``failed`` with the reasons recorded, and findings already stored are kept. Any other
    exception is recorded too (the run ends ``failed`` naming it) and logged with its traceback,
    so the poll runs table always says why a cycle stopped; a cycle stopped by ``part``'s hooks
    (:class:`CycleStoppedError`) ends ``interrupted``. Every log line of the cycle carries
    ``poll_run_id``.

    Raises:
        Exception: only if the failure cannot be recorded either (the database is unreachable).
    """
    run_id = str(uuid.uuid4())
    with structlog.contextvars.bound_contextvars(poll_run_id=run_id):
        try:
            result = _run_cycle(poller, run_id, part)
        except CycleStoppedError as exc:
            log.warning("poll.stopped", reason=str(exc))
            result = _record_crash(poller, run_id, exc, status="interrupted")
        except Exception as exc:
            log.exception("poll.crashed", error=type(exc).__name__)
            result = _record_crash(poller, run_id, exc)
    POLL_METRICS.observe(result.status, result.seconds)
    return result


def _record_crash(
    poller: Poller, run_id: str, exc: Exception, *, status: str = "failed"
) -> PollResult:
    """End a run that raised as ``failed`` (or ``status``), naming the exception; findings
    committed before it are kept (each session commits on its own).

    Raises:
        Exception: ``exc`` itself, if the run's row was never written (the cycle failed before
            it could record anything, e.g. the database is unreachable).
    """
    finished = poller.clock()
    reason = (
        f"interrupted: {str(exc)[:300]}; its sessions are read again"
        if status == "interrupted"
        else f"crashed: {type(exc).__name__}: {str(exc)[:300]}"
    )
    with transaction(poller.db) as session:
        row = session.get(PollRunRow, run_id)
        if row is None:
            raise exc
        row.finished_at = finished
        row.status = status
        row.errors = [*(row.errors or []), reason]
        audit.record(
            session,
            "poll.finished",
            object_type="poll_run",
            object_id=run_id,
            run_id=run_id,
            after={"status": status, "errors": [reason]},
        )
    return PollResult(
        run_id=run_id,
        status=status,
        started_at=row.started_at,
        finished_at=finished,
        errors=[reason],
    )


def _mark_interrupted(session: Session, poller: Poller, run_id: str, now: datetime) -> None:
    """Earlier runs of this tenant still marked ``running`` were cut short (the process was
    killed, or the machine lost power): mark them ``interrupted`` so nobody takes them for a poll
    in progress.

    A run that a worker is doing under a lease that has not expired is in progress and is left
    alone; once its lease has expired (the worker died) it was cut short. A single poller runs
    one cycle at a time under no lease, so to it every other running run was cut short.
    """
    stale = session.scalars(
        select(PollRunRow).where(
            PollRunRow.tenant_id == poller.settings.tenant.tenant_id,
            PollRunRow.status == "running",
            PollRunRow.finished_at.is_(None),
        )
    ).all()
    live = runs_under_live_leases(session) if stale else set()
    for row in stale:
        if row.id in live:
            continue
        row.status = "interrupted"
        row.errors = [
            *(row.errors or []),
            f"interrupted: the poller stopped before this run finished (found by run {run_id} "
            f"at {now.isoformat()}); its sessions are read again",
        ]
        audit.record(
            session,
            "poll.interrupted",
            object_type="poll_run",
            object_id=row.id,
            run_id=run_id,
            after={"status": "interrupted"},
        )
        log.warning("poll.interrupted_run_found", interrupted_run_id=row.id)


def _run_cycle(poller: Poller, run_id: str, part: CyclePart = WHOLE_TENANT) -> PollResult:  # noqa: PLR0915 (one cycle, read top to bottom; the audit hooks at its start and end take it past 50)
    started = poller.clock()
    bound_log = log.bind(poll_run_id=run_id)
    with transaction(poller.db) as session:
        _mark_interrupted(session, poller, run_id, started)
        session.add(
            PollRunRow(
                id=run_id,
                tenant_id=poller.settings.tenant.tenant_id,
                started_at=started,
                status="running",
                counts={},
                errors=[],
                graph={},
            )
        )
        if part.started is not None:
            part.started(session, run_id)
        audit.record(
            session,
            "poll.started",
            object_type="poll_run",
            object_id=run_id,
            run_id=run_id,
            detail=None if part is WHOLE_TENANT else {"part": part.name},
        )
    requests_before = poller.graph.stats.total
    changes = _Changes()
    counts: Counter[str] = Counter()
    errors: list[str] = []
    status = "ok"
    with poller.db() as session:
        registers = load_registers(session)
    memory = _memory(poller)
    try:
        directory = (
            memory.directory.current(poller.graph, poller.settings, started)
            if memory is not None
            else load_directory(poller.graph, poller.settings)
        )
    except GraphError as exc:
        errors.append(f"directory: {exc.reason}")
        status = "failed"
        bound_log.error("poll.directory_failed", reason=exc.reason)
    else:
        counts["people"] = len(directory.people)
        poller.school_domains = directory.domains()
        if part.tenant_wide:
            _remember_school_domains(poller, started)
        window_start = started - timedelta(hours=poller.settings.poll.lookback_hours)
        window_end = started + timedelta(days=poller.settings.poll.lookahead_days)
        final_ids = _final_session_ids(poller, window_start)
        if memory is not None:
            memory.lookups.start(memory.directory.loaded_at)
        collector = Collector(
            graph=poller.graph,
            settings=poller.settings,
            directory=directory,
            clock=poller.clock,
            keep_pupil_only_meetings="pupils_without_staff" in poller.rule_ids(stage=1),
            memory=memory,
            frugal=poller.frugal,
            mailboxes=part.mailboxes,
            claim=part.claim,
            stored_occurrences=_stored_occurrences(poller, window_start, window_end),
        )
        seen: set[str] = set()
        evaluated: dict[str, SessionSnapshot] = {}
        # Chats are Teams resources: read at most every direct_chats_every_hours (Microsoft asks
        # for once a day), each read covering everything since the last one. Chat sessions read
        # earlier keep their stored findings in between.
        chat_scan = _ChatScan.due(poller, started, window_start, scope=part.chat_scope)
        for collected in chat_scan.recorded(
            poller,
            collector,
            collector.collect(
                window_start=window_start,
                window_end=window_end,
                skip=final_ids,
                read_chats=chat_scan.read,
                chats_since=chat_scan.since,
            ),
            counts,
        ):
            seen.add(collected.snapshot.session_id)
            evaluated[collected.snapshot.session_id] = collected.snapshot
            recorded = _store_and_evaluate(
                poller,
                collected.snapshot,
                final=collected.final,
                registers=registers,
                run_id=run_id,
                counts=counts,
                source_digest=collected.source_digest,
                fence=part.fence,
            )
            changes.note(collected.snapshot, recorded)
            if part.stored is not None:
                part.stored(collected.snapshot.session_id)
        # Sessions already read in full, or left unread because nothing they were built from
        # changed, are evaluated again from their stored snapshot (no Graph calls) when that
        # can change their findings: a consent registered later, a changed profile, a session
        # that has started since (see _reevaluation).
        unchanged = set(collector.unchanged) - seen
        seen |= unchanged
        counts["sessions_unchanged"] += len(unchanged)
        # Sessions read in full are another part's to read: one part evaluates them again.
        final_left = final_ids - seen if part.tenant_wide else set()
        again_ids = _reevaluation(poller, final_left, unchanged, registers, started)
        for snapshot in _stored_final_snapshots(poller, again_ids):
            evaluated[snapshot.session_id] = snapshot
            recorded = _store_and_evaluate(
                poller,
                snapshot,
                final=True,
                registers=registers,
                run_id=run_id,
                counts=counts,
                reevaluate_only=True,
            )
            changes.note(snapshot, recorded)
        # A teacher or SLT member may have changed the registers while this cycle ran (the web
        # app re-evaluates at once); judge every session of the cycle again against the registers
        # as they are now, so a cycle that started earlier never undoes that change.
        with poller.db() as session:
            latest = load_registers(session)
        if latest != registers:
            registers = latest
            for snapshot in evaluated.values():
                _store_and_evaluate(
                    poller,
                    snapshot,
                    final=True,
                    registers=registers,
                    run_id=run_id,
                    counts=counts,
                    reevaluate_only=True,
                    again=True,
                )
        # Patterns across sessions (repeated breaches) once every session's own findings are in,
        # oldest session first so each pattern is raised where it first appears.
        # When other parts read sessions too, one part judges the patterns, over every session
        # stored in the window (the other parts' stage-1 findings are what the pattern rules read).
        if part.tenant_wide and poller.rule_ids(stage=2):
            patterned = _stage_two(poller, evaluated, changes.earliest)
            if part.patterns_over_store:
                others = _window_session_ids(poller, window_start)
                others -= {snapshot.session_id for snapshot in patterned}
                patterned += _stored_final_snapshots(poller, others)
            for snapshot in sorted(patterned, key=_session_start):
                _store_and_evaluate(
                    poller,
                    snapshot,
                    final=True,
                    registers=registers,
                    run_id=run_id,
                    counts=counts,
                    reevaluate_only=True,
                    stage=2,
                )
        errors.extend(collector.errors)
        if collector.errors:
            status = "partial"
        poller.previous_cycle = (started, registers)
    finished = poller.clock()
    graph = poller.graph.stats.snapshot()
    graph["requests_this_run"] = poller.graph.stats.total - requests_before
    graph["tokens_issued"] = poller.graph.tokens.tokens_issued
    with transaction(poller.db) as session:
        row = session.get(PollRunRow, run_id)
        if row is not None:
            row.finished_at = finished
            row.status = status
            row.counts = dict(counts)
            row.errors = errors[:200]
            row.graph = graph
        audit.record(
            session,
            "poll.finished",
            object_type="poll_run",
            object_id=run_id,
            run_id=run_id,
            after={"status": status, "counts": dict(counts), "errors": errors[:50], "graph": graph},
        )
    bound_log.info(
        "poll.finished",
        status=status,
        seconds=round((finished - started).total_seconds(), 2),
        graph_requests=graph["requests_this_run"],
        **dict(counts),
    )
    result = PollResult(
        run_id=run_id,
        status=status,
        started_at=started,
        finished_at=finished,
        counts=counts,
        errors=errors,
        graph=graph,
    )
    if poller.after_cycle is not None:
        try:
            poller.after_cycle(result)
        except Exception:  # noqa: BLE001 - a hook must never fail the cycle
            bound_log.exception("poll.after_cycle_failed")
    return result


def _window_session_ids(poller: Poller, window_start: datetime) -> set[str]:
    """Every stored session in the window, read in full or not."""
    with poller.db() as session:
        return set(
            session.scalars(select(SessionRow.id).where(SessionRow.scheduled_start >= window_start))
        )


def _stored_occurrences(
    poller: Poller, window_start: datetime, window_end: datetime
) -> list[StoredOccurrence]:
    """The stored sessions on a meeting link in the window, with when they were scheduled and
    the call records they were read with: the collector tells by them which session a call
    belongs to once its calendar entry is gone."""
    end = func.coalesce(SessionRow.scheduled_end, SessionRow.scheduled_start)
    with poller.db() as session:
        rows = session.execute(
            select(
                SessionRow.id,
                SessionRow.join_url,
                SessionRow.scheduled_start,
                end,
                SnapshotRow.data["call_record_ids"],
            )
            .outerjoin(SnapshotRow, SnapshotRow.id == SessionRow.latest_snapshot_id)
            .where(
                SessionRow.join_url.is_not(None),
                SessionRow.scheduled_start <= window_end,
                end >= window_start,
            )
        ).all()
    return [
        StoredOccurrence(
            session_id=session_id,
            join_url=join_url,
            start=start,
            end=stop,
            call_record_ids=frozenset(str(call) for call in calls or ()),
        )
        for session_id, join_url, start, stop, calls in rows
        if join_url and start is not None and stop is not None
    ]


def _final_session_ids(poller: Poller, window_start: datetime) -> set[str]:
    """Sessions in the window already read in full (they are not read from Graph again)."""
    with poller.db() as session:
        return set(
            session.scalars(
                select(SessionRow.id).where(
                    SessionRow.final_collected_at.is_not(None),
                    SessionRow.scheduled_start >= window_start,
                )
            )
        )


def _memory(poller: Poller) -> CollectMemory | None:
    """The poller's frugal-polling memory (made on first use), or None for the naive reading."""
    if not poller.frugal:
        return None
    if poller.memory is None:
        refresh = timedelta(minutes=poller.settings.poll.directory_refresh_minutes)
        poller.memory = CollectMemory(poller.db, directory_refresh=refresh)
    return poller.memory


@dataclass
class _Changes:
    """The earliest start among the sessions whose first-stage findings changed this cycle."""

    earliest: datetime | None = None

    def note(self, snapshot: SessionSnapshot, recorded: RecordResult) -> None:
        if recorded.created or recorded.changed:
            start, _ = _session_start(snapshot)
            self.earliest = start if self.earliest is None else min(self.earliest, start)


def _reevaluation(
    poller: Poller,
    final_ids: set[str],
    unchanged: set[str],
    registers: Registers,
    started: datetime,
) -> set[str]:
    """The stored sessions to evaluate again this cycle without reading them.

    All of them (``final_ids`` and ``unchanged``) for the naive reading, on a poller's first
    cycle (the profile may have changed), when the registers changed since the last cycle, or
    when an exemption began or ended since then. Otherwise only the unchanged sessions that
    started since the last cycle (an upcoming session became live); a final session has ended,
    and nothing else about it can change its findings.
    """
    previous = poller.previous_cycle
    if not poller.frugal or previous is None or previous[1] != registers:
        return final_ids | unchanged
    since, _ = previous
    for exemption in registers.exemptions:
        moments = (exemption.granted_at, exemption.expires_at)
        if any(since < moment <= started for moment in moments):
            return final_ids | unchanged
    if not unchanged:
        return set()
    with poller.db() as session:
        started_since = set(
            session.scalars(
                select(SessionRow.id).where(
                    SessionRow.scheduled_start > since, SessionRow.scheduled_start <= started
                )
            )
        )
    return started_since & unchanged


def _stage_two(
    poller: Poller, evaluated: dict[str, SessionSnapshot], changed_since: datetime | None
) -> list[SessionSnapshot]:
    """The sessions whose patterns across sessions (stage 2) may have changed: those evaluated
    this cycle and, if some session's own findings changed, every later session in the window
    with a breach of its own (a pattern is raised only where the session itself adds one)."""
    snapshots = dict(evaluated)
    if changed_since is None or not poller.frugal:
        return list(snapshots.values())
    with poller.db() as session:
        later = set(
            session.scalars(
                select(FindingRow.session_id)
                .join(SessionRow, SessionRow.id == FindingRow.session_id)
                .where(
                    FindingRow.status.in_([Status.FAIL.value, Status.WARN.value]),
                    FindingRow.rule_id.in_(sorted(poller.rule_ids(stage=1))),
                    SessionRow.scheduled_start >= changed_since,
                )
                .distinct()
            )
        )
    for snapshot in _stored_final_snapshots(poller, later - set(snapshots)):
        snapshots[snapshot.session_id] = snapshot
    return list(snapshots.values())


# How far back a chat read may reach to catch up after the service was stopped.
_CHAT_CATCH_UP = timedelta(days=29)


@dataclass(frozen=True)
class _ChatScan:
    """Whether a poll reads staff members' chats outside meetings, and from when.

    The time of the last complete read is kept in the ``checkpoints`` table.
    """

    read: bool
    since: datetime
    started: datetime
    scope: str = ""  # whose chats (CyclePart.chat_scope); "" for every staff member's

    @staticmethod
    def key(poller: Poller, scope: str = "") -> str:
        return f"direct_chats:{poller.settings.tenant.tenant_id}{scope}"

    @classmethod
    def due(
        cls, poller: Poller, started: datetime, window_start: datetime, *, scope: str = ""
    ) -> _ChatScan:
        """Due when ``direct_chats_every_hours`` have passed since the last complete read (or
        there was none). A read covers every message since the last one (so none falls between
        two reads), or the look-back window if that reaches further."""
        with poller.db() as session:
            row = session.get(CheckpointRow, cls.key(poller, scope))
        if row is None:
            return cls(read=True, since=window_start, started=started, scope=scope)
        last = datetime.fromisoformat(row.value)
        every = timedelta(hours=poller.settings.poll.direct_chats_every_hours)
        if started - last < every:
            return cls(read=False, since=window_start, started=started, scope=scope)
        since = min(window_start, max(last, started - _CHAT_CATCH_UP))
        return cls(read=True, since=since, started=started, scope=scope)

    def recorded(
        self,
        poller: Poller,
        collector: Collector,
        collected: Iterator[Collected],
        counts: Counter[str],
    ) -> Iterator[Collected]:
        """Pass ``collected`` through; once it is exhausted, remember a complete chat read (a
        partial one, where some staff member's chats could not be listed, is retried)."""
        yield from collected
        if not (self.read and collector.chat_scan_complete):
            return
        with transaction(poller.db) as session:
            row = session.get(CheckpointRow, self.key(poller, self.scope))
            if row is None:
                row = CheckpointRow(key=self.key(poller, self.scope))
                session.add(row)
            row.value = self.started.isoformat()
            row.updated_at = self.started
        counts["chat_scans"] += 1


@dataclass
class Reevaluation:
    """What :func:`reevaluate_sessions` did: the sessions re-evaluated and the findings changed."""

    session_ids: list[str] = field(default_factory=list)
    counts: Counter[str] = field(default_factory=Counter)
    changed: list[tuple[str, Finding]] = field(default_factory=list)  # (previous status, finding)
    created: list[Finding] = field(default_factory=list)


def reevaluate_sessions(poller: Poller, session_ids: Collection[str]) -> Reevaluation:
    """Evaluate the stored snapshots of ``session_ids`` again with the registers as they are now,
    and record the findings, as a poll cycle does for a session already read in full.

    For a change to the registers made between polls (a one-to-one registered, approved or
    declined, a consent withdrawn): no Graph call is made, only the database is read and
    written, so ``poller.graph`` is never used. Sessions with no stored snapshot are skipped.
    Stage-1 rules run on each session, then stage-2 rules (patterns across sessions), oldest
    session first. Each session's findings commit in their own transaction, with their audit
    entries; the audit trail names whoever is acting (``audit.acting_as``).

    The e-mail domains the last poll read from the directory are used (``poller.school_domains``
    is refreshed from the store), so rules about outside addresses judge as the poll did.

    Raises:
        sqlalchemy.exc.SQLAlchemyError: the database cannot be read or written.
        AuditError: the audit trail cannot be written (that session's findings do not change).
    """
    result = Reevaluation()
    snapshots = sorted(_stored_final_snapshots(poller, set(session_ids)), key=_session_start)
    if not snapshots:
        return result
    stored_domains = load_school_domains(poller)
    if stored_domains is not None:
        poller.school_domains = stored_domains
    with poller.db() as session:
        registers = load_registers(session)
    stages = [1] + ([2] if poller.rule_ids(stage=2) else [])
    for stage in stages:
        for snapshot in snapshots:
            recorded = _store_and_evaluate(
                poller,
                snapshot,
                final=True,
                registers=registers,
                run_id=None,
                counts=result.counts,
                reevaluate_only=True,
                stage=stage,
            )
            result.created.extend(recorded.created)
            result.changed.extend(recorded.changed)
    result.session_ids = [snapshot.session_id for snapshot in snapshots]
    log.info(
        "poll.reevaluated",
        sessions=len(snapshots),
        created=len(result.created),
        changed=len(result.changed),
    )
    return result


def _school_domains_key(poller: Poller) -> str:
    return f"school_domains:{poller.settings.tenant.tenant_id}"


def _remember_school_domains(poller: Poller, now: datetime) -> None:
    """Keep the directory's e-mail domains, for re-evaluations made between polls (the web app
    re-evaluates after a register changes and reads no directory)."""
    value = json.dumps(sorted(poller.school_domains))
    with transaction(poller.db) as session:
        row = session.get(CheckpointRow, _school_domains_key(poller))
        if row is None:
            session.add(CheckpointRow(key=_school_domains_key(poller), value=value, updated_at=now))
        elif row.value != value:
            row.value = value
            row.updated_at = now


def load_school_domains(poller: Poller) -> frozenset[str] | None:
    """The school's e-mail domains as the last poll read them, or None before any poll has."""
    with poller.db() as session:
        row = session.get(CheckpointRow, _school_domains_key(poller))
    if row is None:
        return None
    return frozenset(str(domain) for domain in json.loads(row.value))


def _stored_final_snapshots(poller: Poller, session_ids: set[str]) -> list[SessionSnapshot]:
    if not session_ids:
        return []
    with poller.db() as session:
        rows = session.execute(
            select(SnapshotRow.data)
            .join(SessionRow, SessionRow.latest_snapshot_id == SnapshotRow.id)
            .where(SessionRow.id.in_(sorted(session_ids)))
        ).all()
    return [SessionSnapshot.model_validate(data) for (data,) in rows]


def _store_and_evaluate(
    poller: Poller,
    snapshot: SessionSnapshot,
    *,
    final: bool,
    registers: Registers,
    run_id: str | None,
    counts: Counter[str],
    reevaluate_only: bool = False,
    stage: int = 1,
    again: bool = False,
    source_digest: str | None = None,
    fence: Callable[[Session, str], None] | None = None,
) -> RecordResult:
    now = poller.clock()
    if not reevaluate_only and poller.live_overlay is not None:
        # A live session's chat and attendance are read only after it ends: keep what the
        # notifications said meanwhile, so this cycle does not undo their findings.
        poller.live_overlay(snapshot)
    history: tuple[HistoryItem, ...] = ()
    if stage == 2:
        history = _history(poller, snapshot)
    findings = evaluate_snapshot(
        snapshot,
        bound_rules=poller.policy.bound_rules,
        registry=poller.registry,
        context=poller.context(registers, now, history),
        stage=stage,
    )
    with transaction(poller.db) as session:
        if fence is not None:
            # First, so that the lease row is locked before anything is written.
            fence(session, snapshot.session_id)
        if not reevaluate_only:
            _store_snapshot(
                session,
                snapshot,
                final=final,
                run_id=run_id,
                now=now,
                source_digest=source_digest,
            )
        result = record_findings(
            session,
            session_id=snapshot.session_id,
            findings=findings,
            evaluated_rules=poller.rule_ids(stage),
            now=now,
            poll_run_id=run_id,
        )
    if stage == 1 and not again:
        counts["sessions"] += 1
    counts["findings_created"] += len(result.created)
    counts["findings_changed"] += len(result.changed)
    if poller.on_finding is not None:
        changes: list[tuple[Finding, str | None]] = [
            (f, None) for f in result.created if f.status in OPEN_STATUSES
        ]
        changes += [(f, previous) for previous, f in result.changed]
        for finding, previous in changes:
            if finding.exempted:
                continue
            try:
                poller.on_finding(finding, previous)
            except Exception:
                log.exception("poll.listener_failed", finding=finding.key)
    return result


def _session_start(snapshot: SessionSnapshot) -> tuple[datetime, str]:
    start = snapshot.scheduled_start or snapshot.actual_start or snapshot.collected_at
    return (start, snapshot.session_id)


def _history(poller: Poller, snapshot: SessionSnapshot) -> tuple[HistoryItem, ...]:
    """Unexempted breaches of stage-1 rules about this session's people (as subject or as the
    organiser) in sessions that started in the ``HISTORY_DAYS`` before this one; and the stage-1
    checks that could not be made (``error``) in those sessions about them, in sessions they
    organised, or about the whole of a session they took part in (what could not be read may
    hide a breach of theirs)."""
    start, _ = _session_start(snapshot)
    people = sorted(
        set(snapshot.people) | ({snapshot.organizer_id} if snapshot.organizer_id else set())
    )
    if not people:
        return ()
    columns = (
        FindingRow.rule_id,
        FindingRow.session_id,
        FindingRow.subject_key,
        FindingRow.status,
        SessionRow.scheduled_start,
        SessionRow.organizer_id,
    )
    in_window = (
        FindingRow.rule_id.in_(sorted(poller.rule_ids(stage=1))),
        SessionRow.scheduled_start >= start - timedelta(days=HISTORY_DAYS),
        SessionRow.scheduled_start <= start,
    )
    theirs = (FindingRow.subject_key.in_(people)) | (SessionRow.organizer_id.in_(people))
    known = set(people)
    with poller.db() as session:
        rows = session.execute(
            select(*columns)
            .join(SessionRow, SessionRow.id == FindingRow.session_id)
            .where(
                FindingRow.status.in_([Status.FAIL.value, Status.WARN.value]),
                FindingRow.exemption.is_(None),
                *in_window,
                theirs,
            )
        ).all()
        errors = session.execute(
            select(*columns, SnapshotRow.id, SnapshotRow.digest)
            .join(SessionRow, SessionRow.id == FindingRow.session_id)
            .outerjoin(SnapshotRow, SnapshotRow.id == SessionRow.latest_snapshot_id)
            .where(
                FindingRow.status == Status.ERROR.value,
                *in_window,
                theirs | (FindingRow.subject_key == ""),
            )
        ).all()
        taking_part = _people_taking_part(
            session,
            {
                session_id: (snapshot_id, digest)
                for _, session_id, subject_key, _, _, _, snapshot_id, digest in errors
                if not subject_key and snapshot_id is not None
            },
            known,
        )
    history: list[HistoryItem] = [
        PriorBreach(
            rule_id=rule_id,
            session_id=session_id,
            at=at,
            subject_key=subject_key,
            organizer_id=organizer_id,
            status=Status(status),
        )
        for rule_id, session_id, subject_key, status, at, organizer_id in rows
        if at is not None
    ]
    for rule_id, session_id, subject_key, _, at, organizer_id, _, _ in errors:
        involved = frozenset() if subject_key else taking_part.get(session_id, frozenset())
        if at is None or not (subject_key in known or organizer_id in known or involved):
            continue
        history.append(
            PriorUnknown(
                rule_id=rule_id,
                session_id=session_id,
                at=at,
                subject_key=subject_key,
                organizer_id=organizer_id,
                people=involved,
            )
        )
    return tuple(history)


# Who took part in a stored snapshot, by the snapshot's digest (of its content, so an entry can
# never go stale): the pattern rules ask it of the same sessions again and again.
_SNAPSHOT_PEOPLE: dict[str, frozenset[str]] = {}
_SNAPSHOT_PEOPLE_KEPT = 50_000
_IDS_PER_QUERY = 500


def _people_taking_part(
    session: Session, snapshots: Mapping[str, tuple[int, str]], people: set[str]
) -> dict[str, frozenset[str]]:
    """Which of ``people`` took part in each session of ``snapshots`` (session id -> its latest
    snapshot's id and digest)."""
    unread = sorted(
        {
            snapshot_id: digest
            for snapshot_id, digest in snapshots.values()
            if digest not in _SNAPSHOT_PEOPLE
        }.items()
    )
    if len(_SNAPSHOT_PEOPLE) + len(unread) > _SNAPSHOT_PEOPLE_KEPT:
        _SNAPSHOT_PEOPLE.clear()
    for first in range(0, len(unread), _IDS_PER_QUERY):
        chunk = dict(unread[first : first + _IDS_PER_QUERY])
        for snapshot_id, taking_part in session.execute(
            select(SnapshotRow.id, SnapshotRow.data["people"]).where(
                SnapshotRow.id.in_(sorted(chunk))
            )
        ):
            _SNAPSHOT_PEOPLE[chunk[snapshot_id]] = frozenset(taking_part or {})
    return {
        session_id: frozenset(people & _SNAPSHOT_PEOPLE.get(digest, frozenset()))
        for session_id, (_, digest) in snapshots.items()
    }


def _store_snapshot(
    session: Session,
    snapshot: SessionSnapshot,
    *,
    final: bool,
    run_id: str | None,
    now: datetime,
    source_digest: str | None = None,
) -> None:
    digest = snapshot_digest(snapshot)
    row = session.get(SessionRow, snapshot.session_id)
    if row is None:
        row = SessionRow(id=snapshot.session_id, first_seen_at=now, last_collected_at=now)
        session.add(row)
    row.kind = snapshot.kind.value
    row.subject = snapshot.subject
    row.organizer_id = snapshot.organizer_id
    organizer = snapshot.people.get(snapshot.organizer_id or "")
    row.school = organizer.school if organizer is not None else None
    row.join_url = snapshot.join_url
    row.scheduled_start = snapshot.scheduled_start or snapshot.actual_start
    row.scheduled_end = snapshot.scheduled_end or snapshot.actual_end
    row.last_collected_at = now
    # Stored with the snapshot it describes, so the two never disagree after a crash.
    row.source_digest = source_digest
    row.has_gaps = bool(snapshot.missing)
    if final and row.final_collected_at is None:
        row.final_collected_at = now
    latest = session.get(SnapshotRow, row.latest_snapshot_id) if row.latest_snapshot_id else None
    if latest is None or latest.digest != digest:
        snapshot_row = SnapshotRow(
            session_id=snapshot.session_id,
            collected_at=snapshot.collected_at,
            poll_run_id=run_id,
            digest=digest,
            data=snapshot.model_dump(mode="json"),
        )
        session.add(snapshot_row)
        session.flush()
        row.latest_snapshot_id = snapshot_row.id
