"""Reading image and mask files as plain numpy arrays (PNGs are written by :func:`weaksegtf.io.write_png`).

Every reader returns uint8 arrays in a fixed layout, so the rest of the
package never has to guess: RGB images are ``(H, W, 3)`` and masks are
``(H, W)`` class indices. Anything that cannot be brought to that layout
raises :class:`~weaksegtf.errors.DataError` naming the file, instead of
surfacing later as a ``None`` from OpenCV or a shape error in TensorFlow.
Files are decoded by :func:`weaksegtf.io.decode_image`; masks are read by
:func:`weaksegtf.io.read_label_image`, the one label-image reader.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Union

import cv2
import numpy as np

from weaksegtf.errors import DataError
from weaksegtf.io import IMAGE_SUFFIXES, MASK_SUFFIXES, decode_image, read_label_image
from weaksegtf.io import write_png  # noqa: F401 - the older import path ``weaksegtf.data.images.write_png``

PathLike = Union[str, "os.PathLike[str]"]  # a path string or any path object
__all__ = ["IMAGE_SUFFIXES", "MASK_SUFFIXES", "PathLike", "list_image_files", "natural_key", "read_mask", "read_rgb",
           "write_png"]


def _to_uint8_intensity(array: np.ndarray, path: Path, what: str) -> np.ndarray:
    """Scale an image's intensities to uint8 (16-bit: 65535 -> 255)."""
    if array.dtype == np.uint8:
        return array
    if array.dtype == np.uint16:
        # 257 * 255 == 65535, so this maps the full 16-bit range onto 0..255, rounded.
        return ((array.astype(np.uint32) + 128) // 257).astype(np.uint8)
    if array.dtype == bool:
        return array.astype(np.uint8) * 255
    raise DataError(
        f"{what} {path} has pixel type {array.dtype}; expected 8-bit or 16-bit unsigned integers"
    )


def read_rgb(path: PathLike) -> np.ndarray:
    """Read an image file as RGB.

    Grayscale becomes three equal channels; RGBA (and grey plus alpha) is
    composited over white, the colour of an empty glass slide; 16-bit images
    are scaled to 8 bits.

    Args:
        path: str or path. A PNG, JPEG, TIFF or BMP file.

    Returns:
        uint8 array of shape ``(H, W, 3)``.

    Raises:
        DataError: the file is missing, unreadable or truncated, or has a
            channel count other than 1, 3 or 4.

    Example:
    >>> image = read_rgb("glas-train/images/train_1.png")  # doctest: +SKIP
    >>> image.shape, image.dtype
    ((522, 775, 3), dtype('uint8'))
    """
    path = Path(path)
    array, bgr = decode_image(path, "image")
    array = _to_uint8_intensity(array, path, "image")
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    if array.ndim == 2:
        return np.repeat(array[:, :, None], 3, axis=2)
    if array.ndim != 3 or array.shape[2] not in (3, 4):
        raise DataError(
            f"image {path} has shape {tuple(array.shape)}; expected (H, W) grayscale, "
            f"(H, W, 3) RGB or (H, W, 4) RGBA"
        )
    if bgr:
        code = cv2.COLOR_BGR2RGB if array.shape[2] == 3 else cv2.COLOR_BGRA2RGBA
        array = cv2.cvtColor(np.ascontiguousarray(array), code)
    if array.shape[2] == 4:
        alpha = array[:, :, 3:4].astype(np.float32) / 255.0
        composite = array[:, :, :3].astype(np.float32) * alpha + 255.0 * (1.0 - alpha)
        array = np.rint(composite).astype(np.uint8)
    return np.ascontiguousarray(array)


def read_mask(path: PathLike) -> np.ndarray:
    """Read a mask file as ``(H, W)`` uint8 class indices: :func:`weaksegtf.io.read_label_image`.

    Example:
    >>> mask = read_mask("glas-train/masks/train_1.png")  # doctest: +SKIP
    >>> mask.shape, sorted(set(mask.ravel().tolist()))
    ((522, 775), [0, 255])
    """
    return read_label_image(path, "mask")


def natural_key(name: str) -> tuple[tuple[int, int | str], ...]:
    """Sort key that orders ``train_2`` before ``train_10``.

    Example:
    >>> sorted(["train_10", "train_2"], key=natural_key)
    ['train_2', 'train_10']
    """
    parts = re.split(r"(\d+)", name)
    return tuple((0, int(part)) if part.isdigit() else (1, part) for part in parts if part)


def list_image_files(folder: PathLike, suffixes: tuple[str, ...] = IMAGE_SUFFIXES) -> dict[str, Path]:
    """Image files of a folder, keyed by file stem, in natural order.

    Hidden files and files with other suffixes (``Thumbs.db``, ``README``)
    are skipped.

    Args:
        folder: str or path. The folder to list (not recursive).
        suffixes: tuple of str. Accepted suffixes, lower case with the dot.
            Defaults to :data:`IMAGE_SUFFIXES`.

    Returns:
        ``{stem: path}`` ordered by :func:`natural_key` of the stem.

    Raises:
        DataError: the folder does not exist, or two files share a stem
            (``a.png`` and ``a.jpg``), which would make pairing ambiguous.

    Example:
    >>> list(list_image_files("glas-train/images"))[:3]  # doctest: +SKIP
    ['train_1', 'train_2', 'train_3']
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"folder {folder} does not exist")
    found: dict[str, Path] = {}
    for path in folder.iterdir():
        if path.name.startswith(".") or not path.is_file():
            continue
        if path.suffix.lower() not in suffixes:
            continue
        if path.stem in found:
            raise DataError(
                f"{found[path.stem].name} and {path.name} in {folder} share the name "
                f"{path.stem!r}; expected one file per name"
            )
        found[path.stem] = path
    return {stem: found[stem] for stem in sorted(found, key=natural_key)}
