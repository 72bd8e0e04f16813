"""Macenko stain normalisation with fit/transform, batched and robust.

Macenko et al., "A method for normalizing histology slides for quantitative
analysis", ISBI 2009. Pixels become optical densities ``OD = -ln(I / I0)``;
the plane of the two largest eigenvectors of the OD covariance holds both
stains; the stain vectors are the robust extremes (``alpha`` and
``100 - alpha`` percentiles) of the angle of each pixel in that plane; the
concentrations of a tile are rescaled so their 99th percentile matches the
reference, and recomposed with the reference stain vectors.

Every step is vectorised over a batch of tiles. A tile with too few stained
pixels, or whose two stain vectors coincide (a flat colour), has no stain
basis to speak of: instead of a ``LinAlgError`` or NaNs it passes through
unchanged and :attr:`MacenkoNormalizer.n_unchanged` counts it.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import numpy.typing as npt

from weaksegtf.errors import ConfigError, DataError
from weaksegtf.io import write_text_atomic

RGBBatch = npt.NDArray[np.uint8]


class StainWarning(UserWarning):
    """Some tiles had too little stain to normalise and were left unchanged."""


def _masked_percentile(
    values: npt.NDArray[np.floating], valid: npt.NDArray[np.bool_], q: float
) -> npt.NDArray[np.float64]:
    """Per-row percentile over the valid entries (linear interpolation).

    ``np.nanpercentile`` loops over rows in Python; sorting with invalid
    entries pushed to the end keeps the whole batch in one call.
    """
    filled = np.where(valid, values, np.inf)
    ordered = np.sort(filled, axis=1)
    counts = valid.sum(axis=1)
    position = (np.maximum(counts, 1) - 1) * (q / 100.0)
    low = np.floor(position).astype(np.int64)
    high = np.minimum(low + 1, np.maximum(counts - 1, 0))
    rows = np.arange(values.shape[0])
    lower, upper = ordered[rows, low], ordered[rows, high]
    # Rows without a valid entry get 0; their tiles are flagged unusable anyway.
    lower = np.where(counts > 0, lower, 0.0)
    upper = np.where(counts > 0, upper, 0.0)
    return lower + (upper - lower) * (position - low)


class MacenkoNormalizer:
    """Macenko stain normaliser: ``fit(reference)`` then ``transform(tiles)``.

    Args:
        light_intensity: float. Intensity of the illuminant ``I0``. Defaults to
            255, so white glass has zero optical density and stays white.
        alpha: float. Percentile (and ``100 - alpha``) of the stain angles.
            Defaults to 1.
        beta: float. Pixels with an OD below this in any channel are
            transparent and do not shape the stain vectors. Defaults to 0.15.
        max_percentile: float. Percentile of the concentrations matched to the
            reference. Defaults to 99.
        min_stain_fraction: float. A tile needs at least this fraction (and at
            least 16) of stained pixels to be normalised. Defaults to 0.01.
        keep_residual: bool. Add back the part of each pixel's optical density
            that the tile's two stains do not explain (pigment, ink, red
            cells). Macenko drops it, which pulls such colours towards
            purple; keeping it makes ``fit(x).transform(x)`` return ``x``.
            Defaults to ``False`` (the original method).

    Example:
    >>> normalizer = MacenkoNormalizer().fit(reference_tile)  # doctest: +SKIP
    >>> normalized = normalizer.transform(batch_of_tiles)  # doctest: +SKIP
    >>> normalizer.save("stain.json")  # doctest: +SKIP
    """

    def __init__(
        self,
        light_intensity: float = 255.0,
        alpha: float = 1.0,
        beta: float = 0.15,
        max_percentile: float = 99.0,
        min_stain_fraction: float = 0.01,
        keep_residual: bool = False,
    ) -> None:
        if not 0.0 <= alpha < 50.0:
            raise ConfigError(f"alpha must be in [0, 50), got {alpha}")
        self.light_intensity = float(light_intensity)
        self.alpha = float(alpha)
        self.beta = float(beta)
        self.max_percentile = float(max_percentile)
        self.min_stain_fraction = float(min_stain_fraction)
        self.keep_residual = bool(keep_residual)
        self.stain_matrix: npt.NDArray[np.float64] | None = None
        self.max_concentrations: npt.NDArray[np.float64] | None = None
        self.n_transformed = 0
        self.n_unchanged = 0

    # ------------------------------------------------------------------ core
    def _optical_density(self, tiles: RGBBatch) -> npt.NDArray[np.float32]:
        # +1 on both sides keeps log finite at 0 and maps 255 exactly to OD 0.
        scale = np.float32(1.0 / (self.light_intensity + 1.0))
        return -np.log((tiles.astype(np.float32) + 1.0) * scale)

    def _stains(
        self, density: npt.NDArray[np.float32]
    ) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64], npt.NDArray[np.bool_]]:
        """Stain matrices ``(N, 3, 2)``, max concentrations ``(N, 2)``, usable ``(N,)``."""
        count, pixels, _ = density.shape
        valid = np.all(density >= self.beta, axis=2)
        n_valid = valid.sum(axis=1)
        usable = n_valid >= max(16, self.min_stain_fraction * pixels)
        # Batched matrix products (BLAS) rather than einsum: 10x faster here.
        weighted = density * valid[:, :, None]
        n = np.maximum(n_valid, 1).astype(np.float64)
        mean = weighted.sum(axis=1, dtype=np.float64) / n[:, None]
        second = (weighted.transpose(0, 2, 1) @ density).astype(np.float64) / n[:, None, None]
        covariance = second - mean[:, :, None] * mean[:, None, :]
        covariance[~usable] = np.eye(3)  # keeps eigh finite; these tiles are not used
        _, vectors = np.linalg.eigh(covariance)
        plane = vectors[:, :, 1:3]  # the two largest eigenvectors
        # Point both basis vectors into the positive-OD half-space.
        plane = plane * np.where(plane[:, :1, :] < 0, -1.0, 1.0)
        projected = density @ plane.astype(np.float32)
        angles = np.arctan2(projected[:, :, 1], projected[:, :, 0])
        low = _masked_percentile(angles, valid, self.alpha)
        high = _masked_percentile(angles, valid, 100.0 - self.alpha)
        v_low = np.einsum("nic,nc->ni", plane, np.stack([np.cos(low), np.sin(low)], axis=1))
        v_high = np.einsum("nic,nc->ni", plane, np.stack([np.cos(high), np.sin(high)], axis=1))
        # Haematoxylin absorbs more red than eosin: it goes first.
        h_first = (v_low[:, 0] > v_high[:, 0])[:, None]
        haematoxylin = np.where(h_first, v_low, v_high)
        eosin = np.where(h_first, v_high, v_low)
        stains = np.stack([haematoxylin, eosin], axis=2)
        stains /= np.linalg.norm(stains, axis=1, keepdims=True) + 1e-12
        # Two stain vectors this close (a flat colour) make the unmixing singular.
        separation = np.linalg.norm(np.cross(stains[:, :, 0], stains[:, :, 1]), axis=1)
        usable &= separation > 1e-2
        stains[~usable] = np.array([[1.0, 0.0], [0.0, 1.0], [0.0, 0.0]])
        concentrations = density @ np.linalg.pinv(stains).transpose(0, 2, 1).astype(np.float32)
        max_concentrations = np.percentile(concentrations, self.max_percentile, axis=1)
        usable &= np.all(max_concentrations > 1e-2, axis=1)
        usable &= np.all(np.isfinite(stains), axis=(1, 2)) & np.all(
            np.isfinite(max_concentrations), axis=1
        )
        return stains, max_concentrations, usable

    # ------------------------------------------------------------------ API
    def fit(self, reference: np.ndarray) -> "MacenkoNormalizer":
        """Learn the reference stain vectors and concentrations.

        Args:
            reference: uint8 RGB ``(H, W, 3)``, or a batch ``(N, H, W, 3)``
                pooled as one image.

        Returns:
            ``self``.

        Raises:
            DataError: the reference has too little stain to define a basis.
        """
        reference = self._check_tiles(reference, "reference")
        density = self._optical_density(reference).reshape(1, -1, 3)
        stains, max_concentrations, usable = self._stains(density)
        if not usable[0]:
            raise DataError(
                f"stain reference of shape {reference.shape} has too little stain: fewer than "
                f"{self.min_stain_fraction:.0%} of its pixels have an optical density above "
                f"{self.beta} in every channel, or it holds a single colour; expected an H&E "
                f"image with tissue"
            )
        self.stain_matrix = stains[0]
        self.max_concentrations = max_concentrations[0]
        return self

    def transform(self, tiles: np.ndarray) -> RGBBatch:
        """Normalise one tile ``(H, W, 3)`` or a batch ``(N, H, W, 3)`` of uint8 RGB.

        Tiles with too little stain are returned unchanged and counted in
        :attr:`n_unchanged` (with one :class:`StainWarning` per call).
        """
        if self.stain_matrix is None or self.max_concentrations is None:
            raise ConfigError("MacenkoNormalizer.transform called before fit() or load()")
        tiles = self._check_tiles(tiles, "tiles")
        single = tiles.ndim == 3
        batch = tiles[None] if single else tiles
        count = batch.shape[0]
        density = self._optical_density(batch).reshape(count, -1, 3)
        stains, max_concentrations, usable = self._stains(density)
        concentrations = density @ np.linalg.pinv(stains).transpose(0, 2, 1).astype(np.float32)
        ratio = self.max_concentrations[None, :] / np.where(usable[:, None], max_concentrations, 1)
        scaled = concentrations * ratio[:, None, :].astype(np.float32)
        normalized = scaled @ self.stain_matrix.T.astype(np.float32)
        if self.keep_residual:
            normalized += density - concentrations @ stains.transpose(0, 2, 1).astype(np.float32)
        rgb = (self.light_intensity + 1.0) * np.exp(-normalized) - 1.0
        rgb = np.clip(np.rint(rgb), 0, 255).astype(np.uint8).reshape(batch.shape)
        rgb[~usable] = batch[~usable]
        unchanged = int((~usable).sum())
        self.n_transformed += count - unchanged
        self.n_unchanged += unchanged
        if unchanged:
            warnings.warn(
                "tiles with too little stain to normalise were left unchanged; "
                "MacenkoNormalizer.n_unchanged counts them",
                StainWarning,
                stacklevel=2,
            )
        return rgb[0] if single else rgb

    def fit_transform(self, tiles: np.ndarray) -> RGBBatch:
        """``fit(tiles)`` then ``transform(tiles)``."""
        return self.fit(tiles).transform(tiles)

    # ------------------------------------------------------------------ persistence
    def get_config(self) -> dict[str, Any]:
        """Constructor arguments, as saved by :meth:`save`."""
        return {
            "light_intensity": self.light_intensity,
            "alpha": self.alpha,
            "beta": self.beta,
            "max_percentile": self.max_percentile,
            "min_stain_fraction": self.min_stain_fraction,
            "keep_residual": self.keep_residual,
        }

    def save(self, path: Path | str) -> None:
        """Write the fitted reference as JSON, to load for training or inference."""
        if self.stain_matrix is None or self.max_concentrations is None:
            raise ConfigError("MacenkoNormalizer.save called before fit()")
        document = {
            "type": "MacenkoNormalizer",
            "config": self.get_config(),
            "stain_matrix": self.stain_matrix.tolist(),
            "max_concentrations": self.max_concentrations.tolist(),
        }
        write_text_atomic(path, json.dumps(document, indent=2) + "\n")

    @classmethod
    def from_reference(cls, reference: Mapping[str, Any] | Path | str, where: str | None = None) -> "MacenkoNormalizer":
        """A fitted normaliser from a reference :func:`read_stain_reference` accepts (a saved file or its dict).

        Raises:
            DataError: the reference is missing or is not a saved normaliser.
        """
        document = read_stain_reference(reference, where)
        normalizer = cls(**document.get("config", {}))
        normalizer.stain_matrix = np.asarray(document["stain_matrix"], dtype=np.float64)
        normalizer.max_concentrations = np.asarray(document["max_concentrations"], dtype=np.float64)
        return normalizer

    @classmethod
    def load(cls, path: Path | str) -> "MacenkoNormalizer":
        """Read a normaliser written by :meth:`save`.

        Raises:
            DataError: the file is missing or is not a saved normaliser.
        """
        return cls.from_reference(Path(path))

    @staticmethod
    def _check_tiles(tiles: np.ndarray, what: str) -> RGBBatch:
        tiles = np.asarray(tiles)
        if tiles.dtype != np.uint8 or tiles.ndim not in (3, 4) or tiles.shape[-1] != 3:
            raise DataError(
                f"stain normalisation {what} have shape {tiles.shape} and type {tiles.dtype}; "
                f"expected uint8 RGB (H, W, 3) or (N, H, W, 3)"
            )
        return tiles


def read_stain_reference(reference: Mapping[str, Any] | Path | str, where: str | None = None) -> dict[str, Any]:
    """The one reader of a Macenko stain reference: checked, as :meth:`MacenkoNormalizer.save` writes it.

    Training folders, ``weakseg-export --macenko`` and the ONNX metadata that
    ``weakseg-infer`` reads all hold the same JSON object: ``stain_matrix``
    (3 x 2), ``max_concentrations`` (2, positive), and optionally ``type``
    (``"MacenkoNormalizer"``) and ``config`` (the normaliser's arguments).

    Args:
        reference: dict, str or path. The object itself, or the JSON file holding it.
        where: str, optional. Where a dict came from, for messages (``"in the metadata of model.onnx"``).
            Defaults to ``None``: the file's path, or ``"(a dict)"``.

    Returns:
        A JSON-ready copy of the object.

    Raises:
        DataError: the file is missing or unreadable, or the object is not a stain reference; the message
            names the file and says what is wrong.
    """
    source = where or (str(reference) if not isinstance(reference, Mapping) else "(a dict)")
    try:
        if isinstance(reference, Mapping):
            document = dict(reference)
        else:
            document = json.loads(Path(reference).read_text(encoding="utf-8"))
            if not isinstance(document, dict):
                raise ValueError(f"it holds a {type(document).__name__}")
        if document.get("type", "MacenkoNormalizer") != "MacenkoNormalizer":
            raise ValueError(f"type is {document.get('type')!r}")
        if "stain_matrix" not in document or "max_concentrations" not in document:
            raise ValueError(f"it has {sorted(document)} but no stain_matrix and max_concentrations")
        MacenkoNormalizer(**document.get("config", {}))  # unknown or bad arguments fail here
        stain_matrix = np.asarray(document["stain_matrix"], dtype=np.float64)
        max_concentrations = np.asarray(document["max_concentrations"], dtype=np.float64)
        if stain_matrix.shape != (3, 2) or max_concentrations.shape != (2,):
            raise ValueError(
                f"stain_matrix has shape {stain_matrix.shape} and max_concentrations {max_concentrations.shape}, "
                f"not (3, 2) and (2,)"
            )
        if not (np.all(np.isfinite(stain_matrix)) and np.all(np.isfinite(max_concentrations))
                and np.all(max_concentrations > 0)):
            raise ValueError("its numbers are not finite, or a max concentration is not positive")
        json.dumps(document)
    except (OSError, ValueError, KeyError, TypeError, AttributeError, ConfigError) as error:
        raise DataError(
            f"cannot load stain normaliser {source}: {error}; expected a Macenko reference written by "
            f"MacenkoNormalizer.save"
        ) from None
    return document
