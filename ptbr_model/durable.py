"""Durability helpers shared by the stores on the data directory (voices, jobs, result tracks)."""

from __future__ import annotations

import errno
import os
from pathlib import Path
from typing import Any, BinaryIO

# A full filesystem, or the user's quota used up: both mean "free space on the data directory, then try again".
STORAGE_FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})


def fsync_dir(path: Path) -> None:
    """Flush a folder's entries (a rename or a new file in it) to disk, so they survive a crash."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def storage_full(exc: BaseException | None) -> bool:
    """Whether ``exc``, or an exception it was raised from or while handling, is ENOSPC or EDQUOT."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, OSError) and exc.errno in STORAGE_FULL_ERRNOS:
            return True
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return False


class ErrnoKeepingFile:
    """An unbuffered binary file for ``soundfile.SoundFile`` that keeps the OSError of a failed write.

    libsndfile reports a failed write(2) as "System error." and the errno is lost (soundfile 0.13 raises
    ``LibsndfileError``, or fails its own ``assert written == frames``), so a full disk would look like a codec bug.
    Written through this object, Python does the write(2); the OSError is kept in ``error`` (libsndfile sees a short
    write and fails) and ``raise_kept`` re-raises it in place of libsndfile's error. Unbuffered (``open(path, "xb",
    buffering=0)``), so a seek never flushes, and a failing write surfaces here and nowhere else."""

    def __init__(self, file: BinaryIO) -> None:
        self._file = file
        self.error: OSError | None = None

    def write(self, data: bytes) -> int:
        view = memoryview(data)
        done = 0
        try:
            while done < len(view):
                written = self._file.write(view[done:])
                if not written:
                    break
                done += written
        except OSError as exc:
            self.error = self.error or exc
        return done

    def __getattr__(self, name: str) -> Any:  # read, seek, tell, flush, close, fileno …
        return getattr(self._file, name)

    def raise_kept(self, exc: BaseException) -> None:
        """Raise the kept OSError (chained to ``exc``) when there is one; otherwise do nothing."""
        if self.error is not None:
            raise self.error from exc
