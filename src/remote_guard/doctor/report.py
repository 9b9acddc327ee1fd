"""The doctor's checklist: one line per check, the fix for each failure, as text or JSON."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class Status(StrEnum):
    """How one check came out.

    SKIP means the check could not run because something it depends on failed (a token, a
    group); it is never a pass, and the failure it depends on is what to fix first.
    """

    PASS = "PASS"  # noqa: S105 - a status, not a password
    WARN = "WARN"
    FAIL = "FAIL"
    SKIP = "SKIP"


@dataclass(frozen=True)
class Check:
    """One line of the checklist.

    ``id`` is stable (``token``, ``permission:User.Read.All``, ``group:staff:<id>``) so scripts
    and tests can find a check; ``detail`` says what was seen; ``fix`` what to do (empty when
    there is nothing to do).
    """

    id: str
    title: str
    status: Status
    detail: str = ""
    fix: str = ""

    def as_dict(self) -> dict[str, str]:
        return {
            "id": self.id,
            "title": self.title,
            "status": self.status.value,
            "detail": self.detail,
            "fix": self.fix,
        }


@dataclass
class Report:
    """Every check, in the order they ran, with secrets removed from every text."""

    checks: list[Check] = field(default_factory=list)
    secrets: list[str] = field(default_factory=list, repr=False)

    def add(self, check: Check) -> Check:
        self.checks.append(self._redacted(check))
        return check

    def extend(self, checks: Iterable[Check]) -> None:
        for check in checks:
            self.add(check)

    def _redacted(self, check: Check) -> Check:
        # Defence in depth: no check should ever quote a secret or a token, but an error text
        # from a library might. Anything configured as secret is replaced wherever it appears.
        detail, fix = check.detail, check.fix
        for secret in self.secrets:
            if secret and len(secret) >= 4:
                detail = detail.replace(secret, "***")
                fix = fix.replace(secret, "***")
        if (detail, fix) == (check.detail, check.fix):
            return check
        return Check(check.id, check.title, check.status, detail, fix)

    def get(self, check_id: str) -> Check | None:
        return next((check for check in self.checks if check.id == check_id), None)

    def counts(self) -> dict[str, int]:
        counts = {status.value: 0 for status in Status}
        for check in self.checks:
            counts[check.status.value] += 1
        return counts

    @property
    def exit_code(self) -> int:
        """0 when nothing failed (warnings allowed), 1 when any check failed."""
        return 1 if any(check.status is Status.FAIL for check in self.checks) else 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "checks": [check.as_dict() for check in self.checks],
            "counts": self.counts(),
            "ok": self.exit_code == 0,
        }

    def render_json(self) -> str:
        return json.dumps(self.as_dict(), indent=2) + "\n"

    def render_text(self) -> str:
        """One line per check; under a FAIL, WARN or SKIP its detail and fix, indented."""
        width = max((len(check.title) for check in self.checks), default=0)
        lines: list[str] = []
        for check in self.checks:
            head = f"{check.status.value:<4}  {check.title}"
            if check.status is Status.PASS:
                lines.append(f"{head:<{width + 6}}  {check.detail}".rstrip())
                continue
            lines.append(head)
            if check.detail:
                lines.extend(_indent(check.detail, "      "))
            if check.fix:
                fix_lines = check.fix.splitlines()
                lines.append(f"      fix: {fix_lines[0]}")
                lines.extend(f"           {line}" if line else "" for line in fix_lines[1:])
        counts = self.counts()
        lines.append("")
        lines.append(
            f"{counts['PASS']} passed, {counts['WARN']} warnings, {counts['FAIL']} failed, "
            f"{counts['SKIP']} not checked"
            + (
                " - fix the FAIL lines first, then run remote-guard doctor again"
                if counts["FAIL"]
                else ""
            )
        )
        return "\n".join(lines) + "\n"


def _indent(text: str, prefix: str) -> list[str]:
    return [prefix + line if line else "" for line in text.splitlines()]
