"""Log lines for Hopline processes: plain text or JSON lines, on stderr.

Every long-running process (``hopline loginserver``, ``hopline supernode``,
and the client daemon) logs through the standard :mod:`logging` module and
calls :func:`setup_logging` once with the operator's ``--log-format``:

* ``text`` (default): ``TIME LEVEL LOGGER MESSAGE key=value ...``, for people.
* ``json``: one JSON object per line, for log shippers::

      {"time": "2024-05-01T12:00:00.123Z", "level": "info",
       "logger": "hopline.supernode", "message": "handover: 3 records ...",
       "records": 3, "nodes": 2}

  ``time`` is ISO 8601 in UTC with milliseconds; ``level`` is the lower-case
  level name; every field a call site passes with ``extra={...}`` becomes a
  key of its own (one that would shadow ``time``, ``level``, ``logger`` or
  ``message`` is prefixed ``field_``); an exception is one ``exception``
  string. Python warnings are routed through the same handler, so with
  ``json`` every line on stderr parses.

**No secrets.** Both formats pass what they write through the same filter:
an extra field whose name ends in a secret-sounding word (``password``,
``token``, ``key``, ``secret``, ``certificate``, ``signature``...) is written
as ``[redacted]``; a ``bytes`` value (keys, certificates, sealed payloads) is
written as its length only; and a password in a URL (``postgresql://user:
PASSWORD@host``) is masked wherever it appears in a message. Call sites
should still not pass secrets; the filter is the second line of defence.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from datetime import UTC, datetime
from enum import StrEnum
from typing import IO, Any

__all__ = [
    "JsonFormatter",
    "LogFormat",
    "TextFormatter",
    "redact_text",
    "record_fields",
    "setup_logging",
]

REDACTED = "[redacted]"
SECRET_WORDS = frozenset(
    {
        "password",
        "passwd",
        "passphrase",
        "secret",
        "token",
        "key",
        "private",
        "certificate",
        "cert",
        "signature",
        "credential",
        "credentials",
        "authorization",
        "cookie",
    }
)
_URL_PASSWORD = re.compile(r"(?P<head>\b[a-z][a-z0-9+.-]*://[^/\s:@]*):[^@\s/]*@", re.IGNORECASE)
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {
    "message",
    "asctime",
    "taskName",
}
_OWN_KEYS = ("time", "level", "logger", "message")
_MARK = "_hopline_handler"


class LogFormat(StrEnum):
    """What ``--log-format`` accepts."""

    TEXT = "text"
    JSON = "json"


def redact_text(text: str) -> str:
    """``text`` with passwords in URLs masked (``scheme://user:***@host``)."""
    return _URL_PASSWORD.sub(r"\g<head>:***@", text)


def _secret_name(name: str) -> bool:
    return re.split(r"[^a-z0-9]+", name.lower())[-1] in SECRET_WORDS


def _safe(name: str, value: object) -> object:
    """What may be logged of one extra field."""
    if _secret_name(name):
        return REDACTED
    if isinstance(value, bytes | bytearray | memoryview):
        return f"<{len(value)} bytes>"
    if value is None or isinstance(value, bool | int | float):
        return value
    if isinstance(value, list | tuple | set | frozenset):
        return [_safe("", item) for item in value]
    return redact_text(str(value))


def record_fields(record: logging.LogRecord) -> dict[str, object]:
    """The ``extra={...}`` fields of ``record``, made safe to write."""
    fields: dict[str, object] = {}
    for name, value in vars(record).items():
        if name in _STANDARD or name.startswith("_"):
            continue
        key = f"field_{name}" if name in _OWN_KEYS else name
        fields[key] = _safe(name, value)
    return fields


def _utc_iso(created: float) -> str:
    stamp = datetime.fromtimestamp(created, UTC).isoformat(timespec="milliseconds")
    return stamp.replace("+00:00", "Z")


class JsonFormatter(logging.Formatter):
    """One JSON object per record (see the module docstring)."""

    def format(self, record: logging.LogRecord) -> str:
        """The record as one line of JSON."""
        document: dict[str, Any] = {
            "time": _utc_iso(record.created),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": redact_text(record.getMessage()),
        }
        document.update(record_fields(record))
        if record.exc_info:
            document["exception"] = redact_text(self.formatException(record.exc_info))
        if record.stack_info:
            document["stack"] = redact_text(self.formatStack(record.stack_info))
        return json.dumps(document, ensure_ascii=False, default=str)


class TextFormatter(logging.Formatter):
    """``TIME LEVEL LOGGER MESSAGE key=value ...``, with the same redaction."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        """The record as one line of text (plus a traceback, if any)."""
        line = redact_text(super().format(record))
        fields = record_fields(record)
        if not fields:
            return line
        head, sep, rest = line.partition("\n")  # key=value pairs go before a traceback
        pairs = " ".join(f"{key}={json.dumps(value, default=str)}" for key, value in fields.items())
        return f"{head} {pairs}{sep}{rest}"


def setup_logging(
    log_format: LogFormat | str = LogFormat.TEXT,
    *,
    level: int = logging.INFO,
    stream: IO[str] | None = None,
) -> logging.Handler:
    """Send every log record (and Python warning) to ``stream`` (stderr) in ``log_format``.

    Calling it again replaces the handler it installed before; other
    handlers on the root logger are left alone. Returns the new handler.
    """
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    formatter = JsonFormatter() if LogFormat(log_format) is LogFormat.JSON else TextFormatter()
    handler.setFormatter(formatter)
    setattr(handler, _MARK, True)
    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, _MARK, False)]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    logging.captureWarnings(True)
    return handler
