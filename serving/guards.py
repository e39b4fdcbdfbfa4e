"""Readiness state, the JSON error shape, and an ASGI middleware that answers before BentoML does when it can:
``/readyz`` with the reason it is not ready, and uploads whose Content-Length is over the limit (413 before the
body is read)."""

from __future__ import annotations

import json
import threading
from typing import Any, Awaitable, Callable

from serving.errors import error_body

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
# Multipart framing around the file: boundaries, part headers and the other form fields.
UPLOAD_OVERHEAD_BYTES = 64 * 1024


class LoadStatus:
    """loading → ready, or loading → failed (with the reason). Shared by the service and the middleware."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.state = "loading"
        self.error: str | None = None

    def ready(self) -> None:
        with self._lock:
            self.state, self.error = "ready", None

    def fail(self, reason: str) -> None:
        with self._lock:
            self.state, self.error = "failed", reason

    @property
    def is_ready(self) -> bool:
        return self.state == "ready"

    def describe(self) -> str:
        if self.state == "failed":
            return f"model failed to load: {self.error}"
        return "model is loading" if self.state == "loading" else "model is ready"


class RequestGuards:
    # Routes that enforce the upload limit themselves, in their own error shape: /v1 answers OpenAI-shaped errors
    # (serving/openai_api.py refuses the same Content-Length before reading the body).
    own_limit_prefixes: tuple[str, ...] = ("/v1/",)

    def __init__(self, app: Callable[..., Awaitable[None]], status: LoadStatus, max_upload_bytes: int) -> None:
        self.app = app
        self.status = status
        self.max_body_bytes = max_upload_bytes + UPLOAD_OVERHEAD_BYTES

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            if scope["path"] == "/readyz" and not self.status.is_ready:
                await self._send_json(send, 503, {"status": self.status.state, "error": self.status.describe()})
                return
            length = self._content_length(scope)
            if (scope["method"] == "POST" and length is not None and length > self.max_body_bytes
                    and not scope["path"].startswith(self.own_limit_prefixes)):
                body = error_body(
                    "reference_audio",
                    f"request body of {length} bytes is over the {self.max_body_bytes - UPLOAD_OVERHEAD_BYTES}-byte "
                    "upload limit (PTBR_MAX_UPLOAD_BYTES)",
                )
                await self._send_json(send, 413, body)
                return
        await self.app(scope, receive, send)

    @staticmethod
    def _content_length(scope: Scope) -> int | None:
        for name, value in scope.get("headers", []):
            if name == b"content-length":
                try:
                    return int(value)
                except ValueError:
                    return None
        return None

    @staticmethod
    async def _send_json(send: Send, status: int, body: dict[str, Any]) -> None:
        payload = json.dumps(body).encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())]
        if status == 503:
            headers.append((b"retry-after", b"5"))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": payload})
