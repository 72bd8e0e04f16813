"""``TrainingConfig``: every setting of a training run, in one object that the CLI and the sweep build and the library takes.

No TensorFlow and no data here: a config is checked when it is made, so a bad
choice fails before any image is read.
"""

from __future__ import annotations

import dataclasses
import difflib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from weaksegtf.constants import SIZE_MULTIPLE
from weaksegtf.errors import ConfigError
from weaksegtf.training.strategy import check_strategy

#: Data modes of Ciga & Martel section 3.3, and ``"LR"`` (low-resolution labels alone).
MODES = ("S", "S+C", "S+C*", "C", "LR")
#: Modes with masks and labels, the ones self-training can start from.
SELF_TRAINING_MODES = ("S+C", "S+C*")
#: First-round modes of self-training: the masks and the label stream (``"S+C"``), or the masks alone (``"S"``).
TEACHERS = ("S+C", "S")
#: How labelled images enter the label stream: whole (one patch each) or as grid tiles.
LABEL_TILES = ("whole", "grid")
DEFAULT_BATCH_SIZE = 20  # section 2.3
DEFAULT_LEARNING_RATE = 1e-4  # section 2.3, Adam(0.9, 0.999)
#: Weight of the allowed-class loss in weakseg-train's recipe: measured best on GlaS validation patients
#: (docs/results.md); ``0.0`` is the paper's loss (classification cross-entropy alone).
DEFAULT_ALLOWED_CLASS_WEIGHT = 1.0
#: Learning-rate schedules (``TrainingConfig.lr_schedule``).
LR_SCHEDULES = ("constant", "cosine")
#: Augmentations (``TrainingConfig.augment``); ``True`` means ``"full"`` and ``False`` ``"none"``.
AUGMENTATIONS = ("none", "light", "full")


def check_choice(name: str, value: Any, choices: Sequence[str]) -> None:
    """A ConfigError naming the setting, the value received and the choices, unless ``value`` is one of them."""
    if value not in choices:
        raise ConfigError(f"{name} {value!r} is unknown; expected one of {tuple(choices)}")


def augmentation_mode(augment: bool | str) -> str:
    """``"none"``, ``"light"`` or ``"full"`` from ``augment`` (``True`` is ``"full"``, ``False`` is ``"none"``).

    >>> augmentation_mode(True)
    'full'
    """
    if augment is True or augment is False:
        return "full" if augment else "none"
    check_choice("augment", augment, AUGMENTATIONS)
    return augment


def check_setting_names(names: Iterable[str], known: Sequence[str], what: str = "a training setting") -> None:
    """A ConfigError for the first name not in ``known``, with the closest known names.

    >>> check_setting_names(["epoch"], ["epochs", "seed"])  # doctest: +IGNORE_EXCEPTION_DETAIL
    Traceback (most recent call last):
    ConfigError: 'epoch' is not a training setting; did you mean 'epochs'?
    """
    for name in names:
        if name in known:
            continue
        close = difflib.get_close_matches(name, known, n=3)
        hint = f"did you mean {' or '.join(map(repr, close))}?" if close else f"expected one of {', '.join(known)}"
        raise ConfigError(f"{name!r} is not {what}; {hint}")


@dataclass(frozen=True)
class TrainingConfig:
    """Every setting of one training: data mode, schedule, model, losses, outputs.

    ``run_training`` and ``train_weak_segmenter`` take one (``config=``) and
    apply keyword overrides to it (``run_training(..., config, epochs=3)``).
    The settings are checked when the config is made: an unknown choice, a
    tile side that is not a multiple of 16, self-training outside S+C, an
    unknown or unusable ``strategy`` raise ``ConfigError``.

    Args:
        class_names: sequence of str, optional. Background first. Required by
            ``run_training``; ``train_weak_segmenter`` needs it or ``num_classes``.
            Defaults to ``None``.
        mode: str. ``"S"``, ``"S+C"``, ``"S+C*"``, ``"C"`` or ``"LR"`` (Ciga &
            Martel section 3.3; see :mod:`weaksegtf.training`). Defaults to ``"S+C"``.
        tile_size_px: int. Side of the training tiles cut from masked images,
            a multiple of 16 (``run_training``). Defaults to ``128``.
        epochs: int. Defaults to ``10``.
        steps_per_epoch: int, optional. Defaults to ``None``: one pass over the largest stream.
        batch_size: int. Items per stream and step; with a ``strategy``, the
            global batch, split among the replicas. Defaults to ``20`` (section 2.3).
        learning_rate: float. Adam's. Defaults to ``1e-4`` (section 2.3).
        lr_schedule: str. ``"constant"`` (the paper's) or ``"cosine"``: a half
            cosine from ``learning_rate`` to 0 over all ``epochs * steps_per_epoch``
            updates. Defaults to ``"constant"``.
        class_weights: ``"auto"`` (inverse pixel frequency in the masks), a
            list, or ``None`` (unweighted). Only for ``segmentation_loss="weighted_ce"``;
            ``"auto"`` means ``None`` for the balanced losses. Defaults to ``"auto"``.
        update: str. ``"joint"`` (the paper's) or ``"sequential"``. Defaults to ``"joint"``.
        augment: bool or str. ``"none"``/``False``, ``"light"`` or ``"full"``/``True``
            (see :func:`weaksegtf.training.make_train_dataset`). Defaults to ``False``.
        seed: int. Defaults to ``0``.
        encoder_weights: str or path, optional. ``.pth`` (torchvision) or
            ``.weights.h5`` file (ResNet-18 only). Defaults to ``None``.
        verbose: int or str, optional. Keras ``fit``'s. Defaults to ``None``:
            ``2`` (one line per epoch) in ``run_training``, ``"auto"`` in ``train_weak_segmenter``.
        architecture: str. ``"resnet18"`` (Ciga & Martel) or ``"unet"`` (Bokhorst et al.).
            Defaults to ``"resnet18"``.
        unet_filters: int. First-level filters of the U-Net. Defaults to ``32``.
        segmentation_loss: str. ``"weighted_ce"``, ``"instance_balanced"`` or
            ``"minibatch_balanced"`` (sparse annotations, Bokhorst et al. eqs. 1-2).
            Defaults to ``"weighted_ce"``.
        joint_table: ``JointDistributionTable``, its dict, or a ``.csv``/``.json``
            path, for the low-resolution stream. Defaults to ``None``.
        lowres_loss: str. ``"intra"``, ``"inter"`` or ``"intra_inter"`` (Zhao et al.).
            Defaults to ``"intra_inter"``.
        lowres_group_size: int, optional. Blocks per group. Defaults to ``15`` (the paper's).
        lowres_weight: float. Weight of the low-resolution loss. Defaults to ``1.0``.
        label_tiles: str. ``"whole"``: each labelled image is one classification
            patch, fed whole (the paper's); ``"grid"``: cut into tiles that all
            inherit its label (``run_training``). Defaults to ``"whole"``.
        label_max_size_px: int. Whole labelled images are shrunk to this longest
            side (``run_training``). Defaults to ``512``.
        background_patches: bool. Tiles of the masked images that are at least
            90% background join the label stream labelled background
            (``run_training``). Defaults to ``True``.
        label_batch_size: int, optional. Whole labelled images per step.
            Defaults to ``None``: as many as fit in the pixels of one mask batch.
        best_epoch: bool. With validation images, keep the weights of the epoch
            with the best validation mean Dice (in inference mode). Defaults to ``True``.
        classification_weight: float. Weight of L_cls in the joint loss. Defaults to ``1.0`` (the paper's).
        allowed_class_weight: float. Weight of the allowed-class loss on the label
            stream. Defaults to :data:`DEFAULT_ALLOWED_CLASS_WEIGHT` (``1.0``); ``0.0`` is the paper's loss.
        present_class_share: float. Smallest expected share of an image's
            labelled class; ``0.0`` turns the present-class size loss off. Defaults to ``0.0``.
        self_training: bool. A second training on the masks plus the labelled
            images' pseudo-masks (``run_training``; S+C or S+C*, whole labelled
            images). Defaults to ``False``.
        pseudo_confidence: float. Pseudo-mask pixels less sure than this stay
            unannotated. Defaults to ``0.9``.
        teacher: str. The first round of self-training: the run's mode with the
            label stream (``"S+C"``), or the masks alone (``"S"``; the labels are
            then used only through the pseudo-masks). Defaults to ``"S+C"``.
        self_training_rounds: int. Trainings on masks + pseudo-masks after the
            first round; each model draws the pseudo-masks of the next. Defaults to ``1``.
        decoder: str. ResNet-18 decoder, ``"paper"`` or ``"skip"``. Defaults to ``"paper"``.
        upsampling: str. Final enlargement of the ResNet-18 logits, ``"nearest"``
            or ``"bilinear"``. Defaults to ``"nearest"``.
        model_card: dict, optional. ``mpp``, ``mpp_source``, ``macenko``,
            ``class_colors`` for the model card (``run_training``). Defaults to ``None``.
        overwrite: bool. Accept a non-empty output folder, replacing what
            weaksegtf wrote there (``run_training``). Defaults to ``False``.
        strategy: ``"none"`` (or ``None``), ``"mirrored"``, ``"multiworker"`` or a
            ``tf.distribute.Strategy`` (:mod:`weaksegtf.training.strategy`). Defaults to ``"none"``.
        num_classes: int, optional. Defaults to ``None``: the number of ``class_names``.
        label_class_weights: ``"auto"`` (inverse label frequency over the
            classification items, background tiles included), a list, or ``None``.
            Defaults to ``"auto"``.
        precise_batch_norm: bool. After every epoch, re-estimate the batch-norm
            statistics of the encoder and decoder on the mask tiles. Defaults to ``True``.

    Example:
    >>> config = TrainingConfig(class_names=["background", "gland"], epochs=15, learning_rate=1e-3)
    >>> config.replace(mode="S").mode, config.class_count
    ('S', 2)
    """

    # The first fields are run_training's settings in its historical order (its provenance lists them so).
    class_names: Sequence[str] | None = None
    mode: str = "S+C"
    tile_size_px: int = 128
    epochs: int = 10
    steps_per_epoch: int | None = None
    batch_size: int = DEFAULT_BATCH_SIZE
    learning_rate: float = DEFAULT_LEARNING_RATE
    lr_schedule: str = "constant"
    class_weights: str | Sequence[float] | None = "auto"
    update: str = "joint"
    augment: bool | str = False
    seed: int = 0
    encoder_weights: str | Path | None = None
    verbose: int | str | None = None
    architecture: str = "resnet18"
    unet_filters: int = 32
    segmentation_loss: str = "weighted_ce"
    joint_table: Any = None
    lowres_loss: str = "intra_inter"
    lowres_group_size: int | None = 15
    lowres_weight: float = 1.0
    label_tiles: str = "whole"
    label_max_size_px: int = 512
    background_patches: bool = True
    label_batch_size: int | None = None
    best_epoch: bool = True
    classification_weight: float = 1.0
    allowed_class_weight: float = DEFAULT_ALLOWED_CLASS_WEIGHT
    present_class_share: float = 0.0
    self_training: bool = False
    pseudo_confidence: float = 0.9
    teacher: str = "S+C"
    self_training_rounds: int = 1
    decoder: str = "paper"
    upsampling: str = "nearest"
    model_card: Mapping[str, Any] | None = None
    overwrite: bool = False
    strategy: Any = "none"
    num_classes: int | None = None
    label_class_weights: str | Sequence[float] | None = "auto"
    precise_batch_norm: bool = True

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Check every setting that needs no data (run when a config is made); raise ``ConfigError``."""
        check_choice("mode", self.mode, MODES)
        check_choice("label_tiles", self.label_tiles, LABEL_TILES)
        check_choice("lr_schedule", self.lr_schedule, LR_SCHEDULES)
        augmentation_mode(self.augment)
        if self.tile_size_px % SIZE_MULTIPLE:
            raise ConfigError(f"tile_size_px must be a multiple of {SIZE_MULTIPLE}, got {self.tile_size_px}")
        self.check_self_training()
        check_strategy(self.strategy)
        for name in ("class_weights", "label_class_weights"):
            value = getattr(self, name)
            if isinstance(value, str) and value != "auto":
                raise ConfigError(f"{name} must be 'auto', a list or None, got {value!r}")
        if self.encoder_weights is not None and self.architecture != "resnet18":
            raise ConfigError(f"encoder_weights are ResNet-18 weights; architecture {self.architecture!r} has none to load")
        named = self.class_names is not None and self.num_classes is not None
        if named and len(self.class_names) != self.num_classes:
            raise ConfigError(f"num_classes is {self.num_classes} but class_names lists {len(self.class_names)}: "
                              f"{list(self.class_names)}")

    def check_self_training(self, has_masks: bool = True, has_labels: bool = True) -> None:
        """With ``self_training``: a ConfigError unless masks, whole labelled images and mode S+C or S+C*."""
        usable = self.label_tiles == "whole" and self.mode in SELF_TRAINING_MODES and has_masks and has_labels
        if self.self_training and not usable:
            raise ConfigError("self-training needs masks and whole labelled images (label_tiles='whole') "
                              f"in mode S+C or S+C*; got mode {self.mode}, label_tiles {self.label_tiles!r}")
        check_choice("teacher", self.teacher, TEACHERS)
        rounds = self.self_training_rounds
        if isinstance(rounds, bool) or not isinstance(rounds, int) or rounds < 1:
            raise ConfigError(f"self_training_rounds must be a whole number >= 1, got {rounds!r}")

    @property
    def class_count(self) -> int:
        """``num_classes``, or the number of ``class_names``; a ConfigError if neither is set."""
        if self.num_classes is not None:
            return self.num_classes
        if self.class_names is None:
            raise ConfigError("the number of classes is unknown: set class_names (background first) or num_classes")
        return len(self.class_names)

    def replace(self, **changes: Any) -> TrainingConfig:
        """A copy with ``changes`` (checked again); a misspelt name raises ``ConfigError`` with the closest names."""
        check_setting_names(changes, SETTING_NAMES)
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """Every setting as a JSON value; a table or strategy object is recorded by its class name."""
        from weaksegtf.provenance import json_ready  # importlib.metadata: kept out of `weakseg-train --help`

        values = {name: getattr(self, name) for name in SETTING_NAMES}
        if values["joint_table"] is not None and not isinstance(values["joint_table"], (str, Path)):
            values["joint_table"] = type(values["joint_table"]).__name__
        if values["strategy"] is not None and not isinstance(values["strategy"], str):
            values["strategy"] = type(values["strategy"]).__name__  # a tf.distribute.Strategy object
        return json_ready(values)


#: Names of every ``TrainingConfig`` field, in order.
SETTING_NAMES = tuple(field.name for field in dataclasses.fields(TrainingConfig))


def training_config(config: TrainingConfig | None, settings: Mapping[str, Any]) -> TrainingConfig:
    """``config`` (or the defaults) with ``settings`` applied: what a library call trains with.

    Args:
        config: ``TrainingConfig``, optional. Defaults to the defaults.
        settings: mapping of field names to values, the keyword overrides of the call.

    Raises:
        ConfigError: ``config`` is not a ``TrainingConfig``, a name is not a
            setting (the message lists the closest ones), or a value is refused.
    """
    if config is None:
        config = TrainingConfig()
    elif not isinstance(config, TrainingConfig):
        raise ConfigError(f"config must be a TrainingConfig, got {type(config).__name__}; pass settings by keyword")
    return config.replace(**settings) if settings else config
