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
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from remote_guard import audit
from remote_guard.clock import Clock
from remote_guard.collect.collector import Collected, Collector
from remote_guard.collect.models import SessionRow, SnapshotRow
from remote_guard.collect.snapshot import SessionSnapshot
from remote_guard.consent.registers import Registers
from remote_guard.consent.service import load_registers
from remote_guard.directory.service import load_directory
from remote_guard.findings.models import FindingRow
from remote_guard.findings.service import RecordResult, record_findings
from remote_guard.graph.client import GraphClient
from remote_guard.graph.errors import GraphError
from remote_guard.ops.metrics import POLL_METRICS
from remote_guard.policy.profile import Policy
from remote_guard.poll.models import CheckpointRow, PollRunRow
from remote_guard.rules.base import (
    HISTORY_DAYS,
    OPEN_STATUSES,
    Finding,
    PriorBreach,
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
        self, registers: Registers, now: datetime, history: tuple[PriorBreach, ...] = ()
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


def run_poll(poller: Poller) -> PollResult:
    """Run one full poll cycle and record it as a poll run.

    Never raises for Graph trouble: a cycle that could not read something ends ``partial`` or
    ``failed`` with the reasons recorded, and findings already stored are kept. Any other
    exception is recorded too (the run ends ``failed`` naming it) and logged with its traceback,
    so the poll runs table always says why a cycle stopped. Every log line of the cycle carries
    ``poll_run_id``.

    Raises:
        Exception: only if the failure cannot be recorded either (the database is unreachable).
    """
    run_id = str(uuid.uuid4())
    with structlog.contextvars.bound_contextvars(poll_run_id=run_id):
        try:
            result = _run_cycle(poller, run_id)
        except Exception as exc:
            log.exception("poll.crashed", error=type(exc).__name__)
            result = _record_crash(poller, run_id, exc)
    POLL_METRICS.observe(result.status, result.seconds)
    return result


def _record_crash(poller: Poller, run_id: str, exc: Exception) -> PollResult:
    """End a run that raised as ``failed``, naming the exception; findings committed before it
    are kept (each session commits on its own).

    Raises:
        Exception: ``exc`` itself, if the run's row was never written (the cycle failed before
            it could record anything, e.g. the database is unreachable).
    """
    finished = poller.clock()
    reason = f"crashed: {type(exc).__name__}: {str(exc)[:300]}"
    with transaction(poller.db) as session:
        row = session.get(PollRunRow, run_id)
        if row is None:
            raise exc
        row.finished_at = finished
        row.status = "failed"
        row.errors = [*(row.errors or []), reason]
        audit.record(
            session,
            "poll.finished",
            object_type="poll_run",
            object_id=run_id,
            run_id=run_id,
            after={"status": "failed", "errors": [reason]},
        )
    return PollResult(
        run_id=run_id,
        status="failed",
        started_at=row.started_at,
        finished_at=finished,
        errors=[reason],
    )


def _mark_interrupted(session: Session, poller: Poller, run_id: str, now: datetime) -> None:
    """Earlier runs of this tenant still marked ``running`` were cut short (the process was
    killed, or the machine lost power): mark them ``interrupted`` so nobody takes them for a poll
    in progress. One poller per tenant is assumed, as the scheduler runs one cycle at a time."""
    stale = session.scalars(
        select(PollRunRow).where(
            PollRunRow.tenant_id == poller.settings.tenant.tenant_id,
            PollRunRow.status == "running",
            PollRunRow.finished_at.is_(None),
        )
    ).all()
    for row in stale:
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


def _run_cycle(poller: Poller, run_id: str) -> PollResult:  # noqa: PLR0915 (one cycle, read top to bottom; the audit hooks at its start and end take it past 50)
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
        audit.record(
            session, "poll.started", object_type="poll_run", object_id=run_id, run_id=run_id
        )
    requests_before = poller.graph.stats.total
    counts: Counter[str] = Counter()
    errors: list[str] = []
    status = "ok"
    with poller.db() as session:
        registers = load_registers(session)
    try:
        directory = load_directory(poller.graph, poller.settings)
    except GraphError as exc:
        errors.append(f"directory: {exc.reason}")
        status = "failed"
        bound_log.error("poll.directory_failed", reason=exc.reason)
    else:
        counts["people"] = len(directory.people)
        poller.school_domains = directory.domains()
        _remember_school_domains(poller, started)
        window_start = started - timedelta(hours=poller.settings.poll.lookback_hours)
        window_end = started + timedelta(days=poller.settings.poll.lookahead_days)
        final_ids = _final_session_ids(poller, window_start)
        collector = Collector(
            graph=poller.graph,
            settings=poller.settings,
            directory=directory,
            clock=poller.clock,
            keep_pupil_only_meetings="pupils_without_staff" in poller.rule_ids(stage=1),
        )
        seen: set[str] = set()
        evaluated: dict[str, SessionSnapshot] = {}
        # Chats are Teams resources: read at most every direct_chats_every_hours (Microsoft asks
        # for once a day), each read covering everything since the last one. Chat sessions read
        # earlier keep their stored findings in between.
        chat_scan = _ChatScan.due(poller, started, window_start)
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
            _store_and_evaluate(
                poller,
                collected.snapshot,
                final=collected.final,
                registers=registers,
                run_id=run_id,
                counts=counts,
            )
        # Sessions already read in full are re-evaluated from their stored snapshot, so a consent
        # registered later, or a changed profile, updates their findings without Graph calls.
        for snapshot in _stored_final_snapshots(poller, final_ids - seen):
            evaluated[snapshot.session_id] = snapshot
            _store_and_evaluate(
                poller,
                snapshot,
                final=True,
                registers=registers,
                run_id=run_id,
                counts=counts,
                reevaluate_only=True,
            )
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
        if poller.rule_ids(stage=2):
            for snapshot in sorted(evaluated.values(), key=_session_start):
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

    @staticmethod
    def key(poller: Poller) -> str:
        return f"direct_chats:{poller.settings.tenant.tenant_id}"

    @classmethod
    def due(cls, poller: Poller, started: datetime, window_start: datetime) -> _ChatScan:
        """Due when ``direct_chats_every_hours`` have passed since the last complete read (or
        there was none). A read covers every message since the last one (so none falls between
        two reads), or the look-back window if that reaches further."""
        with poller.db() as session:
            row = session.get(CheckpointRow, cls.key(poller))
        if row is None:
            return cls(read=True, since=window_start, started=started)
        last = datetime.fromisoformat(row.value)
        every = timedelta(hours=poller.settings.poll.direct_chats_every_hours)
        if started - last < every:
            return cls(read=False, since=window_start, started=started)
        since = min(window_start, max(last, started - _CHAT_CATCH_UP))
        return cls(read=True, since=since, started=started)

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
            row = session.get(CheckpointRow, self.key(poller))
            if row is None:
                row = CheckpointRow(key=self.key(poller))
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
) -> RecordResult:
    now = poller.clock()
    history: tuple[PriorBreach, ...] = ()
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
        if not reevaluate_only:
            _store_snapshot(session, snapshot, final=final, run_id=run_id, now=now)
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


def _history(poller: Poller, snapshot: SessionSnapshot) -> tuple[PriorBreach, ...]:
    """Unexempted breaches of stage-1 rules about this session's people (as subject or as the
    organiser) in sessions that started in the ``HISTORY_DAYS`` before this one."""
    start, _ = _session_start(snapshot)
    people = sorted(
        set(snapshot.people) | ({snapshot.organizer_id} if snapshot.organizer_id else set())
    )
    if not people:
        return ()
    stage_one = sorted(poller.rule_ids(stage=1))
    with poller.db() as session:
        rows = session.execute(
            select(
                FindingRow.rule_id,
                FindingRow.session_id,
                FindingRow.subject_key,
                FindingRow.status,
                SessionRow.scheduled_start,
                SessionRow.organizer_id,
            )
            .join(SessionRow, SessionRow.id == FindingRow.session_id)
            .where(
                FindingRow.status.in_([Status.FAIL.value, Status.WARN.value]),
                FindingRow.exemption.is_(None),
                FindingRow.rule_id.in_(stage_one),
                SessionRow.scheduled_start >= start - timedelta(days=HISTORY_DAYS),
                SessionRow.scheduled_start <= start,
                (FindingRow.subject_key.in_(people)) | (SessionRow.organizer_id.in_(people)),
            )
        ).all()
    return tuple(
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
    )


def _store_snapshot(
    session: Session, snapshot: SessionSnapshot, *, final: bool, run_id: str | None, now: datetime
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
