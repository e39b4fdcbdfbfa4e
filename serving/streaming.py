"""``/synthesize_stream``: each text chunk's audio is encoded and sent as soon as it is generated.

A producer thread holds the device ticket and runs the engine chunk by chunk; encoded bytes reach the response
through an asyncio queue, so a slow reader never stalls the device for the others (what it has not read waits in
memory, bounded by the text limit). Everything that can be refused is refused before the first byte: validation
and the reference by the caller, the queue (429/503) and a failure of the first chunk (503 on out of memory) here.
When the client goes away, the producer stops at the next chunk boundary and releases the device.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from typing import TYPE_CHECKING, AsyncIterator, Callable

from starlette.responses import StreamingResponse

from serving.synthesis import audio_headers

if TYPE_CHECKING:
    from ptbr_model.engine import Reference, SynthesisOptions
    from serving.synthesis import OutputOptions, SynthesisCore

log = logging.getLogger("ptbr.engine")
_DONE = object()


class _DeviceStream(StreamingResponse):
    """A StreamingResponse that always runs ``on_close`` when the exchange ends, even if the body never started
    (a client gone before the headers were sent), so the device ticket can never leak."""

    def __init__(self, body: AsyncIterator[bytes], on_close: Callable[[], None], **kwargs) -> None:
        super().__init__(body, **kwargs)
        self._on_close = on_close

    async def __call__(self, scope, receive, send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self._on_close()


async def stream_synthesis(core: SynthesisCore, endpoint: str, text: str, reference: Reference,
                           options: SynthesisOptions, output: OutputOptions, started: float,
                           extra_headers: dict[str, str] | None = None) -> StreamingResponse:
    from dataclasses import replace

    from ptbr_model.audio_stream import StreamEncoder, stream_media_type
    from ptbr_model.engine import NothingToSay, draw_seed, iter_cross_faded
    from ptbr_model.text import prepare_text

    engine = core.require_ready()
    prepared = prepare_text(text, engine.vocab, ref_text=reference.text, ref_audio_seconds=reference.seconds,
                            speed=options.speed, normalize_text=options.normalize_text,
                            lexicon=engine.lexicon_for(options.pronunciations))
    if not prepared.chunks:
        raise NothingToSay("text", "".join(prepared.removed))
    options = replace(options, seed=draw_seed() if options.seed is None else options.seed)
    ticket = core.queue.enter()
    await ticket.wait_async()

    encoder = StreamEncoder(output.response_format, engine.sample_rate, out_rate=output.sample_rate)
    loop = asyncio.get_running_loop()
    pieces: asyncio.Queue = asyncio.Queue()
    stop = threading.Event()
    stats = {"chunks": 0, "audio_s": 0.0}

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
            waves = engine.iter_chunk_waves(reference, list(prepared.chunks), options, options.seed)
            fade = int(options.cross_fade_duration * engine.sample_rate)
            for piece in iter_cross_faded(_until(waves, stop, stats), fade):
                if output.remove_silence:
                    from ptbr_model.postprocess import remove_silences

                    piece = remove_silences(piece, engine.sample_rate)
                if loudness is not None:
                    piece = loudness.process(piece)
                stats["audio_s"] += len(piece) / engine.sample_rate
                put(encoder.encode(piece))
                if stop.is_set():
                    break
            put(encoder.finish())
        except Exception as exc:  # noqa: BLE001 - headers are gone: end the stream early and log why
            log.error("streaming synthesis failed after the headers were sent", exc_info=exc)
            put(exc)
        finally:
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

    async def body() -> AsyncIterator[bytes]:
        first = True
        if header:
            yield header
        item = first_item
        while True:
            if item is None:
                item = await pieces.get()
            if item is _DONE:
                break
            if isinstance(item, BaseException):
                core.reject(endpoint, item)
                return
            if item:
                if first:
                    core.metrics.first_audio.observe(time.perf_counter() - started)
                    first = False
                yield item
            item = None
        core.metrics.observe_synthesis(time.perf_counter() - started, stats["audio_s"])
        core.log_ok(endpoint, started, text_chars=len(text), chunks=len(prepared.chunks), audio_s=stats["audio_s"],
                    seed=options.seed, stream=True)

    def on_close() -> None:
        stop.set()
        if not producer.is_alive() and producer.ident is None:
            ticket.release()  # the body never started: nobody else will release the device

    headers = {"X-Seed": str(options.seed), "X-Chunks": str(len(prepared.chunks)),
               **audio_headers(prepared.removed), **(extra_headers or {})}
    return _DeviceStream(body(), on_close, media_type=stream_media_type(output.response_format), headers=headers)


def _until(waves, stop: threading.Event, stats: dict):
    """The engine's chunk waveforms, stopping before the next chunk once the client is gone."""
    for wave in waves:
        stats["chunks"] += 1
        yield wave
        if stop.is_set():
            return
