"""`remote-guard audit verify | export`, `sar` and `purge`, as the school's IT person runs them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.audit.conftest import KEY, open_store

pytestmark = pytest.mark.database


@pytest.fixture(autouse=True)
def _audit_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Where a SQLite database keeps its trail by default; named, so PostgreSQL has one too.
    monkeypatch.setenv("REMOTE_GUARD_AUDIT__FILE", str(tmp_path / "rg.audit.jsonl"))


def _run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "remote_guard", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**os.environ, **(env or {})},
    )


def _grant(url: str) -> None:
    granted = _run(
        "exemption",
        "add",
        "--database",
        url,
        "--rule",
        "one_to_one_without_consent",
        "--scope",
        "pair",
        "--pupil",
        "pupil-0001",
        "--staff",
        "teacher-0001",
        "--reason",
        "Speech and language sessions agreed with parents",
        "--granted-by",
        "J. Smith (DSL)",
        "--expires",
        "2099-12-18",
    )
    assert granted.returncode == 0, granted.stderr


def test_verify_is_green_then_names_the_tampered_entry(tmp_path: Path, database_url: str) -> None:
    """After CLI work the trail verifies (exit 0); after one edit it fails (exit 1) naming the
    entry; the output says which entry and what is wrong."""
    url = database_url
    _grant(url)
    assert _run("exemption", "list", "--database", url).returncode == 0

    verified = _run("audit", "verify", "--database", url)

    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert verified.stdout.startswith("audit trail verified: 2 entries, head #2 ")
    assert f"file {tmp_path / 'rg.audit.jsonl'}: 2 lines match the database" in verified.stdout

    store = open_store(url, tmp_path / "rg.audit.jsonl")
    store.drop_guards()
    store.sql("UPDATE audit_entries SET actor_id = 'someone-else' WHERE seq = 1")
    store.engine.dispose()

    failed = _run("audit", "verify", "--database", url)

    assert failed.returncode == 1
    assert failed.stdout.startswith(
        "audit trail FAILED: the first bad entry is entry #1 (the database): its hash does not "
        "match its fields"
    )
    assert "entry #1 (the JSON-lines file): line 1 differs from the database" in failed.stdout


def test_keyed_trail_verifies_with_the_key_from_the_environment(
    tmp_path: Path, database_url: str
) -> None:
    """A trail signed with a key verifies when REMOTE_GUARD_AUDIT__HMAC_KEY holds it, and says
    it cannot check without it."""
    store = open_store(database_url, tmp_path / "rg.audit.jsonl", key=KEY)
    store.write(3)
    url = database_url

    assert (
        _run(
            "audit", "verify", "--database", url, env={"REMOTE_GUARD_AUDIT__HMAC_KEY": KEY}
        ).returncode
        == 0
    )
    without = _run("audit", "verify", "--database", url)
    assert without.returncode == 1
    assert "cannot be checked without it" in without.stdout
    short = _run(
        "audit", "verify", "--database", url, env={"REMOTE_GUARD_AUDIT__HMAC_KEY": "short"}
    )
    assert short.returncode == 2
    assert "short" not in short.stderr.replace("REMOTE_GUARD_AUDIT__", "")


def test_export_writes_the_period_and_is_audited(tmp_path: Path, database_url: str) -> None:
    """`audit export` writes the period's entries exactly as the trail's file holds them, and
    the export itself becomes an entry."""
    store = open_store(database_url, tmp_path / "rg.audit.jsonl")
    store.write(5)  # 18 November 2026, 09:00 to 09:04 UTC
    url = database_url
    out = tmp_path / "inspector" / "audit.jsonl"

    exported = _run(
        "audit",
        "export",
        "--database",
        url,
        "--from",
        "2026-11-18",
        "--to",
        "2026-11-18",
        "--output",
        str(out),
    )

    assert exported.returncode == 0, exported.stderr
    file_lines = (tmp_path / "rg.audit.jsonl").read_text(encoding="utf-8").splitlines()
    assert out.read_text(encoding="utf-8").splitlines() == file_lines[:5]
    last = json.loads(file_lines[-1])
    assert (last["seq"], last["action"], last["object_id"]) == (6, "audit.exported", "1-5")
    assert _run("audit", "verify", "--database", url).returncode == 0


def test_sar_and_purge_commands(tmp_path: Path, database_url: str) -> None:
    """`sar` writes the two files for the person; `purge --dry-run` removes nothing, `purge`
    records itself; the trail verifies after both."""
    url = database_url
    _grant(url)

    sar = _run(
        "sar", "--database", url, "--person", "pupil-0001", "--output", str(tmp_path / "sar")
    )

    assert sar.returncode == 0, sar.stderr
    data = json.loads((tmp_path / "sar" / "subject-access-pupil-0001.json").read_text())
    assert [x["staff"] for x in data["exemptions"]] == ["[other person 1]"]
    assert (tmp_path / "sar" / "subject-access-pupil-0001.html").is_file()
    assert _run("sar", "--database", url, "--person", "p1").returncode == 2

    dry = _run("purge", "--database", url, "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert dry.stdout.startswith("due for removal: 0 sessions without findings")
    done = _run("purge", "--database", url)
    assert done.returncode == 0, done.stderr
    assert "the purge is audit entry #3" in done.stdout

    verified = _run("audit", "verify", "--database", url)
    assert verified.returncode == 0, verified.stdout
    assert verified.stdout.startswith("audit trail verified: 3 entries")
