"""One training step on one device and on two replicas, compared; run by ``test_distributed_training.py``.

TensorFlow must split the CPU into two logical devices before it initialises
them, which a pytest process that has already used TensorFlow cannot undo, so
the test runs this file in a subprocess: ``python _distributed_steps.py CASE...``
prints one JSON line ``{case: measurements}`` per case.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import tensorflow as tf  # noqa: E402

_cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(_cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
# The machine is shared: two threads in all.
tf.config.threading.set_intra_op_parallelism_threads(1)
tf.config.threading.set_inter_op_parallelism_threads(2)

import keras  # noqa: E402
import numpy as np  # noqa: E402

from weaksegtf.data.joint_distribution_table import JointDistributionTable  # noqa: E402
from weaksegtf.models import WeakSegmenter  # noqa: E402
from weaksegtf.training import make_train_dataset, train_weak_segmenter  # noqa: E402

CLASSES = ["background", "benign", "malignant"]
TILE_PX = 32
LEARNING_RATE = 0.1
# One strategy for every case: TensorFlow gives each MirroredStrategy the same collective
# keys, so a second one over the same devices would collide with the first one's all-reduces.
STRATEGY = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
TABLE = JointDistributionTable([[0.6, 0.3, 0.1], [0.2, 0.3, 0.5]], [[0.1, 0.1, 0.1], [0.1, 0.1, 0.1]])


def _image(rng, height: int, width: int) -> np.ndarray:
    """Noise around a colour of its own, so that the items of a batch differ."""
    colour = rng.uniform(20, 235, 3)
    return np.clip(colour + rng.normal(0, 25, (height, width, 3)), 0, 255).astype(np.uint8)


def _data(n_masks: int, n_whole: int, n_background: int, n_lowres: int = 0, seed: int = 0):
    rng = np.random.default_rng(seed)
    masks_x = np.stack([_image(rng, TILE_PX, TILE_PX) for _ in range(n_masks)])
    masks_y = rng.integers(0, 3, (n_masks, TILE_PX, TILE_PX)).astype(np.uint8)
    masks_y[:, :5] = 255  # not annotated
    sizes = [(24, 40), (30, 20), (16, 36), (20, 24)][:n_whole]  # padded together to 32 x 48
    whole = [_image(rng, h, w) for h, w in sizes]
    labels = np.array([1, 2, 1, 2][:n_whole], np.int32)
    background = [_image(rng, TILE_PX, TILE_PX) for _ in range(n_background)]
    lowres = [_image(rng, TILE_PX, TILE_PX) for _ in range(n_lowres)]
    blocks = rng.choice([0, 1, 255], (n_lowres, 2, 2)).astype(np.int32)  # 2 x 2 block labels per image
    return masks_x, masks_y, whole, labels, np.array(background), np.array(lowres), blocks


def global_batch(n_masks: int, n_whole: int = 0, n_background: int = 0, n_lowres: int = 0) -> dict:
    """One element of ``make_train_dataset`` (whole labelled images padded together, with valid maps), as numpy."""
    masks_x, masks_y, whole, labels, background, lowres, blocks = _data(n_masks, n_whole, n_background, n_lowres)
    dataset, _ = make_train_dataset(
        masks_x, masks_y, whole if n_whole else None, labels if n_whole else None, batch_size=n_masks,
        label_batch_size=n_whole or None, background_images=background if n_background else None,
        lowres_images=lowres if n_lowres else None, block_labels=blocks if n_lowres else None,
    )
    element = next(iter(dataset))
    return {name: tuple(np.asarray(part) for part in stream) for name, stream in element.items()}


def batch_dataset(batch: dict):
    """The same global batch at every step, batched as the training streams, so Keras splits it as in training."""
    streams = {name: tf.data.Dataset.from_tensor_slices(parts).batch(len(parts[0]), drop_remainder=True).repeat()
               for name, parts in batch.items()}
    return tf.data.Dataset.zip(streams)


def _model(settings: dict, weights=None):
    keras.utils.set_random_seed(0)
    model = WeakSegmenter(num_classes=3, class_names=CLASSES, **settings)
    if weights is not None:
        model.set_weights(weights)
    return model


def one_step(batch: dict, settings: dict, strategy=None, synchronized_batch_norm=True, weights=None, eager=False):
    """Weights after one SGD step on ``batch``, the step's logs and the model.

    ``eager`` runs the step without tracing it (as ``fit(run_eagerly=True)``): the same
    arithmetic at a third of the CPU time, for the cases beyond the traced ones training runs.

    The one-device reference computes its batch statistics as the synchronized batch norm does
    (``E[x^2] - E[x]^2`` rather than ``tf.nn.moments``' two passes), so that the comparison
    measures what distribution changes, not how a variance is rounded.
    """
    with strategy.scope() if strategy is not None else contextlib.nullcontext():
        model = _model(settings, weights)
        # SGD, not Adam: Adam's first update is lr * g / (|g| + eps), about lr * sign(g), which would
        # turn rounding noise in a near-zero gradient into a full step; SGD's step is the gradient.
        model.compile(optimizer=keras.optimizers.SGD(LEARNING_RATE), synchronized_batch_norm=synchronized_batch_norm,
                      run_eagerly=eager)
        history = model.fit(batch_dataset(batch), epochs=1, steps_per_epoch=1, verbose=0)
    return [np.asarray(w) for w in model.get_weights()], history.history, model


def replica_spread(model) -> float:
    """Largest difference between the replicas' copies of any variable (0 when they are in sync)."""
    spread = 0.0
    for variable in model.weights:
        copies = getattr(variable.value, "values", None) or ()
        for copy in copies[1:]:
            spread = max(spread, float(np.max(np.abs(np.asarray(copy) - np.asarray(copies[0])))))
    return spread


def differences(single: list, other: list, initial: list, names: list) -> dict:
    """How far ``other`` is from ``single`` after one step from ``initial``, elementwise and per weight.

    ``max_relative_difference`` is the largest ``|step_other - step_single| / |step_single|`` (L2
    norms) over the weights whose step is not negligible (above 1e-4): a phase whose loss were
    scaled wrongly would show there even if its weights moved little.
    """
    steps = [a - b for a, b in zip(single, initial)]
    gaps = [a - b for a, b in zip(single, other)]
    relative = [(float(np.linalg.norm(g) / np.linalg.norm(d)), n) for g, d, n in zip(gaps, steps, names)
                if np.linalg.norm(d) > 1e-4]
    return {
        "max_weight_difference": max(float(np.max(np.abs(g))) for g in gaps),
        "max_step": max(float(np.max(np.abs(d))) for d in steps),
        "max_relative_difference": max(relative)[0],
        "worst_weight": max(relative)[1],
    }


def compare(batch: dict, settings: dict, dtype: str = "float32", synchronized_batch_norm=None, eager=False) -> dict:
    """One step on one device and on :data:`STRATEGY`'s two replicas, from the same weights."""
    start = time.perf_counter()
    keras.config.set_floatx(dtype)
    keras.config.set_dtype_policy(dtype)
    try:
        initial = [np.asarray(w) for w in _model(settings).get_weights()]
        single, single_logs, _ = one_step(batch, settings, weights=initial, eager=eager)
        mirrored, mirrored_logs, model = one_step(batch, settings, STRATEGY, synchronized_batch_norm, initial, eager)
    finally:
        keras.config.set_floatx("float32")
        keras.config.set_dtype_policy("float32")
    return {
        "replicas": STRATEGY.num_replicas_in_sync,
        "dtype": str(model.weights[0].dtype),
        "eager": eager,
        "synchronized": [layer.synchronized for layer in model._flatten_layers()
                         if isinstance(layer, keras.layers.BatchNormalization)],
        **differences(single, mirrored, initial, [w.path for w in model.weights]),
        "replica_spread": replica_spread(model),
        "single_logs": {k: float(v[-1]) for k, v in single_logs.items()},
        "mirrored_logs": {k: float(v[-1]) for k, v in mirrored_logs.items()},
        "seconds": round(time.perf_counter() - start, 1),
    }


def end_to_end() -> dict:
    """``run_training`` on two replicas: S+C with whole images, background tiles, precise batch norm and validation."""
    from weaksegtf import training
    from weaksegtf.data import LabelSet, MaskSet
    from weaksegtf.training import run as training_run

    start = time.perf_counter()
    masks_x, masks_y, whole, labels, _, _, _ = _data(4, 4, 0)
    masks_y[1] = 0  # a background tile for the label stream: 1 per step, rounded up to 2 for the two replicas
    trained = []

    def train_and_keep(*args, **kwargs):
        trained.append(train_weak_segmenter(*args, **kwargs))
        return trained[-1]

    training_run.train_weak_segmenter = train_and_keep  # to look at the live model's replicas
    result = training.run_training(
        MaskSet(list(masks_x), list(masks_y), [f"tile{i}" for i in range(4)]),
        LabelSet(whole, labels.tolist(), [f"image{i}" for i in range(4)]),
        MaskSet([masks_x[0], masks_x[2]], [masks_y[0], masks_y[2]], ["val0", "val1"]),
        tempfile.mkdtemp(), class_names=CLASSES, mode="S+C", tile_size_px=TILE_PX, epochs=2, steps_per_epoch=2,
        batch_size=2, label_batch_size=2, architecture="unet", unet_filters=4, verbose=0, strategy=STRATEGY,
    )
    model, history = trained[-1]
    return {
        "replicas": model.distribute_strategy.num_replicas_in_sync,
        "synchronized": [layer.synchronized for layer in model._flatten_layers()
                         if isinstance(layer, keras.layers.BatchNormalization)],
        "replica_spread": replica_spread(model),
        "history": {k: [float(x) for x in v] for k, v in history.history.items()},
        "best_epoch": history.whole_image_validation.best_epoch,
        "metrics": {key: result.metrics[key] for key in ("strategy", "replicas", "n_background_tiles", "best_epoch")},
        "model_written": result.model_path.is_file(),
        "seconds": round(time.perf_counter() - start, 1),
    }


JOINT = {"allowed_class_weight": 1.0, "present_class_share": 0.2, "label_class_weights": [2.0, 1.0, 0.5]}
LOWRES = {"joint_table": TABLE, "lowres_loss": "intra_inter", "lowres_group_size": 4, "lowres_weight": 0.5}
#: name: ((mask tiles, whole labelled images, background tiles, low-resolution images) of the global batch,
#: model settings, dtype, synchronized batch norm on the replicas (None: compile's default), eager)
CASES = {
    # traced, as training runs
    "masks": ((4, 0, 0, 0), {"class_weights": [0.5, 1.0, 2.0]}, "float32", None, False),
    "masks_and_labels": ((4, 4, 4, 0), JOINT, "float64", None, False),
    # eager
    "masks_unsynchronized": ((4, 0, 0, 0), {"class_weights": [0.5, 1.0, 2.0]}, "float64", False, True),
    "sequential": ((4, 2, 2, 0), {**JOINT, "update": "sequential"}, "float64", None, True),
    "minibatch_balanced": ((4, 0, 0, 0), {"segmentation_loss": "minibatch_balanced"}, "float64", None, True),
    "lowres": ((4, 0, 0, 4), LOWRES, "float64", None, True),
}


def main(names: list[str]) -> None:
    for name in names:
        if name == "end_to_end":
            result = end_to_end()
        else:
            sizes, settings, dtype, synchronized, eager = CASES[name]
            result = compare(global_batch(*sizes), settings, dtype, synchronized, eager)
        print(json.dumps({name: result}), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
