#!/usr/bin/env python
"""Benchmark the synthesizer, and upstream f5-tts's pipeline on identical inputs, over fixed pt-BR workloads.

    python scripts/benchmark.py [--quick | --checkpoint FILE --vocoder DIR | --tag TAG] [--real-size-vocoder]
                                [--device auto|cpu|cuda] [--dtypes auto|float16,float32] [--allow-cpu-fp16]
                                [--nfe 7,16,32] [--workloads sentence,paragraph] [--repeats N] [--no-upstream]
                                [--flops-only] [--reference-sweep 3,6,9,12] [--sweep-nfe 7,16] [--budget-1050ti S]
                                [--compile auto|true|false] [--cuda-graphs N] [--compile-cache DIR]
                                [--first-chunk-bytes N] [--emulate-pascal] [--cold-start] [--workdir DIR]
                                [--memory-fraction F] [--out FILE]

With no speed flags it measures what the service runs by default (ptbr_model.settings: PTBR_COMPILE=auto, CUDA
graphs, dtype auto, the first-chunk size), loaded the service's way (load_checked: warm-up, compilation check,
latency calibration). By default the model is F5TTS_Base-sized with random weights (speed and memory depend on
shapes, not values), written, validated and loaded through the project's own import path into a temporary model
folder (the BentoML store is only used with --tag). Each case is one warm-up and N timed runs of our engine and of
upstream's infer_batch_process, taking turns, plus the time to first audio of a streamed synthesis (short first
chunk) and of that first chunk alone, and the engine's own prediction of its time. One JSON object per case goes to
stdout (JSON Lines); progress and a summary table go to stderr.

FLOPs are counted without running the model: the engine runs for real around a stand-in that records each DiT
call, and the real DiT replays those calls on fake tensors under FlopCounterMode (exact; see FlopProbe).
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import dataclasses
import gc
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterator, TextIO

PROCESS_STARTED = time.perf_counter()  # before torch's import: the cold-start child's import time starts here

if __name__ == "__main__" and "--emulate-pascal" in sys.argv:
    # A GTX 10xx has no Triton (it needs compute capability 7.0+): hide it before torch looks for it.
    sys.modules["triton"] = None  # type: ignore[assignment]

import numpy as np
import torch
import yaml
from torch._subclasses.fake_tensor import FakeTensorMode
from torch.utils.flop_counter import FlopCounterMode, sdpa_flop_count

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from ptbr_model import f5, store  # noqa: E402
from ptbr_model.text import vocab_indices  # noqa: E402
from ptbr_model.bench_workloads import (  # noqa: E402
    DEFAULT_REFERENCE_SECONDS,
    DEFAULT_WORKLOADS,
    WORKLOADS,
    Workload,
    max_reference_seconds,
    reference_transcript,
    voice_like,
)
from ptbr_model.checkpoint import CheckpointError  # noqa: E402
from ptbr_model.cost import NFE_CANDIDATES, LatencyModel, choose_nfe  # noqa: E402
from ptbr_model.demo import DEMO_VOCOS_CONFIG, write_demo_files  # noqa: E402
from ptbr_model.engine import (  # noqa: E402
    DeviceOutOfMemory,
    Reference,
    SynthesisOptions,
    SynthesisResult,
    Synthesizer,
    load_checked,
    plain_dit_blocks,
    resolve_device,
    resolve_dtype,
)
from ptbr_model.settings import Settings  # noqa: E402

GIB = 1024**3
RANDOM_SEED = 0
SYNTHESIS_SEED = 0
QUICK_REPEATS = 2
DEFAULT_REPEATS = 5
DEFAULT_NFE = [7, 16, 32]
QUICK_NFE = [7, 16]  # keeps --quick on 2 CPU cores under a minute
# The pt-BR fine-tune's shapes (F5TTS_Base) under the v0 preset it was trained with; text_num_embeds comes from
# the shipped vocab (2545 symbols).
REAL_SIZE_ARCH: dict[str, Any] = {
    "dim": 1024,
    "depth": 22,
    "heads": 16,
    "dim_head": 64,
    "ff_mult": 2,
    "mel_dim": 100,
    "text_dim": 512,
    "conv_layers": 4,
    "text_mask_padding": False,
    "pe_attn_head": 1,
    "qk_norm": None,
    "long_skip_connection": False,
}
# charactr/vocos-mel-24khz's backbone and head sizes; the feature extractor is the demo's (already the real one).
REAL_SIZE_VOCOS_BACKBONE = {"dim": 512, "intermediate_dim": 1536, "num_layers": 8}

EST_1050TI_FLOPS_PER_S = 1.5e12
EST_1050TI_ASSUMPTION = (
    "flops / 1.5e12 s: a GTX 1050 Ti (768 CUDA cores at ~1.4 GHz, 2.1 TFLOP/s FP32 peak) sustaining ~1.5 TFLOP/s "
    "in GEMMs; FP16 runs at FP32 rate there (native FP16 is 1/64 rate, GEMMs accumulate in FP32); compute-bound "
    "lower bound that ignores memory-bound ops, kernel launches and Python overhead"
)
# What the FLOP count covers: every matmul, linear, convolution and attention op of one engine.synthesize call,
# i.e. per chunk nfe_step DiT forwards at the real sequence length (reference + generated frames) with batch 2
# (CFM.sample packs the conditional and unconditional passes for CFG), the text embedding once per chunk and
# pass (the DiT caches it), and the vocoder once. Not counted: FFTs (reference mel, vocoder iSTFT), elementwise
# ops, norms and softmax. One multiply-add is 2 FLOPs. Upstream runs the same model calls, hence the same count.
FLOPS_COUNTED = "engine.synthesize: DiT (batch 2 for CFG) x nfe_step per chunk, text embedding, vocoder; no FFTs"
# The 1050 Ti budget table: steps a latency budget picks there, predicted from FLOPs alone at the rate above.
DEFAULT_BUDGET_1050TI_S = 10.0
# Pascal emulation (--emulate-pascal): the compute capability the engine is told.
PASCAL_CAPABILITY = (6, 1)


# --- command line ----------------------------------------------------------------------------------------------


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    model = parser.add_argument_group("model (default: random weights at the real checkpoint's size)")
    model.add_argument("--quick", action="store_true", help="use the tiny demo model (smoke test; seconds on a CPU)")
    model.add_argument("--checkpoint", type=Path, metavar="FILE",
                       help="benchmark a real checkpoint (.safetensors/.pt); needs --vocoder")
    model.add_argument("--tag", help="benchmark a model already in the BentoML store (uses your BENTOML_HOME)")
    model.add_argument("--vocoder", metavar="DIR|hub",
                       help="vocos-mel-24khz folder ('hub' downloads it); default: the demo vocoder")
    model.add_argument("--real-size-vocoder", action="store_true",
                       help="with the random model: a random vocoder of vocos-mel-24khz's size instead of the demo one")
    grid = parser.add_argument_group("grid")
    grid.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"), help="default: cuda if available")
    grid.add_argument("--dtypes", type=_csv(str), metavar="LIST", default=["auto"],
                      help="comma list of auto,float16,float32 (default auto, as the service: float16 on CUDA, "
                           "float32 on the CPU; float16 runs on CUDA only unless --allow-cpu-fp16)")
    grid.add_argument("--allow-cpu-fp16", action="store_true",
                      help="also run float16 on the CPU (slow, unrepresentative)")
    grid.add_argument("--nfe", type=_csv(int), metavar="LIST",
                      help=f"comma list of NFE steps (default {_list(DEFAULT_NFE)}; --quick: {_list(QUICK_NFE)})")
    grid.add_argument("--workloads", type=_csv(str), metavar="LIST", default=list(DEFAULT_WORKLOADS),
                      help=f"comma list of {','.join(WORKLOADS)} (default {','.join(DEFAULT_WORKLOADS)})")
    grid.add_argument("--repeats", type=int, metavar="N",
                      help=f"timed runs per case after a warm-up (default {DEFAULT_REPEATS}; --quick: {QUICK_REPEATS})")
    grid.add_argument("--no-upstream", action="store_true", help="skip timing upstream's infer_batch_process")
    grid.add_argument("--flops-only", action="store_true",
                      help="only count FLOPs (seconds, even at real size on a CPU)")
    grid.add_argument("--reference-sweep", type=_csv(float), metavar="SECONDS", default=[],
                      help="comma list of reference seconds (e.g. 3,6,9,12): report FLOPs per reference length")
    grid.add_argument("--sweep-nfe", type=_csv(int), metavar="LIST", default=[7, 16],
                      help="NFE steps of the sweep (default 7,16)")
    grid.add_argument("--budget-1050ti", type=float, metavar="SECONDS", default=DEFAULT_BUDGET_1050TI_S,
                      help="with --reference-sweep: the steps this latency budget picks on the 1050 Ti estimate "
                           f"(default {DEFAULT_BUDGET_1050TI_S:g})")
    settings = Settings()  # no speed flag = the service's defaults (PTBR_* variables included)
    speed = parser.add_argument_group("speed (defaults: the service's settings)")
    speed.add_argument("--cuda-graphs", type=int, default=settings.cuda_graphs, metavar="N",
                       help=f"step graphs kept per model (0: eager steps only; default {settings.cuda_graphs}); on "
                            "CUDA each case is also timed eagerly and the two outputs compared")
    speed.add_argument("--compile", nargs="?", const="true", default=settings.compile, choices=("auto", "true", "false"),
                       help=f"torch.compile the DiT blocks (default {settings.compile}, as PTBR_COMPILE; a bare "
                            "--compile means true)")
    speed.add_argument("--compile-cache", type=Path, metavar="DIR",
                       help="torch.compile's cache folder (default: a fresh one in the work folder)")
    speed.add_argument("--first-chunk-bytes", type=int, default=settings.first_chunk_bytes, metavar="N",
                       help=f"first chunk of a streamed synthesis (default {settings.first_chunk_bytes}, as "
                            "PTBR_FIRST_CHUNK_BYTES; 0: normal chunking)")
    speed.add_argument("--cudnn-benchmark", action="store_true",
                       help="let cuDNN autotune its convolutions (the grouped conv of the position embedding)")
    speed.add_argument("--emulate-pascal", action="store_true",
                       help="on an sm_70+ GPU, run the code paths of a compute capability 6.1 card: capability "
                            "reported as 6.1 (so eager blocks), no Triton, memory-efficient attention only")
    parser.add_argument("--cold-start", action="store_true",
                        help="instead of the grid: time two fresh processes from start to ready, the first with an "
                             "empty compile cache, the second reusing it")
    parser.add_argument("--cold-start-child", type=Path, metavar="MODEL_DIR", help=argparse.SUPPRESS)
    parser.add_argument("--workdir", type=Path, metavar="DIR",
                        help="keep the generated model (and compile cache) here and reuse them on the next run")
    parser.add_argument("--memory-fraction", type=float, metavar="F",
                        help="cap this process's CUDA memory to F of the card (4 GB card: 3.0 GiB / total)")
    parser.add_argument("--out", type=Path, metavar="FILE", help="also write the JSON lines to this file")
    parser.add_argument("--save-waves", type=Path, metavar="DIR",
                        help="save each case's output (seeded) as .npy, to compare two runs, e.g. with/without --compile")
    args = parser.parse_args(argv)
    _check_args(parser, args)
    return args


def _list(values: list[Any]) -> str:
    return ",".join(map(str, values))


def _csv(convert: Callable[[str], Any]) -> Callable[[str], list[Any]]:
    def parse(value: str) -> list[Any]:
        try:
            return [convert(item.strip()) for item in value.split(",") if item.strip()]
        except ValueError as exc:
            raise argparse.ArgumentTypeError(f"not a comma list of {convert.__name__}: {value!r}") from exc

    return parse


def _check_args(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    if sum(map(bool, (args.quick, args.checkpoint, args.tag))) > 1:
        parser.error("give at most one of --quick, --checkpoint, --tag")
    if args.tag and (args.vocoder or args.real_size_vocoder):
        parser.error("--tag uses the stored model's own vocoder: drop --vocoder/--real-size-vocoder")
    if args.checkpoint and not args.vocoder:
        parser.error("--checkpoint needs --vocoder DIR (or --vocoder hub)")
    unknown = [name for name in args.dtypes if name not in ("auto", "float16", "float32")]
    if unknown:
        parser.error(f"unknown --dtypes {unknown}: use auto,float16,float32")
    if args.first_chunk_bytes < 0:
        parser.error("--first-chunk-bytes must be 0 (off) or positive")
    if args.emulate_pascal:
        args.compile = "auto"  # what the service would run; the reported capability makes it eager
    unknown = [name for name in args.workloads if name not in WORKLOADS]
    if unknown:
        parser.error(f"unknown --workloads {unknown}: use {','.join(WORKLOADS)}")
    if args.nfe is None:
        args.nfe = QUICK_NFE if args.quick else DEFAULT_NFE
    if any(step < 1 for step in args.nfe + args.sweep_nfe):
        parser.error("NFE steps must be positive")
    too_long = [s for s in args.reference_sweep if not 0 < s <= max_reference_seconds()]
    if too_long:
        parser.error(f"--reference-sweep takes seconds in (0, {max_reference_seconds():g}], not {too_long}")
    if args.repeats is None:
        args.repeats = QUICK_REPEATS if args.quick else DEFAULT_REPEATS
    if args.repeats < 1:
        parser.error("--repeats must be at least 1")
    if args.memory_fraction is not None and not 0 < args.memory_fraction <= 1:
        parser.error("--memory-fraction must be in (0, 1]")


# --- the model -------------------------------------------------------------------------------------------------


def prepare_model(args: argparse.Namespace, workdir: Path) -> store.StoredModel:
    """The model under test, imported with the project's own path (checkpoint → store → load_stored)."""
    if args.tag:
        return store.load_stored(args.tag)
    model_dir = workdir / f"model-{model_source(args)}-{vocoder_source(args).replace('/', '_')}"
    if (model_dir / "metadata.json").exists():  # --workdir: written by an earlier run
        progress(f"reusing the model in {model_dir}")
        return store.load_model_dir(model_dir, tag=f"bench:{model_source(args)}")
    vocab = f5.shipped_vocab_path()
    demo_checkpoint, demo_vocoder = write_demo_files(workdir)
    if args.checkpoint:
        checkpoint, source = args.checkpoint.expanduser(), args.checkpoint.name
    elif args.quick:
        checkpoint, source = demo_checkpoint, "demo"
    else:
        progress("writing a random model of the real checkpoint's size")
        checkpoint, source = write_random_checkpoint(workdir, REAL_SIZE_ARCH, vocab), "random-real-size"
    vocoder_dir = demo_vocoder
    if args.vocoder == "hub":
        vocoder_dir = store.download_vocos_from_hub()
    elif args.vocoder:
        vocoder_dir = Path(args.vocoder).expanduser()
    elif args.real_size_vocoder:
        vocoder_dir = write_random_vocoder(workdir / "vocoder-real-size")
    options = store.ImportOptions(checkpoint, source, vocab, vocoder_dir, demo=source in ("demo", "random-real-size"))
    # The project's own import path, minus the BentoML store: the same checks and files, and GPU machines
    # need no bentoml to run the benchmark.
    partial = model_dir.with_name(model_dir.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    store.write_model_dir(store.validate_import(options, progress), partial)
    partial.rename(model_dir)
    return store.load_model_dir(model_dir, tag=f"bench:{source}")


def write_random_checkpoint(directory: Path, arch: dict[str, Any], vocab_path: Path) -> Path:
    """A float32 .safetensors in the canonical layout, random but deterministic, like the real file (~1.35 GB)."""
    from safetensors.torch import save_file

    torch.manual_seed(RANDOM_SEED)
    model = f5.build_cfm({**arch, "text_num_embeds": len(vocab_indices(vocab_path))}, f5.MEL_DEFAULTS)
    # As demo.py: upstream zero-initialises the output projections; a trained model never has them at zero.
    with torch.no_grad():
        for parameter in model.parameters():
            if torch.count_nonzero(parameter) == 0:
                parameter.normal_(0.0, 0.02)
    state = {key: value.contiguous() for key, value in model.state_dict().items() if not key.startswith("mel_spec.")}
    path = directory / "random_real_size.safetensors"
    save_file(state, str(path))
    return path


def write_random_vocoder(directory: Path) -> Path:
    """A vocos folder with vocos-mel-24khz's layer sizes and random weights."""
    from vocos import Vocos

    config = copy.deepcopy(DEMO_VOCOS_CONFIG)
    config["backbone"]["init_args"].update(REAL_SIZE_VOCOS_BACKBONE)
    config["head"]["init_args"]["dim"] = REAL_SIZE_VOCOS_BACKBONE["dim"]
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=True))
    torch.manual_seed(RANDOM_SEED)
    torch.save(Vocos.from_hparams(str(directory / "config.yaml")).state_dict(), directory / "pytorch_model.bin")
    return directory


# --- FLOPs -----------------------------------------------------------------------------------------------------


def _cpu_attention_flops(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
    return sdpa_flop_count(query_shape, key_shape, value_shape)


def flop_counter() -> FlopCounterMode:
    # PyTorch has formulas for the CUDA attention kernels only: without this the CPU's attention counts as zero.
    return FlopCounterMode(
        display=False,
        custom_mapping={torch.ops.aten._scaled_dot_product_flash_attention_for_cpu: _cpu_attention_flops},
    )


@dataclass(frozen=True)
class DitCall:
    """The shapes and flags of one DiT forward, which is all its FLOP count depends on."""

    x_shape: tuple[int, ...]
    text_shape: tuple[int, ...]
    time_shape: tuple[int, ...]
    flags: tuple[tuple[str, Any], ...]
    follows_cached_call: bool  # an earlier call of this chunk filled the DiT's text-embedding cache


class ShapeRecorder(torch.nn.Module):
    """Stands in for the DiT inside CFM.sample: records each call and returns zeros of the output's shape, so all
    around the DiT (text front-end, duration rule, chunking, sampling loop, vocoder) runs for real, cheaply."""

    def __init__(self) -> None:
        super().__init__()
        # CFM.sample takes its device and dtype from its first parameter.
        self.anchor = torch.nn.Parameter(torch.zeros(1), requires_grad=False)
        self.calls: list[DitCall] = []
        self._cache_filled = False

    def forward(self, x: torch.Tensor, cond: torch.Tensor, text: torch.Tensor, time: torch.Tensor,
                mask: torch.Tensor | None = None, **flags: Any) -> torch.Tensor:
        if mask is not None:  # CFM.sample passes one only for a batch of several texts
            raise NotImplementedError("batched sampling is not counted: the engine samples one text at a time")
        self.calls.append(DitCall(tuple(x.shape), tuple(text.shape), tuple(time.shape), tuple(sorted(flags.items())),
                                  self._cache_filled))
        self._cache_filled = self._cache_filled or bool(flags.get("cache"))
        batch = x.shape[0] * (2 if flags.get("cfg_infer") else 1)  # cond and uncond packed, as the DiT returns
        return x.new_zeros((batch, *x.shape[1:]))

    def clear_cache(self) -> None:
        self._cache_filled = False


class FakeDit:
    """The real DiT built under FakeTensorMode: its ops run on shapes alone, so FlopCounterMode counts a real-size
    forward in about a second with no memory. Counts are memoised per call signature (nfe_step calls share two)."""

    def __init__(self, arch: dict[str, Any], mel: dict[str, Any]) -> None:
        self.mode = FakeTensorMode()
        with self.mode:
            self.transformer = f5.build_cfm(arch, mel).transformer
        self._memo: dict[DitCall, int] = {}

    def flops(self, call: DitCall) -> int:
        if call not in self._memo:
            self._memo[call] = self._count(call)
        return self._memo[call]

    def _count(self, call: DitCall) -> int:
        flags = dict(call.flags)
        with self.mode:
            x = torch.zeros(call.x_shape)
            inputs = (x, x, torch.zeros(call.text_shape, dtype=torch.long), torch.zeros(call.time_shape))
            self.transformer.clear_cache()
            if call.follows_cached_call:
                self.transformer(*inputs, **flags)  # fill the text-embedding cache as the chunk's first call did
            with flop_counter() as counter:
                self.transformer(*inputs, **flags)
            self.transformer.clear_cache()
        return int(counter.get_total_flops())


@dataclass
class FlopProbe:
    """Counts the FLOPs of ``Synthesizer.synthesize`` for a stored model of any size, on the CPU, in seconds: a
    synthesizer whose DiT is a ShapeRecorder (everything else real), plus the FakeDit replaying the recorded calls."""

    synthesizer: Synthesizer
    recorder: ShapeRecorder
    dit: FakeDit

    @classmethod
    def build(cls, stored: store.StoredModel) -> FlopProbe:
        vocab = vocab_indices(stored.vocab_path)
        with torch.device("meta"):  # a shell: the DiT built here is replaced at once
            model = f5.build_cfm(stored.arch, stored.mel, vocab_char_map=vocab)
        recorder = ShapeRecorder()
        model.transformer = recorder
        model.mel_spec.to_empty(device="cpu")  # its one buffer only marks the device
        vocoder = f5.load_vocos(stored.vocoder_dir / "config.yaml", stored.vocoder_dir / "pytorch_model.bin")
        synthesizer = Synthesizer(model=model, vocoder=vocoder, vocab=frozenset(vocab), device=torch.device("cpu"),
                                  dtype=torch.float32, stored=stored)
        return cls(synthesizer, recorder, FakeDit(stored.arch, stored.mel))

    def count(self, text: str, reference: Reference, options: SynthesisOptions) -> tuple[int, SynthesisResult]:
        """FLOPs of one ``synthesize`` call (see FLOPS_COUNTED), and its result (chunks, audio length)."""
        self.recorder.calls.clear()
        with flop_counter() as counter:  # the vocoder, for real
            result = self.synthesizer.synthesize(text, reference, options)
        dit_flops = sum(self.dit.flops(call) for call in self.recorder.calls)
        return int(counter.get_total_flops()) + dit_flops, result


# --- timing ----------------------------------------------------------------------------------------------------


@dataclass
class Timing:
    """One side of a case (our engine or upstream): its timed runs, audio length, memory peak, or its OOM."""

    label: str
    run: Callable[[], np.ndarray]
    latencies: list[float] = field(default_factory=list)
    audio_seconds: float | None = None
    peak_bytes: int | None = None  # the run's own peak above what was allocated when it started
    error: str | None = None

    def stat(self, pick: Callable[[list[float]], float]) -> float | None:
        return round(pick(self.latencies), 4) if self.latencies else None


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def release_memory(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def measure(sides: list[Timing], device: torch.device, repeats: int, sample_rate: int) -> None:
    """One warm-up each, then ``repeats`` rounds. The sides take turns within each round, so load from other
    processes (a shared CPU, a GPU's clocks) falls on both alike. An OOM ends that side only; it is a result."""
    for round_index in range(repeats + 1):
        for side in sides:
            if side.error is None:
                _run_once(side, device, sample_rate, round_index, repeats)


def _run_once(side: Timing, device: torch.device, sample_rate: int, round_index: int, repeats: int) -> None:
    name = "warm-up" if round_index == 0 else f"run {round_index}/{repeats}"
    allocated_before = 0
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        allocated_before = torch.cuda.memory_allocated(device)
    try:
        synchronize(device)  # start from an idle device: earlier queued work is not this run's
        started = time.perf_counter()
        wave = side.run()
        synchronize(device)
        seconds = time.perf_counter() - started
    except (DeviceOutOfMemory, torch.cuda.OutOfMemoryError) as exc:
        release_memory(device)
        side.error = "out of memory: " + (str(exc).splitlines() or [""])[0][:160]
        progress(f"  {side.label} {name}: out of memory")
        return
    if device.type == "cuda":
        # Relative to the run's start: what other sides left allocated in this process (upstream's thread pool
        # leaves a cuBLAS workspace per thread, ~0.03 GiB each) is not this side's memory.
        side.peak_bytes = max(side.peak_bytes or 0, torch.cuda.max_memory_allocated(device) - allocated_before)
    if round_index > 0:
        side.latencies.append(seconds)
    side.audio_seconds = len(wave) / sample_rate
    progress(f"  {side.label} {name}: {seconds:.3f} s")


def upstream_runner(synthesizer: Synthesizer, raw_wave: np.ndarray, reference: Reference, chunks: list[str],
                    options: SynthesisOptions) -> Callable[[], np.ndarray]:
    """Upstream's infer_batch_process on the same model objects, reference and chunks (its thread pool included).
    ``reference.text`` ends in '.  ': without the last space it is preprocess_ref_audio_text's output, which
    infer_batch_process expects (it appends that space itself)."""
    audio = torch.from_numpy(np.ascontiguousarray(raw_wave, dtype=np.float32)).unsqueeze(0)

    def run() -> np.ndarray:
        with uncompiled_blocks(synthesizer.model.transformer):  # upstream as shipped: no fused kernels of ours
            return _run_upstream()

    def _run_upstream() -> np.ndarray:
        wave, _, _ = next(f5.upstream_infer_batch_process(
            (audio, synthesizer.sample_rate), reference.text[:-1], chunks, synthesizer.model, synthesizer.vocoder,
            mel_spec_type=synthesizer.stored.mel["mel_spec_type"], progress=None, target_rms=synthesizer.target_rms,
            cross_fade_duration=options.cross_fade_duration, nfe_step=options.nfe_step,
            cfg_strength=options.cfg_strength, sway_sampling_coef=options.sway_sampling_coef, speed=options.speed,
            device=str(synthesizer.device),
        ))
        return np.asarray(wave, dtype=np.float32)

    return run


@contextlib.contextmanager
def uncompiled_blocks(transformer: torch.nn.Module) -> Iterator[None]:
    """Swap torch.compile'd DiT blocks (engine.compile_dit_blocks) back to the plain modules for a while."""
    blocks = transformer.transformer_blocks
    compiled = list(blocks)
    plain_dit_blocks(transformer)
    try:
        yield
    finally:
        for index, block in enumerate(compiled):
            blocks[index] = block


# --- records ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FlopCount:
    flops: int  # counted: FlopCounterMode over the real modules (FlopProbe)
    audio_seconds: float
    chunks: list[str]
    normalized_chars: int
    analytic: int  # the engine's own formula (ptbr_model.cost), which the latency budget uses


def environment(stored: store.StoredModel, source: str, vocoder: str, device: torch.device) -> dict[str, Any]:
    commit, dirty = git_commit()
    return {
        "model": source,
        "model_tag": stored.tag,
        "vocoder": vocoder,
        "gpu_name": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
        "cpu_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "f5_tts": f5.f5_tts_version(),
        "commit": commit,
        "commit_dirty": dirty,
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


def git_commit() -> tuple[str | None, bool | None]:
    """The short HEAD, and whether tracked files differ from it (numbers from a dirty tree are not that commit's)."""
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO_ROOT, capture_output=True,
                              text=True, check=True, timeout=10).stdout.strip()
        status = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO_ROOT,
                                capture_output=True, text=True, check=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return None, None
    return head, bool(status.strip())


def flops_fields(flops: int, analytic: int | None = None) -> dict[str, Any]:
    return {
        "flops": flops,
        "flops_analytic_equal": None if analytic is None else analytic == flops,
        "flops_counted": FLOPS_COUNTED,
        "est_1050ti_s": round(flops / EST_1050TI_FLOPS_PER_S, 3),
        "est_1050ti_assumption": EST_1050TI_ASSUMPTION,
    }


def workload_fields(workload: Workload, nfe_step: int, count: FlopCount, ref_seconds: float) -> dict[str, Any]:
    return {
        "workload": workload.name,
        "nfe_step": nfe_step,
        "chars": len(workload.text),
        "normalized_chars": count.normalized_chars,
        "chunks": len(count.chunks),
        "ref_s": ref_seconds,
    }


def gib(value: int | None) -> float | None:
    return None if value is None else round(value / GIB, 3)


def case_record(workload: Workload, options: SynthesisOptions, synthesizer: Synthesizer, count: FlopCount,
                ours: Timing, theirs: Timing | None, env: dict[str, Any], repeats: int) -> dict[str, Any]:
    median = ours.stat(statistics.median)
    upstream_median = theirs.stat(statistics.median) if theirs else None
    return {
        "kind": "case",
        **workload_fields(workload, options.nfe_step, count, DEFAULT_REFERENCE_SECONDS),
        "dtype": str(synthesizer.dtype).removeprefix("torch."),
        "device": str(synthesizer.device),
        "repeats": repeats,
        "latency_s_median": median,
        "latency_s_min": ours.stat(min),
        "latency_s_max": ours.stat(max),
        "audio_s": None if ours.audio_seconds is None else round(ours.audio_seconds, 3),
        "rtf": round(median / ours.audio_seconds, 4) if median and ours.audio_seconds else None,
        "error": ours.error,
        "load_s": round(synthesizer.load_seconds, 2),
        "load_peak_gib": gib(synthesizer.load_peak_bytes),
        # The model's resident memory plus the request's own peak: what a process serving only this needs.
        "peak_vram_gib": gib(synthesizer.resident_bytes + ours.peak_bytes) if ours.peak_bytes is not None else None,
        **flops_fields(count.flops, count.analytic),
        "upstream_latency_s_median": upstream_median,
        "upstream_latency_s_min": theirs.stat(min) if theirs else None,
        "upstream_latency_s_max": theirs.stat(max) if theirs else None,
        "upstream_audio_s": round(theirs.audio_seconds, 3) if theirs and theirs.audio_seconds else None,
        "upstream_peak_vram_gib": (gib(synthesizer.resident_bytes + theirs.peak_bytes)
                                   if theirs and theirs.peak_bytes is not None else None),
        "upstream_error": theirs.error if theirs else None,
        "speedup_vs_upstream": round(upstream_median / median, 3) if median and upstream_median else None,
        "cfg_strength": options.cfg_strength,
        "sway_sampling_coef": options.sway_sampling_coef,
        **env,
    }


# --- the runs --------------------------------------------------------------------------------------------------


@dataclass
class Bench:
    """What every case shares: the arguments, the model, the probe that counts FLOPs, and where records go."""

    args: argparse.Namespace
    stored: store.StoredModel
    source: str
    device: torch.device
    probe: FlopProbe
    emit: Callable[[dict[str, Any]], None]
    env: dict[str, Any]
    compile_cache: Path | None = None
    flop_cache: dict[tuple[str, int, str, int], FlopCount] = field(default_factory=dict)

    def options(self, nfe_step: int) -> SynthesisOptions:
        return SynthesisOptions(nfe_step=nfe_step, seed=SYNTHESIS_SEED)

    def count(self, workload: Workload, nfe_step: int, reference: Reference) -> FlopCount:
        """Counted once per workload, NFE and reference: dtypes and repeats do not change the model's work."""
        key = (workload.name, nfe_step, reference.text, reference.wave.shape[-1])
        if key not in self.flop_cache:
            flops, result = self.probe.count(workload.text, reference, self.options(nfe_step))
            analytic = self.probe.synthesizer.plan(workload.text, reference, self.options(nfe_step)).flops
            self.flop_cache[key] = FlopCount(flops, result.audio_seconds, result.chunks, len(result.normalized_text),
                                             analytic)
        return self.flop_cache[key]


def run_grid(bench: Bench, dtypes: list[str]) -> list[dict[str, Any]]:
    args = bench.args
    raw_wave = voice_like(DEFAULT_REFERENCE_SECONDS)
    transcript = reference_transcript(DEFAULT_REFERENCE_SECONDS)
    probe_reference = bench.probe.synthesizer.make_reference(raw_wave, transcript)
    workloads = [WORKLOADS[name] for name in args.workloads]
    records: list[dict[str, Any]] = []
    if args.flops_only:
        for workload, nfe_step in _cases(workloads, args.nfe):
            count = bench.count(workload, nfe_step, probe_reference)
            records.append(flops_record(workload, nfe_step, count, DEFAULT_REFERENCE_SECONDS, bench))
            bench.emit(records[-1])
        return records
    total = len(dtypes) * len(workloads) * len(args.nfe)
    for dtype in dtypes:
        progress(f"loading {bench.stored.tag} on {bench.device} in {dtype} (compile={args.compile}), warming up")
        started = time.perf_counter()
        # As the service loads: warm-up (compiles and verifies the compiled blocks), latency calibration.
        synthesizer = load_checked(bench.stored, str(bench.device), dtype, cuda_graphs=args.cuda_graphs,
                                   compile_blocks=args.compile, compile_cache_dir=bench.compile_cache,
                                   first_chunk_bytes=args.first_chunk_bytes)
        loaded = loaded_fields(synthesizer, time.perf_counter() - started)
        progress(f"ready in {loaded['ready_s']} s; DiT blocks: {synthesizer.compile_status}; latency model "
                 f"GEMMs {loaded['latency_tflops']} TFLOP/s, attention {loaded['latency_attention_tflops']} TFLOP/s, "
                 f"{loaded['latency_step_ms']} ms/step, {loaded['latency_chunk_ms']} ms/chunk")
        reference = synthesizer.make_reference(raw_wave, transcript)
        for workload, nfe_step in _cases(workloads, args.nfe):
            progress(f"[{len(records) + 1}/{total}] {workload.name} nfe={nfe_step} {dtype}")
            count = bench.count(workload, nfe_step, probe_reference)
            record = {**run_case(bench, synthesizer, workload, nfe_step, count, raw_wave, reference), **loaded}
            progress(f"[{len(records) + 1}/{total}] {case_summary(record)}")
            records.append(record)
            bench.emit(record)
        del synthesizer, reference
        release_memory(bench.device)
    return records


def _cases(workloads: list[Workload], nfe_steps: list[int]) -> Iterator[tuple[Workload, int]]:
    for workload in workloads:
        for nfe_step in nfe_steps:
            yield workload, nfe_step


def loaded_fields(synthesizer: Synthesizer, ready_seconds: float) -> dict[str, Any]:
    latency = synthesizer.latency
    return {
        "ready_s": round(ready_seconds, 2),
        "compiled": synthesizer.compiled,
        "compile_status": synthesizer.compile_status,
        "latency_tflops": round(1 / latency.seconds_per_flop / 1e12, 3) if latency and latency.seconds_per_flop else None,
        "latency_attention_tflops": (round(1 / latency.seconds_per_attention_flop / 1e12, 3)
                                     if latency and latency.seconds_per_attention_flop else None),
        "latency_step_ms": round(latency.seconds_per_step * 1e3, 3) if latency else None,
        "latency_chunk_ms": round(latency.seconds_per_chunk * 1e3, 3) if latency else None,
        "latency_capture_ms": round(latency.seconds_per_capture * 1e3, 3) if latency else None,
        "latency_calibration": [{"flops": o.work.flops, "attention_flops": o.work.attention_flops,
                                 "steps": o.work.steps, "captures": o.work.captures, "seconds": round(o.seconds, 5)}
                                for o in synthesizer.calibration],
        "latency_capture_tflops": (round(1 / latency.seconds_per_capture_flop / 1e12, 3)
                                   if latency and latency.seconds_per_capture_flop else None),
    }


def run_case(bench: Bench, synthesizer: Synthesizer, workload: Workload, nfe_step: int, count: FlopCount,
             raw_wave: np.ndarray, reference: Reference) -> dict[str, Any]:
    options = bench.options(nfe_step)
    results: list[SynthesisResult] = []

    def run_ours() -> np.ndarray:
        results.append(synthesizer.synthesize(workload.text, reference, options))
        return results[-1].wave

    ours = Timing("engine", run_ours)
    # The same engine with every step run eagerly: what the CUDA graphs buy, and proof they change nothing. It
    # gets no latency model: its timings must not teach the engine's.
    graphs_on = synthesizer.step_graphs is not None
    eager_engine = dataclasses.replace(synthesizer, step_graphs=None, latency=None) if graphs_on else None
    eager = Timing("eager", lambda: eager_engine.synthesize(workload.text, reference, options).wave) if eager_engine else None
    # Streaming: time to the first piece of audio with the short first chunk, and that chunk synthesised alone.
    stream_plan = synthesizer.plan(workload.text, reference, options, first_chunk_short=True)
    first_chunk = stream_plan.chunks[0]

    def run_first_audio() -> np.ndarray:
        stream = synthesizer.iter_synthesis(workload.text, reference, options, first_chunk_short=True)
        try:
            return next(stream).wave
        finally:
            stream.close()

    first_audio = Timing("first audio (stream)", run_first_audio)
    first_alone = Timing("first chunk alone", lambda: synthesizer.synthesize(first_chunk, reference, options).wave)
    # Real traffic brings lengths the graph cache has not seen: the same request with an empty cache each time pays
    # a capture per chunk (the engine predicts that too).
    new_results: list[SynthesisResult] = []
    new_lengths = new_first_audio = None
    if graphs_on:
        def run_new_lengths() -> np.ndarray:
            fresh = dataclasses.replace(synthesizer, step_graphs=synthesizer.step_graphs.fresh())
            new_results.append(fresh.synthesize(workload.text, reference, options))
            return new_results[-1].wave

        def run_new_first_audio() -> np.ndarray:
            fresh = dataclasses.replace(synthesizer, step_graphs=synthesizer.step_graphs.fresh())
            stream = fresh.iter_synthesis(workload.text, reference, options, first_chunk_short=True)
            try:
                return next(stream).wave
            finally:
                stream.close()

        new_lengths = Timing("new lengths", run_new_lengths)
        new_first_audio = Timing("first audio, new length", run_new_first_audio)
    theirs = None
    if not bench.args.no_upstream:
        # The chunks our front-end made (upstream gets text that is already normalised and chunked).
        theirs = Timing("upstream", upstream_runner(synthesizer, raw_wave, reference, count.chunks, options))
    measure([side for side in (ours, eager, theirs, first_audio, first_alone, new_lengths, new_first_audio) if side],
            synthesizer.device, bench.args.repeats, synthesizer.sample_rate)
    record = case_record(workload, options, synthesizer, count, ours, theirs, bench.env, bench.args.repeats)
    record.update(prediction_fields(results, ours, bench.args.repeats))
    record.update(first_audio_fields(first_audio, first_alone, stream_plan.chunks, ours))
    if new_lengths is not None:
        new = prediction_fields(new_results, new_lengths, bench.args.repeats)
        record.update({
            "new_lengths_latency_s_median": new_lengths.stat(statistics.median),
            "new_lengths_predicted_s": new["predicted_s"],
            "new_lengths_prediction_error": new["prediction_error"],
            "first_audio_new_length_s_median": new_first_audio.stat(statistics.median),
        })
    record.update(output_checks(synthesizer, ours, eager, bench.args.save_waves, f"{workload.name}-{nfe_step}"))
    return record


def prediction_fields(results: list[SynthesisResult], ours: Timing, repeats: int) -> dict[str, Any]:
    """The engine's own prediction against the measured median: the first (made before this case had ever run:
    calibration and earlier cases only) and the median over the timed runs (the moving average at work)."""
    measured = ours.stat(statistics.median)
    timed = [r.predicted_seconds for r in results[1:repeats + 1] if r.predicted_seconds is not None]
    first = results[0].predicted_seconds if results else None
    predicted = statistics.median(timed) if timed else None
    return {
        "nfe_step_used": results[-1].nfe_step if results else None,
        "flops_analytic": results[-1].flops if results else None,
        "predicted_s_first": round(first, 4) if first is not None else None,
        "predicted_s": round(predicted, 4) if predicted is not None else None,
        "prediction_error_first": round(first / measured - 1, 3) if first is not None and measured else None,
        "prediction_error": round(predicted / measured - 1, 3) if predicted is not None and measured else None,
    }


def first_audio_fields(first_audio: Timing, first_alone: Timing, stream_chunks: tuple[str, ...],
                       ours: Timing) -> dict[str, Any]:
    streamed = first_audio.stat(statistics.median)
    alone = first_alone.stat(statistics.median)
    return {
        # Time to first audio: non-streamed, it is the whole latency; streamed, the first piece's.
        "first_audio_s_median": streamed,
        "first_audio_s_min": first_audio.stat(min),
        "first_chunk_alone_s_median": alone,
        "first_audio_vs_first_chunk": round(streamed / alone, 3) if streamed and alone else None,
        "first_audio_nonstreamed_s_median": ours.stat(statistics.median),
        "stream_chunks": len(stream_chunks),
        "first_chunk_text": stream_chunks[0],
        "first_chunk_utf8_bytes": len(stream_chunks[0].encode("utf-8")),
        "first_audio_error": first_audio.error or first_alone.error,
    }


def output_checks(synthesizer: Synthesizer, ours: Timing, eager: Timing | None, save_dir: Path | None,
                  case_name: str) -> dict[str, Any]:
    """Weights' dtype, finite output, and (with graphs) eager timing and the largest graph-vs-eager difference."""
    checks: dict[str, Any] = {
        "weights_dtype": str(next(synthesizer.model.parameters()).dtype).removeprefix("torch."),
        "cuda_graphs": len(synthesizer.step_graphs) if synthesizer.step_graphs is not None else 0,
    }
    if ours.error is None:
        wave = ours.run()
        checks["output_finite"] = bool(np.isfinite(wave).all())
        if save_dir is not None:
            save_dir.mkdir(parents=True, exist_ok=True)
            np.save(save_dir / f"{case_name}-{str(synthesizer.dtype).removeprefix('torch.')}.npy", wave)
        if eager is not None and eager.error is None:
            reference_wave = eager.run()
            checks["graph_vs_eager_max_abs"] = float(np.max(np.abs(wave - reference_wave))) if len(wave) == len(
                reference_wave) else None
    if eager is not None:
        eager_median = eager.stat(statistics.median)
        ours_median = ours.stat(statistics.median)
        checks["eager_latency_s_median"] = eager_median
        checks["graphs_speedup"] = round(eager_median / ours_median, 3) if eager_median and ours_median else None
    return checks


def flops_record(workload: Workload, nfe_step: int, count: FlopCount, ref_seconds: float,
                 bench: Bench) -> dict[str, Any]:
    return {
        "kind": "flops",
        **workload_fields(workload, nfe_step, count, ref_seconds),
        "audio_s": round(count.audio_seconds, 3),
        **flops_fields(count.flops, count.analytic),
        **bench.env,
    }


def run_reference_sweep(bench: Bench) -> list[dict[str, Any]]:
    """FLOPs against reference length: the transcript grows with the reference (a steady speaking rate), so the
    generated audio stays about the same and the growth is the reference's own frames (attention: quadratically)."""
    records = []
    for seconds in bench.args.reference_sweep:
        reference = bench.probe.synthesizer.make_reference(voice_like(seconds), reference_transcript(seconds))
        for workload, nfe_step in _cases([WORKLOADS[name] for name in bench.args.workloads], bench.args.sweep_nfe):
            count = bench.count(workload, nfe_step, reference)
            record = {**flops_record(workload, nfe_step, count, seconds, bench), "kind": "reference_sweep",
                      "ref_text_bytes": len(reference.text.encode("utf-8"))}
            progress(f"sweep ref={seconds:g}s {workload.name} nfe={nfe_step}: {count.flops / 1e12:.2f} TFLOP")
            records.append(record)
            bench.emit(record)
        for workload in [WORKLOADS[name] for name in bench.args.workloads]:
            records.append(budget_record(bench, workload, reference, seconds))
            bench.emit(records[-1])
    return records


def budget_record(bench: Bench, workload: Workload, reference: Reference, ref_seconds: float) -> dict[str, Any]:
    """The steps a latency budget picks on the GTX 1050 Ti estimate (FLOPs ÷ 1.5 TFLOP/s, no overhead term): under
    the default preset (balanced, 16 steps at most) and under quality (32 at most)."""
    budget = bench.args.budget_1050ti
    latency = LatencyModel.from_flop_rate(EST_1050TI_FLOPS_PER_S, source="1050 Ti estimate")
    cost = bench.probe.synthesizer.plan(workload.text, reference, bench.options(16)).cost
    estimates = {str(step): round(latency.predict_request(cost, step), 2) for step in NFE_CANDIDATES}
    picks = {}
    for preset, ceiling in (("balanced", 16), ("quality", 32)):
        step, predicted = choose_nfe(cost, latency, budget, ceiling)
        picks[preset] = {"nfe_step": step, "est_1050ti_s": round(predicted, 2), "fits": predicted <= budget}
    progress(f"1050 Ti, {budget:g} s budget, ref={ref_seconds:g}s {workload.name}: balanced → "
             f"{picks['balanced']['nfe_step']} steps ({picks['balanced']['est_1050ti_s']} s), quality → "
             f"{picks['quality']['nfe_step']} steps ({picks['quality']['est_1050ti_s']} s)")
    return {"kind": "budget_1050ti", "workload": workload.name, "ref_s": ref_seconds, "budget_s": budget,
            "picks": picks, "est_1050ti_s_by_nfe": estimates, "est_1050ti_assumption": EST_1050TI_ASSUMPTION,
            **bench.env}


# --- output ----------------------------------------------------------------------------------------------------


def progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def case_summary(record: dict[str, Any]) -> str:
    text = (f"{record['workload']} nfe={record['nfe_step']} {record['dtype']}: "
            f"{_fmt(record['latency_s_median'], '.3f')} s for {_fmt(record['audio_s'], '.2f')} s of audio")
    if record["error"]:
        text += f" ({record['error']})"
    if record["upstream_latency_s_median"] is not None or record["upstream_error"]:
        text += f", upstream {_fmt(record['upstream_latency_s_median'], '.3f')} s"
        text += f" ({record['upstream_error']})" if record["upstream_error"] else ""
    return text


def print_table(records: list[dict[str, Any]], stream: TextIO) -> None:
    columns = [("workload", "workload", "s"), ("nfe", "nfe_step", "d"), ("dtype", "dtype", "s"),
               ("chunks", "chunks", "d"), ("audio s", "audio_s", ".2f"), ("median s", "latency_s_median", ".3f"),
               ("min s", "latency_s_min", ".3f"), ("max s", "latency_s_max", ".3f"), ("rtf", "rtf", ".3f"),
               ("upstream s", "upstream_latency_s_median", ".3f"), ("speedup", "speedup_vs_upstream", ".2f"),
               ("eager s", "eager_latency_s_median", ".3f"), ("graphs x", "graphs_speedup", ".2f"),
               ("peak GiB", "peak_vram_gib", ".2f"), ("up. GiB", "upstream_peak_vram_gib", ".2f"),
               ("1st audio s", "first_audio_s_median", ".3f"), ("1st chunk s", "first_chunk_alone_s_median", ".3f"),
               ("1st ratio", "first_audio_vs_first_chunk", ".2f"), ("pred s", "predicted_s", ".3f"),
               ("pred err", "prediction_error", "+.2f"), ("steps", "nfe_step_used", "d"),
               ("new-len s", "new_lengths_latency_s_median", ".3f"), ("new pred err", "new_lengths_prediction_error", "+.2f"),
               ("1st new s", "first_audio_new_length_s_median", ".3f"),
               ("TFLOP", "flops", ""), ("1050Ti est s", "est_1050ti_s", ".2f"), ("ref s", "ref_s", "g")]
    present = [column for column in columns if any(column[1] in record for record in records)]
    rows = [[column[0] for column in present]]
    for record in records:
        rows.append([_cell(record.get(key), spec, key) for _, key, spec in present])
    widths = [max(len(row[i]) for row in rows) for i in range(len(present))]
    for row in rows:
        print("  ".join(cell.rjust(width) for cell, width in zip(row, widths)), file=stream)


def print_summary(records: list[dict[str, Any]]) -> None:
    grid = [record for record in records if record["kind"] in ("case", "flops")]
    sweep = [record for record in records if record["kind"] == "reference_sweep"]
    if not records:
        progress("no case ran (float16 on the CPU needs --allow-cpu-fp16)")
    for table in (grid, sweep):
        if table:
            print_table(table, sys.stderr)
    for record in records:
        if record["kind"] == "budget_1050ti":
            picks = record["picks"]
            progress(f"1050 Ti est., {record['budget_s']:g} s budget, {record['workload']}, ref {record['ref_s']:g} s: "
                     f"balanced → {picks['balanced']['nfe_step']} steps ({picks['balanced']['est_1050ti_s']} s), "
                     f"quality → {picks['quality']['nfe_step']} steps ({picks['quality']['est_1050ti_s']} s)")
        elif record["kind"] == "cold_start":
            progress(f"cold start, {record['compile_cache']} compile cache: ready after {record['process_to_ready_s']} s "
                     f"({record['compile_status']}); first sentence {record['first_sentence_after_ready_s']} s")


def _cell(value: Any, spec: str, key: str) -> str:
    if value is None:
        return "-"
    if key == "flops":
        return f"{value / 1e12:.3f}"
    return format(value, spec)


def json_writer(streams: list[TextIO]) -> Callable[[dict[str, Any]], None]:
    def emit(record: dict[str, Any]) -> None:
        line = json.dumps(record, ensure_ascii=False)
        for stream in streams:
            print(line, file=stream, flush=True)

    return emit


def selected_dtypes(args: argparse.Namespace, device: torch.device) -> list[str]:
    # 'auto' is the service's choice for this device (float16 on CUDA, float32 on the CPU).
    names = [str(resolve_dtype(name, device)).removeprefix("torch.") for name in args.dtypes]
    names = list(dict.fromkeys(names))
    if device.type == "cuda" or args.allow_cpu_fp16:
        return names
    if "float16" in names:
        progress("skipping float16 on the CPU (--allow-cpu-fp16 to run it)")
    return [dtype for dtype in names if dtype != "float16"]


def model_source(args: argparse.Namespace) -> str:
    if args.tag:
        return args.tag
    if args.checkpoint:
        return args.checkpoint.name
    return "demo" if args.quick else "random-real-size"


def vocoder_source(args: argparse.Namespace) -> str:
    if args.tag:
        return "stored"
    if args.vocoder:
        return args.vocoder
    return "random-real-size" if args.real_size_vocoder else "demo"


def prepare_device(args: argparse.Namespace) -> torch.device:
    device = resolve_device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("error: --device cuda but PyTorch sees no CUDA device")
    if args.cudnn_benchmark and device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    if args.memory_fraction is not None:
        if device.type != "cuda":
            raise SystemExit("error: --memory-fraction needs a CUDA device")
        # Before the model loads: every allocation of the run then counts against the cap (a 4 GB card's).
        torch.cuda.set_per_process_memory_fraction(args.memory_fraction, device.index or torch.cuda.current_device())
    if args.emulate_pascal:
        if device.type != "cuda":
            raise SystemExit("error: --emulate-pascal needs a CUDA device")
        emulate_pascal()
    return device


def emulate_pascal() -> None:
    """Make this process take the code paths a compute capability 6.1 card (GTX 10xx) takes: the engine and torch's
    Python side read capability 6.1 (so the blocks stay eager), Triton is hidden (done at import, see the top of
    this file), and scaled_dot_product_attention gets the kernels sm_61 has: flash and cuDNN attention need sm_80+,
    so only the memory-efficient kernel (sm_50+) and the math fallback stay enabled, chosen by torch's own rules."""
    real = torch.cuda.get_device_capability

    def capability(device: Any = None) -> tuple[int, int]:
        real(device)  # still validates the device
        return PASCAL_CAPABILITY

    torch.cuda.get_device_capability = capability  # type: ignore[assignment]
    torch.backends.cuda.enable_flash_sdp(False)
    torch.backends.cuda.enable_cudnn_sdp(False)
    torch.backends.cuda.enable_mem_efficient_sdp(True)
    torch.backends.cuda.enable_math_sdp(True)


def sdpa_backends() -> dict[str, bool]:
    backends = torch.backends.cuda
    return {"flash": backends.flash_sdp_enabled(), "mem_efficient": backends.mem_efficient_sdp_enabled(),
            "math": backends.math_sdp_enabled(), "cudnn": backends.cudnn_sdp_enabled()}


def benchmark(args: argparse.Namespace, emit: Callable[[dict[str, Any]], None]) -> list[dict[str, Any]]:
    device = prepare_device(args)
    with contextlib.ExitStack() as stack:
        workdir = args.workdir or Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="ptbr-bench-")))
        workdir.mkdir(parents=True, exist_ok=True)
        stored = prepare_model(args, workdir)
        if args.cold_start:
            return run_cold_starts(args, stored, workdir, emit)
        source = model_source(args)
        env = environment(stored, source, vocoder_source(args), device)
        env.update(emulate_pascal=args.emulate_pascal, sdpa_backends=sdpa_backends() if device.type == "cuda" else None,
                   capability=list(torch.cuda.get_device_capability(device)) if device.type == "cuda" else None)
        compile_cache = args.compile_cache or workdir / "compile-cache"
        bench = Bench(args, stored, source, device, FlopProbe.build(stored), emit, env, compile_cache)
        records = run_grid(bench, selected_dtypes(args, device))
        records += run_reference_sweep(bench)
    return records


# --- cold start ------------------------------------------------------------------------------------------------


def run_cold_starts(args: argparse.Namespace, stored: store.StoredModel, workdir: Path,
                    emit: Callable[[dict[str, Any]], None]) -> list[dict[str, Any]]:
    """Two fresh processes, each from interpreter start to a loaded, warmed-up, calibrated engine (what the service
    does before /readyz says ready), then one sentence: the first with an empty compile cache, the second with the
    cache the first one filled. Torch's cache variables are removed from their environment, so the cache folder
    given to the engine (--compile-cache, default a fresh one in the work folder) is the only one."""
    cache = args.compile_cache or workdir / f"cold-start-cache-{os.getpid()}"
    shutil.rmtree(cache, ignore_errors=True)
    env = {key: value for key, value in os.environ.items()
           if key not in ("TORCHINDUCTOR_CACHE_DIR", "TRITON_CACHE_DIR")}
    records = []
    for label in ("empty", "warm"):
        command = [sys.executable, str(Path(__file__).resolve()), "--cold-start-child", str(stored.path),
                   "--device", args.device, "--compile", args.compile, "--compile-cache", str(cache),
                   "--cuda-graphs", str(args.cuda_graphs), "--first-chunk-bytes", str(args.first_chunk_bytes)]
        progress(f"cold start with an {label} compile cache")
        spawned = time.time()
        completed = subprocess.run(command, capture_output=True, text=True, env=env, timeout=1800)
        wall = time.time() - spawned
        if completed.returncode != 0:
            progress(completed.stderr[-4000:])
            raise SystemExit(f"error: the cold-start process failed ({completed.returncode})")
        child = json.loads(completed.stdout.strip().splitlines()[-1])
        record = {"kind": "cold_start", "compile_cache": label, "compile_mode": args.compile,
                  "process_to_ready_s": round(child["ready_at"] - spawned, 2), "process_wall_s": round(wall, 2),
                  "cache_files": sum(1 for path in cache.rglob("*") if path.is_file()),
                  **{key: value for key, value in child.items() if key != "ready_at"},
                  **environment(stored, model_source(args), vocoder_source(args), resolve_device(args.device))}
        progress(f"  {label} cache: ready {record['process_to_ready_s']} s after the process started "
                 f"(imports {child['imports_s']} s, load+warm-up+calibration {child['load_checked_s']} s); "
                 f"DiT blocks: {child['compile_status']}")
        records.append(record)
        emit(record)
    return records


def cold_start_child(args: argparse.Namespace) -> int:
    """One cold start (run as its own process by run_cold_starts): one JSON line on stdout."""
    imported = time.perf_counter()  # torch, f5-tts and the project are imported by now
    stored = store.load_model_dir(args.cold_start_child, tag="bench:cold-start")
    started = time.perf_counter()
    synthesizer = load_checked(stored, args.device, "auto", cuda_graphs=args.cuda_graphs,
                               compile_blocks=args.compile, compile_cache_dir=args.compile_cache,
                               first_chunk_bytes=args.first_chunk_bytes)
    loaded = time.perf_counter()
    ready_at = time.time()
    reference = synthesizer.make_reference(voice_like(DEFAULT_REFERENCE_SECONDS),
                                           reference_transcript(DEFAULT_REFERENCE_SECONDS))
    first = time.perf_counter()
    synthesizer.synthesize(WORKLOADS["sentence"].text, reference, SynthesisOptions(nfe_step=16, seed=SYNTHESIS_SEED))
    synchronize(synthesizer.device)
    done = time.perf_counter()
    print(json.dumps({
        "ready_at": ready_at,
        "imports_s": round(imported - PROCESS_STARTED, 2),
        "load_checked_s": round(loaded - started, 2),
        "first_sentence_after_ready_s": round(done - first, 3),
        "compiled": synthesizer.compiled,
        "compile_status": synthesizer.compile_status,
        "latency_tflops": loaded_fields(synthesizer, 0.0)["latency_tflops"],
    }), file=sys.__stdout__, flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    os.environ.setdefault("BENTOML_DO_NOT_TRACK", "True")
    if args.cold_start_child:
        with contextlib.redirect_stdout(sys.stderr):
            return cold_start_child(args)
    json_stdout = sys.stdout
    with contextlib.ExitStack() as stack:
        streams = [json_stdout]
        if args.out:
            streams.append(stack.enter_context(args.out.open("w", encoding="utf-8")))
        # Libraries print to stdout (upstream's utils_infer among them); stdout is reserved for the JSON lines.
        stack.enter_context(contextlib.redirect_stdout(sys.stderr))
        started = time.perf_counter()
        try:
            records = benchmark(args, json_writer(streams))
        except CheckpointError as exc:  # a bad --checkpoint/--vocoder: one line, as import_model.py says it
            progress(f"error: {exc}")
            return 1
        print_summary(records)
        progress(f"done in {time.perf_counter() - started:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
