"""Log formats: JSON lines with structured fields, text with key=value, no secrets."""

from __future__ import annotations

import io
import json
import logging
import sys
import warnings
from collections.abc import Iterator
from datetime import datetime

import pytest

from hopline.runtime.logs import (
    REDACTED,
    JsonFormatter,
    LogFormat,
    TextFormatter,
    redact_text,
    setup_logging,
)


def make_record(message: str, *args: object, **extra: object) -> logging.LogRecord:
    logger = logging.getLogger("hopline.test")
    return logger.makeRecord(
        "hopline.test", logging.INFO, __file__, 1, message, args, None, extra=extra
    )


def test_json_line_has_time_level_logger_message_and_fields() -> None:
    record = make_record("handover: %d records", 3, records=3, nodes=2, failed_nodes=["sn-a"])
    line = JsonFormatter().format(record)
    assert "\n" not in line
    doc = json.loads(line)
    assert doc["level"] == "info" and doc["logger"] == "hopline.test"
    assert doc["message"] == "handover: 3 records"
    assert (doc["records"], doc["nodes"], doc["failed_nodes"]) == (3, 2, ["sn-a"])
    assert doc["time"].endswith("Z")
    when = datetime.fromisoformat(doc["time"].replace("Z", "+00:00"))
    offset = when.utcoffset()
    assert offset is not None and offset.total_seconds() == 0
    assert abs(when.timestamp() - record.created) < 0.001


def test_secrets_are_not_written() -> None:
    record = make_record(
        "opened %s",
        "postgresql://hopline:hunter2secret@db.example.net/hopline",
        password="hunter2secret",
        enroll_token="tok-123-secret",
        ls_key="QUJDREVG",
        certificate=b"\x01" * 300,
        payload=b"\x02" * 40,
        expires_at=123,
    )
    for formatter in (JsonFormatter(), TextFormatter()):
        out = formatter.format(record)
        assert "hunter2secret" not in out and "tok-123-secret" not in out
        assert "QUJDREVG" not in out and "\\u0001" not in out
        assert "postgresql://hopline:***@db.example.net" in out
    doc = json.loads(JsonFormatter().format(record))
    assert doc["password"] == doc["enroll_token"] == doc["ls_key"] == REDACTED
    assert doc["certificate"] == REDACTED and doc["payload"] == "<40 bytes>"
    assert doc["expires_at"] == 123  # a name that merely mentions a certificate stays


def test_fields_cannot_shadow_the_line_itself() -> None:
    doc = json.loads(JsonFormatter().format(make_record("hello", level="custom", logger="x")))
    assert doc["level"] == "info" and doc["logger"] == "hopline.test"
    assert doc["field_level"] == "custom" and doc["field_logger"] == "x"


def test_exceptions_become_one_field() -> None:
    try:
        raise ValueError("broken")
    except ValueError:
        record = logging.getLogger("t").makeRecord(
            "t", logging.ERROR, __file__, 1, "failed", (), exc_info=sys.exc_info()
        )
    line = JsonFormatter().format(record)
    assert "\n" not in line
    doc = json.loads(line)
    assert doc["level"] == "error" and "ValueError: broken" in doc["exception"]


def test_text_lines_end_with_key_value_pairs() -> None:
    out = TextFormatter().format(make_record("handover done", records=3, nodes=["a", "b"]))
    assert " INFO hopline.test handover done records=3 nodes=[" in out
    assert TextFormatter().format(make_record("plain")).endswith("hopline.test plain")


def test_redact_text_masks_only_url_passwords() -> None:
    assert redact_text("sqlite:///var/lib/x.db") == "sqlite:///var/lib/x.db"
    assert redact_text("see https://example.net:443/a") == "see https://example.net:443/a"
    assert redact_text("u=postgresql://a:b@h/d x") == "u=postgresql://a:***@h/d x"


@pytest.fixture
def root_restored() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for handler in list(root.handlers):
        if handler not in handlers:
            root.removeHandler(handler)
    root.setLevel(level)
    logging.captureWarnings(False)


@pytest.mark.usefixtures("root_restored")
def test_setup_logging_replaces_its_own_handler_and_routes_warnings() -> None:
    first, second = io.StringIO(), io.StringIO()
    setup_logging(LogFormat.TEXT, stream=first)
    setup_logging("json", stream=second)
    logging.getLogger("hopline.test").info("one line", extra={"n": 1})
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.warn("careful", UserWarning, stacklevel=1)
    assert first.getvalue() == ""
    lines = second.getvalue().splitlines()
    docs = [json.loads(line) for line in lines]
    assert docs[0]["message"] == "one line" and docs[0]["n"] == 1
    assert any("careful" in d["message"] and d["logger"] == "py.warnings" for d in docs)
    with pytest.raises(ValueError):
        setup_logging("xml", stream=second)
