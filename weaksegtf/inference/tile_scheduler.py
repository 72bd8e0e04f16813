"""Where the tiles of a slide go at the inference resolution, and which of them hold tissue.

A pure function of sizes (no I/O): :func:`plan_tiles` lays overlapping tiles
over the slide and splits the slide into disjoint *owned* boxes, one per tile,
whose borders run through the middle of each overlap. Stitching copies each
tile's owned box only (a centre crop), so every output pixel comes from the
tile in which it is furthest from a tile border, and at least
``overlap_px // 2`` pixels of context surround it on every side that is not
the slide's own edge.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from weaksegtf.constants import SIZE_MULTIPLE
from weaksegtf.errors import ConfigError
from weaksegtf.tiling import tile_origins

IntArray = npt.NDArray[np.int64]

#: Tile sides, overlaps and tile origins are multiples of this: the exported
#: models downsample by 16, so a tile that starts on this grid sees the same
#: pixel phase as a whole-image forward pass (translation equivariance).
SIZE_MULTIPLE_PX = SIZE_MULTIPLE


def _cuts(origins: IntArray, tile_size_px: int, length_px: int) -> IntArray:
    """Owned-interval borders along one axis: 0, the middle of each overlap, then ``length_px``."""
    middles = (origins[:-1] + tile_size_px + origins[1:]) // 2
    cuts = np.concatenate([[0], middles, [length_px]]).astype(np.int64)
    return np.minimum(cuts, length_px)


@dataclass(frozen=True)
class TilePlan:
    """Tiles over a ``width_px`` x ``height_px`` image and the box each one owns.

    Tiles are numbered row-major: tile ``i`` is in row ``i // n_cols`` and
    column ``i % n_cols``. Build it with :func:`plan_tiles`.

    Args:
        width_px: int. Image width at the inference resolution.
        height_px: int. Image height at the inference resolution.
        tile_size_px: int. Tile side fed to the model.
        overlap_px: int. Smallest overlap of neighbouring tiles.
        xs: int64 array. Left edge of each tile column.
        ys: int64 array. Top edge of each tile row.
        x_cuts: int64 array, ``len(xs) + 1``. Column ``c`` owns ``x_cuts[c]:x_cuts[c + 1]``.
        y_cuts: int64 array, ``len(ys) + 1``. Row ``r`` owns ``y_cuts[r]:y_cuts[r + 1]``.
    """

    width_px: int
    height_px: int
    tile_size_px: int
    overlap_px: int
    xs: IntArray
    ys: IntArray
    x_cuts: IntArray
    y_cuts: IntArray

    @property
    def n_cols(self) -> int:
        return len(self.xs)

    @property
    def n_rows(self) -> int:
        return len(self.ys)

    @property
    def n_tiles(self) -> int:
        return self.n_cols * self.n_rows

    def row_col(self, index: int) -> tuple[int, int]:
        return divmod(int(index), self.n_cols)

    def origin(self, index: int) -> tuple[int, int]:
        """``(x, y)`` of the tile's top-left corner."""
        row, col = self.row_col(index)
        return int(self.xs[col]), int(self.ys[row])

    def owned_box(self, index: int) -> tuple[int, int, int, int]:
        """``(x0, y0, x1, y1)`` of the pixels this tile writes (may be empty)."""
        row, col = self.row_col(index)
        return (int(self.x_cuts[col]), int(self.y_cuts[row]),
                int(self.x_cuts[col + 1]), int(self.y_cuts[row + 1]))

    def owned_boxes(self) -> IntArray:
        """``(n_tiles, 4)`` array of ``(x0, y0, x1, y1)``, row-major."""
        x0, y0 = np.meshgrid(self.x_cuts[:-1], self.y_cuts[:-1])
        x1, y1 = np.meshgrid(self.x_cuts[1:], self.y_cuts[1:])
        return np.stack([a.ravel() for a in (x0, y0, x1, y1)], axis=1).astype(np.int64)

    def as_dict(self) -> dict:
        """The geometry as plain JSON values (recorded in checkpoints and summaries)."""
        return {
            "width_px": self.width_px, "height_px": self.height_px,
            "tile_size_px": self.tile_size_px, "overlap_px": self.overlap_px,
            "n_cols": self.n_cols, "n_rows": self.n_rows,
        }


def plan_tiles(width_px: int, height_px: int, tile_size_px: int, overlap_px: int) -> TilePlan:
    """Overlapping tiles on the 16-px grid, and the disjoint box each one owns.

    The image is padded (white, by the reader) to a multiple of 16 px and at
    least one tile; tiles start every ``tile_size_px - overlap_px`` and the last
    one of each axis is flush with the padded edge, so every origin is a
    multiple of 16. Owned boxes tile the unpadded image exactly.

    Args:
        width_px: int. Image width at the inference resolution.
        height_px: int. Image height at the inference resolution.
        tile_size_px: int. Tile side, a positive multiple of 16.
        overlap_px: int. Overlap, a multiple of 16 in ``[0, tile_size_px)``.

    Raises:
        ConfigError: a size that is not a multiple of 16 or out of range.

    Example:
    >>> plan = plan_tiles(200, 100, 64, 32)
    >>> plan.xs.tolist(), plan.x_cuts.tolist()
    ([0, 32, 64, 96, 128, 144], [0, 48, 80, 112, 144, 168, 200])
    """
    if width_px <= 0 or height_px <= 0:
        raise ConfigError(f"image size must be positive, got {width_px} x {height_px} px")
    if tile_size_px <= 0 or tile_size_px % SIZE_MULTIPLE_PX:
        raise ConfigError(f"tile_size_px must be a positive multiple of {SIZE_MULTIPLE_PX}, got {tile_size_px}")
    if not 0 <= overlap_px < tile_size_px or overlap_px % SIZE_MULTIPLE_PX:
        raise ConfigError(
            f"overlap_px must be a multiple of {SIZE_MULTIPLE_PX} in [0, {tile_size_px}) for "
            f"{tile_size_px}-px tiles, got {overlap_px}"
        )
    canvas = [max(tile_size_px, -(-n // SIZE_MULTIPLE_PX) * SIZE_MULTIPLE_PX) for n in (width_px, height_px)]
    stride = tile_size_px - overlap_px
    xs = tile_origins(canvas[0], tile_size_px, stride)
    ys = tile_origins(canvas[1], tile_size_px, stride)
    return TilePlan(
        width_px=int(width_px), height_px=int(height_px),
        tile_size_px=int(tile_size_px), overlap_px=int(overlap_px),
        xs=xs, ys=ys,
        x_cuts=_cuts(xs, tile_size_px, width_px), y_cuts=_cuts(ys, tile_size_px, height_px),
    )


def tissue_tiles(
    plan: TilePlan,
    tissue_fractions_level0,
    level0_px_per_px: float,
    min_tissue_fraction: float = 0.0,
) -> npt.NDArray[np.bool_]:
    """Which tiles to run: those whose owned box holds more than ``min_tissue_fraction`` tissue.

    Args:
        plan: TilePlan. The tiles.
        tissue_fractions_level0: callable. ``TissueMask.tissue_fractions``:
            ``(N, 4)`` boxes ``(x, y, width, height)`` in level-0 pixels to
            tissue fractions.
        level0_px_per_px: float. Level-0 pixels per inference pixel.
        min_tissue_fraction: float. A tile whose owned box has at most this
            tissue fraction is skipped. Defaults to ``0.0`` (skip only tiles
            with no tissue at all).

    Returns:
        bool array ``(n_tiles,)``; ``False`` tiles are background without
        running the model. Tiles owning no pixels are ``False``.
    """
    boxes = plan.owned_boxes().astype(np.float64)
    sizes = boxes[:, 2:] - boxes[:, :2]
    level0 = np.concatenate([boxes[:, :2], sizes], axis=1) * float(level0_px_per_px)
    fractions = np.asarray(tissue_fractions_level0(level0), dtype=np.float64)
    return (fractions > min_tissue_fraction) & (sizes > 0).all(axis=1)
