#!/usr/bin/env python3
"""The service on real GPUs, driven over loopback HTTP by a real ``bentoml serve``; prints one JSON object.

    python scripts/measure_gpu_serving.py --phases workers,e2e --workdir /tmp/gpuwork --out result.json
    python scripts/measure_gpu_serving.py --quick --phases workers,e2e      # the tiny demo model: checks the script

Phases:
  workers  One worker per GPU (PTBR_GPU_WORKERS): the same load against PTBR_GPU_WORKERS=1 and then =auto.
           ``--streams`` clients each send ``--stream-requests`` syntheses one after another, on one kept-alive
           connection ("keepalive") and then on a new connection per request ("per_request"). Reports each run's
           throughput and latency, the ratio auto/1, which GPU each worker took (its "bound to GPU" log line) and
           each GPU's mean utilisation and memory while the run lasted (nvidia-smi, sampled).
  e2e      One worker, the defaults (fp16, compile auto, CUDA graphs): a burst of ``--burst`` concurrent requests
           (only 200 and 429 with Retry-After are expected), ``--sequential`` requests one after another with device
           memory sampled from /metrics (allocated and reserved must stay flat), then a real CUDA out-of-memory:
           the server is restarted with PTBR_CUDA_MEMORY_FRACTION between what short requests keep reserved and
           what a ``--long-seconds`` utterance reserved (both measured just before; bisected over up to
           ``--oom-tries`` restarts until the model loads and the long request alone fails), so the long one fails
           with 503 and the requests around it succeed; allocated memory must come back to its resting level.

Model: random weights at the real checkpoint's size with a real-size vocoder (scripts/benchmark.py writes them),
imported once into ``<workdir>/bentoml`` with the project's own import; ``--quick`` imports the demo model instead.
The data directory (voices, torch.compile cache) is ``<workdir>/data``, shared by the servers started in turn.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import httpx
import psutil

REPO_ROOT = Path(__file__).resolve().parent.parent
for path in (REPO_ROOT, REPO_ROOT / "scripts"):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

from loadtest import LocalServer, percentile  # noqa: E402
from ptbr_model.bench_workloads import voice_like  # noqa: E402

REFERENCE_TEXT = "Esta é a voz de referência para a medição no GPU."
TEXT = ("O relatório anual foi apresentado ontem à tarde, e a diretoria aprovou o orçamento "
        "do próximo ano sem nenhuma ressalva.")
SHORT_TEXT = "Bom dia, tudo bem?"
WORKER_LINE = re.compile(r"worker (\d+) of (\d+) bound to GPU (\S+?)[\"\s]")


def say(message: str) -> None:
    print(f"[gpu-serving] {message}", file=sys.stderr, flush=True)


# --- model ----------------------------------------------------------------------------------------------------------

def prepare_model(workdir: Path, quick: bool) -> str:
    home = workdir / "bentoml"
    home.mkdir(parents=True, exist_ok=True)
    marker = workdir / ("tag-quick" if quick else "tag-real-size")
    if marker.exists():
        return marker.read_text().strip()
    env = {**os.environ, "BENTOML_HOME": str(home), "BENTOML_DO_NOT_TRACK": "True", "HF_HUB_OFFLINE": "1"}
    if quick:
        command = [sys.executable, str(REPO_ROOT / "scripts" / "import_model.py"), "--demo"]
    else:
        say("writing and importing a random model of the real checkpoint's size (with a real-size vocoder)")
        command = [sys.executable, __file__, "--import-real-size", str(workdir)]
    tag = subprocess.run(command, env=env, capture_output=True, text=True, timeout=900, check=True).stdout.strip()
    marker.write_text(tag)
    return tag


def import_real_size(workdir: Path) -> str:
    """Runs in a child with BENTOML_HOME set (bentoml reads it when imported)."""
    from benchmark import REAL_SIZE_ARCH, write_random_checkpoint, write_random_vocoder
    from ptbr_model import f5, store

    vocab = f5.shipped_vocab_path()
    checkpoint = write_random_checkpoint(workdir, REAL_SIZE_ARCH, vocab)
    vocoder = write_random_vocoder(workdir / "vocoder-real-size")
    tag = store.import_checkpoint(store.ImportOptions(checkpoint, "random-real-size", vocab, vocoder, demo=True))
    checkpoint.unlink()
    return tag


# --- GPUs -----------------------------------------------------------------------------------------------------------

def nvidia_smi(*query: str) -> list[list[str]]:
    try:
        output = subprocess.run(["nvidia-smi", *query, "--format=csv,noheader,nounits"], capture_output=True,
                                text=True, timeout=20, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return [[cell.strip() for cell in line.split(",")] for line in output.splitlines() if line.strip()]


def gpu_table() -> list[dict]:
    rows = nvidia_smi("--query-gpu=index,uuid,name,memory.total,memory.used,utilization.gpu")
    return [{"index": int(row[0]), "uuid": row[1], "name": row[2], "memory_total_mib": float(row[3]),
             "memory_used_mib": float(row[4]), "utilization": float(row[5])} for row in rows]


class GpuSampler:
    """nvidia-smi every ``interval`` seconds while a run lasts: mean utilisation and peak memory per GPU."""

    def __init__(self, interval: float = 0.25) -> None:
        self.interval = interval
        self.samples: list[list[dict]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            table = gpu_table()
            if table:
                self.samples.append(table)
            self._stop.wait(self.interval)

    def __enter__(self) -> GpuSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def summary(self) -> list[dict]:
        per_gpu: dict[int, list[dict]] = {}
        for table in self.samples:
            for row in table:
                per_gpu.setdefault(row["index"], []).append(row)
        return [{"gpu": index, "samples": len(rows),
                 "mean_utilization": round(statistics.fmean(row["utilization"] for row in rows), 1),
                 "busy_share": round(sum(row["utilization"] > 0 for row in rows) / len(rows), 3),
                 "max_memory_used_mib": max(row["memory_used_mib"] for row in rows)}
                for index, rows in sorted(per_gpu.items())]


# --- the server -----------------------------------------------------------------------------------------------------

class Server:
    def __init__(self, workdir: Path, tag: str, label: str, env: dict[str, str], ready_timeout: float) -> None:
        self.label = label
        self.local = LocalServer(workdir, env={"PTBR_LOG_FORMAT": "json", **env}, model_tag=tag)
        self.ready_timeout = ready_timeout
        self.log = workdir / f"serve-{label}.log"
        self.cold_start_s = 0.0

    def __enter__(self) -> Server:
        say(f"starting the server: {self.label}")
        started = time.perf_counter()
        try:
            self.local.start(timeout=self.ready_timeout)
        except BaseException:
            self.__exit__()
            raise
        self.cold_start_s = round(time.perf_counter() - started, 2)
        say(f"ready in {self.cold_start_s} s")
        return self

    def __exit__(self, *exc) -> None:
        self.local.stop()
        serve_log = self.local.workdir / "serve.log"
        if serve_log.exists():
            serve_log.replace(self.log)

    @property
    def url(self) -> str:
        return self.local.url

    def workers(self) -> list[dict]:
        """Each worker process, and the GPU its log line says it took."""
        bound = {}
        log = self.local.workdir / "serve.log"
        for match in WORKER_LINE.finditer(log.read_text(errors="replace") if log.exists() else ""):
            bound[int(match.group(1))] = match.group(3)
        processes = []
        for child in psutil.Process(self.local.process.pid).children(recursive=True):
            try:
                if any("_bentoml_impl.worker.service" in part for part in child.cmdline()):
                    processes.append(child.pid)
            except psutil.Error:
                pass  # exited while being listed: not a worker any more
        return [{"pids": sorted(processes), "bound": {str(index): gpu for index, gpu in sorted(bound.items())}}]

    def metrics(self) -> dict[str, float]:
        text = httpx.get(f"{self.url}/metrics", timeout=30).text
        wanted = ("ptbr_device_memory_allocated_bytes", "ptbr_device_memory_reserved_bytes",
                  "ptbr_device_memory_peak_bytes", "ptbr_model_ready", "ptbr_queue_length")
        values = {}
        for line in text.splitlines():
            name, _, value = line.partition(" ")
            if name in wanted:
                values[name.removeprefix("ptbr_")] = float(value)
        return values

    def rss_mb(self) -> float:
        root = psutil.Process(self.local.process.pid)
        return round(sum(p.memory_info().rss for p in [root, *root.children(recursive=True)]) / 2**20, 1)

    def create_voice(self) -> str:
        import io

        import soundfile as sf

        buffer = io.BytesIO()
        sf.write(buffer, voice_like(6.0, sample_rate=24000), 24000, format="WAV", subtype="PCM_16")
        response = httpx.post(f"{self.url}/create_voice", data={"name": f"gpu-{time.time_ns()}",
                                                                 "reference_text": REFERENCE_TEXT},
                              files={"reference_audio": ("reference.wav", buffer.getvalue())}, timeout=120)
        response.raise_for_status()
        return response.json()["id"]


def synthesize(client: httpx.Client, url: str, voice: str, text: str = TEXT, **fields: str) -> tuple[int, float, dict]:
    started = time.perf_counter()
    try:
        response = client.post(f"{url}/synthesize", data={"text": text, "voice": voice, **fields}, timeout=600)
    except httpx.HTTPError as exc:
        return -1, time.perf_counter() - started, {"error": type(exc).__name__}
    headers = {"retry_after": response.headers.get("retry-after")}
    if response.status_code != 200:
        try:
            headers["error"] = response.json()
        except ValueError:
            headers["error"] = response.text[:200]
    return response.status_code, time.perf_counter() - started, headers


def run_together(work, count: int) -> float:
    """``work(index)`` on ``count`` threads at once; seconds until the last one is done."""
    threads = [threading.Thread(target=work, args=(index,)) for index in range(count)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return time.perf_counter() - started


def latency(values: list[float]) -> dict:
    return {"p50_s": round(percentile(values, 50), 3), "p95_s": round(percentile(values, 95), 3),
            "max_s": round(max(values), 3) if values else None}


# --- phase: one worker per GPU --------------------------------------------------------------------------------------

def run_streams(url: str, voice: str, streams: int, per_stream: int, connection: str) -> dict:
    outcomes: list[tuple[int, float]] = []
    lock = threading.Lock()
    barrier = threading.Barrier(streams)

    def stream(index: int) -> None:
        headers = {"Connection": "close"} if connection == "per_request" else {}
        with httpx.Client(headers=headers) as client:
            barrier.wait()
            for request in range(per_stream):
                status, seconds, _ = synthesize(client, url, voice, seed=str(index * 1000 + request))
                with lock:
                    outcomes.append((status, seconds))

    with GpuSampler() as sampler:
        wall = run_together(stream, streams)
    ok = [seconds for status, seconds in outcomes if status == 200]
    return {"streams": streams, "requests": len(outcomes), "connection": connection,
            "statuses": dict(Counter(str(status) for status, _ in outcomes)), "wall_s": round(wall, 2),
            "throughput_rps": round(len(ok) / wall, 3), **latency(ok), "gpus": sampler.summary()}


def phase_workers(workdir: Path, tag: str, args: argparse.Namespace) -> dict:
    gpus = gpu_table()
    result: dict = {"gpus": [{key: row[key] for key in ("index", "name", "memory_total_mib")} for row in gpus]}
    if len(gpus) < 2 and not args.quick:
        result["skipped"] = f"{len(gpus)} GPU(s): one worker per GPU needs two to measure"
        return result
    env_auto = {"PTBR_GPU_WORKERS": "auto" if not args.quick else "2"}
    runs = {}
    for label, env in (("one_worker", {"PTBR_GPU_WORKERS": "1"}), ("worker_per_gpu", env_auto)):
        with Server(workdir, tag, label, env, args.ready_timeout) as server:
            voice = server.create_voice()
            # Warm up: new connections, so that every worker sees the text's length before the timed runs.
            with httpx.Client(headers={"Connection": "close"}) as client:
                for _ in range(4 * (len(gpus) or 2)):
                    synthesize(client, server.url, voice)
            entry = {"cold_start_s": server.cold_start_s, "workers": server.workers(), "runs": []}
            for connection in ("keepalive", "per_request"):
                entry["runs"].append(run_streams(server.url, voice, args.streams, args.stream_requests, connection))
            if label == "worker_per_gpu":
                entry["runs"].append(run_streams(server.url, voice, 2 * args.streams, args.stream_requests,
                                                 "keepalive"))
            entry["memory"] = gpu_table()
            runs[label] = entry
            say(f"{label}: " + ", ".join(f"{run['connection']}×{run['streams']} {run['throughput_rps']} req/s"
                                         for run in entry["runs"]))
    result.update(runs)
    one = {run["connection"]: run["throughput_rps"] for run in runs["one_worker"]["runs"]}
    per_gpu = runs["worker_per_gpu"]["runs"]
    result["speedup"] = {run["connection"]: round(run["throughput_rps"] / one[run["connection"]], 2)
                         for run in per_gpu[:2] if one.get(run["connection"])}
    return result


# --- phase: end to end on one GPU ----------------------------------------------------------------------------------

def burst(url: str, voice: str, count: int) -> dict:
    outcomes: list[tuple[int, float, dict]] = []
    lock = threading.Lock()
    barrier = threading.Barrier(count)

    def one(_: int) -> None:
        with httpx.Client() as client:
            barrier.wait()
            outcome = synthesize(client, url, voice)
            with lock:
                outcomes.append(outcome)

    wall = run_together(one, count)
    statuses = Counter(str(status) for status, _, _ in outcomes)
    refused = [headers for status, _, headers in outcomes if status in (429, 503)]
    return {"requests": count, "statuses": dict(statuses), "wall_s": round(wall, 2),
            "refusals_with_retry_after": sum(1 for headers in refused if headers.get("retry_after")),
            "refusals": len(refused), "unexpected": sorted({str(s) for s, _, _ in outcomes} - {"200", "429", "503"}),
            "ok_latency": latency([seconds for status, seconds, _ in outcomes if status == 200])}


def sequential(server: Server, voice: str, count: int) -> dict:
    samples = []
    statuses: Counter = Counter()
    seconds_ok = []
    with httpx.Client() as client:
        for index in range(count):
            status, seconds, _ = synthesize(client, server.url, voice, seed=str(index))
            statuses[str(status)] += 1
            if status == 200:
                seconds_ok.append(seconds)
            if index % 10 == 9 or index == 0:
                metrics = server.metrics()
                table = gpu_table()
                samples.append({"after": index + 1, "allocated_mib": round(metrics.get("device_memory_allocated_bytes", 0) / 2**20, 1),
                                "reserved_mib": round(metrics.get("device_memory_reserved_bytes", 0) / 2**20, 1),
                                "gpu0_used_mib": table[0]["memory_used_mib"] if table else None,
                                "rss_mb": server.rss_mb()})
    def spread(key: str) -> float | None:
        values = [sample[key] for sample in samples[1:] if sample[key] is not None]
        return round(max(values) - min(values), 1) if values else None
    return {"requests": count, "statuses": dict(statuses), **latency(seconds_ok),
            "allocated_spread_mib": spread("allocated_mib"), "reserved_spread_mib": spread("reserved_mib"),
            "gpu_used_spread_mib": spread("gpu0_used_mib"), "rss_growth_mb": round(samples[-1]["rss_mb"] - samples[1]["rss_mb"], 1)
            if len(samples) > 1 else None, "samples": samples[:: max(1, len(samples) // 8)] + samples[-1:]}


def phase_e2e(workdir: Path, tag: str, args: argparse.Namespace, result: dict, save) -> dict:
    # Long requests use duration control up to --long-seconds in one utterance: the most memory one request takes.
    env = {"PTBR_MAX_DURATION_S": str(max(30.0, args.long_seconds))}
    if not args.quick:
        env["CUDA_VISIBLE_DEVICES"] = "0"
    long_fields = {"duration": str(args.long_seconds)}
    with Server(workdir, tag, "e2e", env, args.ready_timeout) as server:
        result["cold_start_s"] = server.cold_start_s
        result["resting"] = server.metrics()
        voice = server.create_voice()
        with httpx.Client() as client:
            for _ in range(2):
                synthesize(client, server.url, voice)
        result["burst"] = burst(server.url, voice, args.burst)
        with httpx.Client() as client:
            result["after_burst_status"] = synthesize(client, server.url, voice)[0]
        say(f"burst: {result['burst']['statuses']}")
        save()
        result["sequential"] = sequential(server, voice, args.sequential)
        say(f"sequential: allocated spread {result['sequential']['allocated_spread_mib']} MiB")
        save()
        with httpx.Client() as client:
            synthesize(client, server.url, voice, text=SHORT_TEXT)
            short = server.metrics()
            status, seconds, headers = synthesize(client, server.url, voice, text=TEXT, **long_fields)
            long = server.metrics()
        result["short_request"] = short
        result["long_request"] = {"status": status, "seconds": round(seconds, 2), "error": headers.get("error"), **long}
        say(f"long request: {status} in {seconds:.2f} s")
        save()
    if args.quick or not gpu_table():
        result["oom"] = {"skipped": "no GPU: PTBR_CUDA_MEMORY_FRACTION only caps CUDA memory"}
        return result
    # A cap the model loads under, that a short request fits in and the long one does not: search between what
    # short requests keep reserved and what the long one reserved (loading needs an unknown amount in between).
    total = gpu_table()[0]["memory_total_mib"] * 2**20
    low, high = short["device_memory_reserved_bytes"], long["device_memory_reserved_bytes"]
    result["oom"] = {"total_mib": round(total / 2**20), "short_reserved_mib": round(low / 2**20, 1),
                     "long_reserved_mib": round(high / 2**20, 1), "tries": []}
    for _ in range(args.oom_tries):
        cap = (low + high) / 2
        fraction = round(cap / total, 6)
        attempt: dict = {"fraction": fraction, "cap_mib": round(cap / 2**20, 1)}
        result["oom"]["tries"].append(attempt)
        try:
            with Server(workdir, tag, f"oom-{len(result['oom']['tries'])}",
                        {**env, "PTBR_CUDA_MEMORY_FRACTION": str(fraction)}, args.oom_ready_timeout) as capped:
                attempt["before"] = {k: round(v / 2**20, 1) for k, v in capped.metrics().items() if k.startswith("device_memory")}
                sequence = attempt["sequence"] = []
                with httpx.Client() as client:
                    for label, fields, text in (("short", {}, SHORT_TEXT), ("long", long_fields, TEXT),
                                                ("short", {}, SHORT_TEXT), ("medium", {}, TEXT)):
                        status, seconds, headers = synthesize(client, capped.url, voice, text=text, **fields)
                        error = headers.get("error")
                        sequence.append({"request": label, "status": status, "seconds": round(seconds, 2),
                                         "retry_after": headers.get("retry_after"),
                                         "error": json.dumps(error)[:300] if error else None,
                                         **{key: round(value / 2**20, 1) for key, value in capped.metrics().items()
                                            if key.startswith("device_memory")}})
        except SystemExit as exc:  # the model did not load under this cap
            attempt["not_ready"] = str(exc)[:300]
        statuses = [step["status"] for step in attempt.get("sequence", [])]
        say(f"cap {attempt['cap_mib']} MiB: {statuses or attempt.get('not_ready')}")
        save()
        if not statuses:
            low = cap  # loading needs more
        elif statuses[1] == 200:
            high = cap  # the long request still fits
        else:
            break
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--phases", default="workers,e2e")
    parser.add_argument("--quick", action="store_true", help="the tiny demo model (checks the script; no GPU needed)")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/ptbr-gpu-serving"))
    parser.add_argument("--streams", type=int, default=2)
    parser.add_argument("--stream-requests", type=int, default=20)
    parser.add_argument("--burst", type=int, default=32)
    parser.add_argument("--sequential", type=int, default=200)
    parser.add_argument("--long-seconds", type=float, default=240.0,
                        help="duration of the long request (one utterance; PTBR_MAX_DURATION_S is raised to it)")
    parser.add_argument("--ready-timeout", type=float, default=480.0)
    parser.add_argument("--oom-tries", type=int, default=4, help="servers started to find a cap that fails the long request")
    parser.add_argument("--oom-ready-timeout", type=float, default=150.0)
    parser.add_argument("--out", type=Path)
    parser.add_argument("--import-real-size", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.import_real_size:
        print(import_real_size(args.import_real_size))
        return 0
    args.workdir.mkdir(parents=True, exist_ok=True)
    tag = prepare_model(args.workdir, args.quick)
    report: dict = {"model": tag, "quick": args.quick, "gpus": gpu_table()}

    def save() -> None:  # as it goes: a run cut short keeps what was measured
        if args.out:
            args.out.write_text(json.dumps(report, indent=1))

    for phase in args.phases.split(","):
        started = time.perf_counter()
        if phase == "e2e":
            report[phase] = {}
            phase_e2e(args.workdir, tag, args, report[phase], save)
        else:
            report[phase] = phase_workers(args.workdir, tag, args)
        report[phase]["phase_seconds"] = round(time.perf_counter() - started, 1)
        save()
    print(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
