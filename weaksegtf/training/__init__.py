"""Training of a ``WeakSegmenter`` from mask sets and label sets, in the paper's data modes.

Ciga & Martel section 3.3: **S** uses s% of the images with masks; **S+C** adds
the other (100 - s)% as label-only images; **S+C*** uses s% masks plus *all*
images as labels; **C** uses labels only. **LR** trains from low-resolution
(block) labels alone with a label super-resolution loss (Zhao et al. 2019);
in the other modes, low-resolution data, when given, joins as a third stream.
The library functions here are what ``weakseg-train`` and ``weakseg-demo`` call.

Every setting lives in one :class:`TrainingConfig`; :func:`run_training` and
:func:`train_weak_segmenter` take it and accept its fields as keyword overrides:

>>> from weaksegtf.training import TrainingConfig, run_training
>>> config = TrainingConfig(class_names=["background", "benign", "malignant"], epochs=15, learning_rate=1e-3)
>>> result = run_training(masks, labels, val, "runs/sc", config, mode="S")  # doctest: +SKIP

The package, one idea a module:

- ``config``: :class:`TrainingConfig`, the choices and defaults;
- ``training_data``: :class:`TrainingData`, the arrays of one training;
- ``modes``: the data modes and input checks;
- ``streams``: the tf.data streams and their augmentation;
- ``fit``: :func:`train_weak_segmenter`;
- ``run``: :func:`run_training` and what it writes;
- ``outputs``: the output folder, model card and provenance checks of a run;
- ``prediction``: whole-image prediction and scores;
- ``strategy``: ``tf.distribute`` strategies by name;
- ``precise_batch_norm``, ``whole_image_validation``: the epoch callbacks (they import Keras, so they are not
  imported here).

Importing this package does not import TensorFlow; training does, on first use.
"""

from weaksegtf.training.config import (
    AUGMENTATIONS,
    DEFAULT_ALLOWED_CLASS_WEIGHT,
    DEFAULT_BATCH_SIZE,
    DEFAULT_LEARNING_RATE,
    LABEL_TILES,
    LR_SCHEDULES,
    MODES,
    TrainingConfig,
    augmentation_mode,
    training_config,
)
from weaksegtf.training.fit import learning_rate_schedule, train_weak_segmenter
from weaksegtf.training.modes import (
    check_arrays,
    check_block_labels,
    check_labels,
    check_validation,
    image_labels_from_masks,
    select_streams,
)
from weaksegtf.training.outputs import write_history_csv
from weaksegtf.training.prediction import evaluate_images, image_logits, inference_tile_px, predict_image
from weaksegtf.training.run import TrainingResult, run_training
from weaksegtf.training.streams import light_augment, make_train_dataset
from weaksegtf.training.training_data import TrainingData

__all__ = [
    "AUGMENTATIONS",
    "DEFAULT_ALLOWED_CLASS_WEIGHT",
    "DEFAULT_BATCH_SIZE",
    "DEFAULT_LEARNING_RATE",
    "LABEL_TILES",
    "LR_SCHEDULES",
    "MODES",
    "TrainingConfig",
    "TrainingData",
    "TrainingResult",
    "augmentation_mode",
    "check_arrays",
    "check_block_labels",
    "check_labels",
    "check_validation",
    "evaluate_images",
    "image_labels_from_masks",
    "image_logits",
    "inference_tile_px",
    "learning_rate_schedule",
    "light_augment",
    "make_train_dataset",
    "predict_image",
    "run_training",
    "select_streams",
    "train_weak_segmenter",
    "training_config",
    "write_history_csv",
]
