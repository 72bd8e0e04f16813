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

Importing the package imports none of its modules: each name below is loaded
from its module on first use (PEP 562), so ``weakseg-train --help``, which
needs only ``config`` and ``strategy``, stays instant. Training imports
TensorFlow on first use.
"""

from __future__ import annotations

import importlib
from typing import Any

# Every public name of the package and the module that holds it.
_EXPORTS = {
    "AUGMENTATIONS": "config",
    "DEFAULT_ALLOWED_CLASS_WEIGHT": "config",
    "DEFAULT_BATCH_SIZE": "config",
    "DEFAULT_LEARNING_RATE": "config",
    "LABEL_TILES": "config",
    "LR_SCHEDULES": "config",
    "TEACHERS": "config",
    "MODES": "config",
    "TrainingConfig": "config",
    "augmentation_mode": "config",
    "training_config": "config",
    "TrainingData": "training_data",
    "check_arrays": "modes",
    "check_block_labels": "modes",
    "check_labels": "modes",
    "check_validation": "modes",
    "image_labels_from_masks": "modes",
    "select_streams": "modes",
    "light_augment": "streams",
    "make_train_dataset": "streams",
    "learning_rate_schedule": "fit",
    "train_weak_segmenter": "fit",
    "TrainingResult": "run",
    "run_training": "run",
    "write_history_csv": "outputs",
    "evaluate_images": "prediction",
    "image_logits": "prediction",
    "inference_tile_px": "prediction",
    "predict_image": "prediction",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    """``name`` from its module, imported now and kept as an attribute of the package."""
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
