"""The web page at ``/ui``: the static files of ``serving/ui/`` (plain HTML, CSS and JavaScript, nothing fetched
from elsewhere), served by a small Starlette app that service.py mounts with ``@bentoml.asgi_app(..., path="/ui")``.

The page talks to the service through the same public routes as every client (``/create_voice``, ``/normalize``,
``/synthesize_stream``, the job routes …), addressed relative to the page (``../synthesize_stream``), so it also
works behind a reverse proxy that serves the whole service under a path prefix.

BentoML mounts apps with its ``PassiveMount``: a mounted Starlette app is entered only when one of its own routes
matches, so this app has a catch-all route in both states (switched off it answers the JSON 404 itself).
"""

from __future__ import annotations

from pathlib import Path

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

from serving.errors import error_body

UI_DIR = Path(__file__).resolve().parent / "ui"

# Everything the page loads comes from the service itself; audio it builds (recordings, the streamed answer, the
# MediaSource player) lives in blob: URLs. No inline script or style, so no 'unsafe-inline'.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; media-src 'self' blob:; "
    "connect-src 'self' blob:; object-src 'none'; base-uri 'self'; form-action 'self'; frame-ancestors 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    # The microphone is the page's own business; nothing else may ask for it.
    "Permissions-Policy": "microphone=(self), camera=(), geolocation=()",
    # Revalidate every load (StaticFiles answers 304 from the ETag): an upgraded service shows its new page at once.
    "Cache-Control": "no-cache",
}


class _PageFiles(StaticFiles):
    """StaticFiles (index.html for the folder, ETag/304, ranges) with the page's security and cache headers."""

    async def get_response(self, path: str, scope: Scope) -> Response:
        response = await super().get_response(path, scope)
        response.headers.update(SECURITY_HEADERS)
        return response


def create_ui_app(enabled: bool = True, directory: Path = UI_DIR) -> Starlette:
    """The /ui app. ``enabled=False`` (PTBR_UI_ENABLED=false): every path under /ui answers 404 in the service's
    JSON error shape."""
    if not enabled:
        async def switched_off(request: Request) -> Response:
            return JSONResponse(error_body("ui", "the web page is switched off (PTBR_UI_ENABLED=false)"), 404)

        return Starlette(routes=[Route("/{path:path}", switched_off, methods=["GET", "HEAD", "POST"])])

    files = _PageFiles(directory=str(directory), html=True)
    return Starlette(routes=[Mount("/", app=files)])

