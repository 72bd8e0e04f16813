"""Per-epoch validation on whole images in inference mode, and best-epoch selection."""

from __future__ import annotations

from typing import Sequence

import keras
import numpy as np

#: Metric the best epoch is chosen by (a key of ``evaluate_images``'s result).
SELECTION_METRIC = "mean_dice"


class WholeImageValidation(keras.callbacks.Callback):
    """Score whole validation images after every epoch; keep the best epoch's weights.

    The score is what deployment sees: the model in inference mode (batch
    norm on its moving statistics) on whole images at the training resolution,
    padded as ``weakseg-infer`` pads them (:func:`weaksegtf.training.prediction.predict_image`). Each epoch logs ``val_pixel_accuracy``,
    ``val_mean_iou``, ``val_mean_dice`` and ``val_dice_<class>`` into the
    history. With ``restore_best=True`` the weights (batch-norm statistics
    included) of the epoch with the highest ``val_mean_dice`` are put back
    when training ends, ties going to the earlier epoch.

    Args:
        images: list of ``(H, W, 3)`` uint8 arrays.
        masks: list of ``(H, W)`` uint8 class maps (255 = not annotated).
        class_names: list of str. One per class.
        restore_best: bool. Restore the best epoch at the end. Defaults to ``True``.
        min_size_px: int. Pad images to at least this size, as ``weakseg-infer``
            pads an image smaller than its tile (:func:`weaksegtf.training.prediction.predict_image`).
            Defaults to ``0``.

    Example:
    >>> callback = WholeImageValidation(val.images, val.masks, ["background", "gland"])  # doctest: +SKIP
    >>> model.fit(data, epochs=10, callbacks=[callback])  # doctest: +SKIP
    >>> callback.best_epoch, callback.best_metrics["mean_dice"]  # doctest: +SKIP
    """

    def __init__(
        self,
        images: Sequence[np.ndarray],
        masks: Sequence[np.ndarray],
        class_names: Sequence[str],
        restore_best: bool = True,
        min_size_px: int = 0,
    ):
        super().__init__()
        self.images = list(images)
        self.masks = list(masks)
        self.class_names = list(class_names)
        self.restore_best = restore_best
        self.min_size_px = min_size_px
        self.best_epoch: int | None = None  # 1-based, as in history.csv
        self.best_metrics: dict = {}
        self.best_predictions: list[np.ndarray] = []
        self._best_weights: list[np.ndarray] | None = None

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        from weaksegtf.models.weak_segmenter import metric_safe
        from weaksegtf.training.prediction import evaluate_images

        metrics, predictions = evaluate_images(
            self.model, self.images, self.masks, self.class_names, self.min_size_px
        )
        if logs is not None:
            logs["val_pixel_accuracy"] = metrics["pixel_accuracy"]
            logs["val_mean_iou"] = metrics["mean_iou"]
            logs["val_mean_dice"] = metrics["mean_dice"]
            for name, value in metrics["dice"].items():
                logs[f"val_dice_{metric_safe(name)}"] = np.nan if value is None else value
        score = metrics[SELECTION_METRIC]
        if self.best_epoch is None or score > self.best_metrics[SELECTION_METRIC]:
            self.best_epoch, self.best_metrics, self.best_predictions = epoch + 1, metrics, predictions
            if self.restore_best:
                self._best_weights = [np.array(w) for w in self.model.get_weights()]

    def on_train_end(self, logs: dict | None = None) -> None:
        if self.restore_best and self._best_weights is not None:
            self.model.set_weights(self._best_weights)
