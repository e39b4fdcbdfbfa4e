"""scripts/benchmark.py: the quick run's JSON lines have the promised shape, and its FLOP probe counts exactly what
a real synthesis does (the numbers themselves are machine-dependent and not asserted)."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

from ptbr_model import f5, store
from ptbr_model.bench_workloads import DEFAULT_REFERENCE_SECONDS, WORKLOADS, reference_transcript
from ptbr_model.demo import write_demo_files
from ptbr_model.engine import SynthesisOptions, Synthesizer
from signals import voice_like

SMOKE_TIMEOUT_S = 120  # a generous ceiling; the run takes about 10 s on 2 CPU cores

NUMBER = (int, float)
OPTIONAL_NUMBER = (int, float, type(None))
REQUIRED_FIELDS: dict[str, tuple[type, ...]] = {
    "workload": (str,),
    "nfe_step": (int,),
    "dtype": (str,),
    "device": (str,),
    "latency_s_median": NUMBER,
    "latency_s_min": NUMBER,
    "latency_s_max": NUMBER,
    "audio_s": NUMBER,
    "rtf": NUMBER,
    "load_peak_gib": OPTIONAL_NUMBER,
    "peak_vram_gib": OPTIONAL_NUMBER,
    "flops": (int,),
    "est_1050ti_s": NUMBER,
    "est_1050ti_assumption": (str,),
    "upstream_latency_s_median": NUMBER,
    "speedup_vs_upstream": NUMBER,
    "chars": (int,),
    "chunks": (int,),
    "ref_s": NUMBER,
    "gpu_name": (str, type(None)),
    "torch": (str,),
    "f5_tts": (str,),
    "commit": (str, type(None)),
    "date": (str,),
    # round 2: the service's defaults, time to first audio, the engine's own prediction
    "first_audio_s_median": NUMBER,
    "first_chunk_alone_s_median": NUMBER,
    "first_audio_vs_first_chunk": NUMBER,
    "first_audio_nonstreamed_s_median": NUMBER,
    "first_chunk_text": (str,),
    "predicted_s": NUMBER,
    "predicted_s_first": NUMBER,
    "prediction_error": NUMBER,
    "nfe_step_used": (int,),
    "flops_analytic": (int,),
    "compile_status": (str,),
    "ready_s": NUMBER,
    "latency_tflops": NUMBER,
}


@pytest.fixture(scope="module")
def benchmark_module(repo_root: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location("benchmark_script", repo_root / "scripts" / "benchmark.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the file executes
    spec.loader.exec_module(module)
    return module


def test_quick_cpu_run_prints_one_json_object_per_case(repo_root: Path, tmp_path: Path):
    out = tmp_path / "bench.jsonl"
    completed = subprocess.run(
        [sys.executable, str(repo_root / "scripts" / "benchmark.py"), "--device", "cpu", "--quick", "--repeats", "1",
         "--nfe", "2", "--workloads", "sentence", "--reference-sweep", "3", "--sweep-nfe", "2", "--out", str(out)],
        capture_output=True, text=True, timeout=SMOKE_TIMEOUT_S, cwd=repo_root,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    lines = completed.stdout.splitlines()
    records = [json.loads(line) for line in lines]
    assert [r["kind"] for r in records] == ["case", "reference_sweep", "budget_1050ti"], completed.stdout
    record = records[0]
    for key, types in REQUIRED_FIELDS.items():
        assert key in record, key
        assert isinstance(record[key], types) and not isinstance(record[key], bool), (key, record[key])
    case = (record["workload"], record["nfe_step"], record["dtype"], record["device"])
    assert case == ("sentence", 2, "float32", "cpu")
    assert record["latency_s_min"] <= record["latency_s_median"] <= record["latency_s_max"]
    assert record["latency_s_median"] > 0 and record["upstream_latency_s_median"] > 0
    assert record["audio_s"] > 0 and record["upstream_audio_s"] == record["audio_s"]  # identical inputs
    assert record["speedup_vs_upstream"] > 0
    assert record["flops"] > 0 and record["est_1050ti_s"] >= 0
    assert record["peak_vram_gib"] is None and record["gpu_name"] is None  # CPU run
    # No speed flag: the service's defaults (dtype auto is float32 on a CPU; compile=auto is eager there).
    assert record["compile_status"] == "eager: cpu is not a CUDA device" and record["compiled"] is False
    assert record["flops_analytic"] == record["flops"] and record["flops_analytic_equal"] is True
    assert record["nfe_step_used"] == 2 and record["predicted_s"] > 0
    assert record["first_audio_s_median"] > 0 and record["first_chunk_alone_s_median"] > 0
    budget = records[2]
    assert budget["ref_s"] == 3 and budget["budget_s"] == 10
    assert set(budget["picks"]) == {"balanced", "quality"} and budget["picks"]["balanced"]["nfe_step"] <= 16
    assert out.read_text(encoding="utf-8").splitlines() == lines
    assert "workload" in completed.stderr and "median s" in completed.stderr  # the human table


@pytest.fixture(scope="module")
def demo_stored(tmp_path_factory: pytest.TempPathFactory) -> store.StoredModel:
    checkpoint, vocoder_dir = write_demo_files(tmp_path_factory.mktemp("bench-demo"))
    options = store.ImportOptions(checkpoint, "demo", f5.shipped_vocab_path(), vocoder_dir, name="bench-test",
                                  demo=True)
    return store.load_stored(store.import_checkpoint(options))


@pytest.mark.parametrize("cfg_strength", [2.0, 0.0])  # with CFG the DiT caches the text embedding; without, not
def test_flop_probe_counts_what_a_real_synthesis_does(benchmark_module, demo_stored, cfg_strength):
    engine = Synthesizer.load(demo_stored, device="cpu", dtype="float32")
    probe = benchmark_module.FlopProbe.build(demo_stored)
    seconds = DEFAULT_REFERENCE_SECONDS
    reference = engine.make_reference(voice_like(seconds), reference_transcript(seconds))
    options = SynthesisOptions(nfe_step=2, seed=0, cfg_strength=cfg_strength)
    text = WORKLOADS["paragraph"].text  # several chunks: the cache is cleared between them

    with benchmark_module.flop_counter() as counter:
        real = engine.synthesize(text, reference, options)
    counted, probed = probe.count(text, reference, options)

    assert len(real.chunks) > 1
    assert probed.chunks == real.chunks and len(probed.wave) == len(real.wave)
    assert counted == counter.get_total_flops() > 0


def test_reference_transcripts_grow_with_the_reference():
    sizes = [len(reference_transcript(seconds).encode("utf-8")) for seconds in (3, 6, 9, 12)]
    assert sizes == sorted(sizes) and sizes[0] < sizes[-1]
    assert all(reference_transcript(seconds).endswith(".") for seconds in (3, 6, 9, 12))
