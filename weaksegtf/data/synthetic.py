"""A small synthetic H&E-like gland dataset, generated in memory with no downloads.

It stands in for GlaS in the built-in demo and in tests: pink stroma with
fibres and scattered nuclei, patches of white (empty slide), and glands made
of a pale lumen inside an epithelial ring with purple nuclei. The two gland
kinds mimic the visual cues of the real grades:

- class 1, "benign": small, round, evenly spaced glands; one neat row of
  small nuclei; a large clear lumen.
- class 2, "malignant": larger glands with an irregular outline, darker
  cytoplasm, crowded large dark nuclei of varied size, and a small lumen.

Each image holds glands of one kind only, so its image label is that kind.
Pale lumen looks like white background and stromal nuclei look like gland
nuclei, so single pixel colours do not give the mask away: a model has to use
context, as on real tissue.
"""

from __future__ import annotations

import cv2
import numpy as np

from weaksegtf.data.mask_set import MaskSet
from weaksegtf.errors import ConfigError

CLASS_NAMES: tuple[str, ...] = ("background", "benign gland", "malignant gland")

# RGB colours, roughly those of eosin (pink) and haematoxylin (purple) on GlaS.
_STROMA_RGB = np.array([232.0, 168.0, 204.0])
_FIBRE_RGB = np.array([205.0, 120.0, 170.0])
_WHITE_RGB = np.array([244.0, 242.0, 246.0])
_LUMEN_RGB = np.array([246.0, 236.0, 244.0])
_STROMAL_NUCLEUS_RGB = np.array([110.0, 60.0, 150.0])
_BENIGN_CYTOPLASM_RGB = np.array([222.0, 178.0, 218.0])
_BENIGN_NUCLEUS_RGB = np.array([100.0, 62.0, 155.0])
_MALIGNANT_CYTOPLASM_RGB = np.array([186.0, 118.0, 184.0])
_MALIGNANT_NUCLEUS_RGB = np.array([58.0, 28.0, 102.0])
# cv2 drawing with 4 fractional bits gives sub-pixel nuclei at 128 px.
_SHIFT = 4
_ONE = 1 << _SHIFT


def _fixed(value: float) -> int:
    return int(round(value * _ONE))


def _smooth_noise(rng: np.random.Generator, size_px: int, cell_px: int) -> np.ndarray:
    """Zero-mean, unit-ish smooth noise: a coarse random grid, upsampled."""
    cells = max(2, size_px // cell_px + 2)
    coarse = rng.standard_normal((cells, cells)).astype(np.float32)
    return cv2.resize(coarse, (size_px, size_px), interpolation=cv2.INTER_CUBIC)


def _paint(image: np.ndarray, where: np.ndarray, rgb: np.ndarray) -> None:
    image[where] = rgb


def _outline(
    rng: np.random.Generator, centre: np.ndarray, radius_px: float, irregular: bool
) -> np.ndarray:
    """Closed polygon ``(n, 2)`` in fixed-point (x, y) around ``centre``."""
    angles = np.linspace(0.0, 2.0 * np.pi, 72, endpoint=False)
    aspect = rng.uniform(0.8, 1.0)
    tilt = rng.uniform(0.0, np.pi)
    radius = np.full_like(angles, radius_px)
    if irregular:
        # A few random low harmonics make a lobulated, asymmetric outline.
        for harmonic in range(2, 6):
            radius *= 1.0 + rng.uniform(0.0, 0.13) * np.cos(harmonic * angles + rng.uniform(0, 2 * np.pi))
    x = radius * np.cos(angles)
    y = radius * np.sin(angles) * aspect
    rotated_x = x * np.cos(tilt) - y * np.sin(tilt)
    rotated_y = x * np.sin(tilt) + y * np.cos(tilt)
    points = np.stack([centre[0] + rotated_x, centre[1] + rotated_y], axis=1)
    return np.rint(points * _ONE).astype(np.int32)


def _fill(shape: tuple[int, int], polygon: np.ndarray) -> np.ndarray:
    canvas = np.zeros(shape, np.uint8)
    cv2.fillPoly(canvas, [polygon], 1, lineType=cv2.LINE_8, shift=_SHIFT)
    return canvas.astype(bool)


def _draw_nucleus(
    image: np.ndarray, centre: np.ndarray, axes_px: tuple[float, float], angle_deg: float, rgb: np.ndarray
) -> None:
    cv2.ellipse(
        image,
        (_fixed(centre[0]), _fixed(centre[1])),
        (max(1, _fixed(axes_px[0])), max(1, _fixed(axes_px[1]))),
        angle_deg,
        0,
        360,
        rgb.tolist(),
        thickness=-1,
        lineType=cv2.LINE_AA,
        shift=_SHIFT,
    )


def _draw_gland(
    rng: np.random.Generator,
    image: np.ndarray,
    mask: np.ndarray,
    centre: np.ndarray,
    radius_px: float,
    label: int,
    scale: float,
) -> None:
    size = image.shape[:2]
    malignant = label == 2
    outer = _outline(rng, centre, radius_px, irregular=malignant)
    lumen_fraction = rng.uniform(0.22, 0.35) if malignant else rng.uniform(0.55, 0.66)
    lumen_centre = centre + (rng.uniform(-0.15, 0.15, 2) * radius_px if malignant else 0.0)
    lumen = _outline(rng, lumen_centre, radius_px * lumen_fraction, irregular=malignant)
    gland_area = _fill(size, outer)
    lumen_area = _fill(size, lumen) & gland_area
    cytoplasm = _MALIGNANT_CYTOPLASM_RGB if malignant else _BENIGN_CYTOPLASM_RGB
    _paint(image, gland_area, cytoplasm + rng.normal(0.0, 4.0, 3))
    _paint(image, lumen_area, _LUMEN_RGB)
    mask[gland_area] = label

    if malignant:
        # Crowded, stratified, pleomorphic nuclei anywhere in the epithelium.
        ring_y, ring_x = np.nonzero(gland_area & ~lumen_area)
        count = int(len(ring_y) / (17.0 * scale * scale))
        for index in rng.choice(len(ring_y), size=min(count, len(ring_y)), replace=False):
            semi_axis = rng.uniform(1.6, 3.0) * scale
            _draw_nucleus(
                image,
                np.array([ring_x[index], ring_y[index]], dtype=float) + rng.uniform(-0.5, 0.5, 2),
                (semi_axis, semi_axis * rng.uniform(0.6, 1.0)),
                rng.uniform(0.0, 180.0),
                _MALIGNANT_NUCLEUS_RGB + rng.normal(0.0, 8.0, 3),
            )
    else:
        # One evenly spaced row of small nuclei, long axis along the radius.
        outer_points = outer.astype(float) / _ONE
        lumen_points = lumen.astype(float) / _ONE
        row = outer_points + 0.55 * (lumen_points - outer_points)
        perimeter_px = float(np.sum(np.linalg.norm(np.diff(row, axis=0, append=row[:1]), axis=1)))
        count = max(6, int(perimeter_px / (4.2 * scale)))
        for step in range(count):
            t = (step + rng.uniform(-0.1, 0.1)) / count * len(row)
            point = row[int(t) % len(row)]
            radial = point - centre
            angle_deg = float(np.degrees(np.arctan2(radial[1], radial[0])))
            _draw_nucleus(
                image, point, (1.7 * scale, 1.1 * scale), angle_deg, _BENIGN_NUCLEUS_RGB + rng.normal(0.0, 6.0, 3)
            )


def _place_glands(
    rng: np.random.Generator, size_px: int, label: int, blocked: np.ndarray, scale: float
) -> list[tuple[np.ndarray, float]]:
    """Non-overlapping gland centres and radii, away from white background."""
    if label == 1:
        wanted, radius_range = int(rng.integers(3, 6)), (11.0 * scale, 16.0 * scale)
    else:
        wanted, radius_range = int(rng.integers(2, 4)), (19.0 * scale, 27.0 * scale)
    glands: list[tuple[np.ndarray, float]] = []
    for _ in range(60):
        if len(glands) == wanted:
            break
        radius = rng.uniform(*radius_range)
        centre = rng.uniform(0.25 * radius, size_px - 0.25 * radius, 2)
        x, y = int(np.clip(centre[0], 0, size_px - 1)), int(np.clip(centre[1], 0, size_px - 1))
        if blocked[y, x]:
            continue
        if all(np.linalg.norm(centre - c) > radius + r + 4.0 * scale for c, r in glands):
            glands.append((centre, radius))
    if not glands:
        # Every image must show its kind, or its image label would be a lie.
        free_y, free_x = np.nonzero(~blocked)
        pick = int(rng.integers(len(free_y))) if len(free_y) else None
        centre = (np.array([free_x[pick], free_y[pick]], float) if pick is not None
                  else np.full(2, size_px / 2.0))
        glands.append((centre, radius_range[0]))
    return glands


def _draw_image(rng: np.random.Generator, size_px: int, label: int) -> tuple[np.ndarray, np.ndarray]:
    scale = size_px / 128.0
    shape = (size_px, size_px)
    # Stroma: pink with smooth stain variation and darker fibres.
    texture = _smooth_noise(rng, size_px, max(4, int(16 * scale)))
    image = (_STROMA_RGB + rng.normal(0.0, 6.0, 3) + 9.0 * texture[:, :, None]).astype(np.float32)
    fibres = np.zeros(shape, np.uint8)
    for _ in range(int(14 * scale)):
        start = rng.uniform(0, size_px, 2)
        end = start + rng.normal(0.0, 30.0 * scale, 2)
        cv2.line(fibres, (_fixed(start[0]), _fixed(start[1])), (_fixed(end[0]), _fixed(end[1])), 255,
                 thickness=1, lineType=cv2.LINE_AA, shift=_SHIFT)
    fibre_weight = fibres.astype(np.float32)[:, :, None] / 255.0 * 0.6
    image = image * (1.0 - fibre_weight) + _FIBRE_RGB * fibre_weight

    # White background: a smooth blob in about half the images.
    white = np.zeros(shape, bool)
    if rng.random() < 0.5:
        field = _smooth_noise(rng, size_px, max(8, int(48 * scale)))
        white = field > rng.uniform(0.7, 1.1)
        image[white] = _WHITE_RGB
    blocked = cv2.dilate(white.astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool)

    mask = np.zeros(shape, np.uint8)
    image = np.clip(image, 0, 255).astype(np.float32)
    for centre, radius in _place_glands(rng, size_px, label, blocked, scale):
        _draw_gland(rng, image, mask, centre, radius, label, scale)
    # Glands never extend into white background: an empty slide is not tissue.
    image[white] = _WHITE_RGB
    mask[white] = 0

    # Scattered stromal nuclei (lymphocytes, fibroblasts), outside glands.
    for _ in range(int(rng.integers(8, 20) * scale * scale)):
        point = rng.uniform(0, size_px, 2)
        x, y = int(point[0]), int(point[1])
        if mask[y, x] == 0 and not white[y, x]:
            semi_axis = rng.uniform(1.0, 2.0) * scale
            _draw_nucleus(image, point, (semi_axis * 1.6, semi_axis), rng.uniform(0, 180),
                          _STROMAL_NUCLEUS_RGB + rng.normal(0.0, 10.0, 3))

    # Optics and sensor: slight blur, per-image stain scaling and pixel noise.
    image = cv2.GaussianBlur(image.astype(np.float32), (0, 0), 0.6 * scale)
    image = image * rng.uniform(0.94, 1.04, 3) + rng.normal(0.0, 4.0, image.shape)
    return np.clip(np.rint(image), 0, 255).astype(np.uint8), mask


def make_synthetic_dataset(
    n_images: int = 120, size_px: int = 128, seed: int = 0
) -> tuple[MaskSet, np.ndarray]:
    """Generate H&E-like images with gland masks and image labels.

    Image ``i`` is drawn from its own random stream ``(seed, i)``, so the
    first ten images are the same whatever ``n_images`` is. Kinds alternate:
    even images are benign (label 1), odd images malignant (label 2).

    Args:
        n_images: int. Number of images. Defaults to 120.
        size_px: int. Side of each square image, at least 32. Gland and
            nucleus sizes scale with it. Defaults to 128.
        seed: int. Random seed. Defaults to 0.

    Returns:
        ``(mask_set, labels)``: a :class:`MaskSet` with masks 0 (stroma and
        white background), 1 or 2 (the whole gland, ring and lumen), and an
        int32 array ``(n_images,)`` of image labels in {1, 2}.

    Example:
    >>> mask_set, labels = make_synthetic_dataset(n_images=4, size_px=64)
    >>> len(mask_set), labels.tolist()
    (4, [1, 2, 1, 2])
    """
    if isinstance(n_images, bool) or not isinstance(n_images, (int, np.integer)) or n_images < 1:
        raise ConfigError(f"n_images must be a positive int, got {n_images!r}")
    if isinstance(size_px, bool) or not isinstance(size_px, (int, np.integer)) or size_px < 32:
        raise ConfigError(f"size_px must be an int of at least 32, got {size_px!r}")
    images, masks, labels = [], [], []
    for index in range(n_images):
        label = 1 if index % 2 == 0 else 2
        rng = np.random.default_rng([seed, index])
        image, mask = _draw_image(rng, int(size_px), label)
        images.append(image)
        masks.append(mask)
        labels.append(label)
    names = [f"synthetic_{index:04d}" for index in range(n_images)]
    return MaskSet(images, masks, names), np.asarray(labels, dtype=np.int32)
