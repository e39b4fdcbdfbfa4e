"""Security of the real service (`bentoml serve` of the demo model, with API keys on): keys lock every route but the
probes, bodies over their limit are refused before being read (chunked too), no field fetches a URL, malformed
forms are a 400, and the log never holds request text, file names or keys."""

from __future__ import annotations

import json
import socket
import threading
import time
from pathlib import Path

import httpx
import pytest

from hardened import FILE_KEY, KEYS, MAX_JSON, MAX_UPLOAD
from serving.auth import LISTING_PATHS
from signals import voice_like, wav_bytes

pytestmark = pytest.mark.served

REFERENCE_TEXT = "Esta é a voz de referência para o teste."
PROBES = {"/livez", "/readyz", "/healthz"}


@pytest.fixture(scope="module")
def service(hardened_service):
    return hardened_service  # tests/hardened.py: keys on, small limits


@pytest.fixture(scope="module")
def reference() -> bytes:
    return wav_bytes(voice_like(3.0))


def auth(key: str = KEYS[0]) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def routes(service) -> dict[str, str]:
    schema = httpx.get(f"{service.url}/docs.json", headers=auth(), timeout=10).json()
    return {path: next(iter(methods)).upper() for path, methods in schema["paths"].items()}


def test_every_route_but_the_probes_needs_a_key(service):
    found = routes(service)
    assert {"/synthesize", "/synthesize_stream", "/create_voice", "/list_voices", "/normalize"} <= set(found)
    for path in [*found, "/docs.json", "/docs", "/", "/v1/audio/speech", "/synthesize_long/submit"]:
        method = found.get(path, "POST" if path.startswith(("/v1", "/synth")) else "GET")
        refused = httpx.request(method, service.url + path, json={} if method == "POST" else None, timeout=10)
        open_listing = method == "GET" and path in LISTING_PATHS  # PTBR_OPEN_LISTING is on by default
        if path in PROBES or path == "/metrics" or open_listing:  # /metrics: PTBR_METRICS_REQUIRE_KEY is off
            assert refused.status_code == 200, (path, refused.text)
            continue
        assert refused.status_code == 401, (path, refused.status_code)
        assert refused.headers["content-type"] == "application/json"
        for key in (*KEYS, FILE_KEY):
            allowed = httpx.request(method, service.url + path, json={} if method == "POST" else None,
                                    headers=auth(key), timeout=10)
            assert allowed.status_code != 401, (path, key[:7])


def test_401_under_v1_is_openai_shaped_and_listings_stay_open(service):
    refused = httpx.post(f"{service.url}/v1/audio/speech", json={"input": "olá", "voice": "alloy"}, timeout=10)
    assert refused.status_code == 401
    error = refused.json()["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["code"] == "invalid_api_key"
    for path in ("/v1/models", "/v1/audio/voices"):  # open (PTBR_OPEN_LISTING); 404 until the /v1 app is mounted
        assert httpx.get(service.url + path, timeout=10).status_code in (200, 404)


def test_real_clients_send_the_key_and_read_the_refusal(service):
    import bentoml
    import openai

    with bentoml.SyncHTTPClient(service.url, token=KEYS[1], timeout=30) as client:
        assert client.list_voices(limit=1)["limit"] == 1
    sdk = openai.OpenAI(base_url=f"{service.url}/v1", api_key="not-a-key", max_retries=0)
    with pytest.raises(openai.AuthenticationError) as refused:
        sdk.audio.speech.create(model="tts-1", voice="alloy", input="olá")
    assert refused.value.status_code == 401 and refused.value.code == "invalid_api_key"


def test_a_wrong_key_and_a_key_in_the_wrong_place_are_refused(service):
    for headers in ({"Authorization": "Bearer nope"}, {"Authorization": f"Basic {KEYS[0]}"},
                    {"X-API-Key": KEYS[0]}, {"Authorization": f"Bearer {KEYS[0]}0"}):
        assert httpx.post(f"{service.url}/list_voices", json={}, headers=headers, timeout=10).status_code == 401
    assert httpx.post(f"{service.url}/list_voices?api_key={KEYS[0]}", json={}, timeout=10).status_code == 401


def raw_chunked_post(url: str, path: str, content_type: str, pieces: int, piece: bytes, key: str = KEYS[0]) -> tuple[int, int]:
    """POST a chunked body (no Content-Length) over a raw socket, stopping as soon as the server answers;
    returns (status, pieces sent)."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        sock.sendall((f"POST {path} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {key}\r\n"
                      f"Content-Type: {content_type}\r\nTransfer-Encoding: chunked\r\n\r\n").encode())
        sent = 0
        sock.settimeout(0.01)
        answer = b""
        try:
            for sent in range(1, pieces + 1):
                sock.sendall(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
                try:
                    answer = sock.recv(65536)
                    if answer:
                        break
                except (socket.timeout, BlockingIOError):
                    continue
            else:
                sock.sendall(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server hung up after answering: read what it said
        sock.settimeout(30)
        while b"\r\n" not in answer:
            more = sock.recv(65536)
            if not more:
                break
            answer += more
    return int(answer.split(b" ", 2)[1]), sent


@pytest.mark.parametrize("path,content_type,limit", [
    ("/synthesize", "multipart/form-data; boundary=xyz", MAX_UPLOAD + 64 * 1024),
    ("/normalize", "application/json", MAX_JSON),
])
def test_chunked_bodies_over_the_limit_are_refused_while_streaming_in(service, path, content_type, limit):
    piece = b"z" * 8192
    status, sent = raw_chunked_post(service.url, path, content_type, pieces=2000, piece=piece)  # 16 MB offered
    assert status == 413
    assert sent * len(piece) < limit + 1024 * 1024, "the server read far past its limit before refusing"


def test_content_length_over_the_limit_is_refused_up_front(service, reference):
    big = wav_bytes(voice_like(8.0, sample_rate=24000), subtype="FLOAT")  # 768 kB > 300 kB
    response = httpx.post(f"{service.url}/synthesize", headers=auth(), timeout=30,
                          data={"text": "Olá", "reference_text": REFERENCE_TEXT},
                          files={"reference_audio": ("r.wav", big)})
    assert response.status_code == 413 and response.json()["error"].startswith("reference_audio: ")
    response = httpx.post(f"{service.url}/normalize", headers=auth(), timeout=30, json={"text": "a" * (MAX_JSON + 1)})
    assert response.status_code == 413 and "PTBR_MAX_JSON_BYTES" in response.text


def test_a_too_large_dub_upload_is_a_413_naming_subtitles(service):
    cues = b"".join(b"%d\n00:00:%02d,000 --> 00:00:%02d,500\nFala numero %d.\n\n" % (n, n % 60, n % 60, n)
                    for n in range(1, 12000))  # ~500 kB of cues > 300 kB
    response = httpx.post(f"{service.url}/dub_subtitles/submit", headers=auth(), timeout=30, data={"voice": "x"},
                          files={"subtitles": ("legendas.srt", cues)})
    assert response.status_code == 413, response.text
    assert response.json()["error"].startswith("subtitles: ") and "PTBR_MAX_UPLOAD_BYTES" in response.text


def test_multipart_without_a_boundary_is_a_400(service):
    response = httpx.post(f"{service.url}/synthesize", content=b"text=ola", timeout=10,
                          headers={**auth(), "Content-Type": "multipart/form-data"})
    assert response.status_code == 400
    assert response.json()["error"].startswith("content-type: ") and "boundary" in response.text


@pytest.mark.parametrize("body,content_type", [
    (b"garbage without any boundary line", "multipart/form-data; boundary=xyz"),
    (b"--xyz\r\nContent-Disposition: form-data\r\n\r\nno name\r\n--xyz--\r\n", "multipart/form-data; boundary=xyz"),
    (b"--xyz\r\n" + b"X" * 70000, "multipart/form-data; boundary=xyz"),
    (b"%ZZ=%%&=&&text", "application/x-www-form-urlencoded"),
    (b"\xff\xfe\x00{", "application/json"),
])
def test_malformed_bodies_are_4xx(service, body, content_type):
    response = httpx.post(f"{service.url}/synthesize", content=body, timeout=10,
                          headers={**auth(), "Content-Type": content_type})
    assert 400 <= response.status_code < 500, response.text


@pytest.mark.parametrize("filename", ["a" * 400 + ".wav", "../../../../etc/passwd", "ré\u0301f\u202e.wav", "nul\x00.wav"])
def test_client_file_names_never_reach_the_filesystem(service, reference, filename):
    # A 400-character name was a 500 (ENAMETOOLONG: BentoML named its temp file after it).
    response = httpx.post(f"{service.url}/synthesize", headers=auth(), timeout=60,
                          data={"text": "Olá.", "reference_text": REFERENCE_TEXT, "nfe_step": "1"},
                          files={"reference_audio": (filename, reference)})
    assert response.status_code == 200, response.text


def test_a_file_part_without_a_file_name_is_a_400_naming_the_field(service, reference):
    # What a browser form sends when no file was chosen: Starlette reads it as text, not as a file.
    response = httpx.post(f"{service.url}/synthesize", headers=auth(), timeout=60,
                          data={"text": "Olá.", "reference_text": REFERENCE_TEXT},
                          files={"reference_audio": ("", reference)})
    assert response.status_code == 400 and response.json()["detail"][0]["loc"] == ["reference_audio"]


class Listener:
    """A loopback TCP listener that records every connection made to it."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.connections: list[bytes] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                connection, _ = self.sock.accept()
            except (socket.timeout, OSError):
                continue
            with connection:
                connection.settimeout(2)
                try:
                    self.connections.append(connection.recv(4096))
                    connection.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nRIFF")
                except OSError:
                    self.connections.append(b"")

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.sock.close()


def test_a_url_where_a_file_belongs_is_a_400_and_nothing_is_fetched(service):
    listener = Listener()
    target = f"http://127.0.0.1:{listener.port}/reference.wav"
    try:
        attempts = [
            ("/synthesize", dict(data={"text": "Olá", "reference_text": REFERENCE_TEXT, "reference_audio": target},
                                 files={"dummy": ("d.txt", b"x")})),
            ("/synthesize", dict(data={"text": "Olá", "reference_text": REFERENCE_TEXT, "reference_audio": target})),
            ("/synthesize", dict(json={"text": "Olá", "reference_text": REFERENCE_TEXT, "reference_audio": target})),
            ("/synthesize_stream", dict(data={"text": "Olá", "reference_text": REFERENCE_TEXT,
                                              "reference_audio": target}, files={"dummy": ("d.txt", b"x")})),
            ("/create_voice", dict(data={"name": "Remota", "reference_text": REFERENCE_TEXT, "reference_audio": target},
                                   files={"dummy": ("d.txt", b"x")})),
            ("/create_voice", dict(data={"name": "Remota", "reference_text": REFERENCE_TEXT,
                                         "reference_audio": f'"{target}"'})),
        ]
        for path, request in attempts:
            response = httpx.post(service.url + path, headers=auth(), timeout=30, **request)
            assert response.status_code == 400, (path, response.status_code, response.text)
            assert "reference_audio" in response.text, response.text
            assert target not in response.text
        time.sleep(1.0)
    finally:
        listener.close()
    assert listener.connections == [], "the service fetched a URL named in a request"
    log = service.log_path.read_text(errors="replace")
    assert "ensure_file" not in log and "make_safe_connect" not in log  # BentoML's downloader was never entered


SECRETS = {name: f"Zq{name}Segredo{index:02d}x" for index, name in enumerate(
    ["text", "reftext", "voicename", "description", "language", "respelling", "word", "filename", "badint",
     "unknownvoice", "newname", "normtext", "normref", "useragent", "query", "cookie", "badjson", "streamtext"])}


def test_the_log_holds_no_request_text_file_name_or_key(service, reference):
    s = SECRETS
    url, headers = service.url, {**auth(KEYS[1]), "User-Agent": s["useragent"], "Cookie": f"session={s['cookie']}"}

    def post(path: str, extra_headers: dict[str, str] | None = None, **kwargs) -> httpx.Response:
        return httpx.post(url + path, headers={**headers, **(extra_headers or {})}, timeout=120, **kwargs)

    created = post("/create_voice", data={"name": f"Voz {s['voicename']}", "reference_text": f"{REFERENCE_TEXT} {s['reftext']}",
                                         "description": s["description"], "language": s["language"][:30]},
                   files={"reference_audio": (f"{s['filename']}.wav", reference)})
    assert created.status_code == 200, created.text
    voice = created.json()["id"]
    spoken = {"text": f"Olá {s['text']}.", "voice": voice, "nfe_step": "1",
              "pronunciations": json.dumps({s["word"]: "palavra"})}
    outcomes = [
        post("/synthesize", data=spoken),
        post("/synthesize", data={**spoken, "pronunciations": json.dumps({"Olá": s["respelling"]})}),
        post(f"/synthesize?{s['query']}=1", data={**spoken, "nfe_step": s["badint"]}),  # pydantic validation error
        post("/synthesize", data={"text": f"Oi {s['text']}", "reference_text": s["reftext"], "nfe_step": "1"},
             files={"reference_audio": (f"{s['filename']}.wav", b"RIFF not audio " + s["filename"].encode())}),
        post("/synthesize_stream", data={"text": f"Olá {s['streamtext']}.", "voice": voice, "nfe_step": "1"}),
        post("/synthesize_stream", data={"text": "Olá.", "voice": s["unknownvoice"]}),
        post("/normalize", json={"text": s["normtext"], "reference_text": s["normref"], "reference_seconds": 3}),
        post("/normalize", json={"text": s["normtext"], "speed": s["badint"]}),
        post("/normalize", content=b'{"text": "' + s["badjson"].encode() + b'"', extra_headers={"Content-Type": "application/json"}),
        post("/get_voice", json={"voice": s["unknownvoice"]}),
        post("/rename_voice", json={"voice": voice, "name": f"Novo {s['newname']}"}),
        post("/rename_voice", json={"voice": voice, "name": f"{s['newname']}/../"}),  # 400: bad name
        post("/list_voices", json={"offset": s["badint"]}),
        post("/model_info", json={"junk": s["text"]}),
        post("/delete_voice", json={"voice": s["unknownvoice"]}),
        post("/delete_voice", json={"voice": voice}),
        httpx.post(f"{url}/synthesize", data=spoken, headers={"Authorization": f"Bearer {s['text']}"}),  # 401
    ]
    statuses = [response.status_code for response in outcomes]
    assert statuses[0] == 200 and statuses[4] == 200, statuses
    assert all(status < 500 for status in statuses), statuses
    assert 401 in statuses and 400 in statuses and 404 in statuses
    time.sleep(0.5)
    log = service.log_path.read_text(errors="replace")
    leaked = [name for name, secret in SECRETS.items() if secret in log]
    leaked += [f"key:{key[:7]}" for key in (*KEYS, FILE_KEY) if key in log]
    assert leaked == [], f"request data in the server log: {leaked}"
    events = [json.loads(line) for line in log.splitlines() if line.startswith("{") and '"event"' in line]
    assert any(event.get("event") == "synthesize" and event.get("outcome") == "ok" and "text_chars" in event
               for event in events)  # the log still says what happened, in sizes and ids
    assert voice in log


def test_the_server_runs_as_the_image_user_writing_only_its_data_and_temp_dirs(service):
    import os

    import psutil

    if service.uid != 1034:
        pytest.skip("needs root, and an interpreter uid 1034 can run (see tests/hardened.py)")
    tree = psutil.Process(service.served.process.pid)
    processes = [tree, *tree.children(recursive=True)]
    assert len(processes) >= 2 and {process.uids().effective for process in processes} == {1034}
    # Everything else it could touch is root's and not writable by it: what it wrote is here, and only here.
    owned = [path for folder in (service.data_dir, service.tmpdir) for path in folder.rglob("*")
             if path.stat().st_uid == 1034]
    assert any(path.name == "meta.json" for path in owned)  # voices were written
    store = Path(os.environ["BENTOML_HOME"])
    assert not [path for path in store.rglob("*") if path.stat().st_uid == 1034]


def test_an_imported_model_is_readable_by_other_users(service):  # service: the demo model is imported
    import os

    import bentoml

    model = Path(bentoml.models.get("f5tts-ptbr:latest").path)
    modes = {path.name: path.stat().st_mode & 0o777 for path in [model, *model.rglob("*")]}
    assert modes[model.name] & 0o005 == 0o005 and modes["model.safetensors"] & 0o004, modes
    assert os.access(model / "model.safetensors", os.R_OK)


def test_the_data_directory_holds_no_client_names(service):
    names = [path.name for path in service.data_dir.rglob("*")]
    assert not any(secret in name for name in names for secret in SECRETS.values())


PAGE_CALLS = [("POST", "/model_info"), ("POST", "/list_voices"), ("POST", "/normalize"), ("POST", "/synthesize_stream"),
              ("POST", "/create_voice"), ("POST", "/synthesize_long/submit"), ("GET", "/synthesize_long/status"),
              ("GET", "/synthesize_long/get"), ("PUT", "/synthesize_long/cancel"), ("POST", "/dub_subtitles/submit"),
              ("GET", "/dub_subtitles/status")]


def test_the_web_page_loads_without_a_key_and_its_api_calls_need_one(service):
    for path in ("/ui", "/ui/", "/ui/index.html", "/ui/app.js", "/ui/style.css"):
        response = httpx.get(service.url + path, timeout=10, follow_redirects=True)
        assert response.status_code == 200, (path, response.status_code)
    assert 'id="api-key"' in httpx.get(f"{service.url}/ui/", timeout=10).text
    assert httpx.head(f"{service.url}/ui/app.js", timeout=10).status_code == 200
    assert httpx.get(f"{service.url}/ui/missing.js", timeout=10).status_code == 404  # open, but only the page's files
    assert httpx.post(f"{service.url}/ui/", timeout=10).status_code == 401  # only reading is open
    for method, path in PAGE_CALLS:
        refused = httpx.request(method, service.url + path, timeout=10)
        assert refused.status_code == 401, (method, path, refused.status_code)


def test_the_page_asks_for_the_key_and_sends_it(service):
    from browser import chromium, missing
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    reason = missing()
    assert reason is None, reason

    def shown(driver, element_id: str) -> str:
        return driver.find_element(By.ID, element_id).text

    with chromium("pt-BR") as driver:
        wait = WebDriverWait(driver, 30, poll_frequency=0.05)
        driver.get(f"{service.url}/ui/")
        wait.until(lambda d: "chave de API" in shown(d, "model-status"), "the page did not say it needs a key")
        form = driver.find_element(By.ID, "key-form")
        assert form.is_displayed()
        driver.find_element(By.ID, "api-key").send_keys(FILE_KEY)
        driver.find_element(By.ID, "api-key-use").click()
        wait.until(lambda d: "pronto" in shown(d, "model-status"), "the key typed in did not open the API")
        assert driver.find_element(By.ID, "api-key").get_attribute("value") == ""  # not left on screen
        driver.refresh()  # the key lasts for the tab
        wait.until(lambda d: "pronto" in shown(d, "model-status"), "the key was not kept in the tab")


MORE_SECRETS = {name: f"Zq{name}Sigilo{index:02d}x" for index, name in enumerate(
    ["input", "instructions", "oaivoice", "oainame", "oaireftext", "oaifile", "oaimodel", "longtext", "longvoice",
     "cue", "subfile", "badcue", "taskid", "format", "deleteid"])}


def test_the_log_holds_no_request_text_from_v1_or_job_routes(service, reference):
    s = MORE_SECRETS
    url, headers = service.url, auth(KEYS[0])

    def send(method: str, path: str, **kwargs) -> httpx.Response:
        return httpx.request(method, url + path, headers=headers, timeout=120, **kwargs)

    created = send("POST", "/v1/audio/voices", data={"name": f"Voz {s['oainame']}", "consent": "yes",
                                                     "ref_text": f"{REFERENCE_TEXT} {s['oaireftext']}"},
                   files={"audio_sample": (f"{s['oaifile']}.wav", reference)})
    assert created.status_code == 200, created.text
    voice = created.json()["id"]
    long_job = send("POST", "/synthesize_long/submit", data={"text": f"Olá {s['longtext']}.", "voice": voice,
                                                             "nfe_step": "1"})
    assert long_job.status_code == 200, long_job.text
    srt = f"1\n00:00:00,500 --> 00:00:02,000\nBom dia {s['cue']}.\n".encode()
    dub_job = send("POST", "/dub_subtitles/submit", data={"voice": voice, "nfe_step": "1"},
                   files={"subtitles": (f"{s['subfile']}.srt", srt)})
    assert dub_job.status_code == 200, dub_job.text
    outcomes = [
        send("POST", "/v1/audio/speech", json={"model": "tts-1", "input": f"Olá {s['input']}.", "voice": voice,
                                                "instructions": s["instructions"], "response_format": "wav",
                                                "nfe_step": 1}),
        send("POST", "/v1/audio/speech", json={"model": "tts-1", "input": f"Oi {s['input']}", "voice": s["oaivoice"]}),
        send("POST", "/v1/audio/speech", json={"model": s["oaimodel"], "input": s["input"], "voice": voice}),
        send("POST", "/v1/audio/speech", json={"model": "tts-1", "input": s["input"], "voice": voice, "speed": s["format"]}),
        send("GET", f"/v1/models/{s['oaimodel']}"),
        send("DELETE", f"/v1/audio/voices/{s['deleteid']}"),
        send("POST", "/synthesize_long/submit", data={"text": s["longtext"], "voice": s["longvoice"]}),
        send("POST", "/dub_subtitles/submit", data={"voice": voice},
             files={"subtitles": (f"{s['subfile']}.srt", f"1\n00:00:01,000 -> x\n{s['badcue']}\n".encode())}),
        send("GET", "/synthesize_long/status", params={"task_id": s["taskid"]}),
        send("GET", "/synthesize_long/get", params={"task_id": long_job.json()["task_id"],
                                                    "response_format": s["format"]}),
        send("GET", "/dub_subtitles/list", params={"limit": s["format"]}),
        send("PUT", "/dub_subtitles/cancel", params={"task_id": s["taskid"]}),
        send("DELETE", "/synthesize_long/delete", params={"task_id": s["taskid"]}),
    ]
    statuses = [response.status_code for response in outcomes]
    assert statuses[0] == 200 and all(status < 500 for status in statuses), statuses
    assert {400, 404} <= set(statuses), statuses
    for kind, task in (("synthesize_long", long_job), ("dub_subtitles", dub_job)):
        deadline = time.monotonic() + 120
        while send("GET", f"/{kind}/status", params={"task_id": task.json()["task_id"]}).json()["status"] == "in_progress":
            assert time.monotonic() < deadline, kind
            time.sleep(0.1)
        assert send("GET", f"/{kind}/get", params={"task_id": task.json()["task_id"]}).status_code == 200
        send("DELETE", f"/{kind}/delete", params={"task_id": task.json()["task_id"]})
    assert send("DELETE", f"/v1/audio/voices/{voice}").status_code == 200
    time.sleep(0.5)
    log = service.log_path.read_text(errors="replace")
    leaked = [line[:300] for line in log.splitlines() if any(secret in line for secret in MORE_SECRETS.values())]
    assert leaked == [], "request data in the server log:\n" + "\n".join(leaked)
    events = [json.loads(line) for line in log.splitlines() if line.startswith("{") and '"event"' in line]
    assert any(event.get("event") == "job" and event.get("outcome") == "completed" for event in events)
    assert long_job.json()["task_id"] in log  # what happened is still there, by id
