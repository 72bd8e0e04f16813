"""Reading image and mask files as plain numpy arrays (PNGs are written by :func:`weaksegtf.io.write_png`).

Every reader returns uint8 arrays in a fixed layout, so the rest of the
package never has to guess: RGB images are ``(H, W, 3)`` and masks are
``(H, W)`` class indices. Anything that cannot be brought to that layout
raises :class:`~weaksegtf.errors.DataError` naming the file, instead of
surfacing later as a ``None`` from OpenCV or a shape error in TensorFlow.

OpenCV decodes PNG, JPEG and BMP. TIFF goes to tifffile first, because
OpenCV silently drops samples it does not understand (a 2-sample TIFF comes
back as a single grey channel), so it could not refuse a wrong channel count.
Pillow is the last resort for anything OpenCV rejects.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Union

import cv2
import numpy as np

from weaksegtf.errors import DataError
from weaksegtf.io import write_png  # noqa: F401 - the older import path ``weaksegtf.data.images.write_png``

PathLike = Union[str, "os.PathLike[str]"]  # a path string or any path object

#: Suffixes accepted for RGB images.
IMAGE_SUFFIXES: tuple[str, ...] = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")
#: Suffixes accepted for masks: lossless formats only, since JPEG artefacts
#: would invent class indices along every boundary.
MASK_SUFFIXES: tuple[str, ...] = (".png", ".tif", ".tiff", ".bmp")
_TIFF_SUFFIXES = (".tif", ".tiff")


def _read_tiff(path: Path) -> np.ndarray | None:
    """Decode a TIFF with samples last, or ``None`` if tifffile cannot."""
    import tifffile  # imported here: only TIFF inputs pay for it

    try:
        with tifffile.TiffFile(path) as tif:
            series = tif.series[0]
            array = series.asarray()
            axes = series.axes
    except Exception:  # noqa: BLE001 - any decoder failure falls through to the next reader
        return None
    # Planar TIFFs store samples first ("SYX"); bring them last like OpenCV.
    if array.ndim == 3 and axes[0] in "SC" and axes[1:] == "YX":
        array = np.moveaxis(array, 0, -1)
    return array


def _read_pillow(path: Path) -> np.ndarray:
    from PIL import Image  # imported here: only files OpenCV rejects pay for it

    with Image.open(path) as image:
        image.load()
        return np.asarray(image)


def _decode(path: PathLike, what: str) -> tuple[np.ndarray, bool]:
    """Decode ``path`` into an array and whether its channels are BGR-ordered.

    Raises:
        DataError: the file is missing, is a folder, or no reader can decode it.
    """
    path = Path(path)
    if not path.exists():
        raise DataError(f"{what} {path} does not exist")
    if not path.is_file():
        raise DataError(f"{what} {path} is not a file")
    if path.suffix.lower() in _TIFF_SUFFIXES:
        array = _read_tiff(path)
        if array is not None:
            return array, False
    try:
        # imdecode(fromfile) rather than imread: it also handles non-ASCII paths.
        array = cv2.imdecode(np.fromfile(path, dtype=np.uint8), cv2.IMREAD_UNCHANGED)
    except cv2.error:
        array = None
    if array is not None:
        return array, True
    try:
        return _read_pillow(path), False
    except Exception as error:  # noqa: BLE001 - report every decoder failure the same way
        size_bytes = path.stat().st_size
        raise DataError(
            f"cannot read {what} {path} ({size_bytes} bytes): {error}; "
            f"expected a complete image file ({', '.join(IMAGE_SUFFIXES)})"
        ) from None


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
    array, bgr = _decode(path, "image")
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
    """Read a mask file as class indices.

    Palette PNGs give their palette indices; a 3-channel mask is accepted
    when its channels are equal (a grey mask saved as RGB). Values are not
    rescaled: a 16-bit mask must already hold values up to 255.

    Args:
        path: str or path. A PNG, TIFF or BMP file.

    Returns:
        uint8 array of shape ``(H, W)``.

    Raises:
        DataError: the file is missing or unreadable, has channels that
            differ, or holds values above 255.

    Example:
    >>> mask = read_mask("glas-train/masks/train_1.png")  # doctest: +SKIP
    >>> mask.shape, sorted(set(mask.ravel().tolist()))
    ((522, 775), [0, 255])
    """
    path = Path(path)
    array: np.ndarray | None = None
    if path.suffix.lower() == ".png" and path.is_file():
        # OpenCV expands a palette PNG into colours; the indices are the classes.
        from PIL import Image

        try:
            with Image.open(path) as image:
                if image.mode == "P":
                    image.load()
                    array = np.asarray(image)
        except Exception:  # noqa: BLE001 - let the general path report the failure
            array = None
    if array is None:
        array, _ = _decode(path, "mask")
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    if array.ndim == 3 and array.shape[2] == 3:
        if not (np.array_equal(array[:, :, 0], array[:, :, 1])
                and np.array_equal(array[:, :, 0], array[:, :, 2])):
            raise DataError(
                f"mask {path} has 3 channels that differ; expected one channel of class "
                f"indices (or 3 equal channels)"
            )
        array = array[:, :, 0]
    if array.ndim != 2:
        raise DataError(
            f"mask {path} has shape {tuple(array.shape)}; expected (H, W) class indices"
        )
    if array.dtype == bool:
        array = array.astype(np.uint8)
    if array.dtype != np.uint8:
        if not np.issubdtype(array.dtype, np.integer):
            raise DataError(f"mask {path} has pixel type {array.dtype}; expected integers")
        low, high = int(array.min()), int(array.max())
        if low < 0 or high > 255:
            raise DataError(
                f"mask {path} holds values {low}..{high}; expected class indices in 0..255"
            )
        array = array.astype(np.uint8)
    return np.ascontiguousarray(array)


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
