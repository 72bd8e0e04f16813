"""A thumbnail showing where the patches of a slide came from (Fig. 4 style).

Colours follow Fig. 4 of Ciga & Martel 2021: solid green for segmentation
(mask) tiles, dashed green for classification (label) tiles, red for tiles the
tile rule ignored; centred patches are magenta and the tissue outline blue.
Tiles dropped for too little tissue are not drawn.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from weaksegtf.preprocessing.patch_extraction import CENTRED, PatchPlan
from weaksegtf.preprocessing.tile_rule import IGNORE, LABEL, MASK
from weaksegtf.slides.slide_reader import RGBImage

Colour = tuple[int, int, int]
GREEN: Colour = (0, 190, 0)
RED: Colour = (230, 0, 0)
MAGENTA: Colour = (220, 0, 220)


def _dashed_rectangle(
    image: RGBImage, p0: tuple[int, int], p1: tuple[int, int], colour: Colour
) -> None:
    (x0, y0), (x1, y1) = p0, p1
    dash = max(2, (x1 - x0) // 6)
    for start in range(x0, x1, 2 * dash):
        end = min(start + dash, x1)
        cv2.line(image, (start, y0), (end, y0), colour, 1)
        cv2.line(image, (start, y1), (end, y1), colour, 1)
    for start in range(y0, y1, 2 * dash):
        end = min(start + dash, y1)
        cv2.line(image, (x0, start), (x0, end), colour, 1)
        cv2.line(image, (x1, start), (x1, end), colour, 1)


def draw_patch_overlay(
    thumbnail: RGBImage, plans: Sequence[PatchPlan], downsample: float, side_px: float
) -> RGBImage:
    """Draw patch outlines on a copy of ``thumbnail``.

    Args:
        thumbnail: uint8 ``(H, W, 3)`` RGB of the whole slide.
        plans: sequence of PatchPlan. Placements in level-0 pixels.
        downsample: float. Level-0 pixels per thumbnail pixel.
        side_px: float. Patch side in level-0 pixels.

    Returns:
        uint8 RGB image the size of ``thumbnail``.
    """
    out = np.ascontiguousarray(thumbnail.copy())
    order = {IGNORE: 0, LABEL: 1, MASK: 2}  # ignored first so kept tiles stay visible
    for plan in sorted(plans, key=lambda p: (order[p.kind], p.source == CENTRED)):
        if plan.kind == IGNORE and plan.reason == "tissue":
            continue
        p0 = (int(plan.x_px / downsample), int(plan.y_px / downsample))
        p1 = (
            int((plan.x_px + side_px) / downsample) - 1,
            int((plan.y_px + side_px) / downsample) - 1,
        )
        if plan.source == CENTRED:
            cv2.rectangle(out, p0, p1, MAGENTA, 1)
        elif plan.kind == MASK:
            cv2.rectangle(out, p0, p1, GREEN, 1)
        elif plan.kind == LABEL:
            _dashed_rectangle(out, p0, p1, GREEN)
        else:
            cv2.rectangle(out, p0, p1, RED, 1)
    return out
