"""The synthesizer: loads a stored model for one device and turns (reference, text) into a waveform.

It keeps upstream's model math (``CFM.sample`` with the same duration rule, loudness handling and cross-fade as
``f5_tts.infer.utils_infer.infer_batch_process``) and changes how it runs:
- the model is built and loaded on the CPU, cast, and only then moved, so the device sees the weights once;
- float16 on every CUDA GPU (upstream only picks it from compute capability 7.0, leaving a 1050 Ti in float32);
- text chunks run one after another (upstream runs them all at once in a thread pool: VRAM × chunks), and each
  chunk's audio can be handed out as soon as it exists (``iter_synthesis``), cross-fade included;
- every request has a seed (drawn when not given) and the same input + seed gives the same audio;
- every request's FLOPs are known before it runs (ptbr_model.cost), so its time can be predicted and a latency
  budget met by choosing the step count;
- no temp files, no global caches, no Whisper: the reference arrives decoded and transcribed.
"""

from __future__ import annotations

import logging
import math
import os
import secrets
import shutil
import sysconfig
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, TypeVar

import numpy as np
import torch

from ptbr_model import f5
from ptbr_model.cost import NO_WORK, CostModel, LatencyModel, Observation, RequestCost, Work, choose_nfe, mel_frames
from ptbr_model.sampler import StepGraphCache, reference_mel, sample_mel, sequence_frames
from ptbr_model.store import StoredModel, read_stored_weights
from ptbr_model.text import Lexicon, fit_to_vocab, normalize, prepare_text, vocab_indices
from ptbr_model.text.chunking import DEFAULT_FIRST_CHUNK_BYTES

log = logging.getLogger("ptbr.engine")

MAX_SEED = 2**31 - 1
# Below this many UTF-8 bytes upstream slows a chunk down to speed 0.3 (so a word is not swallowed).
SHORT_CHUNK_BYTES = 10
SHORT_CHUNK_SPEED = 0.3
# CFM.sample skips the unconditional pass below this guidance (one forward per step instead of a packed pair).
CFG_OFF_BELOW = 1e-5
WARMUP_TEXT = "Olá, tudo bem?"
WARMUP_REFERENCE_TEXT = "Isto é um teste de aquecimento."
# The latency model's calibration: a longer text, on the warm-up's 1.5 s reference and on a 6 s one, so the
# sequence (and the attention's share of the FLOPs) grows while the steps stay few.
CALIBRATION_TEXT = ("Quando a chuva passou, a cidade inteira saiu para a rua, e as crianças correram até a praça "
                    "para brincar.")
CALIBRATION_REFERENCE_TEXT = ("Isto é um teste de aquecimento, com uma referência mais longa, para medir quanto custa "
                              "uma frase comum.")
# (reference seconds, text, steps): two step counts on one short sequence (≈ 200 frames), then ≈ 560 and ≈ 1,200
# frames. At the real size the last two are ≈ 1 and ≈ 2.3 TFLOP: ≈ 0.6 and 1.5 s a run on a GTX 1050 Ti.
CALIBRATION_POINTS = ((1.5, WARMUP_TEXT, 2), (1.5, WARMUP_TEXT, 5), (1.5, CALIBRATION_TEXT, 2),
                      (6.0, WARMUP_TEXT, 2), (6.0, CALIBRATION_TEXT, 2))
# On a fast GPU the points above take ~10-20 ms, mostly fixed costs, and their FLOP differences drown in timing
# noise (measured on an H100: fits that put everything on the FLOPs). Their steps are multiplied (up to 8×) until the
# first point takes about this long.
CALIBRATION_TARGET_S = 0.1
CALIBRATION_MAX_STEP_FACTOR = 8
# A calibration run slower than this is timed once: the device is slow enough that noise is small against it, and
# its CUDA-graph captures are priced as one more step instead of being timed (FLOP-bound: a capture runs one step).
CALIBRATION_SLOW_RUN_S = 1.0

T = TypeVar("T")


class NothingToSay(ValueError):
    """After normalisation and vocabulary filtering a text holds nothing the model can read."""

    def __init__(self, field: str, removed: str) -> None:
        super().__init__(f"nothing left to read after removing characters the model cannot read ({removed!r})")
        self.field = field


class TooLongForModel(ValueError):
    """One chunk's sequence (reference + generated frames) is longer than the model can take (f5.max_sequence_frames)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


class DeviceOutOfMemory(RuntimeError):
    """The device ran out of memory for this request; memory was released and the next request can proceed."""


@dataclass(frozen=True)
class SynthesisOptions:
    nfe_step: int = 16
    cfg_strength: float = 2.0
    sway_sampling_coef: float = -1.0
    speed: float = 1.0
    cross_fade_duration: float = 0.15
    seed: int | None = None
    normalize_text: bool = True
    # A request's own respellings (word, respelling), over the synthesizer's lexicon; a tuple keeps this hashable.
    pronunciations: tuple[tuple[str, str], ...] = ()
    # Seconds of audio to generate for one chunk (F5-TTS's duration control: the model fills exactly the frames it
    # is given). None: upstream's rule, the reference's pace applied to the chunk's bytes (``chunk_frames``).
    duration: float | None = None
    # Seconds the whole synthesis may take: the engine lowers the steps (never above ``nfe_step``, down to 7) until
    # the predicted time fits. None = off. The caller leaves it None when the client named nfe_step explicitly.
    latency_budget_s: float | None = None


@dataclass(frozen=True)
class Reference:
    """A reference ready for the model: mono 24 kHz float32 at the training loudness, and its transcript."""

    wave: torch.Tensor  # (1, samples), float32, CPU
    text: str  # as the model reads it: normalised, in-vocabulary, ending in upstream's punctuation
    rms: float  # loudness before normalisation; the output is scaled back to it, as upstream does
    sample_rate: int

    @property
    def seconds(self) -> float:
        return self.wave.shape[-1] / self.sample_rate


@dataclass
class SynthesisResult:
    wave: np.ndarray  # float32 mono
    sample_rate: int
    seed: int
    chunks: list[str]
    removed_characters: list[str]
    elapsed_seconds: float
    peak_memory_bytes: int | None = None
    normalized_text: str = ""
    nfe_step: int = 0  # the steps used (the latency budget may have lowered them)
    predicted_seconds: float | None = None  # predicted before sampling; None before the warm-up calibrated
    first_audio_seconds: float | None = None  # when the first chunk's audio was ready
    flops: int = 0  # the request's FLOPs (ptbr_model.cost)

    @property
    def audio_seconds(self) -> float:
        return len(self.wave) / self.sample_rate


@dataclass(frozen=True)
class ChunkWork:
    """What one chunk will run, known before it runs."""

    text: str
    model_text: list[list[str]]  # upstream's symbols for reference transcript + chunk
    duration: int  # upstream's duration rule (frames, reference included)
    frames: int  # the sequence the DiT will see (CFM.sample may grow ``duration`` to fit the text)


@dataclass(frozen=True)
class SynthesisPlan:
    """Everything decided before the first step: chunks, seed, steps, FLOPs and the predicted time."""

    chunks: tuple[str, ...]
    normalized_text: str
    removed_characters: tuple[str, ...]
    seed: int
    nfe_step: int
    cost: RequestCost
    predicted_seconds: float | None
    predicted_first_chunk_seconds: float | None
    latency_budget_s: float | None
    work: tuple[ChunkWork, ...] = field(repr=False)
    captures: tuple[bool, ...] | None = None  # per chunk: a CUDA graph will be captured (None: no graphs here)

    @property
    def flops(self) -> int:
        return self.cost.flops(self.nfe_step)


@dataclass(frozen=True)
class ChunkAudio:
    """One piece of a streamed synthesis. Concatenating every piece's ``wave`` gives exactly (bit for bit) the
    waveform ``synthesize`` returns for the same chunks: each piece ends where the next chunk's cross-fade would
    start, so the fade's tail is held back and arrives with the next piece (the last piece carries the rest)."""

    wave: np.ndarray  # float32 mono, ready to encode and send; may be empty (a chunk shorter than the fade)
    sample_rate: int
    index: int  # 0-based chunk index
    total: int  # number of chunks of the request
    text: str  # the chunk's text as the model read it
    elapsed_seconds: float  # since iter_synthesis was called

    @property
    def seconds(self) -> float:
        return len(self.wave) / self.sample_rate

    @property
    def last(self) -> bool:
        return self.index == self.total - 1


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def resolve_dtype(dtype: str, device: torch.device) -> torch.dtype:
    if dtype == "auto":
        # Any CUDA device, compute capability 6.x included: on a 4 GB Pascal card FP16 is what makes the model fit.
        return torch.float16 if device.type == "cuda" else torch.float32
    return {"float16": torch.float16, "float32": torch.float32}[dtype]


def reference_text_for_model(text: str) -> str:
    """Upstream's two punctuation rules, in order: ``preprocess_ref_audio_text`` makes the transcript end with
    '. ', then ``infer_batch_process`` appends a space when the last character is single-byte."""
    if not text.endswith(". ") and not text.endswith("。"):
        text = text + " " if text.endswith(".") else text + ". "
    if len(text[-1].encode("utf-8")) == 1:
        text = text + " "
    return text


class CrossFadeJoiner:
    """Upstream's linear cross-fade (``infer_batch_process``'s inline loop), applied as chunks arrive.

    ``push`` returns the part of the joined waveform that no later chunk can change: everything but the last
    ``fade_samples`` (those are faded with the next chunk's start), or everything for the last chunk. The pieces
    concatenated equal upstream's joined waveform bit for bit: the same float64 fade arithmetic on the same values,
    cast to float32 only on the way out.
    """

    def __init__(self, fade_samples: int) -> None:
        self.fade_samples = max(int(fade_samples), 0)
        self._held: np.ndarray | None = None  # the joined waveform's tail not handed out yet
        self._length = 0  # length of the joined waveform so far (handed out + held)

    def push(self, wave: np.ndarray, last: bool) -> np.ndarray:
        if self._held is None:
            joined, length = wave, len(wave)
        else:
            # Upstream: overlap = min(fade, len(final), len(following)). The held tail is the last
            # min(fade, len(final)) samples of ``final``, so final[-overlap:] lies inside it.
            overlap = min(self.fade_samples, self._length, len(wave))
            held = self._held
            if overlap <= 0:
                joined = np.concatenate([held, wave])
            else:
                faded = held[-overlap:] * np.linspace(1, 0, overlap) + wave[:overlap] * np.linspace(0, 1, overlap)
                joined = np.concatenate([held[:-overlap], faded, wave[overlap:]])
            length = self._length - overlap + len(wave)
        self._length = length
        keep = 0 if last else min(self.fade_samples, length)
        ready = len(joined) - keep
        self._held = joined[ready:]
        return joined[:ready].astype(np.float32, copy=False)


def cross_fade_concat(waves: list[np.ndarray], fade_samples: int) -> np.ndarray:
    """Join chunk waveforms with linear cross-fades, exactly as upstream's ``infer_batch_process`` does inline."""
    joiner = CrossFadeJoiner(fade_samples)
    pieces = [joiner.push(wave, index == len(waves) - 1) for index, wave in enumerate(waves)]
    return np.concatenate(pieces).astype(np.float32, copy=False) if pieces else np.zeros(0, dtype=np.float32)


def draw_seed() -> int:
    return secrets.randbelow(MAX_SEED + 1)


@dataclass
class Synthesizer:
    model: torch.nn.Module
    vocoder: torch.nn.Module
    vocab: frozenset[str]
    device: torch.device
    dtype: torch.dtype
    stored: StoredModel
    target_rms: float = 0.1
    load_seconds: float = 0.0
    load_peak_bytes: int | None = None
    resident_bytes: int = 0  # device memory held once loaded (weights and vocoder); 0 on the CPU
    step_graphs: StepGraphCache | None = None  # CUDA graphs of the transformer step (CUDA only)
    lexicon: Lexicon | None = None  # pronunciation lexicon (built-in + PTBR_LEXICON_FILE); None = the built-in one
    compiled: bool = False  # DiT blocks run torch.compile'd kernels
    compile_status: str = "eager: not asked"  # one line: what was decided about compilation, and why
    first_chunk_bytes: int = DEFAULT_FIRST_CHUNK_BYTES  # iter_synthesis(first_chunk_short=True)'s first chunk
    latency: LatencyModel | None = None  # calibrated by calibrate_latency (load_checked's warm-up)
    calibration: tuple[Observation, ...] = ()  # the timings it was fitted to (then the captures' extra seconds)
    cost_model: CostModel = field(init=False)
    _warned_uncalibrated: bool = field(default=False, init=False, repr=False)
    # Test hook (PTBR_TEST_OOM_TRIGGER, via out_of_memory_on): called with each chunk's text inside the memory guard,
    # where a real CUDA out-of-memory error would be raised. None in production.
    fault_hook: Callable[[str], None] | None = None
    _hop_length: int = field(init=False)
    _sample_rate: int = field(init=False)

    def __post_init__(self) -> None:
        self._hop_length = int(self.stored.mel["hop_length"])
        self._sample_rate = int(self.stored.mel["target_sample_rate"])
        self.cost_model = CostModel.build(self.stored.arch, self.stored.mel, self.vocoder)

    @property
    def sample_rate(self) -> int:
        return self._sample_rate

    # --- loading ---------------------------------------------------------------------------------------------

    @classmethod
    def load(cls, stored: StoredModel, device: str = "auto", dtype: str = "auto", target_rms: float = 0.1,
             cuda_graphs: int = 4, compile_blocks: bool | str = False, *, compile_cache_dir: Path | None = None,
             first_chunk_bytes: int = DEFAULT_FIRST_CHUNK_BYTES, lexicon: Lexicon | None = None,
             memory_fraction: float | None = None) -> Synthesizer:
        """``cuda_graphs``: how many step graphs (one per utterance length) to keep; 0 runs every step eagerly.
        ``compile_blocks``: torch.compile the DiT blocks — "auto" (where the GPU and toolchain allow), "true"/True
        (on any CUDA GPU of compute capability 7.0+), "false"/False; the caller's warm-up verifies it
        (load_checked). ``compile_cache_dir``: where Inductor and Triton keep compiled kernels across restarts.
        ``lexicon``: the pronunciation lexicon texts are read with (``ptbr_model.text.load_lexicon``).
        ``memory_fraction``: cap of this process's share of the GPU's memory (PyTorch's caching allocator raises
        out-of-memory beyond it); ignored on the CPU."""
        started = time.perf_counter()
        target = resolve_device(device)
        torch_dtype = resolve_dtype(dtype, target)
        if target.type == "cuda":
            if memory_fraction is not None:  # it wants an index; "cuda" alone means the current device
                index = target.index if target.index is not None else torch.cuda.current_device()
                torch.cuda.set_per_process_memory_fraction(memory_fraction, index)
            torch.cuda.reset_peak_memory_stats(target)
        vocab_map = vocab_indices(stored.vocab_path)
        # Build and load on the CPU, cast, then move: loading straight onto the GPU holds the fp32 copy and the
        # model there at once (twice the weights at peak).
        model = f5.build_cfm(stored.arch, stored.mel, vocab_char_map=vocab_map)
        state = read_stored_weights(stored)
        missing, unexpected = model.load_state_dict(state, strict=False)
        del state
        # The mel front-end is rebuilt from config, never stored; anything else missing means a corrupted store.
        missing = [key for key in missing if not key.startswith("mel_spec.")]
        if missing or unexpected:
            raise RuntimeError(f"stored weights of {stored.tag} do not match its config: {missing[:3]} {unexpected[:3]}")
        model = model.to(torch_dtype).to(target).eval()
        wanted, status = compile_decision(compile_blocks, target)
        compiled = False
        if wanted:
            if compile_cache_dir is not None:
                use_compile_cache(Path(compile_cache_dir))
            compiled = compile_dit_blocks(model.transformer, target)
            status = "compiled (torch.compile, dynamic shapes)" if compiled else status
        vocoder = f5.load_vocos(stored.vocoder_dir / "config.yaml", stored.vocoder_dir / "pytorch_model.bin")
        vocoder = vocoder.to(target).eval()  # the vocoder stays float32, as upstream
        peak = torch.cuda.max_memory_allocated(target) if target.type == "cuda" else None
        resident = torch.cuda.memory_allocated(target) if target.type == "cuda" else 0
        return cls(
            model=model,
            vocoder=vocoder,
            vocab=frozenset(vocab_map),
            device=target,
            dtype=torch_dtype,
            stored=stored,
            target_rms=target_rms,
            load_seconds=time.perf_counter() - started,
            load_peak_bytes=peak,
            resident_bytes=resident,
            step_graphs=StepGraphCache(cuda_graphs) if (target.type == "cuda" and cuda_graphs > 0) else None,
            lexicon=lexicon,
            compiled=compiled,
            compile_status=status,
            first_chunk_bytes=first_chunk_bytes,
        )

    # --- references --------------------------------------------------------------------------------------------

    def lexicon_for(self, pronunciations: tuple[tuple[str, str], ...] = ()) -> Lexicon:
        """The synthesizer's lexicon with a request's entries over it (validated by the caller)."""
        lexicon = self.lexicon if self.lexicon is not None else Lexicon.builtin()
        return lexicon.merged(dict(pronunciations)) if pronunciations else lexicon

    def make_reference(self, wave_24k: np.ndarray, transcript: str, *, normalize_text: bool = True,
                       pronunciations: tuple[tuple[str, str], ...] = ()) -> Reference:
        """``wave_24k``: mono float32 at the model's rate (ptbr_model.audio.prepare_reference's output).
        The transcript is read with the same lexicon as the text, so it matches what the speaker said."""
        text = normalize(transcript, lexicon=self.lexicon_for(pronunciations)) if normalize_text else transcript
        text, removed = fit_to_vocab(text, self.vocab)
        if not text.strip():  # the duration rule divides by the transcript's length: it must say something
            raise NothingToSay("reference_text", "".join(removed))
        wave = torch.from_numpy(np.ascontiguousarray(wave_24k, dtype=np.float32)).unsqueeze(0)
        rms = float(torch.sqrt(torch.mean(torch.square(wave))))
        if rms < self.target_rms:
            wave = wave * self.target_rms / rms
        return Reference(wave=wave, text=reference_text_for_model(text.strip()), rms=rms, sample_rate=self.sample_rate)

    # --- planning ----------------------------------------------------------------------------------------------

    def plan(self, text: str, reference: Reference, options: SynthesisOptions, *,
             first_chunk_short: bool = False) -> SynthesisPlan:
        """Chunk the text, fix the seed, and, from each chunk's sequence length, the FLOPs, the step count (the
        latency budget's choice, when one is set and the latency model is calibrated) and the predicted seconds.
        Raises NothingToSay when nothing speakable is left. Cheap: no model call."""
        prepared = prepare_text(
            text,
            self.vocab,
            ref_text=reference.text,
            ref_audio_seconds=reference.seconds,
            speed=options.speed,
            normalize_text=options.normalize_text,
            lexicon=self.lexicon_for(options.pronunciations),
            first_chunk_bytes=self.first_chunk_bytes if first_chunk_short else None,
        )
        if not prepared.chunks:
            raise NothingToSay("text", "".join(prepared.removed))
        seed = draw_seed() if options.seed is None else options.seed
        work = tuple(self._chunk_work(reference, chunk, options) for chunk in prepared.chunks)
        ref_frames = reference.wave.shape[-1] // self._hop_length
        self._check_length(work, ref_frames, options)
        cost = self.cost_model.request_cost([(item.frames, item.frames - ref_frames) for item in work],
                                            reference.wave.shape[-1], cfg=options.cfg_strength >= CFG_OFF_BELOW)
        captures = None
        if self.step_graphs is not None:  # lengths not in the graph cache pay a capture: part of the prediction
            captures = tuple(self.step_graphs.would_capture([item.frames for item in work], options.cfg_strength))
        nfe_step, predicted, first = options.nfe_step, None, None
        if self.latency is not None:
            if options.latency_budget_s is not None:
                nfe_step, predicted = choose_nfe(cost, self.latency, options.latency_budget_s, options.nfe_step,
                                                 captures=captures)
            else:
                predicted = self.latency.predict_request(cost, nfe_step, captures)
            first_work = cost.chunk_work(0, nfe_step, bool(captures and captures[0]))
            first = self.latency.predict(first_work + Work(cost.mel_flops, 0, 0, 0))
        elif options.latency_budget_s is not None and not self._warned_uncalibrated:
            self._warned_uncalibrated = True  # once per engine, not once per request
            log.warning("latency budget ignored: no calibrated latency model (the warm-up calibrates it)")
        return SynthesisPlan(
            chunks=prepared.chunks,
            normalized_text=prepared.text,
            removed_characters=prepared.removed,
            seed=seed,
            nfe_step=nfe_step,
            cost=cost,
            predicted_seconds=predicted,
            predicted_first_chunk_seconds=first,
            latency_budget_s=options.latency_budget_s,
            work=work,
            captures=captures,
        )

    def _check_length(self, work: tuple[ChunkWork, ...], ref_frames: int, options: SynthesisOptions) -> None:
        limit = f5.max_sequence_frames(self.model)
        longest = max((item.frames for item in work), default=0)
        if limit is None or longest <= limit:
            return
        seconds = self._hop_length / self.sample_rate
        room = max(0.0, (limit - ref_frames) * seconds)
        if options.duration is not None:
            raise TooLongForModel("duration", f"{options.duration:g} s after a {ref_frames * seconds:.1f}-second "
                                  f"reference is over what the model can take in one utterance "
                                  f"({limit * seconds:.1f} s with the reference): at most {room:.1f} s here")
        raise TooLongForModel("reference_audio", f"a chunk would last {(longest - ref_frames) * seconds:.1f} s after "
                              f"a {ref_frames * seconds:.1f}-second reference, over the model's "
                              f"{limit * seconds:.1f} s: use a shorter reference or a faster speed")

    def _chunk_work(self, reference: Reference, chunk: str, options: SynthesisOptions) -> ChunkWork:
        """Upstream's duration rule (infer_batch_process) or the requested duration (``chunk_frames``), and the
        sequence CFM.sample will actually run."""
        samples = reference.wave.shape[-1]
        ref_frames = samples // self._hop_length
        duration = ref_frames + self.chunk_frames(reference, chunk, options)
        model_text = f5.to_model_text([reference.text + chunk])
        frames = sequence_frames(len(model_text[0]), mel_frames(samples, self._hop_length), duration)
        return ChunkWork(text=chunk, model_text=model_text, duration=duration, frames=frames)

    # --- synthesis ---------------------------------------------------------------------------------------------

    def iter_synthesis(self, text: str, reference: Reference, options: SynthesisOptions, *,
                       first_chunk_short: bool = True) -> SynthesisStream:
        """Synthesise chunk by chunk, yielding each chunk's audio as soon as it is ready (see ChunkAudio).

        Planning happens here, before anything is yielded: NothingToSay is raised by this call (so a route can
        answer 400 before it starts a response), and ``stream.plan`` already holds the seed, the step count and the
        predicted seconds (for response headers). Sampling happens in ``next()``: each call runs one chunk (it may
        raise DeviceOutOfMemory). ``first_chunk_short`` makes the first chunk a clause of at most
        ``first_chunk_bytes`` so the first audio comes early; the chunks after keep the normal size.
        """
        started = time.perf_counter()
        plan = self.plan(text, reference, options, first_chunk_short=first_chunk_short)
        return SynthesisStream(self, plan, reference, options, started)

    def synthesize(self, text: str, reference: Reference, options: SynthesisOptions, *,
                   first_chunk_short: bool = False) -> SynthesisResult:
        """The whole waveform at once: ``iter_synthesis`` run to its end (normal chunking by default)."""
        stream = self.iter_synthesis(text, reference, options, first_chunk_short=first_chunk_short)
        pieces = [piece.wave for piece in stream]
        return stream.result(np.concatenate(pieces).astype(np.float32, copy=False))

    def iter_chunk_waves(
        self, reference: Reference, chunks: list[str], options: SynthesisOptions, seed: int
    ) -> Iterator[np.ndarray]:
        """One waveform per given chunk (no cross-fade), sequentially; chunk i is seeded with seed + i."""
        wave = reference.wave.to(self.device)
        with torch.inference_mode():
            mel = self._guard_memory(lambda: reference_mel(self.model, wave))
        for index, chunk in enumerate(chunks):
            work = self._chunk_work(reference, chunk, options)
            chunk_seed = (seed + index) % (MAX_SEED + 1)
            yield self._guard_memory(
                lambda: self._synthesize_chunk(reference, wave, mel, work, options, options.nfe_step, chunk_seed))

    def chunk_frames(self, reference: Reference, chunk: str, options: SynthesisOptions) -> int:
        """Mel frames generated for ``chunk`` after the reference (``hop_length`` samples each): ``options.duration``
        when set, else upstream's rule (the reference's frames per byte times the chunk's bytes, over the speed;
        chunks under 10 bytes at speed 0.3)."""
        hop = self._hop_length
        if options.duration is not None:
            return max(1, round(options.duration * self.sample_rate / hop))
        ref_frames = reference.wave.shape[-1] // hop
        ref_text_bytes = len(reference.text.encode("utf-8"))
        chunk_bytes = len(chunk.encode("utf-8"))
        speed = SHORT_CHUNK_SPEED if chunk_bytes < SHORT_CHUNK_BYTES else options.speed
        return int(ref_frames / ref_text_bytes * chunk_bytes / speed)

    def natural_seconds(self, reference: Reference, chunk: str, options: SynthesisOptions) -> float:
        """How long ``chunk`` lasts when generated without a duration target."""
        frames = self.chunk_frames(reference, chunk, replace(options, duration=None))
        return frames * self._hop_length / self.sample_rate

    def _synthesize_chunk(self, reference: Reference, wave: torch.Tensor, mel: torch.Tensor, work: ChunkWork,
                          options: SynthesisOptions, nfe_step: int, seed: int) -> np.ndarray:
        if self.fault_hook is not None:  # test hook: raises where a real CUDA out-of-memory would
            self.fault_hook(work.text)
        ref_frames = reference.wave.shape[-1] // self._hop_length
        with torch.inference_mode():
            generated = sample_mel(
                self.model,
                wave,
                work.model_text,
                work.duration,
                steps=nfe_step,
                cfg_strength=options.cfg_strength,
                sway_sampling_coef=options.sway_sampling_coef,
                seed=seed,
                graphs=self.step_graphs,
                cond_mel=mel,
            )
            generated = generated.to(torch.float32)[:, ref_frames:, :].permute(0, 2, 1)
            audio = self.vocoder.decode(generated)
            if reference.rms < self.target_rms:
                audio = audio * reference.rms / self.target_rms
            return audio.squeeze().cpu().numpy().astype(np.float32, copy=False)

    def _guard_memory(self, run: Callable[[], T]) -> T:
        try:
            return run()
        except torch.cuda.OutOfMemoryError as exc:
            # CUDA's message goes on to the GPU's capacity and this process's memory: a client needs the first two
            # sentences ("CUDA out of memory. Tried to allocate 24.00 MiB"), not the box's layout.
            first = str(exc).splitlines()[0] if str(exc) else "CUDA out of memory"
            message = ". ".join(first.split(". ")[:2]).rstrip(".")
        # Out of the handler, the traceback and the frames that held the failed request's tensors are gone: only now
        # does emptying the cache give their memory back, before anyone else allocates.
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        raise DeviceOutOfMemory(message)

    # --- health ------------------------------------------------------------------------------------------------

    def _warmup_reference(self, seconds: float = 1.5) -> Reference:
        t = np.arange(int(seconds * self.sample_rate), dtype=np.float32) / self.sample_rate
        tone = 0.1 * np.sin(2 * math.pi * 180.0 * t) * (1 + 0.5 * np.sin(2 * math.pi * 3.0 * t))
        text = WARMUP_REFERENCE_TEXT if seconds <= 3 else CALIBRATION_REFERENCE_TEXT
        return self.make_reference(tone.astype(np.float32), text)

    def warm_up(self, nfe_step: int = 4) -> bool:
        """One short synthesis on a synthetic reference; False when the output is not finite (FP16 overflow)."""
        result = self.synthesize(WARMUP_TEXT, self._warmup_reference(), SynthesisOptions(nfe_step=nfe_step, seed=0))
        return bool(len(result.wave)) and bool(np.isfinite(result.wave).all())

    def calibrate_latency(self, repeats: int = 3) -> LatencyModel:
        """Time CALIBRATION_POINTS (after one untimed run each: graph capture, compilation) and fit the latency
        model to the fastest of ``repeats`` runs (one on a slow device); installs and returns it."""
        self.latency = None  # calibration runs must not feed the moving average of an older model
        references = {seconds: self._warmup_reference(seconds) for seconds in {p[0] for p in CALIBRATION_POINTS}}
        points, captures, slow = [], [], False
        first_seconds, first_text, first_steps = CALIBRATION_POINTS[0]
        probe = SynthesisOptions(nfe_step=first_steps, seed=0)
        self.synthesize(first_text, references[first_seconds], probe)
        quick = self._timed(first_text, references[first_seconds], probe)
        factor = int(min(max(CALIBRATION_TARGET_S / max(quick, 1e-6), 1), CALIBRATION_MAX_STEP_FACTOR))
        for seconds, text, steps in CALIBRATION_POINTS:
            steps *= factor
            reference, options = references[seconds], SynthesisOptions(nfe_step=steps, seed=0)
            plan = self.plan(text, reference, options)
            self.synthesize(text, reference, options)  # untimed: first use of this length (capture, compilation)
            best = self._timed(text, reference, options)
            slow = slow or best > CALIBRATION_SLOW_RUN_S
            for _ in range(0 if slow else max(repeats, 1) - 1):
                best = min(best, self._timed(text, reference, options))
            points.append(Observation(plan.cost.work(steps), best))
            if self.step_graphs is not None and not slow and text == CALIBRATION_TEXT:
                # The same run with an empty graph cache: what a length never seen costs on top (the capture).
                graphs, self.step_graphs = self.step_graphs, self.step_graphs.fresh()
                try:
                    work = plan.cost.work(steps, [True] * len(plan.chunks))
                    captures.append((work, self._timed(text, reference, options) - best))
                finally:
                    self.step_graphs = graphs
        self.calibration = tuple(points) + tuple(Observation(work, extra) for work, extra in captures)
        latency = LatencyModel.fit(points)
        if slow and self.step_graphs is not None:
            latency.seconds_per_capture_flop = latency.seconds_per_flop  # a capture runs one step, eagerly
        else:
            latency.fit_captures(captures)
        self.latency = latency
        log.info("latency model: GEMMs %.3g TFLOP/s, attention %.3g TFLOP/s, %.2f ms per step, %.2f ms per chunk "
                 "+ %.1f ms per CUDA-graph capture (warm-up calibration)", self.latency.flop_rate / 1e12,
                 1e-12 / self.latency.seconds_per_attention_flop if self.latency.seconds_per_attention_flop else 0,
                 self.latency.seconds_per_step * 1e3, self.latency.seconds_per_chunk * 1e3,
                 self.latency.seconds_per_capture * 1e3)
        return self.latency

    def _timed(self, text: str, reference: Reference, options: SynthesisOptions) -> float:
        started = time.perf_counter()
        self.synthesize(text, reference, options)
        return time.perf_counter() - started

    def memory_stats(self) -> dict[str, int]:
        if self.device.type != "cuda":
            return {}
        return {
            "allocated_bytes": int(torch.cuda.memory_allocated(self.device)),
            "reserved_bytes": int(torch.cuda.memory_reserved(self.device)),
            "peak_bytes": int(torch.cuda.max_memory_allocated(self.device)),
        }


class SynthesisStream(Iterator[ChunkAudio]):
    """``Synthesizer.iter_synthesis``'s result: an iterator of ChunkAudio with the plan known up front.

    Contract for a streaming route:
    - ``plan`` (seed, nfe_step, predicted_seconds, chunks, normalized_text, removed_characters) exists before the
      first ``next()``: put it in headers.
    - each ``next()`` samples one chunk and returns its ChunkAudio (blocking, GPU work: call it off the event loop);
      pieces come in order; ``piece.last`` marks the final one; concatenated they are ``synthesize``'s waveform.
    - ``next()`` may raise DeviceOutOfMemory (memory is released; the stream is over).
    - one model serves one chunk at a time: serialise ``next()`` calls across streams (a lock held around each
      ``next()`` is enough: a chunk's sampling is self-contained, so streams may interleave chunk by chunk).
    - ``close()`` (or dropping the stream) abandons the remaining chunks; nothing else needs cleaning up.
    - after the last piece, ``result(wave)`` builds the SynthesisResult, and ``first_audio_seconds``,
      ``elapsed_seconds`` and ``peak_memory_bytes`` are set.
    """

    def __init__(self, engine: Synthesizer, plan: SynthesisPlan, reference: Reference, options: SynthesisOptions,
                 started: float) -> None:
        self.plan = plan
        self.first_audio_seconds: float | None = None
        self.elapsed_seconds: float | None = None
        self.peak_memory_bytes: int | None = None
        self._engine = engine
        self._reference = reference
        self._options = options
        self._started = started
        self._pieces = self._run()

    def __iter__(self) -> SynthesisStream:
        return self

    def __next__(self) -> ChunkAudio:
        return next(self._pieces)

    def close(self) -> None:
        self._pieces.close()

    @property
    def seed(self) -> int:
        return self.plan.seed

    @property
    def nfe_step(self) -> int:
        return self.plan.nfe_step

    @property
    def predicted_seconds(self) -> float | None:
        return self.plan.predicted_seconds

    def _run(self) -> Iterator[ChunkAudio]:
        engine, plan, reference, options = self._engine, self.plan, self._reference, self._options
        device = engine.device
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        # The reference is the same for every chunk: move it and compute its mel once (upstream does both per chunk).
        wave = reference.wave.to(device)
        with torch.inference_mode():
            mel = engine._guard_memory(lambda: reference_mel(engine.model, wave))
        joiner = CrossFadeJoiner(int(options.cross_fade_duration * engine.sample_rate))
        total = len(plan.work)
        steady, steady_seconds = NO_WORK, 0.0  # chunks that captured no new CUDA graph: the steady-state speed
        for index, work in enumerate(plan.work):
            chunk_seed = (plan.seed + index) % (MAX_SEED + 1)
            captures = engine.step_graphs.captures if engine.step_graphs is not None else 0
            chunk_started = time.perf_counter()
            audio = engine._guard_memory(
                lambda: engine._synthesize_chunk(reference, wave, mel, work, options, plan.nfe_step, chunk_seed))
            seconds = time.perf_counter() - chunk_started
            if engine.step_graphs is None or engine.step_graphs.captures == captures:
                steady, steady_seconds = steady + plan.cost.chunk_work(index, plan.nfe_step), steady_seconds + seconds
            piece = joiner.push(audio, last=index == total - 1)
            elapsed = time.perf_counter() - self._started
            if self.first_audio_seconds is None and len(piece):
                self.first_audio_seconds = elapsed
            if index == total - 1:
                self.elapsed_seconds = elapsed
                self.peak_memory_bytes = torch.cuda.max_memory_allocated(device) if device.type == "cuda" else None
                if engine.latency is not None and steady.chunks:
                    engine.latency.observe(steady, steady_seconds)
            yield ChunkAudio(wave=piece, sample_rate=engine.sample_rate, index=index, total=total, text=work.text,
                             elapsed_seconds=elapsed)

    def result(self, wave: np.ndarray) -> SynthesisResult:
        """The SynthesisResult of a finished stream, given the concatenated pieces."""
        plan = self.plan
        elapsed = self.elapsed_seconds if self.elapsed_seconds is not None else time.perf_counter() - self._started
        return SynthesisResult(
            wave=wave,
            sample_rate=self._engine.sample_rate,
            seed=plan.seed,
            chunks=list(plan.chunks),
            removed_characters=list(plan.removed_characters),
            elapsed_seconds=elapsed,
            peak_memory_bytes=self.peak_memory_bytes,
            normalized_text=plan.normalized_text,
            nfe_step=plan.nfe_step,
            predicted_seconds=plan.predicted_seconds,
            first_audio_seconds=self.first_audio_seconds,
            flops=plan.flops,
        )


# --- torch.compile of the DiT blocks ---------------------------------------------------------------------------


def compile_decision(mode: bool | str, device: torch.device) -> tuple[bool, str]:
    """Whether to torch.compile the DiT blocks here, and, when not, why (one line for the log)."""
    mode = {True: "true", False: "false"}.get(mode, mode) if isinstance(mode, bool) else str(mode).lower()
    if mode not in ("auto", "true", "false"):
        raise ValueError(f"compile mode must be auto, true or false, not {mode!r}")
    if mode == "false":
        return False, "eager: PTBR_COMPILE=false"
    if device.type != "cuda":
        return False, f"eager: {device.type} is not a CUDA device"
    major, minor = torch.cuda.get_device_capability(device)
    if (major, minor) < (7, 0):
        return False, f"eager: compute capability {major}.{minor} (Triton needs 7.0+; Pascal always runs eager)"
    if mode == "auto":
        problem = compile_toolchain_problem()
        if problem:
            return False, f"eager: PTBR_COMPILE=auto found {problem}"
    return True, "to compile"


def compile_toolchain_problem() -> str | None:
    """What Triton would miss to build its kernels' launcher here, or None: Triton itself, a C compiler (it looks
    at $CC, then gcc, then clang) and Python's headers (the launcher is a C extension)."""
    try:
        from torch.utils._triton import has_triton
    except ImportError:  # pragma: no cover - every supported torch has it
        return "no torch.utils._triton"
    if not has_triton():
        return "no working Triton"
    if os.environ.get("CC"):
        if not shutil.which(os.environ["CC"]):
            return f"no C compiler ($CC={os.environ['CC']} is not there; Triton builds a launcher for each kernel)"
    elif not (shutil.which("gcc") or shutil.which("clang")):
        return "no C compiler (gcc/clang; Triton builds a launcher for each kernel)"
    include = sysconfig.get_paths().get("include")
    if not include or not os.path.exists(os.path.join(include, "Python.h")):
        return f"no Python headers ({include}/Python.h; Triton's launcher needs them)"
    return None


def use_compile_cache(directory: Path) -> None:
    """Point Inductor's and Triton's caches under ``directory`` so a restart reuses compiled kernels. Variables
    already set by the operator win. Set here, at load, not at import: torch reads them when it compiles."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        log.warning("compile cache %s is not writable (%s): compiling into torch's default cache", directory, exc)
        return
    os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", str(directory / "inductor"))
    os.environ.setdefault("TRITON_CACHE_DIR", str(directory / "triton"))


def out_of_memory_on(marker: str | None, once: str | None = None) -> Callable[[str], None]:
    """A ``Synthesizer.fault_hook`` raising torch's CUDA out-of-memory error for every chunk that contains
    ``marker`` (case-insensitive), and for a chunk containing ``once`` only the first time its exact text comes (a
    retry of it succeeds): the engine's own handling (cache emptied, ``DeviceOutOfMemory``) then runs exactly as for
    a real one. For fault tests on machines without a GPU."""
    needles = [(word, word.lower(), only_once) for word, only_once in ((marker, False), (once, True)) if word]
    seen: set[str] = set()
    lock = threading.Lock()

    def hook(chunk: str) -> None:
        lowered = chunk.lower()
        for word, needle, only_once in needles:
            if needle not in lowered:
                continue
            if only_once:
                with lock:
                    if chunk in seen:
                        continue
                    seen.add(chunk)
            raise torch.cuda.OutOfMemoryError(f"CUDA out of memory (injected: the chunk contains {word!r})")

    return hook


def compile_dit_blocks(transformer: torch.nn.Module, device: torch.device) -> bool:
    """Replace each DiT block by its torch.compile'd version (dynamic shapes: one compilation serves every
    utterance length). Only the blocks: the DiT itself keeps its text-embedding cache, which a compiled wrapper
    would bypass. Triton needs compute capability 7.0+, so Pascal cards keep eager blocks."""
    if device.type != "cuda" or torch.cuda.get_device_capability(device) < (7, 0):
        return False
    blocks = transformer.transformer_blocks
    for index, block in enumerate(blocks):
        blocks[index] = torch.compile(block, dynamic=True)
    return True


def plain_dit_blocks(transformer: torch.nn.Module) -> None:
    """Undo ``compile_dit_blocks``: put the original modules back."""
    blocks = transformer.transformer_blocks
    for index, block in enumerate(blocks):
        blocks[index] = getattr(block, "_orig_mod", block)


def load_checked(
    stored: StoredModel,
    device: str = "auto",
    dtype: str = "auto",
    *,
    target_rms: float = 0.1,
    warmup: bool = True,
    cuda_graphs: int = 4,
    compile_blocks: bool | str = "auto",
    compile_cache_dir: Path | None = None,
    first_chunk_bytes: int = DEFAULT_FIRST_CHUNK_BYTES,
    on_fp16_fallback: Callable[[], None] | None = None,
    lexicon: Lexicon | None = None,
    memory_fraction: float | None = None,
) -> Synthesizer:
    """Load, warm up (which compiles, when compiling), fall back to float32 when float16 output is not finite,
    and calibrate the latency model. Logs one line saying whether the DiT blocks run compiled, and why not."""
    def load(dtype_name: str) -> Synthesizer:
        return Synthesizer.load(stored, device, dtype_name, target_rms, cuda_graphs, compile_blocks,
                                compile_cache_dir=compile_cache_dir, first_chunk_bytes=first_chunk_bytes,
                                lexicon=lexicon, memory_fraction=memory_fraction)

    synthesizer = load(dtype)
    if not warmup:
        _log_compile_status(synthesizer, verified=False)
        return synthesizer
    finite = _warm_up_compiled(synthesizer)
    if not finite:
        if synthesizer.dtype != torch.float16:
            raise RuntimeError(f"warm-up produced non-finite audio in {synthesizer.dtype}: the model weights are broken")
        log.warning("float16 warm-up produced non-finite audio on %s; reloading in float32", synthesizer.device)
        if on_fp16_fallback is not None:
            on_fp16_fallback()
        del synthesizer
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        synthesizer = load("float32")
        if not _warm_up_compiled(synthesizer):
            raise RuntimeError("warm-up produced non-finite audio in float32 too: the model weights are broken")
    _log_compile_status(synthesizer, verified=True)
    synthesizer.calibrate_latency()
    return synthesizer


def _warm_up_compiled(synthesizer: Synthesizer) -> bool:
    """The warm-up; with compiled blocks it is where Triton and the C compiler run, so a failure there falls back
    to eager blocks (and is the one log line about compilation)."""
    try:
        return synthesizer.warm_up()
    except Exception as exc:
        if not synthesizer.compiled:
            raise
        cause = getattr(exc, "inner_exception", None) or exc.__cause__ or exc  # Dynamo wraps the real error
        first_line = (str(cause).strip().splitlines() or [""])[0][:300]
        synthesizer.compile_status = f"eager: torch.compile failed in the warm-up ({type(cause).__name__}: {first_line})"
        log.debug("torch.compile failure", exc_info=True)
        plain_dit_blocks(synthesizer.model.transformer)
        synthesizer.compiled = False
        if synthesizer.step_graphs is not None:  # graphs captured around the failed kernels must not replay
            synthesizer.step_graphs = StepGraphCache(synthesizer.step_graphs.capacity)
        return synthesizer.warm_up()


def _log_compile_status(synthesizer: Synthesizer, *, verified: bool) -> None:
    status = synthesizer.compile_status
    if synthesizer.compiled:
        status += ", verified by the warm-up" if verified else ", not verified (PTBR_WARMUP=false)"
    failed = "failed" in status or "found no" in status or "PTBR_COMPILE=auto found" in status
    log.log(logging.WARNING if failed else logging.INFO, "DiT blocks: %s", status)
