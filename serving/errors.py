"""Every error the service answers, in one JSON shape naming the field and the limit, and the mapping from the
exceptions of ptbr_model (audio, text, voices, device) and the device queue to HTTP statuses."""

from __future__ import annotations

import logging
from typing import Any

from starlette.responses import JSONResponse

log = logging.getLogger("ptbr.engine")


class ApiError(Exception):
    """A request the service refuses: status, the field at fault, and a message that states the limit."""

    def __init__(self, status: int, field: str, message: str, retry_after: int | None = None) -> None:
        super().__init__(f"{field}: {message}")
        self.status = status
        self.field = field
        self.message = message
        self.retry_after = retry_after


def error_body(field: str, message: str) -> dict[str, Any]:
    """One shape for every error the service makes itself, close to BentoML's own validation errors."""
    return {"error": f"{field}: {message}", "detail": [{"loc": [field], "msg": message}]}


def error_response(status: int, field: str, message: str, retry_after: int | None = None) -> JSONResponse:
    headers = {"Retry-After": str(retry_after)} if retry_after is not None else None
    return JSONResponse(error_body(field, message), status_code=status, headers=headers)


def as_api_error(exc: BaseException, *, oom_retry_after: int = 5, queue_retry_after: int = 2) -> ApiError:
    """The ApiError a request gets for ``exc``; unexpected exceptions are logged and become a 500."""
    from ptbr_model.audio import AudioError
    from ptbr_model.durable import storage_full
    from ptbr_model.engine import DeviceOutOfMemory, NothingToSay, TooLongForModel
    from ptbr_model.voices import VoiceError

    from serving.device_queue import QueueFull, QueueTimeout

    if isinstance(exc, ApiError):
        return exc
    if isinstance(exc, AudioError):
        return ApiError(400, exc.field, exc.problem)
    if isinstance(exc, (NothingToSay, TooLongForModel)):
        return ApiError(400, exc.field, str(exc))
    if isinstance(exc, VoiceError):  # 404 unknown voice, 409 name taken, 400 bad name / limit reached
        return ApiError(exc.status_code, exc.field, exc.problem)
    if isinstance(exc, QueueFull):
        return ApiError(429, "device", str(exc), retry_after=queue_retry_after)
    if isinstance(exc, QueueTimeout):
        return ApiError(503, "device", str(exc), retry_after=queue_retry_after)
    if isinstance(exc, DeviceOutOfMemory):
        return ApiError(503, "device", f"out of device memory, try again shortly or send shorter text ({exc})",
                        retry_after=oom_retry_after)
    if storage_full(exc):  # ENOSPC or EDQUOT, also when wrapped (raise … from): the stores remove what they began
        return ApiError(507, "storage", "the data directory is full; nothing was stored (free space on PTBR_DATA_DIR)")
    log.error("request failed", exc_info=exc)
    return ApiError(500, "server", f"request failed: {type(exc).__name__}")


def api_error_response(error: ApiError) -> JSONResponse:
    return error_response(error.status, error.field, error.message, error.retry_after)
