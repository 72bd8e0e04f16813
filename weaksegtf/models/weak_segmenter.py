"""The weakly supervised segmenter of Ciga & Martel (2021), with its alternating train step."""

from __future__ import annotations

import re
from typing import Sequence

import keras
import numpy as np
import tensorflow as tf
from keras import layers, ops

from weaksegtf.errors import ConfigError
from weaksegtf.losses import IGNORE_VALUE, weighted_cross_entropy
from weaksegtf.metrics.keras_metrics import DiceScore, MeanIoU, PixelAccuracy
from weaksegtf.models.classifier_head import ClassifierHead
from weaksegtf.models.resnet18_encoder import ResNet18Encoder
from weaksegtf.models.segmentation_head import SegmentationHead

# Inputs are RGB in [0, 255]; the ImageNet normalisation of torchvision's
# ResNet-18 is part of the graph, so ONNX and TF Serving users feed raw pixels.
IMAGENET_MEAN_255 = (123.675, 116.28, 103.53)
IMAGENET_STD_255 = (58.395, 57.12, 57.375)
UPDATES = ("joint", "sequential")
ARCHITECTURES = ("resnet18",)


def metric_safe(name: str) -> str:
    """``"benign gland"`` -> ``"benign_gland"``, for metric and column names."""
    return re.sub(r"[^0-9A-Za-z]+", "_", name).strip("_").lower()


@keras.saving.register_keras_serializable(package="weaksegtf")
class WeakSegmenter(keras.Model):
    """Segmentation network that also learns from image-level labels.

    A ResNet-18 encoder cut after layer3 feeds the segmentation decoder of
    Table A.2; a classifier (Table A.3) runs on the segmentation logits before
    their final interpolation (Fig. 1). The model maps an RGB batch in
    ``[0, 255]``, ``(B, H, W, 3)`` with H and W multiples of 16 (possibly
    unknown), to ``{"mask": (B, H, W, C) logits, "label": (B, C) logits}``.

    ``train_step`` takes ``{"mask": (images, masks), "label": (images, labels)}``
    (either key may be missing, and a plain ``(images, masks)`` tuple means
    masks only) and runs the two steps of section 2.2: step 1, class-weighted
    pixelwise cross-entropy on the masked batch through encoder and decoder
    only; step 2, the label batch through the segmentation path and the
    classifier with per-item cross-entropy. ``update="joint"`` (the default)
    minimises ``L_seg + classification_weight * L_cls`` in one update, as the
    paper states in section 2.3; ``update="sequential"`` applies step 1, then
    step 2, as two optimizer updates.

    Args:
        num_classes: int. Number of classes C, background included. Defaults to ``3``.
        class_names: list of str, optional. One name per class. Defaults to
            ``["class_0", ...]``.
        architecture: str. Encoder family. Defaults to ``"resnet18"``.
        decoder_filters: int. Hidden channels of the decoder. Defaults to ``64``.
        classifier_hidden: int. Bottleneck of the classifier. Defaults to ``8``.
        class_weights: list of float, optional. Pixel weights of the segmentation
            loss, one per class. Defaults to ``None`` (all ones); see
            ``weaksegtf.losses.class_weights_from_counts``.
        update: str. ``"joint"`` or ``"sequential"``. Defaults to ``"joint"``.
        classification_weight: float. Weight of L_cls in the joint loss. Defaults to ``1.0``.
        ignore_value: int. Mask value meaning "not annotated". Defaults to ``255``.
        **kwargs: standard ``keras.Model`` arguments such as ``name``.

    Example:
    >>> model = WeakSegmenter(num_classes=3)
    >>> model.compile(optimizer=keras.optimizers.Adam(1e-4))
    >>> out = model(np.zeros((2, 64, 64, 3), "float32"))
    >>> out["mask"].shape, out["label"].shape
    (TensorShape([2, 64, 64, 3]), TensorShape([2, 3]))
    """

    def __init__(
        self,
        num_classes: int = 3,
        class_names: Sequence[str] | None = None,
        architecture: str = "resnet18",
        decoder_filters: int = 64,
        classifier_hidden: int = 8,
        class_weights: Sequence[float] | None = None,
        update: str = "joint",
        classification_weight: float = 1.0,
        ignore_value: int = IGNORE_VALUE,
        **kwargs,
    ):
        class_names = list(class_names) if class_names is not None else [f"class_{i}" for i in range(num_classes)]
        _check_settings(num_classes, class_names, architecture, class_weights, update)

        # === Layers ===
        self.preprocess = layers.Normalization(
            mean=IMAGENET_MEAN_255, variance=[s**2 for s in IMAGENET_STD_255], name="preprocess"
        )
        self.encoder = ResNet18Encoder(name="encoder")
        self.segmentation_head = SegmentationHead(num_classes, decoder_filters, name="segmentation_head")
        # Table A.2's final nearest interpolation: the head runs at 1/8 of the input.
        self.interpolate = layers.UpSampling2D(
            ResNet18Encoder.stride // 2, interpolation="nearest", name="interpolate"
        )
        self.classifier_head = ClassifierHead(num_classes, classifier_hidden, name="classifier_head")

        # === Functional graph ===
        inputs = keras.Input(shape=(None, None, 3), name="image")
        low_res_logits = self.segmentation_head(self.encoder(self.preprocess(inputs)))
        outputs = {
            "mask": self.interpolate(low_res_logits),
            "label": self.classifier_head(low_res_logits),
        }
        kwargs.setdefault("name", "weak_segmenter")
        super().__init__(inputs=inputs, outputs=outputs, **kwargs)

        # === Config ===
        self.num_classes = num_classes
        self.class_names = class_names
        self.architecture = architecture
        self.decoder_filters = decoder_filters
        self.classifier_hidden = classifier_hidden
        self.class_weights = None if class_weights is None else [float(w) for w in class_weights]
        self.update = update
        self.classification_weight = float(classification_weight)
        self.ignore_value = ignore_value

        # === Trackers (listed in `metrics`, so fit() resets them every epoch) ===
        self.loss_tracker = keras.metrics.Mean(name="loss")
        self.seg_loss_tracker = keras.metrics.Mean(name="seg_loss")
        self.seg_accuracy_tracker = keras.metrics.Mean(name="seg_accuracy")
        self.cls_loss_tracker = keras.metrics.Mean(name="cls_loss")
        self.cls_accuracy_tracker = keras.metrics.Mean(name="cls_accuracy")
        self.eval_metrics = [PixelAccuracy(num_classes, ignore_value), MeanIoU(num_classes, ignore_value)] + [
            DiceScore(num_classes, c, ignore_value, name=f"dice_{metric_safe(n)}") for c, n in enumerate(class_names)
        ]

    # --- forward paths --------------------------------------------------------

    def segment_low_res(self, images, training=False):
        """Segmentation logits before the final interpolation: the classifier's input."""
        return self.segmentation_head(self.encoder(self.preprocess(images), training=training), training=training)

    @property
    def segmentation_variables(self) -> list:
        """Trainable weights of step 1 (encoder and decoder, no classifier)."""
        return self.encoder.trainable_variables + self.segmentation_head.trainable_variables

    def _segmentation_loss(self, batch):
        images, masks = batch
        logits = self.interpolate(self.segment_low_res(images, training=True))
        loss = weighted_cross_entropy(masks, logits, self.class_weights, self.ignore_value)
        return loss, logits

    def _classification_loss(self, batch):
        images, labels = batch
        logits = self.classifier_head(self.segment_low_res(images, training=True), training=True)
        labels = ops.reshape(ops.cast(labels, "int32"), (-1,))
        loss = ops.mean(ops.sparse_categorical_crossentropy(labels, logits, from_logits=True))
        return loss, logits

    # --- training ------------------------------------------------------------

    @property
    def metrics(self) -> list:
        return [
            self.loss_tracker,
            self.seg_loss_tracker,
            self.seg_accuracy_tracker,
            self.cls_loss_tracker,
            self.cls_accuracy_tracker,
            *self.eval_metrics,
        ]

    def _apply(self, loss, tape, variables) -> None:
        if not self.optimizer.built:
            # Build on every weight, so later phases may update any subset of them.
            self.optimizer.build(self.trainable_variables)
        grads = tape.gradient(loss, variables)
        pairs = [(g, v) for g, v in zip(grads, variables) if g is not None]
        self.optimizer.apply([g for g, _ in pairs], [v for _, v in pairs])

    def train_step(self, data):
        mask_batch, label_batch = _split_batch(data)
        logs = {}
        if self.update == "sequential" and mask_batch is not None and label_batch is not None:
            with tf.GradientTape() as tape:
                seg_loss, seg_logits = self._segmentation_loss(mask_batch)
            self._apply(seg_loss, tape, self.segmentation_variables)
            with tf.GradientTape() as tape:
                cls_loss, cls_logits = self._classification_loss(label_batch)
            self._apply(cls_loss, tape, self.trainable_variables)
            total = seg_loss + cls_loss
        else:
            with tf.GradientTape() as tape:
                total = 0.0
                if mask_batch is not None:
                    seg_loss, seg_logits = self._segmentation_loss(mask_batch)
                    total = total + seg_loss
                if label_batch is not None:
                    cls_loss, cls_logits = self._classification_loss(label_batch)
                    total = total + self.classification_weight * cls_loss
            variables = self.trainable_variables if label_batch is not None else self.segmentation_variables
            self._apply(total, tape, variables)

        self.loss_tracker.update_state(total)
        logs["loss"] = self.loss_tracker.result()
        if mask_batch is not None:
            self.seg_loss_tracker.update_state(seg_loss)
            self.seg_accuracy_tracker.update_state(
                _masked_accuracy(mask_batch[1], seg_logits, self.ignore_value)
            )
            logs["seg_loss"] = self.seg_loss_tracker.result()
            logs["seg_accuracy"] = self.seg_accuracy_tracker.result()
        if label_batch is not None:
            self.cls_loss_tracker.update_state(cls_loss)
            self.cls_accuracy_tracker.update_state(_masked_accuracy(label_batch[1], cls_logits, -1))
            logs["cls_loss"] = self.cls_loss_tracker.result()
            logs["cls_accuracy"] = self.cls_accuracy_tracker.result()
        return logs

    def test_step(self, data):
        images, masks = data[0], data[1]
        logits = self(images, training=False)["mask"]
        loss = weighted_cross_entropy(masks, logits, self.class_weights, self.ignore_value)
        self.loss_tracker.update_state(loss)
        for metric in self.eval_metrics:
            metric.update_state(masks, logits)
        return {"loss": self.loss_tracker.result(), **{m.name: m.result() for m in self.eval_metrics}}

    def predict_masks(self, images, batch_size: int = 8) -> np.ndarray:
        """Argmax class map ``(B, H, W)`` uint8 for an image batch in [0, 255]."""
        logits = self.predict(np.asarray(images, "float32"), batch_size=batch_size, verbose=0)["mask"]
        return np.argmax(logits, axis=-1).astype(np.uint8)

    # --- config --------------------------------------------------------------

    def get_config(self) -> dict:
        return {
            "num_classes": self.num_classes,
            "class_names": self.class_names,
            "architecture": self.architecture,
            "decoder_filters": self.decoder_filters,
            "classifier_hidden": self.classifier_hidden,
            "class_weights": self.class_weights,
            "update": self.update,
            "classification_weight": self.classification_weight,
            "ignore_value": self.ignore_value,
            "name": self.name,
            "trainable": self.trainable,
        }

    @classmethod
    def from_config(cls, config: dict) -> "WeakSegmenter":
        return cls(**config)


def _check_settings(num_classes, class_names, architecture, class_weights, update) -> None:
    if num_classes < 2:
        raise ConfigError(f"num_classes must be at least 2, got {num_classes}")
    if len(class_names) != num_classes:
        raise ConfigError(f"got {len(class_names)} class names {class_names} for {num_classes} classes")
    if architecture not in ARCHITECTURES:
        raise ConfigError(f"architecture {architecture!r} is unknown; expected one of {ARCHITECTURES}")
    if class_weights is not None and len(class_weights) != num_classes:
        raise ConfigError(f"got {len(class_weights)} class weights for {num_classes} classes")
    if update not in UPDATES:
        raise ConfigError(f"update {update!r} is unknown; expected one of {UPDATES}")


def _split_batch(data):
    """``(mask_batch, label_batch)`` from a training element; either may be None."""
    if isinstance(data, (tuple, list)) and isinstance(data[0], dict):
        data = data[0]  # train_on_batch(x=dict) passes (x, None, None)
    if isinstance(data, dict):
        unknown = set(data) - {"mask", "label"}
        if unknown or not data:
            raise ConfigError(f"training batches need keys 'mask' and/or 'label', got {sorted(data)}")
        return data.get("mask"), data.get("label")
    return (data[0], data[1]), None


def _masked_accuracy(y_true, logits, ignore_value: int):
    y_true = ops.cast(ops.reshape(y_true, ops.shape(logits)[:-1]), "int32")
    correct = ops.cast(ops.equal(ops.cast(ops.argmax(logits, axis=-1), "int32"), y_true), "float32")
    valid = ops.cast(ops.not_equal(y_true, ignore_value), "float32")
    return ops.divide_no_nan(ops.sum(correct * valid), ops.sum(valid))
