"""Prometheus metrics of the service (prometheus_client), in a registry of their own.

Under ``bentoml serve`` prometheus_client runs in multiprocess mode (BentoML sets ``PROMETHEUS_MULTIPROC_DIR``
before the workers start): every value, ours included, lives in that directory and BentoML's ``/metrics`` merges
them over all worker processes. ``render()`` then adds nothing — appending our registry as well exported every
``ptbr_*`` series twice, once per worker and once for whichever worker answered the scrape. Each gauge says how
the workers' values combine (``multiprocess_mode``): the device queue sums over live workers, which is what
autoscaling reads. Outside a server (tests, scripts) ``render()`` shows the private registry, which keeps several
service instances in one process from colliding on metric names.
"""

from __future__ import annotations

import os

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 40.0, 80.0, 160.0)
RTF_BUCKETS = (0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0)


class ServiceMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.synthesis_latency = Histogram(
            "ptbr_synthesis_latency_seconds", "Wall time of one synthesis, text in to waveform out",
            buckets=LATENCY_BUCKETS, registry=self.registry,
        )
        self.real_time_factor = Histogram(
            "ptbr_synthesis_rtf", "Synthesis seconds per second of generated audio (lower is faster)",
            buckets=RTF_BUCKETS, registry=self.registry,
        )
        self.audio_seconds = Counter(
            "ptbr_generated_audio_seconds", "Seconds of audio generated", registry=self.registry
        )
        self.requests = Counter(
            "ptbr_requests", "Synthesis requests by endpoint and outcome", ["endpoint", "outcome"],
            registry=self.registry,
        )
        self.device_memory_allocated = Gauge(
            "ptbr_device_memory_allocated_bytes", "Device memory held by tensors (CUDA only)", multiprocess_mode="livesum", registry=self.registry
        )
        self.device_memory_reserved = Gauge(
            "ptbr_device_memory_reserved_bytes", "Device memory held by PyTorch's caching allocator (CUDA only; "
            "what nvidia-smi shows, less the CUDA context)", multiprocess_mode="livesum", registry=self.registry
        )
        self.device_memory_peak = Gauge(
            "ptbr_device_memory_peak_bytes", "Peak device memory of the last synthesis (CUDA only)",
            multiprocess_mode="livemax", registry=self.registry,
        )
        self.model_load_seconds = Gauge(
            "ptbr_model_load_seconds", "Seconds to load and warm up the model", multiprocess_mode="livemax", registry=self.registry
        )
        self.fp16_fallbacks = Counter(
            "ptbr_fp16_fallbacks", "Loads that fell back to float32 because float16 output was not finite",
            registry=self.registry,
        )
        self.model_ready = Gauge("ptbr_model_ready", "1 once the model is loaded and warmed up", multiprocess_mode="livemin", registry=self.registry)
        self.voices_stored = Gauge("ptbr_voices_stored", "Saved voices in the data directory", multiprocess_mode="livemostrecent", registry=self.registry)
        self.voices_corrupt = Gauge(
            "ptbr_voices_corrupt", "Voice entries skipped as corrupt or half-written at the last scan",
            multiprocess_mode="livemostrecent", registry=self.registry,
        )
        self.voice_cache = Counter(
            "ptbr_voice_cache", "Prepared saved-voice references found in (hit) or missing from (miss) the memory cache",
            ["result"], registry=self.registry,
        )
        self.queue_length = Gauge(
            "ptbr_queue_length", "Requests waiting for the device", multiprocess_mode="livesum", registry=self.registry
        )
        self.queue_in_flight = Gauge(
            "ptbr_queue_in_flight", "Requests using the device now (0 or 1)", multiprocess_mode="livesum", registry=self.registry
        )
        self.queue_wait = Histogram(
            "ptbr_queue_wait_seconds", "Time a request waited for the device", buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.first_audio = Histogram(
            "ptbr_stream_first_audio_seconds", "Time from a streaming request to its first audio bytes",
            buckets=LATENCY_BUCKETS, registry=self.registry,
        )

        self.jobs = Gauge(
            "ptbr_jobs", "Jobs in the data directory by state (in_progress, completed, failed, canceled)", ["state"],
            multiprocess_mode="livemostrecent", registry=self.registry,
        )
        self.job_units = Counter(
            "ptbr_job_units", "Job units (text chunks, subtitle cues) this process synthesised, by job kind", ["kind"],
            registry=self.registry,
        )
        self.job_unit_seconds = Histogram(
            "ptbr_job_unit_seconds", "Device seconds per job unit", buckets=LATENCY_BUCKETS, registry=self.registry
        )
        self.job_audio_seconds = Counter(
            "ptbr_job_audio_seconds", "Seconds of audio this process generated for jobs", registry=self.registry
        )

    def observe_synthesis(self, elapsed_seconds: float, audio_seconds: float) -> None:
        self.synthesis_latency.observe(elapsed_seconds)
        self.audio_seconds.inc(audio_seconds)
        if audio_seconds > 0:
            self.real_time_factor.observe(elapsed_seconds / audio_seconds)

    def observe_memory(self, stats: dict[str, int]) -> None:
        if "allocated_bytes" in stats:
            self.device_memory_allocated.set(stats["allocated_bytes"])
        if "reserved_bytes" in stats:
            self.device_memory_reserved.set(stats["reserved_bytes"])
        if "peak_bytes" in stats:
            self.device_memory_peak.set(stats["peak_bytes"])

    def observe_queue(self, waiting: int, in_flight: int) -> None:
        self.queue_length.set(waiting)
        self.queue_in_flight.set(in_flight)

    def render(self) -> str:
        """What ``__metrics__`` appends to BentoML's scrape: nothing in multiprocess mode (BentoML's collector
        already holds our series, merged over the workers), else this registry."""
        if multiprocess_dir() is not None:
            return ""
        return generate_latest(self.registry).decode("utf-8")


def multiprocess_dir() -> str | None:
    """prometheus_client's own switch: values live in files there, shared by a server's processes."""
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or os.environ.get("prometheus_multiproc_dir") or None
