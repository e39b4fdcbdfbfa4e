"""One log line per request on the ``ptbr.requests`` logger: plain text, or JSON with PTBR_LOG_FORMAT=json.
Lines carry sizes, timings, seed and outcome, never the text or the audio."""

from __future__ import annotations

import json
import logging
import sys
import traceback
from pathlib import Path


def _exception_fields(record: logging.LogRecord) -> dict[str, str]:
    """The exception's type and where it was raised, without its message: messages can quote request values
    (pydantic's ValidationError quotes the input), and text never reaches the log."""
    if not record.exc_info or record.exc_info[1] is None:
        return {}
    exc_type, _, trace = record.exc_info
    frames = traceback.extract_tb(trace)[-4:]
    return {"exception": exc_type.__name__,
            "where": " <- ".join(f"{Path(f.filename).name}:{f.lineno} {f.name}" for f in reversed(frames))}


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        try:
            fields = json.loads(record.getMessage())
        except ValueError:
            fields = {"message": record.getMessage()}
        return json.dumps({"time": self.formatTime(record), "level": record.levelname, "logger": record.name, **fields,
                           **_exception_fields(record)})


class _TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        try:
            fields = json.loads(record.getMessage())
            message = " ".join(f"{key}={value}" for key, value in fields.items())
        except ValueError:
            message = record.getMessage()
        extra = " ".join(f"{key}={value}" for key, value in _exception_fields(record).items())
        return f"{self.formatTime(record)} {record.levelname} {record.name} {message}" + (f" {extra}" if extra else "")


def configure_request_log(log_format: str) -> None:
    logger = logging.getLogger("ptbr")
    if any(getattr(handler, "_ptbr", False) for handler in logger.handlers):
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_JsonFormatter() if log_format == "json" else _TextFormatter())
    handler._ptbr = True  # type: ignore[attr-defined]
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
