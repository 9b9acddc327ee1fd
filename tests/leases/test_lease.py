"""Leases on SQLite and PostgreSQL: claim, conflict, renew, expiry and takeover, fencing."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import text

from remote_guard.leases.lease import (
    Grant,
    LeaseLostError,
    Leases,
    database_now,
    live_holders,
    runs_under_live_leases,
)
from remote_guard.store.db import transaction
from tests.leases.conftest import Store

KEY = "poll:tenant:shard:0of2"


def _fenced_write(leases: Leases, grant: Grant) -> None:
    """Write the holder's name into ``written``, fenced by ``grant``, in one transaction."""
    with transaction(leases.db) as session:
        leases.fence(session, grant)
        session.execute(text("INSERT INTO written VALUES (:who)"), {"who": leases.holder})


def _attach(leases: Leases, grant: Grant, run_id: str) -> None:
    with transaction(leases.db) as session:
        leases.attach_run(session, grant, run_id)


def test_a_free_key_is_claimed_with_the_first_fencing_token(store: Store) -> None:
    """The first claim of a key wins, with token 1 and an expiry a lease length ahead."""
    alice, _ = store.workers(seconds=30)
    grant = alice.claim(KEY)
    assert grant is not None
    assert (grant.key, grant.holder, grant.token) == (KEY, "alice", 1)
    assert grant.expires_at - grant.acquired_at == timedelta(seconds=30)
    row = store.row(KEY)
    assert row is not None
    assert (row.holder, row.fencing_token, row.expires_at) == ("alice", 1, grant.expires_at)


def test_a_held_key_cannot_be_claimed_by_another_worker(store: Store) -> None:
    """While alice's lease lives, bob's claim fails and the row still names alice."""
    alice, bob = store.workers()
    assert alice.claim(KEY) is not None
    assert bob.claim(KEY) is None
    row = store.row(KEY)
    assert row is not None
    assert (row.holder, row.fencing_token) == ("alice", 1)


def test_the_holder_claiming_again_keeps_its_token(store: Store) -> None:
    """A second claim by the holder is the same lease: same token, same acquisition time."""
    alice, _ = store.workers()
    first = alice.claim(KEY)
    again = alice.claim(KEY)
    assert first is not None
    assert again is not None
    assert (again.token, again.acquired_at) == (first.token, first.acquired_at)
    assert again.expires_at >= first.expires_at


def test_renewing_pushes_the_expiry_forward(store: Store) -> None:
    """A renewal moves ``expires_at`` to a lease length past the database's now."""
    alice, _ = store.workers(seconds=30)
    grant = alice.claim(KEY)
    assert grant is not None
    before = grant.expires_at
    assert alice.renew(grant) is True
    row = store.row(KEY)
    assert row is not None
    assert row.expires_at == grant.expires_at
    assert grant.expires_at >= before
    assert row.renewed_at is not None
    assert row.expires_at - row.renewed_at == timedelta(seconds=30)


def test_an_expired_lease_is_taken_over_with_a_new_token(store: Store) -> None:
    """Once alice's lease has expired (she died), bob takes the key with token 2; alice can
    then neither renew nor release it."""
    alice, bob = store.workers()
    dead = alice.claim(KEY)
    assert dead is not None
    store.expire(KEY)
    taken = bob.claim(KEY)
    assert taken is not None
    assert (taken.holder, taken.token) == ("bob", 2)
    assert alice.renew(dead) is False
    assert dead.lost is True
    assert alice.release(dead, done=True) is False
    row = store.row(KEY)
    assert row is not None
    assert (row.holder, row.fencing_token, row.done_at) == ("bob", 2, None)


def test_an_expired_lease_nobody_took_is_renewed_by_its_holder(store: Store) -> None:
    """Past its expiry but not taken (the token has not moved), the holder keeps the lease."""
    alice, _ = store.workers()
    grant = alice.claim(KEY)
    assert grant is not None
    store.expire(KEY)
    assert alice.renew(grant) is True
    row = store.row(KEY)
    assert row is not None
    assert (row.holder, row.fencing_token) == ("alice", 1)


def test_a_fenced_write_by_a_worker_that_lost_its_lease_is_refused(store: Store) -> None:
    """After bob took the key over, alice's fence raises inside her transaction, so the write
    it guards is rolled back; bob's fence passes."""
    alice, bob = store.workers()
    stale = alice.claim(KEY)
    assert stale is not None
    store.expire(KEY)
    current = bob.claim(KEY)
    assert current is not None
    with store.engine.begin() as connection:
        connection.execute(text("CREATE TABLE written (who VARCHAR(10))"))
    with pytest.raises(LeaseLostError, match="no longer held by alice"):
        _fenced_write(alice, stale)
    _fenced_write(bob, current)
    with store.engine.connect() as connection:
        assert connection.execute(text("SELECT who FROM written")).scalars().all() == ["bob"]
    assert stale.lost is True


def test_a_release_frees_the_key_at_once_and_marks_the_work_done(store: Store) -> None:
    """Released with ``done``, the key is free for bob without waiting for the expiry, and
    ``done_at`` says when the work finished."""
    alice, bob = store.workers()
    grant = alice.claim(KEY)
    assert grant is not None
    assert alice.release(grant, done=True) is True
    row = store.row(KEY)
    assert row is not None
    assert row.holder is None
    assert row.done_at is not None
    taken = bob.claim(KEY)
    assert taken is not None
    assert taken.token == 2


def test_work_finished_since_a_moment_is_not_claimed_again(store: Store) -> None:
    """``not_done_since``: work finished after the moment (a session another shard stored this
    cycle) is left; work finished before it (a shard polled an interval ago) is due."""
    alice, bob = store.workers()
    with store.db() as session:
        cycle_start = database_now(session)
    grant = alice.claim(KEY)
    assert grant is not None
    assert alice.release(grant, done=True) is True
    assert bob.claim(KEY, not_done_since=cycle_start) is None
    assert bob.claim(KEY, not_done_since=timedelta(hours=1)) is None
    with store.db() as session:
        later = database_now(session) + timedelta(seconds=1)
    assert bob.claim(KEY, not_done_since=later) is not None


def test_a_release_without_done_leaves_the_work_due(store: Store) -> None:
    """A stopped worker gives its part back undone: the next worker may claim it however
    recently it was claimed."""
    alice, bob = store.workers()
    grant = alice.claim(KEY)
    assert grant is not None
    assert alice.release(grant, done=False) is True
    assert bob.claim(KEY, not_done_since=timedelta(hours=1)) is not None


def test_one_renewal_renews_every_lease_and_reports_those_taken_over(store: Store) -> None:
    """``renew_held`` renews all of alice's leases in one statement; one bob took over is
    reported lost, and its row stays bob's."""
    alice, bob = store.workers()
    kept = alice.claim("session:kept")
    taken = alice.claim("session:taken")
    assert kept is not None
    assert taken is not None
    store.expire("session:taken")
    assert bob.claim("session:taken") is not None
    assert alice.renew_held([kept, taken]) == [taken]
    assert (kept.lost, taken.lost) == (False, True)
    row = store.row("session:taken")
    assert row is not None
    assert row.holder == "bob"


def test_a_run_is_live_only_while_its_lease_is(store: Store) -> None:
    """A run attached to a lease counts as in progress until the lease expires."""
    alice, _ = store.workers()
    grant = alice.claim(KEY)
    assert grant is not None
    with transaction(alice.db) as session:
        alice.attach_run(session, grant, "run-1")
    with store.db() as session:
        assert runs_under_live_leases(session) == {"run-1"}
        assert live_holders(session, prefix="poll:tenant:") == {KEY: "alice"}
    store.expire(KEY)
    with store.db() as session:
        assert runs_under_live_leases(session) == set()
        assert live_holders(session, prefix="poll:tenant:") == {}


def test_attaching_a_run_to_a_lost_lease_is_refused(store: Store) -> None:
    """A run cannot start under a lease another worker has taken over."""
    alice, bob = store.workers()
    grant = alice.claim(KEY)
    assert grant is not None
    store.expire(KEY)
    assert bob.claim(KEY) is not None
    with pytest.raises(LeaseLostError, match="was lost before run run-1 began"):
        _attach(alice, grant, "run-1")


def test_release_all_and_prune(store: Store) -> None:
    """A clean shutdown releases everything alice holds; prune deletes released session
    leases older than asked, never a held one or another prefix."""
    alice, bob = store.workers()
    assert alice.claim("session:a") is not None
    assert alice.claim(KEY) is not None
    assert bob.claim("session:b") is not None
    assert alice.release_all() == 2
    assert alice.prune(prefix="session:", older_than=timedelta(hours=1)) == 0
    assert alice.prune(prefix="session:", older_than=timedelta(seconds=-60)) == 1
    assert store.row("session:a") is None
    assert store.row("session:b") is not None
    assert store.row(KEY) is not None


def test_the_database_clock_is_used(store: Store) -> None:
    """Times come from the database server, in UTC, close to this machine's own clock."""
    with store.db() as session:
        now = database_now(session)
    assert now.tzinfo == UTC
    assert abs(now - datetime.now(UTC)) < timedelta(minutes=5)


@pytest.mark.parametrize("seconds", [0, -1])
def test_a_lease_length_must_be_positive(store: Store, seconds: float) -> None:
    with pytest.raises(ValueError, match="positive number of seconds"):
        Leases(store.db, holder="alice", seconds=seconds)


def test_only_one_of_many_concurrent_claims_wins(store: Store) -> None:
    """Eight workers claiming one free key at the same moment: exactly one wins."""
    workers = [Leases(store.db, holder=f"worker-{n}", seconds=30) for n in range(8)]
    barrier = threading.Barrier(len(workers))
    won: list[str] = []
    failures: list[BaseException] = []

    def contend(leases: Leases) -> None:
        try:
            barrier.wait(timeout=30)
            if leases.claim("contended") is not None:
                won.append(leases.holder)
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            failures.append(exc)

    threads = [threading.Thread(target=contend, args=(w,)) for w in workers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert failures == []
    assert len(won) == 1
    row = store.row("contended")
    assert row is not None
    assert (row.holder, row.fencing_token) == (won[0], 1)


@pytest.mark.postgres
def test_a_takeover_waits_for_the_fenced_write_to_commit_on_postgresql() -> None:
    """On PostgreSQL the fence locks the lease row: alice's lease expired while her write was
    under way, and bob's takeover waits until that write has committed (so the new holder
    never works beside an old write still landing), then wins with the next token."""
    from remote_guard.leases.models import LeaseRow
    from remote_guard.store.db import make_engine, session_factory
    from tests.postgres import fresh_schema

    with fresh_schema() as url:
        engine = make_engine(url)
        LeaseRow.__table__.create(engine)
        store = Store(engine, session_factory(engine))
        alice, bob = store.workers()
        grant = alice.claim(KEY)
        assert grant is not None
        store.expire(KEY)
        results: list[object] = []
        with transaction(alice.db) as session:
            alice.fence(session, grant)
            taker = threading.Thread(target=lambda: results.append(bob.claim(KEY)))
            taker.start()
            taker.join(timeout=1.0)
            blocked = taker.is_alive()
        taker.join(timeout=30)
        engine.dispose()
    assert blocked, "bob's claim went through while alice's fenced transaction was open"
    assert not taker.is_alive(), "bob's claim did not finish within 30 s of alice's commit"
    assert len(results) == 1
    taken = results[0]
    assert taken is not None
    assert getattr(taken, "token", None) == 2


def test_the_heartbeat_reports_a_part_another_worker_took_over(store: Store) -> None:
    """A beat renews alice's parts and marks the one bob took over as lost (her cycle on it
    then stops at its next session)."""
    from remote_guard.leases.work import Heartbeat

    alice, bob = store.workers()
    kept = alice.claim("poll:t:shard:0of2")
    taken = alice.claim("poll:t:shard:1of2")
    assert kept is not None
    assert taken is not None
    heartbeat = Heartbeat(alice, every=3600)
    heartbeat.add(kept)
    heartbeat.add(taken)
    store.expire(taken.key)
    assert bob.claim(taken.key) is not None
    assert heartbeat.beat() == [taken]
    assert (kept.lost, taken.lost) == (False, True)
