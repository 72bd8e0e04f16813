"""``SlideTiles``: how to read and prepare the tiles of a plan, the same way in this process or in a reader process."""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import numpy.typing as npt

from weaksegtf.inference.tile_scheduler import TilePlan
from weaksegtf.slides.slide_reader import SlideReader

Tiles = npt.NDArray[np.uint8]


@dataclass(frozen=True)
class SlideTiles:
    """The recipe for the model's input tiles of one slide: where each tile is, and how a batch is prepared.

    It holds no open file, so it pickles cheaply to reader processes
    (:class:`~weaksegtf.inference.reader_processes.ReaderProcesses`), which
    then read exactly the pixels the reading threads of this process would:
    one recipe for both is what keeps their outputs byte-identical.

    Args:
        plan: TilePlan. Tiles at the inference resolution.
        mpp: float. Inference resolution, microns per pixel.
        level0_px_per_px: float. Level-0 pixels per inference pixel (``mpp / slide.mpp``).
        normalizer: MacenkoNormalizer, optional. The model's stain reference,
            applied to each batch. Defaults to ``None``.

    Example:
    >>> tiles = SlideTiles(plan, mpp=2.0, level0_px_per_px=4.0)  # doctest: +SKIP
    >>> batch = tiles.read_batch(slide, [0, 1, 2])  # doctest: +SKIP
    """

    plan: TilePlan
    mpp: float
    level0_px_per_px: float
    normalizer: Any = None

    def location(self, index: int) -> tuple[int, int]:
        """Level-0 ``(x, y)`` of tile ``index``'s top-left corner."""
        x, y = self.plan.origin(index)
        return int(round(x * self.level0_px_per_px)), int(round(y * self.level0_px_per_px))

    def read(self, slide: SlideReader, index: int) -> Tiles:
        """Tile ``index`` as uint8 RGB ``(T, T, 3)`` at ``mpp`` (not yet prepared)."""
        size = (self.plan.tile_size_px, self.plan.tile_size_px)
        return slide.read_at_mpp(self.location(index), size, self.mpp)

    def prepare(self, tiles: Tiles) -> Tiles:
        """A uint8 batch ``(B, T, T, 3)`` as the model takes it: stain-normalised when the model has a reference."""
        if self.normalizer is None:
            return tiles
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # unstained (background) tiles are left as they are
            return self.normalizer.transform(tiles)

    def read_batch(self, slide: SlideReader, indices: Sequence[int]) -> Tiles:
        """Tiles ``indices``, read one after another and prepared as one batch."""
        return self.prepare(np.stack([self.read(slide, int(index)) for index in indices]))
