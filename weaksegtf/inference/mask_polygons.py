"""Polygons that follow pixel edges exactly, from a binary mask.

``cv2.findContours`` traces the *centres* of boundary pixels, which leaves
out half a pixel along every edge: on the coarse label maps of whole-slide
inference a region loses several percent of its area that way. Here the mask
is traced on a grid twice as fine, holding pixel centres, edge midpoints and
corners, where the union of the closed pixel squares is what OpenCV sees as
foreground; the traced points are then pixel corners and edge midpoints.
Where OpenCV takes a diagonal step (it follows 8-connected borders) the
corner it skipped is put back, and the midpoints and other collinear points
are dropped. The result is the exact outline: the polygon area (outer ring
minus holes) equals the pixel count.
"""

from __future__ import annotations

from typing import Sequence

import cv2
import numpy as np
import numpy.typing as npt

#: A polygon: its outer ring first, then its holes; each ring an ``(N, 2)``
#: array of ``(x, y)`` pixel-corner coordinates (pixel ``(i, j)`` covers
#: ``[j, j + 1) x [i, i + 1)``), not closed (first point not repeated).
Polygon = list[npt.NDArray[np.int64]]


def _neighbours(segment: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Indices of the previous and next point of each point, cyclic within its ring."""
    count = len(segment)
    index = np.arange(count)
    starts = np.concatenate([[0], np.flatnonzero(segment[1:] != segment[:-1]) + 1])
    ends = np.concatenate([starts[1:], [count]]) - 1
    previous, following = index - 1, index + 1
    previous[starts] = ends
    following[ends] = starts
    return previous, following


def _corner_rings(contours: Sequence[np.ndarray]) -> list[np.ndarray]:
    """Fine-grid rings to pixel corners: re-insert skipped corners, drop midpoints and collinear points.

    All rings are processed at once (concatenated, with a ring id per point),
    because a slide's label map can hold tens of thousands of small regions.
    """
    points = np.concatenate([c.reshape(-1, 2) for c in contours]).astype(np.int64)
    segment = np.repeat(np.arange(len(contours)), [len(c) for c in contours])
    _, following = _neighbours(segment)
    after = points[following]
    step = after - points
    diagonal = np.flatnonzero((step[:, 0] != 0) & (step[:, 1] != 0))
    # Of the two points completing a diagonal step, the one with both
    # coordinates even is the pixel corner the trace cut across.
    x_even = points[diagonal, 0] % 2 == 0
    corner = np.where(x_even[:, None],
                      np.stack([points[diagonal, 0], after[diagonal, 1]], axis=1),
                      np.stack([after[diagonal, 0], points[diagonal, 1]], axis=1))
    points = np.insert(points, diagonal + 1, corner, axis=0)
    segment = np.insert(segment, diagonal + 1, segment[diagonal])
    keep = (points[:, 0] % 2 == 0) & (points[:, 1] % 2 == 0)
    points, segment = points[keep] // 2, segment[keep]
    previous, _ = _neighbours(segment)
    keep = np.any(points != points[previous], axis=1) | (previous == np.arange(len(points)))
    points, segment = points[keep], segment[keep]
    previous, following = _neighbours(segment)
    before, after = points - points[previous], points[following] - points
    turning = before[:, 0] * after[:, 1] - before[:, 1] * after[:, 0] != 0
    points, segment = points[turning], segment[turning]
    bounds = np.searchsorted(segment, np.arange(len(contours) + 1))
    return [points[bounds[i] : bounds[i + 1]] for i in range(len(contours))]


def mask_polygons(mask: npt.ArrayLike) -> list[Polygon]:
    """Outlines of the foreground of a binary mask, with holes, along pixel edges.

    Args:
        mask: bool or 0/1 array ``(H, W)``.

    Returns:
        list of polygons (outer ring, then holes), in pixel-corner coordinates.
        Regions touching only at a corner may share that vertex.

    Example:
    >>> mask_polygons(np.array([[0, 1, 1], [0, 1, 0]]))[0][0].tolist()
    [[1, 0], [1, 2], [2, 2], [2, 1], [3, 1], [3, 0]]
    """
    mask = np.asarray(mask).astype(bool)
    if mask.ndim != 2:
        raise ValueError(f"mask must be 2-D, got shape {mask.shape}")
    if not mask.any():
        return []
    height, width = mask.shape
    fine = np.zeros((2 * height + 3, 2 * width + 3), np.uint8)
    fine[2:-1:2, 2:-1:2] = mask  # pixel centres at odd fine coordinates, after a 1-point margin
    fine = cv2.dilate(fine, np.ones((3, 3), np.uint8))
    contours, hierarchy = cv2.findContours(fine, cv2.RETR_CCOMP, cv2.CHAIN_APPROX_NONE)
    if hierarchy is None:
        return []
    hierarchy = hierarchy[0]
    rings = _corner_rings([c[:, 0, :].astype(np.int64) - 1 for c in contours])
    polygons = []
    for index, (_, _, first_child, parent) in enumerate(hierarchy):
        if parent >= 0 or len(rings[index]) < 3:
            continue
        polygon = [rings[index]]
        child = first_child
        while child >= 0:
            if len(rings[child]) >= 3:
                polygon.append(rings[child])
            child = hierarchy[child][0]
        polygons.append(polygon)
    return polygons


def ring_area(ring: np.ndarray) -> float:
    """Unsigned shoelace area of a ring."""
    x, y = ring[:, 0].astype(np.float64), ring[:, 1].astype(np.float64)
    return abs(float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1)))) / 2.0


def polygon_area(polygon: Polygon) -> float:
    """Area of the outer ring minus the holes."""
    return ring_area(polygon[0]) - sum(ring_area(hole) for hole in polygon[1:])
