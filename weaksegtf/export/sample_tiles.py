"""Input tiles for parity checks and int8 calibration: crops of real images, or random pixels.

numpy and the image readers only (no TensorFlow), so the same tiles can feed
Keras, onnxruntime and TF Serving.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import numpy.typing as npt

from weaksegtf.data.images import IMAGE_SUFFIXES, PathLike, list_image_files, read_rgb
from weaksegtf.errors import ConfigError, DataError

Shape = tuple[int, int]
FloatBatch = npt.NDArray[np.float32]
_PAD_VALUE = 255  # white, the colour of empty glass


def image_files(folder: PathLike, what: str = "sample") -> list[Path]:
    """Image files of ``folder``, or of ``folder/images`` (a MaskSet or GlaS folder).

    Raises:
        DataError: the folder is missing or holds no images.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"{what} folder {folder} does not exist; expected a folder of RGB images or tiles")
    files = list(list_image_files(folder).values())
    if not files and (folder / "images").is_dir():
        files = list(list_image_files(folder / "images").values())
    if not files:
        raise DataError(
            f"{what} folder {folder} holds no images (nor does {folder / 'images'}); expected files ending in "
            f"{', '.join(IMAGE_SUFFIXES)}"
        )
    return files


def check_shapes(shapes: Sequence[Shape], multiple_px: int = 16) -> list[Shape]:
    """``[(height_px, width_px), ...]``, each a positive multiple of ``multiple_px``."""
    checked = [(int(h), int(w)) for h, w in shapes]
    bad = [s for s in checked if min(s) <= 0 or s[0] % multiple_px or s[1] % multiple_px]
    if not checked or bad:
        raise ConfigError(f"parity tile shapes {checked} must be (height, width) multiples of {multiple_px}")
    return checked


class TileSource:
    """Deterministic batches of RGB tiles, as float32 in [0, 255].

    Crops are taken at random positions of images cycled in a shuffled order
    (images smaller than a crop are padded with white); without a folder the
    tiles are uniform random pixels.

    Args:
        folder: str or path, optional. Images to crop from (see :func:`image_files`).
            Defaults to ``None`` (random pixels).
        seed: int. Seed of image order and crop positions. Defaults to ``0``.
        what: str. Name of the folder in error messages. Defaults to ``"sample"``.

    Example:
    >>> TileSource(None, seed=0).batch(2, 32, 48).shape
    (2, 32, 48, 3)
    """

    def __init__(self, folder: PathLike | None = None, seed: int = 0, what: str = "sample"):
        self.folder = None if folder is None else Path(folder)
        self.seed = seed
        self._rng = np.random.default_rng(seed)
        self._files = [] if folder is None else image_files(folder, what)
        self._order = list(self._rng.permutation(len(self._files)))
        self._next = 0
        self._cache: dict[int, np.ndarray] = {}

    @property
    def description(self) -> str:
        return "random pixels" if self.folder is None else f"real tiles from {self.folder}"

    def batch(self, batch_size: int, height_px: int, width_px: int) -> FloatBatch:
        if self.folder is None:
            return self._rng.uniform(0, 255, (batch_size, height_px, width_px, 3)).astype(np.float32)
        return np.stack([self._crop(height_px, width_px) for _ in range(batch_size)]).astype(np.float32)

    def _crop(self, height_px: int, width_px: int) -> np.ndarray:
        index = self._order[self._next % len(self._order)]
        self._next += 1
        if index not in self._cache:
            self._cache[index] = read_rgb(self._files[index])
        image = self._cache[index]
        pad_h, pad_w = max(0, height_px - image.shape[0]), max(0, width_px - image.shape[1])
        if pad_h or pad_w:
            image = np.pad(image, ((0, pad_h), (0, pad_w), (0, 0)), constant_values=_PAD_VALUE)
        y = int(self._rng.integers(0, image.shape[0] - height_px + 1))
        x = int(self._rng.integers(0, image.shape[1] - width_px + 1))
        return image[y:y + height_px, x:x + width_px]
