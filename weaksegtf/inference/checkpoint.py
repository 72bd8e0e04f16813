"""Which tiles of a slide are finished, on disk, so that a killed run resumes where it stopped."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any, Iterable, Protocol

import numpy as np
import numpy.typing as npt

from weaksegtf.io import (
    make_folder,
    open_existing_or_new,
    refuse_link,
    storage_error,
    write_text_atomic,
)


class Flushable(Protocol):
    def flush(self) -> None: ...


class Checkpoint:
    """Finished tile indices of one slide, appended to a file after their data is durable.

    ``state.json`` records the settings the tiles were made with (model hash,
    slide, resolution, tile geometry, outputs); a rerun with different
    settings starts again instead of mixing results. ``done.u32`` lists
    finished tiles as little-endian uint32. :meth:`commit` first flushes the
    stores the tiles were written to and only then appends their indices, so
    a listed tile is always on disk, even after SIGKILL or a power cut. A
    record cut short by a kill is ignored (its tile is simply run again).

    Args:
        folder: str or path. Folder for ``state.json`` and ``done.u32``.
        settings: dict. JSON-serialisable settings that must match to resume.
        n_tiles: int. Number of tiles in the plan.
        interval_s: float. Smallest time between commits; work done since the
            last commit is redone after a kill. Defaults to 5.

    Example:
    >>> checkpoint = Checkpoint(".work", {"model": "ab12"}, n_tiles=40)  # doctest: +SKIP
    >>> checkpoint.mark([0, 1]); checkpoint.commit([store])  # doctest: +SKIP
    """

    def __init__(self, folder: Path | str, settings: dict[str, Any], n_tiles: int, interval_s: float = 5.0) -> None:
        self.folder = make_folder(folder)
        self.n_tiles = int(n_tiles)
        self.interval_s = float(interval_s)
        self.done: npt.NDArray[np.bool_] = np.zeros(self.n_tiles, dtype=bool)
        self._pending: list[int] = []
        self._last_commit = time.monotonic()
        state_path = self.folder / "state.json"
        self._done_path = self.folder / "done.u32"
        text = json.dumps(settings, sort_keys=True, indent=1)
        refuse_link(state_path)
        refuse_link(self._done_path)
        previous = state_path.read_text(encoding="utf-8") if state_path.exists() else None
        if previous == text and self._done_path.exists():
            raw = self._done_path.read_bytes()
            # A record cut short by a kill or a full disk is dropped, so the next append stays aligned.
            raw = raw[: len(raw) // 4 * 4]
            indices = np.frombuffer(raw, dtype="<u4")
            self.done[indices[indices < self.n_tiles]] = True
            fd = open_existing_or_new(self._done_path, os.O_WRONLY)
            try:
                os.ftruncate(fd, len(raw))
            except OSError as error:
                os.close(fd)
                raise storage_error(error, self._done_path) from None
            os.lseek(fd, 0, os.SEEK_END)
        else:
            self._done_path.unlink(missing_ok=True)
            write_text_atomic(state_path, text)
            fd = open_existing_or_new(self._done_path, os.O_WRONLY | os.O_CREAT)
        self.resumed_done = self.done.copy()
        self._file = os.fdopen(fd, "wb")

    def mark(self, indices: Iterable[int]) -> None:
        """Note tiles as finished (their data written, not yet flushed)."""
        indices = [int(i) for i in indices]
        self._pending.extend(indices)
        self.done[indices] = True

    def commit(self, stores: Iterable[Flushable], force: bool = False) -> None:
        """Flush ``stores`` and record pending tiles, at most every ``interval_s`` unless ``force``."""
        if not self._pending or (not force and time.monotonic() - self._last_commit < self.interval_s):
            return
        for store in stores:
            store.flush()
        try:
            self._file.write(np.asarray(self._pending, dtype="<u4").tobytes())
            self._file.flush()
            os.fdatasync(self._file.fileno())
        except OSError as error:
            raise storage_error(error, self._done_path) from None
        self._pending.clear()
        self._last_commit = time.monotonic()

    @property
    def resumed_tiles(self) -> int:
        """Tiles (model-run or background) already finished when this checkpoint was opened."""
        return int(self.resumed_done.sum())

    def close(self) -> None:
        try:
            self._file.close()
        except OSError:
            pass  # a failed append is already reported; the record is cut short and dropped on resume
