"""Which GPUs a box has, how many service workers to start, and which GPU each worker takes.

One worker per GPU (``PTBR_GPU_WORKERS``): each worker is its own process with its own model copy, device queue and
job runners, bound to one GPU by narrowing ``CUDA_VISIBLE_DEVICES`` before CUDA starts in it. BentoML's allocator
gives every worker of a service the same GPU list (``_bentoml_impl/server/allocator.py``: one
``CUDA_VISIBLE_DEVICES`` for all workers), so the split per worker happens here, at the worker's start.

GPUs are counted through NVML (``pynvml``, which BentoML itself uses to count them) and never through CUDA: the
process that counts (``bentoml serve``'s arbiter, which imports the service to read its config) must not start CUDA,
and a worker must not start it before it has chosen its GPU.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping, MutableMapping

CUDA_VISIBLE = "CUDA_VISIBLE_DEVICES"


def visible_gpus(environ: Mapping[str, str] | None = None) -> list[str]:
    """The GPUs this process may use, as CUDA_VISIBLE_DEVICES entries (indices or UUIDs). An explicit
    CUDA_VISIBLE_DEVICES wins ("" or "-1" mean none); otherwise NVML counts the devices (none if no driver)."""
    environ = os.environ if environ is None else environ
    if CUDA_VISIBLE in environ:
        entries = [entry.strip() for entry in environ[CUDA_VISIBLE].split(",") if entry.strip()]
        # CUDA stops at the first invalid entry; "-1" is the usual way to hide every GPU.
        visible: list[str] = []
        for entry in entries:
            if entry.startswith("-"):
                break
            visible.append(entry)
        return visible
    return [str(index) for index in range(_nvml_device_count())]


def _nvml_device_count() -> int:
    try:
        import pynvml
    except ImportError:
        return 0
    try:
        pynvml.nvmlInit()
    except (pynvml.NVMLError, OSError):
        return 0
    try:
        return int(pynvml.nvmlDeviceGetCount())
    except (pynvml.NVMLError, OSError):
        return 0
    finally:
        try:
            pynvml.nvmlShutdown()
        except (pynvml.NVMLError, OSError):
            pass  # the count is read; a failing shutdown changes nothing for it


def worker_count(setting: str | int, gpus: list[str]) -> int:
    """``auto``: one worker per visible GPU (one on a CPU-only box); a number: that many workers, spread over the
    GPUs in turn (several on one GPU share it, each with its own queue)."""
    if setting == "auto":
        return max(1, len(gpus))
    return int(setting)


def service_resources(workers: int, gpus: list[str]) -> dict[str, int]:
    """BentoML ``resources`` for the service: one worker keeps asking for one GPU, as before this setting existed;
    several are all given every GPU (each then takes its own in ``bind_worker``), and none on a CPU-only box, where
    BentoML would otherwise hand every worker a "GPU 0" that does not exist."""
    if workers <= 1:
        return {"gpu": 1}
    return {"gpu": len(gpus)} if gpus else {}


def bind_worker(worker_index: int | None, workers: int, environ: MutableMapping[str, str] | None = None) -> str | None:
    """Narrow this worker's CUDA_VISIBLE_DEVICES to one GPU: worker ``i`` (BentoML counts from 1) takes the
    ``(i-1) mod n``-th visible GPU, which is then its ``cuda:0``. Returns the GPU entry taken, or None when nothing
    changes: a single worker (it keeps whatever it was given, as before this setting existed), no GPU, or no
    worker index (not a server worker). Must run before CUDA starts in the process."""
    environ = os.environ if environ is None else environ
    if workers <= 1 or worker_index is None:
        return None
    gpus = visible_gpus(environ)
    if not gpus:
        return None
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_initialized():
        raise RuntimeError("CUDA started in this worker before it chose its GPU: CUDA_VISIBLE_DEVICES can't change now")
    chosen = gpus[(worker_index - 1) % len(gpus)]
    environ[CUDA_VISIBLE] = chosen
    return chosen
