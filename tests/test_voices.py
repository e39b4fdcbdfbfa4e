"""The saved-voice library (ptbr_model/voices.py) on a real directory: lifecycle, names, ids, audio round trip,
several libraries and several processes on one folder, kill -9 in the middle of a write, corrupt entries."""

from __future__ import annotations

import json
import logging
import multiprocessing
import os
import shutil
import signal
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from ptbr_model.voices import (
    SAMPLE_RATE,
    InvalidVoiceName,
    Voice,
    VoiceError,
    VoiceLibrary,
    VoiceLimitReached,
    VoiceNameTaken,
    VoiceNotFound,
)

SPAWN = multiprocessing.get_context("spawn")  # a clean child: no inherited threads or locks from the test process


def wave(seconds: float = 0.5, seed: int = 0) -> np.ndarray:
    return (np.random.default_rng(seed).standard_normal(int(seconds * SAMPLE_RATE)) * 0.2).astype(np.float32)


def make(lib: VoiceLibrary, name: str, seed: int = 0, **extra) -> Voice:
    return lib.create(name, wave(seed=seed), "Olá, tudo bem?", "olá, tudo bem?", [], "wav", **extra)


@pytest.fixture()
def root(tmp_path: Path) -> Path:
    return tmp_path / "data" / "voices"


# ------------------------------------------------------------------------------------------------ lifecycle


def test_lifecycle(root: Path) -> None:
    lib = VoiceLibrary(root)
    assert root.is_dir() and lib.list() == ([], 0) and lib.count() == 0

    samples = wave(1.25)
    voice = lib.create("Ana Júlia", samples, "Olá, 2 pães!", "olá, dois pães!", ["☃"], "mp3",
                       description="calma", language="pt-BR")
    assert voice.id.startswith("v_") and len(voice.id) == 12
    assert voice.name == "Ana Júlia" and voice.duration_s == 1.25 and voice.sample_rate == SAMPLE_RATE
    assert voice.removed_characters == ("☃",) and voice.source_format == "mp3"
    assert voice.created_at.endswith("Z") and len(voice.sha256) == 64
    data = voice.to_dict()
    assert json.loads(json.dumps(data)) == data
    assert data["removed_characters"] == ["☃"] and data["description"] == "calma" and data["language"] == "pt-BR"
    assert str(root) not in json.dumps(data)

    assert (root / voice.id / "reference.wav").is_file() and (root / voice.id / "meta.json").is_file()
    assert lib.get(voice.id) == voice and lib.get("ANA JÚLIA") == voice and lib.get("ana júlia") == voice
    assert lib.list() == ([voice], 1) and lib.count() == 1

    renamed = lib.rename(voice.id, "Bia")
    assert renamed.name == "Bia" and renamed.id == voice.id and renamed.sha256 == voice.sha256
    assert lib.get("bia") == renamed
    with pytest.raises(VoiceNotFound):
        lib.get("Ana Júlia")
    # a second library on the folder reads what the first wrote (meta.json really was rewritten)
    assert VoiceLibrary(root).get(voice.id) == renamed

    deleted = lib.delete("BIA")
    assert deleted == renamed
    assert lib.list() == ([], 0) and not (root / voice.id).exists()
    assert not [p for p in root.iterdir() if p.name.startswith((".tmp-", ".trash-"))]
    for call in (lambda: lib.get(voice.id), lambda: lib.load_wave(voice), lambda: lib.delete(voice.id),
                 lambda: lib.rename(voice.id, "X")):
        with pytest.raises(VoiceNotFound) as err:
            call()
        assert err.value.field == "voice" and err.value.status_code == 404


def test_sample_rate_is_the_codec_s() -> None:
    from ptbr_model.audio_codec import SAMPLE_RATE as CODEC_RATE

    assert SAMPLE_RATE == CODEC_RATE


def test_float32_audio_round_trips_bit_exact(root: Path) -> None:
    lib = VoiceLibrary(root)
    samples = wave(2.0, seed=3)
    samples[:6] = [0.0, -0.0, 1e-45, -3.4e38, 1.5, np.float32(1) - np.float32(2**-24)]  # denormal, huge, > 1
    voice = lib.create("Exata", samples, "t", "t", [], "wav")
    back = VoiceLibrary(root).load_wave(voice)
    assert back.dtype == np.float32 and back.ndim == 1
    assert back.tobytes() == samples.tobytes()


@pytest.mark.parametrize(
    ("bad", "problem"),
    [
        (wave().astype(np.float64), "float32"),
        (np.stack([wave(), wave()]), "1-D"),
        (np.zeros(0, np.float32), "empty"),
        (np.array([0.0, np.nan], np.float32), "NaN"),
        ([0.0, 0.1], "float32"),
    ],
)
def test_wave_is_checked(root: Path, bad, problem: str) -> None:
    with pytest.raises(VoiceError, match=problem) as err:
        VoiceLibrary(root).create("Voz", bad, "t", "t", [], "wav")
    assert err.value.field == "reference_audio"


# ------------------------------------------------------------------------------------------------ names


@pytest.mark.parametrize(
    "name",
    ["", " Ana", "Ana ", "a/b", "a\\b", "a\x00b", "tab\there", "new\nline", "x" * 65, "emoji😀", "semi;colon",
     "ab\u200bcd", "nb\u00a0sp", "...", "- _", "\u0301ana", "v_abcdefghij", "V_ABCDEFGHIJ", "../x", 123, None],
)
def test_invalid_names(root: Path, name) -> None:
    lib = VoiceLibrary(root)
    with pytest.raises(InvalidVoiceName) as err:
        make(lib, name)
    assert err.value.field == "name" and err.value.status_code == 400
    message = str(err.value)
    assert message.startswith("name: ")
    if not (isinstance(name, str) and name.casefold().startswith("v_")):
        assert "64" in message and "letters" in message and "'-', '_' and '.'" in message
    assert lib.count() == 0 and [p.name for p in root.iterdir() if not p.name.startswith(".")] == []
    v = make(lib, "Válida")
    with pytest.raises(InvalidVoiceName):
        lib.rename(v.id, name)
    assert lib.get(v.id).name == "Válida"


@pytest.mark.parametrize("name", ["Ana Júlia", "José_2", "voz-1.0", "Ação", "李明", "x" * 64, "A", "7"])
def test_valid_names(root: Path, name: str) -> None:
    lib = VoiceLibrary(root)
    assert make(lib, name).name == name
    assert lib.get(name.upper()).name == name


def test_name_length_is_the_setting(root: Path) -> None:
    lib = VoiceLibrary(root, name_max_chars=5)
    make(lib, "abcde")
    with pytest.raises(InvalidVoiceName, match="1 to 5 characters"):
        make(lib, "abcdef")


def test_names_are_unique_ignoring_case_and_accent_encoding(root: Path) -> None:
    lib = VoiceLibrary(root)
    ana = make(lib, "Ana Júlia")
    for clash in ("ana júlia", "ANA JÚLIA", "Ana Ju\u0301lia"):  # the last is decomposed (u + combining acute)
        with pytest.raises(VoiceNameTaken) as err:
            make(lib, clash)
        assert err.value.field == "name" and err.value.status_code == 409 and "Ana Júlia" in str(err.value)
    assert make(lib, "Ana Julia").name == "Ana Julia"  # without the accent it is another name
    decomposed = make(lib, "Rene\u0301")
    assert decomposed.name == "René" and lib.get("RENÉ") == decomposed  # stored composed (NFC)

    bia = make(lib, "Bia")
    with pytest.raises(VoiceNameTaken):
        lib.rename(bia.id, "ANA JÚLIA")
    assert lib.get(bia.id).name == "Bia"
    assert lib.rename("bia", "BIA").name == "BIA"  # a voice may change the case of its own name
    assert lib.rename(ana.id, "Ana Júlia").name == "Ana Júlia"
    assert lib.count() == 4


# ------------------------------------------------------------------------------------------------ ids never paths


@pytest.mark.parametrize(
    "given",
    ["../outside", "/etc/passwd", "v_..", "v_../outside", "..", ".", "", ".lock", ".generation", "outside",
     "v_ABCDEFGHIJ", "v_abcdefghi", "v_abcdefghijk", "v_abcdefghij/../../outside", "%2e%2e/outside"],
)
def test_ids_are_validated_before_any_path(root: Path, given: str) -> None:
    lib = VoiceLibrary(root)
    real = make(lib, "Real")
    # A complete, valid voice folder outside the library, and another one inside it under a non-slug name:
    outside = root.parent / "outside"
    shutil.copytree(root / real.id, outside)
    shutil.copytree(root / real.id, root / "outside")
    for call in (lib.get, lib.delete, lambda x: lib.rename(x, "Novo")):
        with pytest.raises(VoiceNotFound):
            call(given)
    assert (outside / "meta.json").is_file() and (outside / "reference.wav").is_file()
    assert (root / "outside" / "meta.json").is_file()
    assert (root / ".lock").exists()
    assert lib.list() == ([real], 1) and lib.get(real.id).name == "Real"


def test_forged_voice_object_cannot_reach_a_path(root: Path) -> None:
    lib = VoiceLibrary(root)
    real = make(lib, "Real")
    from dataclasses import replace

    for forged in ("../outside", "/etc/passwd", "v_abcdefghij"):
        with pytest.raises(VoiceNotFound):
            lib.load_wave(replace(real, id=forged))


def test_ids_are_server_made_and_distinct(root: Path) -> None:
    lib = VoiceLibrary(root)
    ids = {make(lib, f"Voz {i}").id for i in range(20)}
    assert len(ids) == 20 and all(len(i) == 12 and i[:2] == "v_" and i[2:].isalnum() and i.islower() for i in ids)


# ------------------------------------------------------------------------------------------------ paging, limits


def test_paging_is_ordered_by_creation(root: Path) -> None:
    lib = VoiceLibrary(root)
    made = [make(lib, f"Voz {i}", seed=i) for i in range(5)]
    assert [v.created_at for v in made] == sorted(v.created_at for v in made)
    assert lib.list(0, 2) == (made[:2], 5)
    assert lib.list(2, 2) == (made[2:4], 5)
    assert lib.list(4, 2) == (made[4:], 5)
    assert lib.list(10, 2) == ([], 5)
    assert lib.list(1, 0) == ([], 5)
    assert lib.list() == (made, 5)
    lib.rename(made[0].id, "Primeira")  # renaming keeps the place
    assert [v.id for v in lib.list()[0]] == [v.id for v in made]
    for offset, limit, field in ((-1, 2, "offset"), (0, -1, "limit"), (0.5, 2, "offset"), (0, "2", "limit")):
        with pytest.raises(VoiceError) as err:
            lib.list(offset, limit)
        assert err.value.field == field


def test_max_voices(root: Path) -> None:
    lib = VoiceLibrary(root, max_voices=2)
    first = make(lib, "Um")
    make(lib, "Dois")
    with pytest.raises(VoiceLimitReached) as err:
        make(lib, "Três")
    assert "PTBR_MAX_VOICES=2" in str(err.value) and err.value.field == "voice"
    assert lib.count() == 2 and not [p for p in root.iterdir() if p.name.startswith(".tmp-")]
    lib.delete(first.id)
    assert make(lib, "Três").name == "Três"


# ------------------------------------------------------------------------------------------------ shared folder


def test_two_libraries_on_one_folder_see_each_other_at_once(root: Path) -> None:
    a, b = VoiceLibrary(root), VoiceLibrary(root)
    assert b.list() == ([], 0)  # b's index is warm and empty

    voice = make(a, "Compartilhada")
    assert b.get("compartilhada") == voice and b.get(voice.id) == voice and b.list() == ([voice], 1)
    assert b.load_wave(voice).tobytes() == wave().tobytes()
    with pytest.raises(VoiceNameTaken):
        make(b, "COMPARTILHADA")

    for name in ("Nome 1", "Nome 2", "Nome 3"):  # quick successive changes: b always sees the latest
        a.rename(voice.id, name)
        assert b.get(voice.id).name == name and b.list()[0][0].name == name
    with pytest.raises(VoiceNotFound):
        b.get("Nome 2")

    b.rename(voice.id, "Pela B")
    assert a.get("pela b").id == voice.id

    a.delete(voice.id)
    for call in (lambda: b.get(voice.id), lambda: b.get("Pela B"), lambda: b.load_wave(voice)):
        with pytest.raises(VoiceNotFound):
            call()
    assert b.list() == ([], 0) and b.count() == 0


def test_changes_behind_the_library_s_back_are_never_served(root: Path) -> None:
    lib = VoiceLibrary(root)
    gone, edited = make(lib, "Some"), make(lib, "Editada")
    assert lib.count() == 2  # warm index
    shutil.rmtree(root / gone.id)
    with pytest.raises(VoiceNotFound):
        lib.get(gone.id)
    with pytest.raises(VoiceNotFound):
        lib.load_wave(gone)
    (root / edited.id / "meta.json").write_text("{broken")
    with pytest.raises(VoiceNotFound):
        lib.get("editada")
    assert lib.corrupt_entries() == [edited.id] and lib.list() == ([], 0)


def _create_in_child(root: str, name: str, max_voices: int, barrier, results) -> None:
    """Runs in a spawned process: create a voice, but publish it only once every racer has written its files."""
    lib = VoiceLibrary(Path(root), max_voices=max_voices, before_commit=lambda tmp: barrier.wait(timeout=30))
    try:
        voice = lib.create(name, wave(), "t", "t", [], "wav")
        results.put(("created", voice.id))
    except VoiceError as exc:
        results.put((type(exc).__name__, str(exc)))


def _race(root: Path, names: list[str], max_voices: int = 1000) -> list[tuple[str, str]]:
    VoiceLibrary(root)
    barrier, results = SPAWN.Barrier(len(names)), SPAWN.Queue()
    procs = [SPAWN.Process(target=_create_in_child, args=(str(root), n, max_voices, barrier, results)) for n in names]
    for p in procs:
        p.start()
    outcome = [results.get(timeout=60) for _ in procs]
    for p in procs:
        p.join(timeout=30)
        assert p.exitcode == 0
    return sorted(outcome)


def test_processes_racing_for_one_name_one_wins(root: Path) -> None:
    outcome = _race(root, ["Disputada", "DISPUTADA"])
    assert [kind for kind, _ in outcome] == ["VoiceNameTaken", "created"]
    lib = VoiceLibrary(root)
    assert lib.count() == 1 and lib.get("disputada").id == outcome[1][1]
    assert lib.corrupt_entries() == [] and not [p for p in root.iterdir() if p.name.startswith(".tmp-")]


def test_processes_racing_for_the_last_place_one_wins(root: Path) -> None:
    outcome = _race(root, ["Uma", "Outra"], max_voices=1)
    assert [kind for kind, _ in outcome] == ["VoiceLimitReached", "created"]
    assert VoiceLibrary(root).count() == 1


# ------------------------------------------------------------------------------------------------ crashes


def _create_and_hang(root: str, ready) -> None:
    def pause(tmp: Path) -> None:
        ready.set()
        time.sleep(120)

    VoiceLibrary(Path(root), before_commit=pause).create("Interrompida", wave(), "t", "t", [], "wav")


def test_kill_9_before_commit_leaves_no_voice_and_the_leftover_is_cleaned(root: Path) -> None:
    kept = make(VoiceLibrary(root), "Antiga")
    ready = SPAWN.Event()
    child = SPAWN.Process(target=_create_and_hang, args=(str(root), ready))
    child.start()
    try:
        assert ready.wait(timeout=60), "the child never reached before_commit"
        leftovers = [p for p in root.iterdir() if p.name.startswith(".tmp-")]
        assert len(leftovers) == 1 and {f.name for f in leftovers[0].iterdir()} == {"meta.json", "reference.wav"}
        os.kill(child.pid, signal.SIGKILL)
    finally:
        child.join(timeout=30)
    assert child.exitcode == -signal.SIGKILL

    young = VoiceLibrary(root)  # default age: a young temporary folder may be another live writer's: kept
    assert young.list() == ([kept], 1) and young.corrupt_entries() == []
    with pytest.raises(VoiceNotFound):
        young.get("Interrompida")
    assert leftovers[0].exists()

    VoiceLibrary(root, stale_tmp_age_s=0)
    assert not leftovers[0].exists()
    assert VoiceLibrary(root).list() == ([kept], 1)
    assert make(young, "Interrompida").name == "Interrompida"  # the name was never taken


def _hold_lock(root: str, ready) -> None:
    import fcntl

    fd = os.open(Path(root) / ".lock", os.O_RDWR | os.O_CREAT)
    fcntl.flock(fd, fcntl.LOCK_EX)
    ready.set()
    time.sleep(120)


def test_a_writer_killed_while_holding_the_lock_does_not_block_the_others(root: Path) -> None:
    lib = VoiceLibrary(root)
    ready = SPAWN.Event()
    child = SPAWN.Process(target=_hold_lock, args=(str(root), ready))
    child.start()
    done = threading.Event()
    try:
        assert ready.wait(timeout=60)
        worker = threading.Thread(target=lambda: (make(lib, "Depois"), done.set()), daemon=True)
        worker.start()
        assert not done.wait(timeout=0.3), "create did not wait for the lock"
        os.kill(child.pid, signal.SIGKILL)
    finally:
        child.join(timeout=30)
    assert done.wait(timeout=30) and lib.get("depois").name == "Depois"


def test_a_failing_hook_leaves_nothing(root: Path) -> None:
    def boom(tmp: Path) -> None:
        raise OSError("disk gone")

    lib = VoiceLibrary(root, before_commit=boom)
    with pytest.raises(OSError, match="disk gone"):
        make(lib, "Nada")
    assert lib.count() == 0 and not [p for p in root.iterdir() if p.name.startswith(".tmp-")]


# ------------------------------------------------------------------------------------------------ corruption


def test_corrupt_entries_are_skipped_reported_and_never_served(root: Path, caplog) -> None:
    lib = VoiceLibrary(root)
    good, bad_json, no_wav, bad_schema, truncated, tampered, renamed_folder = (
        make(lib, name, seed=i)
        for i, name in enumerate(["Boa", "Json", "Sem wav", "Esquema", "Cortada", "Adulterada", "Movida"])
    )
    (root / bad_json.id / "meta.json").write_text('{"id": ')
    (root / no_wav.id / "reference.wav").unlink()
    meta = json.loads((root / bad_schema.id / "meta.json").read_text())
    del meta["sha256"]
    (root / bad_schema.id / "meta.json").write_text(json.dumps(meta))
    audio = (root / truncated.id / "reference.wav").read_bytes()
    (root / truncated.id / "reference.wav").write_bytes(audio[: len(audio) // 2])
    audio = bytearray((root / tampered.id / "reference.wav").read_bytes())
    audio[-4:] = b"\x00\x00\x80\x3f"  # same size, one sample changed to 1.0
    (root / tampered.id / "reference.wav").write_bytes(bytes(audio))
    os.rename(root / renamed_folder.id, root / "v_0000000000")  # its meta.json names another id
    half = root / ".tmp-halfwritten"  # a crashed writer's folder: not a voice, not reported
    half.mkdir()
    (half / "meta.json").write_text("{")

    caplog.set_level(logging.WARNING, logger="ptbr.voices")
    fresh = VoiceLibrary(root)
    broken = sorted([bad_json.id, no_wav.id, bad_schema.id, truncated.id, "v_0000000000"])
    assert fresh.corrupt_entries() == broken
    voices, total = fresh.list()
    assert total == 2 and {v.id for v in voices} == {good.id, tampered.id}  # same size: only the hash can tell
    for folder in broken:
        assert any(folder in r.getMessage() and r.name == "ptbr.voices" for r in caplog.records)
    for name in ("Json", "Sem wav", "Esquema", "Cortada", "Movida", renamed_folder.id, bad_json.id):
        with pytest.raises(VoiceNotFound):
            fresh.get(name)
    with pytest.raises(VoiceNotFound):
        lib.load_wave(truncated)  # the first library's index is stale: the file check still refuses it

    caplog.clear()
    with pytest.raises(VoiceNotFound):
        fresh.load_wave(fresh.get("adulterada"))
    assert any(tampered.id in r.getMessage() and "sha256" in r.getMessage() for r in caplog.records)
    assert fresh.corrupt_entries() == sorted(broken + [tampered.id])
    assert fresh.list() == ([good], 1)
    with pytest.raises(VoiceNotFound):
        fresh.get(tampered.id)
    assert fresh.load_wave(good).tobytes() == wave(seed=0).tobytes()

    caplog.clear()  # known corrupt entries are not warned about again at every scan
    make(fresh, "Nova")
    assert fresh.count() == 2
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]

    fresh.delete(good.id)  # the library keeps working around them
    assert [v.name for v in fresh.list()[0]] == ["Nova"]


def test_symlinked_voice_folder_is_never_followed(root: Path, tmp_path: Path) -> None:
    lib = VoiceLibrary(root)
    real = make(lib, "Real")
    outside = tmp_path / "elsewhere"
    os.rename(root / real.id, outside)
    os.symlink(outside, root / real.id)  # someone replaced the folder with a link out of the library
    with pytest.raises(VoiceNotFound):
        lib.load_wave(real)
    assert VoiceLibrary(root).corrupt_entries() == [real.id]


def test_threads_of_two_libraries_racing(root: Path) -> None:
    libs = [VoiceLibrary(root), VoiceLibrary(root)]
    victim = make(libs[0], "Alvo")
    outcomes: list[str] = []
    guard = threading.Lock()
    start = threading.Barrier(8)

    def work(i: int) -> None:
        lib = libs[i % 2]
        start.wait(timeout=30)
        for attempt in [f"Nome {k}" for k in range(3)] + ["DELETE"]:
            try:
                if attempt == "DELETE":
                    lib.delete(victim.id)
                    result = "deleted"
                else:
                    make(lib, attempt.upper() if i % 2 else attempt)
                    result = "created"
            except VoiceNameTaken:
                result = "taken"
            except VoiceNotFound:
                result = "gone"
            with guard:
                outcomes.append(result)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert sorted(outcomes).count("created") == 3 and outcomes.count("taken") == 21
    assert outcomes.count("deleted") == 1 and outcomes.count("gone") == 7
    for lib in libs:
        assert sorted(v.name.casefold() for v in lib.list()[0]) == ["nome 0", "nome 1", "nome 2"]
