"""How well a tiled result matches a whole-image one, near tile borders and away from them."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from weaksegtf.errors import ConfigError
from weaksegtf.inference.tile_scheduler import TilePlan


def seam_band(plan: TilePlan, band_px: int = 2) -> npt.NDArray[np.bool_]:
    """Pixels within ``band_px`` of a border between owned boxes (the places a seam would show)."""
    rows = np.zeros(plan.height_px, dtype=bool)
    cols = np.zeros(plan.width_px, dtype=bool)
    for cut in plan.y_cuts[1:-1]:
        rows[max(0, cut - band_px) : cut + band_px] = True
    for cut in plan.x_cuts[1:-1]:
        cols[max(0, cut - band_px) : cut + band_px] = True
    return rows[:, None] | cols[None, :]


def seam_agreement(
    tiled: npt.ArrayLike, whole: npt.ArrayLike, plan: TilePlan, band_px: int = 2
) -> dict[str, float | int]:
    """Agreement of tiled and whole-image labels: overall, in the seam band, and elsewhere.

    Args:
        tiled: ``(H, W)`` labels stitched from tiles.
        whole: ``(H, W)`` labels of one forward pass over the whole image.
        plan: TilePlan. The tiles ``tiled`` was made with.
        band_px: int. Half-width of the band around owned-box borders. Defaults to 2.

    Returns:
        dict with ``agreement``, ``seam_agreement``, ``interior_agreement``
        (fractions of pixels with the same class) and the pixel counts.

    Example:
    >>> seam_agreement(tiled, whole, plan)["seam_agreement"]  # doctest: +SKIP
    0.9987
    """
    tiled, whole = np.asarray(tiled), np.asarray(whole)
    if tiled.shape != whole.shape or tiled.shape != (plan.height_px, plan.width_px):
        raise ConfigError(
            f"tiled {tiled.shape} and whole {whole.shape} labels must both be "
            f"({plan.height_px}, {plan.width_px}), the plan's size"
        )
    same = tiled == whole
    band = seam_band(plan, band_px)

    def fraction(where: np.ndarray) -> float:
        return float(same[where].mean()) if where.any() else 1.0

    return {
        "agreement": float(same.mean()),
        "seam_agreement": fraction(band),
        "interior_agreement": fraction(~band),
        "seam_pixels": int(band.sum()),
        "interior_pixels": int((~band).sum()),
    }
