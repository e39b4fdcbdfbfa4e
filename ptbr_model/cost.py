"""What a synthesis costs before it runs: exact FLOPs from the shapes, and seconds from a per-device latency model.

FLOPs follow torch.utils.flop_counter.FlopCounterMode's rules (one multiply-add = 2 FLOPs; matmuls, linears,
convolutions and attention count; element-wise ops, norms, softmax and FFTs do not), so the formula below equals a
FlopCounterMode count of the same work exactly (tests/test_latency_budget.py checks it against the real modules).
Per chunk the engine runs ``nfe_step`` guided DiT steps at sequence length N = reference + generated frames (batch 2
when CFG packs the conditional and unconditional passes), the text embedding once per pass (the DiT caches it), and
the vocoder once over the generated frames; the reference mel is computed once per request.

Seconds: GEMM FLOPs, attention FLOPs, steps and chunks each at their own price (LatencyModel), fitted at load by the
warm-up (four timed syntheses that separate the four terms), then kept honest by an exponential moving average of
measured ÷ predicted over real requests. On a FLOP-bound card (a GTX 1050 Ti) the FLOP terms dominate; on a big GPU
the per-step host/launch term matters as much, which a FLOP rate alone would miss.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Iterable, Sequence

import numpy as np
import torch

# Step counts the latency budget chooses from: upstream's EPSS schedules (f5_tts.model.utils.get_epss_timesteps has
# 5, 6, 7, 10, 12 and 16 in f5-tts 1.1.22) and its default uniform 32 (the `quality` preset).
NFE_CANDIDATES: tuple[int, ...] = (7, 10, 12, 16, 32)

# Upstream constants the DiT's FLOPs depend on (f5_tts/model/modules.py, backbones/dit.py, f5-tts 1.1.22).
TIME_FREQ_DIM = 256  # TimestepEmbedding(freq_embed_dim=256)
CONV_POS_KERNEL = 31  # ConvPositionEmbedding(kernel_size=31, groups=16), two convolutions
CONV_POS_GROUPS = 16
TEXT_CONV_MULT = 2  # TextEmbedding(conv_mult=2): ConvNeXtV2Block(text_dim, text_dim * 2)
TEXT_DWCONV_KERNEL = 7  # ConvNeXtV2Block's depthwise convolution


@dataclass(frozen=True)
class DitShape:
    """The DiT hyper-parameters its FLOPs depend on (defaults as upstream's DiT constructor)."""

    dim: int
    depth: int
    heads: int = 8
    dim_head: int = 64
    ff_mult: int = 4
    mel_dim: int = 100
    text_dim: int = 100
    conv_layers: int = 0
    long_skip: bool = False

    @classmethod
    def from_arch(cls, arch: dict[str, Any]) -> DitShape:
        mel_dim = int(arch.get("mel_dim", 100))
        return cls(
            dim=int(arch["dim"]),
            depth=int(arch.get("depth", 8)),
            heads=int(arch.get("heads", 8)),
            dim_head=int(arch.get("dim_head", 64)),
            ff_mult=int(arch.get("ff_mult", 4)),
            mel_dim=mel_dim,
            text_dim=int(arch.get("text_dim") or mel_dim),
            conv_layers=int(arch.get("conv_layers", 0)),
            long_skip=bool(arch.get("long_skip_connection", False)),
        )


def attention_flops(shape: DitShape, frames: int, *, cfg: bool) -> int:
    """The scaled-dot-product attention part of one DiT forward (QKᵀ and AV in every block): quadratic in the
    sequence, and run by other kernels than the GEMMs (flash, memory-efficient or math), so timed separately."""
    batch = 2 if cfg else 1
    return shape.depth * 4 * batch * shape.heads * frames * frames * shape.dim_head


def dit_forward_flops(shape: DitShape, frames: int, *, cfg: bool) -> int:
    """One DiT forward as the sampler calls it (``cfg_infer=True`` packs two passes), text embedding excluded."""
    n, d = frames, shape.dim
    batch = 2 if cfg else 1
    inner = shape.heads * shape.dim_head
    time_mlp = 2 * (TIME_FREQ_DIM * d + d * d)  # on the step's one time value, before CFG doubles it
    input_embed = batch * (
        2 * n * (2 * shape.mel_dim + shape.text_dim) * d  # proj of [x, cond, text]
        + 2 * (2 * n * d * (d // CONV_POS_GROUPS) * CONV_POS_KERNEL)  # two grouped convolutions
    )
    per_block = (
        2 * batch * d * 6 * d  # AdaLayerNorm's linear on the time embedding
        + 2 * batch * n * d * inner * 3  # q, k, v
        + 2 * batch * n * inner * d  # output projection
        + 2 * 2 * batch * n * d * d * shape.ff_mult  # feed-forward in and out
    )
    head = 2 * batch * d * 2 * d + 2 * batch * n * d * shape.mel_dim  # AdaLayerNorm_Final + proj_out
    skip = 2 * batch * n * 2 * d * d if shape.long_skip else 0
    return time_mlp + input_embed + shape.depth * per_block + head + skip + attention_flops(shape, n, cfg=cfg)


def text_embed_flops(shape: DitShape, frames: int) -> int:
    """One text-embedding pass (the text is padded to the sequence length): its ConvNeXtV2 blocks."""
    t = shape.text_dim
    block = 2 * frames * t * TEXT_DWCONV_KERNEL + 2 * (2 * frames * t * t * TEXT_CONV_MULT)
    return shape.conv_layers * block


def module_frame_flops(module: torch.nn.Module) -> int:
    """FLOPs per frame of a stack of length-preserving 1-D convolutions and linears (vocos' backbone and head)."""
    total = 0
    for sub in module.modules():
        if isinstance(sub, torch.nn.Linear):
            total += 2 * sub.in_features * sub.out_features
        elif isinstance(sub, torch.nn.Conv1d):
            (kernel,), (stride,), (dilation,) = sub.kernel_size, sub.stride, sub.dilation
            padding = sub.padding[0] if isinstance(sub.padding, tuple) else None
            if stride != 1 or padding != dilation * (kernel - 1) // 2:
                raise ValueError(f"{sub} does not preserve the frame count: its FLOPs are not per frame")
            total += 2 * sub.out_channels * (sub.in_channels // sub.groups) * kernel
        elif isinstance(sub, (torch.nn.Conv2d, torch.nn.Conv3d, torch.nn.ConvTranspose1d, torch.nn.MultiheadAttention)):
            raise ValueError(f"no per-frame FLOP rule for {type(sub).__name__}")
    return total


def mel_flops(samples: int, mel: dict[str, Any]) -> int:
    """The reference mel's filterbank matmul (torchaudio's MelScale; its STFT is an FFT, not counted)."""
    frames = mel_frames(samples, int(mel["hop_length"]))
    return 2 * frames * (int(mel["n_fft"]) // 2 + 1) * int(mel["n_mel_channels"])


def mel_frames(samples: int, hop_length: int) -> int:
    """Frames of a centred STFT (what MelSpec returns for ``samples`` samples)."""
    return samples // hop_length + 1


@dataclass(frozen=True)
class Work:
    """What the latency model prices: FLOPs (of which attention), DiT steps and chunks, and the CUDA-graph captures
    among the chunks (a sequence length not in the graph cache costs an eager step and a capture once)."""

    flops: int
    attention_flops: int
    steps: int
    chunks: int
    captures: int = 0
    capture_flops: int = 0  # one step's FLOPs for each chunk that captures

    def __add__(self, other: Work) -> Work:
        return Work(self.flops + other.flops, self.attention_flops + other.attention_flops,
                    self.steps + other.steps, self.chunks + other.chunks, self.captures + other.captures,
                    self.capture_flops + other.capture_flops)


NO_WORK = Work(0, 0, 0, 0)


@dataclass(frozen=True)
class ChunkCost:
    frames: int  # DiT sequence length N (reference + generated)
    generated_frames: int  # what the vocoder decodes
    step_flops: int  # one guided step, attention included
    step_attention_flops: int  # the attention part of a step
    fixed_flops: int  # once per chunk: text embedding(s) and vocoder


@dataclass(frozen=True)
class RequestCost:
    """Everything but the step count is fixed once the text is chunked; FLOPs are linear in ``nfe_step``."""

    chunks: tuple[ChunkCost, ...]
    mel_flops: int

    def chunk_flops(self, index: int, nfe_step: int) -> int:
        chunk = self.chunks[index]
        return nfe_step * chunk.step_flops + chunk.fixed_flops

    def flops(self, nfe_step: int) -> int:
        return self.mel_flops + sum(self.chunk_flops(index, nfe_step) for index in range(len(self.chunks)))

    def chunk_work(self, index: int, nfe_step: int, captures: bool = False) -> Work:
        chunk = self.chunks[index]
        return Work(self.chunk_flops(index, nfe_step), nfe_step * chunk.step_attention_flops, nfe_step, 1,
                    int(captures), chunk.step_flops if captures else 0)

    def work(self, nfe_step: int, captures: Sequence[bool] | None = None) -> Work:
        """The whole request; ``captures``: per chunk, whether it will capture a CUDA graph (None: none will)."""
        total = Work(self.mel_flops, 0, 0, 0)
        for index in range(len(self.chunks)):
            total = total + self.chunk_work(index, nfe_step, bool(captures and captures[index]))
        return total


@dataclass(frozen=True)
class CostModel:
    """Exact FLOPs of a request of this model, from its chunks' sequence lengths."""

    dit: DitShape
    vocoder_frame_flops: int
    mel: dict[str, Any]

    @classmethod
    def build(cls, arch: dict[str, Any], mel: dict[str, Any], vocoder: torch.nn.Module) -> CostModel:
        # Vocos.decode runs the backbone and the head; the feature extractor (a mel front-end) is not used.
        parts = [getattr(vocoder, name) for name in ("backbone", "head") if hasattr(vocoder, name)] or [vocoder]
        return cls(DitShape.from_arch(arch), sum(module_frame_flops(part) for part in parts), dict(mel))

    def chunk_cost(self, frames: int, generated_frames: int, *, cfg: bool) -> ChunkCost:
        step = dit_forward_flops(self.dit, frames, cfg=cfg)
        text = text_embed_flops(self.dit, frames)
        if cfg:  # both passes' text embeddings are cached after the first step
            step_flops, fixed = step, 2 * text
        else:
            # Without CFG upstream's DiT never fills its unconditional cache slot, so it re-embeds the text at every
            # step (DiT.get_input_embed). Counted as the eager path does it; CUDA graphs embed once.
            step_flops, fixed = step + text, 0
        return ChunkCost(frames=frames, generated_frames=generated_frames, step_flops=step_flops,
                         step_attention_flops=attention_flops(self.dit, frames, cfg=cfg),
                         fixed_flops=fixed + generated_frames * self.vocoder_frame_flops)

    def request_cost(self, frames: Sequence[tuple[int, int]], reference_samples: int, *, cfg: bool) -> RequestCost:
        """``frames``: (sequence length, generated frames) per chunk."""
        return RequestCost(tuple(self.chunk_cost(n, generated, cfg=cfg) for n, generated in frames),
                           mel_flops(reference_samples, self.mel))


# --- seconds ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Observation:
    """Timed work."""

    work: Work
    seconds: float


# Each real request nudges the model by this weight; a single observation moves it at most ×2 or ÷2, so one odd
# request (a new utterance length captured as a CUDA graph, a GPU shared for a moment) cannot wreck it.
EMA_WEIGHT = 0.2
EMA_MAX_STEP = 2.0
_TERMS = 4


@dataclass
class LatencyModel:
    """seconds ≈ scale × (GEMM FLOPs × seconds_per_flop + attention FLOPs × seconds_per_attention_flop
    + steps × seconds_per_step + chunks × seconds_per_chunk).

    Attention has its own rate: its kernels (flash on big GPUs; memory-efficient or math on Pascal and CPUs) run at
    another efficiency than the GEMMs, and its share grows with the sequence (longer references)."""

    seconds_per_flop: float
    seconds_per_attention_flop: float = 0.0
    seconds_per_step: float = 0.0
    seconds_per_chunk: float = 0.0
    seconds_per_capture: float = 0.0  # a CUDA-graph capture: a fixed part ...
    seconds_per_capture_flop: float = 0.0  # ... and one eager step of the captured length
    scale: float = 1.0  # moving average of measured ÷ base prediction over real requests
    observations: int = 0
    source: str = "calibrated"
    history: list[float] = field(default_factory=list, repr=False)  # last relative errors, newest last

    @classmethod
    def from_flop_rate(cls, flops_per_second: float, source: str = "assumed") -> LatencyModel:
        """A pure FLOP-rate model (no overhead, attention at the GEMM rate): a FLOP-bound card's shape."""
        return cls(seconds_per_flop=1.0 / flops_per_second, seconds_per_attention_flop=1.0 / flops_per_second,
                   source=source)

    @staticmethod
    def _features(work: Work) -> list[float]:
        return [float(work.flops - work.attention_flops), float(work.attention_flops), float(work.steps),
                float(work.chunks)]

    @classmethod
    def fit(cls, points: Iterable[Observation]) -> LatencyModel:
        """Least squares over the four terms, none negative (a term that would fit negative is dropped and the rest
        refitted; without an attention term the attention FLOPs go at the GEMM rate)."""
        points = list(points)
        if not points:
            raise ValueError("no timings to fit")
        design = np.array([cls._features(p.work) for p in points], dtype=np.float64)
        target = np.array([p.seconds for p in points], dtype=np.float64)
        norms = np.where(design.max(axis=0) > 0, design.max(axis=0), 1.0)  # numbers of one size for the solver
        active = [index for index in range(_TERMS) if design[:, index].any()]
        coefficients = np.zeros(_TERMS)
        while active:
            solution, *_ = np.linalg.lstsq(design[:, active] / norms[active], target, rcond=None)
            if (solution >= 0).all():
                coefficients[active] = solution / norms[active]
                break
            active.pop(int(np.argmin(solution)))
        if coefficients[0] <= 0:  # timings too noisy to see the FLOPs: charge everything to them, never zero
            total_flops = float(design[:, 0].sum() + design[:, 1].sum())
            per_flop = float(target.sum()) / total_flops if total_flops else 0.0
            coefficients = np.array([per_flop, per_flop, 0.0, 0.0])
        elif coefficients[1] <= 0:
            coefficients[1] = coefficients[0]
        return cls(*(float(c) for c in coefficients))

    @property
    def flop_rate(self) -> float:
        """The effective GEMM FLOP/s the model currently assumes."""
        per_flop = self.seconds_per_flop * self.scale
        return 1.0 / per_flop if per_flop > 0 else math.inf

    def fit_captures(self, points: Iterable[tuple[Work, float]]) -> None:
        """The capture terms, from (work, seconds a run took beyond the same run with its graphs cached) of runs
        whose lengths were new to an empty graph cache; nothing is set from fewer than two points."""
        points = [(work, extra) for work, extra in points if work.captures]
        if len(points) < 2:
            return
        design = np.array([[w.captures, w.capture_flops] for w, _ in points], dtype=np.float64)
        target = np.array([max(extra, 0.0) for _, extra in points])
        norms = np.where(design.max(axis=0) > 0, design.max(axis=0), 1.0)
        solution, *_ = np.linalg.lstsq(design / norms, target, rcond=None)
        if (solution < 0).any():  # keep the one term that explains it best alone
            per_capture = float(target.sum() / design[:, 0].sum())
            per_flop = float(target.sum() / design[:, 1].sum()) if design[:, 1].any() else 0.0
            alone = [np.square(design[:, 0] * per_capture - target).sum(), np.square(design[:, 1] * per_flop - target).sum()]
            solution = np.array([per_capture, 0.0] if alone[0] <= alone[1] else [0.0, per_flop]) * norms
        self.seconds_per_capture, self.seconds_per_capture_flop = (float(v) for v in solution / norms)

    def base_seconds(self, work: Work) -> float:
        gemm, attention, steps, chunks = self._features(work)
        return (gemm * self.seconds_per_flop + attention * self.seconds_per_attention_flop
                + steps * self.seconds_per_step + chunks * self.seconds_per_chunk
                + work.captures * self.seconds_per_capture + work.capture_flops * self.seconds_per_capture_flop)

    def predict(self, work: Work) -> float:
        return self.scale * self.base_seconds(work)

    def predict_request(self, cost: RequestCost, nfe_step: int, captures: Sequence[bool] | None = None) -> float:
        return self.predict(cost.work(nfe_step, captures))

    def observe(self, work: Work, seconds: float) -> None:
        """Fold one measured request (or the part of it that was representative) into the scale."""
        base = self.base_seconds(work)
        if base <= 0 or not math.isfinite(seconds) or seconds <= 0:
            return
        predicted = self.scale * base
        ratio = min(max(seconds / base, self.scale / EMA_MAX_STEP), self.scale * EMA_MAX_STEP)
        self.scale = (1 - EMA_WEIGHT) * self.scale + EMA_WEIGHT * ratio
        self.observations += 1
        self.history = [*self.history[-31:], predicted / seconds - 1.0]


def choose_nfe(cost: RequestCost, latency: LatencyModel, budget_seconds: float, ceiling: int,
               candidates: Sequence[int] = NFE_CANDIDATES, captures: Sequence[bool] | None = None) -> tuple[int, float]:
    """The largest step count not above ``ceiling`` whose predicted seconds fit the budget, and that prediction.

    Candidates are ``candidates`` up to the ceiling, plus the ceiling itself (a custom default such as 20 steps is
    tried first). When none fits, the smallest is used: the budget lowers quality, it never refuses a request.
    """
    options = sorted({step for step in candidates if step <= ceiling} | {ceiling}, reverse=True)
    for step in options:
        predicted = latency.predict_request(cost, step, captures)
        if predicted <= budget_seconds:
            return step, predicted
    return options[-1], latency.predict_request(cost, options[-1], captures)
