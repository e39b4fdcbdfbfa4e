#!/usr/bin/env python
"""Drive a running f5tts-ptbr server through its routes and check the audio it answers.

    python scripts/smoke_http.py http://127.0.0.1:3000 [--nfe-step 2] [--wait-ready 600]

Used by scripts/smoke_container.sh and scripts/smoke_compose.sh against the container image. Routes newer than
/synthesize (/synthesize_stream, the voice routes, /v1/audio/speech) are exercised when the server's OpenAPI
document (/docs.json) lists them, and skipped with a line on stderr when it does not. Prints one JSON object on
stdout (what ran, durations, statuses); exits 1 when any check failed.
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import time
import uuid

import httpx
import numpy as np
import soundfile as sf

SAMPLE_RATE = 24_000
TEXT = "Olá! Este é um teste do contêiner, com 3 frases. Tudo certo?"
REFERENCE_TEXT = "Esta é a voz de referência para o teste do contêiner."


def say(line: str) -> None:
    print(f"[smoke] {line}", file=sys.stderr, flush=True)


class CheckFailed(Exception):
    pass


def reference_wav(seconds: float = 3.0, rate: int = SAMPLE_RATE) -> bytes:
    """A voice-like test signal: a gliding harmonic tone under syllable-rate bursts, as a 16-bit WAV."""
    t = np.arange(int(seconds * rate)) / rate
    pitch = 140.0 + 25.0 * np.sin(2 * np.pi * 0.7 * t)
    phase = 2 * np.pi * np.cumsum(pitch) / rate
    tone = sum(np.sin(k * phase) / k for k in range(1, 8))
    envelope = 0.5 + 0.5 * np.sin(2 * np.pi * 4.0 * t) ** 2
    signal = 0.25 * tone * envelope / np.max(np.abs(tone))
    buffer = io.BytesIO()
    sf.write(buffer, signal.astype(np.float32), rate, format="WAV", subtype="PCM_16")
    return buffer.getvalue()


def check_audio(body: bytes, *, raw_pcm: bool = False, header_duration: str | None = None) -> dict:
    """Decode the answer (a container format, or raw s16le mono at 24 kHz) and check it is real audio."""
    if raw_pcm:
        if len(body) % 2:
            raise CheckFailed(f"pcm body has an odd byte count {len(body)}")
        samples = np.frombuffer(body, dtype="<i2").astype(np.float32) / 32768.0
        rate = SAMPLE_RATE
    else:
        try:
            samples, rate = sf.read(io.BytesIO(body), dtype="float32")
        except Exception as exc:  # soundfile raises its own error types; any of them fails the check
            raise CheckFailed(f"answer does not decode as audio: {exc}") from exc
    duration = len(samples) / rate
    if duration < 0.2 or not np.all(np.isfinite(samples)):
        raise CheckFailed(f"audio too short or not finite: {duration:.3f} s")
    if header_duration is not None and abs(float(header_duration) - duration) > 0.05:
        raise CheckFailed(f"X-Audio-Duration {header_duration} but the audio lasts {duration:.3f} s")
    return {"sample_rate": rate, "duration_s": round(duration, 3), "bytes": len(body)}


class Smoke:
    def __init__(self, base_url: str, nfe_step: int) -> None:
        self.client = httpx.Client(base_url=base_url, timeout=httpx.Timeout(600.0, connect=5.0))
        self.form = {"nfe_step": str(nfe_step)}
        self.reference = reference_wav()
        self.results: dict[str, dict] = {}
        self.failed: list[str] = []
        self.paths: set[str] = set()
        self.voice_id: str | None = None

    def run(self, name: str, check) -> None:
        started = time.perf_counter()
        try:
            result = check() or {}
            result["ok"] = True
            say(f"{name}: ok {json.dumps(result)}")
        except Exception as exc:  # every failure is recorded and reported; the run goes on to the next route
            result = {"ok": False, "error": f"{type(exc).__name__}: {exc}"[:500]}
            self.failed.append(name)
            say(f"{name}: FAILED {result['error']}")
        result["seconds"] = round(time.perf_counter() - started, 3)
        self.results[name] = result

    def skip(self, name: str, why: str) -> None:
        say(f"{name}: skipped ({why})")
        self.results[name] = {"skipped": why}

    def expect(self, response: httpx.Response, status: int = 200) -> httpx.Response:
        if response.status_code != status:
            raise CheckFailed(f"{response.request.method} {response.request.url.path} → {response.status_code}: "
                              f"{response.text[:300]}")
        return response

    def wait_ready(self, timeout: float) -> float:
        started = time.perf_counter()
        while time.perf_counter() - started < timeout:
            try:
                if self.client.get("/readyz", timeout=5.0).status_code == 200:
                    return time.perf_counter() - started
            except httpx.TransportError:
                pass
            time.sleep(0.5)
        raise TimeoutError(f"/readyz not 200 within {timeout} s")

    # checks --------------------------------------------------------------------------------------------------

    def openapi(self) -> dict:
        document = self.expect(self.client.get("/docs.json")).json()
        self.paths = set(document.get("paths", {}))
        return {"paths": sorted(self.paths)}

    def model_info(self) -> dict:
        info = self.expect(self.client.post("/model_info", json={})).json()
        return {key: info.get(key) for key in ("tag", "device", "dtype", "demo") if key in info}

    def synthesize(self) -> dict:
        response = self.expect(self.client.post(
            "/synthesize", data={"text": TEXT, "reference_text": REFERENCE_TEXT, **self.form},
            files={"reference_audio": ("reference.wav", self.reference, "audio/wav")},
        ))
        return {**check_audio(response.content, header_duration=response.headers.get("x-audio-duration")),
                "seed": response.headers.get("x-seed")}

    def synthesize_stream(self) -> dict:
        chunks: list[bytes] = []
        first_byte = None
        started = time.perf_counter()
        with self.client.stream(
            "POST", "/synthesize_stream",
            data={"text": TEXT, "reference_text": REFERENCE_TEXT, "response_format": "pcm", **self.form},
            files={"reference_audio": ("reference.wav", self.reference, "audio/wav")},
        ) as response:
            if response.status_code != 200:
                response.read()
                self.expect(response)
            for chunk in response.iter_bytes():
                if chunk and first_byte is None:
                    first_byte = time.perf_counter() - started
                chunks.append(chunk)
        return {**check_audio(b"".join(chunks), raw_pcm=True), "reads": len(chunks),
                "first_byte_s": round(first_byte or 0.0, 3)}

    def create_voice(self) -> dict:
        name = f"smoke-{uuid.uuid4().hex[:8]}"
        response = self.expect(self.client.post(
            "/create_voice", data={"name": name, "reference_text": REFERENCE_TEXT},
            files={"reference_audio": ("reference.wav", self.reference, "audio/wav")},
        ))
        voice = response.json()
        voice = voice.get("voice", voice) if isinstance(voice, dict) else {}
        self.voice_id = voice.get("id")
        if not self.voice_id:
            raise CheckFailed(f"/create_voice answered no id: {response.text[:300]}")
        return {"id": self.voice_id, "name": name}

    def synthesize_with_voice(self) -> dict:
        response = self.expect(self.client.post(
            "/synthesize", data={"text": TEXT, "voice": self.voice_id, **self.form},
        ))
        return check_audio(response.content, header_duration=response.headers.get("x-audio-duration"))

    def openai_speech(self) -> dict:
        models = self.client.get("/v1/models")
        model = "f5tts-ptbr"
        if models.status_code == 200 and models.json().get("data"):
            model = models.json()["data"][0]["id"]
        response = self.expect(self.client.post("/v1/audio/speech", json={
            "model": model, "input": TEXT, "voice": self.voice_id, "response_format": "wav",
        }))
        return {**check_audio(response.content), "model": model}

    def delete_voice(self) -> dict:
        self.expect(self.client.post("/delete_voice", json={"voice": self.voice_id}))
        return {"id": self.voice_id}

    def metrics(self) -> dict:
        text = self.expect(self.client.get("/metrics")).text
        names = sorted({line.split("{")[0].split(" ")[0] for line in text.splitlines()
                        if line.startswith("ptbr_")})
        if not names:
            raise CheckFailed("/metrics has no ptbr_ series")
        return {"ptbr_series": len(names),
                "queue_metrics": [n for n in names if n.startswith(("ptbr_queue_length", "ptbr_queue_in_flight"))]}


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("base_url")
    parser.add_argument("--nfe-step", type=int, default=2, help="flow steps per request (2: fast on a CPU)")
    parser.add_argument("--wait-ready", type=float, default=0.0, help="first wait this long for /readyz")
    args = parser.parse_args(argv)

    smoke = Smoke(args.base_url.rstrip("/"), args.nfe_step)
    if args.wait_ready:
        smoke.run("readyz", lambda: {"waited_s": round(smoke.wait_ready(args.wait_ready), 3)})
    smoke.run("openapi", smoke.openapi)
    smoke.run("model_info", smoke.model_info)
    smoke.run("synthesize", smoke.synthesize)
    routes = set(smoke.paths)
    # An OpenAI app mounted beside the service may be missing from BentoML's OpenAPI document: ask it directly.
    if "/v1/audio/speech" not in routes and smoke.client.get("/v1/models").status_code == 200:
        say("/v1/models answers although /docs.json does not list /v1: exercising /v1/audio/speech")
        routes.add("/v1/audio/speech")
    if "/synthesize_stream" in routes:
        smoke.run("synthesize_stream", smoke.synthesize_stream)
    else:
        smoke.skip("synthesize_stream", "route not in /docs.json")
    if "/create_voice" in routes:
        smoke.run("create_voice", smoke.create_voice)
    else:
        smoke.skip("create_voice", "route not in /docs.json")
    if smoke.voice_id:
        smoke.run("synthesize_with_voice", smoke.synthesize_with_voice)
    else:
        smoke.skip("synthesize_with_voice", "no saved voice")
    if "/v1/audio/speech" in routes and smoke.voice_id:
        smoke.run("v1_audio_speech", smoke.openai_speech)
    else:
        smoke.skip("v1_audio_speech", "route not in /docs.json" if "/v1/audio/speech" not in routes
                   else "no saved voice to speak with")
    if smoke.voice_id and "/delete_voice" in routes:
        smoke.run("delete_voice", smoke.delete_voice)
    smoke.run("metrics", smoke.metrics)

    print(json.dumps({"ok": not smoke.failed, "failed": smoke.failed, "checks": smoke.results}))
    return 1 if smoke.failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
