"""Tissue (foreground) mask by HSV saturation, Appendix B.1 of Ciga & Martel.

Ciga & Martel, "Learning to segment images with classification labels",
Medical Image Analysis 2021, Appendix B.1: pixels whose HSV saturation is
below 10% of the maximum are background; holes in the result are filled (ducts
surrounded by stroma may be regions of interest) and a morphological opening
removes salt-and-pepper noise. The mask is computed on a low-resolution image
and every size is given in micrometres, so the result does not depend on the
scanner's magnification.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import numpy.typing as npt

from weaksegtf.errors import ConfigError
from weaksegtf.slides.slide_reader import RGBImage, SlideReader

BoolMask = npt.NDArray[np.bool_]

#: Resolution the slide-level mask is computed at: 8 um/px is 1.25x, the
#: magnification the paper works at (Appendix B.2).
DEFAULT_TISSUE_MPP = 8.0


def fill_mask_holes(mask: np.ndarray) -> np.ndarray:
    """Fill the holes of a boolean mask: background not 4-connected to the image border.

    The same result as ``scipy.ndimage.binary_fill_holes`` with its default
    structure (tested on random masks), by one OpenCV flood fill of the
    background from a one-pixel frame, so the base install needs no SciPy.
    """
    mask = np.asarray(mask, bool)
    framed = np.zeros((mask.shape[0] + 2, mask.shape[1] + 2), np.uint8)
    framed[1:-1, 1:-1] = mask
    cv2.floodFill(framed, None, (0, 0), 1, flags=4)  # background reachable from the frame becomes 1
    return mask | (framed[1:-1, 1:-1] == 0)


def tissue_mask(
    image: RGBImage,
    mpp: float,
    saturation_threshold: float = 0.1,
    fill_holes: bool = True,
    opening_radius_um: float = 16.0,
    min_tissue_area_um2: float = 10_000.0,
) -> BoolMask:
    """Foreground mask of an RGB image, Appendix B.1.

    Args:
        image: uint8 ``(H, W, 3)`` RGB image, usually a low-resolution slide.
        mpp: float. Microns per pixel of ``image``.
        saturation_threshold: float. Fraction of the maximum saturation below
            which a pixel is background. Defaults to 0.1 (the paper's 10%).
        fill_holes: bool. Fill enclosed background. Defaults to ``True``.
        opening_radius_um: float. Radius of the disk of the morphological
            opening, in micrometres. Defaults to 16 (2 px at 8 um/px).
        min_tissue_area_um2: float. Connected tissue smaller than this is
            dropped, in square micrometres. Defaults to 10,000 (a 100 um square).

    Returns:
        bool array of shape ``(H, W)``; ``True`` is tissue.

    Example:
    >>> white = np.full((64, 64, 3), 255, np.uint8)
    >>> tissue_mask(white, mpp=8.0).any()
    False
    """
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ConfigError(
            f"tissue_mask needs a (H, W, 3) uint8 RGB image, got {image.shape} {image.dtype}"
        )
    if not 0.0 <= saturation_threshold <= 1.0:
        raise ConfigError(f"saturation_threshold must be in [0, 1], got {saturation_threshold}")
    saturation = cv2.cvtColor(image, cv2.COLOR_RGB2HSV)[:, :, 1]
    # OpenCV's 8-bit saturation runs 0..255, so "10% of the maximum" is 25.5.
    mask = saturation.astype(np.float32) >= saturation_threshold * 255.0
    if fill_holes:
        mask = fill_mask_holes(mask)
    radius_px = int(round(opening_radius_um / mpp))
    if radius_px >= 1:
        kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius_px + 1,) * 2)
        mask = cv2.morphologyEx(mask.astype(np.uint8), cv2.MORPH_OPEN, kernel).astype(bool)
    min_area_px = min_tissue_area_um2 / (mpp * mpp)
    if min_area_px > 1 and mask.any():
        count, components, stats, _ = cv2.connectedComponentsWithStats(
            mask.astype(np.uint8), connectivity=8
        )
        keep = stats[:, cv2.CC_STAT_AREA] >= min_area_px
        keep[0] = False  # component 0 is the background
        mask = keep[components]
    return np.asarray(mask, dtype=bool)


@dataclass
class TissueMask:
    """A slide's tissue mask with the geometry to query it in level-0 pixels.

    Args:
        mask: bool ``(H, W)`` array, ``True`` for tissue.
        mpp: float. Microns per pixel of ``mask``.
        slide_size_px: (int, int). ``(width, height)`` of slide level 0.
        slide_mpp: float. Microns per pixel of slide level 0.

    Example:
    >>> with open_slide("CMU-1-Small-Region.svs") as slide:  # doctest: +SKIP
    ...     tissue = TissueMask.from_slide(slide)
    >>> round(tissue.fraction, 2)  # doctest: +SKIP
    0.77
    """

    mask: BoolMask
    mpp: float
    slide_size_px: tuple[int, int]
    slide_mpp: float

    def __post_init__(self) -> None:
        self._integral: np.ndarray | None = None

    @classmethod
    def from_slide(
        cls,
        slide: SlideReader,
        mpp: float = DEFAULT_TISSUE_MPP,
        saturation_threshold: float = 0.1,
        fill_holes: bool = True,
        opening_radius_um: float = 16.0,
        min_tissue_area_um2: float = 10_000.0,
    ) -> "TissueMask":
        """Compute the mask of a whole slide at ``mpp`` (from its best level)."""
        # A slide coarser than the requested mpp is used as it is, not upscaled.
        mpp = max(float(mpp), slide.mpp)
        image = slide.read_full_at_mpp(mpp)
        width0, height0 = slide.dimensions
        # The image is rounded to whole pixels, so its true mpp differs slightly.
        actual_mpp = slide.mpp * (width0 / image.shape[1] + height0 / image.shape[0]) / 2.0
        mask = tissue_mask(
            image,
            actual_mpp,
            saturation_threshold=saturation_threshold,
            fill_holes=fill_holes,
            opening_radius_um=opening_radius_um,
            min_tissue_area_um2=min_tissue_area_um2,
        )
        return cls(mask, actual_mpp, slide.dimensions, slide.mpp)

    @property
    def fraction(self) -> float:
        """Fraction of the slide covered by tissue."""
        return float(self.mask.mean()) if self.mask.size else 0.0

    @property
    def area_um2(self) -> float:
        """Tissue area in square micrometres."""
        return float(self.mask.sum()) * self.mpp * self.mpp

    def tissue_fractions(self, boxes_px: np.ndarray) -> npt.NDArray[np.float64]:
        """Tissue fraction of each box's part inside the slide.

        Args:
            boxes_px: ``(N, 4)`` array of ``(x, y, width, height)`` in level-0
                pixels.

        Returns:
            float array ``(N,)``; a box entirely outside the slide gets 0.
        """
        boxes = np.asarray(boxes_px, dtype=np.float64).reshape(-1, 4)
        if self._integral is None:
            self._integral = cv2.integral(self.mask.astype(np.uint8), sdepth=cv2.CV_64F)
        height, width = self.mask.shape
        scale_x = width / self.slide_size_px[0]
        scale_y = height / self.slide_size_px[1]
        x0 = np.clip(np.round(boxes[:, 0] * scale_x), 0, width).astype(np.int64)
        y0 = np.clip(np.round(boxes[:, 1] * scale_y), 0, height).astype(np.int64)
        x1 = np.clip(np.round((boxes[:, 0] + boxes[:, 2]) * scale_x), 0, width).astype(np.int64)
        y1 = np.clip(np.round((boxes[:, 1] + boxes[:, 3]) * scale_y), 0, height).astype(np.int64)
        # A box smaller than one mask pixel still samples the pixel it falls in.
        x1 = np.where((x1 <= x0) & (x0 < width), x0 + 1, x1)
        y1 = np.where((y1 <= y0) & (y0 < height), y0 + 1, y1)
        area = (x1 - x0) * (y1 - y0)
        s = self._integral
        tissue = s[y1, x1] - s[y0, x1] - s[y1, x0] + s[y0, x0]
        return np.where(area > 0, tissue / np.maximum(area, 1), 0.0)

    def to_image(self) -> npt.NDArray[np.uint8]:
        """The mask as a uint8 image (255 tissue, 0 background) to save or view."""
        return self.mask.astype(np.uint8) * 255

    def overlay(self, image: RGBImage) -> RGBImage:
        """``image`` (any size, e.g. a thumbnail) with the tissue outlined in blue."""
        mask = cv2.resize(
            self.to_image(), (image.shape[1], image.shape[0]), interpolation=cv2.INTER_NEAREST
        )
        contours, _ = cv2.findContours(mask, cv2.RETR_LIST, cv2.CHAIN_APPROX_SIMPLE)
        out = image.copy()
        cv2.drawContours(out, contours, -1, (0, 0, 255), 1)
        return out
