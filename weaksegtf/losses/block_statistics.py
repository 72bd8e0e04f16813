"""Predicted class shares of image blocks and their Bernoulli variance, Zhao et al. (2019) eqs. 1-3.

A *block* (an instance ``X_k``) is a rectangle of pixels that carries one
low-resolution label ``z``: a whole training patch, or one cell of a
block-label map laid over it.
"""

from __future__ import annotations

import tensorflow as tf

from weaksegtf.data.block_labels import UNLABELLED_BLOCK


def block_statistics(probabilities, block_labels):
    """Per-block ``mu_{l,z,k}`` and ``sigma^2_{l,z,k}`` (Zhao et al. eq. 3), blocks flattened.

    Each pixel's predicted class is a Bernoulli variable with probability
    ``p(y_ij = l | X_k)`` (section 2.1); the block's share ``c_l`` (eq. 1) then
    has mean ``mu = mean_ij p`` and variance ``sigma^2 = mean_ij p (1 - p)``
    (eq. 3, normalised by ``|X_k|`` as printed).

    Args:
        probabilities: float ``(B, H, W, L)``, softmax outputs.
        block_labels: int ``(B,)`` (one block per patch) or ``(B, R, C)`` (an
            ``R x C`` grid of blocks; ``H`` and ``W`` must be multiples of ``R`` and ``C``).

    Returns:
        ``(mu, var, labels)``: float ``(N, L)``, float ``(N, L)``, int32 ``(N,)``
        with ``N = B * R * C`` blocks, patch-major then row-major.

    Example:
    >>> p = np.full((1, 4, 4, 2), 0.5, "float32")
    >>> mu, var, z = block_statistics(p, np.array([[[0, 1], [1, 0]]]))
    >>> mu.shape, float(var[0, 0]), z.numpy().tolist()
    (TensorShape([4, 2]), 0.25, [0, 1, 1, 0])
    """
    probabilities = tf.convert_to_tensor(probabilities)
    block_labels = tf.cast(tf.convert_to_tensor(block_labels), tf.int32)
    if block_labels.shape.rank == 1:
        block_labels = block_labels[:, None, None]
    shape = tf.shape(probabilities)
    batch, height, width, num_classes = shape[0], shape[1], shape[2], shape[3]
    rows, cols = tf.shape(block_labels)[1], tf.shape(block_labels)[2]
    blocks = tf.reshape(probabilities, [batch, rows, height // rows, cols, width // cols, num_classes])
    mu = tf.reduce_mean(blocks, axis=[2, 4])  # eq. 3, mean
    var = tf.reduce_mean(blocks * (1.0 - blocks), axis=[2, 4])  # eq. 3, variance
    flat = [-1, probabilities.shape[-1] or num_classes]
    return tf.reshape(mu, flat), tf.reshape(var, flat), tf.reshape(block_labels, [-1])


def labelled(block_labels):
    """True for blocks with a low-resolution label (not :data:`UNLABELLED_BLOCK`)."""
    return tf.not_equal(block_labels, UNLABELLED_BLOCK)
