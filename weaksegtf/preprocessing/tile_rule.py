"""Which tiles become classification or segmentation patches, section 3.3.

Ciga & Martel, "Learning to segment images with classification labels",
Medical Image Analysis 2021, section 3.3 and Fig. 4: a tile whose dominant
class covers at least 90% is a classification patch labelled with that class;
a tile that contains exactly two classes is a segmentation patch; any other
tile (three or more classes) is ignored.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from weaksegtf.errors import ConfigError
from weaksegtf.preprocessing.label_map import IGNORE_INDEX, LabelImage

#: Kinds of decision; "mask" patches go to the mask set, "label" to the label set.
MASK, LABEL, IGNORE = "mask", "label", "ignore"


@dataclass(frozen=True)
class TileDecision:
    """What the tile rule made of one tile.

    Attributes:
        kind: str. ``"label"``, ``"mask"`` or ``"ignore"``.
        label: int or None. The dominant class, for ``"label"`` tiles.
        classes: tuple of int. Annotated classes present, ascending.
        dominant_fraction: float. Share of the tile's in-slide pixels held by
            the most frequent class.
    """

    kind: str
    label: int | None
    classes: tuple[int, ...]
    dominant_fraction: float


def classify_tile(
    mask: LabelImage,
    dominant_fraction: float = 0.9,
    mask_classes: int = 2,
    ignore_index: int = IGNORE_INDEX,
    inside: npt.NDArray[np.bool_] | None = None,
) -> TileDecision:
    """Apply the section 3.3 tile rule to one mask tile.

    Fractions are taken over the tile's pixels inside the slide, so a tile of a
    slide smaller than the patch is judged on the slide, not on its padding;
    unannotated pixels (``ignore_index``) count in the denominator, so a tile
    that is mostly unannotated never becomes a classification patch.

    Args:
        mask: uint8 ``(H, W)`` class indices of the tile.
        dominant_fraction: float. Minimum share of the dominant class for a
            classification patch. Defaults to 0.9.
        mask_classes: int. Exact number of classes of a segmentation patch.
            Defaults to 2.
        ignore_index: int. "Not annotated" value. Defaults to 255.
        inside: bool ``(H, W)``, optional. Pixels inside the slide. Defaults to
            ``None`` (all).

    Returns:
        A :class:`TileDecision`.

    Example:
    >>> tile = np.zeros((10, 10), np.uint8); tile[0, :5] = 1  # 95% class 0
    >>> classify_tile(tile)
    TileDecision(kind='label', label=0, classes=(0, 1), dominant_fraction=0.95)
    """
    if not 0.0 < dominant_fraction <= 1.0:
        raise ConfigError(f"dominant_fraction must be in (0, 1], got {dominant_fraction}")
    if mask_classes < 1:
        raise ConfigError(f"mask_classes must be at least 1, got {mask_classes}")
    values = mask if inside is None else mask[inside]
    total = values.size
    counts = np.bincount(values.ravel(), minlength=256)
    counts[ignore_index] = 0
    classes = tuple(int(c) for c in np.flatnonzero(counts))
    if total == 0 or not classes:
        return TileDecision(IGNORE, None, classes, 0.0)
    dominant = int(np.argmax(counts))
    share = float(counts[dominant]) / float(total)
    if share >= dominant_fraction:
        return TileDecision(LABEL, dominant, classes, share)
    if len(classes) == mask_classes:
        return TileDecision(MASK, None, classes, share)
    return TileDecision(IGNORE, None, classes, share)
