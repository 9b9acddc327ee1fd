"""Detection latency: from a breach appearing in the fake tenant to its finding being stored.

The poller runs as the service does (scheduled every ``interval_seconds``) on a database that
has already been through a first full sync of the trust, once with change notifications
(subscriptions, a receiver, live roster events) and once with polling alone. While it runs,
breaches are made to happen in the fake tenant (:class:`~remote_guard.fakegraph.live.LiveTenant`),
``per_kind`` of each kind, each in a session of its own:

- ``pupil_chat``: a pupil posts in the meeting chat of a live lesson;
- ``outside_joiner``: an anonymous joiner joins a live lesson with pupils;
- ``one_to_one``: in a live small-group session two pupils leave, so the teacher is alone with
  the third, who has no one-to-one registration. The rule calls that a breach once it has
  lasted its threshold (``threshold_seconds``, 120 s by default), so the finding's latency is
  counted from then; the live alert to SLT is raised as soon as they are alone, and its
  latency is counted from the moment the second pupil left;
- ``calendar_one_to_one``: a teacher books a Teams one-to-one with a pupil for later today, with
  no registration (a calendar entry: polling sees it through calendar change tracking).

The benchmark watches both databases (read-only, every 0.1 s, from the first breach on) for
the finding (its rule, its session and, where there is one, its subject) and for the live
alert; latency is the time from the breach to the first moment the stored row is visible. With
notifications it is also split in two: the fake tenant's delivery of the notification (from
the change to the receiver's answer) and remote_guard's share (from then to the stored row).

With polling alone, Microsoft's rule that Teams resources (chats) are read at most once a day,
and attendance reports that exist only after a meeting, mean a live lesson's chat and roster
are read once the lesson has ended. So in the polling run each lesson with a live breach is
ended ``lesson_ends_after`` seconds after its breach (after the rule's threshold, for a
one-to-one) and the latency is reported both from the breach and from the lesson's end; in a
real school the first part is the rest of the lesson (on average half of it).
"""

from __future__ import annotations

import random
import shutil
import sqlite3
import statistics
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

from bench._harness import TrustTenant, WorkerRun
from bench.trust import TrustSize
from remote_guard.collect.collector import session_id_for_join_url
from remote_guard.fakegraph.scenario import MeetingSpec

KINDS = ("pupil_chat", "outside_joiner", "one_to_one", "calendar_one_to_one")
RULES = {
    "pupil_chat": ("pupil_meeting_chat",),
    "outside_joiner": ("outsider_in_pupil_session", "uninvited_attendee"),
    "one_to_one": ("one_to_one_without_consent",),
    "calendar_one_to_one": ("one_to_one_without_consent",),
}
ONE_TO_ONE_THRESHOLD_SECONDS = 120  # the rule's default threshold_seconds
# Breaches in a live session: with polling alone, their lesson is ended after them.
LIVE_KINDS = ("pupil_chat", "outside_joiner", "one_to_one")
CLIENT_STATE = "bench-client-state-" + "0123456789abcdef" * 2


@dataclass(frozen=True)
class DetectionOptions:
    per_kind: int = 10
    interval_seconds: float = 30.0
    lesson_ends_after: float = 20.0
    spacing_seconds: float = 0.5
    timeout_seconds: float = 150.0
    settle_seconds: float = 60.0  # how long to let the poller start before breaches


@dataclass
class Breach:
    kind: str
    target: str  # meeting key, or the created event's id
    session_id: str
    rules: tuple[str, ...]
    subject_id: str | None
    at_wall: float  # when the breach appeared (for one-to-ones: when it passed the threshold)
    actor: str | None = None  # who posts, joins, or is booked (a person or joiner key)
    call: tuple[str, list[str]] | None = None  # (teacher, pupils) in the call
    alert_from_wall: float | None = None  # one-to-ones: when the teacher was left alone
    ended_wall: float | None = None  # polling alone: when the lesson was ended
    detected_wall: float | None = None
    alerted_wall: float | None = None
    # When the change happened in the fake tenant, what its notification is recognised by
    # (("resource", a message id) or ("target", a join URL or user id)), and when the fake
    # tenant's notification of it was answered by the receiver.
    happened_wall: float | None = None
    watch: tuple[str, str] | None = None
    delivered_wall: float | None = None
    # Live alerts the session already had before the breach (raised and cleared as people
    # joined one by one): the breach's alert is a new one.
    known_alerts: frozenset[str] = frozenset()

    def latency(self) -> float | None:
        return None if self.detected_wall is None else self.detected_wall - self.at_wall

    def after_end(self) -> float | None:
        if self.detected_wall is None or self.ended_wall is None:
            return None
        return self.detected_wall - self.ended_wall

    def alert_latency(self) -> float | None:
        if self.alerted_wall is None or self.alert_from_wall is None:
            return None
        return self.alerted_wall - self.alert_from_wall

    def delivery(self) -> float | None:
        """From the change to its notification's delivery (the fake tenant's share)."""
        if self.delivered_wall is None or self.happened_wall is None:
            return None
        return self.delivered_wall - self.happened_wall

    def after_delivery(self) -> float | None:
        """From the notification's delivery to the stored finding (remote_guard's share);
        for a live one-to-one, to the SLT alert (its finding waits for the rule's threshold)."""
        if self.delivered_wall is None:
            return None
        done = self.alerted_wall if self.kind == "one_to_one" else self.detected_wall
        return None if done is None else done - self.delivered_wall


class Targets:
    """Sessions of the trust not yet used for a breach, for each kind."""

    def __init__(self, tenant: TrustTenant, rng: random.Random) -> None:
        facts = tenant.trust.facts
        breached = facts.breach_sessions
        self.chat_lessons = [k for k in facts.live_chat_lessons if k not in breached]
        self.lessons = [
            k for k in facts.live_lessons if k not in breached and k not in self.chat_lessons
        ]
        self.groups = sorted(facts.small_groups)
        self.joiners = list(facts.live_joiners)
        self.teachers = sorted(facts.lesson_people.values())
        for pool in (self.chat_lessons, self.lessons, self.groups, self.teachers):
            rng.shuffle(pool)

    def capacity(self) -> int:
        """How many breaches of each kind, in each mode, these sessions allow. Polling alone
        takes a live chat lesson, a live lesson, a small group, a joiner and a teacher per
        breach of each kind; with notifications, a live chat lesson, a joiner and three
        teachers (a calendar booking and two meetings booked for their roster)."""
        return min(
            len(self.chat_lessons) // 2,
            len(self.lessons),
            len(self.groups),
            len(self.joiners) // 2,
            len(self.teachers) // 4,
        )

    def take(self, pool: list[Any], what: str) -> Any:
        if not pool:
            raise RuntimeError(f"the trust has no more {what} for breaches")
        return pool.pop()


class Injector:
    """Chooses where each breach happens, then makes it happen in the running fake tenant."""

    def __init__(self, tenant: TrustTenant, targets: Targets) -> None:
        from remote_guard.fakegraph.live import LiveTenant

        self.tenant = tenant
        self.targets = targets
        self.live = LiveTenant(tenant.server)
        self.rng = random.Random(11)

    def session_of(self, meeting_key: str) -> str:
        join_url = self.tenant.server.join_url(meeting_key)
        if join_url is None:
            raise RuntimeError(f"{meeting_key} is not a Teams meeting")
        return session_id_for_join_url(join_url)

    def present_pupils(self, meeting_key: str) -> list[str]:
        state = self.tenant.state
        now = state.now()
        meeting = state.meetings[meeting_key]
        pupils = set(self.tenant.trust.facts.lesson_people.get(meeting_key, ("", []))[1])
        return sorted(
            p.who.key
            for p in meeting.presences
            if p.who.key in pupils and any(a <= now < b for a, b in p.intervals)
        )

    # --- choosing, before anything happens ------------------------------------------------

    def choose(self, kind: str, *, fresh_call: bool) -> Breach:
        """Where a breach of ``kind`` will happen. ``fresh_call``: for the kinds seen in a
        meeting's roster, a meeting booked now that starts once the poller has subscribed to
        its roster (Graph reports who joins and leaves after a subscription, never who was
        already in the call); otherwise a session of the trust that is live already."""
        scenario = self.tenant.trust.scenario
        if kind == "pupil_chat":
            lesson = self.targets.take(self.targets.chat_lessons, "live lessons with a chat")
            pupil = self.rng.choice(self.present_pupils(lesson))
            breach = Breach(kind, lesson, self.session_of(lesson), RULES[kind], None, 0.0)
            breach.subject_id = scenario.person_id(pupil)
            breach.actor = pupil
            return breach
        if kind == "calendar_one_to_one":
            teacher, pupils = self.targets.take(self.targets.teachers, "teachers")
            return Breach(
                kind,
                teacher,
                "",
                RULES[kind],
                scenario.person_id(pupils[-1]),
                0.0,
                actor=pupils[-1],
            )
        if fresh_call:
            teacher, pupils = self.targets.take(self.targets.teachers, "teachers")
            key, session_id = self.book(teacher, pupils[:3], starts_in=timedelta(minutes=1))
            breach = Breach(kind, key, session_id, RULES[kind], None, 0.0)
            breach.call = (teacher, pupils[:3])
        elif kind == "one_to_one":
            key = self.targets.take(self.targets.groups, "small-group sessions")
            breach = Breach(kind, key, self.session_of(key), RULES[kind], None, 0.0)
            breach.call = self.tenant.trust.facts.small_groups[key]
        else:
            key = self.targets.take(self.targets.lessons, "live lessons")
            breach = Breach(kind, key, self.session_of(key), RULES[kind], None, 0.0)
        if kind == "one_to_one":
            _teacher, pupils = breach.call or ("", [])
            breach.subject_id = scenario.person_id(pupils[2])
        else:
            breach.actor = self.targets.take(self.targets.joiners, "outside joiners")
        return breach

    def book(self, teacher: str, pupils: list[str], *, starts_in: timedelta) -> tuple[str, str]:
        """A teacher books a Teams meeting with ``pupils``; (its meeting key, its session id)."""
        state = self.tenant.state
        start = state.now() + starts_in
        body = {
            "subject": "Reading group",
            "isOnlineMeeting": True,
            "onlineMeetingProvider": "teamsForBusiness",
            "attendees": [
                {
                    "type": "required",
                    "emailAddress": {"address": state.identities[pupil].email, "name": pupil},
                }
                for pupil in pupils
            ],
        }
        event, _ = state.create_event(
            user=state.identities[teacher],
            body=body,
            start=start,
            end=start + timedelta(minutes=40),
            zone="UTC",
        )
        join_url = (event.online_meeting or {}).get("joinUrl")
        if not join_url or event.meeting_key is None:
            raise RuntimeError("the fake tenant made no Teams meeting for the booking")
        # LiveTenant moves people in and out of scenario meetings only; a meeting booked
        # through Graph is made one (with the spec the fake built it from) so its call can run.
        meeting = state.meetings[event.meeting_key]
        self.tenant.trust.scenario.meetings.append(
            MeetingSpec(
                key=event.meeting_key,
                subject=meeting.subject,
                organizer=teacher,
                start=meeting.start.isoformat(),
                end=meeting.end.isoformat(),
                invitees=list(pupils),
                call_record=False,
                attendance_report=False,
            )
        )
        return event.meeting_key, session_id_for_join_url(join_url)

    def start_call(self, breach: Breach) -> None:
        """Everyone booked joins the call of a meeting booked for the benchmark."""
        teacher, pupils = breach.call or ("", [])
        for who in (teacher, *pupils):
            self.live.join(breach.target, who)

    def join_url(self, breach: Breach) -> str | None:
        return self.tenant.server.join_url(breach.target)

    # --- making it happen ------------------------------------------------------------------

    def act(self, breach: Breach) -> None:
        """Make the breach happen now, and note when."""
        if breach.kind == "pupil_chat":
            message_id = self.live.post(breach.target, breach.actor or "", "can u hear me")
            breach.at_wall = time.time()
            breach.watch = ("resource", message_id)
        elif breach.kind == "outside_joiner":
            self.live.join(breach.target, breach.actor or "")
            breach.at_wall = time.time()
            breach.watch = ("target", self.join_url(breach) or "")
        elif breach.kind == "one_to_one":
            _teacher, pupils = breach.call or ("", [])
            for pupil in pupils[:2]:
                self.live.leave(breach.target, pupil)
            alone = time.time()
            # A one-to-one is a breach once it has lasted the rule's threshold.
            breach.at_wall = alone + ONE_TO_ONE_THRESHOLD_SECONDS
            breach.alert_from_wall = alone
            breach.watch = ("target", self.join_url(breach) or "")
        else:
            teacher = breach.target
            pupil = breach.actor or ""
            key, session_id = self.book(teacher, [pupil], starts_in=timedelta(hours=1))
            breach.target, breach.session_id = key, session_id
            breach.at_wall = time.time()
            breach.watch = ("target", self.tenant.state.identities[teacher].id)
        breach.happened_wall = breach.alert_from_wall or breach.at_wall

    def subscription_targets(self) -> dict[str, str]:
        """Subscription id -> what it watches (chat id, user id, join URL), lower case."""
        return {s.id: s.target.lower() for s in self.live.subscriptions()}

    def note_deliveries(self, breaches: list[Breach], targets: dict[str, str]) -> None:
        """For each breach, when the first notification about it after it happened was
        delivered (answered by the receiver)."""
        offset = time.time() - time.monotonic()
        delivered = sorted(
            (d.delivered_at + offset, d)
            for d in self.live.deliveries()
            if d.kind == "change" and d.delivered and d.delivered_at is not None
        )
        for breach in breaches:
            if breach.watch is None or breach.happened_wall is None:
                continue
            how, value = breach.watch[0], breach.watch[1].lower()
            for at, delivery in delivered:
                if at < breach.happened_wall:
                    continue
                items = delivery.body.get("value", [])
                if any(
                    value in str(item.get("resource", "")).lower()
                    if how == "resource"
                    else targets.get(str(item.get("subscriptionId"))) == value
                    for item in items
                ):
                    breach.delivered_wall = at
                    break

    def end_lesson(self, breach: Breach) -> None:
        """The lesson ends now: its calendar entry's end moves to now and its call ends."""
        state = self.tenant.state
        now = state.now()
        state.update_meeting(breach.target, end=now)
        self.live.end_call(breach.target)
        breach.ended_wall = time.time()

    def close(self) -> None:
        self.live.close()


def _check(database: Path, breaches: list[Breach], *, want_alerts: bool) -> None:
    """Note, for the breaches made so far, whether each one's finding (and alert) is now
    visible in the database."""
    made = [b for b in breaches if b.happened_wall is not None]
    pending = [b for b in made if b.detected_wall is None]
    alerts = [b for b in made if want_alerts and b.alert_from_wall and not b.alerted_wall]
    if not pending and not alerts:
        return
    now = time.time()
    connection = sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=5)
    try:
        found = _open_findings(connection, {b.session_id for b in pending})
        for breach in pending:
            hits = found.get(breach.session_id, [])
            if any(
                rule in breach.rules and (breach.subject_id is None or subject == breach.subject_id)
                for rule, subject in hits
            ):
                breach.detected_wall = now
        if alerts:
            raised = _alerts_by_session(connection, {b.session_id for b in alerts})
            for breach in alerts:
                if raised.get(breach.session_id, set()) - breach.known_alerts:
                    breach.alerted_wall = now
    finally:
        connection.close()


def _observe(
    injector: Injector, modes: list[ModeRun], options: DetectionOptions, *, until: float
) -> None:
    """Until ``until``: every 0.1 s, end the polling run's lessons that are due and look for
    findings and alerts in both databases (also while breaches are still being made)."""
    polling = next(mode for mode in modes if not mode.notifications)
    while True:
        now = time.time()
        for breach in polling.breaches:
            if breach.kind not in LIVE_KINDS or breach.happened_wall is None:
                continue
            after = 5.0 if breach.kind == "one_to_one" else options.lesson_ends_after
            if breach.ended_wall is None and now >= breach.at_wall + after:
                injector.end_lesson(breach)
        for mode in modes:
            measurable = [b for b in mode.breaches if b.session_id not in mode.excluded]
            _check(mode.database, measurable, want_alerts=mode.notifications)
        if time.time() >= until:
            return
        time.sleep(0.1)


def _open_findings(
    connection: sqlite3.Connection, session_ids: set[str]
) -> dict[str, list[tuple[str, str]]]:
    if not session_ids:
        return {}
    marks = ",".join("?" * len(session_ids))
    try:
        rows = connection.execute(
            f"select session_id, rule_id, subject_key from findings where session_id in ({marks}) "  # noqa: S608 - placeholders only
            "and status in ('fail', 'warn') and exemption is null",
            sorted(session_ids),
        ).fetchall()
    except sqlite3.OperationalError:
        return {}
    found: dict[str, list[tuple[str, str]]] = {}
    for session_id, rule_id, subject in rows:
        found.setdefault(session_id, []).append((rule_id, subject))
    return found


def _alerts_by_session(
    connection: sqlite3.Connection, session_ids: set[str]
) -> dict[str, set[str]]:
    """The ids of every live alert (open or cleared) of each session."""
    if not session_ids:
        return {}
    marks = ",".join("?" * len(session_ids))
    try:
        rows = connection.execute(
            f"select session_id, id from live_alerts where session_id in ({marks})",  # noqa: S608 - placeholders only
            sorted(session_ids),
        ).fetchall()
    except sqlite3.OperationalError:
        return {}
    found: dict[str, set[str]] = {}
    for session_id, alert_id in rows:
        found.setdefault(session_id, set()).add(str(alert_id))
    return found


def _known_alerts(database: Path, session_id: str) -> frozenset[str]:
    connection = sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=5)
    try:
        return frozenset(_alerts_by_session(connection, {session_id}).get(session_id, set()))
    finally:
        connection.close()


def _pre_existing(database: Path, breaches: Iterable[Breach]) -> set[str]:
    """Sessions that already had the breach's finding before it was made (not measurable)."""
    connection = sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=5)
    try:
        found = _open_findings(connection, {b.session_id for b in breaches})
    finally:
        connection.close()
    return {
        b.session_id
        for b in breaches
        if any(rule in b.rules for rule, _subject in found.get(b.session_id, []))
    }


def summarise(values: list[float | None]) -> dict[str, Any]:
    measured = sorted(v for v in values if v is not None)
    if not measured:
        return {"count": 0, "missed": len(values)}
    p95_index = max(0, round(0.95 * len(measured)) - 1)
    return {
        "count": len(measured),
        "missed": len(values) - len(measured),
        "median_s": round(statistics.median(measured), 2),
        "p95_s": round(measured[p95_index], 2),
        "max_s": round(measured[-1], 2),
    }


@dataclass
class ModeRun:
    name: str
    notifications: bool
    database: Path
    breaches: list[Breach] = field(default_factory=list)
    worker: WorkerRun | None = None
    excluded: set[str] = field(default_factory=set)


def notification_settings(tenant: TrustTenant, folder: Path, port: int) -> dict[str, Any]:
    from remote_guard.fakegraph.live import LiveTenant

    certfile, keyfile = LiveTenant(tenant.server).receiver_tls()
    return {
        "enabled": True,
        "notification_url": f"https://127.0.0.1:{port}/notifications",
        "client_state": CLIENT_STATE,
        "resources": ["call_records", "meeting_chats", "calendars"],
        "roster_events": True,
        "receiver": "poller",
        "listen_host": "127.0.0.1",
        "listen_port": port,
        "tls_cert_file": str(certfile),
        "tls_key_file": str(keyfile),
        "live_alert_mail_after_seconds": 60,
    }


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def run(
    tenant: TrustTenant,
    synced_database: Path,
    folder: Path,
    options: DetectionOptions,
    *,
    note: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Both modes side by side, each on its own copy of the synced database."""
    folder.mkdir(parents=True, exist_ok=True)
    tenant.reset_limits()
    results: dict[str, Any] = {"options": options.__dict__}
    try:
        import remote_guard.fakegraph.live
        import remote_guard.subscriptions.hub  # noqa: F401 - only whether it is there
    except ImportError as exc:
        reason = f"change notifications are not in this version ({exc})"
        return {
            "with_notifications": {"not_measured": reason},
            "polling_alone": {"not_measured": reason},
        }
    targets = Targets(tenant, random.Random(5))
    per_kind = min(options.per_kind, targets.capacity())
    if per_kind < 1:
        reason = "the trust is too small for a breach of each kind in each mode"
        return {
            "with_notifications": {"not_measured": reason},
            "polling_alone": {"not_measured": reason},
        }
    results["per_kind"] = per_kind
    modes = [
        ModeRun("polling_alone", False, folder / "polling.db"),
        ModeRun("with_notifications", True, folder / "notifications.db"),
    ]
    for mode in modes:
        for suffix in ("", "-wal", "-shm"):
            source = Path(f"{synced_database}{suffix}")
            if source.exists():
                shutil.copyfile(source, f"{mode.database}{suffix}")
    stop_file = folder / "stop"
    stop_file.unlink(missing_ok=True)
    port = _free_port()
    for mode in modes:
        mode.worker = tenant.run_worker(
            mode="frugal",
            database_url=f"sqlite:///{mode.database}",
            scheduled=True,
            interval_seconds=options.interval_seconds,
            stop_file=stop_file,
            notifications=notification_settings(tenant, folder, port)
            if mode.notifications
            else None,
            wait=False,
        )
    injector = Injector(tenant, targets)
    try:
        _settle(modes, options, note, injector.live.subscriptions)
        _breach_and_watch(injector, modes, per_kind, options, note)
    finally:
        stop_file.touch()
        injector.close()
        for mode in modes:
            if mode.worker is not None:
                try:
                    mode.worker.wait(timeout=300)
                except Exception as exc:  # noqa: BLE001 - a failed worker is reported, not raised
                    results.setdefault("errors", []).append(f"{mode.name}: {exc}")
    for mode in modes:
        results[mode.name] = _mode_figures(mode)
        cycles = mode.worker.results().get("cycles", []) if mode.worker else []
        results[mode.name]["cycles"] = len(cycles)
        results[mode.name]["cycle_seconds"] = summarise([c["seconds"] for c in cycles])
    return results


def _breach_and_watch(
    injector: Injector,
    modes: list[ModeRun],
    per_kind: int,
    options: DetectionOptions,
    note: Callable[[str], None],
) -> None:
    """Choose the breaches, make them happen and watch for their findings and alerts."""
    for mode in modes:
        for kind in KINDS:
            mode.breaches += [
                injector.choose(kind, fresh_call=mode.notifications) for _ in range(per_kind)
            ]
        # Only what was not found before the breach is measured.
        mode.excluded = _pre_existing(mode.database, mode.breaches)
    booked = [
        b for mode in modes for b in mode.breaches if b.call and b.target.startswith("created")
    ]
    if booked:
        _start_booked_calls(injector, booked, options, note)
    # One of each kind in turn, the two modes alternating: no burst of one kind.
    order = [
        (mode, breach)
        for number in range(per_kind)
        for kind in KINDS
        for mode in modes
        for breach in [b for b in mode.breaches if b.kind == kind][number : number + 1]
    ]
    for mode, breach in order:
        if mode.notifications and breach.kind == "one_to_one":
            breach.known_alerts = _known_alerts(mode.database, breach.session_id)
        injector.act(breach)
        _observe(injector, modes, options, until=time.time() + options.spacing_seconds)
    injected = time.time()
    note(f"  detection: {len(order)} breaches made")
    watched = injector.subscription_targets()
    deadline = injected + options.timeout_seconds + ONE_TO_ONE_THRESHOLD_SECONDS
    _end_lessons_and_watch(injector, modes, options, deadline)
    watched.update(injector.subscription_targets())
    for mode in modes:
        if mode.notifications:
            injector.note_deliveries(mode.breaches, watched)


def run_on_own_trust(
    size: TrustSize,
    folder: Path,
    options: DetectionOptions,
    *,
    latency_ms: float,
    note: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Detection on a trust of ``size`` served here: its first full sync prepared (latency 0,
    no throttling, no pacing: as in :mod:`bench.graph_load`), then :func:`run` at
    ``latency_ms`` with throttling on.

    Raises:
        RuntimeError: the preparing poller failed.
    """
    began = time.perf_counter()
    tenant = TrustTenant(size, folder=folder / "tenant", latency_ms=0)
    try:
        tenant.reset_limits(latency_ms=0, throttling=False)
        url = tenant.new_database("synced")
        prepared = tenant.run_worker(mode="frugal", database_url=url, cycles=1, unpaced=True).wait()
        note(
            f"  detection: {size.schools}-school trust prepared in "
            f"{prepared['cycles'][0]['seconds']:.0f} s"
        )
        tenant.reset_limits(latency_ms=latency_ms, throttling=True)
        results = run(
            tenant, Path(url.removeprefix("sqlite:///")), folder / "runs", options, note=note
        )
        results["scale"] = f"{size.schools} schools, {tenant.trust.facts.total_sessions} sessions"
        results["schools"] = size.schools
        results["sessions"] = tenant.trust.facts.total_sessions
        results["latency_ms"] = latency_ms
        results["throttling_429s_by_limit"] = tenant.throttling_counts()
    finally:
        tenant.close()
    results["seconds"] = round(time.perf_counter() - began, 1)
    return results


def _settle(
    modes: list[ModeRun],
    options: DetectionOptions,
    note: Callable[[str], None],
    subscriptions: Callable[[], list[Any]],
) -> None:
    """Wait until each poller finished a cycle (and the notifications one subscribed)."""
    deadline = time.time() + options.settle_seconds + 240
    while time.time() < deadline:
        done = all(
            mode.worker is not None and len(mode.worker.results().get("cycles", [])) >= 1
            for mode in modes
        )
        if done:
            break
        for mode in modes:
            if mode.worker is not None and mode.worker.process.poll() is not None:
                mode.worker.wait(timeout=1)
        time.sleep(0.5)
    # The subscriptions follow the meetings the first cycle found: wait until their number
    # has stopped growing for a few seconds.
    last, steady_since = -1, time.time()
    end = time.time() + options.settle_seconds
    while time.time() < end:
        count = len(subscriptions())
        if count != last:
            last, steady_since = count, time.time()
        elif count > 0 and time.time() - steady_since >= 5:
            break
        time.sleep(0.5)
    note(f"  detection: pollers settled ({max(last, 0)} subscriptions)")


def _start_booked_calls(
    injector: Injector,
    booked: list[Breach],
    options: DetectionOptions,
    note: Callable[[str], None],
) -> None:
    """Wait until the poller has subscribed to each booked meeting's roster (it learns of the
    booking from the calendar), then start their calls."""
    wanted = {injector.join_url(breach) for breach in booked}
    deadline = time.time() + options.settle_seconds + options.interval_seconds
    subscribed: set[str | None] = set()
    while time.time() < deadline:
        subscribed = {s.target for s in injector.live.subscriptions()} & wanted
        if subscribed == wanted:
            break
        time.sleep(0.5)
    note(f"  detection: {len(subscribed)} of {len(wanted)} booked meetings' rosters subscribed")
    for breach in booked:
        injector.start_call(breach)
    # Let the joins reach the poller before anything happens in the calls.
    time.sleep(5)


def _end_lessons_and_watch(
    injector: Injector, modes: list[ModeRun], options: DetectionOptions, deadline: float
) -> None:
    """Observe until every measurable breach is found (and alerted), or until ``deadline``."""
    while time.time() < deadline:
        _observe(injector, modes, options, until=time.time() + 0.5)
        if all(
            b.detected_wall is not None
            and (not (mode.notifications and b.alert_from_wall) or b.alerted_wall is not None)
            for mode in modes
            for b in mode.breaches
            if b.session_id not in mode.excluded
        ):
            return


def _mode_figures(mode: ModeRun) -> dict[str, Any]:
    figures: dict[str, Any] = {"breaches": len(mode.breaches), "by_kind": {}}
    for kind in KINDS:
        breaches = [
            b for b in mode.breaches if b.kind == kind and b.session_id not in mode.excluded
        ]
        entry: dict[str, Any] = {
            "latency": summarise([b.latency() for b in breaches]),
            "excluded_already_found": sum(
                1 for b in mode.breaches if b.kind == kind and b.session_id in mode.excluded
            ),
        }
        if not mode.notifications and kind != "calendar_one_to_one":
            entry["after_lesson_end"] = summarise([b.after_end() for b in breaches])
        if kind == "one_to_one" and mode.notifications:
            entry["slt_alert"] = summarise([b.alert_latency() for b in breaches])
        if mode.notifications:
            entry["fake_delivery"] = summarise([b.delivery() for b in breaches])
            entry["after_delivery"] = summarise([b.after_delivery() for b in breaches])
        figures["by_kind"][kind] = entry
    measured = [b for b in mode.breaches if b.session_id not in mode.excluded]
    figures["all"] = summarise([b.latency() for b in measured])
    if mode.notifications:
        figures["all_fake_delivery"] = summarise([b.delivery() for b in measured])
        figures["all_after_delivery"] = summarise([b.after_delivery() for b in measured])
    figures["breach_log"] = [
        {
            "kind": b.kind,
            "session_id": b.session_id,
            "latency_s": _round(b.latency()),
            "alert_s": _round(b.alert_latency()),
            "fake_delivery_s": _round(b.delivery()),
            "after_delivery_s": _round(b.after_delivery()),
            "after_lesson_end_s": _round(b.after_end()),
            "excluded": b.session_id in mode.excluded,
        }
        for b in mode.breaches
    ]
    return figures


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 2)
