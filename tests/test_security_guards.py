"""The request guard in-process (no server): API keys, body limits, multipart framing, log redaction, upload names.
The same guard in front of a real `bentoml serve` is tested in test_security_served.py."""

from __future__ import annotations

import asyncio
import hmac
import io
import logging

import httpx
import pytest

from ptbr_model.settings import Settings
from serving import auth
from serving.auth import ApiKeys, needs_key
from serving.guards import LoadStatus, RequestGuards, is_multipart
from serving.hardening import safe_upload_name
from serving.request_log import RedactExceptionDetails

KEYS = ("k-first-0123456789", "k-second-abcdefghij", "k-third-ABCDEFGHIJ")


class Recorder:
    """The app behind the guard: records what reached it and answers 200."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, bytes]] = []

    async def __call__(self, scope, receive, send) -> None:
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        self.calls.append((scope["path"], body))
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
        await send({"type": "http.response.body", "body": b"ok"})


def guarded(**settings) -> tuple[RequestGuards, Recorder]:
    status = LoadStatus()
    status.ready()
    inner = Recorder()
    defaults = {"max_upload_bytes": 4096, "max_json_bytes": 2048}
    return RequestGuards(inner, status, Settings(**{**defaults, **settings})), inner


def call(app, method: str, path: str, **kwargs) -> httpx.Response:
    async def go() -> httpx.Response:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as client:
            return await client.request(method, path, **kwargs)

    return asyncio.run(go())


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


# --- API keys -----------------------------------------------------------------------------------------------------------

def test_without_keys_every_route_is_open():
    app, inner = guarded()
    for path in ("/synthesize", "/metrics", "/docs.json", "/v1/audio/speech"):
        assert call(app, "POST", path, json={}).status_code == 200
    assert len(inner.calls) == 4


@pytest.mark.parametrize("headers", [{}, bearer("wrong-key-000000000"), {"Authorization": f"Basic {KEYS[0]}"},
                                     {"Authorization": "Bearer "}, {"Authorization": KEYS[0]},
                                     bearer(KEYS[0] + "x"), bearer(KEYS[0][:-1])])
def test_a_missing_or_wrong_key_is_a_401_and_reaches_no_route(headers):
    app, inner = guarded(api_keys=",".join(KEYS))
    response = call(app, "POST", "/synthesize", json={"text": "olá"}, headers=headers)
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Bearer")
    body = response.json()
    assert body["error"].startswith("authorization: ") and "Bearer" in body["error"]
    assert KEYS[0] not in response.text
    assert inner.calls == []


def test_every_configured_key_opens_every_route():
    app, inner = guarded(api_keys=f" {KEYS[0]} ,{KEYS[1]},,{KEYS[2]} ")
    for key in KEYS:
        for path in ("/synthesize", "/list_voices", "/docs.json", "/", "/v1/audio/speech"):
            assert call(app, "POST", path, json={}, headers=bearer(key)).status_code == 200, (key, path)
    assert call(app, "POST", "/synthesize", headers={"Authorization": f"bearer   {KEYS[1]}"}).status_code == 200


def test_probes_stay_open_and_metrics_and_listings_follow_their_settings():
    app, _ = guarded(api_keys=KEYS[0])
    for path in ("/livez", "/healthz", "/readyz", "/metrics", "/v1/models", "/v1/audio/models", "/v1/audio/voices"):
        assert call(app, "GET", path).status_code == 200, path
    assert call(app, "POST", "/v1/models").status_code == 401  # only reading the listings is open
    assert call(app, "GET", "/v1/models/tts-1/extra").status_code == 401
    assert call(app, "GET", "/livez/../synthesize").status_code == 401  # dot segments never reach an open path
    closed, _ = guarded(api_keys=KEYS[0], open_listing=False, metrics_require_key=True)
    for path in ("/metrics", "/v1/models", "/v1/audio/voices"):
        assert call(closed, "GET", path).status_code == 401, path
        assert call(closed, "GET", path, headers=bearer(KEYS[0])).status_code == 200, path
    for path in ("/livez", "/readyz"):
        assert call(closed, "GET", path).status_code == 200


def test_the_401_under_v1_has_openais_error_shape():
    app, _ = guarded(api_keys=KEYS[0])
    body = call(app, "POST", "/v1/audio/speech", json={"input": "olá"}).json()
    assert set(body) == {"error"} and set(body["error"]) == {"message", "type", "param", "code"}
    assert body["error"]["code"] == "invalid_api_key" and body["error"]["type"] == "invalid_request_error"
    assert body["error"]["param"] is None
    assert "detail" in call(app, "POST", "/synthesize").json()  # the service's own shape elsewhere


def test_keys_are_compared_in_constant_time_against_every_key(monkeypatch):
    compared: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def spy(a, b):
        compared.append((a, b))
        return real(a, b)

    monkeypatch.setattr(auth.hmac, "compare_digest", spy)
    keys = ApiKeys(",".join(KEYS))
    for presented in (KEYS[0], KEYS[2], "nope", None):
        compared.clear()
        header = f"Bearer {presented}".encode() if presented else None
        assert keys.accepts(header) is (presented in KEYS)
        assert len(compared) == len(KEYS), "stopped early: the timing would tell which key matched"
        assert all(len(a) == len(b) == 32 for a, b in compared)  # digests: equal lengths, no length leak


def test_keys_file_is_read_and_rotates_without_a_restart(tmp_path):
    path = tmp_path / "keys"
    path.write_text(f"# team A\n{KEYS[0]}\n\n  {KEYS[1]}  \n", encoding="utf-8")
    app, _ = guarded(api_keys_file=str(path))
    assert call(app, "POST", "/synthesize", headers=bearer(KEYS[1])).status_code == 200
    assert call(app, "POST", "/synthesize", headers=bearer("# team A")).status_code == 401
    path.write_text(f"{KEYS[2]}\n", encoding="utf-8")  # rotate: a new size is seen even within the same mtime tick
    assert call(app, "POST", "/synthesize", headers=bearer(KEYS[1])).status_code == 401
    assert call(app, "POST", "/synthesize", headers=bearer(KEYS[2])).status_code == 200
    path.unlink()  # unreadable later: keep the last keys, never fall open
    assert call(app, "POST", "/synthesize").status_code == 401
    assert call(app, "POST", "/synthesize", headers=bearer(KEYS[2])).status_code == 200


def test_an_unreadable_keys_file_stops_the_service_at_start(tmp_path):
    with pytest.raises(RuntimeError, match="PTBR_API_KEYS_FILE"):
        ApiKeys("", tmp_path / "missing")
    (tmp_path / "bad").write_text("two words\n")
    with pytest.raises(RuntimeError, match="PTBR_API_KEYS_FILE"):
        ApiKeys("", tmp_path / "bad")


def test_keys_never_show_in_the_settings_repr_or_dump():
    settings = Settings(api_keys=",".join(KEYS))
    for text in (repr(settings), str(settings), settings.model_dump_json()):
        assert not any(key in text for key in KEYS)
    assert ApiKeys.from_settings(settings).accepts(f"Bearer {KEYS[1]}".encode())


def test_a_websocket_without_a_key_is_closed_before_any_route():
    app, inner = guarded(api_keys=KEYS[0])
    sent: list[dict] = []

    async def receive():
        return {"type": "websocket.connect"}

    async def send(message):
        sent.append(message)

    scope = {"type": "websocket", "path": "/v1/realtime", "headers": []}
    asyncio.run(app(scope, receive, send))
    assert sent == [{"type": "websocket.close", "code": 1008}] and inner.calls == []


@pytest.mark.parametrize("method,path,expected", [
    ("GET", "/livez", False), ("GET", "/readyz", False), ("GET", "/healthz", False), ("POST", "/livez", False),
    ("GET", "/metrics", False), ("OPTIONS", "/synthesize", False), ("GET", "/v1/models", False),
    ("GET", "/v1/models/", False), ("HEAD", "/v1/audio/voices", False), ("POST", "/v1/audio/voices", True),
    ("GET", "/livez/x", True), ("GET", "/", True), ("GET", "/docs.json", True), ("POST", "/synthesize", True),
    ("GET", "/synthesize_long/status", True),
    # the web page's files: open to GET/HEAD (PTBR_UI_REQUIRE_KEY off), never a way out of /ui
    ("GET", "/ui", False), ("GET", "/ui/", False), ("GET", "/ui/app.js", False), ("HEAD", "/ui/style.css", False),
    ("POST", "/ui", True), ("PUT", "/ui/x", True), ("GET", "/uix", True), ("GET", "/ui/../list_voices", True),
    ("GET", "/ui/./app.js", True), ("GET", "/ui//etc", True), ("GET", "/ui/..", True), ("GET", "/ui\\..", True),
])
def test_which_routes_need_a_key(method, path, expected):
    assert needs_key(method, path, open_listing=True, metrics_require_key=False) is expected


def test_the_web_page_can_be_locked_too():
    assert needs_key("GET", "/ui/app.js", open_listing=True, metrics_require_key=False, ui_require_key=True)
    app, inner = guarded(api_keys=KEYS[0], ui_require_key=True)
    assert call(app, "GET", "/ui/").status_code == 401
    app, inner = guarded(api_keys=KEYS[0])
    assert call(app, "GET", "/ui/").status_code == 200 and call(app, "POST", "/ui/").status_code == 401
    assert [path for path, _ in inner.calls] == ["/ui/"]


# --- body limits and framing --------------------------------------------------------------------------------------------

def test_content_length_over_the_limit_is_a_413_before_the_body_is_read():
    app, inner = guarded()
    response = call(app, "POST", "/normalize", content=b"x" * 2049, headers={"content-type": "application/json"})
    assert response.status_code == 413 and "PTBR_MAX_JSON_BYTES" in response.json()["error"]
    assert response.json()["error"].startswith("body: ")
    files = {"reference_audio": ("r.wav", b"x" * (4096 + 64 * 1024 + 1))}
    response = call(app, "POST", "/synthesize", files=files)
    assert response.status_code == 413
    assert response.json()["error"].startswith("reference_audio: ") and "PTBR_MAX_UPLOAD_BYTES" in response.text
    assert inner.calls == []
    assert call(app, "POST", "/synthesize", files={"reference_audio": ("r.wav", b"x" * 4096)}).status_code == 200


@pytest.mark.parametrize("path,field", [("/dub_subtitles/submit", "subtitles"), ("/synthesize_long/submit",
                                                                              "reference_audio")])
def test_a_413_names_the_file_field_of_its_route(path, field):
    app, inner = guarded()
    response = call(app, "POST", path, files={field: ("f.bin", b"x" * (4096 + 64 * 1024 + 1))})
    assert response.status_code == 413 and response.json()["error"].startswith(f"{field}: ")
    assert response.json()["detail"][0]["loc"] == [field] and inner.calls == []
    response = call(app, "POST", "/v1/audio/voices", files={"audio_sample": ("a.wav", b"x" * (4096 + 64 * 1024 + 1))})
    assert response.status_code == 413 and response.json()["error"]["param"] == "audio_sample"


def test_413_under_v1_is_openai_shaped():
    app, _ = guarded()
    body = call(app, "POST", "/v1/audio/speech", content=b"{" * 3000, headers={"content-type": "application/json"}).json()
    assert body["error"]["code"] == "request_too_large" and "PTBR_MAX_JSON_BYTES" in body["error"]["message"]


class Chunks:
    """A chunked request body (no Content-Length) that counts how much of it was pulled."""

    def __init__(self, pieces: int, size: int) -> None:
        self.pieces, self.size, self.pulled = pieces, size, 0

    async def __aiter__(self):
        for _ in range(self.pieces):
            self.pulled += 1
            yield b"y" * self.size


@pytest.mark.parametrize("content_type,limit", [("application/json", 2048),
                                                ("multipart/form-data; boundary=abc", 4096 + 64 * 1024)])
def test_chunked_bodies_are_counted_as_they_arrive_and_refused_at_the_limit(content_type, limit):
    app, inner = guarded()
    body = Chunks(pieces=1000, size=1024)
    response = call(app, "POST", "/synthesize", content=body, headers={"content-type": content_type})
    assert "content-length" not in response.request.headers
    assert response.status_code == 413, response.text
    assert "without Content-Length" in response.json()["error"]
    assert body.pulled == limit // 1024 + 1, "the guard read past the limit"
    assert inner.calls == []


def test_a_chunked_body_under_the_limit_reaches_the_route_whole():
    app, inner = guarded()
    response = call(app, "POST", "/normalize", content=Chunks(pieces=2, size=1000),
                    headers={"content-type": "application/json"})
    assert response.status_code == 200
    assert inner.calls == [("/normalize", b"y" * 2000)]


@pytest.mark.parametrize("content_type,expected", [
    (b"multipart/form-data; boundary=abc", True), (b'Multipart/Form-Data; charset=utf-8; BOUNDARY="a b"', True),
    (b"multipart/form-data", False), (b"multipart/form-data; boundary=", False), (b'multipart/form-data; boundary=""', False),
    (b"application/json", None), (None, None), (b"multipart/mixed", None),
])
def test_multipart_detection(content_type, expected):
    assert is_multipart(content_type) is expected


def test_multipart_without_a_boundary_is_a_400_naming_the_problem():
    app, inner = guarded()
    response = call(app, "POST", "/synthesize", content=b"abc", headers={"content-type": "multipart/form-data"})
    assert response.status_code == 400
    assert response.json()["error"].startswith("content-type: ") and "boundary" in response.text
    assert inner.calls == []


def test_readyz_explains_why_it_is_not_ready():
    inner = Recorder()
    status = LoadStatus()
    app = RequestGuards(inner, status, Settings())
    response = call(app, "GET", "/readyz")
    assert response.status_code == 503 and response.json()["status"] == "loading"
    status.fail("OSError: disk")
    assert "OSError: disk" in call(app, "GET", "/readyz").json()["error"]


# --- logs and names -----------------------------------------------------------------------------------------------------

def test_exception_logs_keep_types_and_fields_but_never_values():
    from pydantic import BaseModel

    class Input(BaseModel):
        text: str
        nfe_step: int

    secret = "SEGREDO-no-log-4321"
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(RedactExceptionDetails())
    logger = logging.getLogger("test.redaction")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        try:
            try:
                Input.model_validate({"text": 5, "nfe_step": secret})
            except Exception as inner:
                raise RuntimeError(f"wrapped {secret}") from inner
        except RuntimeError:
            logger.exception("Exception on %s [%s]", "/synthesize", "POST")
    finally:
        logger.removeHandler(handler)
    output = stream.getvalue()
    assert secret not in output
    assert "Exception on /synthesize [POST]" in output
    assert "RuntimeError" in output and "ValidationError (nfe_step:int_parsing, text:string_type)" in output
    assert "test_security_guards.py" in output  # where it was raised stays


@pytest.mark.parametrize("name,expected", [
    ("voz.wav", "upload.wav"), ("../../etc/passwd", "upload"), ("a" * 300 + ".FLAC", "upload.flac"),
    ("x.tar.gz", "upload.gz"), ("évian.m4a", "upload.m4a"), (None, "upload"), ("nul\x00.wav", "upload.wav"),
    ("song.mp3/", "upload"), ("clip.verylongext", "upload"), (".bashrc", "upload.bashrc"),
])
def test_upload_names_are_reduced_to_a_safe_extension(name, expected):
    assert safe_upload_name(name) == expected


def test_guards_share_no_state():
    # Two guards with different settings in one process (tests, several services) do not see each other's keys.
    first, _ = guarded(api_keys=KEYS[0])
    second, _ = guarded()
    assert call(first, "POST", "/synthesize").status_code == 401
    assert call(second, "POST", "/synthesize").status_code == 200


def test_path_parameters_never_reach_the_log():
    from serving.request_log import RedactPathParameters

    record = logging.LogRecord("bentoml.access", logging.INFO, __file__, 1, "%s (%s) (%s) %.3fms",
                               ("127.0.0.1:1", "scheme=http,method=DELETE,path=/v1/audio/voices/Ana Maria,type=",
                                "status=200", 1.0), None)
    assert RedactPathParameters().filter(record)
    assert record.getMessage() == "127.0.0.1:1 (scheme=http,method=DELETE,path=/v1/audio/voices/{id}) " \
        "(status=200) 1.000ms"
    odd = logging.LogRecord("bentoml.access", logging.INFO, __file__, 1, "%s (%s)",
                            ("a", "scheme=http,method=GET,path=/v1/models/x,type=y (z),length=1"), None)
    RedactPathParameters().filter(odd)
    assert odd.getMessage() == "a (scheme=http,method=GET,path=/v1/models/{id})"  # nothing of the value is left
    record = logging.LogRecord("bentoml.access", logging.INFO, __file__, 1, "%s (scheme=%s,path=%s) - Client connected",
                               ("127.0.0.1:1", "http", "/v1/models/segredo"), None)
    RedactPathParameters().filter(record)
    assert record.getMessage() == "127.0.0.1:1 (scheme=http,path=/v1/models/{id}) - Client connected"
    untouched = logging.LogRecord("bentoml.access", logging.INFO, __file__, 1, "path=%s", ("/v1/audio/voices",), None)
    RedactPathParameters().filter(untouched)
    assert untouched.getMessage() == "path=/v1/audio/voices" and untouched.args == ("/v1/audio/voices",)
