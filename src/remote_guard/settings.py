"""One typed settings object, loaded once from a TOML file plus the environment, then passed in.

The file is the school's record of how remote_guard is set up; the environment overrides it
(``REMOTE_GUARD_<SECTION>__<KEY>``), which is how containers and systemd pass secrets.
Any secret may instead be read from a file named by ``<key>_file`` (the ``*_FILE`` convention).
"""

from __future__ import annotations

import tomllib
from datetime import date, time
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

REAL_AUTHORITY_HOST = "https://login.microsoftonline.com"
REAL_GRAPH_BASE_URL = "https://graph.microsoft.com/v1.0"


class ConfigError(Exception):
    """The configuration cannot be used. ``str()`` names the file, the key, the problem and a fix."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TenantSettings(_Section):
    """Which Microsoft 365 tenant to read, and how the app proves who it is."""

    tenant_id: str = Field(min_length=1, pattern=r"^[0-9A-Za-z.\-]+$")
    client_id: str = Field(min_length=1, pattern=r"^[0-9A-Za-z\-]+$")
    client_secret: SecretStr | None = None
    client_secret_file: Path | None = None
    certificate_path: Path | None = None
    certificate_thumbprint: str | None = Field(default=None, pattern=r"^[0-9A-Fa-f]{40}$")
    authority_host: str = REAL_AUTHORITY_HOST
    graph_base_url: str = REAL_GRAPH_BASE_URL
    ca_bundle: Path | None = None
    timeout_seconds: float = Field(default=30.0, gt=0, le=300)
    max_retries: int = Field(default=5, ge=0, le=20)
    max_retry_wait_seconds: float = Field(default=60.0, gt=0, le=600)

    @field_validator("authority_host", "graph_base_url")
    @classmethod
    def _https_only(cls, value: str) -> str:
        if not value.startswith("https://"):
            raise ValueError("must be an https:// URL (MSAL and Graph refuse plain http)")
        return value.rstrip("/")

    @model_validator(mode="after")
    def _one_credential(self) -> TenantSettings:
        if self.client_secret_file is not None and self.client_secret is None:
            try:
                secret = self.client_secret_file.read_text(encoding="utf-8").strip()
            except OSError as exc:
                raise ValueError(
                    f"client_secret_file {self.client_secret_file} cannot be read: {exc.strerror}"
                ) from exc
            object.__setattr__(self, "client_secret", SecretStr(secret))
        has_secret = self.client_secret is not None and bool(self.client_secret.get_secret_value())
        has_cert = self.certificate_path is not None
        if has_secret == has_cert:
            raise ValueError(
                "set exactly one credential: client_secret (or client_secret_file), "
                "or certificate_path with certificate_thumbprint"
            )
        if has_cert and not self.certificate_thumbprint:
            raise ValueError("certificate_path needs certificate_thumbprint (40 hex characters)")
        if self.certificate_path is not None and not self.certificate_path.is_file():
            raise ValueError(f"certificate_path {self.certificate_path} does not exist")
        if self.ca_bundle is not None and not self.ca_bundle.is_file():
            raise ValueError(f"ca_bundle {self.ca_bundle} does not exist")
        return self

    @property
    def authority(self) -> str:
        """The MSAL authority URL for this tenant."""
        return f"{self.authority_host}/{self.tenant_id}"

    @property
    def is_real_microsoft(self) -> bool:
        """Whether the authority is Microsoft's own login host (instance discovery applies)."""
        return self.authority_host == REAL_AUTHORITY_HOST


class DatabaseSettings(_Section):
    """Where findings, snapshots and registers are stored."""

    url: str = "sqlite:///var/remote_guard.db"

    @field_validator("url")
    @classmethod
    def _known_backend(cls, value: str) -> str:
        if not value.startswith(("sqlite:", "postgresql:", "postgresql+psycopg:")):
            raise ValueError("must start with sqlite:/// or postgresql+psycopg://")
        if value.startswith("postgresql://"):
            value = "postgresql+psycopg://" + value.removeprefix("postgresql://")
        return value


class PollSettings(_Section):
    """How often and how far the poller looks."""

    interval_seconds: int = Field(default=300, ge=30, le=86_400)
    lookback_hours: int = Field(default=36, ge=1, le=24 * 29)
    lookahead_days: int = Field(default=7, ge=0, le=60)
    page_size: int = Field(default=50, ge=1, le=999)
    data_settle_minutes: int = Field(
        default=90,
        ge=0,
        le=24 * 60,
        description="How long after a meeting ends its attendance and call record may still appear.",
    )


class DirectorySettings(_Section):
    """The Entra group ids that say who is who. Members are read transitively."""

    staff_group_ids: tuple[str, ...] = Field(min_length=1)
    pupil_group_ids: tuple[str, ...] = Field(min_length=1)
    slt_group_ids: tuple[str, ...] = ()
    dsl_group_ids: tuple[str, ...] = ()
    deputy_dsl_group_ids: tuple[str, ...] = ()


class SchoolSettings(_Section):
    """One school of a federation or trust; membership of its groups places a person there."""

    key: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]*$")
    name: str = Field(min_length=1)
    group_ids: tuple[str, ...] = ()


class TermSettings(_Section):
    start: date
    end: date

    @model_validator(mode="after")
    def _ordered(self) -> TermSettings:
        if self.end < self.start:
            raise ValueError(f"term ends ({self.end}) before it starts ({self.start})")
        return self


class SchoolDaySettings(_Section):
    """The school day and term dates, in the school's local time."""

    timezone: str = "Europe/London"
    start: time = time(8, 30)
    end: time = time(15, 30)
    weekdays: tuple[int, ...] = (1, 2, 3, 4, 5)
    terms: tuple[TermSettings, ...] = ()

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {value!r}") from exc
        return value

    @field_validator("weekdays")
    @classmethod
    def _iso_weekdays(cls, value: tuple[int, ...]) -> tuple[int, ...]:
        if not value or any(day < 1 or day > 7 for day in value):
            raise ValueError("ISO weekday numbers 1 (Monday) to 7 (Sunday)")
        return value

    @model_validator(mode="after")
    def _ordered(self) -> SchoolDaySettings:
        if self.end <= self.start:
            raise ValueError(f"the school day ends ({self.end}) before it starts ({self.start})")
        return self

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)


class PolicySettings(_Section):
    """Which code-of-practice profile to apply."""

    profile: str = "bramham-shadwell"
    profile_dirs: tuple[Path, ...] = (Path("config/policies"),)


class PrivacySettings(_Section):
    """What remote_guard keeps about children."""

    store_chat_text: bool = False


class LoggingSettings(_Section):
    level: Literal["debug", "info", "warning", "error"] = "info"
    format: Literal["auto", "json", "console"] = "auto"


class Settings(BaseSettings):
    """Everything remote_guard is told about a school; see ``config/example.toml``."""

    model_config = SettingsConfigDict(
        env_prefix="REMOTE_GUARD_",
        env_nested_delimiter="__",
        extra="forbid",
        frozen=True,
    )

    tenant: TenantSettings
    database: DatabaseSettings = DatabaseSettings()
    poll: PollSettings = PollSettings()
    directory: DirectorySettings
    schools: tuple[SchoolSettings, ...] = ()
    school_day: SchoolDaySettings = SchoolDaySettings()
    policy: PolicySettings = PolicySettings()
    privacy: PrivacySettings = PrivacySettings()
    logging: LoggingSettings = LoggingSettings()

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # The environment overrides the file (init carries the file's contents).
        return (env_settings, init_settings)


# A good value for each key, shown when a value is wrong.
_EXAMPLES: dict[str, str] = {
    "tenant.tenant_id": 'tenant_id = "3f2504e0-4f89-11d3-9a0c-0305e82c3301"',
    "tenant.client_id": 'client_id = "11111111-2222-3333-4444-555555555555"',
    "tenant.client_secret": 'client_secret_file = "/run/secrets/remote_guard_client_secret"',
    "tenant.certificate_path": 'certificate_path = "/etc/remote_guard/app-cert.pem"',
    "tenant.certificate_thumbprint": 'certificate_thumbprint = "A1B2C3D4E5F60718293A4B5C6D7E8F9012345678"',
    "tenant.authority_host": 'authority_host = "https://login.microsoftonline.com"',
    "tenant.graph_base_url": 'graph_base_url = "https://graph.microsoft.com/v1.0"',
    "tenant.ca_bundle": 'ca_bundle = "/etc/ssl/certs/school-proxy-ca.pem"',
    "tenant.timeout_seconds": "timeout_seconds = 30",
    "database.url": 'url = "sqlite:///var/remote_guard.db"',
    "poll.interval_seconds": "interval_seconds = 300",
    "poll.lookback_hours": "lookback_hours = 36",
    "poll.lookahead_days": "lookahead_days = 7",
    "directory.staff_group_ids": 'staff_group_ids = ["aaaaaaaa-0000-0000-0000-000000000001"]',
    "directory.pupil_group_ids": 'pupil_group_ids = ["aaaaaaaa-0000-0000-0000-000000000002"]',
    "school_day.timezone": 'timezone = "Europe/London"',
    "school_day.start": 'start = "08:45"',
    "school_day.end": 'end = "15:30"',
    "school_day.weekdays": "weekdays = [1, 2, 3, 4, 5]",
    "school_day.terms": "[[school_day.terms]]\nstart = 2026-09-03\nend = 2026-10-23",
    "policy.profile": 'profile = "bramham-shadwell"',
    "logging.level": 'level = "info"',
    "logging.format": 'format = "auto"',
    "schools": '[[schools]]\nkey = "bramham"\nname = "Bramham Primary"\ngroup_ids = ["..."]',
}


def _key_of(location: tuple[int | str, ...]) -> str:
    parts = [str(part) for part in location if not isinstance(part, int)]
    return ".".join(parts) if parts else "(top level)"


def _example_for(key: str) -> str:
    if key in _EXAMPLES:
        return _EXAMPLES[key]
    section = key.split(".", 1)[0]
    for known, example in _EXAMPLES.items():
        if known.startswith(section + "."):
            return f"see [{section}] in config/example.toml, for instance {example}"
    return "see config/example.toml"


def format_validation_error(source: str, error: ValidationError) -> str:
    """Turn a pydantic error into lines naming the file, the key, the problem and a good value."""
    lines = [f"{source}: the configuration is not valid."]
    for item in error.errors():
        key = _key_of(tuple(item["loc"]))
        problem = item["msg"].removeprefix("Value error, ")
        if item["type"] == "missing":
            problem = "is required but not set"
        elif item["type"] == "extra_forbidden":
            problem = "is not a known setting (check its spelling and section)"
        lines.append(f"  - key {key}: {problem}.")
        lines.append(f"    Example of a good value: {_example_for(key)}")
    return "\n".join(lines)


def load_settings(path: Path, *, overrides: dict[str, Any] | None = None) -> Settings:
    """Load settings from the TOML file at ``path`` plus ``REMOTE_GUARD_*`` environment variables.

    Raises:
        ConfigError: the file is missing or not TOML, or a value is wrong; the message names the
            file, the key and a good value.
    """
    try:
        raw = path.read_bytes()
    except FileNotFoundError as exc:
        raise ConfigError(
            f"{path}: no such configuration file. Copy config/example.toml to {path} and fill in "
            "your tenant's ids, or pass --config PATH."
        ) from exc
    except OSError as exc:
        raise ConfigError(f"{path}: cannot be read ({exc.strerror}).") from exc
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: is not valid TOML ({exc}).") from exc
    if overrides:
        data = _deep_merge(data, overrides)
    return settings_from_mapping(data, source=str(path))


def settings_from_mapping(data: dict[str, Any], *, source: str) -> Settings:
    """Build settings from an already-parsed mapping (and the environment).

    Raises:
        ConfigError: a value is wrong; the message names ``source``, the key and a good value.
    """
    try:
        return Settings(**data)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(source, exc)) from exc


def _deep_merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged
