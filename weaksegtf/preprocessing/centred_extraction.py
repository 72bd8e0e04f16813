"""Centred ground-truth extraction with K-means region splitting, Appendix B.2.

Ciga & Martel, "Learning to segment images with classification labels",
Medical Image Analysis 2021, Appendix B.2: instead of sliding a window, a
patch is centred on each labelled connected component, so a region of
interest is seen whole and with its boundary. A region larger than the patch
is split with K-means on its foreground ``(x, y)`` coordinates into
``ceil(1 + area / patch_size**2)`` centres, and a patch is centred on each.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import cv2
import numpy as np
import numpy.typing as npt

from weaksegtf.errors import ConfigError
from weaksegtf.preprocessing.label_map import IGNORE_INDEX, LabelImage

#: K-means runs on at most this many foreground pixels of one region; a random
#: subset gives the same centres to well under a pixel and keeps big regions fast.
MAX_KMEANS_POINTS = 10_000


def kmeans_split_count(area_px: float, patch_size_px: float) -> int:
    """Number of centres for a region, ``ceil(1 + area / patch_size**2)`` (Appendix B.2).

    Both arguments are in the same pixel units (any resolution).

    Example:
    >>> kmeans_split_count(40 * 100, 32)  # 4000 / 1024 = 3.9
    5
    """
    if patch_size_px <= 0:
        raise ConfigError(f"patch_size_px must be positive, got {patch_size_px}")
    return int(math.ceil(1.0 + float(area_px) / float(patch_size_px) ** 2))


def kmeans(
    points: npt.NDArray[np.floating], k: int, seed: int = 0, max_iterations: int = 100
) -> npt.NDArray[np.float64]:
    """Lloyd's K-means with k-means++ seeding; deterministic for a given ``seed``.

    Args:
        points: ``(N, D)`` float array.
        k: int. Number of clusters (clipped to the number of distinct points).
        seed: int. Random seed. Defaults to 0.
        max_iterations: int. Defaults to 100.

    Returns:
        ``(k, D)`` cluster centres.
    """
    points = np.asarray(points, dtype=np.float64)
    rng = np.random.default_rng(seed)
    k = int(min(k, len(np.unique(points, axis=0))))
    # k-means++: each new centre is drawn with probability proportional to the
    # squared distance to the nearest centre chosen so far.
    centres = [points[rng.integers(len(points))]]
    nearest = np.sum((points - centres[0]) ** 2, axis=1)
    for _ in range(1, k):
        total = nearest.sum()
        index = rng.choice(len(points), p=nearest / total) if total > 0 else rng.integers(len(points))
        centres.append(points[index])
        nearest = np.minimum(nearest, np.sum((points - points[index]) ** 2, axis=1))
    centres_array = np.array(centres)
    squared_norms = np.sum(points**2, axis=1)
    for _ in range(max_iterations):
        # |p - c|^2 = |p|^2 - 2 p.c + |c|^2, as one matrix product.
        distances = (
            squared_norms[:, None] - 2.0 * points @ centres_array.T + np.sum(centres_array**2, axis=1)
        )
        assignment = distances.argmin(axis=1)
        sizes = np.bincount(assignment, minlength=k)
        updated = centres_array.copy()
        filled = sizes > 0  # an emptied cluster keeps its old centre
        for dim in range(points.shape[1]):
            sums = np.bincount(assignment, weights=points[:, dim], minlength=k)
            updated[filled, dim] = sums[filled] / sizes[filled]
        if np.allclose(updated, centres_array, atol=1e-6):
            break
        centres_array = updated
    return centres_array


def centred_patch_centres(
    labels: LabelImage,
    patch_size_px: float,
    classes: Sequence[int] | None = None,
    background: int | None = 0,
    ignore_index: int = IGNORE_INDEX,
    min_area_px: int = 1,
    seed: int = 0,
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.int64]]:
    """Patch centres on every labelled connected component (Appendix B.2).

    A component whose bounding box fits in the patch gets one centre, the
    middle of its bounding box (so the whole component lies in the patch). A
    larger one is split by K-means on its pixel coordinates into
    :func:`kmeans_split_count` centres.

    Args:
        labels: uint8 ``(H, W)`` class indices.
        patch_size_px: float. Patch side in pixels of ``labels``.
        classes: sequence of int, optional. Classes whose regions get patches.
            Defaults to ``None``: every value present except ``background``
            and ``ignore_index``.
        background: int, optional. Class that is not a region of interest.
            Defaults to 0.
        ignore_index: int. "Not annotated" value. Defaults to 255.
        min_area_px: int. Smaller components are skipped. Defaults to 1.
        seed: int. K-means seed. Defaults to 0.

    Returns:
        ``(centres, classes)``: float ``(N, 2)`` centres ``(y, x)`` in
        continuous pixel coordinates of ``labels`` (pixel ``i`` spans
        ``[i, i + 1)``) and int ``(N,)`` the class of each centre's region;
        ordered by class, then component, then centre.

    Example:
    >>> labels = np.zeros((64, 64), np.uint8)
    >>> labels[10:20, 30:40] = 1
    >>> centres, classes = centred_patch_centres(labels, patch_size_px=32)
    >>> centres.tolist(), classes.tolist()
    ([[15.0, 35.0]], [1])
    """
    if classes is None:
        classes = [int(c) for c in np.unique(labels) if c not in (background, ignore_index)]
    found: list[tuple[float, float, int]] = []
    for cls in classes:
        binary = (labels == cls).astype(np.uint8)
        count, components, stats, _ = cv2.connectedComponentsWithStats(binary, connectivity=8)
        for component in range(1, count):
            x, y, width, height, area = stats[component]
            if area < min_area_px:
                continue
            if width <= patch_size_px and height <= patch_size_px:
                found.append((y + height / 2.0, x + width / 2.0, int(cls)))
                continue
            ys, xs = np.nonzero(components[y : y + height, x : x + width] == component)
            # Pixel centres, in the same continuous coordinates as the boxes.
            points = np.stack([ys + y, xs + x], axis=1).astype(np.float64) + 0.5
            rng = np.random.default_rng(seed + component)
            if len(points) > MAX_KMEANS_POINTS:
                points = points[rng.choice(len(points), MAX_KMEANS_POINTS, replace=False)]
            k = kmeans_split_count(area, patch_size_px)
            centres = kmeans(points, k, seed=seed + component)
            found.extend((float(cy), float(cx), int(cls)) for cy, cx in centres)
    table = np.array(found, dtype=np.float64).reshape(-1, 3)
    return table[:, :2].copy(), table[:, 2].astype(np.int64)
