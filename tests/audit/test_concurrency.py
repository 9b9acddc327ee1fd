"""Writers in several processes at once never fork the chain, on SQLite and on PostgreSQL."""

from __future__ import annotations

import multiprocessing
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from sqlalchemy import select

from remote_guard.audit.models import AuditEntryRow
from remote_guard.audit.verify import verify
from tests.audit.conftest import Store, open_store

PER_WRITER = 60


def _writer(url: str, file: str, start: int) -> None:
    """One process: its own engine and connections, writing one entry per transaction."""
    store = open_store(url, Path(file))
    try:
        store.write(PER_WRITER, start=start)
    finally:
        store.engine.dispose()


def _run_processes(store: Store, count: int) -> None:
    context = multiprocessing.get_context("spawn")
    url = store.engine.url.render_as_string(hide_password=False)
    processes = [
        context.Process(target=_writer, args=(url, str(store.file), n * 1000)) for n in range(count)
    ]
    for process in processes:
        process.start()
    for process in processes:
        process.join(timeout=240)
        assert process.exitcode == 0, f"a writer failed with exit code {process.exitcode}"


def _assert_one_chain(store: Store, expected: int) -> None:
    report = verify(store.engine, store.config)
    assert report.ok, [str(p) for p in report.problems]
    assert (report.entries, report.head_seq, report.file_lines) == (expected, expected, expected)
    with store.engine.connect() as connection:
        objects = list(connection.scalars(select(AuditEntryRow.object_id)))
    # Every write landed exactly once.
    assert len(set(objects)) == expected


@pytest.mark.timeout(300)
def test_processes_writing_at_once_keep_one_chain(store: Store) -> None:
    """Three processes write 60 entries each at the same time: 180 entries, one chain, and the
    JSON-lines file (appended after each commit, under a file lock) matches line for line."""
    _run_processes(store, 3)

    _assert_one_chain(store, 3 * PER_WRITER)


def test_threads_writing_at_once_keep_one_chain(store: Store) -> None:
    """Four threads sharing one engine write at once: one chain, no gaps."""
    with ThreadPoolExecutor(max_workers=4) as pool:
        futures = [pool.submit(store.write, 25, start=n * 1000) for n in range(4)]
    for future in futures:
        future.result()  # re-raises a writer's error

    _assert_one_chain(store, 100)
