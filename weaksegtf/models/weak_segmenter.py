"""The weakly supervised segmenter of Ciga & Martel (2021), with its alternating train step."""

from __future__ import annotations

import re
from typing import Sequence

import keras
import tensorflow as tf
from keras import layers, ops

from weaksegtf.data.joint_distribution_table import JointDistributionTable
from weaksegtf.errors import ConfigError
from weaksegtf.losses import (
    DEFAULT_GROUP_SIZE,
    IGNORE_VALUE,
    allowed_class_cross_entropy,
    annotated_weight,
    instance_balanced_cross_entropy,
    inter_instance_loss,
    intra_instance_loss,
    intra_inter_instance_loss,
    minibatch_balanced_cross_entropy,
    minibatch_class_counts,
    present_class_size_loss,
    valid_pixel_mask,
    weighted_cross_entropy,
)
from weaksegtf.losses.block_statistics import labelled
from weaksegtf.losses.inter_instance_loss import present_cell_count
from weaksegtf.metrics.keras_metrics import DiceScore, MeanIoU, PixelAccuracy
from weaksegtf.models.classifier_head import ClassifierHead
from weaksegtf.models.cross_replica import replica_part, sum_over_replicas
from weaksegtf.models.resnet18_encoder import ResNet18Encoder
from weaksegtf.models.segmentation_head import ScaleResize, SegmentationHead, SkipSegmentationHead
from weaksegtf.models.unet_backbone import UNetBackbone

# Inputs are RGB in [0, 255]; the ImageNet normalisation of torchvision's
# ResNet-18 is part of the graph, so ONNX and TF Serving users feed raw pixels.
IMAGENET_MEAN_255 = (123.675, 116.28, 103.53)
IMAGENET_STD_255 = (58.395, 57.12, 57.375)
UPDATES = ("joint", "sequential")
ARCHITECTURES = ("resnet18", "unet")
#: ResNet-18 decoders: Table A.2's ("paper", logits at 1/8) or with skip connections ("skip", logits at 1/4).
DECODERS = ("paper", "skip")
#: Enlargement of the ResNet-18 decoders' logits to the input size.
UPSAMPLINGS = ("nearest", "bilinear")
#: Pixel losses of the mask stream: class-weighted (Ciga & Martel), or the
#: sparse-annotation balancing of Bokhorst et al. (2018) eqs. 1 and 2.
SEGMENTATION_LOSSES = ("weighted_ce", "instance_balanced", "minibatch_balanced")
#: Label super-resolution losses of the low-resolution stream, Zhao et al. (2019).
LOWRES_LOSSES = {
    "intra": intra_instance_loss,
    "inter": inter_instance_loss,
    "intra_inter": intra_inter_instance_loss,
}
#: Training streams, in the order ``update="sequential"`` applies them.
PHASES = ("mask", "label", "lowres")


def metric_safe(name: str) -> str:
    """``"benign gland"`` -> ``"benign_gland"``, for metric and column names."""
    return re.sub(r"[^0-9A-Za-z]+", "_", name).strip("_").lower()


@keras.saving.register_keras_serializable(package="weaksegtf")
class WeakSegmenter(keras.Model):
    """Segmentation network that also learns from image-level and block-level labels.

    With ``architecture="resnet18"`` (Ciga & Martel 2021), a ResNet-18 encoder
    cut after layer3 feeds the segmentation decoder of Table A.2, and a
    classifier (Table A.3) runs on the segmentation logits before their final
    interpolation (Fig. 1). With ``architecture="unet"`` the five-level U-Net
    of Bokhorst et al. (2018) and a 1x1 convolution give logits at full
    resolution, so the final interpolation is the identity and the classifier
    reads the full-resolution logits. Either way the model maps an RGB batch
    in ``[0, 255]``, ``(B, H, W, 3)`` with H and W multiples of 16 (possibly
    unknown), to ``{"mask": (B, H, W, C) logits, "label": (B, C) logits}``.

    ``train_step`` takes a dict of up to three streams, each a GAN-style
    phase with its own loss:

    - ``"mask": (images, masks)``: pixel loss on masks (255 = not annotated),
      through encoder and decoder only: ``segmentation_loss`` picks
      class-weighted cross-entropy or the instance / mini-batch balancing of
      Bokhorst et al. for sparse annotations;
    - ``"label": (images, labels)``: the segmentation path and the classifier,
      per-item cross-entropy (section 2.2 of Ciga & Martel);
    - ``"lowres": (images, block_labels)``: label super-resolution (Zhao et
      al. 2019) from one low-resolution label per image ``(B,)`` or a block
      label map ``(B, R, C)`` (255 = unlabelled block), against ``joint_table``.

    Any key may be missing; a plain ``(images, masks)`` tuple means masks
    only. ``update="joint"`` (the default) minimises ``L_seg +
    classification_weight * L_cls + lowres_weight * L_lowres`` in one update,
    as Ciga & Martel state in section 2.3; ``update="sequential"`` applies the
    phases one after the other, each as its own optimizer update.

    Under a ``tf.distribute`` strategy (model built and compiled inside
    ``strategy.scope()``), each replica's losses are its part of the global
    batch's means (:mod:`weaksegtf.models.cross_replica`), the logged losses
    and accuracies are those of the global batch, and ``compile`` makes every
    batch norm compute its training statistics over the global batch
    (``synchronized_batch_norm``): one step on R replicas then updates the
    weights as one step on one device with the whole batch.

    Args:
        num_classes: int. Number of classes C, background included. Defaults to ``3``.
        class_names: list of str, optional. One name per class. Defaults to
            ``["class_0", ...]``.
        architecture: str. ``"resnet18"`` or ``"unet"``. Defaults to ``"resnet18"``.
        decoder_filters: int. Hidden channels of the ResNet decoder. Defaults to ``64``.
        classifier_hidden: int. Bottleneck of the classifier. Defaults to ``8``.
        class_weights: list of float, optional. Pixel weights of the
            ``"weighted_ce"`` loss, one per class. Defaults to ``None`` (all
            ones: every annotated pixel counts the same, Bokhorst et al.'s
            "mask of valid pixels, no balancing"); see
            ``weaksegtf.losses.class_weights_from_counts``.
        update: str. ``"joint"`` or ``"sequential"``. Defaults to ``"joint"``.
        classification_weight: float. Weight of L_cls in the joint loss. Defaults to ``1.0``.
        ignore_value: int. Mask value meaning "not annotated". Defaults to ``255``.
        unet_filters: int. Filters of the U-Net's first level. Defaults to ``32``.
        segmentation_loss: str. ``"weighted_ce"``, ``"instance_balanced"``
            (eq. 1) or ``"minibatch_balanced"`` (eq. 2). Defaults to ``"weighted_ce"``.
        joint_table: JointDistributionTable or its ``to_dict()``, optional.
            Needed by the ``"lowres"`` stream. Defaults to ``None``.
        lowres_loss: str. ``"intra"`` (Zhao eqs. 1-5), ``"inter"`` (6-9) or
            ``"intra_inter"`` (10-11). Defaults to ``"intra_inter"``.
        lowres_group_size: int or None. Blocks per group for the inter-instance
            statistics (``None``: the whole batch). Defaults to ``15``.
        lowres_weight: float. Weight of L_lowres in the joint loss. Defaults to ``1.0``.
        label_class_weights: list of float, optional. Item weights of the
            classification loss, one per class (inverse label frequency, as
            for the masks' pixels). Defaults to ``None`` (all ones).
        allowed_class_weight: float. Weight of the allowed-class loss on the
            label stream: every pixel of an image labelled ``y`` should be
            background or ``y`` (``weaksegtf.losses.allowed_class_cross_entropy``).
            Defaults to ``0.0`` (off: the paper's classifier path only).
        present_class_share: float. With a value above 0, adds the
            present-class size loss: the labelled class should cover at least
            this share of an image labelled with it
            (``weaksegtf.losses.present_class_size_loss``). Defaults to ``0.0`` (off).
        model_card: dict, optional. What deployment needs (class colours, training
            mpp, tile size, stain reference), saved inside the ``.keras`` file; see
            ``weaksegtf.model_card``. Defaults to ``None``.
        decoder: str. ResNet-18 only: ``"paper"`` (Table A.2, logits at 1/8 of
            the input) or ``"skip"`` (:class:`SkipSegmentationHead`: refined
            with the encoder's stride-8 and stride-4 features, logits at 1/4).
            The classifier reads the logits before their final enlargement
            either way. Defaults to ``"paper"``.
        upsampling: str. ResNet-18 only: the final enlargement of the logits,
            ``"nearest"`` (Table A.2; 8-pixel squares with the paper decoder)
            or ``"bilinear"`` (smooth logits before the argmax). Defaults to ``"nearest"``.
        **kwargs: standard ``keras.Model`` arguments such as ``name``.

    Example:
    >>> model = WeakSegmenter(num_classes=3)
    >>> model.compile(optimizer=keras.optimizers.Adam(1e-4))
    >>> out = model(np.zeros((2, 64, 64, 3), "float32"))
    >>> out["mask"].shape, out["label"].shape
    (TensorShape([2, 64, 64, 3]), TensorShape([2, 3]))
    >>> unet = WeakSegmenter(num_classes=2, architecture="unet", segmentation_loss="minibatch_balanced")
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
        unet_filters: int = 32,
        segmentation_loss: str = "weighted_ce",
        joint_table: JointDistributionTable | dict | None = None,
        lowres_loss: str = "intra_inter",
        lowres_group_size: int | None = DEFAULT_GROUP_SIZE,
        lowres_weight: float = 1.0,
        label_class_weights: Sequence[float] | None = None,
        allowed_class_weight: float = 0.0,
        present_class_share: float = 0.0,
        model_card: dict | None = None,
        decoder: str = "paper",
        upsampling: str = "nearest",
        **kwargs,
    ):
        class_names = list(class_names) if class_names is not None else [f"class_{i}" for i in range(num_classes)]
        _check_settings(num_classes, class_names, architecture, class_weights, update, segmentation_loss, lowres_loss)
        if label_class_weights is not None and len(label_class_weights) != num_classes:
            raise ConfigError(f"got {len(label_class_weights)} label class weights for {num_classes} classes")
        table = _table(joint_table, num_classes)
        if decoder not in DECODERS:
            raise ConfigError(f"decoder {decoder!r} is unknown; expected one of {DECODERS}")
        if upsampling not in UPSAMPLINGS:
            raise ConfigError(f"upsampling {upsampling!r} is unknown; expected one of {UPSAMPLINGS}")
        if architecture == "unet" and (decoder, upsampling) != ("paper", "nearest"):
            raise ConfigError(f"decoder {decoder!r} and upsampling {upsampling!r} are ResNet-18 options; "
                              "the U-Net's logits are already at full resolution")

        # === Layers ===
        self.preprocess = layers.Normalization(
            mean=IMAGENET_MEAN_255, variance=[s**2 for s in IMAGENET_STD_255], name="preprocess"
        )
        if architecture == "unet":
            self.encoder = UNetBackbone(filters=unet_filters, name="encoder")
            self.segmentation_head = layers.Conv2D(num_classes, 1, name="segmentation_head")
            # The U-Net's logits are already at full resolution.
            self.interpolate = layers.Identity(name="interpolate")
        elif decoder == "skip":
            self.encoder = ResNet18Encoder(return_features=True, name="encoder")
            self.segmentation_head = SkipSegmentationHead(num_classes, decoder_filters, name="segmentation_head")
            self.interpolate = ScaleResize(ResNet18Encoder.stride // 4, upsampling, name="interpolate")
        elif upsampling == "bilinear":
            self.encoder = ResNet18Encoder(name="encoder")
            self.segmentation_head = SegmentationHead(num_classes, decoder_filters, name="segmentation_head")
            self.interpolate = ScaleResize(ResNet18Encoder.stride // 2, upsampling, name="interpolate")
        else:
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
        self.decoder = decoder
        self.upsampling = upsampling
        self.decoder_filters = decoder_filters
        self.classifier_hidden = classifier_hidden
        self.class_weights = None if class_weights is None else [float(w) for w in class_weights]
        self.update = update
        self.classification_weight = float(classification_weight)
        self.ignore_value = ignore_value
        self.unet_filters = unet_filters
        self.segmentation_loss = segmentation_loss
        self.joint_table = None if table is None else table.to_dict()
        self.lowres_loss = lowres_loss
        self.lowres_group_size = lowres_group_size
        self.lowres_weight = float(lowres_weight)
        self.label_class_weights = (
            None if label_class_weights is None else [float(w) for w in label_class_weights]
        )
        self.allowed_class_weight = float(allowed_class_weight)
        if not 0.0 <= float(present_class_share) <= 1.0:
            raise ConfigError(f"present_class_share must be in [0, 1], got {present_class_share!r}")
        self.present_class_share = float(present_class_share)
        self.model_card = None if model_card is None else dict(model_card)

        # === Trackers (listed in `metrics`, so fit() resets them every epoch) ===
        self.loss_tracker = keras.metrics.Mean(name="loss")
        self.seg_loss_tracker = keras.metrics.Mean(name="seg_loss")
        self.seg_accuracy_tracker = keras.metrics.Mean(name="seg_accuracy")
        self.cls_loss_tracker = keras.metrics.Mean(name="cls_loss")
        self.cls_accuracy_tracker = keras.metrics.Mean(name="cls_accuracy")
        self.lowres_loss_tracker = keras.metrics.Mean(name="lowres_loss")
        self.eval_metrics = [PixelAccuracy(num_classes, ignore_value), MeanIoU(num_classes, ignore_value)] + [
            DiceScore(num_classes, c, ignore_value, name=f"dice_{metric_safe(n)}") for c, n in enumerate(class_names)
        ]

    # --- forward paths --------------------------------------------------------

    def segment_low_res(self, images, training=False):
        """Segmentation logits before the final interpolation: the classifier's input."""
        return self.segmentation_head(self.encoder(self.preprocess(images), training=training), training=training)

    @property
    def segmentation_variables(self) -> list:
        """Trainable weights of the mask and low-resolution phases (encoder and decoder, no classifier)."""
        return self.encoder.trainable_variables + self.segmentation_head.trainable_variables

    def pixel_loss(self, masks, logits):
        """The mask stream's loss, as chosen by ``segmentation_loss``.

        Under a ``tf.distribute`` strategy, the mini-batch balancing of eq. 2
        counts the classes over the global batch (all replicas).
        """
        if self.segmentation_loss == "instance_balanced":
            return instance_balanced_cross_entropy(masks, logits, self.ignore_value)
        if self.segmentation_loss == "minibatch_balanced":
            counts = sum_over_replicas(minibatch_class_counts(masks, self.num_classes, self.ignore_value))
            return minibatch_balanced_cross_entropy(masks, logits, self.ignore_value, class_counts=counts)
        return weighted_cross_entropy(masks, logits, self.class_weights, self.ignore_value)

    def _pixel_loss_total(self, masks):
        """The denominator of :meth:`pixel_loss`: summed class weights, or count, of the annotated pixels."""
        if self.segmentation_loss == "weighted_ce":
            return annotated_weight(masks, self.class_weights, self.ignore_value)
        return ops.sum(valid_pixel_mask(masks, self.ignore_value))

    # --- the three phases -------------------------------------------------------

    # Each phase returns this replica's part of its loss over the global batch
    # (`replica_part`; the loss itself without a strategy) and its logits.

    def _segmentation_loss(self, batch):
        images, masks = batch
        logits = self.interpolate(self.segment_low_res(images, training=True))
        return replica_part(self.pixel_loss(masks, logits), self._pixel_loss_total(masks)), logits

    def _classification_loss(self, batches):
        """Class-weighted cross-entropy over the union of the label sub-batches.

        ``batches`` holds ``(images, labels)`` or ``(images, labels, valid)``
        sub-batches (whole labelled images with their valid-pixel maps, and
        background tiles); each runs its own forward pass, and the loss is
        ``sum_i w[y_i] CE_i / sum_i w[y_i]`` over all their items. The
        allowed-class and present-class losses are means within each
        sub-batch, weighted by its share of the items (of the global batch
        under a strategy).
        """
        all_labels, all_logits, allowed, present = [], [], 0.0, 0.0
        sizes = sum_over_replicas([ops.cast(ops.shape(batch[0])[0], "float32") for batch in batches])
        n_items = sum(sizes)
        for batch, size in zip(batches, sizes):
            images, labels = batch[0], batch[1]
            low_res = self.segment_low_res(images, training=True)
            valid = self._valid_share(batch[2]) if len(batch) > 2 else None
            all_logits.append(self.classifier_head(low_res, valid=valid, training=True))
            all_labels.append(ops.reshape(ops.cast(labels, "int32"), (-1,)))
            share = ops.cast(size / n_items, low_res.dtype)
            if self.allowed_class_weight:
                cells = ops.sum(valid) if valid is not None else ops.cast(ops.size(low_res[..., 0]), "float32")
                allowed = allowed + share * replica_part(
                    allowed_class_cross_entropy(all_labels[-1], low_res, valid), cells)
            if self.present_class_share:
                foreground = ops.sum(ops.cast(ops.not_equal(all_labels[-1], 0), "float32"))
                present = present + share * replica_part(present_class_size_loss(
                    all_labels[-1], low_res, valid, self.present_class_share), foreground)
        labels = ops.concatenate(all_labels, axis=0)
        logits = ops.concatenate(all_logits, axis=0)
        loss = replica_part(weighted_cross_entropy(labels, logits, self.label_class_weights, ignore_value=-1),
                            annotated_weight(labels, self.label_class_weights, ignore_value=-1))
        return loss + self.allowed_class_weight * allowed + present, (labels, logits)

    def _valid_share(self, valid):
        """Share of real pixels in each cell of the classifier's input, ``(B, H, W)`` -> ``(B, h, w)``."""
        valid = ops.cast(valid, "float32")
        if self.architecture == "unet":  # its logits are at full resolution
            return valid
        # the head's logits are at 1/8 (paper) or 1/4 (skip) of the input
        cell = ResNet18Encoder.stride // (4 if self.decoder == "skip" else 2)
        return ops.squeeze(ops.average_pool(ops.expand_dims(valid, -1), cell, strides=cell, padding="valid"), -1)

    def _lowres_loss(self, batch):
        """Label super-resolution loss of a low-resolution batch.

        Under a strategy, the inter-instance groups are formed within each
        replica's part of the batch: the loss is the global batch's when each
        replica's block count is a multiple of ``lowres_group_size`` (the
        paper's two groups of 15 on two replicas), an estimate otherwise.
        """
        if self.joint_table is None:
            raise ConfigError("a 'lowres' batch needs a joint_table; got WeakSegmenter(joint_table=None)")
        images, block_labels = batch
        logits = self.interpolate(self.segment_low_res(images, training=True))
        table = self.joint_table
        loss_fn = LOWRES_LOSSES[self.lowres_loss]
        if self.lowres_loss == "intra":
            loss = loss_fn(block_labels, ops.softmax(logits), table["mean"], table["std"])
            items = ops.sum(ops.cast(labelled(ops.cast(block_labels, "int32")), "float32"))
        else:
            loss = loss_fn(block_labels, ops.softmax(logits), table["mean"], table["std"],
                           group_size=self.lowres_group_size)
            items = present_cell_count(block_labels, len(table["mean"]), self.lowres_group_size)
        return replica_part(loss, items), logits

    @property
    def segmentation_statistics(self) -> list:
        """Moving means and variances of the batch norms of the encoder and the decoder."""
        return [
            v for layer in (self.encoder, self.segmentation_head) for v in layer.non_trainable_variables
            if "moving" in v.path
        ]

    def _phase(self, name: str, batch, batches=None):
        """``(loss, logits)`` of one phase, its weight in the joint loss, and the weights it trains.

        When a mask batch is in the step, it alone updates the moving
        batch-norm statistics of the encoder and decoder: the other phases
        normalise with their own batch's statistics, as in training, and then
        put the moving statistics back as the mask batch left them. Label
        batches (whole images with padding, glass tiles) averaged into the
        moving statistics made the deployed model score far below what
        training reported (docs/results.md). Running the label phase in
        inference mode instead was worse: its gradient then changes the scale
        of features that training-mode batch norm ignores.

        Under a ``tf.distribute`` strategy this runs in each replica: the
        moving statistics are mirrored variables without an aggregation, so
        reading and assigning them there touches the replica's own copy, and
        the synchronized batch norms (see ``compile``) give every copy the
        same global-batch statistics, so the copies stay equal.
        """
        if name != "mask" and batches is not None and "mask" in batches:
            saved = [tf.identity(v) for v in self.segmentation_statistics]
            result = self._phase(name, batch)
            for variable, value in zip(self.segmentation_statistics, saved):
                variable.assign(value)
            return result
        if name == "label":
            return self._classification_loss(batch), self.classification_weight, self.trainable_variables
        if name == "mask":
            return self._segmentation_loss(batch), 1.0, self.segmentation_variables
        return self._lowres_loss(batch), self.lowres_weight, self.segmentation_variables

    # --- training ------------------------------------------------------------

    @property
    def metrics(self) -> list:
        return [
            self.loss_tracker,
            self.seg_loss_tracker,
            self.seg_accuracy_tracker,
            self.cls_loss_tracker,
            self.cls_accuracy_tracker,
            self.lowres_loss_tracker,
            *self.eval_metrics,
        ]

    def compile(self, *args, synchronized_batch_norm: bool | None = None, **kwargs):
        """``keras.Model.compile``, and whether batch norms share their statistics across replicas.

        Args:
            *args, **kwargs: those of ``keras.Model.compile`` (the optimizer).
            synchronized_batch_norm: bool or None. Training-mode batch norms
                normalise with the mean and variance of the global batch, summed
                over the replicas of the ``tf.distribute`` strategy
                (``keras.layers.BatchNormalization(synchronized=True)``), as one
                device with the whole batch would. Without it each replica uses
                its own part's statistics and keeps its own copy of the moving
                statistics, which then drift apart. Defaults to ``None``: on
                when the model's strategy has more than one replica. Not saved
                with the model: it concerns training only.
        """
        if synchronized_batch_norm is None:
            synchronized_batch_norm = self.distribute_strategy.num_replicas_in_sync > 1
        for layer in self._flatten_layers(include_self=False):
            if isinstance(layer, layers.BatchNormalization):
                layer.synchronized = bool(synchronized_batch_norm)
        super().compile(*args, **kwargs)

    def compile_from_config(self, config: dict) -> None:
        # Keras skips, with a warning, compiling a loaded model whose compile() is overridden; ours
        # takes keras.Model.compile's arguments, so a loaded model is compiled as Keras would.
        self.compile(**keras.saving.deserialize_keras_object(config))
        if getattr(self, "optimizer", None) is not None and self.built:
            self.optimizer.build(self.trainable_variables)

    def make_train_function(self, force=False):
        # Build the optimizer on every weight before tracing, not lazily inside
        # the first traced train_step: creating its variables there makes
        # tf.function trace the step twice (about 40 % of the first step).
        if getattr(self, "optimizer", None) is not None and not self.optimizer.built:
            self.optimizer.build(self.trainable_variables)
        previous = self.train_function
        super().make_train_function(force)
        if self.train_function is not previous and _several_workers(self.distribute_strategy):
            step = self.train_function

            def train_function(iterator):  # the one-element logs of train_step back to scalars
                return {name: ops.reshape(value, ()) for name, value in step(iterator).items()}

            self.train_function = train_function
        return self.train_function

    def _maybe_symbolic_build(self, iterator=None, data_batch=None):
        # Under a tf.distribute strategy, Keras 3 reduces the first training batch over the replicas
        # and builds the model symbolically from it. Our batches are dicts of streams, not model
        # inputs, and MultiWorkerMirroredStrategy cannot reduce a dict; the functional graph has
        # built every layer already, so only the optimizer is left, built in the strategy's scope.
        if getattr(self, "_distribute_strategy", None) is None:
            return super()._maybe_symbolic_build(iterator=iterator, data_batch=data_batch)
        if getattr(self, "optimizer", None) is not None and not self.optimizer.built:
            with self.distribute_strategy.scope():
                self.optimizer.build(self.trainable_variables)
        return None

    def _apply(self, loss, tape, variables) -> None:
        if not self.optimizer.built:
            # Build on every weight, so later phases may update any subset of them.
            self.optimizer.build(self.trainable_variables)
        grads = tape.gradient(loss, variables)
        pairs = [(g, v) for g, v in zip(grads, variables) if g is not None]
        self.optimizer.apply([g for g, _ in pairs], [v for _, v in pairs])

    def train_step(self, data):
        batches = _split_batch(data)
        results = {}  # phase -> (loss, logits)
        if self.update == "sequential" and len(batches) > 1:
            # One optimizer update per phase, in PHASES order.
            for name, batch in batches.items():
                with tf.GradientTape() as tape:
                    results[name], _, variables = self._phase(name, batch, batches)
                self._apply(results[name][0], tape, variables)
            total = sum(loss for loss, _ in results.values())
        else:
            # One update on the weighted sum; the classifier only trains when labels are present.
            with tf.GradientTape() as tape:
                total = 0.0
                for name, batch in batches.items():
                    results[name], weight, _ = self._phase(name, batch, batches)
                    total = total + weight * results[name][0]
            variables = self.trainable_variables if "label" in batches else self.segmentation_variables
            self._apply(total, tape, variables)
        logs = self._log(batches, results, total)
        if _several_workers(self.distribute_strategy):
            # Keras 3 reduces a step's logs over several workers with strategy.reduce("MEAN", v,
            # axis=0), which fails on scalars (tensorflow/tensorflow#72388): one-element vectors
            # pass, and make_train_function turns them back into scalars.
            logs = {name: ops.reshape(value, (1,)) for name, value in logs.items()}
        return logs

    def _log(self, batches, results, total) -> dict:
        """Update the trackers with the global batch's losses and accuracies; the logs of the step.

        The phases' losses are this replica's parts, and accuracies are
        counted, so one all-reduce gives every replica the global values:
        its trackers then agree with the others' and with one device's.
        """
        local = {"loss": total}
        if "mask" in results:
            local["seg_loss"], seg_logits = results["mask"]
            local["seg_hits"] = _masked_hits(batches["mask"][1], seg_logits, self.ignore_value)
        if "label" in results:
            local["cls_loss"], (cls_labels, cls_logits) = results["label"]
            local["cls_hits"] = _masked_hits(cls_labels, cls_logits, -1)
        if "lowres" in results:
            local["lowres_loss"] = results["lowres"][0]
        # One dtype, so that the all-reduce can pack them together (float16 or float64 losses otherwise).
        step = sum_over_replicas(tf.nest.map_structure(lambda value: ops.cast(value, "float32"), local))
        self.loss_tracker.update_state(step["loss"])
        logs = {"loss": self.loss_tracker.result()}
        if "mask" in results:
            self.seg_loss_tracker.update_state(step["seg_loss"])
            self.seg_accuracy_tracker.update_state(ops.divide_no_nan(*step["seg_hits"]))
            logs["seg_loss"] = self.seg_loss_tracker.result()
            logs["seg_accuracy"] = self.seg_accuracy_tracker.result()
        if "label" in results:
            self.cls_loss_tracker.update_state(step["cls_loss"])
            self.cls_accuracy_tracker.update_state(ops.divide_no_nan(*step["cls_hits"]))
            logs["cls_loss"] = self.cls_loss_tracker.result()
            logs["cls_accuracy"] = self.cls_accuracy_tracker.result()
        if "lowres" in results:
            self.lowres_loss_tracker.update_state(step["lowres_loss"])
            logs["lowres_loss"] = self.lowres_loss_tracker.result()
        return logs

    def test_step(self, data):
        images, masks = data[0], data[1]
        logits = self(images, training=False)["mask"]
        loss = sum_over_replicas(replica_part(self.pixel_loss(masks, logits), self._pixel_loss_total(masks)))
        self.loss_tracker.update_state(loss)
        for metric in self.eval_metrics:
            metric.update_state(masks, logits)
        return {"loss": self.loss_tracker.result(), **{m.name: m.result() for m in self.eval_metrics}}

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
            "unet_filters": self.unet_filters,
            "segmentation_loss": self.segmentation_loss,
            "joint_table": self.joint_table,
            "lowres_loss": self.lowres_loss,
            "lowres_group_size": self.lowres_group_size,
            "lowres_weight": self.lowres_weight,
            "label_class_weights": self.label_class_weights,
            "allowed_class_weight": self.allowed_class_weight,
            "present_class_share": self.present_class_share,
            "decoder": self.decoder,
            "upsampling": self.upsampling,
            "model_card": self.model_card,
            "name": self.name,
            "trainable": self.trainable,
        }

    @classmethod
    def from_config(cls, config: dict) -> "WeakSegmenter":
        return cls(**config)


def _check_settings(
    num_classes, class_names, architecture, class_weights, update, segmentation_loss, lowres_loss
) -> None:
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
    if segmentation_loss not in SEGMENTATION_LOSSES:
        raise ConfigError(f"segmentation_loss {segmentation_loss!r} is unknown; expected one of {SEGMENTATION_LOSSES}")
    if class_weights is not None and segmentation_loss != "weighted_ce":
        raise ConfigError(
            f"class_weights apply to segmentation_loss='weighted_ce' only; {segmentation_loss!r} "
            f"computes its own weights from each batch"
        )
    if lowres_loss not in LOWRES_LOSSES:
        raise ConfigError(f"lowres_loss {lowres_loss!r} is unknown; expected one of {tuple(LOWRES_LOSSES)}")


def _table(joint_table, num_classes: int) -> JointDistributionTable | None:
    """The joint table as a validated object, with one column per class."""
    if joint_table is None:
        return None
    if not isinstance(joint_table, JointDistributionTable):
        joint_table = JointDistributionTable.from_dict(dict(joint_table))
    if joint_table.num_classes != num_classes:
        raise ConfigError(
            f"the joint table from {joint_table.source} has {joint_table.num_classes} class columns; "
            f"expected one per class of the model ({num_classes})"
        )
    return joint_table


def _split_batch(data) -> dict:
    """``{phase: batch}`` from a training element, in :data:`PHASES` order.

    The ``"label"`` phase gets a list of sub-batches: the ``"label"`` stream's
    and, when present, the ``"background"`` stream's (background tiles mined
    from the masks), whose losses are one class-weighted mean.
    """
    if isinstance(data, (tuple, list)) and isinstance(data[0], dict):
        data = data[0]  # train_on_batch(x=dict) passes (x, None, None)
    if isinstance(data, dict):
        unknown = set(data) - set(PHASES) - {"background"}
        if unknown or not data:
            raise ConfigError(f"training batches need keys among {PHASES + ('background',)}, got {sorted(data)}")
        batches = {name: data[name] for name in PHASES if name in data}
        label_parts = [data[name] for name in ("label", "background") if name in data]
        if label_parts:
            batches["label"] = label_parts
            batches = {name: batches[name] for name in PHASES if name in batches}
        return batches
    return {"mask": (data[0], data[1])}


def _several_workers(strategy) -> bool:
    """A ``MultiWorkerMirroredStrategy`` over more than one worker (as Keras 3 tells them apart)."""
    return isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy) and strategy.extended._in_multi_worker_mode()


def _masked_hits(y_true, logits, ignore_value: int):
    """``(correct, annotated)`` counts of an argmax prediction; their ratio is the accuracy."""
    y_true = ops.cast(ops.reshape(y_true, ops.shape(logits)[:-1]), "int32")
    correct = ops.cast(ops.equal(ops.cast(ops.argmax(logits, axis=-1), "int32"), y_true), "float32")
    valid = ops.cast(ops.not_equal(y_true, ignore_value), "float32")
    return ops.sum(correct * valid), ops.sum(valid)
