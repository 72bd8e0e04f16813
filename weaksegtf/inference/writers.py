"""The small outputs of a slide: overlay thumbnail and QuPath GeoJSON, each written under a temporary name.

Both writers leave the finished file at a temporary path (from
:func:`~weaksegtf.io.temporary_path`) and return it; the
caller renames every output into place once all of them are complete, so a
full disk or a kill never leaves half of a slide's outputs.
"""

from __future__ import annotations

import json
import math
import uuid
from pathlib import Path
from typing import Any, Iterator, Sequence

import cv2
import numpy as np
import numpy.typing as npt

from weaksegtf.inference.mask_polygons import label_regions, ring_area
from weaksegtf.io import discard, open_new
from weaksegtf.visualize import overlay

#: QuPath's name for an object's area measurement.
AREA_MEASUREMENT = "Area µm^2"
#: Mean probability of the object's class over its pixels (only with probabilities).
PROBABILITY_MEASUREMENT = "Mean probability"


def write_overlay_png(
    path: Path | str,
    thumbnail: npt.NDArray[np.uint8],
    labels: npt.NDArray[np.uint8],
    class_colors: Sequence[Sequence[int]],
    alpha: float = 0.45,
) -> Path:
    """The slide thumbnail with class colours over it (class 0 left as it is), as PNG.

    Args:
        path: str or path. The ``.png`` to write; it must not exist (a temporary name).
        thumbnail: uint8 ``(h, w, 3)`` RGB thumbnail of the slide.
        labels: uint8 class indices of the whole slide at any size (resized
            with nearest neighbour to the thumbnail).
        class_colors: sequence of (r, g, b). Colour of each class.
        alpha: float. Opacity of the colours. Defaults to 0.45.
    """
    height, width = thumbnail.shape[:2]
    small = cv2.resize(labels, (width, height), interpolation=cv2.INTER_NEAREST)
    picture = overlay(thumbnail, small, len(class_colors), alpha=alpha, colors=[tuple(c) for c in class_colors])
    ok, encoded = cv2.imencode(".png", cv2.cvtColor(picture, cv2.COLOR_RGB2BGR))
    if not ok:
        raise OSError(f"OpenCV could not encode the overlay {path} as PNG")
    with open_new(path) as handle:
        handle.write(encoded.tobytes())
    return Path(path)


def label_features(
    labels: npt.NDArray[np.uint8],
    class_names: Sequence[str],
    class_colors: Sequence[Sequence[int]],
    level0_px_per_px: float,
    skip_classes: Sequence[int] = (0,),
    slide_size_px: tuple[int, int] | None = None,
    slide_mpp: float | None = None,
    probabilities: Sequence[npt.NDArray[np.uint8]] | None = None,
    id_seed: str = "",
    simplify_px: float = 0.0,
) -> Iterator[dict[str, Any]]:
    """QuPath annotation features: one valid polygon (with holes) per 4-connected region of each class.

    Coordinates are level-0 pixels: a label pixel ``(i, j)`` covers
    ``[j, j + 1) x [i, i + 1)`` times ``level0_px_per_px``, which is how QuPath
    places pixels too (a pixel's centre at +0.5). The label map's last row and
    column reach past the slide's edge (the slide is rarely a whole number of
    label pixels), so coordinates are clipped to ``slide_size_px``: only the
    last grid line moves, which keeps every polygon valid. Features are
    generated one at a time, so a slide with many regions is never held as
    Python objects.

    Each feature has a UUID ``id`` (derived from ``id_seed`` and its position,
    so a rerun writes the same file) and ``measurements``: its area in µm²
    (with ``slide_mpp``) and, given ``probabilities`` (uint8 ``round(255 p)``
    per class at the size of ``labels``), the mean probability of its class.

    With ``simplify_px`` > 0 (level-0 pixels), each polygon is simplified by
    Douglas-Peucker within that distance while keeping it valid (shapely's
    ``simplify(..., preserve_topology=True)``): fewer vertices, the pixel
    staircase smoothed, no vertex moved by more than the tolerance. Each
    polygon is simplified on its own, so neighbouring regions of two classes
    may overlap or part by up to the tolerance along their shared edge. A
    polygon whose simplification would be empty or invalid is kept as traced.
    ``Area µm^2`` is the area of the polygon as written.
    """
    if not (math.isfinite(simplify_px) and simplify_px >= 0):
        raise ValueError(f"simplify_px must be a distance >= 0 in level-0 pixels, got {simplify_px!r}")
    width0, height0 = slide_size_px if slide_size_px is not None else (math.inf, math.inf)
    limit = np.array([width0, height0], np.float64)
    decimals = max(2, math.ceil(-math.log10(level0_px_per_px)) + 2) if level0_px_per_px > 0 else 2
    classes = [c for c in range(len(class_names)) if c not in skip_classes]
    values = None
    if probabilities is not None:
        values = [probabilities[c] if c in classes else None for c in range(len(class_names))]
    classification = [{"name": name, "color": [int(v) for v in color]}
                      for name, color in zip(class_names, class_colors)]
    namespace = uuid.uuid5(uuid.NAMESPACE_URL, f"weaksegtf:{id_seed}")
    for number, region in enumerate(label_regions(labels, classes, values)):
        rings, area_px = [], 0.0
        for k, ring in enumerate(region.polygon):
            corners = np.round(np.clip(ring * level0_px_per_px, 0.0, limit), decimals)
            area_px += ring_area(corners) * (1 if k == 0 else -1)  # the area of the polygon as written
            rings.append(np.concatenate([corners, corners[:1]]).tolist())
        if simplify_px > 0:
            rings, area_px = _simplified(rings, area_px, simplify_px, decimals)
        measurements: dict[str, float] = {}
        if slide_mpp is not None:
            measurements[AREA_MEASUREMENT] = round(area_px * slide_mpp**2, 3)
        if region.mean_values is not None:
            measurements[PROBABILITY_MEASUREMENT] = round(float(region.mean_values[region.class_index]) / 255.0, 4)
        properties: dict[str, Any] = {"objectType": "annotation",
                                      "classification": classification[region.class_index], "isLocked": False}
        if measurements:
            properties["measurements"] = measurements
        yield {
            "type": "Feature", "id": str(uuid.uuid5(namespace, str(number))),
            "geometry": {"type": "Polygon", "coordinates": rings}, "properties": properties,
        }


def _simplified(rings: list, area_px: float, tolerance_px: float, decimals: int) -> tuple[list, float]:
    """``(rings, area)`` of a closed-ring polygon simplified within ``tolerance_px``, or as given if that fails."""
    import shapely

    simple = shapely.Polygon(rings[0], rings[1:]).simplify(tolerance_px, preserve_topology=True)
    if simple.is_empty or simple.geom_type != "Polygon":
        return rings, area_px
    simple = shapely.set_precision(simple, 10.0**-decimals)  # snapped to the written grid, kept valid
    if simple.is_empty or simple.geom_type != "Polygon" or not simple.is_valid:
        return rings, area_px
    out = [np.round(np.asarray(simple.exterior.coords), decimals).tolist()]
    out += [np.round(np.asarray(hole.coords), decimals).tolist() for hole in simple.interiors]
    return out, float(simple.area)


def write_geojson(
    path: Path | str,
    labels: npt.NDArray[np.uint8],
    class_names: Sequence[str],
    class_colors: Sequence[Sequence[int]],
    level0_px_per_px: float,
    skip_classes: Sequence[int] = (0,),
    slide_size_px: tuple[int, int] | None = None,
    slide_mpp: float | None = None,
    probabilities: Sequence[npt.NDArray[np.uint8]] | None = None,
    id_seed: str = "",
    simplify_px: float = 0.0,
) -> int:
    """Write a QuPath-compatible GeoJSON FeatureCollection of the predicted regions.

    Features are written as they are traced, so memory stays at one
    region's polygon. Every polygon is valid (OGC rules, as shapely and
    QuPath check them) and lies within the slide.

    Args:
        path: str or path. The ``.geojson`` to write; it must not exist (a
            temporary name, renamed into place by the caller).
        labels: uint8 ``(H, W)`` class indices.
        class_names: sequence of str. Name of each class (QuPath classification).
        class_colors: sequence of (r, g, b). Colour of each class.
        level0_px_per_px: float. Level-0 slide pixels per label pixel.
        skip_classes: sequence of int. Classes left out. Defaults to ``(0,)``
            (background).
        slide_size_px: (int, int), optional. Level-0 ``(width, height)``;
            coordinates are clipped to it. Defaults to ``None`` (no clipping).
        slide_mpp: float, optional. Level-0 microns per pixel, for each
            object's ``Area µm^2``. Defaults to ``None`` (no area).
        probabilities: sequence of uint8 ``(H, W)``, optional. Probability of
            each class (``round(255 p)``), for each object's ``Mean
            probability``. Defaults to ``None``.
        id_seed: str. Makes the feature ids of one slide unique and
            repeatable. Defaults to ``""``.
        simplify_px: float. Simplification tolerance in level-0 pixels (see
            :func:`label_features`). Defaults to 0: polygons follow label-pixel
            edges exactly.

    Returns:
        The number of features written.

    Example:
    >>> write_geojson("cells.geojson", labels, ["background", "gland"],  # doctest: +SKIP
    ...               [(240, 240, 240), (220, 40, 40)], level0_px_per_px=4.0)
    """
    count = 0
    try:
        with open_new(path, "w") as handle:
            handle.write('{"type":"FeatureCollection","features":[')
            for feature in label_features(labels, class_names, class_colors, level0_px_per_px, skip_classes,
                                          slide_size_px, slide_mpp, probabilities, id_seed, simplify_px):
                handle.write(("," if count else "") + json.dumps(feature, separators=(",", ":")))
                count += 1
            handle.write("]}\n")
    except BaseException:
        discard(path)
        raise
    return count
