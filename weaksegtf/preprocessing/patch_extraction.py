"""Plan and read training patches from one slide and its annotation.

Planning is a pure function of the annotation, the tissue mask and the slide
geometry: it places every patch (centred extraction, Appendix B.2; sliding
window with a tissue threshold, Appendix B.1; tile rule, section 3.3 of Ciga &
Martel 2021) and decides what each becomes, without touching slide pixels.
Reading then fetches the RGB of each planned patch at the patch mpp from the
closest pyramid level.

Patch locations are level-0 pixels; a patch covers
``patch_size_px * patch_mpp / slide_mpp`` level-0 pixels a side.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np

from weaksegtf.errors import ConfigError
from weaksegtf.preprocessing.centred_extraction import centred_patch_centres
from weaksegtf.preprocessing.label_map import IGNORE_INDEX, LabelImage, LabelMap
from weaksegtf.preprocessing.tile_rule import IGNORE, LABEL, MASK, classify_tile
from weaksegtf.preprocessing.tissue_mask import TissueMask
from weaksegtf.slides.slide_reader import RGBImage, SlideReader
from weaksegtf.tiling import tile_grid

#: Extraction modes: centred patches only, tiles only, or both.
EXTRACTIONS = ("centred", "tiles", "both")
CENTRED, TILED = "centred", "tiled"


@dataclass
class PatchPlan:
    """Where one patch lies and what it becomes.

    Attributes:
        x_px: int. Left edge in level-0 pixels.
        y_px: int. Top edge in level-0 pixels.
        kind: str. ``"mask"`` (segmentation patch), ``"label"``
            (classification patch) or ``"ignore"``.
        source: str. ``"centred"`` or ``"tiled"``.
        label: int or None. Class of a ``"label"`` patch.
        classes: tuple of int. Annotated classes in the patch.
        tissue_fraction: float. Share of tissue in the patch.
        reason: str. Why an ``"ignore"`` patch was dropped (``"tissue"`` or
            ``"tile rule"``); empty otherwise.
        mask: uint8 ``(S, S)`` or None. Class indices at the patch mpp.
    """

    x_px: int
    y_px: int
    kind: str
    source: str
    label: int | None = None
    classes: tuple[int, ...] = ()
    tissue_fraction: float = 0.0
    reason: str = ""
    mask: LabelImage | None = field(default=None, repr=False)


@dataclass
class Patch:
    """A planned patch with its pixels.

    Attributes:
        plan: PatchPlan. Placement and decision.
        image: uint8 ``(S, S, 3)`` RGB at ``mpp``.
        level: int. Pyramid level the pixels were read from.
        mpp: float. Microns per pixel of ``image``.
    """

    plan: PatchPlan
    image: RGBImage = field(repr=False)
    level: int
    mpp: float


def patch_size_level0(patch_size_px: int, patch_mpp: float, slide_mpp: float) -> float:
    """Side of a patch in level-0 pixels."""
    return patch_size_px * patch_mpp / slide_mpp


def plan_tiled_patches(
    labels: LabelMap,
    slide_mpp: float,
    patch_mpp: float,
    patch_size_px: int,
    stride_px: int | None = None,
    tissue: TissueMask | None = None,
    min_tissue_fraction: float = 0.75,
    dominant_fraction: float = 0.9,
    mask_classes: int = 2,
    ignore_index: int = IGNORE_INDEX,
) -> list[PatchPlan]:
    """Sliding-window tiles with the tissue threshold and the tile rule.

    The grid is :func:`weaksegtf.tiling.tile_grid` over the slide at
    ``patch_mpp``. Tiles with less than ``min_tissue_fraction`` tissue are
    dropped (Appendix B.1 discards tiles under 75%); the others go through
    :func:`~weaksegtf.preprocessing.tile_rule.classify_tile`.

    Args:
        labels: LabelMap. The slide's annotation.
        slide_mpp: float. Microns per pixel of slide level 0.
        patch_mpp: float. Microns per pixel of the patches.
        patch_size_px: int. Patch side in pixels at ``patch_mpp``.
        stride_px: int, optional. Step between tiles at ``patch_mpp``.
            Defaults to ``patch_size_px``.
        tissue: TissueMask, optional. Defaults to ``None`` (no threshold).
        min_tissue_fraction: float. Defaults to 0.75.
        dominant_fraction: float. Tile rule threshold. Defaults to 0.9.
        mask_classes: int. Classes of a segmentation tile. Defaults to 2.
        ignore_index: int. "Not annotated" value. Defaults to 255.

    Returns:
        One :class:`PatchPlan` per grid tile, row-major, ignored ones included.
    """
    width0, height0 = labels.slide_size_px
    scale = slide_mpp / patch_mpp
    width, height = max(1, int(round(width0 * scale))), max(1, int(round(height0 * scale)))
    side0 = patch_size_level0(patch_size_px, patch_mpp, slide_mpp)
    origins = tile_grid(height, width, patch_size_px, stride_px)
    corners = np.rint(origins[:, ::-1] / scale).astype(np.int64)  # (x, y) level 0
    if tissue is not None:
        boxes = np.concatenate([corners, np.full((len(corners), 2), side0)], axis=1)
        fractions = tissue.tissue_fractions(boxes)
    else:
        fractions = np.ones(len(corners))
    plans = []
    for (x0, y0), fraction in zip(corners.tolist(), fractions.tolist()):
        if fraction < min_tissue_fraction:
            plans.append(PatchPlan(x0, y0, IGNORE, TILED, tissue_fraction=fraction, reason="tissue"))
            continue
        mask, inside = labels.read((x0, y0), (side0, side0), (patch_size_px, patch_size_px))
        decision = classify_tile(mask, dominant_fraction, mask_classes, ignore_index, inside)
        plans.append(
            PatchPlan(
                x0,
                y0,
                decision.kind,
                TILED,
                label=decision.label,
                classes=decision.classes,
                tissue_fraction=fraction,
                reason="tile rule" if decision.kind == IGNORE else "",
                mask=mask if decision.kind == MASK else None,
            )
        )
    return plans


def plan_centred_patches(
    labels: LabelMap,
    slide_mpp: float,
    patch_mpp: float,
    patch_size_px: int,
    classes: Sequence[int] | None = None,
    background: int | None = 0,
    tissue: TissueMask | None = None,
    ignore_index: int = IGNORE_INDEX,
    seed: int = 0,
) -> list[PatchPlan]:
    """Segmentation patches centred on labelled regions (Appendix B.2).

    Centres come from
    :func:`~weaksegtf.preprocessing.centred_extraction.centred_patch_centres`
    on the annotation at its own resolution. A patch that would stick out of
    the slide is shifted inside (a slide smaller than the patch starts at 0 and
    is padded), and patches landing on the same corner are kept once.

    Returns:
        One ``"mask"`` :class:`PatchPlan` per distinct patch.
    """
    width0, height0 = labels.slide_size_px
    side0 = patch_size_level0(patch_size_px, patch_mpp, slide_mpp)
    dx, dy = labels.downsample_xy
    centres, _ = centred_patch_centres(
        labels.labels,
        patch_size_px=side0 / labels.downsample,
        classes=classes,
        background=background,
        ignore_index=ignore_index,
        seed=seed,
    )
    corners = []
    seen = set()
    for cy, cx in centres.tolist():
        x0 = int(round(np.clip(cx * dx - side0 / 2.0, 0, max(0.0, width0 - side0))))
        y0 = int(round(np.clip(cy * dy - side0 / 2.0, 0, max(0.0, height0 - side0))))
        if (x0, y0) not in seen:
            seen.add((x0, y0))
            corners.append((x0, y0))
    fractions = (
        tissue.tissue_fractions([(x, y, side0, side0) for x, y in corners])
        if tissue is not None and corners
        else np.ones(len(corners))
    )
    plans = []
    for (x0, y0), fraction in zip(corners, fractions.tolist()):
        mask, _ = labels.read((x0, y0), (side0, side0), (patch_size_px, patch_size_px))
        present = np.flatnonzero(np.bincount(mask.ravel(), minlength=256))
        plans.append(
            PatchPlan(
                x0,
                y0,
                MASK,
                CENTRED,
                classes=tuple(int(c) for c in present if c != ignore_index),
                tissue_fraction=fraction,
                mask=mask,
            )
        )
    return plans


def plan_patches(
    labels: LabelMap,
    slide_mpp: float,
    patch_mpp: float,
    patch_size_px: int,
    extraction: str = "both",
    stride_px: int | None = None,
    tissue: TissueMask | None = None,
    min_tissue_fraction: float = 0.75,
    dominant_fraction: float = 0.9,
    mask_classes: int = 2,
    centred_classes: Sequence[int] | None = None,
    background: int | None = 0,
    ignore_index: int = IGNORE_INDEX,
    seed: int = 0,
) -> list[PatchPlan]:
    """Centred and/or tiled plans for one slide (see the two planners)."""
    if extraction not in EXTRACTIONS:
        raise ConfigError(f"extraction must be one of {EXTRACTIONS}, got {extraction!r}")
    if patch_size_px <= 0 or patch_mpp <= 0:
        raise ConfigError(
            f"patch_size_px and patch_mpp must be positive, got {patch_size_px} and {patch_mpp}"
        )
    plans: list[PatchPlan] = []
    if extraction in ("centred", "both"):
        plans += plan_centred_patches(
            labels, slide_mpp, patch_mpp, patch_size_px, centred_classes, background, tissue,
            ignore_index, seed,
        )
    if extraction in ("tiles", "both"):
        plans += plan_tiled_patches(
            labels, slide_mpp, patch_mpp, patch_size_px, stride_px, tissue,
            min_tissue_fraction, dominant_fraction, mask_classes, ignore_index,
        )
    return plans


def read_patches(
    slide: SlideReader, plans: Sequence[PatchPlan], patch_mpp: float, patch_size_px: int
) -> Iterator[Patch]:
    """Read the pixels of every kept (non-ignored) plan, in order."""
    level = slide.best_level_for_mpp(patch_mpp)
    size = (patch_size_px, patch_size_px)
    for plan in plans:
        if plan.kind in (MASK, LABEL):
            image = slide.read_at_mpp((plan.x_px, plan.y_px), size, patch_mpp)
            yield Patch(plan, image, level, patch_mpp)
