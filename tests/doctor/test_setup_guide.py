"""docs/setup-entra.md asks for exactly the permissions the code uses, and the doctor can test
each of them."""

from __future__ import annotations

import re
from pathlib import Path

from remote_guard.doctor.probes import (
    PROBES,
    PROTECTED_PERMISSIONS,
    access_policy_fix,
    needs_access_policy,
)
from remote_guard.doctor.table import permissions_table
from remote_guard.graph.permissions import GRAPH_CALLS, least_permissions

GUIDE = Path(__file__).resolve().parents[2] / "docs" / "setup-entra.md"
REGENERATE = "regenerate the table with: python -m remote_guard.doctor.table"


def guide_rows() -> dict[str, tuple[set[str], str, str]]:
    """permission -> (the calls it lists, Teams access policy, protected API), from the guide."""
    text = GUIDE.read_text(encoding="utf-8")
    block = re.search(
        r"<!-- permissions-table:start.*?-->\n(.*?)<!-- permissions-table:end -->", text, re.S
    )
    assert block is not None, "the guide has lost its permissions-table markers"
    rows: dict[str, tuple[set[str], str, str]] = {}
    for line in block.group(1).splitlines()[2:]:
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        assert len(cells) == 5, f"a table row does not have 5 cells: {line}"
        permission, _feature, calls, policy, protected = cells
        assert permission not in rows, f"{permission} is listed twice"
        rows[permission] = (set(re.findall(r"`([^`]+)`", calls)), policy, protected)
    return rows


def test_the_guide_lists_exactly_the_permissions_the_code_needs() -> None:
    rows = guide_rows()
    assert sorted(rows) == least_permissions(), REGENERATE


def test_each_row_lists_the_calls_and_admin_steps_of_its_permission() -> None:
    for permission, (calls, policy, protected) in guide_rows().items():
        expected = {f"{c.method} {c.endpoint}" for c in GRAPH_CALLS if c.permission == permission}
        assert calls == expected, f"{permission}: {REGENERATE}"
        assert policy == ("yes" if needs_access_policy(permission) else "no"), permission
        assert protected == ("yes" if permission in PROTECTED_PERMISSIONS else "no"), permission


def test_the_guide_table_is_the_generated_one() -> None:
    assert permissions_table() in GUIDE.read_text(encoding="utf-8"), REGENERATE


def test_protected_permissions_are_the_ones_the_code_marks_protected() -> None:
    marked = {c.permission for c in GRAPH_CALLS if "protected api" in c.purpose.lower()}
    assert marked == PROTECTED_PERMISSIONS


def test_the_doctor_has_a_test_call_for_every_permission() -> None:
    assert set(least_permissions()) <= set(PROBES)


def test_the_guide_gives_the_commands_the_doctor_prints() -> None:
    text = GUIDE.read_text(encoding="utf-8")
    for line in access_policy_fix("<client id>").splitlines():
        if line.startswith(("New-Cs", "Grant-Cs")):
            assert line.split(" -Description")[0] in text
    assert "https://aka.ms/teamsgraph/requestaccess" in text
