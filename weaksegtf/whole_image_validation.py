"""Old path of :mod:`weaksegtf.training.whole_image_validation`, kept so that existing imports work."""

from weaksegtf.training.whole_image_validation import SELECTION_METRIC, WholeImageValidation

__all__ = ["SELECTION_METRIC", "WholeImageValidation"]
