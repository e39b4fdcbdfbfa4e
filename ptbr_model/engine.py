"""The synthesizer: loads a stored model for one device and turns (reference, text) into a waveform.

It keeps upstream's model math (``CFM.sample`` with the same duration rule, loudness handling and cross-fade as
``f5_tts.infer.utils_infer.infer_batch_process``) and changes how it runs:
- the model is built and loaded on the CPU, cast, and only then moved, so the device sees the weights once;
- float16 on every CUDA GPU (upstream only picks it from compute capability 7.0, leaving a 1050 Ti in float32);
- text chunks run one after another (upstream runs them all at once in a thread pool: VRAM × chunks);
- every request has a seed (drawn when not given) and the same input + seed gives the same audio;
- no temp files, no global caches, no Whisper: the reference arrives decoded and transcribed.
"""

from __future__ import annotations

import logging
import math
import secrets
import time
from dataclasses import dataclass, field
from typing import Callable, Iterable, Iterator

import numpy as np
import torch

from ptbr_model import f5
from ptbr_model.sampler import StepGraphCache, reference_mel, sample_mel
from ptbr_model.store import StoredModel, read_stored_weights
from ptbr_model.text import Lexicon, fit_to_vocab, normalize, prepare_text, vocab_indices

log = logging.getLogger("ptbr.engine")

MAX_SEED = 2**31 - 1
# Below this many UTF-8 bytes upstream slows a chunk down to speed 0.3 (so a word is not swallowed).
SHORT_CHUNK_BYTES = 10
SHORT_CHUNK_SPEED = 0.3
WARMUP_TEXT = "Olá, tudo bem?"
WARMUP_REFERENCE_TEXT = "Isto é um teste de aquecimento."


class NothingToSay(ValueError):
    """After normalisation and vocabulary filtering a text holds nothing the model can read."""

    def __init__(self, field: str, removed: str) -> None:
        super().__init__(f"nothing left to read after removing characters the model cannot read ({removed!r})")
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

    @property
    def audio_seconds(self) -> float:
        return len(self.wave) / self.sample_rate


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


def cross_fade_concat(waves: list[np.ndarray], fade_samples: int) -> np.ndarray:
    """Join chunk waveforms with linear cross-fades, exactly as upstream's ``infer_batch_process`` does inline."""
    if not waves:
        return np.zeros(0, dtype=np.float32)
    final = waves[0]
    for following in waves[1:]:
        overlap = min(fade_samples, len(final), len(following))
        if overlap <= 0:
            final = np.concatenate([final, following])
            continue
        faded = final[-overlap:] * np.linspace(1, 0, overlap) + following[:overlap] * np.linspace(0, 1, overlap)
        final = np.concatenate([final[:-overlap], faded, following[overlap:]])
    return final.astype(np.float32, copy=False)


def iter_cross_faded(waves: Iterable[np.ndarray], fade_samples: int) -> Iterator[np.ndarray]:
    """``cross_fade_concat`` for a stream: yields pieces as chunk waveforms arrive, holding back only the last
    ``fade_samples`` for the next fade. The pieces joined equal ``cross_fade_concat(waves, fade_samples)`` sample for
    sample (tested on random lengths and fades)."""
    # Like cross_fade_concat, faded samples stay float64 until they leave, so a later fade sees the same values.
    held = np.zeros(0, dtype=np.float64)
    started = False
    for following in waves:
        following = np.asarray(following, dtype=np.float32)
        if not started:
            joined, started = following.astype(np.float64), True
        else:
            overlap = min(fade_samples, len(held), len(following))
            if overlap <= 0:
                joined = np.concatenate([held, following])
            else:
                faded = held[-overlap:] * np.linspace(1, 0, overlap) + following[:overlap] * np.linspace(0, 1, overlap)
                joined = np.concatenate([held[:-overlap], faded, following[overlap:]])
        keep = min(fade_samples, len(joined))
        piece, held = joined[: len(joined) - keep], joined[len(joined) - keep:]
        if len(piece):
            yield piece.astype(np.float32)
    if len(held):
        yield held.astype(np.float32)


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
    # Test hook (PTBR_TEST_OOM_TRIGGER, via out_of_memory_on): called with each chunk's text inside the memory guard,
    # where a real CUDA out-of-memory error would be raised. None in production.
    fault_hook: Callable[[str], None] | None = None
    _hop_length: int = field(init=False)
    _sample_rate: int = field(init=False)

    def __post_init__(self) -> None:
        self._hop_length = int(self.stored.mel["hop_length"])
        self._sample_rate = int(self.stored.mel["target_sample_rate"])

    @property
    def sample_rate(self) -> int:
        return self._sample_rate

    # --- loading ---------------------------------------------------------------------------------------------

    @classmethod
    def load(cls, stored: StoredModel, device: str = "auto", dtype: str = "auto", target_rms: float = 0.1,
             cuda_graphs: int = 4, compile_blocks: bool = False, *, lexicon: Lexicon | None = None) -> Synthesizer:
        """``cuda_graphs``: how many step graphs (one per utterance length) to keep; 0 runs every step eagerly.
        ``compile_blocks``: torch.compile the DiT blocks (fused kernels) on CUDA GPUs that Triton supports.
        ``lexicon``: the pronunciation lexicon texts are read with (``ptbr_model.text.load_lexicon``)."""
        started = time.perf_counter()
        target = resolve_device(device)
        torch_dtype = resolve_dtype(dtype, target)
        if target.type == "cuda":
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
        if compile_blocks:
            compile_dit_blocks(model.transformer, target)
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

    # --- synthesis ---------------------------------------------------------------------------------------------

    def synthesize(self, text: str, reference: Reference, options: SynthesisOptions) -> SynthesisResult:
        started = time.perf_counter()
        prepared = prepare_text(
            text,
            self.vocab,
            ref_text=reference.text,
            ref_audio_seconds=reference.seconds,
            speed=options.speed,
            normalize_text=options.normalize_text,
            lexicon=self.lexicon_for(options.pronunciations),
        )
        if not prepared.chunks:
            removed = "".join(prepared.removed)
            raise NothingToSay("text", removed)
        seed = draw_seed() if options.seed is None else options.seed
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
        waves = list(self.iter_chunk_waves(reference, list(prepared.chunks), options, seed))
        wave = cross_fade_concat(waves, int(options.cross_fade_duration * self.sample_rate))
        peak = torch.cuda.max_memory_allocated(self.device) if self.device.type == "cuda" else None
        return SynthesisResult(
            wave=wave,
            sample_rate=self.sample_rate,
            seed=seed,
            chunks=list(prepared.chunks),
            removed_characters=list(prepared.removed),
            elapsed_seconds=time.perf_counter() - started,
            peak_memory_bytes=peak,
            normalized_text=prepared.text,
        )

    def iter_chunk_waves(
        self, reference: Reference, chunks: list[str], options: SynthesisOptions, seed: int
    ) -> Iterator[np.ndarray]:
        """One waveform per chunk, sequentially; chunk i is seeded with seed + i so each is reproducible alone."""
        # The reference is the same for every chunk: move it and compute its mel once (upstream does both per chunk).
        wave = reference.wave.to(self.device)
        with torch.inference_mode():
            mel = self._guard_memory(lambda: reference_mel(self.model, wave))
        for index, chunk in enumerate(chunks):
            chunk_seed = (seed + index) % (MAX_SEED + 1)
            yield self._guard_memory(lambda: self._synthesize_chunk(reference, wave, mel, chunk, options, chunk_seed))

    def _synthesize_chunk(self, reference: Reference, wave: torch.Tensor, mel: torch.Tensor, chunk: str,
                          options: SynthesisOptions, seed: int) -> np.ndarray:
        if self.fault_hook is not None:
            self.fault_hook(chunk)
        hop = self._hop_length
        ref_frames = reference.wave.shape[-1] // hop
        ref_text_bytes = len(reference.text.encode("utf-8"))
        chunk_bytes = len(chunk.encode("utf-8"))
        speed = SHORT_CHUNK_SPEED if chunk_bytes < SHORT_CHUNK_BYTES else options.speed
        duration = ref_frames + int(ref_frames / ref_text_bytes * chunk_bytes / speed)
        with torch.inference_mode():
            generated = sample_mel(
                self.model,
                wave,
                f5.to_model_text([reference.text + chunk]),
                duration,
                steps=options.nfe_step,
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

    def _guard_memory(self, run: Callable[[], np.ndarray]) -> np.ndarray:
        try:
            return run()
        except torch.cuda.OutOfMemoryError as exc:
            # Drop the failed request's tensors before anyone else allocates.
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
            raise DeviceOutOfMemory(str(exc).splitlines()[0] if str(exc) else "CUDA out of memory") from exc

    # --- health ------------------------------------------------------------------------------------------------

    def warm_up(self, nfe_step: int = 4) -> bool:
        """One short synthesis on a synthetic reference; False when the output is not finite (FP16 overflow)."""
        seconds = 1.5
        t = np.arange(int(seconds * self.sample_rate), dtype=np.float32) / self.sample_rate
        tone = 0.1 * np.sin(2 * math.pi * 180.0 * t) * (1 + 0.5 * np.sin(2 * math.pi * 3.0 * t))
        reference = self.make_reference(tone.astype(np.float32), WARMUP_REFERENCE_TEXT)
        result = self.synthesize(WARMUP_TEXT, reference, SynthesisOptions(nfe_step=nfe_step, seed=0))
        return bool(len(result.wave)) and bool(np.isfinite(result.wave).all())

    def memory_stats(self) -> dict[str, int]:
        if self.device.type != "cuda":
            return {}
        return {
            "allocated_bytes": int(torch.cuda.memory_allocated(self.device)),
            "peak_bytes": int(torch.cuda.max_memory_allocated(self.device)),
        }


def out_of_memory_on(marker: str) -> Callable[[str], None]:
    """A ``Synthesizer.fault_hook`` raising torch's CUDA out-of-memory error for every chunk that contains
    ``marker`` (case-insensitive): the engine's own handling (cache emptied, ``DeviceOutOfMemory``) then runs exactly
    as for a real one. For fault tests on machines without a GPU."""
    needle = marker.lower()

    def hook(chunk: str) -> None:
        if needle in chunk.lower():
            raise torch.cuda.OutOfMemoryError(f"CUDA out of memory (injected: the chunk contains {marker!r})")

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
    compile_blocks: bool = False,
    on_fp16_fallback: Callable[[], None] | None = None,
    lexicon: Lexicon | None = None,
) -> Synthesizer:
    """Load, warm up, and fall back to float32 when float16 output is not finite."""
    synthesizer = Synthesizer.load(stored, device, dtype, target_rms, cuda_graphs, compile_blocks, lexicon=lexicon)
    if not warmup:
        return synthesizer
    try:
        finite = synthesizer.warm_up()  # compiles, when asked: the first call is where Triton can fail
    except Exception:
        if not compile_blocks:
            raise
        log.warning("torch.compile of the DiT blocks failed (no C compiler?); serving with eager blocks", exc_info=True)
        plain_dit_blocks(synthesizer.model.transformer)
        finite = synthesizer.warm_up()
    if finite:
        return synthesizer
    if synthesizer.dtype != torch.float16:
        raise RuntimeError(f"warm-up produced non-finite audio in {synthesizer.dtype}: the model weights are broken")
    log.warning("float16 warm-up produced non-finite audio on %s; reloading in float32", synthesizer.device)
    if on_fp16_fallback is not None:
        on_fp16_fallback()
    del synthesizer
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    synthesizer = Synthesizer.load(stored, device, "float32", target_rms, cuda_graphs, compile_blocks, lexicon=lexicon)
    if not synthesizer.warm_up():
        raise RuntimeError("warm-up produced non-finite audio in float32 too: the model weights are broken")
    return synthesizer
