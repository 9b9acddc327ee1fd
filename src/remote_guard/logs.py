"""Structured logging, with tokens, secrets and passwords removed before anything is written.

``configure_logging`` is called once by the entry point; importing this module configures
nothing. Both structlog loggers and plain ``logging`` loggers (msal, urllib3, uvicorn) end in one
handler whose formatter runs the same processors, so :func:`redact_secrets` sees every line.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Callable, Mapping
from typing import Any, TextIO

import structlog
from structlog.typing import EventDict, Processor, WrappedLogger

from remote_guard.settings import LoggingSettings

__all__ = ["REDACTED", "configure_logging", "redact_data", "redact_secrets", "redact_text"]

REDACTED = "[REDACTED]"

_HANDLER_NAME = "remote_guard"
_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}
# uvicorn installs its own handlers unless told otherwise; its lines must pass our redaction.
_THIRD_PARTY_WITH_OWN_HANDLERS = ("uvicorn", "uvicorn.error", "uvicorn.access")

# Key names (after _normalise_key) whose values are secret.
_SECRET_KEYS = frozenset(
    {
        "access_token",
        "refresh_token",
        "id_token",
        "client_secret",
        "client_assertion",
        "client_state",  # Graph change-notification clientState: proves a notification is ours
        "password",
        "passwd",
        "secret",
        "authorization",
        "cookie",
        "set_cookie",
        "code",
        "authorization_code",
        "auth_code",
        "token",
        "assertion",
        "private_key",
        "certificate",
        "api_key",
        "apikey",
        "hmac_key",  # the audit trail's key: whoever has it can rewrite the chain
    }
)
_SECRET_SUFFIXES = (
    "_token",
    "_secret",
    "_password",
    "_assertion",
    "_private_key",
    "_api_key",
    "_cookie",
    "_authorization",
)
# The stdlib bridge's own objects (removed before rendering) and exc_info (turned into text by
# format_exc_info, which needs the original): processors after this one need them intact.
_INTERNAL_KEYS = frozenset({"_record", "_from_structlog", "exc_info"})

# Under a key named "code", Graph puts its error codes ("TooManyRequests", "ErrorAccessDenied"),
# which are needed to diagnose a failure; an OAuth authorization code is long and not an
# identifier, so only values that look like the former are kept.
_ERROR_CODE = re.compile(r"[A-Za-z][A-Za-z0-9_.]{0,63}")
_CAMEL_BOUNDARY = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")
_MAX_DEPTH = 20

_B64URL = r"A-Za-z0-9_\-"
# Any PEM block: private keys, and certificates too (certificate material identifies the app's
# credential; none of it belongs in a log or the audit trail). A block cut off before its END
# line (a truncated message) loses its base64 body all the same.
_PEM_BLOCK = re.compile(
    r"-----BEGIN [A-Z0-9 ]+-----(?:.*?-----END [A-Z0-9 ]+-----|[A-Za-z0-9+/=\s]*)", re.DOTALL
)
# "Authorization: Bearer ...", "'Cookie': 'a=b'", "set-cookie=..." inside text: the header value
# runs to the end of the line or the closing quote.
_HEADER_IN_TEXT = re.compile(
    r"(?i)(?<![a-z0-9])((?:proxy-)?authorization|(?:set-)?cookie)([\"']?\s*[:=]\s*[\"']?)([^\"'\r\n]+)"
)
# access_token=..., "client_secret": "...", password: ... inside text (form bodies, JSON, reprs).
_SECRET_FIELD_IN_TEXT = re.compile(
    r"(?i)(?<![a-z0-9])(access_token|refresh_token|id_token|client_secret|client_assertion|clientState"
    r"|password|private_key)([\"']?\s*[:=]\s*)(\"[^\"]*\"|'[^']*'|[^\s\"'&,;}\]]+)"
)
# ?code=... in URLs, such as a request line logged by uvicorn.
_SECRET_QUERY_PARAMETER = re.compile(
    r"(?i)([?&](?:code|token|access_token|refresh_token|id_token|client_secret"
    r"|client_assertion|password)=)([^&#\s\"']+)"
)
_BEARER = re.compile(r"(?i)\b(Bearer\s+)[A-Za-z0-9\-._~+/]+=*")
# A JWT (or JWE) starts with base64url '{"' = "eyJ"; three long base64url segments joined by
# dots are treated the same way, as they are too long to be a dotted name.
_JWT = re.compile(
    rf"(?<![{_B64URL}])eyJ[{_B64URL}]*\.[{_B64URL}]+\.[{_B64URL}]*(?:\.[{_B64URL}]*){{0,2}}"
)
_THREE_SEGMENTS = re.compile(
    rf"(?<![{_B64URL}.])[{_B64URL}]{{20,}}\.[{_B64URL}]{{20,}}\.[{_B64URL}]{{20,}}(?![{_B64URL}])"
)


def _normalise_key(key: object) -> str:
    """``clientSecret``, ``Client-Secret`` and ``client_secret`` all become ``client_secret``."""
    return _CAMEL_BOUNDARY.sub("_", str(key)).lower().replace("-", "_")


def _is_secret_key(key: object) -> bool:
    name = _normalise_key(key)
    return name in _SECRET_KEYS or name.endswith(_SECRET_SUFFIXES)


def _quoted_redaction(match: re.Match[str]) -> str:
    value = match.group(3)
    quote = value[0] if value[:1] in {'"', "'"} else ""
    return f"{match.group(1)}{match.group(2)}{quote}{REDACTED}{quote}"


def redact_text(text: str) -> str:
    """Return ``text`` with PEM blocks (keys, certificates), auth headers, secret fields, bearer
    tokens and JWTs replaced by ``[REDACTED]``; text without them is returned unchanged."""
    text = _PEM_BLOCK.sub(REDACTED, text)
    text = _HEADER_IN_TEXT.sub(lambda match: f"{match.group(1)}{match.group(2)}{REDACTED}", text)
    text = _SECRET_FIELD_IN_TEXT.sub(_quoted_redaction, text)
    text = _SECRET_QUERY_PARAMETER.sub(lambda match: f"{match.group(1)}{REDACTED}", text)
    text = _BEARER.sub(lambda match: f"{match.group(1)}{REDACTED}", text)
    text = _JWT.sub(REDACTED, text)
    return _THREE_SEGMENTS.sub(REDACTED, text)


def _redact_keyed(key: object, value: Any, depth: int) -> Any:
    """The value stored under ``key``, redacted whole if the key names a secret."""
    if value is None or (isinstance(value, str) and not value) or not _is_secret_key(key):
        return _redact_value(value, depth)
    if _normalise_key(key) == "code" and (
        isinstance(value, int) or (isinstance(value, str) and _ERROR_CODE.fullmatch(value))
    ):
        return value
    return REDACTED


def _redact_value(value: Any, depth: int) -> Any:
    """``value`` with secrets removed, keeping its type where nothing had to be removed."""
    if value is None or isinstance(value, bool | int | float):
        return value
    if isinstance(value, str):
        return redact_text(value)
    if depth > _MAX_DEPTH:
        return redact_text(repr(value))
    if isinstance(value, Mapping):
        return {key: _redact_keyed(key, item, depth + 1) for key, item in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        if (
            isinstance(value, tuple)
            and len(value) == 2
            and isinstance(value[0], str)
            and _is_secret_key(value[0])
        ):
            # A header as a (name, value) pair, as in requests' and uvicorn's header lists.
            return (value[0], _redact_keyed(value[0], value[1], depth + 1))
        items = [_redact_value(item, depth + 1) for item in value]
        if isinstance(value, set | frozenset):
            return type(value)(items) if all(_hashable(item) for item in items) else items
        return tuple(items) if isinstance(value, tuple) else items
    if isinstance(value, bytes | bytearray):
        text = value.decode("utf-8", errors="replace")
        cleaned = redact_text(text)
        return value if cleaned == text else cleaned
    # Renderers fall back to repr() for other objects (exceptions, responses), so check that.
    shown = repr(value)
    cleaned = redact_text(shown)
    return value if cleaned == shown else cleaned


def _hashable(item: object) -> bool:
    try:
        hash(item)
    except TypeError:
        return False
    return True


def redact_data(value: Any) -> Any:
    """``value`` (a mapping, list or scalar) with the same secrets removed as from a log line.

    The audit trail passes each entry's content through this before it is hashed and stored.
    """
    return _redact_value(value, 0)


def redact_secrets(logger: WrappedLogger, method_name: str, event_dict: EventDict) -> EventDict:
    """A structlog processor: replace secret values in ``event_dict`` with ``[REDACTED]``.

    Values under secret-sounding keys (``access_token``, ``client_secret``, ``authorization``,
    ``cookie``, ``password``, ...) at any depth, and bearer tokens, JWTs, private keys and
    ``Authorization:`` headers inside any text. Run it after ``format_exc_info`` so that
    tracebacks are text by then, and before the renderer.
    """
    return {
        key: value if key in _INTERNAL_KEYS else _redact_keyed(key, value, 0)
        for key, value in event_dict.items()
    }


def _is_terminal(stream: TextIO) -> bool:
    isatty: Callable[[], bool] | None = getattr(stream, "isatty", None)
    try:
        return bool(isatty()) if isatty is not None else False
    except ValueError:  # a closed stream
        return False


def _renderer(settings: LoggingSettings, stream: TextIO) -> Processor:
    on_terminal = _is_terminal(stream)
    if settings.format == "console" or (settings.format == "auto" and on_terminal):
        # format_exc_info has already turned tracebacks into (redacted) text; a rich traceback
        # with local variables would print secrets held in locals.
        return structlog.dev.ConsoleRenderer(colors=on_terminal)
    return structlog.processors.JSONRenderer()


def configure_logging(settings: LoggingSettings, *, stream: TextIO | None = None) -> None:
    """Send structlog and standard-library logging to ``stream`` (default: standard error).

    JSON lines unless ``settings.format`` is "console", or "auto" and ``stream`` is a terminal;
    ISO 8601 UTC timestamps; values bound with ``structlog.contextvars`` added to each line;
    secrets removed by :func:`redact_secrets`. Calling it again replaces the earlier set-up.
    For uvicorn's lines to be included, start uvicorn with ``log_config=None``.
    """
    target = stream if stream is not None else sys.stderr
    level = _LEVELS[settings.level]
    shared: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.StackInfoRenderer(),
        structlog.processors.format_exc_info,
        redact_secrets,
    ]
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.make_filtering_bound_logger(level),
        # Cached loggers would keep an earlier configuration after a second call.
        cache_logger_on_first_use=False,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            _renderer(settings, target),
        ],
    )
    handler = logging.StreamHandler(target)
    handler.set_name(_HANDLER_NAME)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    for existing in [h for h in root.handlers if h.get_name() == _HANDLER_NAME]:
        root.removeHandler(existing)
    root.addHandler(handler)
    root.setLevel(level)
    for name in _THIRD_PARTY_WITH_OWN_HANDLERS:
        third_party = logging.getLogger(name)
        third_party.handlers.clear()
        third_party.propagate = True
        # A dictConfig elsewhere (uvicorn's default) may have disabled it.
        third_party.disabled = False
        third_party.setLevel(logging.NOTSET)  # the root level set above governs
