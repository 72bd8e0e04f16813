"""Batch-norm statistics re-estimated on the mask stream at fixed weights ("precise BN").

The moving averages that batch norm keeps during training follow the last few
batches (momentum 0.9: about ten), while the weights move under them. On a
small, varied mask set that average is a poor estimate of the statistics the
network was trained with, and the deployed model (inference mode) scores
below what training reported. Wu & Johnson, "Rethinking 'Batch' in
BatchNorm" (2021), section 3: recompute them after training as the mean, over
many training batches at the final weights, of each batch's mean and variance.
"""

from __future__ import annotations

import keras
import numpy as np
from keras import layers


def batch_norm_layers(model) -> list:
    """Batch-norm layers of the encoder and decoder of a ``WeakSegmenter`` (not the classifier's)."""
    return [
        layer
        for part in (model.encoder, model.segmentation_head)
        for layer in part._flatten_layers(include_self=False)
        if isinstance(layer, layers.BatchNormalization)
    ]


def recompute_batch_norm_statistics(model, images: np.ndarray, batch_size: int, seed: int = 0) -> int:
    """Set the encoder's and decoder's moving statistics to their mean over batches of ``images``.

    Every batch (``batch_size`` images drawn without replacement, the last
    partial batch dropped unless it is the only one) runs through the
    segmentation path in training mode; each batch-norm layer's moving mean
    and variance become the average of the batches' means and variances. The
    trainable weights do not change.

    Args:
        model: WeakSegmenter.
        images: ``(N, H, W, 3)`` uint8 or float tiles (the mask stream's).
        batch_size: int. Images per batch, as in training.
        seed: int. Seed of the batch order. Defaults to 0.

    Returns:
        The number of batches averaged.

    Example:
    >>> recompute_batch_norm_statistics(model, mask_tiles, 20)  # doctest: +SKIP
    5
    """
    norms = batch_norm_layers(model)
    order = np.random.default_rng(seed).permutation(len(images))
    n_batches = max(1, len(images) // batch_size)
    size = batch_size if len(images) >= batch_size else len(images)
    momenta = [layer.momentum for layer in norms]
    sums = [[np.zeros(layer.moving_mean.shape), np.zeros(layer.moving_variance.shape)] for layer in norms]
    try:
        for layer in norms:
            layer.momentum = 0.0  # moving statistics := this batch's statistics
        for b in range(n_batches):
            batch = np.asarray(images[order[b * size : (b + 1) * size]], np.float32)
            model.segment_low_res(batch, training=True)
            for layer, (mean, variance) in zip(norms, sums):
                mean += np.asarray(layer.moving_mean)
                variance += np.asarray(layer.moving_variance)
        for layer, (mean, variance) in zip(norms, sums):
            layer.moving_mean.assign(mean / n_batches)
            layer.moving_variance.assign(variance / n_batches)
    finally:
        for layer, momentum in zip(norms, momenta):
            layer.momentum = momentum
    return n_batches


class PreciseBatchNorm(keras.callbacks.Callback):
    """After every epoch, re-estimate the segmentation path's batch-norm statistics on the mask tiles.

    Listed before :class:`weaksegtf.training.whole_image_validation.WholeImageValidation`,
    so that validation, best-epoch selection and the saved model all use them.

    Args:
        images: ``(N, H, W, 3)`` mask-stream tiles.
        batch_size: int. Training batch size.
        seed: int. Defaults to 0.

    Example:
    >>> model.fit(data, callbacks=[PreciseBatchNorm(mask_tiles, 20), validation])  # doctest: +SKIP
    """

    def __init__(self, images: np.ndarray, batch_size: int, seed: int = 0):
        super().__init__()
        self.images = images
        self.batch_size = batch_size
        self.seed = seed

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        recompute_batch_norm_statistics(self.model, self.images, self.batch_size, self.seed + epoch)
