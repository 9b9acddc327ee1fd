"""One typed settings object, loaded once from a TOML file plus the environment, then passed in.

The file is the school's record of how remote_guard is set up; the environment overrides it
(``REMOTE_GUARD_<SECTION>__<KEY>``), which is how containers and systemd pass secrets.
Any secret may instead be read from a file named by ``<key>_file`` (the ``*_FILE`` convention).
"""

from __future__ import annotations

import difflib
import os
import re
import tomllib
from collections.abc import Iterator
from datetime import date, time
from pathlib import Path
from typing import Any, Literal, get_args
from urllib.parse import urlsplit
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
from pydantic_core import ErrorDetails, PydanticCustomError
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    SettingsError,
)

REAL_AUTHORITY_HOST = "https://login.microsoftonline.com"
REAL_GRAPH_BASE_URL = "https://graph.microsoft.com/v1.0"


class ConfigError(Exception):
    """The configuration cannot be used. ``str()`` names the file, the key, the problem and a fix."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _invalid(key: str, problem: str) -> PydanticCustomError:
    """An error about one key of a section, raised where only the whole section is checked.

    Pydantic places a model validator's error at the section; ``key`` (in the context) lets
    ``format_validation_error`` name the setting the technician has to change.
    """
    return PydanticCustomError("invalid_setting", "{problem}", {"key": key, "problem": problem})


_TENANT_ID = re.compile(r"^[0-9A-Za-z.\-]+$")
_CLIENT_ID = re.compile(r"^[0-9A-Za-z\-]+$")
_THUMBPRINT = re.compile(r"^[0-9A-Fa-f]{40}$")


class TenantSettings(_Section):
    """Which Microsoft 365 tenant to read, and how the app proves who it is."""

    tenant_id: str
    client_id: str
    client_secret: SecretStr | None = None
    client_secret_file: Path | None = None
    certificate_path: Path | None = None
    certificate_thumbprint: str | None = None
    authority_host: str = REAL_AUTHORITY_HOST
    graph_base_url: str = REAL_GRAPH_BASE_URL
    ca_bundle: Path | None = None
    timeout_seconds: float = Field(default=30.0, gt=0, le=300)
    max_retries: int = Field(default=5, ge=0, le=20)
    max_retry_wait_seconds: float = Field(default=60.0, gt=0, le=600)

    @field_validator("tenant_id")
    @classmethod
    def _tenant_id_shape(cls, value: str) -> str:
        if not _TENANT_ID.fullmatch(value):
            raise ValueError(
                "must be the Directory (tenant) ID, a GUID, or the tenant's domain name: "
                "letters, digits, dots and hyphens only, with no spaces or quotes"
            )
        return value

    @field_validator("client_id")
    @classmethod
    def _client_id_shape(cls, value: str) -> str:
        if not _CLIENT_ID.fullmatch(value):
            raise ValueError(
                "must be the app registration's Application (client) ID, a GUID: "
                "letters, digits and hyphens only, with no spaces or quotes"
            )
        return value

    @field_validator("certificate_thumbprint")
    @classmethod
    def _thumbprint_shape(cls, value: str | None) -> str | None:
        if value is not None and not _THUMBPRINT.fullmatch(value):
            raise ValueError(
                f"must be the certificate's thumbprint: exactly 40 hexadecimal characters "
                f"(0-9, A-F) with no spaces or colons, but this value has {len(value)} "
                "characters"
                + ("" if re.fullmatch(r"[0-9A-Fa-f]*", value) else " including non-hex ones")
            )
        return value

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
                raise _invalid(
                    "client_secret_file",
                    f"the file {self.client_secret_file} cannot be read ({exc.strerror})",
                ) from None
            if not secret:
                raise _invalid("client_secret_file", f"the file {self.client_secret_file} is empty")
            object.__setattr__(self, "client_secret", SecretStr(secret))
        has_secret = self.client_secret is not None and bool(self.client_secret.get_secret_value())
        has_cert = self.certificate_path is not None
        if has_secret and has_cert:
            raise _invalid(
                "client_secret",
                "both a client secret and a certificate are set; keep only one credential "
                "(a certificate is preferred, so remove client_secret or client_secret_file "
                "and REMOTE_GUARD_TENANT__CLIENT_SECRET)",
            )
        if not has_secret and not has_cert:
            raise _invalid(
                "certificate_path",
                "no credential is set; set certificate_path with certificate_thumbprint "
                "(preferred), or a client secret through REMOTE_GUARD_TENANT__CLIENT_SECRET "
                "or client_secret_file",
            )
        if has_cert and not self.certificate_thumbprint:
            raise _invalid(
                "certificate_thumbprint",
                "is required with certificate_path (the 40 hexadecimal characters Entra shows "
                "beside the uploaded certificate)",
            )
        if self.certificate_path is not None and not self.certificate_path.is_file():
            raise _invalid("certificate_path", f"the file {self.certificate_path} does not exist")
        if self.ca_bundle is not None and not self.ca_bundle.is_file():
            raise _invalid("ca_bundle", f"the file {self.ca_bundle} does not exist")
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
            # Only the scheme is echoed: the rest of a URL may hold a password.
            scheme = value.split(":", 1)[0] if ":" in value else value[:20]
            raise ValueError(
                f"uses an unsupported database ({scheme!r}); it must start with sqlite:/// "
                "(a file) or postgresql+psycopg:// (PostgreSQL through psycopg 3)"
            )
        if value.startswith("postgresql://"):
            value = "postgresql+psycopg://" + value.removeprefix("postgresql://")
        return value

    def __repr_args__(self) -> Iterator[tuple[str | None, Any]]:
        # A PostgreSQL URL may carry a password; repr() and str() must not show it.
        yield "url", _hide_password(self.url)


def _hide_password(url: str) -> str:
    return re.sub(r"^([A-Za-z][A-Za-z0-9+.\-]*://[^/@:]*:)[^/@]*@", r"\1***@", url)


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
    direct_chats_every_hours: int = Field(
        default=24,
        ge=1,
        le=168,
        description=(
            "Hours between two reads of staff members' chats outside meetings. Microsoft asks "
            "apps not to poll Teams resources more than once a day."
        ),
    )
    max_concurrent_requests: int = Field(
        default=8,
        ge=1,
        le=32,
        description=(
            "Graph requests (each a $batch of up to 20) in flight at once. A mailbox never has "
            "more than one calendar request in flight, well within Outlook's limit of four."
        ),
    )
    directory_refresh_minutes: int = Field(
        default=60,
        ge=0,
        le=24 * 60,
        description=(
            "Minutes between two reads of the configured groups (who is staff, pupil, SLT, DSL), "
            "of the teams and channels and of invited groups' members; 0 reads them every poll."
        ),
    )
    reread_every_hours: int = Field(
        default=3,
        ge=1,
        le=24,
        description=(
            "Hours between two reads of a session nothing says has changed: an upcoming "
            "meeting, whose options (lobby, chat, presenters) can change in Teams alone, and an "
            "ended one whose attendance or call record never appeared. A changed calendar "
            "entry is read at the next poll."
        ),
    )
    shards: int = Field(
        default=1,
        ge=1,
        le=64,
        description=(
            "How many parts the staff mailboxes are cut into for `remote-guard poll --worker`: "
            "each part is polled by whichever worker claims it, so up to this many workers poll "
            "one tenant at once. 1 (the default) polls the tenant as one piece."
        ),
    )
    lease_seconds: int = Field(
        default=60,
        ge=2,
        le=3600,
        description=(
            "How long a worker's claim on a part outlives its last renewal (renewed every third "
            "of it): a worker that dies gives its part up this long after it stopped."
        ),
    )


class DirectorySettings(_Section):
    """The Entra group ids that say who is who. Members are read transitively."""

    staff_group_ids: tuple[str, ...]
    pupil_group_ids: tuple[str, ...]
    slt_group_ids: tuple[str, ...] = ()
    dsl_group_ids: tuple[str, ...] = ()
    deputy_dsl_group_ids: tuple[str, ...] = ()

    @field_validator("staff_group_ids", "pupil_group_ids")
    @classmethod
    def _not_empty(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        # Without these groups nobody can be told apart from a pupil, so every check would fail.
        if not value:
            raise ValueError("is empty; list at least one Entra group id (the group's Object ID)")
        return value


class SchoolSettings(_Section):
    """One school of a federation or trust; membership of its groups places a person there."""

    key: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]*$")
    name: str = Field(min_length=1)
    group_ids: tuple[str, ...] = ()


class TermSettings(_Section):
    """One term (or half term), first and last day inclusive."""

    start: date
    end: date

    @model_validator(mode="after")
    def _ordered(self) -> TermSettings:
        if self.end < self.start:
            raise _invalid("end", f"this term ends ({self.end}) before it starts ({self.start})")
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
            raise ValueError(
                f"{value!r} is not a known time zone; use an IANA name such as Europe/London"
            ) from exc
        return value

    @field_validator("weekdays")
    @classmethod
    def _iso_weekdays(cls, value: tuple[int, ...]) -> tuple[int, ...]:
        if not value:
            raise ValueError("is empty; list the school days as ISO weekday numbers")
        wrong = [day for day in value if day < 1 or day > 7]
        if wrong:
            raise ValueError(
                f"{wrong[0]} is not an ISO weekday number; use 1 (Monday) to 7 (Sunday)"
            )
        return value

    @model_validator(mode="after")
    def _ordered(self) -> SchoolDaySettings:
        if self.end <= self.start:
            raise _invalid(
                "end",
                f"the school day ends ({self.end:%H:%M}) at or before it starts "
                f"({self.start:%H:%M})",
            )
        return self

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)


class PolicySettings(_Section):
    """Which code-of-practice profile to apply."""

    profile: str = "bramham-shadwell"
    # Clause packs checked as well as the school's profile, e.g. "national-guidance".
    packs: tuple[str, ...] = ()
    profile_dirs: tuple[Path, ...] = (Path("config/policies"),)


class PrivacySettings(_Section):
    """What remote_guard keeps about children."""

    store_chat_text: bool = False


class AuditSettings(_Section):
    """Where the audit trail's JSON-lines copy goes, and the key that makes its chain unforgeable."""

    # Default: beside a SQLite database (remote_guard.db -> remote_guard.audit.jsonl); with
    # PostgreSQL there is no default and the trail is kept in the database only until one is set.
    file: Path | None = None
    hmac_key: SecretStr | None = None
    hmac_key_file: Path | None = None

    @model_validator(mode="after")
    def _key(self) -> AuditSettings:
        if self.hmac_key_file is not None and self.hmac_key is None:
            try:
                key = self.hmac_key_file.read_text(encoding="utf-8").strip()
            except OSError as exc:
                raise _invalid(
                    "hmac_key_file",
                    f"the file {self.hmac_key_file} cannot be read ({exc.strerror})",
                ) from None
            if not key:
                raise _invalid("hmac_key_file", f"the file {self.hmac_key_file} is empty")
            object.__setattr__(self, "hmac_key", SecretStr(key))
        if self.hmac_key is not None and len(self.hmac_key.get_secret_value()) < 32:
            # Shorter keys can be guessed; the length, never the key, is shown.
            raise _invalid(
                "hmac_key_file" if self.hmac_key_file is not None else "hmac_key",
                f"the key is {len(self.hmac_key.get_secret_value())} characters long; use at "
                "least 32 random characters (openssl rand -hex 32 makes 64)",
            )
        return self


class RetentionSettings(_Section):
    """How long each kind of record is kept before the daily purge removes its content.

    The reasons for the defaults are in docs/retention.md.
    """

    # At least 30 days: a session is re-read from Microsoft for up to 29 days (poll.lookback_hours).
    sessions_without_findings_days: int = Field(default=120, ge=30, le=3650)
    # At least 120 days: repeated-breach rules look back that far (rules.base.HISTORY_DAYS).
    findings_days: int = Field(default=365, ge=120, le=3650)
    closed_cases_days: int = Field(default=2190, ge=365, le=9125)
    consents_after_withdrawal_days: int = Field(default=365, ge=30, le=3650)
    audit_days: int = Field(default=2190, ge=365, le=9125)


_LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1", "[::1]"})


class WebSettings(_Section):
    """The web app staff sign in to: where it listens, its public address and its session key."""

    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    # The address staff type in their browser, as registered in Entra (scheme, host, port if
    # any, no path). Default: http://{host}:{port}, which only suits a test on this machine.
    public_url: str | None = None
    # Signs the session cookie. Required by `remote-guard serve`; the demo makes its own.
    session_secret: SecretStr | None = None
    session_secret_file: Path | None = None
    # Where Entra sends staff back after sign-in; register public_url + redirect_path in Entra.
    redirect_path: str = "/auth/callback"
    # A signed-in session ends this long after sign-in, or after this long without a request.
    session_hours: int = Field(default=10, ge=1, le=24 * 7)
    idle_minutes: int = Field(default=60, ge=5, le=24 * 60)

    @field_validator("public_url")
    @classmethod
    def _public_url_shape(cls, value: str | None) -> str | None:
        if value is None:
            return None
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(
                "must be the address staff open in their browser, starting with https://"
            )
        if parts.path not in ("", "/") or parts.query or parts.fragment:
            raise ValueError(
                "must be only scheme, host and port (no path, query or #); the sign-in "
                "return path is redirect_path"
            )
        if parts.scheme == "http" and parts.hostname not in _LOOPBACK_HOSTS:
            raise ValueError(
                "uses http:// for a host other than this machine; Entra ID accepts only https "
                "return addresses except for localhost, and the session cookie must be Secure"
            )
        return f"{parts.scheme}://{parts.netloc}"

    @field_validator("redirect_path")
    @classmethod
    def _path_shape(cls, value: str) -> str:
        if not re.fullmatch(r"/[A-Za-z0-9/_\-.]*", value) or "//" in value:
            raise ValueError("must be a path starting with / such as /auth/callback")
        return value

    @model_validator(mode="after")
    def _secret(self) -> WebSettings:
        if self.session_secret_file is not None and self.session_secret is None:
            try:
                secret = self.session_secret_file.read_text(encoding="utf-8").strip()
            except OSError as exc:
                raise _invalid(
                    "session_secret_file",
                    f"the file {self.session_secret_file} cannot be read ({exc.strerror})",
                ) from None
            if not secret:
                raise _invalid(
                    "session_secret_file", f"the file {self.session_secret_file} is empty"
                )
            object.__setattr__(self, "session_secret", SecretStr(secret))
        if self.session_secret is not None and len(self.session_secret.get_secret_value()) < 32:
            # A short key lets anyone forge a session cookie; the length, never the key, is shown.
            raise _invalid(
                "session_secret_file" if self.session_secret_file is not None else "session_secret",
                f"the secret is {len(self.session_secret.get_secret_value())} characters long; "
                "use at least 32 random characters (openssl rand -hex 32 makes 64)",
            )
        return self

    @property
    def base_url(self) -> str:
        """The public address, without a trailing slash."""
        if self.public_url is not None:
            return self.public_url
        host = f"[{self.host}]" if ":" in self.host and not self.host.startswith("[") else self.host
        return f"http://{host}:{self.port}"

    @property
    def redirect_uri(self) -> str:
        """The sign-in return address to register in Entra (Authentication > Web > Redirect URIs)."""
        return self.base_url + self.redirect_path

    @property
    def uses_https(self) -> bool:
        return self.base_url.startswith("https://")


class NotifySettings(_Section):
    """E-mail to the DSL and deputy DSLs about new high-severity findings.

    Sent through Graph (``POST /users/{service_mailbox}/sendMail``, application permission
    Mail.Send) as the school's service mailbox, one message per poll cycle per recipient.
    """

    enabled: bool = False
    # The mailbox the e-mail is sent as: its user principal name or Entra object id.
    service_mailbox: str | None = None
    # Who gets it (e-mail addresses or Entra object ids). Empty: every member of the DSL and
    # deputy DSL groups ([directory]), each told only about the schools they are in.
    dsl_recipients: tuple[str, ...] = ()

    @model_validator(mode="after")
    def _mailbox(self) -> NotifySettings:
        if self.enabled and not (self.service_mailbox or "").strip():
            raise _invalid(
                "service_mailbox",
                "is required when enabled = true: the e-mail is sent as this mailbox",
            )
        return self


NotificationResource = Literal["call_records", "meeting_chats", "calendars"]
# Graph limits clientState to 128 characters; fewer than 32 random ones could be guessed.
_CLIENT_STATE_LENGTH = (32, 128)


class NotificationSettings(_Section):
    """Microsoft Graph change notifications: what must be known within seconds (a pupil posting
    in a live meeting's chat, a call that ended, who is in a live meeting) comes from Graph
    instead of waiting for the next poll. Polling stays the safety net and the source of truth.
    See docs/notifications.md.
    """

    enabled: bool = False
    # The public HTTPS address Graph posts change notifications to (a reverse proxy in front of
    # the receiver, or the receiver itself with tls_cert_file). Lifecycle notifications go to
    # the same address with /lifecycle appended.
    notification_url: str | None = None
    # The secret Graph repeats in every notification (clientState), so forged ones are ignored.
    client_state: SecretStr | None = None
    client_state_file: Path | None = None
    # What to subscribe to: call records (a call ended: collect it now), each live or upcoming
    # meeting's chat (a pupil posting), staff calendars (a lesson booked or moved: poll now).
    resources: tuple[NotificationResource, ...] = ("call_records", "meeting_chats")
    # Who is in each live Teams meeting (CallStarted, CallRosterUpdate, CallEnded). Microsoft
    # documents these events on the beta endpoint only, so they are an opt-in.
    roster_events: bool = False
    # Which process hosts the receiver: "poller" (remote-guard poll listens on listen_host and
    # listen_port) or "web" (remote-guard serve answers at notification_url's path).
    receiver: Literal["poller", "web"] = "poller"
    listen_host: str = "127.0.0.1"
    listen_port: int = Field(default=8443, ge=1, le=65535)
    # With both set the poller's receiver serves HTTPS itself; without, put a TLS-terminating
    # reverse proxy in front of it (Graph only posts to https:// addresses).
    tls_cert_file: Path | None = None
    tls_key_file: Path | None = None
    # A meeting's chat and roster are subscribed to this long before it starts.
    subscribe_ahead_minutes: int = Field(default=60, ge=5, le=24 * 60)
    # ... and kept this long after it was due to end (lessons overrun).
    linger_minutes: int = Field(default=30, ge=0, le=24 * 60)
    # Who gets the e-mail about a live one-to-one ([notify] enabled): addresses or Entra object
    # ids. Empty: the members of the SLT groups in [directory], each told of their own schools.
    slt_recipients: tuple[str, ...] = ()
    # A live one-to-one is mailed once it has lasted this long (it shows on the SLT board at
    # once): the first pupil in a lesson is briefly alone with the teacher every time.
    live_alert_mail_after_seconds: int = Field(default=60, ge=0, le=3600)

    @field_validator("notification_url")
    @classmethod
    def _https_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        parts = urlsplit(value)
        if parts.scheme != "https" or not parts.hostname:
            raise ValueError(
                "must be the receiver's public https:// address (Graph refuses to post change "
                "notifications to http://)"
            )
        if parts.query or parts.fragment:
            raise ValueError("must have no query (?...) or fragment (#...)")
        return value.rstrip("/")

    @model_validator(mode="after")
    def _complete(self) -> NotificationSettings:
        if self.client_state_file is not None and self.client_state is None:
            try:
                secret = self.client_state_file.read_text(encoding="utf-8").strip()
            except OSError as exc:
                raise _invalid(
                    "client_state_file",
                    f"the file {self.client_state_file} cannot be read ({exc.strerror})",
                ) from None
            if not secret:
                raise _invalid("client_state_file", f"the file {self.client_state_file} is empty")
            object.__setattr__(self, "client_state", SecretStr(secret))
        if self.client_state is not None:
            shortest, longest = _CLIENT_STATE_LENGTH
            length = len(self.client_state.get_secret_value())
            if not shortest <= length <= longest:
                # The length, never the secret, is shown.
                raise _invalid(
                    "client_state_file" if self.client_state_file is not None else "client_state",
                    f"the secret is {length} characters long; use {shortest} to {longest} "
                    "random characters (openssl rand -hex 32 makes 64)",
                )
        if (self.tls_cert_file is None) != (self.tls_key_file is None):
            raise _invalid(
                "tls_key_file" if self.tls_key_file is None else "tls_cert_file",
                "tls_cert_file and tls_key_file go together: set both (the receiver serves "
                "HTTPS itself) or neither (a reverse proxy in front of it serves HTTPS)",
            )
        for key in ("tls_cert_file", "tls_key_file"):
            path = getattr(self, key)
            if path is not None and not path.is_file():
                raise _invalid(key, f"the file {path} does not exist")
        if self.enabled:
            if self.notification_url is None:
                raise _invalid(
                    "notification_url",
                    "is required when enabled = true: the public https:// address Graph posts "
                    "change notifications to",
                )
            if self.client_state is None:
                raise _invalid(
                    "client_state_file",
                    "is required when enabled = true: a file holding the secret Graph repeats "
                    "in every notification",
                )
        return self

    @property
    def lifecycle_url(self) -> str | None:
        """Where Graph sends lifecycle notifications (reauthorize, removed, missed)."""
        return f"{self.notification_url}/lifecycle" if self.notification_url else None

    @property
    def receiver_path(self) -> str:
        """The path of ``notification_url`` (where the web app mounts the receiver)."""
        path = urlsplit(self.notification_url or "").path.rstrip("/")
        return path or "/graph-notifications"


class OpsSettings(_Section):
    """Operations endpoints: who may read ``/metrics``.

    ``/healthz`` and ``/readyz`` answer anyone (they say nothing about children). ``/metrics``
    needs ``Authorization: Bearer <metrics_token>`` when a token is set; with none set it
    answers only requests from this machine (loopback), e.g. a Prometheus agent beside it.
    """

    metrics_token: SecretStr | None = None
    metrics_token_file: Path | None = None

    @model_validator(mode="after")
    def _token(self) -> OpsSettings:
        if self.metrics_token_file is not None and self.metrics_token is None:
            try:
                token = self.metrics_token_file.read_text(encoding="utf-8").strip()
            except OSError as exc:
                raise _invalid(
                    "metrics_token_file",
                    f"the file {self.metrics_token_file} cannot be read ({exc.strerror})",
                ) from None
            if not token:
                raise _invalid("metrics_token_file", f"the file {self.metrics_token_file} is empty")
            object.__setattr__(self, "metrics_token", SecretStr(token))
        if self.metrics_token is not None and len(self.metrics_token.get_secret_value()) < 32:
            # A short token can be guessed; the length, never the token, is shown.
            raise _invalid(
                "metrics_token_file" if self.metrics_token_file is not None else "metrics_token",
                f"the token is {len(self.metrics_token.get_secret_value())} characters long; "
                "use at least 32 random characters (openssl rand -hex 32 makes 64)",
            )
        return self


class LoggingSettings(_Section):
    """How much remote_guard logs, and whether as JSON lines or for a person at a terminal."""

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
    audit: AuditSettings = AuditSettings()
    retention: RetentionSettings = RetentionSettings()
    web: WebSettings = WebSettings()
    notify: NotifySettings = NotifySettings()
    notifications: NotificationSettings = NotificationSettings()
    ops: OpsSettings = OpsSettings()
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
    "tenant.client_secret_file": 'client_secret_file = "/run/secrets/remote_guard_client_secret"',
    "tenant.certificate_path": 'certificate_path = "/etc/remote_guard/app-cert.pem"',
    "tenant.certificate_thumbprint": 'certificate_thumbprint = "A1B2C3D4E5F60718293A4B5C6D7E8F9012345678"',
    "tenant.authority_host": 'authority_host = "https://login.microsoftonline.com"',
    "tenant.graph_base_url": 'graph_base_url = "https://graph.microsoft.com/v1.0"',
    "tenant.ca_bundle": 'ca_bundle = "/etc/ssl/certs/school-proxy-ca.pem"',
    "tenant.timeout_seconds": "timeout_seconds = 30",
    "tenant.max_retries": "max_retries = 5",
    "tenant.max_retry_wait_seconds": "max_retry_wait_seconds = 60",
    "database.url": 'url = "postgresql+psycopg://remote_guard@db.school.internal/remote_guard"',
    "poll.interval_seconds": "interval_seconds = 300",
    "poll.lookback_hours": "lookback_hours = 36",
    "poll.lookahead_days": "lookahead_days = 7",
    "poll.page_size": "page_size = 50",
    "poll.data_settle_minutes": "data_settle_minutes = 90",
    "directory.staff_group_ids": 'staff_group_ids = ["aaaaaaaa-0000-0000-0000-000000000001"]',
    "directory.pupil_group_ids": 'pupil_group_ids = ["aaaaaaaa-0000-0000-0000-000000000002"]',
    "directory.slt_group_ids": 'slt_group_ids = ["aaaaaaaa-0000-0000-0000-000000000003"]',
    "directory.dsl_group_ids": 'dsl_group_ids = ["aaaaaaaa-0000-0000-0000-000000000004"]',
    "directory.deputy_dsl_group_ids": 'deputy_dsl_group_ids = ["aaaaaaaa-0000-0000-0000-000000000005"]',
    "school_day.timezone": 'timezone = "Europe/London"',
    "school_day.start": 'start = "08:45"',
    "school_day.end": 'end = "15:30"',
    "school_day.weekdays": "weekdays = [1, 2, 3, 4, 5]",
    "school_day.terms": "[[school_day.terms]]\nstart = 2026-09-03\nend = 2026-10-23",
    "policy.profile": 'profile = "bramham-shadwell"',
    "policy.profile_dirs": 'profile_dirs = ["config/policies"]',
    "policy.packs": 'packs = ["national-guidance"]',
    "privacy.store_chat_text": "store_chat_text = false",
    "audit.file": 'file = "/var/lib/remote_guard/audit.jsonl"',
    "audit.hmac_key": 'hmac_key_file = "/run/secrets/remote_guard_audit_key"',
    "audit.hmac_key_file": 'hmac_key_file = "/run/secrets/remote_guard_audit_key"',
    "retention.sessions_without_findings_days": "sessions_without_findings_days = 120",
    "retention.findings_days": "findings_days = 365",
    "retention.closed_cases_days": "closed_cases_days = 2190",
    "retention.consents_after_withdrawal_days": "consents_after_withdrawal_days = 365",
    "retention.audit_days": "audit_days = 2190",
    "web.host": 'host = "127.0.0.1"',
    "web.port": "port = 8000",
    "web.public_url": 'public_url = "https://remote-guard.yourschool.example"',
    "web.session_secret": 'session_secret_file = "/run/secrets/remote_guard_session_secret"',
    "web.session_secret_file": 'session_secret_file = "/run/secrets/remote_guard_session_secret"',
    "web.redirect_path": 'redirect_path = "/auth/callback"',
    "web.session_hours": "session_hours = 10",
    "web.idle_minutes": "idle_minutes = 60",
    "notify.enabled": "enabled = true",
    "notify.service_mailbox": 'service_mailbox = "safeguarding-alerts@yourschool.example"',
    "notify.dsl_recipients": 'dsl_recipients = ["dsl@yourschool.example"]',
    "notifications.enabled": "enabled = true",
    "notifications.notification_url": 'notification_url = "https://remote-guard.yourschool.example/graph-notifications"',
    "notifications.client_state": 'client_state_file = "/run/secrets/remote_guard_client_state"',
    "notifications.client_state_file": 'client_state_file = "/run/secrets/remote_guard_client_state"',
    "notifications.resources": 'resources = ["call_records", "meeting_chats"]',
    "notifications.roster_events": "roster_events = false",
    "notifications.receiver": 'receiver = "poller"',
    "notifications.listen_host": 'listen_host = "127.0.0.1"',
    "notifications.listen_port": "listen_port = 8443",
    "notifications.tls_cert_file": 'tls_cert_file = "/etc/remote_guard/receiver.pem"',
    "notifications.tls_key_file": 'tls_key_file = "/etc/remote_guard/receiver.key"',
    "notifications.subscribe_ahead_minutes": "subscribe_ahead_minutes = 60",
    "notifications.linger_minutes": "linger_minutes = 30",
    "notifications.slt_recipients": 'slt_recipients = ["head@yourschool.example"]',
    "notifications.live_alert_mail_after_seconds": "live_alert_mail_after_seconds = 60",
    "ops.metrics_token": 'metrics_token_file = "/run/secrets/remote_guard_metrics_token"',
    "ops.metrics_token_file": 'metrics_token_file = "/run/secrets/remote_guard_metrics_token"',
    "logging.level": 'level = "info"',
    "logging.format": 'format = "auto"',
    "schools": '[[schools]]\nkey = "bramham"\nname = "Bramham Primary"\ngroup_ids = ["..."]',
}

_APP = (
    "Microsoft Entra admin centre (entra.microsoft.com) > App registrations > your remote_guard app"
)
_GROUP = "Entra admin centre > Groups > All groups > the group > Overview > Object ID"

# Where a technician finds the value, shown beside the example.
_WHERE: dict[str, str] = {
    "tenant.tenant_id": "Microsoft Entra admin centre (entra.microsoft.com) > Overview > Tenant ID",
    "tenant.client_id": f"{_APP} > Overview > Application (client) ID",
    "tenant.client_secret": f"{_APP} > Certificates & secrets > Client secrets (the Value, shown once)",
    "tenant.client_secret_file": "a file only the remote_guard service account can read, holding the secret's Value",
    "tenant.certificate_path": f"the PEM file whose public part is uploaded at {_APP} > Certificates & secrets > Certificates",
    "tenant.certificate_thumbprint": f"{_APP} > Certificates & secrets > Certificates > Thumbprint",
    "tenant.ca_bundle": "ask whoever runs the school's web filter for its root certificate (PEM)",
    "audit.hmac_key_file": "a file only the remote_guard service account can read, holding at least 32 random characters (openssl rand -hex 32)",
    "audit.hmac_key": "make one with openssl rand -hex 32 and give it in a file named by hmac_key_file",
    "web.session_secret": "make one with openssl rand -hex 32 and give it in a file named by session_secret_file",
    "web.session_secret_file": "a file only the remote_guard service account can read, holding at least 32 random characters (openssl rand -hex 32)",
    "ops.metrics_token": "make one with openssl rand -hex 32 and give it in a file named by metrics_token_file",
    "notifications.client_state": "make one with openssl rand -hex 32 and give it in a file named by client_state_file",
    "notifications.client_state_file": "a file only the remote_guard service account can read, holding 32 to 128 random characters (openssl rand -hex 32)",
    "notifications.notification_url": "the public https:// address of the receiver: a reverse proxy on the school's web address forwarding to listen_host:listen_port (docs/notifications.md)",
    "ops.metrics_token_file": "a file only the remote_guard service account can read, holding at least 32 random characters (openssl rand -hex 32); Prometheus sends it as a bearer token",
    "web.public_url": f"the address staff open; register it with redirect_path at {_APP} > Authentication > Web > Redirect URIs",
    "directory.staff_group_ids": _GROUP,
    "directory.pupil_group_ids": _GROUP,
    "directory.slt_group_ids": _GROUP,
    "directory.dsl_group_ids": _GROUP,
    "directory.deputy_dsl_group_ids": _GROUP,
}


def _model_in(annotation: Any) -> type[BaseModel] | None:
    """The settings model inside a field's type (``TermSettings`` in ``tuple[TermSettings, ...]``)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for argument in get_args(annotation):
        found = _model_in(argument)
        if found is not None:
            return found
    return None


def _model_at(names: list[str]) -> type[BaseModel] | None:
    model: type[BaseModel] = Settings
    for name in names:
        field = model.model_fields.get(name)
        inner = _model_in(field.annotation) if field is not None else None
        if inner is None:
            return None
        model = inner
    return model


def _example_for(key: str) -> str:
    parts = key.split(".")
    while parts:
        if ".".join(parts) in _EXAMPLES:
            return _EXAMPLES[".".join(parts)]
        parts.pop()
    section = key.split(".", 1)[0]
    for known, example in _EXAMPLES.items():
        if known.startswith(section + "."):
            return f"see [{section}] in config/example.toml, for instance {example}"
    return "see config/example.toml"


def _env_variable_for(names: list[str]) -> str | None:
    """The ``REMOTE_GUARD_*`` variable that set this key, if one is set."""
    wanted = "REMOTE_GUARD_" + "__".join(names).upper()
    return wanted if any(name.upper() == wanted for name in os.environ) else None


def _describe(item: ErrorDetails) -> list[str]:
    """The lines explaining one pydantic error: key, problem, example and where to look."""
    location = tuple(item["loc"])
    names = [str(part) for part in location if not isinstance(part, int)]
    context = item.get("ctx") or {}
    if isinstance(context.get("key"), str):
        names.append(context["key"])
    key = ".".join(names) if names else "(top level)"
    where = ""
    for position, part in enumerate(location):
        if isinstance(part, int):
            owner = ".".join(str(p) for p in location[:position] if not isinstance(p, int))
            where = f" (item {part + 1} of {owner})"
    problem = str(item["msg"]).removeprefix("Value error, ")
    example_key = key
    if item["type"] == "missing":
        problem = "is required but not set"
    elif item["type"] == "extra_forbidden":
        parent = names[:-1]
        model = _model_at(parent)
        known = sorted(model.model_fields) if model is not None else []
        guess = difflib.get_close_matches(names[-1], known, n=1, cutoff=0.6)
        section = f"[{'.'.join(parent)}]" if parent else "the top level"
        if guess:
            problem = f"is not a known setting in {section}; did you mean {guess[0]}?"
            example_key = ".".join([*parent, guess[0]])
        else:
            problem = (
                f"is not a known setting in {section} (check its spelling and section); "
                f"the settings there are {', '.join(known)}"
            )
    ending = "" if problem.endswith((".", "?")) else "."
    lines = [f"  - key {key}{where}: {problem}{ending}"]
    variable = _env_variable_for(names) if not where else None
    if variable is not None:
        lines.append(
            f"    This value came from the environment variable {variable}, which overrides the file."
        )
    example = _example_for(example_key).replace("\n", "\n      ")
    lines.append(f"    Example of a good value: {example}")
    if example_key in _WHERE:
        lines.append(f"    Where to find it: {_WHERE[example_key]}")
    return lines


def format_validation_error(source: str, error: ValidationError) -> str:
    """Turn a pydantic error into lines naming the file, the key, the problem and a good value.

    The values themselves are never repeated: a wrong value may be a secret.
    """
    lines = [f"{source}: the configuration is not valid."]
    for item in error.errors():
        lines.extend(_describe(item))
    return "\n".join(lines)


def load_settings(path: Path, *, overrides: dict[str, Any] | None = None) -> Settings:
    """Load settings from the TOML file at ``path`` plus ``REMOTE_GUARD_*`` environment variables.

    Raises:
        ConfigError: the file is missing or not TOML, or a value is wrong; the message names the
            file, the key and a good value.
    """
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(
            f"{path}: no such configuration file. Copy config/example.toml to {path} and fill in "
            "your tenant's ids, or pass --config PATH.\n"
            "    Example of a good value: --config /etc/remote_guard/remote_guard.toml"
        ) from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot be read ({exc.strerror}).") from None
    try:
        # utf-8-sig: Windows Notepad may save the file with a byte-order mark, which TOML rejects.
        data = tomllib.loads(raw.decode("utf-8-sig"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(
            f"{path}: is not valid TOML ({exc}). Write each setting as key = value under its "
            "[section]; text needs double quotes, and Windows paths need forward slashes or "
            "single quotes.\n"
            '    Example of a good value: [tenant]\n      tenant_id = "3f2504e0-4f89-11d3-9a0c-0305e82c3301"'
        ) from None
    if overrides:
        data = _deep_merge(data, overrides)
    return settings_from_mapping(data, source=str(path))


def settings_from_mapping(data: dict[str, Any], *, source: str) -> Settings:
    """Build settings from an already-parsed mapping (and the environment).

    Raises:
        ConfigError: a value is wrong; the message names ``source``, the key and a good value.
    """
    # "from None" on purpose: a chained ValidationError prints each wrong input value,
    # which for a mistyped key such as "client_secrt" is the secret itself.
    try:
        return Settings(**data)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(source, exc)) from None
    except SettingsError as exc:
        raise ConfigError(
            f"{source}: a REMOTE_GUARD_* environment variable cannot be read ({exc}). A list "
            "or table given in an environment variable must be JSON.\n"
            "    Example of a good value: "
            """REMOTE_GUARD_DIRECTORY__STAFF_GROUP_IDS='["aaaaaaaa-0000-0000-0000-000000000001"]'"""
        ) from None


def _deep_merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged
