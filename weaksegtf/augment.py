"""Augmentation applied identically to an image and its mask (numpy and OpenCV).

The list follows section 3 of Bokhorst et al., "Learning from sparsely
annotated data for semantic segmentation in histopathology images" (MIDL
2019): random flipping, rotation, elastic deformation, blurring, brightness
(random gamma), colour and contrast changes.

Geometric transforms (flips, 90-degree rotations, elastic deformation) move
image and mask with the same random draw; the mask is resampled by nearest
neighbour so no class index is invented, and the "not annotated" value 255
survives. Colour transforms touch the image only, so label patches can get
exactly the same colour augmentation (:meth:`Augmenter.augment_colour`).
No TensorFlow here: :mod:`weaksegtf.augment_tf` wraps this for ``tf.data``.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt

from weaksegtf.errors import ConfigError, DataError

Image = npt.NDArray[np.generic]
Mask = npt.NDArray[np.uint8]

_INTERPOLATIONS = {"linear": cv2.INTER_LINEAR, "nearest": cv2.INTER_NEAREST}


@dataclass
class Augmenter:
    """Random augmentation of ``(image, mask)`` pairs and of label patches.

    Each call draws new parameters from its own generator. Ranges are
    ``(low, high)``; a range of ``(1, 1)`` (or ``(0, 0)`` for shifts)
    switches that transform off.

    Args:
        flip: bool. Random horizontal and vertical flips. Defaults to ``True``.
        rotate90: bool. Random rotation by a multiple of 90 degrees (only 180
            for non-square images, so the shape is kept). Defaults to ``True``.
        elastic_probability: float. Chance of an elastic deformation.
            Defaults to 0.5.
        elastic_magnitude_px: float. RMS displacement of the deformation in
            pixels. Defaults to 3.0.
        elastic_sigma_px: float. Smoothness of the displacement field (Gaussian
            sigma in pixels). Defaults to 8.0.
        blur_probability: float. Chance of a Gaussian blur. Defaults to 0.2.
        blur_sigma_px: (float, float). Blur sigma range in pixels. Defaults to
            ``(0.3, 1.5)``.
        gamma_range: (float, float). Random gamma (brightness). Defaults to
            ``(0.75, 1.35)``.
        brightness_shift: float. Additive brightness shift, as a fraction of
            full scale, drawn from ``[-shift, shift]``. Defaults to 0.05.
        hue_shift_deg: float. Hue shift in degrees, drawn from
            ``[-shift, shift]``. Defaults to 8.0.
        saturation_range: (float, float). Saturation scale. Defaults to
            ``(0.8, 1.2)``.
        channel_scale_range: (float, float). Independent scale of each RGB
            channel (colour jitter). Defaults to ``(0.95, 1.05)``.
        contrast_range: (float, float). Contrast scale around the mean.
            Defaults to ``(0.8, 1.2)``.
        image_interpolation: str. ``"linear"`` or ``"nearest"`` resampling of
            the image under elastic deformation. Defaults to ``"linear"``.
        geometric: bool. Apply the geometric transforms. Defaults to ``True``.
        colour: bool. Apply the colour transforms. Defaults to ``True``.
        seed: int, optional. Seed of the generator. Defaults to ``None``.

    Example:
    >>> augmenter = Augmenter(seed=0)
    >>> image, mask = augmenter(np.zeros((64, 64, 3), np.uint8), np.zeros((64, 64), np.uint8))
    >>> image.shape, mask.shape
    ((64, 64, 3), (64, 64))
    """

    flip: bool = True
    rotate90: bool = True
    elastic_probability: float = 0.5
    elastic_magnitude_px: float = 3.0
    elastic_sigma_px: float = 8.0
    blur_probability: float = 0.2
    blur_sigma_px: tuple[float, float] = (0.3, 1.5)
    gamma_range: tuple[float, float] = (0.75, 1.35)
    brightness_shift: float = 0.05
    hue_shift_deg: float = 8.0
    saturation_range: tuple[float, float] = (0.8, 1.2)
    channel_scale_range: tuple[float, float] = (0.95, 1.05)
    contrast_range: tuple[float, float] = (0.8, 1.2)
    image_interpolation: str = "linear"
    geometric: bool = True
    colour: bool = True
    seed: int | None = None
    _rng: np.random.Generator = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.image_interpolation not in _INTERPOLATIONS:
            raise ConfigError(
                f"image_interpolation must be one of {sorted(_INTERPOLATIONS)}, "
                f"got {self.image_interpolation!r}"
            )
        for name in ("elastic_probability", "blur_probability"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ConfigError(f"{name} must be in [0, 1], got {getattr(self, name)}")
        self._rng = np.random.default_rng(self.seed)

    def get_config(self) -> dict[str, Any]:
        """Constructor arguments, so ``Augmenter(**a.get_config())`` rebuilds it."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.init}

    # ------------------------------------------------------------------ public
    def __call__(
        self, image: Image, mask: Mask | None = None, rng: np.random.Generator | None = None
    ) -> tuple[Image, Mask | None]:
        """Augment an image and (optionally) its mask with one random draw.

        Args:
            image: ``(H, W, 3)`` uint8, or float in ``[0, 1]`` (or in
                ``[0, 255]`` when its maximum exceeds 1).
            mask: ``(H, W)`` or ``(H, W, 1)`` uint8 class indices, optional.
            rng: numpy Generator, optional. Defaults to the augmenter's own.

        Returns:
            ``(image, mask)`` with the input dtypes and shapes.
        """
        rng = self._rng if rng is None else rng
        image = self._check_image(image)
        if mask is not None:
            mask = np.asarray(mask)
            if mask.shape[:2] != image.shape[:2] or mask.ndim not in (2, 3):
                raise DataError(
                    f"mask has shape {mask.shape} but image is {image.shape}; expected (H, W) "
                    f"or (H, W, 1) with the image's height and width"
                )
        if self.geometric:
            image, mask = self._geometric(image, mask, rng)
        if self.colour:
            image = self._colour(image, rng)
        return image, mask

    def augment_colour(self, image: Image, rng: np.random.Generator | None = None) -> Image:
        """Colour augmentation only (for label patches, which have no mask)."""
        rng = self._rng if rng is None else rng
        return self._colour(self._check_image(image), rng)

    # ------------------------------------------------------------------ geometry
    def _geometric(
        self, image: Image, mask: Mask | None, rng: np.random.Generator
    ) -> tuple[Image, Mask | None]:
        if self.flip:
            for axis in (0, 1):
                if rng.random() < 0.5:
                    image = np.flip(image, axis)
                    mask = None if mask is None else np.flip(mask, axis)
        if self.rotate90:
            square = image.shape[0] == image.shape[1]
            turns = int(rng.integers(4)) if square else 2 * int(rng.integers(2))
            image = np.rot90(image, turns, axes=(0, 1))
            mask = None if mask is None else np.rot90(mask, turns, axes=(0, 1))
        image = np.ascontiguousarray(image)
        mask = None if mask is None else np.ascontiguousarray(mask)
        if self.elastic_magnitude_px > 0 and rng.random() < self.elastic_probability:
            map_x, map_y = self._elastic_maps(image.shape[:2], rng)
            border = cv2.BORDER_REFLECT_101
            interpolation = _INTERPOLATIONS[self.image_interpolation]
            image = cv2.remap(image, map_x, map_y, interpolation, borderMode=border)
            if mask is not None:
                squeezed = mask.reshape(mask.shape[:2])
                warped = cv2.remap(squeezed, map_x, map_y, cv2.INTER_NEAREST, borderMode=border)
                mask = warped.reshape(mask.shape)
        return image, mask

    def _elastic_maps(
        self, shape: tuple[int, int], rng: np.random.Generator
    ) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]:
        """Sampling maps of a smooth random displacement (Simard et al., 2003).

        Uniform noise is smoothed with a Gaussian of ``elastic_sigma_px`` and
        rescaled to an RMS of ``elastic_magnitude_px``, so the strength is in
        pixels whatever the smoothness.
        """
        height, width = shape
        fields = []
        for _ in range(2):
            noise = rng.uniform(-1.0, 1.0, size=(height, width)).astype(np.float32)
            smooth = cv2.GaussianBlur(noise, (0, 0), self.elastic_sigma_px)
            rms = float(np.sqrt(np.mean(smooth**2))) or 1.0
            fields.append(smooth * (self.elastic_magnitude_px / rms))
        grid_y, grid_x = np.mgrid[0:height, 0:width].astype(np.float32)
        return grid_x + fields[0], grid_y + fields[1]

    # ------------------------------------------------------------------ colour
    def _colour(self, image: Image, rng: np.random.Generator) -> Image:
        dtype = image.dtype
        scale = 255.0 if dtype == np.uint8 or float(image.max(initial=0.0)) > 1.0 else 1.0
        work = image.astype(np.float32) / np.float32(scale)
        if self.blur_probability > 0 and rng.random() < self.blur_probability:
            work = cv2.GaussianBlur(work, (0, 0), float(rng.uniform(*self.blur_sigma_px)))
        # Brightness as a random gamma, then a small shift (Bokhorst et al., sec. 3).
        work = np.power(np.clip(work, 0.0, 1.0), np.float32(rng.uniform(*self.gamma_range)))
        work += np.float32(rng.uniform(-self.brightness_shift, self.brightness_shift))
        hsv = cv2.cvtColor(np.clip(work, 0.0, 1.0), cv2.COLOR_RGB2HSV)  # H in degrees
        hsv[:, :, 0] = np.mod(hsv[:, :, 0] + rng.uniform(-self.hue_shift_deg, self.hue_shift_deg), 360.0)
        hsv[:, :, 1] = np.clip(hsv[:, :, 1] * rng.uniform(*self.saturation_range), 0.0, 1.0)
        work = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)
        work *= rng.uniform(*self.channel_scale_range, size=3).astype(np.float32)
        mean = work.mean(axis=(0, 1), keepdims=True)
        work = (work - mean) * np.float32(rng.uniform(*self.contrast_range)) + mean
        work = np.clip(work, 0.0, 1.0) * np.float32(scale)
        if dtype == np.uint8:
            return np.rint(work).astype(np.uint8)
        return work.astype(dtype)

    @staticmethod
    def _check_image(image: Image) -> Image:
        image = np.asarray(image)
        if image.ndim != 3 or image.shape[2] != 3:
            raise DataError(f"image has shape {image.shape}; expected (H, W, 3) RGB")
        if image.dtype != np.uint8 and not np.issubdtype(image.dtype, np.floating):
            raise DataError(f"image has pixel type {image.dtype}; expected uint8 or float")
        return image
