"""Pictures of results: colour masks, overlays and comparison grids (numpy + OpenCV, no TensorFlow)."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import cv2
import numpy as np

# Background white-ish grey, then distinct colours (BACH-like: red, green, blue, ...).
DEFAULT_COLORS = (
    (240, 240, 240),
    (220, 40, 40),
    (40, 170, 60),
    (40, 90, 220),
    (240, 180, 20),
    (160, 60, 200),
    (20, 190, 190),
    (120, 80, 40),
)
IGNORE_COLOR = (0, 0, 0)


def palette(num_classes: int, colors: Sequence[Sequence[int]] | None = None) -> np.ndarray:
    """``(256, 3)`` uint8 lookup table; unlisted values (e.g. 255, not annotated) are black."""
    colors = list(colors or DEFAULT_COLORS)
    if len(colors) < num_classes:
        rng = np.random.default_rng(0)
        colors += [tuple(int(v) for v in rng.integers(0, 256, 3)) for _ in range(num_classes - len(colors))]
    table = np.zeros((256, 3), np.uint8)
    table[:num_classes] = np.asarray(colors[:num_classes], np.uint8)
    return table


def colorize(mask: np.ndarray, num_classes: int, colors=None) -> np.ndarray:
    """RGB picture of a class-index mask."""
    return palette(num_classes, colors)[np.asarray(mask, np.uint8)]


def overlay(image: np.ndarray, mask: np.ndarray, num_classes: int, alpha: float = 0.45, colors=None) -> np.ndarray:
    """Class colours blended over the image; background (class 0) left untouched."""
    coloured = colorize(mask, num_classes, colors).astype(np.float32)
    out = image.astype(np.float32).copy()
    foreground = (mask > 0) & (mask < num_classes)
    out[foreground] = (1 - alpha) * out[foreground] + alpha * coloured[foreground]
    return out.round().astype(np.uint8)


def comparison_grid(
    images: Sequence[np.ndarray],
    truths: Sequence[np.ndarray],
    predictions: Sequence[np.ndarray] | dict[str, Sequence[np.ndarray]],
    class_names: Sequence[str],
    path: str | Path,
    titles: Sequence[str] | None = None,
    colors=None,
    max_rows: int = 8,
    cell_px: int = 192,
) -> Path:
    """Write a PNG with rows of image | ground truth | prediction, plus a colour legend.

    ``predictions`` may be a dict ``{column title: masks}`` to put several
    models side by side (one prediction column each, in the dict's order).
    """
    num_classes = len(class_names)
    columns = dict(predictions) if isinstance(predictions, dict) else {"prediction": predictions}
    rows = []
    for i, (image, truth) in enumerate(zip(images, truths)):
        if i == max_rows:
            break
        scale = cell_px / max(image.shape[:2])
        size = (max(1, round(image.shape[1] * scale)), max(1, round(image.shape[0] * scale)))
        cells = [
            cv2.resize(image, size, interpolation=cv2.INTER_AREA),
            cv2.resize(colorize(truth, num_classes, colors), size, interpolation=cv2.INTER_NEAREST),
            *(cv2.resize(overlay(image, masks[i], num_classes, colors=colors), size, interpolation=cv2.INTER_AREA)
              for masks in columns.values()),
        ]
        row = np.concatenate([np.pad(c, ((2, 2), (2, 2), (0, 0)), constant_values=255) for c in cells], axis=1)
        if titles is not None:
            cv2.putText(row, str(titles[i]), (6, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
        rows.append(row)
    width = max(r.shape[1] for r in rows)
    rows = [np.pad(r, ((0, 0), (0, width - r.shape[1]), (0, 0)), constant_values=255) for r in rows]
    header = np.full((24, width, 3), 255, np.uint8)
    names = ("image", "ground truth", *columns)
    cell = rows[0].shape[1] // len(names)
    for x, text in zip(range(8, width, cell), names):
        cv2.putText(header, text, (x, 17), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
    legend = np.full((24, width, 3), 255, np.uint8)
    table = palette(num_classes, colors)
    x = 8
    for c, name in enumerate(class_names):
        cv2.rectangle(legend, (x, 6), (x + 14, 20), tuple(int(v) for v in table[c]), -1)
        cv2.rectangle(legend, (x, 6), (x + 14, 20), (0, 0, 0), 1)
        cv2.putText(legend, name, (x + 18, 18), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
        x += 26 + 9 * len(name)
    picture = np.concatenate([header, *rows, legend], axis=0)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), cv2.cvtColor(picture, cv2.COLOR_RGB2BGR))
    return path
