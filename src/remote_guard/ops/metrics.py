"""The Prometheus text format (version 0.0.4) for ``/metrics``.

Counts that live in the database (poll runs by status, findings by rule and status, the last
poll) are read with two grouped queries per scrape, so every process shows the same numbers.
What one process measures itself is kept in memory: Graph requests and throttling by endpoint
(the Graph client's :class:`RequestStats`), and the duration of the polls this process ran
(:data:`POLL_METRICS`, fed by ``run_poll``). Notification lag is not exported yet: no
notification records when it was sent.
"""

from __future__ import annotations

import hmac
import math
import threading
from collections import Counter
from collections.abc import Mapping
from datetime import datetime

from pydantic import SecretStr
from sqlalchemy import func, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from remote_guard.findings.models import FindingRow
from remote_guard.graph.client import RequestStats
from remote_guard.poll.models import PollRunRow

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
# Poll durations in seconds: a small school polls in seconds, a trust's first poll in minutes.
DURATION_BUCKETS = (1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, math.inf)
LOOPBACK = frozenset({"127.0.0.1", "::1", "localhost"})


class PollMetrics:
    """Poll runs this process finished, by status, and a histogram of how long they took."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.runs: Counter[str] = Counter()
        self.buckets = [0] * len(DURATION_BUCKETS)
        self.total_seconds = 0.0
        self.count = 0

    def observe(self, status: str, seconds: float) -> None:
        with self._lock:
            self.runs[status] += 1
            self.count += 1
            self.total_seconds += max(0.0, seconds)
            for index, bound in enumerate(DURATION_BUCKETS):
                if seconds <= bound:
                    self.buckets[index] += 1


# The polls run by this process (``run_poll`` reports to it).
POLL_METRICS = PollMetrics()


def metrics_allowed(
    *, authorization: str | None, client_host: str | None, token: SecretStr | None
) -> bool:
    """Whether a request may read ``/metrics``: the bearer token when one is configured, else
    only a client on this machine."""
    if token is None:
        return (client_host or "") in LOOPBACK
    scheme, _, given = (authorization or "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(
        given.strip().encode("utf-8"), token.get_secret_value().encode("utf-8")
    )


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(**labels: str) -> str:
    inner = ",".join(f'{name}="{_label(value)}"' for name, value in labels.items())
    return "{" + inner + "}" if inner else ""


def _number(value: float) -> str:
    if math.isinf(value):
        return "+Inf"
    return repr(float(value)) if not float(value).is_integer() else str(int(value))


class _Writer:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def family(self, name: str, kind: str, help_text: str) -> None:
        self.lines.append(f"# HELP {name} {help_text}")
        self.lines.append(f"# TYPE {name} {kind}")

    def sample(self, name: str, value: float, **labels: str) -> None:
        self.lines.append(f"{name}{_labels(**labels)} {_number(value)}")

    def text(self) -> str:
        return "\n".join(self.lines) + "\n"


def render(
    db: sessionmaker[Session],
    *,
    graph: Mapping[str, RequestStats],
    polls: PollMetrics = POLL_METRICS,
    now: datetime,
) -> str:
    """Every metric, in the Prometheus text format. ``graph`` maps a client name (``web``,
    ``poller``) to its request counts. A database that does not answer is reported as
    ``remote_guard_database_up 0`` with the database metrics left out, never as an error."""
    out = _Writer()
    out.family("remote_guard_up", "gauge", "1 while this process answers.")
    out.sample("remote_guard_up", 1)
    _database_metrics(out, db, now)
    out.family(
        "remote_guard_process_polls_total",
        "counter",
        "Poll runs this process finished, by status.",
    )
    for status, count in sorted(polls.runs.items()):
        out.sample("remote_guard_process_polls_total", count, status=status)
    name = "remote_guard_poll_duration_seconds"
    out.family(name, "histogram", "How long the poll runs of this process took.")
    for bound, count in zip(DURATION_BUCKETS, polls.buckets, strict=True):
        out.sample(f"{name}_bucket", count, le=_number(bound))
    out.sample(f"{name}_sum", polls.total_seconds)
    out.sample(f"{name}_count", polls.count)
    _graph_metrics(out, graph)
    return out.text()


def _database_metrics(out: _Writer, db: sessionmaker[Session], now: datetime) -> None:
    try:
        with db() as session:
            runs = session.execute(
                select(PollRunRow.status, func.count()).group_by(PollRunRow.status)
            ).all()
            findings = session.execute(
                select(FindingRow.rule_id, FindingRow.status, func.count()).group_by(
                    FindingRow.rule_id, FindingRow.status
                )
            ).all()
            last = session.execute(
                select(PollRunRow.started_at, PollRunRow.finished_at, PollRunRow.status)
                .where(PollRunRow.finished_at.is_not(None))
                .order_by(PollRunRow.finished_at.desc())
                .limit(1)
            ).one_or_none()
    except SQLAlchemyError:
        out.family("remote_guard_database_up", "gauge", "1 if the database answered.")
        out.sample("remote_guard_database_up", 0)
        return
    out.family("remote_guard_database_up", "gauge", "1 if the database answered.")
    out.sample("remote_guard_database_up", 1)
    out.family(
        "remote_guard_poll_runs",
        "gauge",
        "Poll runs recorded in the database, by status (interrupted: cut short by a crash).",
    )
    for status, count in sorted(runs):
        out.sample("remote_guard_poll_runs", count, status=str(status))
    started: datetime | None = last[0] if last is not None else None
    finished: datetime | None = last[1] if last is not None else None
    if last is not None and started is not None and finished is not None:
        status = last[2]
        out.family(
            "remote_guard_last_poll_finished_timestamp_seconds",
            "gauge",
            "When the latest poll run finished (Unix time).",
        )
        out.sample(
            "remote_guard_last_poll_finished_timestamp_seconds",
            finished.timestamp(),
            status=str(status),
        )
        out.family(
            "remote_guard_last_poll_duration_seconds",
            "gauge",
            "How long the latest finished poll run took.",
        )
        out.sample("remote_guard_last_poll_duration_seconds", (finished - started).total_seconds())
        out.family(
            "remote_guard_last_poll_age_seconds",
            "gauge",
            "Seconds since the latest poll run finished.",
        )
        out.sample("remote_guard_last_poll_age_seconds", max(0.0, (now - finished).total_seconds()))
    out.family("remote_guard_findings", "gauge", "Stored findings, by rule and status.")
    for rule, status, count in sorted(findings):
        out.sample("remote_guard_findings", count, rule=str(rule), status=str(status))


def _graph_metrics(out: _Writer, graph: Mapping[str, RequestStats]) -> None:
    families = (
        ("remote_guard_graph_requests_total", "Graph requests sent, by endpoint.", "requests"),
        (
            "remote_guard_graph_throttled_total",
            "Graph answers 429 (throttled), by endpoint.",
            "throttled",
        ),
    )
    for name, help_text, attribute in families:
        out.family(name, "counter", help_text)
        for client, stats in sorted(graph.items()):
            counts: Counter[str] = getattr(stats, attribute)
            for endpoint, count in sorted(counts.items()):
                out.sample(name, count, client=client, endpoint=endpoint)
    out.family("remote_guard_graph_retries_total", "counter", "Graph requests sent again.")
    for client, stats in sorted(graph.items()):
        out.sample("remote_guard_graph_retries_total", stats.retries, client=client)
