"""`remote-guard exemption add | list | revoke` against a database, as a DSL's IT person runs it."""

from __future__ import annotations

import subprocess
import sys


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "remote_guard", "exemption", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_grant_list_and_revoke(database_url: str) -> None:
    """An exemption is granted, listed as active, revoked, and then listed only with --all."""
    url = database_url
    granted = _run(
        "add",
        "--database",
        url,
        "--rule",
        "one_to_one_without_consent",
        "--scope",
        "pair",
        "--pupil",
        "pupil-1",
        "--staff",
        "teacher-1",
        "--reason",
        "Speech and language sessions agreed with parents",
        "--granted-by",
        "J. Smith (DSL)",
        "--expires",
        "2099-12-18",
    )
    assert granted.returncode == 0, granted.stderr
    exemption_id = granted.stdout.split()[1]
    listed = _run("list", "--database", url)
    assert exemption_id in listed.stdout
    assert "active" in listed.stdout
    revoked = _run("revoke", exemption_id, "--by", "J. Smith (DSL)", "--database", url)
    assert revoked.returncode == 0, revoked.stderr
    assert "no active exemptions" in _run("list", "--database", url).stdout
    assert "revoked" in _run("list", "--all", "--database", url).stdout


def test_bad_requests_are_refused_with_the_fix(database_url: str) -> None:
    """An unknown rule, a pair without its teacher, or an unknown id: exit 2 and a clear line."""
    url = database_url
    common = ["--reason", "because", "--granted-by", "DSL", "--expires", "2099-01-01"]
    unknown = _run("add", "--database", url, "--rule", "no_such_rule", "--scope", "session",
                   "--session", "s1", *common)  # fmt: skip
    assert unknown.returncode == 2
    assert "is not a rule; known rules:" in unknown.stderr
    half = _run("add", "--database", url, "--rule", "pupil_meeting_chat", "--scope", "pair",
                "--pupil", "p1", *common)  # fmt: skip
    assert half.returncode == 2
    assert "needs staff_id" in half.stderr
    missing = _run("revoke", "nope", "--by", "DSL", "--database", url)
    assert missing.returncode == 2
    assert "no exemption has id 'nope'" in missing.stderr
