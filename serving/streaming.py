"""``/synthesize_stream``: each text chunk's audio is encoded and sent as soon as it is generated.

A producer thread holds the device ticket and runs the engine chunk by chunk; encoded bytes reach the response
through an asyncio queue, so a slow reader never stalls the device for the others (what it has not read waits in
memory, bounded by the text limit). Everything that can be refused is refused before the first byte: validation
and the reference by the caller, the queue (429/503) here. When the client goes away, the producer stops at the
next chunk boundary and releases the device.

``framing`` lets another surface wrap the same bytes: /v1 (serving/openai_api.py) turns every encoded piece into a
server-sent event and closes with a usage event. Without it the body is the encoded audio itself.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, AsyncIterator, Callable, Protocol

from starlette.responses import StreamingResponse

from serving.synthesis import audio_headers

if TYPE_CHECKING:
    from ptbr_model.engine import Reference, SynthesisOptions
    from serving.synthesis import OutputOptions, SynthesisCore

log = logging.getLogger("ptbr.engine")
_DONE = object()


@dataclass(frozen=True)
class StreamSummary:
    """What a finished stream produced, for a framing's closing event."""

    text_chars: int  # characters of the text the model read (after normalisation), summed over its chunks
    chunks: int
    audio_seconds: float
    sample_rate: int  # the model's rate (the encoder may resample)
    seed: int


class StreamFraming(Protocol):
    """How encoded audio is put on the wire. Each method returns the bytes to send (b"" for nothing)."""

    media_type: str

    def piece(self, data: bytes) -> bytes: ...

    def done(self, summary: StreamSummary) -> bytes: ...

    def error(self, exc: BaseException) -> bytes: ...  # the stream breaks off after the headers were sent


class _DeviceStream(StreamingResponse):
    """A StreamingResponse that runs ``on_close`` as soon as the client disconnects, and always when the exchange
    ends. Starlette (ASGI spec 2.4 servers such as uvicorn) only notices a disconnect when its next send fails,
    i.e. after the next chunk was generated; watching ``receive`` for ``http.disconnect`` lets the producer stop
    at the very next chunk boundary instead."""

    def __init__(self, body: AsyncIterator[bytes], on_close: Callable[[], None], **kwargs) -> None:
        super().__init__(body, **kwargs)
        self._on_close = on_close

    async def __call__(self, scope, receive, send) -> None:
        async def watch_disconnect() -> None:
            while (await receive())["type"] != "http.disconnect":
                pass
            self._on_close()

        watcher = asyncio.ensure_future(watch_disconnect())
        try:
            await super().__call__(scope, receive, send)
        finally:
            watcher.cancel()
            self._on_close()


async def stream_synthesis(core: SynthesisCore, endpoint: str, text: str, reference: Reference,
                           options: SynthesisOptions, output: OutputOptions, started: float,
                           extra_headers: dict[str, str] | None = None,
                           framing: StreamFraming | None = None) -> StreamingResponse:
    from ptbr_model.audio_stream import StreamEncoder, stream_media_type

    engine = core.require_ready()
    # Planning (normalise, chunk with a short first chunk, seed, steps under a latency budget) raises NothingToSay
    # here, before anything is sent.
    stream = engine.iter_synthesis(text, reference, options, first_chunk_short=True)
    plan = stream.plan
    ticket = core.queue.enter()
    await ticket.wait_async()

    encoder = StreamEncoder(output.response_format, engine.sample_rate, out_rate=output.sample_rate)
    loop = asyncio.get_running_loop()
    pieces: asyncio.Queue = asyncio.Queue()
    stop = threading.Event()
    stats = {"audio_s": 0.0}

    def put(item: object) -> None:
        try:
            loop.call_soon_threadsafe(pieces.put_nowait, item)
        except RuntimeError:  # the event loop is gone (server shutting down): nobody is listening
            stop.set()

    def produce() -> None:
        loudness = None
        if output.loudness is not None:
            from ptbr_model.postprocess import StreamLoudness

            loudness = StreamLoudness(output.loudness, sample_rate=engine.sample_rate)
        try:
            for chunk in stream:  # one chunk on the device per step; stops before the next once the client is gone
                piece = chunk.wave
                if output.remove_silence and len(piece):
                    from ptbr_model.postprocess import remove_silences

                    piece = remove_silences(piece, engine.sample_rate)
                if loudness is not None and len(piece):
                    piece = loudness.process(piece)
                stats["audio_s"] += len(piece) / engine.sample_rate
                put(encoder.encode(piece))
                if stop.is_set():
                    break
            else:
                put(encoder.finish())
        except Exception as exc:  # noqa: BLE001 - reported to the response (a 503 before the headers, else logged)
            put(exc)
        finally:
            stream.close()
            ticket.release()
            core.metrics.observe_memory(engine.memory_stats())
            put(_DONE)

    producer = threading.Thread(target=produce, name="ptbr-stream", daemon=True)
    # Wait for the first chunk before the headers go out: a failure there (out of memory is most likely on the
    # first chunk) is still an ordinary JSON error (503 with Retry-After), not a 200 with an empty body. The first
    # chunk is short by design, so this costs no time to first audio: it is the first audio.
    header = encoder.start()  # before the producer's first encode()
    producer.start()
    try:
        first_item = await pieces.get()
    except BaseException:
        stop.set()
        raise
    if isinstance(first_item, BaseException):
        raise first_item

    def frame(data: bytes) -> bytes:
        return data if framing is None else framing.piece(data)

    async def body() -> AsyncIterator[bytes]:
        first = True
        if header:
            yield frame(header)
        item = first_item
        while True:
            if item is None:
                item = await pieces.get()
            if item is _DONE:
                break
            if isinstance(item, BaseException):
                log.error("streaming synthesis failed after the headers were sent", exc_info=item)
                core.reject(endpoint, item)
                if framing is not None and (tail := framing.error(item)):
                    yield tail
                return
            if item:
                if first:
                    core.metrics.first_audio.observe(time.perf_counter() - started)
                    first = False
                yield frame(item)
            item = None
        core.metrics.observe_synthesis(time.perf_counter() - started, stats["audio_s"])
        core.log_ok(endpoint, started, text_chars=len(text), chunks=len(plan.chunks), audio_s=stats["audio_s"],
                    seed=plan.seed, nfe_step=plan.nfe_step, stream=True)
        if framing is not None:
            summary = StreamSummary(text_chars=sum(len(chunk) for chunk in plan.chunks),
                                    chunks=len(plan.chunks), audio_seconds=stats["audio_s"],
                                    sample_rate=engine.sample_rate, seed=plan.seed)
            if tail := framing.done(summary):
                yield tail

    def on_close() -> None:
        stop.set()

    headers = {"X-Seed": str(plan.seed), "X-Chunks": str(len(plan.chunks)), **plan_headers(plan),
               **audio_headers(plan.removed_characters), **(extra_headers or {})}
    media_type = stream_media_type(output.response_format) if framing is None else framing.media_type
    return _DeviceStream(body(), on_close, media_type=media_type, headers=headers)


def plan_headers(plan) -> dict[str, str]:
    """X-NFE-Step (the steps used) and, when a latency model is calibrated, X-Predicted-Seconds."""
    headers = {"X-NFE-Step": str(plan.nfe_step)}
    if plan.predicted_seconds is not None:
        headers["X-Predicted-Seconds"] = f"{plan.predicted_seconds:.3f}"
    return headers
