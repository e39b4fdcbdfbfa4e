"""The job store and executor without a server: durable files, exclusive claims, resume without redoing units,
cancel, retention, limits; the planners; and the engine's duration control they rely on (real demo model)."""

from __future__ import annotations

import contextlib
import json
import os
import time
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from ptbr_model import f5, store
from ptbr_model.demo import write_demo_files
from ptbr_model.engine import SynthesisOptions, Synthesizer
from ptbr_model.job_plans import Pauses, plan_dub, plan_long, split_paragraphs
from ptbr_model.jobs import (
    CANCELED, COMPLETED, FAILED, IN_PROGRESS, JobConflict, JobExecutor, JobLimitReached, JobNotFound, JobSpec,
    JobStore, Unit, _Stop,
)
from ptbr_model.subtitles import parse_subtitles
from signals import voice_like

REFERENCE_TEXT = "Esta é a voz de referência para o teste."


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Synthesizer:
    workdir = tmp_path_factory.mktemp("jobs-demo")
    checkpoint, vocoder_dir = write_demo_files(workdir)
    options = store.ImportOptions(checkpoint, "demo", f5.shipped_vocab_path(), vocoder_dir, store_dtype="float32",
                                  name="jobs-test", demo=True)
    return Synthesizer.load(store.load_stored(store.import_checkpoint(options)), device="cpu", dtype="float32")


@pytest.fixture(scope="module")
def reference(engine):
    return engine.make_reference(voice_like(3.0), REFERENCE_TEXT)


def spec_of(units: list[Unit], kind: str = "long", model_tag: str = "m:1", **output) -> JobSpec:
    return JobSpec(kind=kind, units=tuple(units), synthesis={"nfe_step": 2}, reference_text="Ref. ",
                   reference_rms=0.1, model_tag=model_tag,
                   output={"response_format": "wav", "sample_rate": None, "remove_silence": False, "loudness": None,
                           **output})


def text_units(count: int) -> list[Unit]:
    return [Unit(index=i, text=f"Frase número {i}.", seed=i, place={"paragraph": i, "pause_after": 0.5})
            for i in range(count)]


def new_store(tmp_path: Path, **limits) -> JobStore:
    return JobStore(tmp_path / "jobs", **limits)


# ------------------------------------------------------------------------------------------------ the store


def test_create_is_whole_and_listed(tmp_path):
    jobs = new_store(tmp_path)
    status = jobs.create(spec_of(text_units(3)), np.zeros(2400, dtype=np.float32))
    assert status["status"] == IN_PROGRESS and status["progress"] == {"done": 0, "total": 3}
    folder = jobs.root / status["task_id"]
    assert {p.name for p in folder.iterdir()} == {"job.json", "state.json", "reference.wav", "chunks"}
    assert not [name for name in os.listdir(jobs.root) if name.startswith(".tmp")]
    listed, total = jobs.list()
    assert total == 1 and listed[0]["task_id"] == status["task_id"] and listed[0]["running"] is False
    assert jobs.list(kind="dub") == ([], 0)
    with pytest.raises(JobNotFound):
        jobs.status(status["task_id"], kind="dub")


@pytest.mark.parametrize("bad", ["../../etc", "j_" + "a" * 15, "", "J_AAAAAAAAAAAAAAAA", "voices"])
def test_ids_are_never_paths(tmp_path, bad):
    with pytest.raises(JobNotFound):
        new_store(tmp_path).status(bad)


def test_claims_are_exclusive_and_counted(tmp_path):
    jobs = new_store(tmp_path, max_attempts=2)
    job_id = jobs.create(spec_of(text_units(2)), np.zeros(100, dtype=np.float32))["task_id"]
    first = jobs.claim(job_id, "a")
    assert first is not None and jobs.is_running(job_id)
    assert jobs.claim(job_id, "b") is None  # another open file description: flock refuses, as between processes
    first.release()  # what the kernel does when the claimant dies
    assert not jobs.is_running(job_id)
    second = jobs.claim(job_id, "b")
    assert second is not None and [run["worker"] for run in jobs.status(job_id)["runs"]] == ["a", "b"]
    second.release()
    assert jobs.claim(job_id, "c") is None  # the third claim is past max_attempts: failed with the reason
    status = jobs.status(job_id)
    assert status["status"] == FAILED and "interrupted 2 times" in status["error"]
    assert "PTBR_JOB_MAX_ATTEMPTS" in status["error"]


def test_done_units_are_counted_from_complete_files(tmp_path):
    jobs = new_store(tmp_path)
    job_id = jobs.create(spec_of(text_units(4)), np.zeros(100, dtype=np.float32))["task_id"]
    claim = jobs.claim(job_id)
    for index in range(3):
        jobs.write_unit(claim, index, np.full(240, 0.1, dtype=np.float32), {"device_seconds": 0.1})
    chunks = jobs.root / job_id / "chunks"
    (chunks / "000002.wav").unlink()  # the crash came between the facts and the audio of unit 2
    assert jobs.done_units(job_id, 4) == 2
    (chunks / "000001.wav").write_bytes(b"RIFF garbage")  # a torn file is made again, and everything after it
    assert jobs.done_units(job_id, 4) == 1
    claim.release()
    again = jobs.claim(job_id)
    assert again.done == 1 and jobs.status(job_id)["runs"][-1]["from"] == 1
    again.release()


def test_cancel_stops_a_running_claim_and_is_final(tmp_path):
    jobs = new_store(tmp_path)
    job_id = jobs.create(spec_of(text_units(2)), np.zeros(100, dtype=np.float32))["task_id"]
    claim = jobs.claim(job_id)
    assert not claim.stopped()
    assert jobs.cancel(job_id)["status"] == CANCELED
    assert claim.stopped()
    with pytest.raises(_Stop):
        jobs.progress(claim, claim.spec.units[0], 1.0)
    with pytest.raises(JobConflict):
        jobs.cancel(job_id)
    claim.release()
    assert jobs.claim(job_id) is None
    with pytest.raises(JobConflict, match="canceled"):
        jobs.result(job_id)


def test_delete_removes_everything_even_while_running(tmp_path):
    jobs = new_store(tmp_path)
    job_id = jobs.create(spec_of(text_units(2)), np.zeros(100, dtype=np.float32))["task_id"]
    claim = jobs.claim(job_id)
    assert jobs.delete(job_id)["status"] == CANCELED
    assert os.listdir(jobs.root) == [".create.lock"]
    assert claim.stopped()
    with pytest.raises(_Stop):
        jobs.write_unit(claim, 0, np.zeros(10, dtype=np.float32), {})
    claim.release()
    with pytest.raises(JobNotFound):
        jobs.status(job_id)


def test_limits(tmp_path):
    jobs = new_store(tmp_path, max_jobs=3, max_active=2)
    ids = [jobs.create(spec_of(text_units(1)), np.zeros(10, dtype=np.float32))["task_id"] for _ in range(2)]
    with pytest.raises(JobLimitReached, match="PTBR_MAX_ACTIVE_JOBS"):
        jobs.create(spec_of(text_units(1)), np.zeros(10, dtype=np.float32))
    jobs.cancel(ids[0])
    jobs.create(spec_of(text_units(1)), np.zeros(10, dtype=np.float32))
    jobs.cancel(ids[1])
    with pytest.raises(JobLimitReached, match="PTBR_MAX_JOBS"):
        jobs.create(spec_of(text_units(1)), np.zeros(10, dtype=np.float32))


def test_retention_cleanup(tmp_path):
    jobs = new_store(tmp_path, retention_s=3600)
    old, recent, running = (jobs.create(spec_of(text_units(1)), np.zeros(10, dtype=np.float32))["task_id"]
                            for _ in range(3))
    jobs.cancel(old)
    jobs.cancel(recent)
    stale = jobs.root / ".tmp-j_leftover"
    stale.mkdir()
    os.utime(stale, (time.time() - 7200, time.time() - 7200))
    removed = jobs.cleanup(now=time.time() + 1800)
    assert removed == [] and stale.exists() is False
    state = json.loads((jobs.root / old / "state.json").read_text())
    state["finished_at"] = "2000-01-01T00:00:00.000Z"
    (jobs.root / old / "state.json").write_text(json.dumps(state))
    assert jobs.cleanup() == [old]
    assert sorted(s["task_id"] for s in jobs.list()[0]) == sorted([recent, running])


def test_a_corrupt_state_is_skipped_and_not_served(tmp_path, caplog):
    jobs = new_store(tmp_path)
    good = jobs.create(spec_of(text_units(1)), np.zeros(10, dtype=np.float32))["task_id"]
    bad = jobs.create(spec_of(text_units(1)), np.zeros(10, dtype=np.float32))["task_id"]
    (jobs.root / bad / "state.json").write_text("{not json")
    assert [s["task_id"] for s in jobs.list()[0]] == [good]
    assert jobs.claimable() == [good]
    with pytest.raises(JobNotFound, match="unreadable"):
        jobs.status(bad)
    assert "skipping job" in caplog.text


# ------------------------------------------------------------------------------------------------ planners


def test_paragraphs_pause_longer_than_sentences(engine, reference):
    text = ("Primeira frase do capítulo. " * 12 + "\n\n" + "Segundo parágrafo, curto.\n\n\n  \n" +
            "Terceiro parágrafo.\nCom quebra simples.")
    assert split_paragraphs(text)[1:] == ["Segundo parágrafo, curto.", "Terceiro parágrafo.\nCom quebra simples."]
    units, removed = plan_long(text, engine.vocab, reference_text=reference.text, reference_seconds=reference.seconds,
                               speed=1.0, normalize_text=True, seed=7, pauses=Pauses(0.9, 0.3, 0.1))
    paragraphs = [unit.place["paragraph"] for unit in units]
    assert paragraphs[0] == 0 and paragraphs[-2:] == [1, 2] and paragraphs.count(0) >= 2  # chunked by budget
    pauses = [unit.place["pause_after"] for unit in units]
    assert pauses[paragraphs.count(0) - 1] == 0.9 and pauses[0] == 0.3 and pauses[-1] == 0.9
    assert [unit.seed for unit in units] == list(range(7, 7 + len(units)))
    assert removed == []


def test_cue_plan_uses_the_engines_natural_length(engine, reference):
    srt = ("1\n00:00:01,000 --> 00:00:05,000\nBom dia.\n\n"
           "2\n00:00:05,500 --> 00:00:06,000\nEsta fala é comprida demais para meio segundo.\n\n"
           "3\n00:00:07,000 --> 00:00:08,000\n♪\n")
    options = SynthesisOptions(nfe_step=2)
    units, _ = plan_dub(parse_subtitles(srt.encode()), engine, reference, options, seed=1, min_speed=0.8,
                        max_speed=1.3, fill=False)
    first, second, silent = units
    assert first.duration is None and first.place["natural_seconds"] == pytest.approx(
        engine.natural_seconds(reference, first.text, options), abs=1e-3)
    assert second.duration == pytest.approx(1.5) and second.place["beyond_speed_limit"] is True  # room to cue 3
    assert silent.text == "" and silent.duration is None


# ------------------------------------------------------------------------------------------------ duration control


def test_duration_control_generates_exactly_the_frames_asked(engine, reference):
    text = "Olá, tudo bem com você?"
    natural = engine.natural_seconds(reference, text, SynthesisOptions())
    plain = next(engine.iter_chunk_waves(reference, [text], SynthesisOptions(nfe_step=2), 3))
    assert len(plain) / 24000 == pytest.approx(natural, abs=1e-9)
    for target in (0.7 * natural, 1.3 * natural, 2.0):
        wave = next(engine.iter_chunk_waves(reference, [text], SynthesisOptions(nfe_step=2, duration=target), 3))
        assert abs(len(wave) / 24000 - target) <= 256 / 24000 / 2 + 1e-9  # rounded to one mel frame (hop 256)


# ------------------------------------------------------------------------------------------------ the executor


class Crash(BaseException):
    """Stands for the process dying: nothing below catches it, as nothing survives a kill -9."""


def executor_for(jobs: JobStore, engine: Synthesizer, crash_after: int | None = None) -> JobExecutor:
    made = {"units": 0}

    @contextlib.contextmanager
    def device_turn(stopped):
        if crash_after is not None and made["units"] >= crash_after:
            raise Crash
        made["units"] += 1
        yield True

    executor = JobExecutor(jobs, lambda: engine, device_turn)
    executor.made = made
    return executor


def long_job(jobs: JobStore, engine, reference, count: int) -> str:
    units = [Unit(index=i, text=f"Esta é a frase número {i + 1}.", seed=i,
                  place={"paragraph": i // 2, "pause_after": 0.8 if i % 2 else 0.3}) for i in range(count)]
    spec = spec_of(units, model_tag=engine.stored.tag)
    spec = JobSpec(**{**spec.__dict__, "reference_text": reference.text, "reference_rms": reference.rms})
    return jobs.create(spec, reference.wave.squeeze(0).numpy())["task_id"]


def test_a_crashed_job_resumes_without_redoing_units(tmp_path, engine, reference):
    jobs = new_store(tmp_path)
    job_id = long_job(jobs, engine, reference, 5)
    claim = jobs.claim(job_id, "first")
    with pytest.raises(Crash):
        executor_for(jobs, engine, crash_after=3).run(claim)
    assert not jobs.is_running(job_id)  # the claim died with its "process"
    chunks = jobs.root / job_id / "chunks"
    before = {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in chunks.glob("*.wav")}
    assert len(before) == 3 and jobs.status(job_id)["progress"]["done"] == 3

    resumed = executor_for(jobs, engine)
    resumed.run(jobs.claim(job_id, "second"))
    assert resumed.made["units"] == 2  # only the missing two were synthesised
    status = jobs.status(job_id)
    assert status["status"] == COMPLETED
    assert [(r["worker"], r["from"], r["made"]) for r in status["runs"]] == [("first", 0, 3), ("second", 3, 2)]
    report = jobs.report(job_id)
    chunks_report = report["chunks"]
    assert [c["index"] for c in chunks_report] == [0, 1, 2, 3, 4]
    for chunk, following in zip(chunks_report, chunks_report[1:]):
        pause = 0.8 if chunk["index"] % 2 else 0.3
        assert following["start"] == pytest.approx(chunk["start"] + chunk["duration"] + pause, abs=1e-4)
    audio, rate = sf.read(str(jobs.result(job_id)))
    assert rate == 24000
    assert len(audio) / rate == pytest.approx(chunks_report[-1]["start"] + chunks_report[-1]["duration"], abs=1e-4)
    assert report["total_seconds"] == pytest.approx(len(audio) / rate, abs=1e-4)

    # the same job run in one go gives the same audio: resuming changed nothing
    whole = long_job(jobs, engine, reference, 5)
    executor_for(jobs, engine).run(jobs.claim(whole))
    assert np.array_equal(sf.read(str(jobs.result(whole)))[0], audio)

    mp3 = jobs.result(job_id, "mp3")
    assert mp3.name == "result.mp3" and mp3.stat().st_size > 1000
    assert jobs.result(job_id, "mp3") == mp3  # kept, not encoded again
    flac, flac_rate = sf.read(str(jobs.result(job_id, "flac", 16000)))
    assert flac_rate == 16000 and len(flac) == pytest.approx(len(audio) * 2 / 3, abs=2)


def test_a_job_of_another_model_fails_with_the_reason(tmp_path, engine, reference):
    jobs = new_store(tmp_path)
    job_id = jobs.create(spec_of(text_units(1), model_tag="f5tts-ptbr:other"), np.zeros(10, dtype=np.float32))["task_id"]
    executor_for(jobs, engine).run(jobs.claim(job_id))
    status = jobs.status(job_id)
    assert status["status"] == FAILED and "f5tts-ptbr:other" in status["error"] and not status["running"]


def test_a_clean_shutdown_hands_the_job_back_without_using_an_attempt(tmp_path, engine, reference):
    jobs = new_store(tmp_path, max_attempts=1)
    job_id = long_job(jobs, engine, reference, 3)
    made = {"units": 0}
    executor = None

    @contextlib.contextmanager
    def device_turn(stopped):
        made["units"] += 1
        if made["units"] == 2:
            executor.shutting_down.set()  # SIGTERM arrives as unit 1 gets the device: it is not started
        yield True

    executor = JobExecutor(jobs, lambda: engine, device_turn)
    executor.run(jobs.claim(job_id, "stopping"))
    status = jobs.status(job_id)
    assert status["status"] == IN_PROGRESS and not status["running"]
    assert status["attempts"] == 0 and status["runs"][0]["ended"] == "shutdown" and status["runs"][0]["made"] == 1
    executor_for(jobs, engine).run(jobs.claim(job_id, "next"))  # max_attempts=1 still allows this claim
    assert jobs.status(job_id)["status"] == COMPLETED


# ------------------------------------------------------------------------------------------------ faults that pass


def marked_job(jobs: JobStore, engine, reference, texts: list[str]) -> str:
    units = [Unit(index=i, text=text, seed=i, place={"paragraph": i, "pause_after": 0.2}) for i, text in enumerate(texts)]
    spec = spec_of(units, model_tag=engine.stored.tag)
    spec = JobSpec(**{**spec.__dict__, "reference_text": reference.text, "reference_rms": reference.rms})
    return jobs.create(spec, reference.wave.squeeze(0).numpy())["task_id"]


@pytest.fixture
def oom_hook(engine):
    from ptbr_model.engine import out_of_memory_on

    engine.fault_hook = out_of_memory_on("sempreestoura", once="estouraumavez")
    yield
    engine.fault_hook = None


def test_out_of_memory_in_a_unit_waits_then_resumes_from_that_unit(tmp_path, engine, reference, oom_hook):
    jobs = new_store(tmp_path, max_attempts=2, retry_backoff_s=30.0)
    job_id = marked_job(jobs, engine, reference, ["Primeira frase.", "Segunda estouraumavez.", "Terceira frase."])
    first = executor_for(jobs, engine)
    first.run(jobs.claim(job_id, "first"))
    status = jobs.status(job_id)
    assert status["status"] == IN_PROGRESS and not status["running"] and status["error"] is None
    retry = status["retry"]
    assert retry["code"] == "out_of_memory" and retry["count"] == 1
    assert retry["message"].startswith("out of device memory while making part 2 of 3; 1 of 3 parts were done")
    assert status["attempts"] == 1 and status["runs"][0]["ended"] == "out_of_memory"
    wait = datetime.fromisoformat(retry["at"].replace("Z", "+00:00")).timestamp() - time.time()
    assert 25 < wait <= 30.5  # the first backoff
    assert jobs.claimable() == [] and 25 < jobs.next_retry_in() <= 30
    assert jobs.claimable(now=time.time() + 31) == [job_id]

    second = executor_for(jobs, engine)
    second.run(jobs.claim(job_id, "second"))
    status = jobs.status(job_id)
    assert status["status"] == COMPLETED and status["retry"] is None and status["error_code"] is None
    assert second.made["units"] == 2  # the unit that ran out, then the last one: the first was kept
    assert [(run["from"], run["made"]) for run in status["runs"]] == [(0, 1), (1, 2)]


def test_out_of_memory_at_every_try_fails_with_its_code_after_max_attempts(tmp_path, engine, reference, oom_hook):
    jobs = new_store(tmp_path, max_attempts=2, retry_backoff_s=0.01)
    job_id = marked_job(jobs, engine, reference, ["Uma frase.", "Outra sempreestoura."])
    executor_for(jobs, engine).run(jobs.claim(job_id))
    assert jobs.status(job_id)["retry"]["code"] == "out_of_memory"
    time.sleep(0.02)
    assert jobs.claimable() == [job_id]
    executor_for(jobs, engine).run(jobs.claim(job_id))
    status = jobs.status(job_id)
    assert status["status"] == FAILED and status["error_code"] == "out_of_memory" and status["retry"] is None
    assert status["error"].startswith("out of device memory while making part 2 of 2; tried 2 times "
                                      "(PTBR_JOB_MAX_ATTEMPTS=2)")
    assert "1 of 2 parts were done" in status["error"]
    assert jobs.claimable() == []


def full_disk_on(monkeypatch, jobs: JobStore, index: int, times: int) -> dict:
    """write_unit of unit ``index`` fails ``times`` times with ENOSPC (after its temporary file was made, as a
    real full disk would), then works."""
    import errno

    real = jobs.write_unit
    failures = {"left": times}

    def write_unit(claim, unit_index, wave, facts):
        if unit_index == index and failures["left"]:
            failures["left"] -= 1
            raise OSError(errno.ENOSPC, "No space left on device")
        real(claim, unit_index, wave, facts)

    monkeypatch.setattr(jobs, "write_unit", write_unit)
    return failures


def test_a_full_disk_keeps_the_finished_units_uses_no_attempt_and_resumes(tmp_path, engine, reference, monkeypatch):
    jobs = new_store(tmp_path, max_attempts=1, retry_backoff_s=0.01)
    job_id = long_job(jobs, engine, reference, 3)
    full_disk_on(monkeypatch, jobs, index=1, times=2)
    for attempt in (1, 2):
        executor_for(jobs, engine).run(jobs.claim(job_id))
        status = jobs.status(job_id)
        assert status["status"] == IN_PROGRESS and status["attempts"] == 0  # max_attempts=1 is never used up
        assert status["retry"]["code"] == "insufficient_storage" and status["retry"]["count"] == attempt
        assert "the data directory is full (PTBR_DATA_DIR): part 2 of 3 could not be stored" in status["retry"]["message"]
        assert len(list((jobs.root / job_id / "chunks").glob("*.wav"))) == 1
        assert not list((jobs.root / job_id).glob(".tmp-*")) and not (jobs.root / job_id / "result.wav").exists()
        time.sleep(0.03)
    resumed = executor_for(jobs, engine)
    resumed.run(jobs.claim(job_id))
    status = jobs.status(job_id)
    assert status["status"] == COMPLETED and resumed.made["units"] == 2
    assert [run.get("ended") for run in status["runs"]] == ["insufficient_storage", "insufficient_storage", None]


def test_a_full_disk_that_stays_full_fails_the_job_after_the_wait(tmp_path, engine, reference, monkeypatch):
    jobs = new_store(tmp_path, retry_backoff_s=0.01, max_wait_s=0.05)
    job_id = long_job(jobs, engine, reference, 2)
    full_disk_on(monkeypatch, jobs, index=0, times=100)
    executor_for(jobs, engine).run(jobs.claim(job_id))
    assert jobs.status(job_id)["status"] == IN_PROGRESS
    time.sleep(0.1)
    executor_for(jobs, engine).run(jobs.claim(job_id))
    status = jobs.status(job_id)
    assert status["status"] == FAILED and status["error_code"] == "insufficient_storage"
    assert "PTBR_JOB_STORAGE_WAIT_HOURS" in status["error"] and "0 of 2 parts were done" in status["error"]


def test_a_full_disk_while_assembling_leaves_no_result_and_retries(tmp_path, engine, reference, monkeypatch):
    import errno

    from ptbr_model import tracks

    jobs = new_store(tmp_path, retry_backoff_s=0.01)
    job_id = long_job(jobs, engine, reference, 2)
    real_write = tracks.TrackWriter.write
    calls = {"n": 0}

    def write(self, wave):
        calls["n"] += 1
        if calls["n"] == 2:  # the second piece of the track: half a result is on disk, under its temporary name
            raise OSError(errno.ENOSPC, "No space left on device")
        real_write(self, wave)

    monkeypatch.setattr(tracks.TrackWriter, "write", write)
    executor_for(jobs, engine).run(jobs.claim(job_id))
    status = jobs.status(job_id)
    assert status["status"] == IN_PROGRESS and status["retry"]["code"] == "insufficient_storage"
    assert "the result could not be stored" in status["retry"]["message"]
    folder = jobs.root / job_id
    assert sorted(p.name for p in folder.iterdir() if p.name != "run.lock" and p.name != "state.lock") == \
        ["chunks", "job.json", "reference.wav", "state.json"]  # no result, no report, no temporary file
    with pytest.raises(JobConflict):
        jobs.result(job_id)
    time.sleep(0.02)
    again = executor_for(jobs, engine)
    again.run(jobs.claim(job_id))
    assert jobs.status(job_id)["status"] == COMPLETED and again.made["units"] == 0  # only the assembly again
    assert sf.info(str(jobs.result(job_id))).frames > 0


def test_a_write_error_under_libsndfile_comes_out_as_its_oserror():
    """libsndfile turns a failed write(2) into "System error."; through ErrnoKeepingFile the ENOSPC survives
    (/dev/full fails every write with ENOSPC, for any user)."""
    import errno

    from ptbr_model.durable import ErrnoKeepingFile, storage_full

    with open("/dev/full", "wb", buffering=0) as device:
        raw = ErrnoKeepingFile(device)
        with pytest.raises(OSError) as caught:
            try:
                with sf.SoundFile(raw, "w", samplerate=24000, channels=1, format="WAV", subtype="PCM_16") as out:
                    out.write(np.zeros(24000, dtype=np.float32))
            except (sf.LibsndfileError, AssertionError) as exc:
                raw.raise_kept(exc)
                raise
    assert caught.value.errno == errno.ENOSPC and storage_full(caught.value)
    assert not storage_full(RuntimeError("x")) and not storage_full(OSError(errno.EACCES, "denied"))
    try:
        try:
            raise OSError(errno.EDQUOT, "Disk quota exceeded")
        except OSError as inner:
            raise RuntimeError("while writing") from inner
    except RuntimeError as outer:
        assert storage_full(outer)


@pytest.fixture
def small_disk(tmp_path):
    """A real 256 KiB tmpfs (needs root, as CI has; the served full-disk tests need it too)."""
    import subprocess

    from hardened import mount_tmpfs

    mount = tmp_path / "disk"
    if not mount_tmpfs(mount, 256 * 1024, os.getuid()):
        pytest.skip("needs root to mount a small tmpfs")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], capture_output=True)


def test_a_track_on_a_full_disk_raises_enospc_and_leaves_nothing(small_disk):
    import errno

    from ptbr_model.tracks import TrackWriter, transcode_track

    fitting = TrackWriter(small_disk / "fits.wav", 24000)
    fitting.write(np.full(24000, 0.1, dtype=np.float32))
    fitting.commit()
    assert sf.info(str(small_disk / "fits.wav")).frames == 24000
    writer = TrackWriter(small_disk / "result.wav", 24000)
    with pytest.raises(OSError) as caught:
        for _ in range(20):  # 20 s of 16-bit audio: 960 kB, on 256 kB
            writer.write(np.full(24000, 0.1, dtype=np.float32))
    writer.abort()
    assert caught.value.errno == errno.ENOSPC
    with (small_disk / "filler").open("wb") as filler:
        with pytest.raises(OSError):
            filler.write(b"\0" * 512 * 1024)
    for fmt, rate in (("wav", 48000), ("flac", None), ("mp3", None)):
        with pytest.raises(OSError) as caught:
            transcode_track(small_disk / "fits.wav", small_disk / f"out.{fmt}", fmt, rate)
        assert caught.value.errno == errno.ENOSPC, fmt
    with pytest.raises(OSError):
        TrackWriter(small_disk / "another.wav", 24000)
    assert sorted(p.name for p in small_disk.iterdir()) == ["filler", "fits.wav"]  # no temporary file left
