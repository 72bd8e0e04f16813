"""The intra+inter-instance label super-resolution loss, Zhao et al. (2019) eqs. 10-11."""

from __future__ import annotations

import keras

from weaksegtf.losses.block_statistics import block_statistics
from weaksegtf.losses.inter_instance_loss import DEFAULT_GROUP_SIZE, GroupedStatisticsLoss, grouped_loss
from weaksegtf.losses.statistics_matching import DEFAULT_VARIANCE_EPSILON


def intra_inter_instance_loss(
    block_labels,
    probabilities,
    eta,
    rho,
    group_size: int | None = DEFAULT_GROUP_SIZE,
    variance_epsilon: float = DEFAULT_VARIANCE_EPSILON,
):
    """Eq. 9 with the sampled across-block distribution of eqs. 10-11.

    A block's share is itself random (each pixel a Bernoulli draw, eq. 3), so
    across the blocks with label ``z`` in a group the share has mean
    ``mu_{l,z} = 1/N sum_k mu_{l,z,k}`` and variance
    ``sigma^2_{l,z} = 1/N sum_k sigma^2_{l,z,k} + 1/N sum_k (mu_{l,z,k}^2 - mu_{l,z}^2)``
    (eq. 11): the intra-block variances plus the spread of the block means.
    Matched to the table with eq. 9, summed over classes, averaged over the
    (group, label) cells present (0 if none). The paper trains with groups of
    15 blocks, two groups per batch (section 3.3).

    Args:
        block_labels: int ``(B,)`` or ``(B, R, C)``; 255 = unlabelled block.
        probabilities: float ``(B, H, W, L)``.
        eta, rho: ``(K, L)`` mean and standard deviation of the joint table.
        group_size: int or None. Blocks per group (``None``: the whole batch). Defaults to ``15``.
        variance_epsilon: float. See :func:`statistics_matching`. Defaults to ``1e-4``.
    """
    mu, var, z = block_statistics(probabilities, block_labels)
    return grouped_loss(mu, var, z, eta, rho, group_size, variance_epsilon)


@keras.saving.register_keras_serializable(package="weaksegtf")
class IntraInterInstanceLoss(GroupedStatisticsLoss):
    """Serializable wrapper of :func:`intra_inter_instance_loss` (Zhao et al. 2019, eqs. 10-11).

    Arguments as :class:`weaksegtf.losses.inter_instance_loss.GroupedStatisticsLoss`.

    Example:
    >>> table = JointDistributionTable([[0.9, 0.1], [0.2, 0.8]], [[0.05, 0.05], [0.1, 0.1]])
    >>> IntraInterInstanceLoss(table)(np.array([0, 1]), np.zeros((2, 32, 32, 2))).shape
    TensorShape([])
    """

    default_name = "intra_inter_instance_loss"
    loss_fn = staticmethod(intra_inter_instance_loss)
