"""Closes three doors BentoML 1.4.40's request parsing leaves open, by wrapping its multipart/JSON parsers.

1. **Server-side request forgery.** ``MultipartSerde.ensure_file`` downloads any *string* given for a file field
   (``-F reference_audio=http://…``, or the same in an url-encoded form), and ``JSONSerde.parse_request`` downloads a
   body that is a bare URL for root-input file APIs. BentoML's own guard (``make_safe_connect``) blocks private and
   loopback addresses only when uvloop is installed (without it the download crashes with a 500) and lets public
   addresses through. This service never fetches what a request names: a file field must be an uploaded part,
   anything else is a 400 naming the field, before any connection is made.
2. **Malformed multipart bodies** (bad framing, too many parts, an oversized text part) make Starlette raise an
   ``HTTPException(400)`` that BentoML's endpoint wrapper turns into a 500; here they become a 400.
3. **Upload file names reach the filesystem**: BentoML stores an upload as a temporary file whose name ends with the
   client's file name (a 300-character name is a 500: ENAMETOOLONG). Names are reduced to ``upload.<ext>`` (the
   extension only, letters and digits, at most 8) before BentoML sees them.

The wrappers keep BentoML's parsing itself (they call the original methods), so an upgrade changes nothing here
unless the method names change; ``harden_bentoml`` then logs that it could not install and the served tests fail.
"""

from __future__ import annotations

import logging
import re
from typing import Any

log = logging.getLogger("ptbr.engine")
_INSTALLED = False
_SAFE_SUFFIX = re.compile(r"\.([A-Za-z0-9]{1,8})$")
NOT_A_FILE = ("must be an uploaded file (a multipart part with a filename); the service never fetches URLs or reads "
              "paths named in a request")


def validation_error(title: str, field: str, kind: str, message: str) -> Exception:
    """A pydantic ValidationError, which BentoML answers as a 400 in its usual validation shape (field named,
    input never echoed)."""
    from pydantic_core import InitErrorDetails, PydanticCustomError, ValidationError

    detail = InitErrorDetails(type=PydanticCustomError(kind, message), loc=(field,), input="")
    return ValidationError.from_exception_data(title=title, line_errors=[detail])


def safe_upload_name(filename: str | None) -> str:
    match = _SAFE_SUFFIX.search(filename or "")
    return f"upload.{match.group(1).lower()}" if match else "upload"


def harden_bentoml() -> bool:
    """Install the wrappers once per process; True when they are in place."""
    global _INSTALLED
    if _INSTALLED:
        return True
    try:
        from starlette.datastructures import UploadFile
        from starlette.exceptions import HTTPException

        from _bentoml_impl import serde
    except ImportError:  # pragma: no cover - only with another BentoML layout
        log.error("could not install the upload hardening: BentoML's serde module moved")
        return False
    multipart, json_serde = serde.MultipartSerde, serde.JSONSerde
    if not all(hasattr(cls, "parse_request") for cls in (multipart, json_serde)) or not hasattr(multipart, "ensure_file"):
        log.error("could not install the upload hardening: BentoML's parsers changed")  # pragma: no cover
        return False

    original_multipart = multipart.parse_request
    original_json = json_serde.parse_request

    async def parse_multipart(self, request, cls):
        try:
            form = await request.form()  # Starlette caches it: the original parser reads this same form
        except HTTPException as exc:
            raise validation_error(cls.__name__, "body", "multipart", f"malformed multipart or form body: {exc.detail}")
        file_fields = set(getattr(cls, "multipart_fields", ()))
        for key, value in form.multi_items():
            if key in file_fields and not isinstance(value, UploadFile):
                raise validation_error(cls.__name__, key, "file_expected", NOT_A_FILE)
            if isinstance(value, UploadFile):
                value.filename = safe_upload_name(value.filename)
        return await original_multipart(self, request, cls)

    async def parse_json(self, request, cls):
        from _bentoml_sdk.io_models import IORootModel

        if issubclass(cls, IORootModel) and getattr(cls, "multipart_fields", None):
            body = await request.body()  # cached by Starlette for the original parser
            if body.strip().lower().startswith((b"http://", b"https://", b'"http://', b'"https://')):
                raise validation_error(cls.__name__, cls.multipart_fields[0], "file_expected", NOT_A_FILE)
        return await original_json(self, request, cls)

    async def ensure_file(obj: Any):
        # Reached only if BentoML grows another path to it: refuse rather than download.
        if isinstance(obj, UploadFile):
            return obj
        raise validation_error("upload", "file", "file_expected", NOT_A_FILE)

    multipart.parse_request = parse_multipart
    json_serde.parse_request = parse_json
    multipart.ensure_file = staticmethod(ensure_file)
    _INSTALLED = True
    return True
