"""Old path of :mod:`weaksegtf.training.precise_batch_norm`, kept so that existing imports work."""

from weaksegtf.training.precise_batch_norm import PreciseBatchNorm, batch_norm_layers, recompute_batch_norm_statistics

__all__ = ["PreciseBatchNorm", "batch_norm_layers", "recompute_batch_norm_statistics"]
