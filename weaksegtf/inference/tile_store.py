"""An on-disk image made of the owned boxes of a tile plan, one contiguous block per tile.

Stitching writes each finished tile with a single ``os.pwrite`` and never
maps the file, so the process's memory does not grow with the slide: the
page cache holds the data, not the heap (a ``numpy.memmap`` would count every
page it touched towards the resident set). The layout is row of tiles after
row of tiles; inside a row, tile after tile; inside a tile, C-order
``(height, width, channels)``. :meth:`TileStore.read_rows` turns it back into
ordinary image rows, a strip at a time.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import numpy.typing as npt

from weaksegtf.errors import ConfigError
from weaksegtf.inference.tile_scheduler import TilePlan
from weaksegtf.io import open_existing_or_new, storage_error

UInt8Image = npt.NDArray[np.uint8]


class TileStore:
    """A ``(height, width, channels)`` uint8 image on disk, written tile by tile.

    Args:
        path: str or path. The file; created (zero-filled, sparse) when missing
            or of the wrong size, reused as it is otherwise (to resume).
        plan: TilePlan. Geometry of the tiles and their owned boxes.
        channels: int. Values per pixel (1 for labels, C for probabilities).
            Defaults to 1.

    Example:
    >>> store = TileStore("labels.bin", plan_tiles(300, 200, 64, 32))  # doctest: +SKIP
    >>> store.write_tile(0, crop)  # crop: (h, w, 1) of tile 0's owned box  # doctest: +SKIP
    >>> strip = store.read_rows(0, 64)  # (64, 300, 1)  # doctest: +SKIP
    """

    def __init__(self, path: Path | str, plan: TilePlan, channels: int = 1) -> None:
        if channels <= 0:
            raise ConfigError(f"channels must be positive, got {channels}")
        self.path = Path(path)
        self.plan = plan
        self.channels = int(channels)
        heights = np.diff(plan.y_cuts)
        widths = np.diff(plan.x_cuts)
        self._row_bytes = heights * plan.width_px * self.channels
        self._row_offsets = np.concatenate([[0], np.cumsum(self._row_bytes)]).astype(np.int64)
        self._col_offsets = np.concatenate([[0], np.cumsum(widths)]).astype(np.int64)
        self.size_bytes = int(self._row_offsets[-1])
        self._fd = open_existing_or_new(self.path, os.O_RDWR | os.O_CREAT)
        if os.fstat(self._fd).st_size != self.size_bytes:
            try:
                os.ftruncate(self._fd, 0)
                os.ftruncate(self._fd, self.size_bytes)
            except OSError as error:
                self.close()
                raise storage_error(error, self.path) from None
        self._cached: tuple[int, UInt8Image] | None = None

    @property
    def shape(self) -> tuple[int, int, int]:
        return self.plan.height_px, self.plan.width_px, self.channels

    def _tile_offset(self, row: int, col: int) -> int:
        height = int(self.plan.y_cuts[row + 1] - self.plan.y_cuts[row])
        return int(self._row_offsets[row] + height * self._col_offsets[col] * self.channels)

    def write_tile(self, index: int, crop: np.ndarray) -> None:
        """Write tile ``index``'s owned box, ``(h, w)`` or ``(h, w, channels)`` uint8."""
        x0, y0, x1, y1 = self.plan.owned_box(index)
        expected = (y1 - y0, x1 - x0, self.channels)
        crop = np.asarray(crop, dtype=np.uint8).reshape(crop.shape[:2] + (-1,))
        if crop.shape != expected:
            raise ConfigError(f"tile {index} crop has shape {crop.shape}; expected {expected}")
        if crop.size == 0:
            return
        row, col = self.plan.row_col(index)
        data = np.ascontiguousarray(crop).tobytes()
        offset = self._tile_offset(row, col)
        try:
            written = os.pwrite(self._fd, data, offset)
        except OSError as error:
            raise storage_error(error, self.path) from None
        if written != len(data):  # a full disk can write short instead of raising
            raise storage_error(OSError(28, "No space left on device"), self.path)
        self._cached = None

    def _tile_row(self, row: int) -> UInt8Image:
        """All owned boxes of tile row ``row`` as image rows ``(h, width, channels)``."""
        if self._cached is not None and self._cached[0] == row:
            return self._cached[1]
        plan = self.plan
        height = int(plan.y_cuts[row + 1] - plan.y_cuts[row])
        raw = os.pread(self._fd, int(self._row_bytes[row]), int(self._row_offsets[row]))
        flat = np.frombuffer(raw, dtype=np.uint8)
        out = np.empty((height, plan.width_px, self.channels), dtype=np.uint8)
        for col in range(plan.n_cols):
            x0, x1 = int(plan.x_cuts[col]), int(plan.x_cuts[col + 1])
            start = height * x0 * self.channels
            out[:, x0:x1] = flat[start : start + height * (x1 - x0) * self.channels].reshape(
                height, x1 - x0, self.channels
            )
        self._cached = (row, out)
        return out

    def read_rows(self, y0: int, y1: int) -> UInt8Image:
        """Image rows ``y0:y1`` (clipped to the image) as ``(rows, width, channels)``."""
        y0, y1 = max(0, int(y0)), min(self.plan.height_px, int(y1))
        out = np.empty((max(0, y1 - y0), self.plan.width_px, self.channels), dtype=np.uint8)
        if y1 <= y0:
            return out
        cuts = self.plan.y_cuts
        first = int(np.searchsorted(cuts, y0, side="right")) - 1
        last = int(np.searchsorted(cuts, y1, side="left"))
        for row in range(first, last):
            top, bottom = int(cuts[row]), int(cuts[row + 1])
            if bottom <= top:
                continue
            a, b = max(top, y0), min(bottom, y1)
            out[a - y0 : b - y0] = self._tile_row(row)[a - top : b - top]
        return out

    def flush(self) -> None:
        """Make written tiles durable (before the checkpoint records them)."""
        try:
            os.fdatasync(self._fd)
        except OSError as error:
            raise storage_error(error, self.path) from None

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __enter__(self) -> "TileStore":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()
