"""One log line per request on the ``ptbr.requests`` logger: plain text, or JSON with PTBR_LOG_FORMAT=json.
Lines carry sizes, timings, seed and outcome, never the text or the audio."""

from __future__ import annotations

import json
import logging
import sys


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        try:
            fields = json.loads(record.getMessage())
        except ValueError:
            fields = {"message": record.getMessage()}
        return json.dumps({"time": self.formatTime(record), "level": record.levelname, "logger": record.name, **fields})


class _TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        try:
            fields = json.loads(record.getMessage())
            message = " ".join(f"{key}={value}" for key, value in fields.items())
        except ValueError:
            message = record.getMessage()
        return f"{self.formatTime(record)} {record.levelname} {record.name} {message}"


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
