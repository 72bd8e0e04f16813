"""The intra-instance label super-resolution loss, Zhao et al. (2019) eqs. 1-5 (after Malkin et al. 2019)."""

from __future__ import annotations

import keras
import tensorflow as tf

from weaksegtf.data.joint_distribution_table import JointDistributionTable
from weaksegtf.losses.block_statistics import block_statistics, labelled
from weaksegtf.losses.statistics_matching import DEFAULT_VARIANCE_EPSILON, statistics_matching


def table_arrays(joint_table) -> tuple[list, list]:
    """``(eta, rho)`` as nested lists from a ``JointDistributionTable`` or its ``to_dict()``."""
    if isinstance(joint_table, dict):
        joint_table = JointDistributionTable.from_dict(joint_table)
    return joint_table.mean.tolist(), joint_table.std.tolist()


def table_config(joint_table) -> dict:
    """A ``JointDistributionTable`` (or its dict) as a validated, JSON-ready dict."""
    if isinstance(joint_table, JointDistributionTable):
        return joint_table.to_dict()
    return JointDistributionTable.from_dict(dict(joint_table)).to_dict()


def masked_mean(values, mask):
    """Mean of ``values`` where ``mask``; 0 (not NaN) when nothing is selected."""
    mask = tf.cast(mask, values.dtype)
    return tf.math.divide_no_nan(tf.reduce_sum(values * mask), tf.reduce_sum(mask))


def intra_instance_loss(block_labels, probabilities, eta, rho, variance_epsilon: float = DEFAULT_VARIANCE_EPSILON):
    """Eq. 5 per block with the block's own share distribution (eqs. 2-3), summed over classes.

    Every labelled block ``X_k`` with label ``z`` contributes
    ``sum_l D(N(mu_{l,z,k}, sigma^2_{l,z,k}), N(eta_{l,z}, rho^2_{l,z}))``;
    the loss is the mean over labelled blocks (0 if there are none).

    Args:
        block_labels: int ``(B,)`` or ``(B, R, C)``; 255 = unlabelled block.
        probabilities: float ``(B, H, W, L)``.
        eta, rho: ``(K, L)`` mean and standard deviation of the joint table.
        variance_epsilon: float. See :func:`statistics_matching`. Defaults to ``1e-4``.
    """
    mu, var, z = block_statistics(probabilities, block_labels)
    keep = labelled(z)
    safe_z = tf.where(keep, z, 0)
    eta_k = tf.gather(tf.cast(eta, mu.dtype), safe_z)
    rho_k = tf.gather(tf.cast(rho, mu.dtype), safe_z)
    per_block = tf.reduce_sum(statistics_matching(mu, var, eta_k, rho_k, variance_epsilon), axis=-1)
    return masked_mean(per_block, keep)


@keras.saving.register_keras_serializable(package="weaksegtf")
class IntraInstanceLoss(keras.losses.Loss):
    """Serializable wrapper of :func:`intra_instance_loss` (Zhao et al. 2019, eqs. 1-5).

    ``y_true`` are block labels ``(B,)`` or ``(B, R, C)``; ``y_pred`` are
    segmentation logits ``(B, H, W, L)`` (or probabilities with ``from_logits=False``).

    Args:
        joint_table: JointDistributionTable or its ``to_dict()``. The table of eq. 4.
        variance_epsilon: float. Floor added to every predicted variance. Defaults to ``1e-4``.
        from_logits: bool. Apply a softmax to ``y_pred`` first. Defaults to ``True``.

    Example:
    >>> table = JointDistributionTable([[0.9, 0.1], [0.2, 0.8]], [[0.05, 0.05], [0.1, 0.1]])
    >>> loss = IntraInstanceLoss(table)
    >>> loss(np.array([0, 1]), np.zeros((2, 32, 32, 2))).shape
    TensorShape([])
    """

    def __init__(
        self,
        joint_table,
        variance_epsilon: float = DEFAULT_VARIANCE_EPSILON,
        from_logits: bool = True,
        name: str = "intra_instance_loss",
        **kwargs,
    ):
        kwargs.setdefault("reduction", "sum")
        super().__init__(name=name, **kwargs)
        self.joint_table = table_config(joint_table)
        self.variance_epsilon = float(variance_epsilon)
        self.from_logits = from_logits
        self._eta, self._rho = table_arrays(self.joint_table)

    def call(self, y_true, y_pred):
        probabilities = tf.nn.softmax(y_pred) if self.from_logits else y_pred
        return intra_instance_loss(y_true, probabilities, self._eta, self._rho, self.variance_epsilon)

    def get_config(self) -> dict:
        config = super().get_config()
        config.update(
            {"joint_table": self.joint_table, "variance_epsilon": self.variance_epsilon, "from_logits": self.from_logits}
        )
        return config
