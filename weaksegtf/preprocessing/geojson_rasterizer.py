"""QuPath GeoJSON annotations to a class-index raster.

QuPath exports annotations as GeoJSON features whose coordinates are level-0
pixels and whose ``properties.classification.name`` is the class. A user
supplies the class map from names to indices; a name missing from it is an
error rather than a silently dropped region.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from weaksegtf.errors import DataError
from weaksegtf.preprocessing.label_map import IGNORE_INDEX, LabelImage

#: Class name given to features QuPath exported without a classification.
UNCLASSIFIED = "Unclassified"

# Sub-pixel precision of cv2.fillPoly: coordinates are fixed point with 4 bits.
_SHIFT = 4


def _feature_list(document: Any, path: Path) -> list[dict[str, Any]]:
    if isinstance(document, list):
        return document
    if isinstance(document, dict):
        if document.get("type") == "FeatureCollection":
            return list(document.get("features", []))
        if document.get("type") == "Feature":
            return [document]
    raise DataError(
        f"GeoJSON {path} holds a {type(document).__name__} of type "
        f"{document.get('type') if isinstance(document, dict) else None!r}; expected a "
        f"FeatureCollection, a Feature or a list of features (QuPath's 'Export objects as GeoJSON')"
    )


def _class_name(feature: dict[str, Any]) -> str:
    classification = (feature.get("properties") or {}).get("classification")
    if isinstance(classification, dict):
        return str(classification.get("name") or UNCLASSIFIED)
    if isinstance(classification, str) and classification:
        return classification
    return UNCLASSIFIED


def _polygons(geometry: dict[str, Any]) -> list[list[list[list[float]]]]:
    """Polygons (each a list of rings) of a geometry; points and lines give none."""
    kind = geometry.get("type")
    if kind == "Polygon":
        return [geometry.get("coordinates")]
    if kind == "MultiPolygon":
        coordinates = geometry.get("coordinates")
        return list(coordinates) if isinstance(coordinates, list) else [coordinates]
    if kind == "GeometryCollection":
        parts = geometry.get("geometries")
        return [p for g in (parts if isinstance(parts, list) else []) if isinstance(g, dict) for p in _polygons(g)]
    return []


def _checked_rings(polygons: list, path: Path, index: int) -> list[list[np.ndarray]]:
    """Each polygon's rings as ``(n, 2)`` float arrays; a DataError naming the feature if malformed."""
    checked = []
    for polygon in polygons:
        try:
            if not isinstance(polygon, list):
                raise ValueError
            rings = [np.asarray(ring, dtype=np.float64) for ring in polygon]
            if any(ring.ndim != 2 or ring.shape[1] < 2 or not np.isfinite(ring[:, :2]).all() for ring in rings):
                raise ValueError
        except (TypeError, ValueError):
            shown = json.dumps(polygon)[:80]
            raise DataError(
                f"GeoJSON {path}: feature {index} has malformed polygon coordinates {shown}; expected "
                f"rings of [x, y] number pairs, as QuPath exports them"
            ) from None
        checked.append([ring[:, :2] for ring in rings])
    return checked


def read_geojson(path: Path | str) -> list[tuple[str, list[list[list[list[float]]]]]]:
    """Read ``(class name, polygons)`` for each feature of a QuPath GeoJSON file.

    Raises:
        DataError: the file is missing, is not JSON or is not GeoJSON features.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"GeoJSON {path} does not exist or is not a file")
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise DataError(f"GeoJSON {path} is not valid JSON: {error}") from None
    features = []
    for index, feature in enumerate(_feature_list(document, path)):
        geometry = feature.get("geometry") if isinstance(feature, dict) else None
        if not isinstance(geometry, dict):
            raise DataError(f"GeoJSON {path}: feature {index} has no geometry object")
        features.append((_class_name(feature), _checked_rings(_polygons(geometry), path, index)))
    return features


def check_classes(
    features: list[tuple[str, list]], class_map: Mapping[str, int], path: Path | str
) -> None:
    """Refuse a feature whose class is not in ``class_map``, or an index beyond 0..255.

    Raises:
        DataError: naming the file, the feature and the class.
    """
    for name, index in class_map.items():
        if not 0 <= int(index) <= 255:
            raise DataError(f"class map entry {name!r}={index} is out of range; expected 0..255")
    for index, (name, _) in enumerate(features):
        if name not in class_map:
            raise DataError(
                f"GeoJSON {path}: feature {index} has class {name!r}, which is not in the class "
                f"map {dict(class_map)}; expected one of {sorted(class_map)} (add it, for example "
                f"--class-map '{name}=<index>')"
            )


def rasterize_geojson(
    path: Path | str,
    class_map: Mapping[str, int],
    shape_px: tuple[int, int],
    downsample: float,
    outside_value: int = IGNORE_INDEX,
) -> LabelImage:
    """Rasterise QuPath polygons to class indices.

    Larger polygons are drawn first, so an annotation nested inside another
    (a tumour region inside a tissue outline) keeps its own class. Interior
    rings are holes. As with ``cv2.fillPoly``, pixels the outline passes
    through count as inside, so a region may grow by up to one raster pixel.

    Args:
        path: str or path. QuPath GeoJSON export, coordinates in level-0 pixels.
        class_map: mapping of str to int. Class index of each classification
            name; unclassified features use the name ``"Unclassified"``.
        shape_px: (int, int). ``(height, width)`` of the raster.
        downsample: float. Level-0 pixels per raster pixel.
        outside_value: int. Value of pixels no polygon covers. Defaults to 255
            (not annotated); use 0 when unannotated tissue is background.

    Returns:
        uint8 array of shape ``shape_px``.

    Raises:
        DataError: a feature's class is not in ``class_map``, naming the file.

    Example:
    >>> labels = rasterize_geojson(
    ...     "slide.geojson", {"Tumor": 1, "Stroma": 2}, (185, 139), downsample=16.0
    ... )  # doctest: +SKIP
    """
    path = Path(path)
    features = read_geojson(path)
    check_classes(features, class_map, path)
    raster = np.full(shape_px, outside_value, dtype=np.uint8)
    scale = float(1 << _SHIFT) / float(downsample)
    shapes = []
    for name, polygons in features:
        for polygon in polygons:
            # Rings to fixed point; QuPath's continuous coordinates put a pixel's
            # centre at +0.5, OpenCV at its integer coordinate.
            rings = [
                np.round((np.asarray(ring, dtype=np.float64)[:, :2] - 0.5 * downsample) * scale)
                .astype(np.int32)
                .reshape(-1, 1, 2)
                for ring in polygon
                if len(ring) >= 3
            ]
            if rings:
                area = abs(cv2.contourArea(rings[0].astype(np.float32)))
                shapes.append((area, int(class_map[name]), rings))
    for _, value, rings in sorted(shapes, key=lambda item: -item[0]):
        cv2.fillPoly(raster, rings, int(value), lineType=cv2.LINE_8, shift=_SHIFT)
    return raster
