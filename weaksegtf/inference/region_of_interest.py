"""A user's region of interest for a slide: a mask image or GeoJSON polygons, as a boolean raster."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import numpy.typing as npt

from weaksegtf.errors import DataError

#: Suffixes read as GeoJSON polygons; anything else is read as a mask image.
GEOJSON_SUFFIXES = (".geojson", ".json")


def roi_path(pattern: str | Path, slide_path: Path | None) -> Path:
    """The ROI file of one slide: ``{stem}`` and ``{name}`` in ``pattern`` become the slide's stem and file name."""
    text = str(pattern)
    if slide_path is not None:
        text = text.replace("{stem}", slide_path.stem).replace("{name}", slide_path.name)
    return Path(text)


def _ring(ring: np.ndarray, scale: float) -> np.ndarray:
    """A checked ``(n, 2)`` ring in level-0 pixels as cv2.fillPoly points with 4 fractional bits."""
    return np.round(np.asarray(ring, np.float64) / scale * 16).astype(np.int32)


def roi_mask(
    path: Path | str,
    shape_px: tuple[int, int],
    downsample: float,
    max_pixels: int | None = None,
) -> npt.NDArray[np.bool_]:
    """The region of interest as a ``(height, width)`` boolean raster.

    Args:
        path: str or path. A mask image (PNG, TIFF, JPEG; non-zero inside)
            covering the whole slide at any resolution (it is resized to
            ``shape_px`` with nearest neighbour), or a GeoJSON file whose
            polygons (any classification, QuPath's export) are in level-0 pixels.
        shape_px: (int, int). ``(height, width)`` of the raster.
        downsample: float. Level-0 pixels per raster pixel (for GeoJSON).
        max_pixels: int, optional. Pixel limit of a mask image. Defaults to
            ``None``: :data:`weaksegtf.slides.image_header.DEFAULT_MAX_PIXELS`.

    Raises:
        DataError: missing, undecodable or malformed file, or no region in it.
    """
    from weaksegtf.slides.image_reader import read_plain_image

    path = Path(path)
    if not path.is_file():
        raise DataError(f"region of interest {path} does not exist or is not a file; expected a mask image or "
                        f"a GeoJSON file")
    height, width = shape_px
    if path.suffix.lower() in GEOJSON_SUFFIXES:
        from weaksegtf.preprocessing.geojson_rasterizer import read_geojson

        try:
            features = read_geojson(path)
        except (KeyError, TypeError, IndexError, AttributeError) as error:
            raise DataError(f"GeoJSON {path} is malformed ({type(error).__name__}: {error}); expected QuPath "
                            f"features with Polygon or MultiPolygon geometry") from None
        mask = np.zeros((height, width), np.uint8)
        for _, polygons in features:
            for polygon in polygons:
                if not polygon:
                    raise DataError(f"GeoJSON {path} has a polygon with no ring; expected a list of rings")
                rings = [_ring(ring, downsample) for ring in polygon]
                cv2.fillPoly(mask, rings[:1], 1, lineType=cv2.LINE_8, shift=4)
                if len(rings) > 1:
                    cv2.fillPoly(mask, rings[1:], 0, lineType=cv2.LINE_8, shift=4)
        if not mask.any():
            raise DataError(f"GeoJSON {path} holds no polygon inside the slide; expected the region to analyse "
                            f"in level-0 pixels")
        return mask.astype(bool)
    from weaksegtf.errors import SlideError

    try:
        image, _ = read_plain_image(path, max_pixels=max_pixels)
    except SlideError as error:
        raise DataError(str(error).replace("image ", "region of interest ", 1)) from None
    grey = image.max(axis=2) if image.ndim == 3 else image
    mask = cv2.resize((grey > 0).astype(np.uint8), (width, height), interpolation=cv2.INTER_NEAREST)
    if not mask.any():
        raise DataError(f"mask image {path} is all zero; expected non-zero pixels where the slide is analysed")
    return mask.astype(bool)
