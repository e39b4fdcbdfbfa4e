"""Readiness of every worker of one ``bentoml serve`` when ``PTBR_GPU_WORKERS`` starts several.

Each worker loads its own model copy on its own GPU, and the kernel hands connections to whichever worker accepts
first, so ``/readyz`` must not say ready while one of them is still loading (or failed): half the requests would
meet a 503. A worker marks itself ready with a file ``ready-<index>`` holding its pid in a folder of its server's
own: ``$TMPDIR/f5tts-ptbr-workers-<pid of bentoml serve>`` (every worker is a child of that process). Not BentoML's
metrics folder: that one is ``$BENTOML_HOME/prometheus_multiproc_dir``, shared by every server of one BentoML home and
emptied by each that starts. A worker counts as ready while its file names a live process, so a worker that crashed
and is being restarted by BentoML's supervisor reads as not ready until it has loaded again.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def server_run_dir() -> Path:
    """The folder this worker's server (its parent process, ``bentoml serve``) keeps worker state in."""
    return Path(tempfile.gettempdir()) / f"f5tts-ptbr-workers-{os.getppid()}"


class WorkerRoll:
    def __init__(self, directory: str | os.PathLike[str] | None, index: int | None, workers: int) -> None:
        self.directory = Path(directory) if directory else None
        self.index = index
        self.workers = workers

    @property
    def enabled(self) -> bool:
        return self.workers > 1 and self.directory is not None and self.index is not None

    def _path(self, index: int) -> Path:
        assert self.directory is not None
        return self.directory / f"ready-{index}"

    def mark_ready(self) -> None:
        if not self.enabled:
            return
        self.directory.mkdir(mode=0o700, exist_ok=True)  # type: ignore[union-attr]
        path = self._path(self.index)  # type: ignore[arg-type]
        partial = path.with_name(f".{path.name}.{os.getpid()}")
        partial.write_text(str(os.getpid()))
        partial.replace(path)

    def not_ready(self) -> list[int]:
        """Indices (from 1) of the other workers that are not ready now."""
        if not self.enabled:
            return []
        return [index for index in range(1, self.workers + 1)
                if index != self.index and not _alive(self._path(index))]


def _alive(path: Path) -> bool:
    import psutil

    try:
        pid = int(path.read_text())
        # A killed worker stays a zombie until the supervisor reaps it: that is not alive either.
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except (OSError, ValueError, psutil.Error):
        return False
