"""Optional API keys: ``PTBR_API_KEYS`` (comma-separated) and/or ``PTBR_API_KEYS_FILE`` (one key per line).

With no key configured every route is open, as before. With keys, every route but the probes (and, by their
settings, ``/metrics``, the OpenAI listings and the web page's own files under ``/ui``) needs
``Authorization: Bearer <key>`` (README, Operations). The check is constant-time: the presented key's SHA-256 is
compared with every configured key's SHA-256 by ``hmac.compare_digest``, all of them every time, so neither the
position of a match nor a common prefix shows in the timing. Keys are never logged or echoed.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import threading
from pathlib import Path

log = logging.getLogger("ptbr.engine")

# Probes stay open: an orchestrator has no key. /healthz is BentoML's alias of /livez.
PROBE_PATHS = frozenset({"/livez", "/healthz", "/readyz"})
# OpenAI listing routes Open WebUI calls without an Authorization header (open while PTBR_OPEN_LISTING is true).
LISTING_PATHS = frozenset({"/v1/models", "/v1/audio/models", "/v1/audio/voices"})
METRICS_PATH = "/metrics"
# The web page's static files (serving/ui_app.py): open with keys on unless PTBR_UI_REQUIRE_KEY, so a browser can
# load the page and the user type the key that its API calls then send.
UI_PREFIX = "/ui"


def parse_keys(text: str, *, separator: str | None = None) -> list[str]:
    """Keys from a comma-separated setting (``separator=","``) or a file's lines; blanks and ``#`` lines skipped."""
    pieces = text.split(separator) if separator else text.splitlines()
    keys = []
    for piece in pieces:
        key = piece.strip()
        if not key or (separator is None and key.startswith("#")):
            continue
        if any(character.isspace() for character in key):
            raise ValueError("an API key must not contain whitespace")
        keys.append(key)
    return keys


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode("utf-8")).digest()


class ApiKeys:
    """The configured keys (as digests), re-reading the keys file whenever its modification time or size
    changes, so keys rotate without a restart. A keys file that cannot be read at start stops the service; one that
    disappears later keeps the last keys read (and says so in the log) rather than opening the service."""

    def __init__(self, keys: str = "", keys_file: Path | None = None) -> None:
        self._fixed = [_digest(key) for key in parse_keys(keys, separator=",")]
        self._file = Path(keys_file) if keys_file else None
        self._from_file: list[bytes] = []
        self._stamp: tuple[float, int] | None = None
        self._lock = threading.Lock()
        if self._file is not None:
            self._reload(strict=True)

    @classmethod
    def from_settings(cls, settings) -> ApiKeys:
        return cls(settings.api_keys.get_secret_value(), settings.api_keys_file)

    @property
    def enabled(self) -> bool:
        return bool(self._fixed) or self._file is not None

    def _reload(self, strict: bool = False) -> None:
        assert self._file is not None
        try:
            info = self._file.stat()
            stamp = (info.st_mtime, info.st_size)
            if stamp == self._stamp:
                return
            keys = parse_keys(self._file.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            if strict:
                raise RuntimeError(f"PTBR_API_KEYS_FILE: cannot read keys from {self._file}: {type(exc).__name__}") from None
            log.warning("PTBR_API_KEYS_FILE unreadable (%s); keeping the %d keys read before",
                        type(exc).__name__, len(self._from_file))
            return
        with self._lock:
            self._from_file, self._stamp = [_digest(key) for key in keys], stamp

    def current(self) -> list[bytes]:
        if self._file is not None:
            self._reload()
        with self._lock:
            return self._fixed + self._from_file

    def accepts(self, authorization: bytes | None) -> bool:
        """True when ``authorization`` (the raw header value) is ``Bearer <one of the keys>``."""
        presented = bearer_token(authorization)
        candidate = _digest(presented if presented is not None else "")
        matched = False
        for key in self.current():  # every key, every time: no early exit
            matched |= hmac.compare_digest(candidate, key)
        return matched and presented is not None


def bearer_token(authorization: bytes | None) -> str | None:
    if not authorization:
        return None
    try:
        scheme, _, token = authorization.decode("latin-1").strip().partition(" ")
    except UnicodeDecodeError:  # pragma: no cover - latin-1 decodes every byte
        return None
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        return None
    return token


def needs_key(method: str, path: str, *, open_listing: bool, metrics_require_key: bool,
              ui_require_key: bool = False) -> bool:
    """Whether a request must carry a key once keys are configured."""
    if path in PROBE_PATHS:
        return False
    if method == "OPTIONS":  # CORS preflight: browsers never send credentials with it; it reaches no route
        return False
    if path == METRICS_PATH:
        return metrics_require_key
    if open_listing and method in ("GET", "HEAD") and path.rstrip("/") in LISTING_PATHS:
        return False
    if not ui_require_key and method in ("GET", "HEAD") and is_ui_path(path):
        return False
    return True


def is_ui_path(path: str) -> bool:
    """``/ui`` or a path inside it, with no ``.``/``..`` segment or empty segment that could lead a router out of it."""
    if path != UI_PREFIX and not path.startswith(UI_PREFIX + "/"):
        return False
    inner = path[len(UI_PREFIX) + 1:].split("/")
    return all(segment not in (".", "..") for segment in inner) and "//" not in path and "\\" not in path
