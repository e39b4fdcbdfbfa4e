"""Readiness state, and the ASGI middleware that answers before any route does when it can.

``RequestGuards`` sits inside BentoML's access log, metrics and concurrency limit and outside every route, mounted
ASGI apps (``/v1``, jobs, ``/ui``) included. In order, it answers:

1. ``/readyz`` with the reason the model is not ready (503);
2. 401 without ``Authorization: Bearer <key>`` when API keys are set (serving/auth.py: probes, and optionally
   ``/metrics``, the OpenAI listing routes and the web page's static files under ``/ui``, stay open);
3. 400 for a multipart request whose Content-Type has no boundary (Starlette would raise, BentoML answer 500);
4. 413 for a body over its limit: multipart uploads ``PTBR_MAX_UPLOAD_BYTES`` (plus the form's framing), anything
   else ``PTBR_MAX_JSON_BYTES``. From Content-Length before the body is read; without one (chunked uploads) the
   bytes are counted as they arrive and the request is refused the moment the count passes the limit, before any
   route sees it (what was read, at most the limit, is then handed to the route).

A WebSocket without a valid key (keys on) is closed with code 1008 before any route sees it.
Errors under ``/v1`` are OpenAI-shaped (``{"error": {"message", "type", "param", "code"}}``), elsewhere the service's
own shape (serving/errors.py). Nothing here logs a header or a body.
"""

from __future__ import annotations

import json
import threading
from typing import Any, Awaitable, Callable

from serving.auth import ApiKeys, needs_key
from serving.errors import error_body
from serving.workers import WorkerRoll

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
# Multipart framing around the file: boundaries, part headers and the other form fields.
UPLOAD_OVERHEAD_BYTES = 64 * 1024
OPENAI_PREFIX = "/v1"
# The file field each multipart route is about, named in its 413 (the guard sees the body's size, not its parts):
# the dubbing route's subtitle file, the OpenAI voice upload's audio_sample; elsewhere the reference audio.
UPLOAD_FIELDS: dict[str, str] = {"/dub_subtitles/submit": "subtitles", "/v1/audio/voices": "audio_sample"}
DEFAULT_UPLOAD_FIELD = "reference_audio"
BODY_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


class LoadStatus:
    """loading → ready, or loading → failed (with the reason). Shared by the service and the middleware."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.state = "loading"
        self.error: str | None = None
        self.roll: WorkerRoll | None = None  # the other workers of this server (PTBR_GPU_WORKERS > 1)

    def ready(self) -> None:
        with self._lock:
            self.state, self.error = "ready", None
        if self.roll is not None:
            self.roll.mark_ready()

    def fail(self, reason: str) -> None:
        with self._lock:
            self.state, self.error = "failed", reason

    @property
    def is_ready(self) -> bool:
        return self.state == "ready"

    @property
    def server_ready(self) -> bool:
        """This worker and every other worker of the server are ready (what /readyz reports)."""
        return self.is_ready and not (self.roll is not None and self.roll.not_ready())

    def describe(self) -> str:
        if self.state == "failed":
            return f"model failed to load: {self.error}"
        if self.state == "loading":
            return "model is loading"
        waiting = self.roll.not_ready() if self.roll is not None else []
        if waiting:
            return f"worker(s) {', '.join(map(str, waiting))} of {self.roll.workers} not ready (loading or restarting)"
        return "model is ready"


class RequestGuards:
    def __init__(self, app: Callable[..., Awaitable[None]], status: LoadStatus, settings: Any,
                 keys: ApiKeys | None = None) -> None:
        self.app = app
        self.status = status
        self.max_upload_bytes = settings.max_upload_bytes
        self.max_multipart_body = settings.max_upload_bytes + UPLOAD_OVERHEAD_BYTES
        self.max_other_body = settings.max_json_bytes
        self.keys = keys if keys is not None else ApiKeys.from_settings(settings)
        self.open_listing = settings.open_listing
        self.metrics_require_key = settings.metrics_require_key
        self.ui_require_key = settings.ui_require_key

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket" and self.keys.enabled and not self.keys.accepts(header(scope, b"authorization")):
            await send({"type": "websocket.close", "code": 1008})  # policy violation: no route sees it either
            return
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path, method = scope["path"], scope["method"]
        if path == "/readyz" and not self.status.server_ready:
            state = self.status.state if self.status.state != "ready" else "loading"  # another worker is not ready
            await send_json(send, 503, {"status": state, "error": self.status.describe()},
                            [(b"retry-after", b"5")])
            return
        if self.keys.enabled and needs_key(method, path, open_listing=self.open_listing,
                                           metrics_require_key=self.metrics_require_key,
                                           ui_require_key=self.ui_require_key):
            if not self.keys.accepts(header(scope, b"authorization")):
                await refuse(send, path, 401, "authorization", "missing or invalid API key: send the header "
                             "`Authorization: Bearer <key>`", code="invalid_api_key",
                             headers=[(b"www-authenticate", b'Bearer realm="f5tts-ptbr"')])
                return
        multipart = is_multipart(header(scope, b"content-type"))
        if multipart is False:  # multipart/form-data without a usable boundary
            await refuse(send, path, 400, "content-type", "multipart/form-data needs a boundary parameter, e.g. "
                         "`multipart/form-data; boundary=x1y2z3` (let the HTTP client build multipart bodies)")
            return
        limit = self.max_multipart_body if multipart else self.max_other_body
        length = content_length(scope)
        if length is not None and length > limit:
            await self._too_large(send, path, bool(multipart), f"request body of {length} bytes")
            return
        if length is None and method in BODY_METHODS:
            counted = await read_counted(receive, limit)
            if counted is None:  # the client went away while sending
                return
            if counted is False:
                await self._too_large(send, path, bool(multipart), "request body (sent without Content-Length)")
                return
            receive = replay(counted, receive)
        await self.app(scope, receive, send)

    async def _too_large(self, send: Send, path: str, multipart: bool, what: str) -> None:
        if multipart:
            field = UPLOAD_FIELDS.get(path, DEFAULT_UPLOAD_FIELD)
            message = (f"{what} is over the {self.max_upload_bytes}-byte upload limit (PTBR_MAX_UPLOAD_BYTES, plus "
                       f"{UPLOAD_OVERHEAD_BYTES} bytes for the form)")
        else:
            field = "body"
            message = f"{what} is over the {self.max_other_body}-byte limit for requests without a file (PTBR_MAX_JSON_BYTES)"
        await refuse(send, path, 413, field, message, code="request_too_large")


def header(scope: Scope, name: bytes) -> bytes | None:
    for key, value in scope.get("headers", []):
        if key == name:
            return value
    return None


def content_length(scope: Scope) -> int | None:
    value = header(scope, b"content-length")
    if value is None:
        return None
    try:
        return int(value)
    except ValueError:  # the HTTP server refuses these before us; never trust it here either
        return None


def is_multipart(content_type: bytes | None) -> bool | None:
    """True: multipart/form-data with a boundary; False: multipart/form-data without one; None: not multipart."""
    if not content_type:
        return None
    main, _, params = content_type.decode("latin-1").partition(";")
    if main.strip().lower() != "multipart/form-data":
        return None
    for param in params.split(";"):
        name, _, value = param.partition("=")
        if name.strip().lower() == "boundary" and value.strip().strip('"'):
            return True
    return False


async def read_counted(receive: Receive, limit: int) -> bytes | bool | None:
    """The whole body, counting as it arrives: False as soon as it passes ``limit`` (the rest is never read),
    None when the client disconnected."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        body = message.get("body", b"")
        size += len(body)
        if size > limit:
            return False
        chunks.append(body)
        if not message.get("more_body", False):
            return b"".join(chunks)


def replay(body: bytes, receive: Receive) -> Receive:
    """A receive that hands the body read already to the app, then waits on the client (disconnects)."""
    pending = [{"type": "http.request", "body": body, "more_body": False}]

    async def replayed() -> dict[str, Any]:
        if pending:
            return pending.pop()
        return await receive()

    return replayed


def openai_error(message: str, status: int, param: str | None, code: str | None) -> dict[str, Any]:
    # OpenAI answers a bad key with type invalid_request_error, code invalid_api_key; its SDK maps the status.
    return {"error": {"message": message, "type": "invalid_request_error", "param": param, "code": code}}


async def refuse(send: Send, path: str, status: int, field: str, message: str, *, code: str | None = None,
                 headers: list[tuple[bytes, bytes]] | None = None) -> None:
    """An error in the shape of the route family: OpenAI's under /v1, the service's own elsewhere."""
    if path == OPENAI_PREFIX or path.startswith(OPENAI_PREFIX + "/"):
        param = None if field in ("authorization", "body", "content-type") else field
        body = openai_error(f"{field}: {message}", status, param, code)
    else:
        body = error_body(field, message)
    await send_json(send, status, body, headers)


async def send_json(send: Send, status: int, body: dict[str, Any],
                    headers: list[tuple[bytes, bytes]] | None = None) -> None:
    payload = json.dumps(body).encode()
    all_headers = [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode()),
                   *(headers or [])]
    await send({"type": "http.response.start", "status": status, "headers": all_headers})
    await send({"type": "http.response.body", "body": payload})
