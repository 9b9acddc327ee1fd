"""`remote-guard doctor` against the fake tenant: all good, then one thing broken at a time.

Every case checks the whole checklist: the broken thing FAILs with its fix, the checks that
depend on it are SKIP (never PASS), and everything else passes.
"""

from __future__ import annotations

from typing import Any

import pytest

from remote_guard.doctor import Report, Status, diagnose
from remote_guard.fakegraph.server import FakeTenantServer
from remote_guard.graph.permissions import least_permissions
from tests.doctor.conftest import NOW, build_settings, settings_data

pytestmark = pytest.mark.database

NEEDED = least_permissions()
# A permission whose calls a broader granted one also allows (as Graph does): removing only the
# narrow one breaks nothing, so the broader one goes too.
BROADER = {"Calendars.Read": ("Calendars.ReadWrite",), "Chat.ReadBasic.All": ("Chat.Read.All",)}


def run(server: FakeTenantServer, database_url: str, **changes: Any) -> Report:
    data = settings_data(server, database_url)
    for section, values in changes.items():
        data[section] = {**data.get(section, {}), **values}
    return diagnose(build_settings(data), now=NOW)


def not_passing(report: Report) -> dict[str, Status]:
    return {check.id: check.status for check in report.checks if check.status is not Status.PASS}


def test_a_correct_setup_passes_every_check(
    tenant: FakeTenantServer, migrated_database: str
) -> None:
    report = run(tenant, migrated_database)
    assert not_passing(report) == {}, report.render_text()
    assert report.exit_code == 0
    ids = {check.id for check in report.checks}
    assert {f"permission:{name}" for name in NEEDED} <= ids
    assert {"credential", "token", "access_policy", "protected_api", "groups_overlap"} <= ids
    assert {"database", "database_schema", "school_day", "policy", "web", "audit"} <= ids
    staff_group = tenant.scenario.group_id("staff")
    assert report.get(f"group:staff:{staff_group}") is not None


@pytest.mark.parametrize("permission", NEEDED)
def test_each_missing_permission_fails_its_own_check_with_the_fix(
    tenant: FakeTenantServer, migrated_database: str, permission: str
) -> None:
    removed = {permission, *BROADER.get(permission, ())}
    tenant.state.app_permissions -= removed
    report = run(tenant, migrated_database)

    expected: dict[str, Status] = {
        f"permission:{name}": Status.FAIL for name in removed if name in NEEDED
    }
    if permission == "GroupMember.Read.All":
        # Without it no group can be read: each group check and the overlap are not checked.
        for check in report.checks:
            if check.id.startswith("group:"):
                expected[check.id] = Status.SKIP
        expected["groups_overlap"] = Status.SKIP
    if removed & {"Chat.Read.All", "ChannelMessage.Read.All"}:
        expected["protected_api"] = Status.SKIP
    if permission == "User.Read.All" and report.get("mailbox") is not None:
        expected["mailbox"] = Status.SKIP
    assert not_passing(report) == expected, report.render_text()
    check = report.get(f"permission:{permission}")
    assert check is not None
    assert "HTTP 403" in check.detail
    assert f"Application permissions > {permission}" in check.fix
    assert "Grant admin consent" in check.fix
    assert report.exit_code == 1


def test_missing_access_policy_fails_the_policy_check_not_the_permissions(
    tenant: FakeTenantServer, migrated_database: str
) -> None:
    tenant.state.access_policy = "none"
    report = run(tenant, migrated_database)
    assert not_passing(report) == {"access_policy": Status.FAIL}, report.render_text()
    check = report.get("access_policy")
    assert check is not None
    client_id = tenant.scenario.app.client_id
    assert (
        f'New-CsApplicationAccessPolicy -Identity remote-guard -AppIds "{client_id}"' in check.fix
    )
    assert "Grant-CsApplicationAccessPolicy -PolicyName remote-guard -Global" in check.fix
    # The permissions were accepted; Graph stopped at the policy.
    meetings = report.get("permission:OnlineMeetings.Read.All")
    assert meetings is not None
    assert "access policy" in meetings.detail


def test_access_policy_granted_to_other_users_only_fails_for_the_user_tested(
    tenant: FakeTenantServer, migrated_database: str
) -> None:
    # A per-user grant to the teacher alone: the doctor tests the staff member it is told to.
    tenant.state.access_policy = ["teacher"]
    teacher = tenant.scenario.person_upn("teacher")
    report = diagnose(
        build_settings(settings_data(tenant, migrated_database)), now=NOW, user=teacher
    )
    assert report.get("access_policy").status is Status.PASS  # type: ignore[union-attr]
    head = tenant.scenario.person_upn("head")
    report = diagnose(build_settings(settings_data(tenant, migrated_database)), now=NOW, user=head)
    check = report.get("access_policy")
    assert check is not None
    assert check.status is Status.FAIL
    assert "Hana Head" in check.detail


def test_protected_api_not_approved_fails_with_the_request_form(
    tenant: FakeTenantServer, migrated_database: str
) -> None:
    tenant.state.protected_apis_approved = False
    report = run(tenant, migrated_database)
    assert not_passing(report) == {"protected_api": Status.FAIL}, report.render_text()
    check = report.get("protected_api")
    assert check is not None
    assert "aka.ms/teamsgraph/requestaccess" in check.fix
    assert "never a pass" in check.fix


@pytest.mark.parametrize(
    ("change", "code", "fix_words"),
    [
        ({"client_secret": "not-the-secret"}, "AADSTS7000215", "Value (not its Secret ID)"),
        ({"tenant_id": "wrongschool.onmicrosoft.com"}, "AADSTS90002", "Directory (tenant) ID"),
        (
            {"client_id": "11111111-2222-4333-8444-555555555555"},
            "AADSTS700016",
            "Application (client) ID",
        ),
    ],
    ids=["wrong-secret", "wrong-tenant", "wrong-client-id"],
)
def test_token_refusals_name_the_setting_to_fix(
    tenant: FakeTenantServer,
    migrated_database: str,
    change: dict[str, str],
    code: str,
    fix_words: str,
) -> None:
    report = run(tenant, migrated_database, tenant=change)
    # Without a token no Graph check can run: one SKIP line says so, the local checks pass.
    assert not_passing(report) == {"token": Status.FAIL, "graph": Status.SKIP}, report.render_text()
    check = report.get("token")
    assert check is not None
    assert check.detail.startswith(code)
    assert fix_words in check.fix
    assert report.exit_code == 1


def test_expired_secret_says_expired_not_wrong(
    tenant: FakeTenantServer, migrated_database: str
) -> None:
    tenant.state.client_secret_expired = True
    report = run(tenant, migrated_database)
    check = report.get("token")
    assert check is not None
    assert check.status is Status.FAIL
    assert check.detail == "AADSTS7000222: the client secret has expired"
    assert "add a new secret" in check.fix


def test_unreachable_identity_platform_is_a_network_failure(
    tenant: FakeTenantServer, migrated_database: str
) -> None:
    report = run(
        tenant,
        migrated_database,
        tenant={"authority_host": "https://127.0.0.1:9", "timeout_seconds": 2},
    )
    check = report.get("token")
    assert check is not None
    assert check.status is Status.FAIL
    assert "HTTPS_PROXY" in check.fix


def test_a_user_id_configured_as_a_group_is_named(
    tenant: FakeTenantServer, migrated_database: str
) -> None:
    teacher = tenant.scenario.person_id("teacher")
    report = run(tenant, migrated_database, directory={"slt_group_ids": [teacher]})
    check = report.get(f"group:slt:{teacher}")
    assert check is not None
    assert check.status is Status.FAIL
    assert check.detail == "this id is the user Tess Teacher, not a group"
    assert "Object ID" in check.fix
    assert not_passing(report) == {f"group:slt:{teacher}": Status.FAIL}


def test_unknown_group_and_empty_staff_group_fail(
    tenant: FakeTenantServer, migrated_database: str
) -> None:
    empty = tenant.scenario.group_id("empty")
    unknown = "00000000-0000-4000-8000-00000000beef"
    report = run(
        tenant,
        migrated_database,
        directory={"staff_group_ids": [empty], "dsl_group_ids": [unknown]},
    )
    empty_check = report.get(f"group:staff:{empty}")
    assert empty_check is not None
    assert empty_check.status is Status.FAIL
    assert "nobody will be recognised as staff" in empty_check.detail
    unknown_check = report.get(f"group:dsl:{unknown}")
    assert unknown_check is not None
    assert unknown_check.status is Status.FAIL
    assert unknown_check.detail == "no group has this id in the tenant"


def test_people_in_both_staff_and_pupil_groups_warn(
    tenant: FakeTenantServer, migrated_database: str
) -> None:
    # The SLT group (Hana Head) listed as a pupil group too.
    pupils = [tenant.scenario.group_id("pupils"), tenant.scenario.group_id("slt")]
    report = run(tenant, migrated_database, directory={"pupil_group_ids": pupils})
    assert not_passing(report) == {"groups_overlap": Status.WARN}, report.render_text()
    check = report.get("groups_overlap")
    assert check is not None
    assert "1 accounts are in both" in check.detail
    assert "Hana Head" in check.detail
    assert report.exit_code == 0  # a warning is not a failure


def test_the_same_group_as_staff_and_pupils_fails(
    tenant: FakeTenantServer, migrated_database: str
) -> None:
    staff = tenant.scenario.group_id("staff")
    report = run(tenant, migrated_database, directory={"pupil_group_ids": [staff]})
    assert report.get(f"group:same:{staff}").status is Status.FAIL  # type: ignore[union-attr]


def test_missing_service_mailbox_fails(tenant: FakeTenantServer, migrated_database: str) -> None:
    report = run(
        tenant,
        migrated_database,
        notify={"enabled": True, "service_mailbox": "nobody@bramhamshadwell.sch.uk"},
    )
    check = report.get("mailbox")
    assert check is not None
    assert check.status is Status.FAIL
    assert "shared mailbox" in check.fix
