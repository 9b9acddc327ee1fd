"""Loading settings: the example loads, the environment overrides the file, and each kind of bad
value is refused with a message naming the file, the key, the problem and a good value."""

from __future__ import annotations

import os
import traceback
from pathlib import Path

import pytest

from remote_guard.settings import ConfigError, load_settings

EXAMPLE = Path(__file__).resolve().parents[1] / "config" / "example.toml"

# A known-good configuration; each test changes one thing.
GOOD = """\
[tenant]
tenant_id = "3f2504e0-4f89-11d3-9a0c-0305e82c3301"
client_id = "11111111-2222-3333-4444-555555555555"
client_secret = "good-secret-value"

[database]
url = "sqlite:///remote_guard.db"

[poll]
interval_seconds = 300

[directory]
staff_group_ids = ["aaaaaaaa-0000-4000-8000-000000000001"]
pupil_group_ids = ["aaaaaaaa-0000-4000-8000-000000000002"]

[school_day]
timezone = "Europe/London"
start = "08:45"
end = "15:30"
weekdays = [1, 2, 3, 4, 5]

[[school_day.terms]]
start = 2026-09-03
end = 2026-10-23

[logging]
level = "info"
"""
SECRET_LINE = 'client_secret = "good-secret-value"'
THUMBPRINT = "A1B2C3D4E5F60718293A4B5C6D7E8F9012345678"


@pytest.fixture(autouse=True)
def _no_remote_guard_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Variables from the developer's shell must not leak into these tests."""
    for name in list(os.environ):
        if name.upper().startswith("REMOTE_GUARD_"):
            monkeypatch.delenv(name)


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "remote_guard.toml"
    path.write_text(text, encoding="utf-8")
    return path


def _changed(old: str, new: str) -> str:
    assert old in GOOD, f"the fixture no longer contains {old!r}"
    return GOOD.replace(old, new, 1)


def _error_for(tmp_path: Path, text: str) -> tuple[Path, str]:
    path = _write(tmp_path, text)
    with pytest.raises(ConfigError) as caught:
        load_settings(path)
    return path, str(caught.value)


def _certificate(tmp_path: Path) -> Path:
    path = tmp_path / "app-cert.pem"
    path.write_text("-----BEGIN CERTIFICATE-----\nnot a real one\n", encoding="utf-8")
    return path


# --- loading -------------------------------------------------------------------------------


def test_example_configuration_loads() -> None:
    """config/example.toml loads as shipped, with its placeholder ids and 2026-27 terms."""
    settings = load_settings(EXAMPLE)

    assert settings.tenant.tenant_id == "00000000-0000-4000-8000-000000000000"
    assert settings.tenant.client_secret is not None
    assert settings.tenant.client_secret.get_secret_value() == "replace-me"
    assert settings.school_day.timezone == "Europe/London"
    first_term = settings.school_day.terms[0]
    assert (first_term.start.isoformat(), first_term.end.isoformat()) == (
        "2026-09-03",
        "2026-10-23",
    )
    assert len(settings.school_day.terms) == 6


def test_known_good_fixture_loads(tmp_path: Path) -> None:
    """The fixture every other test changes loads without error."""
    settings = load_settings(_write(tmp_path, GOOD))

    assert settings.tenant.client_id == "11111111-2222-3333-4444-555555555555"


def test_environment_overrides_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """REMOTE_GUARD_<SECTION>__<KEY> replaces the file's value and keeps the rest of the section."""
    monkeypatch.setenv("REMOTE_GUARD_TENANT__CLIENT_SECRET", "secret-from-env")
    monkeypatch.setenv("REMOTE_GUARD_POLL__INTERVAL_SECONDS", "600")

    settings = load_settings(_write(tmp_path, GOOD))

    assert settings.tenant.client_secret is not None
    assert settings.tenant.client_secret.get_secret_value() == "secret-from-env"
    assert settings.poll.interval_seconds == 600
    assert settings.tenant.tenant_id == "3f2504e0-4f89-11d3-9a0c-0305e82c3301"


def test_environment_list_must_be_json(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A list given in an environment variable but not as JSON is a ConfigError naming the fix."""
    monkeypatch.setenv("REMOTE_GUARD_DIRECTORY__STAFF_GROUP_IDS", "not-json")

    path, message = _error_for(tmp_path, GOOD)

    assert message.startswith(f"{path}: a REMOTE_GUARD_* environment variable cannot be read")
    assert (
        "Example of a good value: "
        """REMOTE_GUARD_DIRECTORY__STAFF_GROUP_IDS='["aaaaaaaa-0000-0000-0000-000000000001"]'"""
    ) in message


def test_bad_value_from_environment_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A wrong value set by environment variable names that variable, not only the file."""
    monkeypatch.setenv("REMOTE_GUARD_POLL__INTERVAL_SECONDS", "5")

    path, message = _error_for(tmp_path, GOOD)

    assert f"{path}: the configuration is not valid." in message
    assert (
        "This value came from the environment variable REMOTE_GUARD_POLL__INTERVAL_SECONDS, "
        "which overrides the file."
    ) in message


def test_client_secret_file_is_read(tmp_path: Path) -> None:
    """client_secret_file supplies the secret, without its trailing newline."""
    secret_file = tmp_path / "client_secret"
    secret_file.write_text("secret-from-file\n", encoding="utf-8")

    settings = load_settings(
        _write(tmp_path, _changed(SECRET_LINE, f'client_secret_file = "{secret_file}"'))
    )

    assert settings.tenant.client_secret is not None
    assert settings.tenant.client_secret.get_secret_value() == "secret-from-file"


def test_missing_client_secret_file(tmp_path: Path) -> None:
    """A client_secret_file that does not exist is refused, naming tenant.client_secret_file."""
    missing = tmp_path / "no-such-secret"

    path, message = _error_for(tmp_path, _changed(SECRET_LINE, f'client_secret_file = "{missing}"'))

    assert f"{path}: the configuration is not valid." in message
    assert (
        f"  - key tenant.client_secret_file: the file {missing} cannot be read "
        "(No such file or directory)."
    ) in message
    assert (
        'Example of a good value: client_secret_file = "/run/secrets/remote_guard_client_secret"'
    ) in message


def test_file_saved_with_byte_order_mark_loads(tmp_path: Path) -> None:
    """A file saved by Windows Notepad with a UTF-8 byte-order mark still loads."""
    path = tmp_path / "remote_guard.toml"
    path.write_bytes(b"\xef\xbb\xbf" + GOOD.encode("utf-8"))

    settings = load_settings(path)

    assert settings.tenant.tenant_id == "3f2504e0-4f89-11d3-9a0c-0305e82c3301"


# --- secrets stay secret -------------------------------------------------------------------


def test_secret_not_in_repr_or_str(tmp_path: Path) -> None:
    """repr() and str() of the settings never show the client secret."""
    settings = load_settings(_write(tmp_path, GOOD))

    assert "good-secret-value" not in repr(settings)
    assert "good-secret-value" not in str(settings)
    assert "client_secret=SecretStr('**********')" in repr(settings)


def test_database_password_not_in_repr(tmp_path: Path) -> None:
    """A password inside a PostgreSQL URL is masked in repr() but kept for connecting."""
    url = "postgresql+psycopg://remote_guard:db-password@db.school.internal/remote_guard"
    settings = load_settings(
        _write(tmp_path, _changed('url = "sqlite:///remote_guard.db"', f'url = "{url}"'))
    )

    assert settings.database.url == url
    assert "db-password" not in repr(settings)
    assert "db-password" not in str(settings)
    assert "url='postgresql+psycopg://remote_guard:***@db.school.internal/remote_guard'" in repr(
        settings
    )


def test_secret_not_in_traceback_of_config_error(tmp_path: Path) -> None:
    """A secret under a misspelt key is not printed by the ConfigError or its traceback."""
    path = _write(tmp_path, _changed(SECRET_LINE, 'client_secrt = "typo-secret"'))

    with pytest.raises(ConfigError) as caught:
        load_settings(path)
    printed = "".join(traceback.format_exception(caught.value))

    assert "typo-secret" not in printed
    assert (
        "  - key tenant.client_secrt: is not a known setting in [tenant]; did you mean "
        "client_secret?"
    ) in printed


# --- each kind of bad value ----------------------------------------------------------------


def test_missing_file(tmp_path: Path) -> None:
    """A configuration file that does not exist is named, with how to create it."""
    path = tmp_path / "absent.toml"

    with pytest.raises(ConfigError) as caught:
        load_settings(path)

    assert str(caught.value) == (
        f"{path}: no such configuration file. Copy config/example.toml to {path} and fill in "
        "your tenant's ids, or pass --config PATH.\n"
        "    Example of a good value: --config /etc/remote_guard/remote_guard.toml"
    )


def test_not_toml(tmp_path: Path) -> None:
    """A file that is not TOML is refused with the line and column and how to write values."""
    path, message = _error_for(
        tmp_path, _changed('timezone = "Europe/London"', "timezone = Europe/London")
    )

    assert message.startswith(f"{path}: is not valid TOML (Invalid value (at line 17, column 12)).")
    assert "text needs double quotes" in message
    assert 'Example of a good value: [tenant]\n      tenant_id = "3f2504e0-' in message


def test_missing_tenant_id(tmp_path: Path) -> None:
    """A [tenant] without tenant_id is refused, saying where in Entra to find it."""
    path, message = _error_for(
        tmp_path, _changed('tenant_id = "3f2504e0-4f89-11d3-9a0c-0305e82c3301"\n', "")
    )

    assert f"{path}: the configuration is not valid." in message
    assert "  - key tenant.tenant_id: is required but not set." in message
    assert 'Example of a good value: tenant_id = "3f2504e0-4f89-11d3-9a0c-0305e82c3301"' in message
    assert "Where to find it: Microsoft Entra admin centre (entra.microsoft.com) > Overview" in (
        message
    )


def test_client_id_with_spaces(tmp_path: Path) -> None:
    """A client_id pasted with a space is refused as not an Application (client) ID."""
    path, message = _error_for(
        tmp_path,
        _changed(
            'client_id = "11111111-2222-3333-4444-555555555555"',
            'client_id = "11111111-2222-3333-4444-555555555555 "',
        ),
    )

    assert f"{path}: the configuration is not valid." in message
    assert (
        "  - key tenant.client_id: must be the app registration's Application (client) ID, "
        "a GUID: letters, digits and hyphens only, with no spaces or quotes."
    ) in message
    assert 'Example of a good value: client_id = "11111111-2222-3333-4444-555555555555"' in message


def test_both_secret_and_certificate(tmp_path: Path) -> None:
    """A client secret and a certificate together are refused: exactly one credential."""
    certificate = _certificate(tmp_path)
    path, message = _error_for(
        tmp_path,
        _changed(
            SECRET_LINE,
            f'{SECRET_LINE}\ncertificate_path = "{certificate}"\n'
            f'certificate_thumbprint = "{THUMBPRINT}"',
        ),
    )

    assert f"{path}: the configuration is not valid." in message
    assert (
        "  - key tenant.client_secret: both a client secret and a certificate are set; "
        "keep only one credential"
    ) in message
    assert "Example of a good value: client_secret_file = " in message


def test_no_credential(tmp_path: Path) -> None:
    """A tenant with neither a client secret nor a certificate is refused, preferring a certificate."""
    path, message = _error_for(tmp_path, _changed(SECRET_LINE, ""))

    assert f"{path}: the configuration is not valid." in message
    assert (
        "  - key tenant.certificate_path: no credential is set; set certificate_path with "
        "certificate_thumbprint (preferred), or a client secret through "
        "REMOTE_GUARD_TENANT__CLIENT_SECRET or client_secret_file."
    ) in message
    assert 'Example of a good value: certificate_path = "/etc/remote_guard/app-cert.pem"' in (
        message
    )


def test_certificate_without_thumbprint(tmp_path: Path) -> None:
    """certificate_path without certificate_thumbprint is refused, naming the thumbprint key."""
    certificate = _certificate(tmp_path)
    path, message = _error_for(
        tmp_path, _changed(SECRET_LINE, f'certificate_path = "{certificate}"')
    )

    assert f"{path}: the configuration is not valid." in message
    assert "  - key tenant.certificate_thumbprint: is required with certificate_path" in message
    assert f'Example of a good value: certificate_thumbprint = "{THUMBPRINT}"' in message


def test_bad_thumbprint(tmp_path: Path) -> None:
    """A thumbprint copied with colons is refused with its length and the 40-hex rule."""
    certificate = _certificate(tmp_path)
    path, message = _error_for(
        tmp_path,
        _changed(
            SECRET_LINE,
            f'certificate_path = "{certificate}"\ncertificate_thumbprint = "A1:B2:C3"',
        ),
    )

    assert f"{path}: the configuration is not valid." in message
    assert (
        "  - key tenant.certificate_thumbprint: must be the certificate's thumbprint: exactly "
        "40 hexadecimal characters (0-9, A-F) with no spaces or colons, but this value has 8 "
        "characters including non-hex ones."
    ) in message
    assert f'Example of a good value: certificate_thumbprint = "{THUMBPRINT}"' in message


def test_certificate_thumbprint_accepted_with_certificate(tmp_path: Path) -> None:
    """A certificate with a 40-hex thumbprint and no secret is a valid credential."""
    certificate = _certificate(tmp_path)

    settings = load_settings(
        _write(
            tmp_path,
            _changed(
                SECRET_LINE,
                f'certificate_path = "{certificate}"\ncertificate_thumbprint = "{THUMBPRINT}"',
            ),
        )
    )

    assert settings.tenant.certificate_thumbprint == THUMBPRINT


def test_http_authority(tmp_path: Path) -> None:
    """A plain http:// authority_host is refused, since MSAL will not use it."""
    path, message = _error_for(
        tmp_path,
        _changed(SECRET_LINE, f'{SECRET_LINE}\nauthority_host = "http://login.example.test"'),
    )

    assert f"{path}: the configuration is not valid." in message
    assert (
        "  - key tenant.authority_host: must be an https:// URL (MSAL and Graph refuse plain http)."
    ) in message
    assert 'Example of a good value: authority_host = "https://login.microsoftonline.com"' in (
        message
    )


def test_missing_ca_bundle(tmp_path: Path) -> None:
    """A ca_bundle that does not exist is refused, naming tenant.ca_bundle."""
    missing = tmp_path / "proxy-ca.pem"
    path, message = _error_for(
        tmp_path, _changed(SECRET_LINE, f'{SECRET_LINE}\nca_bundle = "{missing}"')
    )

    assert f"{path}: the configuration is not valid." in message
    assert f"  - key tenant.ca_bundle: the file {missing} does not exist." in message
    assert 'Example of a good value: ca_bundle = "/etc/ssl/certs/school-proxy-ca.pem"' in message


def test_unknown_database_scheme(tmp_path: Path) -> None:
    """A database URL that is neither SQLite nor PostgreSQL is refused without echoing it."""
    path, message = _error_for(
        tmp_path,
        _changed('url = "sqlite:///remote_guard.db"', 'url = "mysql://user:db-password@h/db"'),
    )

    assert f"{path}: the configuration is not valid." in message
    assert (
        "  - key database.url: uses an unsupported database ('mysql'); it must start with "
        "sqlite:/// (a file) or postgresql+psycopg:// (PostgreSQL through psycopg 3)."
    ) in message
    assert (
        'Example of a good value: url = "postgresql+psycopg://remote_guard@db.school.internal/'
        'remote_guard"'
    ) in message
    assert "db-password" not in message


def test_plain_postgresql_url_uses_psycopg(tmp_path: Path) -> None:
    """postgresql:// is accepted and pointed at the psycopg 3 driver."""
    settings = load_settings(
        _write(
            tmp_path,
            _changed('url = "sqlite:///remote_guard.db"', 'url = "postgresql://rg@db/rg"'),
        )
    )

    assert settings.database.url == "postgresql+psycopg://rg@db/rg"


def test_poll_interval_too_small(tmp_path: Path) -> None:
    """A poll interval under 30 seconds is refused."""
    path, message = _error_for(
        tmp_path, _changed("interval_seconds = 300", "interval_seconds = 10")
    )

    assert f"{path}: the configuration is not valid." in message
    assert "  - key poll.interval_seconds: Input should be greater than or equal to 30." in message
    assert "Example of a good value: interval_seconds = 300" in message


def test_empty_staff_group_ids(tmp_path: Path) -> None:
    """An empty staff_group_ids is refused, saying where to find a group's Object ID."""
    path, message = _error_for(
        tmp_path,
        _changed(
            'staff_group_ids = ["aaaaaaaa-0000-4000-8000-000000000001"]', "staff_group_ids = []"
        ),
    )

    assert f"{path}: the configuration is not valid." in message
    assert (
        "  - key directory.staff_group_ids: is empty; list at least one Entra group id "
        "(the group's Object ID)."
    ) in message
    assert (
        'Example of a good value: staff_group_ids = ["aaaaaaaa-0000-0000-0000-000000000001"]'
    ) in message
    assert (
        "Where to find it: Entra admin centre > Groups > All groups > the group > Overview > "
        "Object ID"
    ) in message


def test_bad_timezone(tmp_path: Path) -> None:
    """A misspelt time zone is refused, suggesting Europe/London."""
    path, message = _error_for(
        tmp_path, _changed('timezone = "Europe/London"', 'timezone = "Europe/Londn"')
    )

    assert f"{path}: the configuration is not valid." in message
    assert (
        "  - key school_day.timezone: 'Europe/Londn' is not a known time zone; use an IANA "
        "name such as Europe/London."
    ) in message
    assert 'Example of a good value: timezone = "Europe/London"' in message


def test_school_day_ends_before_it_starts(tmp_path: Path) -> None:
    """A school day ending before it starts is refused, naming school_day.end."""
    path, message = _error_for(tmp_path, _changed('end = "15:30"', 'end = "08:00"'))

    assert f"{path}: the configuration is not valid." in message
    assert (
        "  - key school_day.end: the school day ends (08:00) at or before it starts (08:45)."
    ) in message
    assert 'Example of a good value: end = "15:30"' in message


def test_term_ends_before_it_starts(tmp_path: Path) -> None:
    """A term ending before it starts is refused, naming which term."""
    path, message = _error_for(tmp_path, _changed("end = 2026-10-23", "end = 2026-08-23"))

    assert f"{path}: the configuration is not valid." in message
    assert (
        "  - key school_day.terms.end (item 1 of school_day.terms): this term ends (2026-08-23) "
        "before it starts (2026-09-03)."
    ) in message
    assert (
        "Example of a good value: [[school_day.terms]]\n      start = 2026-09-03\n"
        "      end = 2026-10-23"
    ) in message


def test_weekday_eight(tmp_path: Path) -> None:
    """Weekday 8 is refused as not an ISO weekday number."""
    path, message = _error_for(
        tmp_path, _changed("weekdays = [1, 2, 3, 4, 5]", "weekdays = [1, 2, 3, 4, 8]")
    )

    assert f"{path}: the configuration is not valid." in message
    assert (
        "  - key school_day.weekdays: 8 is not an ISO weekday number; use 1 (Monday) to 7 (Sunday)."
    ) in message
    assert "Example of a good value: weekdays = [1, 2, 3, 4, 5]" in message


def test_unknown_key_suggests_spelling(tmp_path: Path) -> None:
    """A misspelt key in a section is refused with the key it was probably meant to be."""
    path, message = _error_for(tmp_path, _changed("interval_seconds = 300", "interval_secs = 300"))

    assert f"{path}: the configuration is not valid." in message
    assert (
        "  - key poll.interval_secs: is not a known setting in [poll]; did you mean "
        "interval_seconds?"
    ) in message
    assert "Example of a good value: interval_seconds = 300" in message


def test_unknown_key_lists_known_keys(tmp_path: Path) -> None:
    """A key unlike any setting in its section is refused with that section's settings."""
    path, message = _error_for(tmp_path, _changed("interval_seconds = 300", "colour = 300"))

    assert f"{path}: the configuration is not valid." in message
    assert (
        "  - key poll.colour: is not a known setting in [poll] (check its spelling and "
        "section); the settings there are data_settle_minutes, direct_chats_every_hours, "
        "directory_refresh_minutes, interval_seconds, lease_seconds, lookahead_days, "
        "lookback_hours, max_concurrent_requests, page_size, reread_every_hours, shards."
    ) in message
    assert "Example of a good value: see [poll] in config/example.toml, for instance " in message


def test_unknown_log_level(tmp_path: Path) -> None:
    """A log level that is not debug, info, warning or error is refused."""
    path, message = _error_for(tmp_path, _changed('level = "info"', 'level = "verbose"'))

    assert f"{path}: the configuration is not valid." in message
    assert (
        "  - key logging.level: Input should be 'debug', 'info', 'warning' or 'error'."
    ) in message
    assert 'Example of a good value: level = "info"' in message
