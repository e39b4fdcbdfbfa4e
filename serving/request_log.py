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


class RedactExceptionDetails(logging.Filter):
    """Strips exception messages from log records, keeping the exception types and where they were raised.

    BentoML logs every request it refuses with the exception's traceback (``log_exception`` in
    ``bentoml._internal.server.http_app``), and a pydantic ValidationError renders the rejected values
    (``input_value='…'``): the text of a refused synthesis would land in the server log. Installed on the handlers of
    the root, ``bentoml`` and ``uvicorn.error`` loggers, this rewrites such records: the message keeps its first line
    ("Exception on /synthesize [POST]"), followed by each exception of the chain as its type and frames only
    (validation errors also say which top-level fields failed, and how, never with what)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and record.exc_info[1] is not None:
            summary = describe_exception(record.exc_info[1])
            record.msg = f"{record.getMessage()}\n{summary}"
            record.args = None
            record.exc_info = None
            record.exc_text = None
        return True


# Routes whose last path segment is a client's value: a saved voice is addressed by id *or name* there, and names
# never reach the log. BentoML's access log writes the path as it came (decoded: spaces, commas and all).
PARAMETER_PREFIXES = ("/v1/models/", "/v1/audio/voices/")


def redact_path(text: str) -> str:
    """``text`` with everything after a parameter prefix replaced by ``{id}``: a bare path, or BentoML's access-log
    request field ``scheme=…,method=…,path=<path>[,type=…][,length=…]`` (whose content type and length go too: a
    decoded path can hold ``,type=`` itself, so nothing after the prefix can be told apart from the path)."""
    for prefix in PARAMETER_PREFIXES:
        if text.startswith(prefix):
            return prefix + "{id}"
        at = text.find("path=" + prefix)
        if at >= 0:
            return text[:at + len("path=" + prefix)] + "{id}"
    return text


class RedactPathParameters(logging.Filter):
    """Rewrites ``/v1/audio/voices/Ana Maria`` as ``/v1/audio/voices/{id}`` (and ``/v1/models/…``) in the arguments of
    any record, BentoML's access log (``bentoml.access``) included."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple) and any(isinstance(arg, str) for arg in record.args):
            record.args = tuple(redact_path(arg) if isinstance(arg, str) else arg for arg in record.args)
        elif isinstance(record.msg, str) and not record.args:
            record.msg = redact_path(record.msg)
        return True


def describe_exception(exc: BaseException) -> str:
    """An exception chain as types and frames, never messages (they can quote request values)."""
    parts = []
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        frames = traceback.extract_tb(current.__traceback__)[-8:]
        where = " <- ".join(f"{Path(f.filename).name}:{f.lineno} {f.name}" for f in reversed(frames))
        parts.append(f"  {type(current).__name__}{_validation_summary(current)} at {where or '?'}")
        current = current.__cause__ or current.__context__
    return "\n".join(parts) + "\n  (messages withheld: they can quote request data)"


def _validation_summary(exc: BaseException) -> str:
    errors = getattr(exc, "errors", None)
    if type(exc).__name__ != "ValidationError" or not callable(errors):
        return ""
    try:
        found = errors(include_url=False, include_context=False, include_input=False)
    except Exception:  # noqa: BLE001 - a summary is a courtesy, never a new failure
        return ""
    # Only the top-level field name: deeper locations can be keys of a request's own dictionaries.
    fields = sorted({f"{error['loc'][0]}:{error['type']}" if error.get("loc") else error["type"] for error in found})
    return f" ({', '.join(fields)})"


def redact_exception_logs() -> None:
    """Install ``RedactExceptionDetails`` and ``RedactPathParameters`` on every handler that request-time records can
    reach (idempotent)."""
    handlers = set()
    for name in (None, "bentoml", "uvicorn.error", "uvicorn", "circus"):  # "ptbr" redacts in its formatter
        handlers.update(logging.getLogger(name).handlers)
    for handler in handlers:
        for kind in (RedactExceptionDetails, RedactPathParameters):
            if not any(isinstance(existing, kind) for existing in handler.filters):
                handler.addFilter(kind())


def configure_request_log(log_format: str) -> None:
    redact_exception_logs()
    logger = logging.getLogger("ptbr")
    if any(getattr(handler, "_ptbr", False) for handler in logger.handlers):
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_JsonFormatter() if log_format == "json" else _TextFormatter())
    handler._ptbr = True  # type: ignore[attr-defined]
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    redact_exception_logs()
