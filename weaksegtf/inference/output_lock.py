"""One writer per output folder: an advisory ``fcntl.flock`` on ``<folder>/.weakseg-infer.lock``."""

from __future__ import annotations

import errno
import fcntl
import os
import time
from pathlib import Path

from weaksegtf.errors import OutputError
from weaksegtf.io import open_existing_or_new, storage_error

LOCK_NAME = ".weakseg-infer.lock"


class OutputLock:
    """An exclusive lock on an output folder, held while a run writes into it.

    The lock is ``flock`` on a file in the folder: the kernel drops it when
    the process ends, however it ends, so a killed run never leaves a stale
    lock. The file holds the owner's pid, for the message a second run gets.
    ``flock`` is advisory: it stops other ``weakseg-infer`` runs (on this
    machine, or on NFS v4 clients that map it to a lease), not other programs.

    Args:
        folder: str or path. The folder to lock (it must exist).
        wait_s: float. Seconds to wait for another run to finish; 0 refuses at
            once. Defaults to 0.

    Raises:
        OutputError: another run holds the lock (after ``wait_s``), or the
            folder is not writable.

    Example:
    >>> with OutputLock("results"):  # doctest: +SKIP
    ...     segment_everything()
    """

    def __init__(self, folder: Path | str, wait_s: float = 0.0) -> None:
        self.folder = Path(folder)
        self.path = self.folder / LOCK_NAME
        self.wait_s = float(wait_s)
        self._fd = -1

    def acquire(self) -> "OutputLock":
        fd = open_existing_or_new(self.path, os.O_RDWR | os.O_CREAT)
        deadline = time.monotonic() + max(0.0, self.wait_s)
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as error:
                if error.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
                    os.close(fd)
                    raise storage_error(error, self.path) from None
                if time.monotonic() >= deadline:
                    owner = os.pread(fd, 64, 0).decode("ascii", "replace").strip() or "unknown"
                    os.close(fd)
                    waited = f" after waiting {self.wait_s:g} s" if self.wait_s > 0 else ""
                    raise OutputError(
                        f"{self.folder} is in use by another weakseg-infer run (pid {owner}){waited}; wait for it "
                        f"to finish (or pass --wait SECONDS), or choose another --out") from None
                time.sleep(min(0.5, max(0.01, deadline - time.monotonic())))
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode("ascii"), 0)
        except OSError as error:
            os.close(fd)
            raise storage_error(error, self.path) from None
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd >= 0:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = -1

    def __enter__(self) -> "OutputLock":
        return self.acquire()

    def __exit__(self, *exc_info) -> None:
        self.release()
