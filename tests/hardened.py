"""One hardened `bentoml serve` of the demo model, shared by the security, reliability and fuzz tests (a served
start costs 10-30 s on a busy 2-core machine): API keys on (two in PTBR_API_KEYS, one in a keys file), small body
limits, the out-of-memory test hook, a private TMPDIR (temp files countable), and the data directory on a 4 MiB
tmpfs when the tests run as root (so a full disk is real), else on a plain directory.

Registered in conftest.py as the session fixture ``hardened_service``.
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from served import ServedService, import_demo, start_demo

KEYS = ("env-key-one-7f3a9c", "env-key-two-1b2d4e")
FILE_KEY = "file-key-three-9e8d7c"
MAX_UPLOAD = 300_000
MAX_JSON = 16_384
OOM_TRIGGER = "estourodememoria"
TMPFS_BYTES = 4 * 1024 * 1024


@dataclass
class Hardened:
    served: ServedService
    data_dir: Path
    tmpdir: Path
    tmpfs: Path | None  # the mount point when the data directory is a real small filesystem

    @property
    def url(self) -> str:
        return self.served.url

    @property
    def log_path(self) -> Path:
        return self.served.log_path

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {KEYS[0]}"}


def mount_tmpfs(where: Path, size: int) -> bool:
    """A size-limited tmpfs at ``where`` (needs root, which these tests have here); False when it cannot."""
    if os.geteuid() != 0:
        return False
    where.mkdir(parents=True, exist_ok=True)
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(where)],
                            capture_output=True, timeout=30)
    return result.returncode == 0


@pytest.fixture(scope="session")
def hardened_service(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("hardened")
    keys_file = root / "keys.txt"
    keys_file.write_text(f"# rotated monthly\n{FILE_KEY}\n", encoding="utf-8")
    mount_point = root / "disk"
    tmpfs = mount_point if mount_tmpfs(mount_point, TMPFS_BYTES) else None
    data_dir = (tmpfs or root) / "data"
    tmpdir = root / "tmp"
    tmpdir.mkdir()
    try:
        served = start_demo(import_demo(), root / "serve.log", PTBR_DATA_DIR=str(data_dir), TMPDIR=str(tmpdir),
                            PTBR_API_KEYS=",".join(KEYS), PTBR_API_KEYS_FILE=str(keys_file),
                            PTBR_MAX_UPLOAD_BYTES=str(MAX_UPLOAD), PTBR_MAX_JSON_BYTES=str(MAX_JSON),
                            PTBR_TEST_OOM_TRIGGER=OOM_TRIGGER, PTBR_OOM_RETRY_AFTER_SECONDS="3")
        try:
            yield Hardened(served, data_dir, tmpdir, tmpfs)
        finally:
            served.stop()
    finally:
        if tmpfs is not None:
            subprocess.run(["umount", "-l", str(tmpfs)], capture_output=True, timeout=30)
