"""The small outputs of a slide: overlay thumbnail, QuPath GeoJSON, JSON summary; all written atomically."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Iterator, Sequence

import cv2
import numpy as np
import numpy.typing as npt

from weaksegtf.inference.mask_polygons import mask_polygons
from weaksegtf.visualize import overlay


def partial_path(path: Path | str) -> Path:
    """The temporary sibling an output is written to before its atomic rename."""
    path = Path(path)
    return path.with_name(f".{path.name}.partial")


def publish(temporary: Path | str, final: Path | str) -> Path:
    """Rename a finished temporary file to its final name (atomic on one file system)."""
    os.replace(temporary, final)
    return Path(final)


def write_text_atomic(path: Path | str, text: str) -> Path:
    """Write ``text`` to ``path`` so that readers see the old file or the whole new one."""
    temporary = partial_path(path)
    temporary.write_text(text, encoding="utf-8")
    return publish(temporary, path)


def write_overlay_png(
    path: Path | str,
    thumbnail: npt.NDArray[np.uint8],
    labels: npt.NDArray[np.uint8],
    class_colors: Sequence[Sequence[int]],
    alpha: float = 0.45,
) -> Path:
    """The slide thumbnail with class colours over it (class 0 left as it is), as PNG.

    Args:
        path: str or path. The ``.png`` to write.
        thumbnail: uint8 ``(h, w, 3)`` RGB thumbnail of the slide.
        labels: uint8 class indices of the whole slide at any size (resized
            with nearest neighbour to the thumbnail).
        class_colors: sequence of (r, g, b). Colour of each class.
        alpha: float. Opacity of the colours. Defaults to 0.45.
    """
    height, width = thumbnail.shape[:2]
    small = cv2.resize(labels, (width, height), interpolation=cv2.INTER_NEAREST)
    picture = overlay(thumbnail, small, len(class_colors), alpha=alpha, colors=[tuple(c) for c in class_colors])
    temporary = partial_path(path)
    ok, encoded = cv2.imencode(".png", cv2.cvtColor(picture, cv2.COLOR_RGB2BGR))
    if not ok:
        raise OSError(f"OpenCV could not encode the overlay {path} as PNG")
    temporary.write_bytes(encoded.tobytes())
    return publish(temporary, path)


def label_features(
    labels: npt.NDArray[np.uint8],
    class_names: Sequence[str],
    class_colors: Sequence[Sequence[int]],
    level0_px_per_px: float,
    skip_classes: Sequence[int] = (0,),
) -> Iterator[dict[str, Any]]:
    """QuPath annotation features: one polygon (with holes) per connected region of each class.

    Coordinates are level-0 pixels: a label pixel ``(i, j)`` covers
    ``[j, j + 1) x [i, i + 1)`` times ``level0_px_per_px``, which is how QuPath
    places pixels too (a pixel's centre at +0.5). Features are generated one
    at a time, so a slide with many regions is never held as Python objects.
    """
    for index, (name, color) in enumerate(zip(class_names, class_colors)):
        if index in skip_classes:
            continue
        classification = {"name": name, "color": [int(v) for v in color]}
        for polygon in mask_polygons(labels == index):
            rings = []
            for ring in polygon:
                closed = np.concatenate([ring, ring[:1]]).astype(np.float64) * level0_px_per_px
                rings.append(np.round(closed, 2).tolist())
            yield {
                "type": "Feature",
                "geometry": {"type": "Polygon", "coordinates": rings},
                "properties": {"objectType": "annotation", "classification": classification, "isLocked": False},
            }


def write_geojson(
    path: Path | str,
    labels: npt.NDArray[np.uint8],
    class_names: Sequence[str],
    class_colors: Sequence[Sequence[int]],
    level0_px_per_px: float,
    skip_classes: Sequence[int] = (0,),
) -> int:
    """Write a QuPath-compatible GeoJSON FeatureCollection of the predicted regions.

    Features are written as they are traced (the file is renamed into place
    when complete), so memory stays at one class's polygons.

    Args:
        path: str or path. The ``.geojson`` to write.
        labels: uint8 ``(H, W)`` class indices.
        class_names: sequence of str. Name of each class (QuPath classification).
        class_colors: sequence of (r, g, b). Colour of each class.
        level0_px_per_px: float. Level-0 slide pixels per label pixel.
        skip_classes: sequence of int. Classes left out. Defaults to ``(0,)``
            (background).

    Returns:
        The number of features written.

    Example:
    >>> write_geojson("cells.geojson", labels, ["background", "gland"],  # doctest: +SKIP
    ...               [(240, 240, 240), (220, 40, 40)], level0_px_per_px=4.0)
    """
    temporary = partial_path(path)
    count = 0
    with open(temporary, "w", encoding="utf-8") as handle:
        handle.write('{"type":"FeatureCollection","features":[')
        for feature in label_features(labels, class_names, class_colors, level0_px_per_px, skip_classes):
            handle.write(("," if count else "") + json.dumps(feature, separators=(",", ":")))
            count += 1
        handle.write("]}\n")
    publish(temporary, path)
    return count
