"""Run every check against a configured tenant and build the checklist.

Order: settings, the credential on this server, a token from Entra ID, one call per
application permission (with the Teams access policy and protected-API approval read from the
answers), the configured groups, the service mailbox, then this server's side (database,
schema, school day, policy, web, audit). A check that cannot run because an earlier one
failed is SKIP, never PASS.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from remote_guard.doctor import credentials, directory, local, probes
from remote_guard.doctor.report import Check, Report, Status
from remote_guard.graph.auth import TokenProvider
from remote_guard.graph.client import GraphClient
from remote_guard.graph.errors import GraphAuthError
from remote_guard.graph.permissions import least_permissions
from remote_guard.settings import ConfigError, Settings, load_settings

# The doctor should answer in seconds: fewer and shorter retries than the poller's.
DOCTOR_MAX_RETRIES = 2
DOCTOR_MAX_RETRY_WAIT_SECONDS = 10.0


def run_doctor(
    config: Path,
    *,
    user: str | None = None,
    now: datetime | None = None,
) -> Report:
    """Load the settings file and check everything it configures.

    Never raises for a configuration or tenant problem: each becomes a FAIL line.
    """
    report = Report()
    try:
        settings = load_settings(config)
    except ConfigError as exc:
        report.add(
            Check(
                "settings",
                "Settings file",
                Status.FAIL,
                str(exc),
                "correct the key named above (config/example.toml explains every setting)",
            )
        )
        return report
    report.add(Check("settings", "Settings file", Status.PASS, str(config)))
    return diagnose(settings, report=report, user=user, now=now)


def _secrets(settings: Settings) -> list[str]:
    found: list[Any] = [
        settings.tenant.client_secret,
        settings.audit.hmac_key,
        settings.web.session_secret,
    ]
    return [secret.get_secret_value() for secret in found if secret is not None]


def diagnose(
    settings: Settings,
    *,
    report: Report | None = None,
    user: str | None = None,
    now: datetime | None = None,
) -> Report:
    """Check loaded ``settings`` (the tests build them for the fake tenant)."""
    report = report if report is not None else Report()
    report.secrets.extend(_secrets(settings))
    now = now or datetime.now(UTC)
    tenant = settings.tenant
    report.add(credentials.credential_check(tenant, now=now))

    tokens = TokenProvider(tenant)
    token: str | None = None
    try:
        token = tokens.token()
    except GraphAuthError as exc:
        report.add(credentials.token_failure(tenant, exc))
    except (OSError, ValueError) as exc:
        # The certificate could not be read or parsed (the credential check says which).
        report.add(
            Check(
                "token",
                "Token from Entra ID",
                Status.FAIL,
                f"no token was requested: the credential could not be used ({type(exc).__name__})",
                "fix the App credential line above",
            )
        )
    if token is not None:
        report.secrets.append(token)
        report.add(
            Check(
                "token",
                "Token from Entra ID",
                Status.PASS,
                f"tenant {tenant.tenant_id}, app {tenant.client_id}",
            )
        )
        _graph_checks(report, settings, tokens, token, user=user)
    else:
        report.add(
            Check(
                "graph",
                "Microsoft Graph checks",
                Status.SKIP,
                "not run: no token (permissions, access policy, groups and mailbox are "
                "checked once the token check passes)",
            )
        )
    report.extend(local.database_checks(settings))
    today: date = now.astimezone(settings.school_day.zone).date()
    report.add(local.school_day_check(settings, today=today))
    report.add(local.policy_check(settings))
    report.add(local.web_check(settings))
    report.add(local.audit_check(settings))
    return report


def _graph_checks(
    report: Report, settings: Settings, tokens: TokenProvider, token: str, *, user: str | None
) -> None:
    tenant = settings.tenant.model_copy(
        update={
            "max_retries": min(settings.tenant.max_retries, DOCTOR_MAX_RETRIES),
            "max_retry_wait_seconds": min(
                settings.tenant.max_retry_wait_seconds, DOCTOR_MAX_RETRY_WAIT_SECONDS
            ),
        }
    )
    graph = GraphClient(tenant, tokens=tokens)
    group_lines, findings = directory.group_checks(graph, settings)
    user_id, user_name = directory.pick_user(graph, findings, user)
    notify = getattr(settings, "notify", None)
    mailbox = getattr(notify, "service_mailbox", None)
    targets = probes.Targets(
        user_id=user_id,
        user_name=user_name,
        mailbox=mailbox,
        roles=probes.token_roles(token),
    )
    needed = least_permissions()
    results = probes.run_probes(probes.Prober(graph, targets), needed)
    acting_as = user_name or "a staff member"
    report.extend(probes.permission_checks(results, tenant_name="your organisation"))
    report.add(
        probes.access_policy_check(
            results, client_id=settings.tenant.client_id, acting_as=acting_as
        )
    )
    report.add(probes.protected_api_check(results, client_id=settings.tenant.client_id))
    extra = probes.extra_permissions_check(targets.roles, needed)
    if extra is not None:
        report.add(extra)
    report.extend(group_lines)
    report.add(directory.overlap_check(findings))
    report.add(directory.mailbox_check(graph, mailbox, bool(getattr(notify, "enabled", False))))
