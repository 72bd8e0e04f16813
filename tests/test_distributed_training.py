"""Training under tf.distribute: strategy names, batch splitting, and one step on two replicas = one step on one device.

The two-replica tests run ``tests/_distributed_steps.py`` in a subprocess: the
CPU must be split into two logical devices (``tf.config.set_logical_device_configuration``)
before TensorFlow initialises its devices, which this process has done long before.

How the comparison is made meaningful:

- **Batch norm.** With a per-replica batch, training-mode batch norm would
  normalise each replica's half with that half's statistics (TensorFlow's
  MirroredStrategy does not synchronise them), so the step could not equal
  one device's step on the whole batch; and the moving statistics, mirrored
  variables without an aggregation, would drift apart between replicas.
  ``WeakSegmenter.compile`` therefore turns on
  ``keras.layers.BatchNormalization(synchronized=True)`` in every batch norm
  when the strategy has more than one replica: the statistics are sums
  all-reduced over the replicas, those of the global batch. The one-device
  reference is compiled with ``synchronized_batch_norm=True`` too, which on
  one device computes the same statistics by the same formula
  (``E[x^2] - E[x]^2``); ``masks_unsynchronized`` shows the step without it
  is far from the one-device step.
- **Precision.** The mask-only step is compared in float32 (atol 1e-5). The
  steps with whole labelled images are compared in float64: in float32 the
  one-device and two-replica steps differed by 1e-4 to 2 % of a step,
  depending on the initial weights (batch norm over mostly white, padded
  images and over the classifier's few items amplifies the different
  rounding of sums split over two replicas), while in float64 the same two
  steps agree to 1e-11 or closer. The difference is rounding, and float64
  leaves no room for a wrongly scaled loss.
- **Optimizer.** SGD: Adam's first step is about ``lr * sign(g)``, which
  would turn rounding noise in near-zero gradients into whole steps.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from weaksegtf.cli import train as train_cli
from weaksegtf.errors import ConfigError
from weaksegtf.training_strategy import STRATEGIES, check_strategy, resolve_strategy, tf_config_cluster

SCRIPT = Path(__file__).with_name("_distributed_steps.py")
REPO = Path(__file__).resolve().parents[1]
TRACED = ("masks", "masks_and_labels")
EAGER = ("masks_unsynchronized", "sequential", "minibatch_balanced", "lowres")
TF_CONFIG = '{"cluster": {"worker": ["localhost:12345", "localhost:12346"]}, "task": {"type": "worker", "index": 1}}'


# --- strategy names and TF_CONFIG (no TensorFlow) -----------------------------------------


def test_unknown_strategy_is_refused_naming_the_choices(tmp_path):
    from weaksegtf.training import run_training

    with pytest.raises(ConfigError, match=r"strategy 'horovod' is unknown; expected one of \('none', 'mirrored', "
                                          r"'multiworker'\) or a tf.distribute.Strategy"):
        run_training(None, None, None, tmp_path / "run", class_names=["background", "gland"], strategy="horovod")
    assert not (tmp_path / "run").exists()  # refused before anything was written or read
    with pytest.raises(ConfigError, match=r"or a tf.distribute.Strategy, got 2 \(int\)"):
        check_strategy(2)
    assert [check_strategy(name) for name in ("none", "mirrored")] == ["none", "mirrored"]
    assert check_strategy(None) == "none" and resolve_strategy("none") is None


def test_multiworker_without_tf_config_is_refused_before_any_image_is_read(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    with pytest.raises(ConfigError, match="strategy 'multiworker' needs the TF_CONFIG environment variable"):
        check_strategy("multiworker")
    code = train_cli.main(["--masks", str(tmp_path / "no-such-folder"), "--out", str(tmp_path / "run"),
                           "--classes", "background,gland", "--strategy", "multiworker"])
    assert code == 2
    error = capsys.readouterr().err
    assert "needs the TF_CONFIG environment variable" in error and '"cluster": {"worker"' in error
    monkeypatch.setenv("TF_CONFIG", TF_CONFIG)
    assert check_strategy("multiworker") == "multiworker"


@pytest.mark.parametrize("text, message", [
    ("{not json", "TF_CONFIG is not valid JSON"),
    ('{"task": {"type": "worker", "index": 0}}', "TF_CONFIG has no cluster.worker list"),
    ('{"cluster": {"worker": ["a:1"]}}', "TF_CONFIG has no task"),
    ('{"cluster": {"worker": ["a:1"]}, "task": {"type": "worker", "index": 1}}',
     "TF_CONFIG task index 1 is out of range for 1 worker"),
])
def test_malformed_tf_config_is_explained(text, message):
    with pytest.raises(ConfigError, match=message):
        tf_config_cluster({"TF_CONFIG": text})
    assert tf_config_cluster({"TF_CONFIG": TF_CONFIG})["task"]["index"] == 1


def test_cli_offers_the_strategies():
    args = train_cli.build_parser().parse_args(["--out", "x", "--classes", "a,b", "--strategy", "mirrored"])
    assert args.strategy == "mirrored" and train_cli.build_parser().get_default("strategy") == "none"
    assert STRATEGIES == ("none", "mirrored", "multiworker")
    with pytest.raises(SystemExit):
        train_cli.build_parser().parse_args(["--out", "x", "--classes", "a,b", "--strategy", "horovod"])


# --- batch splitting and the loss denominators (one device) -------------------------------


def test_every_stream_batch_splits_evenly_among_the_replicas():
    from weaksegtf.training import make_train_dataset

    rng = np.random.default_rng(0)
    tiles = rng.integers(0, 256, (6, 32, 32, 3), dtype=np.uint8)
    masks = rng.integers(0, 3, (6, 32, 32)).astype(np.uint8)
    whole = [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for h, w in [(40, 50), (30, 20), (32, 64)]]
    labels = np.array([1, 2, 1])
    with pytest.raises(ConfigError, match="batch_size 3 does not split evenly among 2 replicas; use a multiple of 2"):
        make_train_dataset(tiles, masks, None, None, batch_size=3, replicas=2)
    with pytest.raises(ConfigError, match="label_batch_size 3 does not split evenly among 2 replicas"):
        make_train_dataset(tiles, masks, whole, labels, batch_size=2, label_batch_size=3, replicas=2)

    def sizes(replicas, batch_size):
        dataset, _ = make_train_dataset(tiles, masks, whole, labels, batch_size=batch_size,
                                        background_images=tiles[:1], replicas=replicas)
        return {name: spec[0].shape[0] for name, spec in dataset.element_spec.items()}

    # The defaults: whole images by pixels (at least 2), background tiles by their share of the items
    # (1 tile for 3 images: round(2 / 3) = 1), rounded up to a multiple of the replicas.
    assert sizes(1, 2) == {"mask": 2, "label": 2, "background": 1}
    assert sizes(2, 2) == {"mask": 2, "label": 2, "background": 2}
    assert sizes(4, 4) == {"mask": 4, "label": 4, "background": 4}


def test_loss_denominators_by_hand():
    from weaksegtf.losses import annotated_weight, minibatch_class_counts, weighted_cross_entropy
    from weaksegtf.losses.inter_instance_loss import present_cell_count
    from weaksegtf.models.cross_replica import replica_part, replicas_in_sync, sum_over_replicas

    masks = np.array([[[0, 1], [255, 2]], [[2, 2], [0, 255]]])
    # weights 0.5, 1 and 2 over the annotated pixels 0, 1, 2, 2, 2, 0
    assert float(annotated_weight(masks, [0.5, 1.0, 2.0])) == pytest.approx(0.5 + 1 + 2 + 2 + 2 + 0.5)
    assert float(annotated_weight(masks)) == 6.0
    assert np.asarray(minibatch_class_counts(masks, 3)).tolist() == [2.0, 1.0, 3.0]
    # blocks in groups of 3: (0, 0, 1) and (1, 255, 1) -> cells (g0, 0), (g0, 1), (g1, 1)
    assert float(present_cell_count(np.array([0, 0, 1, 1, 255, 1]), num_labels=2, group_size=3)) == 3.0
    assert float(present_cell_count(np.array([0, 0, 1, 1, 255, 1]), num_labels=2, group_size=None)) == 2.0
    # without a strategy, nothing changes
    loss = weighted_cross_entropy(masks, np.zeros((2, 2, 2, 3), np.float32), [0.5, 1.0, 2.0])
    assert replicas_in_sync() == 1 and replica_part(loss, 8.0) is loss
    assert float(sum_over_replicas(loss)) == pytest.approx(math.log(3))


def test_batch_norms_synchronize_only_when_asked_or_on_several_replicas():
    import keras

    from weaksegtf.models import WeakSegmenter

    model = WeakSegmenter(num_classes=2, architecture="unet", unet_filters=4)
    norms = [layer for layer in model._flatten_layers() if isinstance(layer, keras.layers.BatchNormalization)]
    model.compile(optimizer="sgd")
    assert len(norms) == 23 and not any(layer.synchronized for layer in norms)  # one device: as before
    model.compile(optimizer="sgd", synchronized_batch_norm=True)
    assert all(layer.synchronized for layer in norms)
    # training-only: not part of the saved architecture
    fresh = WeakSegmenter.from_config(model.get_config())
    assert not any(layer.synchronized for layer in fresh._flatten_layers()
                   if isinstance(layer, keras.layers.BatchNormalization))


# --- two replicas (subprocess) ------------------------------------------------------------


@pytest.fixture(scope="module")
def two_replicas() -> dict:
    """Every case of ``_distributed_steps.py``, run once on two logical CPUs."""
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "TF_CPP_MIN_LOG_LEVEL": "3",
           "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    run = subprocess.run([sys.executable, str(SCRIPT), *TRACED, *EAGER, "end_to_end"], env=env,
                         capture_output=True, text=True, timeout=1800)
    results = {}
    for line in run.stdout.splitlines():
        if line.startswith("{"):
            results.update(json.loads(line))
    if run.returncode:
        pytest.fail(f"{SCRIPT.name} failed after {sorted(results)}:\n{run.stderr[-3000:]}")
    return results


@pytest.mark.slow
@pytest.mark.parametrize("case, dtype", [("masks", "float32"), ("masks_and_labels", "float64")])
def test_one_mirrored_step_equals_one_single_device_step(two_replicas, case, dtype):
    result = two_replicas[case]
    assert result["replicas"] == 2 and result["dtype"] == dtype and not result["eager"]
    assert all(result["synchronized"])  # compile's default under a strategy with two replicas
    assert result["max_step"] > 0.1  # the step moved the weights: the comparison is not vacuous
    assert result["max_weight_difference"] < 1e-5
    if dtype == "float64":
        assert result["max_relative_difference"] < 1e-9
    assert result["replica_spread"] == 0.0  # the replicas' copies (moving statistics included) agree
    for name, value in result["single_logs"].items():  # losses and accuracies of the global batch
        assert result["mirrored_logs"][name] == pytest.approx(value, rel=1e-5), name


@pytest.mark.slow
@pytest.mark.parametrize("case", ["sequential", "minibatch_balanced", "lowres"])
def test_other_updates_and_losses_are_exact_on_two_replicas(two_replicas, case):
    """Two optimizer updates per step, eq. 2's batch-wide class counts, and label super-resolution groups."""
    result = two_replicas[case]
    assert result["replicas"] == 2 and result["dtype"] == "float64" and result["max_step"] > 0.1
    assert result["max_weight_difference"] < 1e-5 and result["max_relative_difference"] < 1e-9
    assert result["replica_spread"] == 0.0
    for name, value in result["single_logs"].items():
        assert result["mirrored_logs"][name] == pytest.approx(value, rel=1e-5), name


@pytest.mark.slow
def test_without_synchronized_batch_norm_the_step_differs_and_replicas_drift(two_replicas):
    result = two_replicas["masks_unsynchronized"]
    assert not any(result["synchronized"])
    assert result["max_relative_difference"] > 0.1
    assert result["replica_spread"] > 1e-3  # each replica kept its own half's moving statistics


@pytest.mark.slow
def test_run_training_on_two_replicas_with_precise_batch_norm_and_validation(two_replicas):
    result = two_replicas["end_to_end"]
    assert result["replicas"] == 2 and all(result["synchronized"])
    assert result["model_written"]
    assert result["metrics"] == {"strategy": "MirroredStrategy", "replicas": 2, "n_background_tiles": 1,
                                 "best_epoch": result["best_epoch"]}
    # precise batch norm and the best-epoch restore assign in the strategy's scope: every copy follows
    assert result["replica_spread"] == 0.0
    history = result["history"]
    assert {"loss", "seg_loss", "cls_loss", "val_mean_dice"} <= set(history)
    assert all(len(values) == 2 and all(math.isfinite(v) for v in values) for values in history.values())
    assert result["best_epoch"] in (1, 2)
