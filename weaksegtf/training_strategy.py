"""Old path of :mod:`weaksegtf.training.strategy`, kept so that existing imports work."""

from weaksegtf.training.strategy import STRATEGIES, check_strategy, resolve_strategy, tf_config_cluster

__all__ = ["STRATEGIES", "check_strategy", "resolve_strategy", "tf_config_cluster"]
