"""The inter-instance label super-resolution loss, Zhao et al. (2019) eqs. 6-9."""

from __future__ import annotations

import keras
import tensorflow as tf

from weaksegtf.losses.block_statistics import block_statistics, labelled
from weaksegtf.losses.intra_instance_loss import masked_mean, table_arrays, table_config
from weaksegtf.losses.statistics_matching import DEFAULT_VARIANCE_EPSILON, statistics_matching

#: Zhao et al. section 3.3: "a group of 15 instances and each batch has 2 groups".
DEFAULT_GROUP_SIZE = 15


def group_statistics(mu, var_within, z, num_labels: int, group_size: int | None = DEFAULT_GROUP_SIZE):
    """Across-block share statistics of every (group, low-resolution label) cell.

    The batch's blocks are cut into consecutive groups of ``group_size``
    (``None``: one group); inside a group, the blocks sharing a label ``z``
    form one cell, whose statistics estimate ``mu_{l,z}`` and ``sigma^2_{l,z}``
    on a batch as section 2.2 suggests:

    - ``mean = 1/N sum_k mu_{l,z,k}`` (eqs. 8 and 11);
    - ``var = 1/N sum_k (mu_{l,z,k} - mean)^2 + 1/N sum_k var_within_k`` (eq. 8
      when ``var_within`` is 0; eq. 11, last line, with the Bernoulli variances).

    Args:
        mu, var_within: float ``(N, L)`` per-block means and variances.
        z: int ``(N,)`` block labels; 255 = unlabelled (left out).
        num_labels: int. Rows K of the joint table.
        group_size: int or None. Blocks per group. Defaults to ``15``.

    Returns:
        ``(mean, var, cell_label, present)``: ``(S, L)``, ``(S, L)``, ``(S,)`` int32
        and ``(S,)`` bool over ``S = groups * K`` cells.
    """
    cell, num_cells = _cells(z, num_labels, group_size)
    count = tf.math.unsorted_segment_sum(tf.ones_like(mu[:, :1]), cell, num_cells + 1)[:-1]
    mean = tf.math.divide_no_nan(tf.math.unsorted_segment_sum(mu, cell, num_cells + 1)[:-1], count)
    spread = tf.square(mu - tf.gather(tf.concat([mean, tf.zeros_like(mean[:1])], 0), cell))
    var = tf.math.divide_no_nan(tf.math.unsorted_segment_sum(spread + var_within, cell, num_cells + 1)[:-1], count)
    cell_label = tf.range(num_cells) % num_labels
    return mean, var, cell_label, count[:, 0] > 0


def _cells(z, num_labels: int, group_size: int | None):
    """Cell index ``group * num_labels + z`` of every block, ``num_cells`` for unlabelled blocks; and ``num_cells``."""
    n = tf.shape(z)[0]
    index = tf.range(n)
    group = index // group_size if group_size else tf.zeros_like(index)
    num_groups = (n + group_size - 1) // group_size if group_size else 1
    keep = labelled(z)
    num_cells = num_groups * num_labels
    # Unlabelled blocks go to an extra, discarded segment.
    return tf.where(keep, group * num_labels + tf.where(keep, z, 0), num_cells), num_cells


def present_cell_count(block_labels, num_labels: int, group_size: int | None = DEFAULT_GROUP_SIZE):
    """Number of (group, label) cells holding a labelled block: the denominator of the grouped losses.

    Under ``tf.distribute`` it gives each replica its share of the global
    batch's mean (:func:`weaksegtf.models.cross_replica.replica_part`).

    Args:
        block_labels: int ``(B,)`` or ``(B, R, C)``; 255 = unlabelled block.
        num_labels: int. Rows K of the joint table.
        group_size: int or None. Blocks per group. Defaults to ``15``.

    Example:
    >>> float(present_cell_count(np.array([0, 0, 1, 255]), num_labels=2, group_size=2))
    2.0
    """
    z = tf.reshape(tf.cast(block_labels, tf.int32), [-1])
    cell, num_cells = _cells(z, num_labels, group_size)
    count = tf.math.unsorted_segment_sum(tf.ones_like(z, tf.float32), cell, num_cells + 1)[:-1]
    return tf.reduce_sum(tf.cast(count > 0, tf.float32))


def grouped_loss(mu, var_within, z, eta, rho, group_size, variance_epsilon):
    """Eq. 9 on every (group, label) cell, summed over classes, averaged over the cells present."""
    eta = tf.cast(eta, mu.dtype)
    rho = tf.cast(rho, mu.dtype)
    mean, var, cell_label, present = group_statistics(mu, var_within, z, eta.shape[0], group_size)
    distance = statistics_matching(mean, var, tf.gather(eta, cell_label), tf.gather(rho, cell_label), variance_epsilon)
    return masked_mean(tf.reduce_sum(distance, axis=-1), present)


def inter_instance_loss(
    block_labels,
    probabilities,
    eta,
    rho,
    group_size: int | None = DEFAULT_GROUP_SIZE,
    variance_epsilon: float = DEFAULT_VARIANCE_EPSILON,
):
    """Eq. 9 with the across-block distribution of eqs. 6-8.

    Each block's predicted share is the constant ``mu_{l,z,k}`` (eq. 6); the
    shares of the blocks with label ``z`` in a group give ``mu_{l,z}`` and
    ``sigma^2_{l,z}`` (eq. 8), matched to ``N(eta_{l,z}, rho^2_{l,z})`` (eq. 9).
    The loss sums over classes and averages over the (group, label) cells
    present in the batch (0 if none). A cell with one block has
    ``sigma^2 = 0``: only ``variance_epsilon`` keeps it finite.

    Args:
        block_labels: int ``(B,)`` or ``(B, R, C)``; 255 = unlabelled block.
        probabilities: float ``(B, H, W, L)``.
        eta, rho: ``(K, L)`` mean and standard deviation of the joint table.
        group_size: int or None. Blocks per group (``None``: the whole batch). Defaults to ``15``.
        variance_epsilon: float. See :func:`statistics_matching`. Defaults to ``1e-4``.
    """
    mu, _, z = block_statistics(probabilities, block_labels)
    return grouped_loss(mu, tf.zeros_like(mu), z, eta, rho, group_size, variance_epsilon)


class GroupedStatisticsLoss(keras.losses.Loss):
    """Base of the serializable group-statistics LSR losses: ``loss_fn(labels, probabilities, eta, rho, ...)``.

    Holds the joint table, the group size, the variance floor and the config
    round trip; :class:`InterInstanceLoss` and ``IntraInterInstanceLoss`` set
    ``loss_fn`` and ``default_name`` and register under their own names.

    Args:
        joint_table: JointDistributionTable or its ``to_dict()``.
        group_size: int or None. Blocks per group. Defaults to ``15``.
        variance_epsilon: float. Floor added to every predicted variance. Defaults to ``1e-4``.
        from_logits: bool. Apply a softmax to ``y_pred`` first. Defaults to ``True``.
    """

    default_name = "grouped_statistics_loss"

    @staticmethod
    def loss_fn(block_labels, probabilities, eta, rho, group_size, variance_epsilon):
        raise NotImplementedError

    def __init__(
        self,
        joint_table,
        group_size: int | None = DEFAULT_GROUP_SIZE,
        variance_epsilon: float = DEFAULT_VARIANCE_EPSILON,
        from_logits: bool = True,
        name: str | None = None,
        **kwargs,
    ):
        kwargs.setdefault("reduction", "sum")
        super().__init__(name=name or self.default_name, **kwargs)
        self.joint_table = table_config(joint_table)
        self.group_size = group_size
        self.variance_epsilon = float(variance_epsilon)
        self.from_logits = from_logits
        self._eta, self._rho = table_arrays(self.joint_table)

    def call(self, y_true, y_pred):
        probabilities = tf.nn.softmax(y_pred) if self.from_logits else y_pred
        return self.loss_fn(y_true, probabilities, self._eta, self._rho, self.group_size, self.variance_epsilon)

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


@keras.saving.register_keras_serializable(package="weaksegtf")
class InterInstanceLoss(GroupedStatisticsLoss):
    """Serializable wrapper of :func:`inter_instance_loss` (Zhao et al. 2019, eqs. 6-9).

    Arguments as :class:`GroupedStatisticsLoss`.

    Example:
    >>> table = JointDistributionTable([[0.9, 0.1], [0.2, 0.8]], [[0.05, 0.05], [0.1, 0.1]])
    >>> InterInstanceLoss(table, group_size=2)(np.array([0, 0, 1, 1]), np.zeros((4, 32, 32, 2))).shape
    TensorShape([])
    """

    default_name = "inter_instance_loss"
    loss_fn = staticmethod(inter_instance_loss)
