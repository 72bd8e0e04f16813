"""The intra+inter-instance label super-resolution loss, Zhao et al. (2019) eqs. 10-11."""

from __future__ import annotations

import keras
import tensorflow as tf

from weaksegtf.losses.block_statistics import block_statistics
from weaksegtf.losses.inter_instance_loss import DEFAULT_GROUP_SIZE, grouped_loss
from weaksegtf.losses.intra_instance_loss import table_arrays, table_config
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
class IntraInterInstanceLoss(keras.losses.Loss):
    """Serializable wrapper of :func:`intra_inter_instance_loss` (Zhao et al. 2019, eqs. 10-11).

    Args:
        joint_table: JointDistributionTable or its ``to_dict()``.
        group_size: int or None. Blocks per group. Defaults to ``15``.
        variance_epsilon: float. Floor added to every predicted variance. Defaults to ``1e-4``.
        from_logits: bool. Apply a softmax to ``y_pred`` first. Defaults to ``True``.

    Example:
    >>> table = JointDistributionTable([[0.9, 0.1], [0.2, 0.8]], [[0.05, 0.05], [0.1, 0.1]])
    >>> IntraInterInstanceLoss(table)(np.array([0, 1]), np.zeros((2, 32, 32, 2))).shape
    TensorShape([])
    """

    def __init__(
        self,
        joint_table,
        group_size: int | None = DEFAULT_GROUP_SIZE,
        variance_epsilon: float = DEFAULT_VARIANCE_EPSILON,
        from_logits: bool = True,
        name: str = "intra_inter_instance_loss",
        **kwargs,
    ):
        kwargs.setdefault("reduction", "sum")
        super().__init__(name=name, **kwargs)
        self.joint_table = table_config(joint_table)
        self.group_size = group_size
        self.variance_epsilon = float(variance_epsilon)
        self.from_logits = from_logits
        self._eta, self._rho = table_arrays(self.joint_table)

    def call(self, y_true, y_pred):
        probabilities = tf.nn.softmax(y_pred) if self.from_logits else y_pred
        return intra_inter_instance_loss(
            y_true, probabilities, self._eta, self._rho, self.group_size, self.variance_epsilon
        )

    def get_config(self) -> dict:
        config = super().get_config()
        config.update(
            {
                "joint_table": self.joint_table,
                "group_size": self.group_size,
                "variance_epsilon": self.variance_epsilon,
                "from_logits": self.from_logits,
            }
        )
        return config
