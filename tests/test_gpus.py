"""PTBR_GPU_WORKERS without a GPU: counting GPUs, sizing the worker pool, binding each worker to one GPU."""

from __future__ import annotations

import sys
import types

import pytest
from pydantic import ValidationError

from ptbr_model.gpus import CUDA_VISIBLE, bind_worker, service_resources, visible_gpus, worker_count
from ptbr_model.settings import Settings


@pytest.mark.parametrize("value, expected", [
    ("0,1", ["0", "1"]), (" 2 , 3 ", ["2", "3"]), ("", []), ("-1", []), ("1,-1,2", ["1"]),
    ("GPU-8a1b,GPU-99ff", ["GPU-8a1b", "GPU-99ff"]),
])
def test_cuda_visible_devices_decides_when_set(value, expected):
    assert visible_gpus({CUDA_VISIBLE: value}) == expected


def test_without_the_variable_nvml_counts_and_no_driver_means_no_gpu():
    # This machine has no NVIDIA driver: NVML fails to start and the answer is no GPU, not an exception.
    assert visible_gpus({}) == []


@pytest.mark.parametrize("setting, gpus, expected", [
    ("auto", [], 1), ("auto", ["0"], 1), ("auto", ["0", "1", "2"], 3), (1, ["0", "1"], 1), (4, ["0", "1"], 4),
    (2, [], 2),
])
def test_worker_count(setting, gpus, expected):
    assert worker_count(setting, gpus) == expected


def test_each_worker_takes_its_own_gpu_in_turn():
    taken = []
    for index in (1, 2, 3, 4):
        environ = {CUDA_VISIBLE: "4,6"}
        taken.append((bind_worker(index, 4, environ), environ[CUDA_VISIBLE]))
    assert taken == [("4", "4"), ("6", "6"), ("4", "4"), ("6", "6")]


@pytest.mark.parametrize("index, workers, environ", [
    (1, 1, {CUDA_VISIBLE: "0,1"}),  # one worker keeps what it was given
    (None, 2, {CUDA_VISIBLE: "0,1"}),  # not a server worker (the arbiter importing the service)
    (2, 2, {CUDA_VISIBLE: ""}),  # no GPU: every worker runs on the CPU
])
def test_nothing_changes_without_several_workers_and_a_gpu(index, workers, environ):
    before = dict(environ)
    assert bind_worker(index, workers, environ) is None
    assert environ == before


def test_binding_after_cuda_started_is_refused(monkeypatch):
    fake_torch = types.SimpleNamespace(cuda=types.SimpleNamespace(is_initialized=lambda: True))
    monkeypatch.setitem(sys.modules, "torch", fake_torch)
    with pytest.raises(RuntimeError, match="before it chose its GPU"):
        bind_worker(2, 2, {CUDA_VISIBLE: "0,1"})


def test_the_setting_accepts_auto_or_a_count_and_names_the_conflict(monkeypatch):
    monkeypatch.setenv("PTBR_GPU_WORKERS", "Auto")
    assert Settings().gpu_workers == "auto"
    monkeypatch.setenv("PTBR_GPU_WORKERS", "2")
    assert Settings().gpu_workers == 2
    for bad in ("0", "65", "all"):
        monkeypatch.setenv("PTBR_GPU_WORKERS", bad)
        with pytest.raises(ValidationError, match="gpu_workers"):
            Settings()
    monkeypatch.setenv("PTBR_GPU_WORKERS", "2")
    monkeypatch.setenv("PTBR_DEVICE", "cuda:1")
    with pytest.raises(ValidationError, match="CUDA_VISIBLE_DEVICES"):
        Settings()


def test_bentoml_is_asked_for_every_gpu_only_with_several_workers():
    assert service_resources(1, []) == {"gpu": 1} and service_resources(1, ["0", "1"]) == {"gpu": 1}
    assert service_resources(2, ["0", "1"]) == {"gpu": 2} and service_resources(4, ["0", "1"]) == {"gpu": 2}
    assert service_resources(2, []) == {}
