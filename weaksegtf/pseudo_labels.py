"""Pseudo-masks for image-labelled images, constrained by their label: one round of self-training.

An image labelled ``y`` holds background and class ``y`` only (Ciga & Martel's
condition on image-level data). A model trained on the masks and labels can
therefore draw a mask for each labelled image in which every pixel is
background or ``y``: the model decides where the foreground is (its
probability of any class but background), the label decides its class. A pixel
the model calls another foreground class is foreground of class ``y`` (on GlaS
the model's commonest error inside a gland is the wrong grade). Pixels where
the model is not sure enough (background and foreground probabilities both
below ``confidence``) are left not annotated. A second training on the real masks plus these pseudo-masks is
self-training (Lee 2013; Papandreou et al. 2015's EM-Adapt constrains the
E-step to the image's classes in the same way).

Example:
>>> probabilities = np.array([[[0.2, 0.1, 0.7], [0.6, 0.3, 0.1]]])  # 1 x 2 pixels, 3 classes
>>> allowed_class_pseudo_mask(probabilities, label=1, confidence=0.6).tolist()
[[1, 0]]
>>> allowed_class_pseudo_mask(probabilities, label=2, confidence=0.65).tolist()
[[2, 255]]
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from weaksegtf.data.mask_set import MaskSet
from weaksegtf.errors import ConfigError
from weaksegtf.constants import IGNORE_VALUE

#: Smallest renormalised probability of the allowed class a pseudo-mask pixel needs.
DEFAULT_PSEUDO_CONFIDENCE = 0.9


def allowed_class_pseudo_mask(
    probabilities: np.ndarray, label: int, confidence: float = DEFAULT_PSEUDO_CONFIDENCE,
    ignore_value: int = IGNORE_VALUE,
) -> np.ndarray:
    """Pseudo-mask ``(H, W)`` uint8 of an image labelled ``label`` from its class probabilities ``(H, W, C)``.

    Each pixel is ``label`` where the foreground probability ``1 - p_0`` is at
    least ``confidence``, background (0) where ``p_0`` is, ``ignore_value``
    elsewhere. An image labelled background (0) has background wherever
    the model is sure of it and nothing else.
    """
    if not 0.5 <= confidence <= 1.0:
        raise ConfigError(f"pseudo-mask confidence must be in [0.5, 1], got {confidence!r}")
    probabilities = np.asarray(probabilities, np.float64)
    if not 0 <= label < probabilities.shape[-1]:
        raise ConfigError(f"label {label} is not a class of probabilities with {probabilities.shape[-1]} classes")
    background = probabilities[..., 0] / np.maximum(probabilities.sum(-1), 1e-12)
    mask = np.full(background.shape, ignore_value, np.uint8)
    mask[background >= confidence] = 0
    if label:
        mask[1.0 - background >= confidence] = label
    return mask


def pseudo_mask_set(
    model, images: Sequence[np.ndarray], labels: Sequence[int], confidence: float = DEFAULT_PSEUDO_CONFIDENCE,
    min_size_px: int = 0,
) -> MaskSet:
    """A ``MaskSet`` of the labelled images with their label-constrained pseudo-masks.

    ``model`` segments each whole image in inference mode, padded as
    ``weakseg-infer`` pads it (``min_size_px``: see
    :func:`weaksegtf.training.predict_image`).
    """
    from weaksegtf.training import image_logits

    masks = []
    for image, label in zip(images, labels):
        logits = image_logits(model, image, min_size_px).astype(np.float64)
        logits -= logits.max(-1, keepdims=True)
        probabilities = np.exp(logits)
        probabilities /= probabilities.sum(-1, keepdims=True)
        masks.append(allowed_class_pseudo_mask(probabilities, int(label), confidence))
    names = [f"pseudo_{i:04d}" for i in range(len(masks))]
    return MaskSet(list(images), masks, names)
