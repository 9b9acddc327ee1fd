"""Logging: secrets never reach the output, whether logged through structlog or plain logging."""

from __future__ import annotations

import io
import json
import logging
import re
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
import structlog
import time_machine
from structlog.testing import capture_logs

from remote_guard.logs import REDACTED, configure_logging, redact_secrets, redact_text
from remote_guard.settings import LoggingSettings

JWT = (
    "eyJhbGciOiJSUzI1NiIsInR5cCI6IkpXVCJ9"
    ".eyJhdWQiOiJodHRwczovL2dyYXBoLm1pY3Jvc29mdC5jb20iLCJyb2xlcyI6W119"
    ".c2lnbmF0dXJlLWJ5dGVzLW5vdC1yZWFs"
)
OPAQUE_TOKEN = "0.AXEA-opaque-token-value"
AUTHORIZATION_CODE = "0.AXEAtVq3w-a-long-authorization-code-from-the-redirect_wRk"


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    """Each test starts from structlog's defaults and leaves the root logger as it found it."""
    root = logging.getLogger()
    level = root.level
    handlers = list(root.handlers)
    structlog.reset_defaults()
    yield
    structlog.reset_defaults()
    structlog.contextvars.clear_contextvars()
    for handler in [h for h in root.handlers if h not in handlers]:
        root.removeHandler(handler)
    root.setLevel(level)


def _captured(**event: Any) -> dict[str, Any]:
    """Log one event through structlog with only the redaction processor, and return it."""
    with capture_logs(processors=[redact_secrets]) as logs:
        structlog.get_logger().info("event", **event)
    assert len(logs) == 1
    entry = logs[0]
    del entry["log_level"]
    return entry


def _refuse_with_token() -> None:
    raise RuntimeError(f"refused: Authorization: Bearer {JWT}")


def _json_lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def _configured(level: str = "debug", log_format: str = "json") -> io.StringIO:
    stream = io.StringIO()
    configure_logging(
        LoggingSettings.model_validate({"level": level, "format": log_format}), stream=stream
    )
    return stream


# --- the redaction processor, as data ------------------------------------------------------


@pytest.mark.parametrize(
    "key",
    [
        "access_token",
        "refresh_token",
        "id_token",
        "client_secret",
        "client_assertion",
        "password",
        "secret",
        "authorization",
        "cookie",
        "set-cookie",
        "token",
        "assertion",
        "private_key",
        "certificate",
        "Authorization",
        "Set-Cookie",
        "clientSecret",
        "accessToken",
        "graph_access_token",
    ],
)
def test_secret_key_value_is_redacted(key: str) -> None:
    """The value under a secret-sounding key (any case or spelling style) becomes [REDACTED]."""
    assert _captured(**{key: "s3cr3t-value"}) == {"event": "event", key: REDACTED}


def test_secret_keys_redacted_in_nested_dicts_and_lists() -> None:
    """Secret keys are found inside nested dicts and lists, and their siblings are kept."""
    entry = _captured(
        response={
            "token_type": "Bearer",
            "expires_in": 3599,
            "access_token": OPAQUE_TOKEN,
            "items": [{"id": "u1", "password": "hunter2"}, {"id": "u2"}],
        }
    )

    assert entry["response"] == {
        "token_type": "Bearer",
        "expires_in": 3599,
        "access_token": REDACTED,
        "items": [{"id": "u1", "password": REDACTED}, {"id": "u2"}],
    }


def test_headers_mapping_and_header_pairs_redacted() -> None:
    """Authorization and cookie headers are redacted in a headers mapping and in (name, value) pairs."""
    entry = _captured(
        headers={
            "Authorization": f"Bearer {JWT}",
            "Cookie": "session=abc",
            "Accept": "application/json",
            "Retry-After": "2.128",
        },
        header_list=[("Set-Cookie", "session=abc; HttpOnly"), ("Content-Type", "text/html")],
    )

    assert entry["headers"] == {
        "Authorization": REDACTED,
        "Cookie": REDACTED,
        "Accept": "application/json",
        "Retry-After": "2.128",
    }
    assert entry["header_list"] == [("Set-Cookie", REDACTED), ("Content-Type", "text/html")]


def test_bearer_token_inside_text_redacted() -> None:
    """A bearer token inside any string is replaced, keeping the word Bearer."""
    entry = _captured(detail=f"sent header Bearer {OPAQUE_TOKEN} to Graph")

    assert entry["detail"] == f"sent header Bearer {REDACTED} to Graph"


def test_jwt_inside_text_redacted() -> None:
    """A JWT-looking string (three base64url segments) inside text is replaced."""
    entry = _captured(detail=f"token was {JWT}, expired")

    assert entry["detail"] == f"token was {REDACTED}, expired"


def test_authorization_header_text_redacted() -> None:
    """'Authorization: ...' header text inside a string is replaced up to the end of the line."""
    entry = _captured(detail="GET /v1.0/me\nAuthorization: Basic dXNlcjpwYXNz\nAccept: */*")

    assert entry["detail"] == f"GET /v1.0/me\nAuthorization: {REDACTED}\nAccept: */*"


def test_secret_fields_inside_json_text_redacted() -> None:
    """Token fields inside JSON or form text are replaced, the rest of the text kept."""
    entry = _captured(
        body='{"token_type": "Bearer", "access_token": "opaque-value", "expires_in": 3599}',
        form="grant_type=client_credentials&client_secret=abc~123&scope=x",
    )

    assert entry["body"] == (
        f'{{"token_type": "Bearer", "access_token": "{REDACTED}", "expires_in": 3599}}'
    )
    assert entry["form"] == f"grant_type=client_credentials&client_secret={REDACTED}&scope=x"


def test_authorization_code_redacted_but_graph_error_code_kept() -> None:
    """An OAuth code (under 'code' or in a URL) is redacted; Graph's error code and HTTP status stay."""
    entry = _captured(
        code=AUTHORIZATION_CODE,
        path=f"/consent/callback?code={AUTHORIZATION_CODE}&state=xyz",
        error={"code": "TooManyRequests", "message": "Too many requests"},
        status={"code": 429},
    )

    assert entry == {
        "event": "event",
        "code": REDACTED,
        "path": f"/consent/callback?code={REDACTED}&state=xyz",
        "error": {"code": "TooManyRequests", "message": "Too many requests"},
        "status": {"code": 429},
    }


def test_private_key_block_inside_text_redacted() -> None:
    """A PEM private key inside text is replaced whole."""
    pem = "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBg\n-----END PRIVATE KEY-----"

    assert _captured(detail=f"loaded {pem} ok")["detail"] == f"loaded {REDACTED} ok"


def test_object_whose_repr_holds_a_token_is_redacted() -> None:
    """An exception logged as a value is replaced by its redacted repr."""
    entry = _captured(error=RuntimeError(f"401 for Bearer {OPAQUE_TOKEN}"))

    assert entry["error"] == f"RuntimeError('401 for Bearer {REDACTED}')"


def test_non_secret_data_untouched() -> None:
    """Ordinary values, ids, URLs and dotted names pass through unchanged."""
    event = {
        "status_code": 429,
        "token_type": "Bearer",
        "client_id": "11111111-2222-3333-4444-555555555555",
        "client_secret_file": "/run/secrets/remote_guard_client_secret",
        "certificate_thumbprint": "A1B2C3D4E5F60718293A4B5C6D7E8F9012345678",
        "meeting_id": "19:meeting_MjA5ZjQ4ZTgtNWQ4Yy00@thread.v2",
        "url": "https://graph.microsoft.com/v1.0/users/u1/calendarView?startDateTime=2026-11-21",
        "module": "remote_guard.collect.snapshot",
        "retry_after": 2.128,
        "pupils": ("p1", "p2"),
        "optional_token": None,
    }

    assert _captured(**event) == {"event": "event", **event}


def test_redact_text_leaves_plain_text_alone() -> None:
    """redact_text returns text with no secrets in it unchanged."""
    text = "Polled 12 calendars in 3.2 s; authorization required for 2 users."

    assert redact_text(text) == text


# --- a real configured run -----------------------------------------------------------------


def test_json_output_redacts_structlog_event() -> None:
    """A configured JSON run writes the event with its secrets replaced."""
    stream = _configured()

    structlog.get_logger("remote_guard.graph").info(
        "token acquired", access_token=JWT, headers={"Authorization": f"Bearer {JWT}"}, n=1
    )

    (line,) = _json_lines(stream)
    assert line["access_token"] == REDACTED
    assert line["headers"] == {"Authorization": REDACTED}
    assert line["n"] == 1
    assert JWT not in stream.getvalue()


def test_stdlib_message_with_bearer_token_redacted() -> None:
    """A plain logging message holding 'Bearer eyJ...' (as msal might log) is redacted."""
    stream = _configured()

    logging.getLogger("msal.application").debug("Sending Authorization header Bearer %s", JWT)

    (line,) = _json_lines(stream)
    assert line["event"] == f"Sending Authorization header Bearer {REDACTED}"
    assert line["logger"] == "msal.application"
    assert line["level"] == "debug"
    assert JWT not in stream.getvalue()


def test_stdlib_token_response_redacted() -> None:
    """A token response dict logged through plain logging loses its tokens, not its other fields."""
    stream = _configured()

    logging.getLogger("msal.token_cache").debug(
        "event=%s", {"token_type": "Bearer", "access_token": OPAQUE_TOKEN, "expires_in": 3599}
    )

    (line,) = _json_lines(stream)
    assert line["event"] == (
        f"event={{'token_type': 'Bearer', 'access_token': '{REDACTED}', 'expires_in': 3599}}"
    )


def test_traceback_text_redacted() -> None:
    """A token inside an exception message is removed from the rendered traceback."""
    stream = _configured()

    try:
        _refuse_with_token()
    except RuntimeError:
        logging.getLogger("urllib3.connectionpool").exception("request failed")

    (line,) = _json_lines(stream)
    assert line["exception"].endswith(f"RuntimeError: refused: Authorization: {REDACTED}")
    assert JWT not in stream.getvalue()


def test_contextvars_appear_on_structlog_and_stdlib_lines() -> None:
    """poll_run_id and request_id bound with structlog.contextvars appear on every line."""
    stream = _configured()
    structlog.contextvars.bind_contextvars(poll_run_id="run-7", request_id="req-3")

    structlog.get_logger("remote_guard.poll").info("poll started")
    logging.getLogger("uvicorn.access").info("GET /cases 200")

    lines = _json_lines(stream)
    assert [(line["event"], line["poll_run_id"], line["request_id"]) for line in lines] == [
        ("poll started", "run-7", "req-3"),
        ("GET /cases 200", "run-7", "req-3"),
    ]


def test_timestamp_is_iso_utc() -> None:
    """Each line carries an ISO 8601 timestamp in UTC."""
    stream = _configured()

    with time_machine.travel(datetime(2026, 11, 23, 9, 15, tzinfo=UTC), tick=False):
        structlog.get_logger().info("tick")
        logging.getLogger("apscheduler").info("tock")

    assert [line["timestamp"] for line in _json_lines(stream)] == [
        "2026-11-23T09:15:00Z",
        "2026-11-23T09:15:00Z",
    ]


def test_level_filters_structlog_and_stdlib() -> None:
    """Below the configured level nothing is written, from structlog or from plain logging."""
    stream = _configured(level="warning")

    structlog.get_logger().info("structlog info")
    structlog.get_logger().warning("structlog warning")
    logging.getLogger("urllib3").info("stdlib info")
    logging.getLogger("urllib3").error("stdlib error")

    assert [line["event"] for line in _json_lines(stream)] == [
        "structlog warning",
        "stdlib error",
    ]


def test_auto_format_writes_console_lines_on_a_terminal() -> None:
    """With format "auto", a terminal gets readable key=value lines, still redacted."""
    stream = _Terminal()
    configure_logging(LoggingSettings(level="info", format="auto"), stream=stream)

    structlog.get_logger().info("hello", client_secret="s3cr3t-value", n=1)

    plain = re.sub(r"\x1b\[[0-9;]*m", "", stream.getvalue())
    assert "hello" in plain
    assert f"client_secret={REDACTED}" in plain
    assert "n=1" in plain
    assert "s3cr3t-value" not in plain
    assert not plain.lstrip().startswith("{")


def test_console_format_forced_without_terminal() -> None:
    """format "console" writes uncoloured readable lines even when the stream is not a terminal."""
    stream = _configured(level="info", log_format="console")

    structlog.get_logger("remote_guard.web").info("signed in", password="hunter2")

    output = stream.getvalue()
    assert "\x1b[" not in output
    assert f"password={REDACTED}" in output
    assert "hunter2" not in output


def test_configuring_twice_keeps_one_handler() -> None:
    """A second configure_logging replaces the first handler instead of adding another."""
    first = _configured()
    second = _configured()

    structlog.get_logger().info("once")

    assert first.getvalue() == ""
    assert [line["event"] for line in _json_lines(second)] == ["once"]
    assert [h.get_name() for h in logging.getLogger().handlers].count("remote_guard") == 1


def test_import_configures_nothing() -> None:
    """Importing remote_guard.logs adds no handler and leaves structlog unconfigured."""
    code = (
        "import logging, structlog, remote_guard.logs; "
        "print(len(logging.getLogger().handlers), structlog.is_configured())"
    )

    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )

    assert result.stdout == "0 False\n"
