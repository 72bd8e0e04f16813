"""Sums over the replicas of a ``tf.distribute`` strategy, for losses that are means over the global batch.

Every loss of ``WeakSegmenter`` is a weighted mean ``N / D`` over the items of
a batch (pixels, images, blocks or group cells), whose weights ``D`` depend on
the labels only. Under a strategy each replica sees a part of the global
batch and the optimizer *sums* the replicas' gradients, so a replica's loss
must be its part of the global mean, ``N_r / sum_r D_r = (N_r / D_r) * D_r /
sum_r D_r``: the parts, and their gradients, then add up to those of the
global batch on one device, even when the batch does not split evenly. This
is the "divide by the global batch size" rule of
``tf.nn.compute_average_loss``, with the weights in place of the item count.
Without a strategy (or with one replica) every function here returns its
input unchanged, so the single-device step is the same graph as before.
"""

from __future__ import annotations

import tensorflow as tf


def replicas_in_sync() -> int:
    """Replicas summing their gradients in the current context (1 without a strategy or across replicas)."""
    context = tf.distribute.get_replica_context()
    return 1 if context is None else context.num_replicas_in_sync


def sum_over_replicas(values):
    """``values`` (a tensor or a nest of them) summed over the replicas, in one all-reduce.

    Example:
    >>> float(sum_over_replicas(tf.constant(2.0)))  # no strategy: unchanged
    2.0
    """
    if replicas_in_sync() == 1:
        return values
    return tf.distribute.get_replica_context().all_reduce(tf.distribute.ReduceOp.SUM, values)


def replica_part(mean, total):
    """This replica's part of a weighted mean over the global batch.

    Args:
        mean: scalar tensor. The weighted mean over this replica's items.
        total: scalar tensor. The summed weight of those items (the mean's
            denominator); it must not depend on the trainable weights.

    Returns:
        ``mean * total / sum_r total_r`` (0 when no replica has any weight),
        or ``mean`` itself with one replica.

    Example:
    >>> float(replica_part(tf.constant(0.5), tf.constant(8.0)))  # no strategy: unchanged
    0.5
    """
    if replicas_in_sync() == 1:
        return mean
    total = tf.stop_gradient(tf.cast(total, mean.dtype))
    return mean * tf.math.divide_no_nan(total, sum_over_replicas(total))
