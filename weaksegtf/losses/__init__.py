"""Losses: plain functions holding the math, thin serializable Keras classes on top.

- ``weighted_cross_entropy``: class-weighted pixelwise cross-entropy (Ciga & Martel 2021).
- ``allowed_class_cross_entropy``: pixels of a labelled image are background or its class.
- ``valid_pixel_mask``, ``instance_balanced_cross_entropy``,
  ``minibatch_balanced_cross_entropy``: sparse annotations (Bokhorst et al. 2018, eqs. 1-2).
- ``intra_instance_loss``, ``inter_instance_loss``, ``intra_inter_instance_loss``:
  label super-resolution from block labels (Zhao et al. 2019, eqs. 1-11).
"""

from weaksegtf.losses.allowed_class_cross_entropy import allowed_class_cross_entropy, present_class_size_loss
from weaksegtf.losses.block_statistics import block_statistics
from weaksegtf.losses.instance_balanced_cross_entropy import (
    InstanceBalancedCrossEntropy,
    instance_balanced_cross_entropy,
    instance_balancing_weights,
)
from weaksegtf.losses.inter_instance_loss import DEFAULT_GROUP_SIZE, InterInstanceLoss, inter_instance_loss
from weaksegtf.losses.intra_instance_loss import IntraInstanceLoss, intra_instance_loss
from weaksegtf.losses.intra_inter_instance_loss import IntraInterInstanceLoss, intra_inter_instance_loss
from weaksegtf.losses.minibatch_balanced_cross_entropy import (
    MinibatchBalancedCrossEntropy,
    minibatch_balanced_cross_entropy,
    minibatch_balancing_weights,
    minibatch_class_counts,
)
from weaksegtf.losses.statistics_matching import DEFAULT_VARIANCE_EPSILON, statistics_matching
from weaksegtf.losses.valid_pixel_mask import valid_pixel_mask, weight_map_cross_entropy
from weaksegtf.losses.weighted_cross_entropy import (
    IGNORE_VALUE,
    WeightedCrossEntropy,
    annotated_weight,
    class_weights_from_counts,
    weighted_cross_entropy,
)

__all__ = [
    "DEFAULT_GROUP_SIZE",
    "DEFAULT_VARIANCE_EPSILON",
    "IGNORE_VALUE",
    "InstanceBalancedCrossEntropy",
    "InterInstanceLoss",
    "IntraInstanceLoss",
    "IntraInterInstanceLoss",
    "MinibatchBalancedCrossEntropy",
    "WeightedCrossEntropy",
    "allowed_class_cross_entropy",
    "annotated_weight",
    "present_class_size_loss",
    "block_statistics",
    "class_weights_from_counts",
    "instance_balanced_cross_entropy",
    "instance_balancing_weights",
    "inter_instance_loss",
    "intra_instance_loss",
    "intra_inter_instance_loss",
    "minibatch_balanced_cross_entropy",
    "minibatch_balancing_weights",
    "minibatch_class_counts",
    "statistics_matching",
    "valid_pixel_mask",
    "weight_map_cross_entropy",
    "weighted_cross_entropy",
]
