"""Polygons that follow pixel edges exactly, from a binary mask.

``cv2.findContours`` traces the *centres* of boundary pixels, which leaves
out half a pixel along every edge: on the coarse label maps of whole-slide
inference a region loses several percent of its area that way. Here the mask
is traced on a grid twice as fine, holding pixel centres, edge midpoints and
corners, where the union of the closed pixel squares is what OpenCV sees as
foreground; the traced points are then pixel corners and edge midpoints.
Where OpenCV takes a diagonal step (it follows 8-connected borders) the
corner it skipped is put back, and the midpoints and other collinear points
are dropped. Regions that touch only at a corner come out as one ring
passing that corner twice; such rings are split there into simple
polygons, which viewers (QuPath uses JTS) accept as valid. The result is the
exact outline: the polygon area (outer ring minus holes) equals the pixel
count.
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


#: Boundary points cleaned up at once.
_CHUNK_POINTS = 1 << 18


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
    # A ring that passes a vertex twice pinches there (regions touching at a corner).
    _, first, counts = np.unique(np.stack([segment, points[:, 0], points[:, 1]], axis=1), axis=0,
                                 return_index=True, return_counts=True)
    pinched = np.zeros(len(contours), dtype=bool)
    pinched[segment[first[counts > 1]]] = True
    rings = [points[bounds[i] : bounds[i + 1]] for i in range(len(contours))]
    return rings, pinched


def signed_area(ring: np.ndarray) -> float:
    """Shoelace area of a ring, positive or negative with its orientation."""
    # Integer corners below 2**24 are exact in float32; OpenCV sums in double.
    return float(cv2.contourArea(ring.astype(np.float32).reshape(-1, 1, 2), oriented=True))


def _split_loops(ring: np.ndarray) -> list[np.ndarray]:
    """A ring that visits vertices more than once, as simple loops joined at those vertices."""
    path: list[tuple[int, int]] = []
    position: dict[tuple[int, int], int] = {}
    loops = []
    for vertex in map(tuple, ring.tolist()):
        if vertex in position:
            start = position[vertex]
            loops.append(path[start:])
            for other in path[start + 1 :]:
                del position[other]
            path = path[: start + 1]
        else:
            position[vertex] = len(path)
            path.append(vertex)
    loops.append(path)
    return [np.asarray(loop, dtype=np.int64) for loop in loops if len(loop) >= 3]


def _inside_point(ring: np.ndarray) -> tuple[float, float]:
    """The centre of a pixel inside a simple ring, next to its first edge."""
    start, end = ring[0].astype(np.float64), ring[1].astype(np.float64)
    step = np.sign(end - start)
    middle = start + 0.5 * step
    normal = np.array([-step[1], step[0]])
    contour = ring.astype(np.float32).reshape(-1, 1, 2)
    for side in (0.5, -0.5):
        point = (float(middle[0] + side * normal[0]), float(middle[1] + side * normal[1]))
        if cv2.pointPolygonTest(contour, point, False) > 0:
            return point
    return float(middle[0]), float(middle[1])


def _unpinch(group: list[np.ndarray], pinched: Sequence[bool]) -> list[Polygon]:
    """Simple polygons from an outer ring and its holes where some ring touches itself.

    Splitting the touching rings at the shared vertices gives loops; loops
    turning the way the outer ring does are outlines, the others holes, each
    given to the smallest outline around it.
    """
    orientation = np.sign(signed_area(group[0]))
    loops = [loop for ring, split in zip(group, pinched) for loop in (_split_loops(ring) if split else [ring])]
    signed = np.array([signed_area(loop) for loop in loops])
    is_outline = np.sign(signed) == orientation
    outlines = [loop for loop, keep in zip(loops, is_outline) if keep]
    holes = [loop for loop, keep in zip(loops, is_outline) if not keep]
    polygons: list[Polygon] = [[outline] for outline in outlines]
    if len(outlines) == 1:
        polygons[0] += holes
        return polygons
    areas = np.abs(signed[is_outline])
    contours = [outline.astype(np.float32).reshape(-1, 1, 2) for outline in outlines]
    low = np.array([outline.min(axis=0) for outline in outlines])
    high = np.array([outline.max(axis=0) for outline in outlines])
    points = np.array([_inside_point(hole) for hole in holes]).reshape(-1, 2)
    for start in range(0, len(holes), 1024):  # bounding boxes first, all holes of a chunk at once
        chunk = points[start : start + 1024, None, :]
        near = ((low[None] <= chunk) & (chunk <= high[None])).all(axis=2)
        for offset, row in enumerate(near):
            point = tuple(points[start + offset].tolist())
            for k in sorted(np.flatnonzero(row).tolist(), key=lambda k: areas[k]):
                if cv2.pointPolygonTest(contours[k], point, False) > 0:
                    polygons[k].append(holes[start + offset])
                    break
    return polygons


def mask_polygons(mask: npt.ArrayLike) -> list[Polygon]:
    """Outlines of the foreground of a binary mask, with holes, along pixel edges.

    Args:
        mask: bool or 0/1 array ``(H, W)``.

    Returns:
        list of simple polygons (outer ring, then holes), in pixel-corner
        coordinates. Regions touching only at a corner are separate polygons
        sharing that vertex.

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
    # In chunks of contours, so the vectorised clean-up of a fragmented mask
    # (millions of boundary points) never needs more than a few tens of MB.
    rings: list[np.ndarray] = []
    pinched_parts = []
    start = 0
    while start < len(contours):
        stop, points = start, 0
        while stop < len(contours) and (stop == start or points + len(contours[stop]) <= _CHUNK_POINTS):
            points += len(contours[stop])
            stop += 1
        chunk_rings, chunk_pinched = _corner_rings([c[:, 0, :] - 1 for c in contours[start:stop]])
        rings += chunk_rings
        pinched_parts.append(chunk_pinched)
        start = stop
    del contours
    pinched = np.concatenate(pinched_parts)
    polygons: list[Polygon] = []
    for index, (_, _, first_child, parent) in enumerate(hierarchy):
        if parent >= 0 or len(rings[index]) < 3:
            continue
        group, members = [rings[index]], [index]
        child = first_child
        while child >= 0:
            if len(rings[child]) >= 3:
                group.append(rings[child])
                members.append(child)
            child = hierarchy[child][0]
        polygons += _unpinch(group, pinched[members]) if pinched[members].any() else [group]
    return polygons


def ring_area(ring: np.ndarray) -> float:
    """Unsigned shoelace area of a ring."""
    return abs(signed_area(ring))


def polygon_area(polygon: Polygon) -> float:
    """Area of the outer ring minus the holes."""
    return ring_area(polygon[0]) - sum(ring_area(hole) for hole in polygon[1:])
