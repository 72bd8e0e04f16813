"""Plain images (PNG, JPEG, BMP, flat TIFF) as single-level slides.

The whole image is decoded into memory, so this back-end is for the image
sizes that PNG and JPEG realistically hold; tiled pyramidal files go to
:class:`~weaksegtf.slides.openslide_reader.OpenSlideReader`.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from weaksegtf.errors import SlideError
from weaksegtf.slides.array_reader import ArrayReader
from weaksegtf.slides.image_header import check_pixel_limit
from weaksegtf.slides.slide_reader import missing_mpp_error, mpp_from_resolution

#: Suffixes handled by :class:`ImageReader`.
PLAIN_IMAGE_SUFFIXES: tuple[str, ...] = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
_TIFF_SUFFIXES = (".tif", ".tiff")


def _to_uint8(array: np.ndarray, path: Path) -> np.ndarray:
    if array.dtype == np.uint8:
        return array
    if array.dtype == np.uint16:
        # 257 * 255 == 65535: the full 16-bit range maps onto 0..255.
        return ((array.astype(np.uint32) + 128) // 257).astype(np.uint8)
    if array.dtype == bool:
        return array.astype(np.uint8) * 255
    raise SlideError(f"image {path} has pixel type {array.dtype}; expected 8- or 16-bit unsigned")


def _read_tiff(path: Path) -> tuple[np.ndarray, float | None]:
    """Decode the first image of a TIFF and its mpp from resolution tags."""
    import tifffile

    with tifffile.TiffFile(path) as tif:
        page = tif.pages[0]
        array = page.asarray()
        tags = page.tags
        mpp = None
        if "XResolution" in tags and "ResolutionUnit" in tags:
            numerator, denominator = tags["XResolution"].value
            unit = tags["ResolutionUnit"].value
            unit_name = getattr(unit, "name", str(unit))
            if denominator:
                mpp = mpp_from_resolution(numerator / denominator, unit_name)
        planar = page.planarconfig == tifffile.PLANARCONFIG.SEPARATE
    if planar and array.ndim == 3:
        array = np.moveaxis(array, 0, -1)
    return array, mpp


def read_plain_image(path: Path | str, max_pixels: int | None = None) -> tuple[np.ndarray, float | None]:
    """Decode a plain image file to RGB uint8, with the mpp its tags give.

    The header's declared size is checked against ``max_pixels`` before any
    pixel is decoded (:func:`~weaksegtf.slides.image_header.check_pixel_limit`).

    Args:
        path: str or path. The image.
        max_pixels: int, optional. Largest image decoded. Defaults to ``None``:
            :data:`~weaksegtf.slides.image_header.DEFAULT_MAX_PIXELS`.

    Returns:
        ``(image, mpp)``; ``mpp`` is ``None`` unless a TIFF carries plausible
        resolution tags (PNG and JPEG density fields are not trusted: they are
        almost always a 72 or 96 dpi default).

    Raises:
        SlideError: missing, truncated, undecodable or too large file.
    """
    path = Path(path)
    if not path.is_file():
        raise SlideError(f"image {path} does not exist or is not a file")
    check_pixel_limit(path, max_pixels)
    mpp: float | None = None
    array: np.ndarray | None = None
    error: Exception | None = None
    if path.suffix.lower() in _TIFF_SUFFIXES:
        try:
            array, mpp = _read_tiff(path)
        except Exception as exc:  # noqa: BLE001 - any decoder failure is reported below
            error = exc
    else:
        try:
            decoded = cv2.imdecode(np.fromfile(path, dtype=np.uint8), cv2.IMREAD_UNCHANGED)
        except cv2.error as exc:
            decoded, error = None, exc
        if decoded is not None:
            if decoded.ndim == 3 and decoded.shape[2] in (3, 4):
                order = [2, 1, 0, 3][: decoded.shape[2]]
                decoded = decoded[:, :, order]
            array = decoded
    if array is None:
        detail = f": {error}" if error else ""
        raise SlideError(
            f"cannot decode image {path} ({path.stat().st_size} bytes){detail}; the file is "
            f"corrupt, truncated or not an image. Expected a whole-slide file or one of "
            f"{', '.join(PLAIN_IMAGE_SUFFIXES)}"
        )
    return _to_uint8(array, path), mpp


class ImageReader(ArrayReader):
    """A plain image file as a one-level slide.

    Args:
        path: str or path. PNG, JPEG, BMP or (untiled) TIFF file.
        mpp: float, optional. Microns per pixel; overrides the file's TIFF
            resolution tags. Defaults to ``None`` (use the tags).
        max_pixels: int, optional. Largest image decoded (checked on the
            header first). Defaults to ``None``: 2**28 pixels.

    Raises:
        SlideError: the file cannot be decoded or is over ``max_pixels``, or
            it has no resolution and no ``mpp`` was given.

    Example:
    >>> with ImageReader("train_1.png", mpp=0.62) as image:  # doctest: +SKIP
    ...     image.dimensions
    (775, 522)
    """

    def __init__(self, path: Path | str, mpp: float | None = None, max_pixels: int | None = None) -> None:
        path = Path(path)
        image, tag_mpp = read_plain_image(path, max_pixels)
        if mpp is None:
            mpp = tag_mpp
        if mpp is None:
            raise missing_mpp_error(
                path, "a plain image without TIFF resolution tags (centimeter or inch)"
            )
        super().__init__(image, mpp, path=path)
