"""Flow-matching sampling for one utterance: upstream's ``CFM.sample`` (batch of one, Euler steps on the same time
grid) split so the transformer step can run eagerly or replay as a CUDA graph.

Why not call ``CFM.sample``: on a big GPU one sentence keeps the GPU busy ~120 ms of ~700 ms; the rest is Python
and kernel-launch overhead of 22 DiT blocks × NFE steps. A CUDA graph captured once per utterance length replays
a whole step with one launch. The math is unchanged: the same ops on the same tensors, so eager results equal
``CFM.sample`` (tests/test_sampler.py) and graph replays equal eager within float rounding.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Protocol

import torch
import torch.nn.functional as F

from ptbr_model import f5

MAX_DURATION = 65536  # CFM.sample's clamp


class StepFunction(Protocol):
    def __call__(self, t: torch.Tensor, x: torch.Tensor) -> torch.Tensor: ...


@dataclass
class FlowInputs:
    """Everything constant across the steps of one utterance."""

    step_cond: torch.Tensor  # (1, duration, mel) reference mel, zero after it
    cond: torch.Tensor  # (1, duration, mel) padded reference mel
    cond_mask: torch.Tensor  # (1, duration, 1) True over the reference
    text: torch.Tensor  # (1, text_len) symbol ids
    duration: int


def reference_mel(model, cond_wave: torch.Tensor) -> torch.Tensor:
    """(1, frames, mel) in the model's dtype, as CFM.sample computes it from the reference wave."""
    return model.mel_spec(cond_wave).permute(0, 2, 1).to(next(model.parameters()).dtype)


def sequence_frames(text_symbols: int, cond_frames: int, duration: int) -> int:
    """CFM.sample's rule for the sequence length: at least one frame more than the text and the reference, at most
    MAX_DURATION. The engine uses it to know each chunk's cost before sampling."""
    return min(max(max(text_symbols, cond_frames) + 1, duration), MAX_DURATION)


def prepare_inputs(model, cond: torch.Tensor, text: list[list[str]], duration: int) -> FlowInputs:
    """CFM.sample's preamble for a batch of one (no lens, no edit mask); ``cond`` is ``reference_mel``'s."""
    cond_frames = cond.shape[1]
    ids = f5.text_to_ids(text, model.vocab_char_map).to(cond.device)
    duration = sequence_frames(int((ids != -1).sum()), cond_frames, duration)
    cond = F.pad(cond, (0, 0, 0, duration - cond_frames), value=0.0)
    cond_mask = (torch.arange(duration, device=cond.device) < cond_frames)[None, :, None]
    step_cond = torch.where(cond_mask, cond, torch.zeros_like(cond))
    return FlowInputs(step_cond=step_cond, cond=cond, cond_mask=cond_mask, text=ids, duration=duration)


def time_grid(steps: int, sway_sampling_coef: float | None, device, dtype) -> torch.Tensor:
    t = f5.flow_timesteps(steps, device, dtype)
    if sway_sampling_coef is not None:
        t = t + sway_sampling_coef * (torch.cos(torch.pi / 2 * t) - 1 + t)
    return t


def initial_noise(inputs: FlowInputs, seed: int, channels: int, dtype: torch.dtype) -> torch.Tensor:
    torch.manual_seed(seed)  # as CFM.sample: global generator, seeded right before drawing
    return torch.randn(inputs.duration, channels, device=inputs.cond.device, dtype=dtype).unsqueeze(0)


def euler(step: StepFunction, y0: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """torchdiffeq's fixed-grid Euler on the grid ``t``: y ← y + (t₁ − t₀)·f(t₀, y)."""
    y = y0
    for index in range(len(t) - 1):
        y = y + (t[index + 1] - t[index]) * step(t[index], y)
    return y


class EagerStep:
    """One guided flow prediction, the way CFM.sample's inner ``fn`` computes it."""

    def __init__(self, transformer, inputs: FlowInputs, cfg_strength: float) -> None:
        self.transformer = transformer
        self.inputs = inputs
        self.cfg_strength = cfg_strength

    def __call__(self, t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        if self.cfg_strength < 1e-5:
            return self.transformer(x=x, cond=self.inputs.step_cond, text=self.inputs.text, time=t, mask=None,
                                    drop_audio_cond=False, drop_text=False, cache=True)
        both = self.transformer(x=x, cond=self.inputs.step_cond, text=self.inputs.text, time=t, mask=None,
                                cfg_infer=True, cache=True)
        pred, null_pred = torch.chunk(both, 2, dim=0)
        return pred + (pred - null_pred) * self.cfg_strength


def sample_mel(model, cond_wave: torch.Tensor, text: list[list[str]], duration: int, *, steps: int,
               cfg_strength: float, sway_sampling_coef: float | None, seed: int,
               graphs: StepGraphCache | None = None, cond_mel: torch.Tensor | None = None) -> torch.Tensor:
    """The generated mel (1, duration, mel) with the reference part kept, as ``CFM.sample(...)[0]``.
    ``cond_mel``: the reference's mel when the caller already has it (the same for every chunk of a request)."""
    model.eval()
    cond = reference_mel(model, cond_wave) if cond_mel is None else cond_mel
    inputs = prepare_inputs(model, cond, text, duration)
    dtype = inputs.step_cond.dtype
    y0 = initial_noise(inputs, seed, model.num_channels, dtype)
    t = time_grid(steps, sway_sampling_coef, inputs.cond.device, dtype)
    transformer = model.transformer
    try:
        step = graphs.step_for(transformer, inputs, cfg_strength) if graphs is not None else EagerStep(
            transformer, inputs, cfg_strength)
        out = euler(step, y0, t.to(dtype))
    finally:
        transformer.clear_cache()
    return torch.where(inputs.cond_mask, inputs.cond, out)


@dataclass
class _CapturedStep:
    graph: torch.cuda.CUDAGraph
    x: torch.Tensor
    t: torch.Tensor
    step_cond: torch.Tensor
    text_cond: torch.Tensor
    text_uncond: torch.Tensor
    out: torch.Tensor


class GraphedStep:
    """Replays a captured step after copying this utterance's inputs into the graph's static tensors."""

    def __init__(self, captured: _CapturedStep) -> None:
        self.captured = captured

    def __call__(self, t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        captured = self.captured
        captured.x.copy_(x)
        captured.t.copy_(t)
        captured.graph.replay()
        return captured.out.clone()  # the next replay overwrites ``out``


class StepGraphCache:
    """CUDA graphs of the guided transformer step, one per (utterance length, guidance), least recently used
    dropped first. Text embeddings are computed eagerly per utterance (once, as upstream's cache does) and copied
    in; the reference mel too. So a graph serves every request of the same length."""

    def __init__(self, capacity: int = 4, share_pool: bool = True) -> None:
        self.capacity = capacity
        self.share_pool = share_pool
        self._graphs: OrderedDict[tuple[int, float], _CapturedStep] = OrderedDict()
        self.captures = 0  # graphs captured so far: a step that captured is no sample of steady-state speed
        # One memory pool for every graph: a private pool each would hold every graph's activations at once
        # (4 graphs ≈ +0.2 GiB on the real model). Sharing is safe here because graphs never replay concurrently
        # (one synthesis at a time) and each graph's output tensor stays referenced, so no later capture reuses it.
        self._pool = None
        # One side stream for every warm-up and capture: cuBLAS keeps a workspace per stream for the life of the
        # process, so a fresh stream per capture leaked ~14 MB each (measured on an H100).
        self._stream = None

    def __len__(self) -> int:
        return len(self._graphs)

    def fresh(self) -> StepGraphCache:
        """An empty cache of the same capacity sharing this one's pool and stream (what a never-seen utterance length
        costs, measured without dropping this cache's graphs; no new stream, so no new cuBLAS workspace)."""
        other = StepGraphCache(self.capacity, self.share_pool)
        other._pool, other._stream = self._pool, self._stream
        return other

    def would_capture(self, durations: list[int], cfg_strength: float) -> list[bool]:
        """For utterances of these lengths sampled in order: which will capture a new graph (not cached, or evicted
        by the ones before it). Changes nothing."""
        cached = list(self._graphs)
        captures = []
        for duration in durations:
            key = (duration, round(cfg_strength, 6))
            captures.append(key not in cached)
            if key in cached:
                cached.remove(key)
            elif len(cached) >= self.capacity:
                cached.pop(0)
            cached.append(key)
        return captures

    def step_for(self, transformer, inputs: FlowInputs, cfg_strength: float) -> GraphedStep:
        key = (inputs.duration, round(cfg_strength, 6))
        text_cond, text_uncond = self._text_embeddings(transformer, inputs)
        captured = self._graphs.get(key)
        if captured is None:
            if self._pool is None and self.share_pool:
                self._pool = torch.cuda.graph_pool_handle()
            if self._stream is None:
                self._stream = torch.cuda.Stream()
            while len(self._graphs) >= self.capacity:
                _, evicted = self._graphs.popitem(last=False)
                evicted.graph.reset()  # free the graph now, not whenever Python collects it
            captured = self._capture(transformer, inputs, cfg_strength, text_cond, text_uncond, self._pool,
                                     self._stream)
            self._graphs[key] = captured
            self.captures += 1
        else:
            self._graphs.move_to_end(key)
            captured.text_cond.copy_(text_cond)
            captured.text_uncond.copy_(text_uncond)
        captured.step_cond.copy_(inputs.step_cond)
        return GraphedStep(captured)

    @staticmethod
    def _text_embeddings(transformer, inputs: FlowInputs) -> tuple[torch.Tensor, torch.Tensor]:
        # What DiT.get_input_embed computes and caches on the first step (seq_len = x.shape[1] without a mask).
        seq_len = inputs.duration
        text_cond = transformer.text_embed(inputs.text, seq_len=seq_len, drop_text=False)
        text_uncond = transformer.text_embed(inputs.text, seq_len=seq_len, drop_text=True)
        return text_cond, text_uncond

    @staticmethod
    def _capture(transformer, inputs: FlowInputs, cfg_strength: float, text_cond: torch.Tensor,
                 text_uncond: torch.Tensor, pool, stream: torch.cuda.Stream) -> _CapturedStep:
        static_x = torch.zeros_like(inputs.step_cond)
        static_t = torch.zeros((), device=static_x.device, dtype=static_x.dtype)
        static_cond = inputs.step_cond.clone()
        static_text_cond, static_text_uncond = text_cond.clone(), text_uncond.clone()
        static_inputs = FlowInputs(step_cond=static_cond, cond=inputs.cond, cond_mask=inputs.cond_mask,
                                   text=inputs.text, duration=inputs.duration)
        eager = EagerStep(transformer, static_inputs, cfg_strength)
        # The graph reads the text embeddings from the model's step cache: point it at the static tensors.
        transformer.text_cond, transformer.text_uncond = static_text_cond, static_text_uncond
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream):
            eager(static_t, static_x)  # warm-up on a side stream, as PyTorch's graph docs require
        torch.cuda.current_stream().wait_stream(stream)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, pool=pool, stream=stream):
            static_out = eager(static_t, static_x)
        transformer.clear_cache()
        return _CapturedStep(graph, static_x, static_t, static_cond, static_text_cond, static_text_uncond, static_out)

