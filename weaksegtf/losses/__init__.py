"""Losses: plain functions holding the math, thin serializable Keras classes on top."""

from weaksegtf.losses.weighted_cross_entropy import (
    IGNORE_VALUE,
    WeightedCrossEntropy,
    class_weights_from_counts,
    weighted_cross_entropy,
)

__all__ = [
    "IGNORE_VALUE",
    "WeightedCrossEntropy",
    "class_weights_from_counts",
    "weighted_cross_entropy",
]
