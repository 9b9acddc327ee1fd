"""The doctor's checks of this server: certificate, database, schema, terms, and the command."""

from __future__ import annotations

import hashlib
import json
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from remote_guard.cli import main
from remote_guard.doctor import Status, diagnose
from remote_guard.doctor.credentials import credential_check
from remote_guard.doctor.local import database_checks, school_day_check
from remote_guard.fakegraph.server import FakeTenantServer
from remote_guard.settings import TenantSettings
from tests import databases
from tests.doctor.conftest import AUDIT_KEY, NOW, SESSION_SECRET, build_settings, settings_data


def make_pem(
    directory: Path, *, days: int = 365, start_days_ago: int = 1, other_key: bool = False
) -> tuple[Path, str]:
    """A PEM file with a private key and its self-signed certificate, as docs/setup-entra.md
    makes with openssl; returns the file and the certificate's thumbprint."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    signer = rsa.generate_private_key(public_exponent=65537, key_size=2048) if other_key else key
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "remote-guard")])
    start = NOW - timedelta(days=start_days_ago)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(signer.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + timedelta(days=days))
        .sign(signer, hashes.SHA256())
    )
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ) + certificate.public_bytes(serialization.Encoding.PEM)
    path = directory / "remote-guard.pem"
    path.write_bytes(pem)
    der = certificate.public_bytes(serialization.Encoding.DER)
    return path, hashlib.sha1(der).hexdigest().upper()  # noqa: S324 - Entra's thumbprint


def tenant_with(path: Path, thumbprint: str) -> TenantSettings:
    return TenantSettings(
        tenant_id="contoso.onmicrosoft.com",
        client_id="11111111-2222-4333-8444-555555555555",
        certificate_path=path,
        certificate_thumbprint=thumbprint,
    )


def test_a_good_certificate_passes(tmp_path: Path) -> None:
    path, thumbprint = make_pem(tmp_path)
    check = credential_check(tenant_with(path, thumbprint.lower()), now=NOW)
    assert check.status is Status.PASS
    assert thumbprint[:8] in check.detail


def test_a_thumbprint_of_another_certificate_fails_with_the_right_one(tmp_path: Path) -> None:
    path, thumbprint = make_pem(tmp_path)
    check = credential_check(tenant_with(path, "AB" * 20), now=NOW)
    assert check.status is Status.FAIL
    assert f'certificate_thumbprint = "{thumbprint}"' in check.fix


@pytest.mark.parametrize(
    ("days", "start_days_ago", "status", "words"),
    [(10, 20, Status.FAIL, "expired on"), (40, 20, Status.WARN, "expires on")],
    ids=["expired", "expires-soon"],
)
def test_certificate_expiry(
    tmp_path: Path, days: int, start_days_ago: int, status: Status, words: str
) -> None:
    path, thumbprint = make_pem(tmp_path, days=days, start_days_ago=start_days_ago)
    check = credential_check(tenant_with(path, thumbprint), now=NOW)
    assert check.status is status
    assert words in check.detail


def test_a_key_that_does_not_match_the_certificate_fails(tmp_path: Path) -> None:
    path, thumbprint = make_pem(tmp_path, other_key=True)
    check = credential_check(tenant_with(path, thumbprint), now=NOW)
    assert check.status is Status.FAIL
    assert "does not belong to the certificate" in check.detail


def test_a_certificate_without_its_key_fails(tmp_path: Path) -> None:
    path, thumbprint = make_pem(tmp_path)
    text = path.read_text()
    path.write_text(text[text.index("-----BEGIN CERTIFICATE-----") :])
    check = credential_check(tenant_with(path, thumbprint), now=NOW)
    assert check.status is Status.FAIL
    assert "no unencrypted private key" in check.detail


@pytest.mark.database
def test_certificate_credentials_get_a_token_from_the_fake(
    tenant: FakeTenantServer, migrated_database: str, tmp_path: Path
) -> None:
    path, thumbprint = make_pem(tmp_path)
    data = settings_data(tenant, migrated_database)
    del data["tenant"]["client_secret"]
    data["tenant"].update(certificate_path=str(path), certificate_thumbprint=thumbprint)
    report = diagnose(build_settings(data), now=NOW)
    assert report.get("credential").status is Status.PASS  # type: ignore[union-attr]
    assert report.get("token").status is Status.PASS  # type: ignore[union-attr]


def test_missing_sqlite_file_is_reported_not_created(
    tenant: FakeTenantServer, tmp_path: Path
) -> None:
    path = tmp_path / "never" / "remote_guard.db"
    settings = build_settings(settings_data(tenant, f"sqlite:///{path}"))
    checks = {check.id: check for check in database_checks(settings)}
    assert checks["database"].status is Status.FAIL
    assert "remote-guard migrate" in checks["database"].fix
    assert checks["database_schema"].status is Status.SKIP
    assert not path.parent.exists()


@pytest.mark.database
def test_an_empty_database_needs_migrate(tenant: FakeTenantServer, tmp_path: Path) -> None:
    import sqlalchemy as sa

    url = databases.database_url(tmp_path, "empty")
    engine = sa.create_engine(url)
    with engine.connect():  # makes the SQLite file; a PostgreSQL schema is there already
        pass
    engine.dispose()
    settings = build_settings(settings_data(tenant, url))
    checks = {check.id: check for check in database_checks(settings)}
    assert checks["database"].status is Status.PASS
    assert checks["database_schema"].status is Status.FAIL
    assert checks["database_schema"].fix == "run remote-guard migrate"


@pytest.mark.database
def test_an_old_schema_needs_migrate(tenant: FakeTenantServer, tmp_path: Path) -> None:
    import sqlalchemy as sa

    url = databases.database_url(tmp_path, "old")
    engine = sa.create_engine(url)
    with engine.begin() as connection:
        connection.execute(sa.text("create table alembic_version (version_num varchar(32))"))
        connection.execute(sa.text("insert into alembic_version values ('0001')"))
    engine.dispose()
    settings = build_settings(settings_data(tenant, url))
    schema = database_checks(settings)[1]
    assert schema.status is Status.FAIL
    assert "revision 0001" in schema.detail


def test_unreachable_postgresql_fails_without_showing_the_password(
    tenant: FakeTenantServer,
) -> None:
    url = "postgresql+psycopg://rg:Sup3rS3cretPw@127.0.0.1:9/remote_guard?connect_timeout=2"
    settings = build_settings(settings_data(tenant, url))
    check = database_checks(settings)[0]
    assert check.status is Status.FAIL
    assert "Sup3rS3cretPw" not in check.detail + check.fix
    assert "pgpass" in check.fix


@pytest.mark.database
@pytest.mark.parametrize(
    "case",
    [
        ([], date(2026, 11, 18), Status.WARN, "no term dates"),
        ([("2025-09-03", "2026-07-21")], date(2026, 11, 18), Status.WARN, "every configured term has ended"),
        ([("2026-09-03", "2026-10-23"), ("2026-11-02", "2026-12-18")], date(2026, 10, 28), Status.PASS, "the next term starts 2026-11-02"),
        ([("2026-09-03", "2026-11-03"), ("2026-11-02", "2026-12-18")], date(2026, 10, 28), Status.WARN, "overlaps"),
        ([("2026-09-03", "2026-12-18")], date(2026, 11, 18), Status.PASS, "in term"),
    ],
    ids=["none", "all-past", "half-term", "overlap", "in-term"],
)  # fmt: skip
def test_term_dates(
    tenant: FakeTenantServer,
    migrated_database: str,
    case: tuple[list[tuple[str, str]], date, Status, str],
) -> None:
    terms, today, status, words = case
    data = settings_data(tenant, migrated_database)
    data["school_day"] = {"terms": [{"start": start, "end": end} for start, end in terms]}
    check = school_day_check(build_settings(data), today=today)
    assert check.status is status
    assert words in check.detail


def write_config(tenant: FakeTenantServer, database_url: str, tmp_path: Path) -> Path:
    """A settings file as a technician writes it: the secrets in files beside it."""
    data: dict[str, Any] = settings_data(tenant, database_url)
    secret_file = tmp_path / "client_secret"
    secret_file.write_text(data["tenant"].pop("client_secret"))
    session_file = tmp_path / "session_secret"
    session_file.write_text(SESSION_SECRET)
    audit_file = tmp_path / "audit_key"
    audit_file.write_text(AUDIT_KEY)
    tenant_section = data["tenant"]
    directory = data["directory"]
    lines = [
        "[tenant]",
        *(f'{key} = "{value}"' for key, value in tenant_section.items()),
        f'client_secret_file = "{secret_file}"',
        "[database]",
        f'url = "{database_url}"',
        "[directory]",
        *(f"{key} = {json.dumps(value)}" for key, value in directory.items()),
        "[[school_day.terms]]",
        "start = 2026-09-03",
        "end = 2027-07-21",
        "[web]",
        'public_url = "https://remote-guard.school.example"',
        f'session_secret_file = "{session_file}"',
        "[audit]",
        f'hmac_key_file = "{audit_file}"',
        f'file = "{tmp_path / "audit.jsonl"}"',
    ]
    if "notify" in data:
        lines += ["[notify]", f'service_mailbox = "{data["notify"]["service_mailbox"]}"']
    path = tmp_path / "remote_guard.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.mark.database
def test_command_prints_a_checklist_and_never_a_secret(
    tenant: FakeTenantServer,
    migrated_database: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The fake's clock stands still at NOW; the doctor reads terms against the real date, so
    # the file's one term covers the whole school year of NOW and the check is not about it.
    config = write_config(tenant, migrated_database, tmp_path)
    tenant.state.access_policy = "none"
    code = main(["--config", str(config), "doctor"])
    out = capsys.readouterr().out
    assert code == 1
    assert "FAIL  Teams application access policy" in out
    assert "Grant-CsApplicationAccessPolicy -PolicyName remote-guard -Global" in out
    assert "PASS  Token from Entra ID" in out
    tokens = list(tenant.state._tokens)  # the fake's issued tokens: none may be printed
    assert tokens
    for secret in [tenant.scenario.app.client_secret, SESSION_SECRET, AUDIT_KEY, *tokens]:
        assert secret not in out

    tenant.state.access_policy = "global"
    code = main(["--config", str(config), "doctor", "--format", "json"])
    answer = json.loads(capsys.readouterr().out)
    statuses = {check["id"]: check["status"] for check in answer["checks"]}
    school_day = statuses.pop("school_day")
    assert school_day in ("PASS", "WARN")  # depends on today's real date
    assert set(statuses.values()) == {"PASS"}, answer
    assert answer["ok"] is True
    assert code == 0


def test_command_reports_a_bad_settings_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "remote_guard.toml"
    config.write_text('[tenant]\ntenant_id = "x y"\n')
    code = main(["--config", str(config), "doctor", "--format", "json"])
    answer = json.loads(capsys.readouterr().out)
    assert code == 1
    assert answer["checks"][0]["id"] == "settings"
    assert answer["checks"][0]["status"] == "FAIL"
    assert "tenant.tenant_id" in answer["checks"][0]["detail"]
