"""One hardened `bentoml serve` of the demo model, shared by the security, reliability and fuzz tests (a served
start costs 10-30 s on a busy 2-core machine): API keys on (two in PTBR_API_KEYS, one in a keys file), small body
limits, the out-of-memory test hooks, quick job retries, and a private TMPDIR (temp files countable).

When the tests run as root, the data directory is a real 4 MiB tmpfs (so a full disk is real), and when uid 1034
can also run this interpreter, the server runs as the image's user, uid/gid 1034, the way the container runs it,
able to write only to its data directory and its TMPDIR: the model store, the repository, the keys file and $HOME
are not writable by it. (Here the shared venv's Python lives under /root, closed to other users, so the server runs
as root; the container smoke test, scripts/smoke_container.sh, runs the image as 1034 with a read-only root.)
Without root the data directory is a plain folder and the full-disk test is skipped.

Registered in conftest.py as the session fixture ``hardened_service``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest

from served import ServedService, free_port, import_demo

KEYS = ("env-key-one-7f3a9c", "env-key-two-1b2d4e")
FILE_KEY = "file-key-three-9e8d7c"
MAX_UPLOAD = 300_000
MAX_JSON = 16_384
OOM_TRIGGER = "estourodememoria"
OOM_ONCE_TRIGGER = "estouroumavez"  # out of memory only the first time a chunk's text comes
TMPFS_BYTES = 4 * 1024 * 1024


@dataclass
class Hardened:
    served: ServedService
    data_dir: Path
    tmpdir: Path
    tmpfs: Path | None  # the mount point when the data directory is a real small filesystem
    uid: int  # the user the server runs as

    @property
    def url(self) -> str:
        return self.served.url

    @property
    def log_path(self) -> Path:
        return self.served.log_path

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {KEYS[0]}"}


SERVICE_UID = 1034  # BentoML's image user


def mount_tmpfs(where: Path, size: int, uid: int) -> bool:
    """A size-limited tmpfs at ``where``, owned by ``uid`` (needs root); False when it cannot."""
    where.mkdir(parents=True, exist_ok=True)
    options = f"size={size},mode=0755,uid={uid},gid={uid}"
    return subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(where)],
                          capture_output=True, timeout=30).returncode == 0


def fill(mount: Path, leave: int, name: str = "filler") -> Path:
    """Fill the small filesystem at ``mount`` until ``leave`` bytes are free; returns the filler file."""
    stats = os.statvfs(mount)
    free = stats.f_bavail * stats.f_frsize
    filler = mount / name
    with filler.open("ab") as out:
        out.write(b"\0" * max(0, free - leave))
    return filler


def can_run_as(uid: int) -> bool:
    """Root, and this interpreter usable by ``uid`` (a venv whose Python lives under /root is not)?"""
    if os.geteuid() != 0:
        return False
    probe = "import subprocess, sys; subprocess.run([sys.executable, '-c', 'import bentoml'], check=True)"
    command = ["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups", sys.executable, "-c", probe]
    try:
        return subprocess.run(command, capture_output=True, timeout=120, cwd="/").returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


@pytest.fixture(scope="session")
def hardened_service():
    as_root = os.geteuid() == 0
    as_service_user = can_run_as(SERVICE_UID)
    root = Path(tempfile.mkdtemp(prefix="ptbr-hardened-"))
    root.chmod(0o755)  # readable (not writable) by the service user
    keys_file = root / "keys.txt"
    keys_file.write_text(f"# rotated monthly\n{FILE_KEY}\n", encoding="utf-8")
    keys_file.chmod(0o644)
    tmpdir = root / "tmp"
    tmpdir.mkdir()
    mount_point = root / "disk"
    owner = SERVICE_UID if as_service_user else os.geteuid()
    tmpfs = mount_point if as_root and mount_tmpfs(mount_point, TMPFS_BYTES, owner) else None
    data_dir = (tmpfs or root) / "data"
    env = {"PTBR_DATA_DIR": str(data_dir), "TMPDIR": str(tmpdir), "NUMBA_CACHE_DIR": str(tmpdir / "numba"),
           "MPLCONFIGDIR": str(tmpdir / "matplotlib"), "PTBR_API_KEYS": ",".join(KEYS),
           "PTBR_API_KEYS_FILE": str(keys_file), "PTBR_MAX_UPLOAD_BYTES": str(MAX_UPLOAD),
           "PTBR_MAX_JSON_BYTES": str(MAX_JSON), "PTBR_TEST_OOM_TRIGGER": OOM_TRIGGER,
           "PTBR_TEST_OOM_ONCE_TRIGGER": OOM_ONCE_TRIGGER, "PTBR_OOM_RETRY_AFTER_SECONDS": "3",
           # jobs stopped by a fault (test_job_faults_served.py) are tried again within a second, not 5 s doubling
           "PTBR_JOB_RETRY_BACKOFF_S": "0.3", "PTBR_JOB_RETRY_BACKOFF_MAX_S": "1"}
    tag = import_demo()
    command = None
    if as_service_user:
        os.chown(tmpdir, SERVICE_UID, SERVICE_UID)
        if tmpfs is None:
            data_dir.mkdir()
            os.chown(data_dir, SERVICE_UID, SERVICE_UID)
        Path(os.environ["BENTOML_HOME"]).chmod(0o755)  # the session's store: readable, not writable, by uid 1034
        env["HOME"] = "/nonexistent"
        served_port = free_port()
        command = ["setpriv", f"--reuid={SERVICE_UID}", f"--regid={SERVICE_UID}", "--clear-groups",
                   str(Path(sys.executable).parent / "bentoml"), "serve", "service:PtBrTTS", "--host", "127.0.0.1",
                   "--port", str(served_port)]
    served = ServedService(env={"PTBR_MODEL_TAG": tag, "PTBR_LOG_FORMAT": "json", **env},
                           log_path=root / "serve.log", command=command)
    if command is not None:
        served.port = served_port
    try:
        served.start()
        served.wait_listening()
        served.wait_ready()
        yield Hardened(served, data_dir, tmpdir, tmpfs, owner)
    finally:
        served.stop()
        if tmpfs is not None:
            subprocess.run(["umount", "-l", str(tmpfs)], capture_output=True, timeout=30)
        shutil.rmtree(root, ignore_errors=True)
