#!/usr/bin/env python3
"""Load and soak test of the service over loopback HTTP; prints one JSON object.

    .venv/bin/python scripts/loadtest.py                            # start a demo-model server, 300 requests at 8 and 32
    .venv/bin/python scripts/loadtest.py --url http://127.0.0.1:3000 --server-pid 1234
    .venv/bin/python scripts/loadtest.py --soak 1000                # 1,000 sequential syntheses: leaks?
    .venv/bin/python scripts/loadtest.py --requests 40 --concurrency 8 --max-seconds 120

Load mode sends a weighted mix of routes (``ROUTES``; ``/v1/audio/speech`` joins when ``GET /v1/models`` answers)
from ``--concurrency`` client threads until ``--requests`` are done or ``--max-seconds`` pass, once per concurrency
level, and reports per route the outcome histogram and p50/p95/p99 latency, plus the server's resident memory, open
file descriptors, threads and temporary files before and after (psutil over the server's process tree). Expected:
only 200 and the by-design 429/503 with Retry-After; anything else is listed under ``unexpected``.

Soak mode sends ``--soak`` syntheses one after another (every tenth with an uploaded reference, the rest with a saved
voice) and reports the same server figures, sampled as it goes.

Loopback only; bounded in requests and time (every request has a timeout); it stops by itself. Without ``--url`` it
imports the demo model into a throw-away BentoML home, serves it with a private data and temp directory, and removes
all of it at the end. The saved voice it creates is deleted at the end.
"""

from __future__ import annotations

import argparse
import io
import ipaddress
import json
import os
import platform
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable
from urllib.parse import urlparse

import httpx
import psutil

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from ptbr_model.bench_workloads import voice_like  # noqa: E402

REFERENCE_TEXT = "Esta é a voz de referência para o teste de carga."
SENTENCES = (
    "Olá, tudo bem com você?",
    "Bom dia! A reunião começa às 14h30.",
    "Hoje o dia está bonito e o céu está limpo.",
    "Paguei R$ 10,50 pelo café da manhã.",
)
STREAM_TEXT = "Primeira frase do teste. Segunda frase, um pouco mais longa, para dar dois pedaços."
NORMALIZE_TEXT = "Às 14h30 do dia 25/12/1990, o Sr. Silva pagou R$ 1.500,00 por 3 ingressos."
EXPECTED = {200, 429, 503}
LIGHT_ROUTES = ("list_voices", "normalize", "v1_models")


# --- routes ---------------------------------------------------------------------------------------------------------

class SharedCounter:
    """A counter the client threads share (itertools.count is not documented as thread-safe)."""

    def __init__(self) -> None:
        self._value = 0
        self._lock = threading.Lock()

    def __next__(self) -> int:
        with self._lock:
            self._value += 1
            return self._value


@dataclass
class Context:
    """What the requests need: a saved voice, an uploadable reference, the flow steps, a request counter."""

    voice: str
    reference: bytes
    nfe_step: int = 2
    headers: dict[str, str] = field(default_factory=dict)  # Authorization, when the service has API keys
    counter: SharedCounter = field(default_factory=SharedCounter)

    def client(self, url: str, timeout: float = 300.0) -> httpx.Client:
        return httpx.Client(base_url=url, timeout=timeout, headers=self.headers)


@dataclass
class Route:
    name: str
    weight: int
    send: Callable[[httpx.Client, Context], httpx.Response]
    available: Callable[[httpx.Client], bool] = lambda client: True


def _synthesize(client: httpx.Client, ctx: Context) -> httpx.Response:
    number = next(ctx.counter)
    text = SENTENCES[number % len(SENTENCES)]
    if number % 3 == 0:  # one in three uploads its reference: decoding and BentoML's temp files get exercised
        return client.post("/synthesize", data={"text": text, "reference_text": REFERENCE_TEXT,
                                                "nfe_step": str(ctx.nfe_step)},
                           files={"reference_audio": ("reference.wav", ctx.reference)})
    return client.post("/synthesize", data={"text": text, "voice": ctx.voice, "nfe_step": str(ctx.nfe_step)})


def _stream(client: httpx.Client, ctx: Context) -> httpx.Response:
    with client.stream("POST", "/synthesize_stream", data={"text": STREAM_TEXT, "voice": ctx.voice,
                                                          "nfe_step": str(ctx.nfe_step)}) as response:
        response.read()  # the whole stream: latency is to the last byte
    return response


def _list_voices(client: httpx.Client, ctx: Context) -> httpx.Response:
    return client.post("/list_voices", json={"offset": 0, "limit": 50})


def _normalize(client: httpx.Client, ctx: Context) -> httpx.Response:
    return client.post("/normalize", json={"text": NORMALIZE_TEXT})


def _speech(client: httpx.Client, ctx: Context) -> httpx.Response:
    return client.post("/v1/audio/speech", json={"model": "tts-1", "input": SENTENCES[next(ctx.counter) % 4],
                                                 "voice": ctx.voice, "response_format": "wav"})


def _openai_available(client: httpx.Client) -> bool:
    try:
        return client.get("/v1/models").status_code == 200
    except httpx.HTTPError:
        return False


def _v1_models(client: httpx.Client, ctx: Context) -> httpx.Response:
    return client.get("/v1/models")


# Pluggable: add a Route here (or with register_route) and it joins the mix when ``available`` says so.
ROUTES: dict[str, Route] = {}


def register_route(route: Route) -> None:
    ROUTES[route.name] = route


for _route in (Route("synthesize", 3, _synthesize), Route("synthesize_stream", 2, _stream),
               Route("list_voices", 2, _list_voices), Route("normalize", 2, _normalize),
               Route("v1_audio_speech", 2, _speech, _openai_available),
               Route("v1_models", 1, _v1_models, _openai_available)):
    register_route(_route)


# --- the server -------------------------------------------------------------------------------------------------------

def require_loopback(url: str) -> None:
    host = urlparse(url).hostname or ""
    try:
        addresses = {info[4][0] for info in socket.getaddrinfo(host, None)}
    except socket.gaierror:
        raise SystemExit(f"cannot resolve {host!r}") from None
    if not addresses or not all(ipaddress.ip_address(address.split("%")[0]).is_loopback for address in addresses):
        raise SystemExit(f"--url must be a loopback address (got {host!r}): this tool never loads another machine")


@dataclass
class LocalServer:
    """``bentoml serve`` of the demo model in a private BentoML home, data directory and temp directory."""

    workdir: Path
    env: dict[str, str] = field(default_factory=dict)
    port: int = 0
    process: subprocess.Popen | None = None
    model_tag: str | None = None  # a model already in <workdir>/bentoml (default: import the demo model)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def tmpdir(self) -> Path:
        return self.workdir / "tmp"

    def start(self, timeout: float = 240.0) -> LocalServer:
        home, data = self.workdir / "bentoml", self.workdir / "data"
        for folder in (home, data, self.tmpdir):
            folder.mkdir(parents=True, exist_ok=True)
        base = {**os.environ, "BENTOML_HOME": str(home), "BENTOML_DO_NOT_TRACK": "True", "HF_HUB_OFFLINE": "1"}
        tag = self.model_tag or subprocess.run(
            [sys.executable, str(REPO_ROOT / "scripts" / "import_model.py"), "--demo"], env=base,
            capture_output=True, text=True, timeout=300, check=True).stdout.strip()
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = sock.getsockname()[1]
        env = {**base, "PTBR_MODEL_TAG": tag, "PTBR_DATA_DIR": str(data), "TMPDIR": str(self.tmpdir),
               "PTBR_LOG_FORMAT": "json", **self.env}
        bentoml = Path(sys.executable).parent / "bentoml"
        self.process = subprocess.Popen(
            [str(bentoml), "serve", "service:PtBrTTS", "--host", "127.0.0.1", "--port", str(self.port)],
            cwd=REPO_ROOT, env=env, stdout=(self.workdir / "serve.log").open("wb"), stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise SystemExit(f"bentoml serve exited with {self.process.returncode}; see {self.workdir}/serve.log")
            try:
                response = httpx.get(self.url + "/readyz", timeout=2)
                if response.status_code == 200:
                    return self
                if response.headers.get("content-type", "").startswith("application/json") and \
                        response.json().get("status") == "failed":  # the model failed to load: no use waiting
                    self.stop()
                    raise SystemExit(f"the model failed to load: {response.json().get('error')}")
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        self.stop()
        raise SystemExit(f"the server was not ready within {timeout} s; see {self.workdir}/serve.log")

    def stop(self) -> None:
        if self.process is not None:
            kill_tree(self.process.pid)
            self.process.wait(timeout=10)


def kill_tree(pid: int) -> None:
    try:
        parent = psutil.Process(pid)
        family = [parent, *parent.children(recursive=True)]
    except psutil.NoSuchProcess:
        return
    for process in family:
        try:
            process.kill()
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(family, timeout=10)


def listening_pid(url: str) -> int | None:
    """The ``bentoml serve`` process behind ``url``: the listener, then up to its topmost bentoml ancestor (the
    arbiter, whose tree holds every worker)."""
    port = urlparse(url).port
    try:
        pid = next((connection.pid for connection in psutil.net_connections(kind="tcp")
                    if connection.status == psutil.CONN_LISTEN and connection.laddr.port == port and connection.pid),
                   None)
        process = psutil.Process(pid) if pid else None
        while process is not None:
            parent = process.parent()
            if parent is None or "bentoml" not in " ".join(parent.cmdline()):
                return process.pid
            process = parent
    except psutil.Error:
        return None
    return None


def snapshot(pid: int | None, tmpdir: Path | None = None) -> dict:
    """Resident memory, open file descriptors and threads of the server's process tree; temporary files."""
    figures: dict = {}
    if pid is not None:
        try:
            root = psutil.Process(pid)
            family = [root, *root.children(recursive=True)]
            processes = []
            for process in family:
                with process.oneshot():
                    processes.append({"pid": process.pid, "name": process.name(),
                                      "rss_mb": round(process.memory_info().rss / 2**20, 1),
                                      "fds": process.num_fds(), "threads": process.num_threads()})
            figures.update(
                rss_mb=round(sum(p["rss_mb"] for p in processes), 1),
                fds=sum(p["fds"] for p in processes),
                threads=sum(p["threads"] for p in processes),
                processes=processes,
            )
        except psutil.Error as exc:
            figures["error"] = f"{type(exc).__name__}: cannot read the server's processes"
    if tmpdir is not None and tmpdir.is_dir():
        entries = list(tmpdir.rglob("*"))
        figures["temp_files"] = sum(1 for entry in entries if entry.is_file())
        figures["temp_dirs"] = sum(1 for entry in entries if entry.is_dir())
    return figures


# --- load -------------------------------------------------------------------------------------------------------------

@dataclass
class Outcome:
    route: str
    status: int | str  # HTTP status, or the transport error's name
    seconds: float
    retry_after: bool = False


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, int(round(q / 100 * len(ordered) + 0.5)) - 1))
    return ordered[index]


def summarize(outcomes: list[Outcome]) -> dict:
    routes: dict[str, dict] = {}
    for name in sorted({outcome.route for outcome in outcomes}):
        mine = [outcome for outcome in outcomes if outcome.route == name]
        ok = [outcome.seconds * 1000 for outcome in mine if outcome.status == 200]
        every = [outcome.seconds * 1000 for outcome in mine]
        routes[name] = {
            "count": len(mine),
            "statuses": dict(sorted(Counter(str(outcome.status) for outcome in mine).items())),
            "p50_ms": round(percentile(every, 50), 1), "p95_ms": round(percentile(every, 95), 1),
            "p99_ms": round(percentile(every, 99), 1), "max_ms": round(max(every), 1),
            "ok_p50_ms": round(percentile(ok, 50), 1) if ok else None,
            "ok_p99_ms": round(percentile(ok, 99), 1) if ok else None,
        }
    return routes


def unexpected(outcomes: list[Outcome]) -> list[dict]:
    """Everything but 200 and 429/503 carrying Retry-After."""
    found = Counter()
    for outcome in outcomes:
        if outcome.status == 200:
            continue
        if outcome.status in (429, 503) and outcome.retry_after:
            continue
        reason = "no Retry-After" if outcome.status in (429, 503) else "unexpected status"
        found[(outcome.route, str(outcome.status), reason)] += 1
    return [{"route": route, "status": status, "why": why, "count": count}
            for (route, status, why), count in sorted(found.items())]


def run_load(url: str, ctx: Context, *, requests: int, concurrency: int, max_seconds: float,
             routes: list[Route], seed: int = 0, progress: bool = True, timeout: float = 300.0) -> tuple[list[Outcome], float]:
    """``requests`` requests from ``concurrency`` threads (fewer if ``max_seconds`` runs out); outcomes and wall time."""
    rng = random.Random(seed)
    plan = rng.choices(routes, weights=[route.weight for route in routes], k=requests)
    outcomes: list[Outcome] = []
    lock = threading.Lock()
    position = iter(range(requests))
    deadline = time.monotonic() + max_seconds
    bar = _progress(requests, f"concurrency {concurrency}", progress)

    def worker() -> None:
        with ctx.client(url, timeout) as client:
            while time.monotonic() < deadline:
                with lock:
                    index = next(position, None)
                if index is None:
                    return
                route = plan[index]
                started = time.perf_counter()
                try:
                    response = route.send(client, ctx)
                    outcome = Outcome(route.name, response.status_code, time.perf_counter() - started,
                                      "retry-after" in response.headers)
                except httpx.HTTPError as exc:
                    outcome = Outcome(route.name, type(exc).__name__, time.perf_counter() - started)
                with lock:
                    outcomes.append(outcome)
                bar.update(1)

    started = time.perf_counter()
    threads = [threading.Thread(target=worker, name=f"load-{n}") for n in range(concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    bar.close()
    return outcomes, time.perf_counter() - started


def _progress(total: int, label: str, enabled: bool):
    try:
        from tqdm import tqdm
    except ImportError:  # pragma: no cover - tqdm comes with the project's dependencies
        enabled = False
    if not enabled:
        class _Silent:
            def update(self, n: int) -> None: ...
            def close(self) -> None: ...
        return _Silent()
    return tqdm(total=total, desc=label, unit="req", file=sys.stderr, dynamic_ncols=True)


def prepare(url: str, nfe_step: int, api_key: str | None = None) -> Context:
    """A saved voice and an uploadable reference for the requests."""
    buffer = io.BytesIO()
    import soundfile as sf

    sf.write(buffer, voice_like(3.0, sample_rate=24000), 24000, format="WAV", subtype="PCM_16")
    reference = buffer.getvalue()
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    response = httpx.post(f"{url}/create_voice", data={"name": f"carga-{time.time_ns()}", "reference_text": REFERENCE_TEXT},
                          files={"reference_audio": ("reference.wav", reference)}, headers=headers, timeout=120)
    response.raise_for_status()
    return Context(voice=response.json()["id"], reference=reference, nfe_step=nfe_step, headers=headers)


def finish(url: str, ctx: Context) -> None:
    """Delete the voice ``prepare`` made."""
    try:
        httpx.post(f"{url}/delete_voice", json={"voice": ctx.voice}, headers=ctx.headers, timeout=30)
    except httpx.HTTPError:
        pass


def warm_up(url: str, ctx: Context, routes: list[Route]) -> None:
    """One request per route before the first snapshot, so lazily loaded libraries do not count as growth."""
    with ctx.client(url) as client:
        for route in routes:
            for _ in range(2 if route.name == "synthesize" else 1):
                route.send(client, ctx)


def load_phase(url: str, ctx: Context, *, requests: int, concurrency: int, max_seconds: float, routes: list[Route],
               pid: int | None, tmpdir: Path | None, progress: bool = True) -> dict:
    before = snapshot(pid, tmpdir)
    outcomes, wall = run_load(url, ctx, requests=requests, concurrency=concurrency, max_seconds=max_seconds,
                              routes=routes, seed=concurrency, progress=progress)
    time.sleep(1.0)  # let finished requests release their temp dirs and sockets
    after = snapshot(pid, tmpdir)
    summary = summarize(outcomes)
    light = [summary[name]["p99_ms"] for name in LIGHT_ROUTES if name in summary]
    return {
        "concurrency": concurrency, "requests_planned": requests, "requests_done": len(outcomes),
        "wall_s": round(wall, 2), "throughput_rps": round(len(outcomes) / wall, 2) if wall else None,
        "routes": summary, "unexpected": unexpected(outcomes),
        "light_routes_p99_ms_max": max(light) if light else None,
        "server_before": before, "server_after": after, "growth": growth(before, after),
    }


def growth(before: dict, after: dict) -> dict:
    return {key: round(after[key] - before[key], 1) for key in ("rss_mb", "fds", "threads", "temp_files", "temp_dirs")
            if key in before and key in after}


def soak(url: str, ctx: Context, *, count: int, max_seconds: float, pid: int | None, tmpdir: Path | None,
         progress: bool = True, samples: int = 10) -> dict:
    before = snapshot(pid, tmpdir)
    statuses: Counter = Counter()
    trace = [{"done": 0, "rss_mb": before.get("rss_mb"), "fds": before.get("fds")}]
    latencies: list[float] = []
    deadline = time.monotonic() + max_seconds
    every = max(1, count // samples)
    bar = _progress(count, "soak", progress)
    done = 0
    with ctx.client(url) as client:
        for done in range(1, count + 1):
            if time.monotonic() > deadline:
                done -= 1
                break
            started = time.perf_counter()
            try:
                statuses[str(_synthesize(client, ctx).status_code)] += 1
            except httpx.HTTPError as exc:
                statuses[type(exc).__name__] += 1
            latencies.append((time.perf_counter() - started) * 1000)
            bar.update(1)
            if done % every == 0:
                figures = snapshot(pid, None)
                trace.append({"done": done, "rss_mb": figures.get("rss_mb"), "fds": figures.get("fds")})
    bar.close()
    time.sleep(1.0)
    after = snapshot(pid, tmpdir)
    # Growth after the first tenth: the first requests fill caches (allocator pools, codec libraries) once.
    settled = next((point for point in trace if point["done"] >= every), trace[0])
    return {
        "syntheses": done, "statuses": dict(statuses),
        "latency_ms": {"p50": round(percentile(latencies, 50), 1), "p99": round(percentile(latencies, 99), 1)},
        "server_before": before, "server_after": after, "growth": growth(before, after),
        "rss_growth_after_first_tenth_mb": (round(after["rss_mb"] - settled["rss_mb"], 1)
                                            if "rss_mb" in after and settled.get("rss_mb") is not None else None),
        "trace": trace,
    }


def machine() -> dict:
    return {"cpus": os.cpu_count(), "load_avg_1m": round(os.getloadavg()[0], 2), "python": platform.python_version(),
            "platform": platform.platform(terse=True)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", help="a running service (loopback only); default: start a demo-model server")
    parser.add_argument("--server-pid", type=int, help="with --url: the server's process (default: who listens)")
    parser.add_argument("--server-tmpdir", type=Path, help="with --url: the server's TMPDIR, to count temp files")
    parser.add_argument("--requests", type=int, default=300, help="requests per concurrency level")
    parser.add_argument("--concurrency", default="8,32", help="comma-separated levels")
    parser.add_argument("--max-seconds", type=float, default=600.0, help="time budget per phase")
    parser.add_argument("--nfe-step", type=int, default=2, help="flow steps of every synthesis (the demo model: 2)")
    parser.add_argument("--routes", help="comma-separated subset of: " + ", ".join(ROUTES))
    parser.add_argument("--soak", type=int, default=0, help="instead of the load: this many sequential syntheses")
    parser.add_argument("--server-env", action="append", default=[], metavar="NAME=VALUE",
                        help="a setting for the server this tool starts (repeatable)")
    parser.add_argument("--api-key", default=os.environ.get("PTBR_API_KEY"),
                        help="sent as Authorization: Bearer (default: $PTBR_API_KEY)")
    parser.add_argument("--no-progress", action="store_true")
    parser.add_argument("--keep", action="store_true", help="keep the started server's directory (log, data)")
    args = parser.parse_args(argv)
    if args.requests < 1 or args.requests > 100_000 or args.soak < 0 or args.soak > 100_000:
        parser.error("--requests and --soak are bounded (1..100000)")

    server = None
    workdir = None
    if args.url:
        require_loopback(args.url)
        url, pid, tmpdir = args.url.rstrip("/"), args.server_pid or listening_pid(args.url), args.server_tmpdir
    else:
        workdir = Path(tempfile.mkdtemp(prefix="ptbr-loadtest-"))
        env = dict(item.split("=", 1) for item in args.server_env)
        server = LocalServer(workdir, env=env).start()
        url, pid, tmpdir = server.url, server.process.pid, server.tmpdir
    report: dict = {"machine": machine(), "url": url, "nfe_step": args.nfe_step}
    ctx = None
    try:
        ctx = prepare(url, args.nfe_step, args.api_key)
        with ctx.client(url, timeout=10) as client:
            wanted = set(args.routes.split(",")) if args.routes else set(ROUTES)
            routes = [route for name, route in ROUTES.items() if name in wanted and route.available(client)]
        report["routes"] = [route.name for route in routes]
        if args.soak:
            warm_up(url, ctx, [ROUTES["synthesize"]])
            report["soak"] = soak(url, ctx, count=args.soak, max_seconds=args.max_seconds, pid=pid, tmpdir=tmpdir,
                                  progress=not args.no_progress)
        else:
            warm_up(url, ctx, routes)
            report["phases"] = [
                load_phase(url, ctx, requests=args.requests, concurrency=int(level), max_seconds=args.max_seconds,
                           routes=routes, pid=pid, tmpdir=tmpdir, progress=not args.no_progress)
                for level in args.concurrency.split(",")
            ]
            report["only_expected_statuses"] = all(not phase["unexpected"] for phase in report["phases"])
    finally:
        if ctx is not None:
            finish(url, ctx)
        if server is not None:
            server.stop()
            if not args.keep:
                shutil.rmtree(workdir, ignore_errors=True)
            else:
                report["workdir"] = str(workdir)
    print(json.dumps(report, indent=2))
    return 0 if report.get("only_expected_statuses", True) else 1


if __name__ == "__main__":
    sys.exit(main())
