"""``TrainingData``: the arrays one training streams (masks, labels, background tiles, the low-resolution set)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, ClassVar, MutableMapping, Sequence

import numpy as np


@dataclass(eq=False)
class TrainingData:
    """The arrays of one training, each ``None`` when the run has none.

    ``train_weak_segmenter`` and ``make_train_dataset`` take the first four
    positionally and the others by keyword (:attr:`EXTRA`).

    Args:
        mask_images: ``(N, t, t, 3)`` uint8 tiles. Defaults to ``None``.
        masks: ``(N, t, t)`` class indices, 255 = not annotated. Defaults to ``None``.
        label_images: ``(M, t, t, 3)`` uint8 tiles, or a list of whole images of
            any sizes (:func:`weaksegtf.data.label_set_to_images`). Defaults to ``None``.
        labels: ``(M,)`` image labels. Defaults to ``None``.
        background_images: ``(K, t, t, 3)`` uint8 tiles that join the label
            stream labelled background (:func:`weaksegtf.data.background_tiles`);
            used in the modes that have a label stream. Defaults to ``None``.
        lowres_images: ``(L, H, W, 3)`` uint8 tiles of the low-resolution set. Defaults to ``None``.
        block_labels: their low-resolution labels, ``(L,)`` or ``(L, R, C)``
            (255 = unlabelled block). Defaults to ``None``.
        mask_labels: ``(N,)`` image labels of the masked images for S+C*.
            Defaults to ``None``: derived from the masks.

    Example:
    >>> data = TrainingData(np.zeros((2, 32, 32, 3), np.uint8), np.zeros((2, 32, 32), np.uint8))
    >>> data.count("mask_images"), data.count("labels")
    (2, 0)
    """

    #: The fields taken by keyword, besides the four streams' arrays.
    EXTRA: ClassVar[tuple[str, ...]] = ("background_images", "lowres_images", "block_labels", "mask_labels")

    mask_images: np.ndarray | None = None
    masks: np.ndarray | None = None
    label_images: np.ndarray | Sequence[np.ndarray] | None = None
    labels: np.ndarray | None = None
    background_images: np.ndarray | None = None
    lowres_images: np.ndarray | None = None
    block_labels: np.ndarray | None = None
    mask_labels: np.ndarray | None = None

    @classmethod
    def take_extra(cls, settings: MutableMapping[str, Any]) -> dict[str, Any]:
        """Remove the :attr:`EXTRA` arrays from keyword ``settings`` and return them."""
        return {name: settings.pop(name) for name in cls.EXTRA if name in settings}

    def count(self, name: str) -> int:
        """How many items the array ``name`` holds (0 for ``None``)."""
        value = getattr(self, name)
        return 0 if value is None else int(len(value))

    def replace(self, **changes: Any) -> TrainingData:
        """A copy with ``changes``."""
        return dataclasses.replace(self, **changes)
