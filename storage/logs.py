"""How every dreambot process logs: readable lines or one JSON object per line ([logging] format), secrets removed.

`configure` is called once by `cli.main` after the config is loaded. Records carry the job, subject and
worker they concern when the code runs inside `context(...)` (the worker wraps each job in one); the
context follows the code into asyncio tasks and `asyncio.to_thread`, so a training thread's records
name their job too.

Whatever the format, the text that leaves passes through `redact`: the bot's token, interaction and
webhook tokens in URLs, signed URLs' signatures and passwords in connection URLs never reach a log.
"""

from __future__ import annotations

import contextlib
import contextvars
import datetime
import json
import logging
import os
import re
import sys
import types
from collections.abc import Iterator

FIELDS = ("job_id", "subject_id", "worker")  # what a record may carry beyond the message
_context: contextvars.ContextVar[types.MappingProxyType] = contextvars.ContextVar(
    "dreambot_log_context", default=types.MappingProxyType({}))

SECRET_ENV = ("DISCORD_TOKEN", "AWS_SECRET_ACCESS_KEY", "PGPASSWORD", "HF_TOKEN")  # values never logged
_RULES = (
    # an interaction's or a webhook's token in a request URL is a credential
    (re.compile(r"(/(?:webhooks|interactions)/\d+/)[^/\s?'\"]+"), r"\1<token>"),
    # signed URLs: Discord's CDN (ex, is, hm) and S3 presigned (X-Amz-Signature, X-Amz-Credential, ...)
    (re.compile(r"([?&](?:hm|X-Amz-Signature|X-Amz-Credential|X-Amz-Security-Token|Signature|AWSAccessKeyId)=)"
                r"[^&\s'\"]+", re.IGNORECASE), r"\1<redacted>"),
    # a password in a URL's userinfo: postgresql://user:secret@host
    (re.compile(r"(\b[a-z][a-z0-9+.\-]*://[^:/@\s'\"]+:)[^@/\s'\"]+@", re.IGNORECASE), r"\1<redacted>@"),
    # a header or a repr that names a bot token
    (re.compile(r"(\bBot\s+)[A-Za-z0-9_\-]{20,}\.[A-Za-z0-9_\-]{4,}\.[A-Za-z0-9_\-]{20,}"), r"\1<token>"),
)


def redact(text: str) -> str:
    """`text` without the secrets named above (the environment's secret values too)."""
    for pattern, replacement in _RULES:
        text = pattern.sub(replacement, text)
    for name in SECRET_ENV:
        value = os.environ.get(name)
        if value and len(value) >= 8 and value in text:
            text = text.replace(value, f"<{name}>")
    return text


@contextlib.contextmanager
def context(**fields: object) -> Iterator[None]:
    """Records logged inside the block (and in tasks and threads it starts) carry these fields."""
    unknown = set(fields) - set(FIELDS)
    if unknown:
        raise ValueError(f"log context fields are {', '.join(FIELDS)}, not {', '.join(sorted(unknown))}")
    token = _context.set(types.MappingProxyType({**_context.get(), **{k: v for k, v in fields.items()
                                                                        if v is not None}}))
    try:
        yield
    finally:
        _context.reset(token)


class _ContextFilter(logging.Filter):
    """Copies the current log context onto the record, unless the call passed its own (`extra=`)."""

    def filter(self, record: logging.LogRecord) -> bool:
        for key, value in _context.get().items():
            if not hasattr(record, key):
                setattr(record, key, value)
        return True


class TextFormatter(logging.Formatter):
    """`time LEVEL logger: message [job=.. subject=.. worker=..]`, redacted."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        known = [f"{key.split('_')[0]}={getattr(record, key)}" for key in FIELDS if hasattr(record, key)]
        if known:
            first, newline, rest = text.partition("\n")
            text = f"{first} [{' '.join(known)}]{newline}{rest}"
        return redact(text)


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time (UTC, ISO 8601), level, logger, message, exception when any, and the
    job_id, subject_id and worker the record carries. Every string is redacted."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, object] = {
            "time": datetime.datetime.fromtimestamp(record.created, datetime.UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": redact(record.getMessage()),
        }
        if record.exc_info:
            out["exception"] = redact(self.formatException(record.exc_info))
        elif record.exc_text:
            out["exception"] = redact(record.exc_text)
        if record.stack_info:
            out["stack"] = redact(self.formatStack(record.stack_info))
        for key in FIELDS:
            if hasattr(record, key):
                value = getattr(record, key)
                out[key] = value if isinstance(value, int | float | bool) or value is None else redact(str(value))
        return json.dumps(out, ensure_ascii=False, default=str)


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever sys.stderr is when a record comes, not when the handler was made (a test's captured
    stream is closed after it; a later record must not go there)."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:
        pass


def configure(fmt: str = "text", *, verbose: bool = False, stream=None) -> logging.Handler:
    """Route every logger to one handler on stderr (or `stream`) in `fmt` ("text" or "json"); it replaces the
    handler an earlier call installed, so it can be called again. Returns the handler."""
    if fmt not in ("text", "json"):
        raise ValueError(f"[logging] format is {fmt!r}: use \"text\" or \"json\"")
    handler = logging.StreamHandler(stream) if stream is not None else _StderrHandler()
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    handler.addFilter(_ContextFilter())
    handler.dreambot = True
    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, "dreambot", False)]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    return handler
