"""Data modes, tf.data streams, the training library, and the weakseg-train / weakseg-demo CLIs."""

import json
import subprocess
import sys

import cv2
import keras
import numpy as np
import pytest

from weaksegtf.cli import demo as demo_cli
from weaksegtf.cli import train as train_cli
from weaksegtf.data import LabelSet, MaskSet, make_synthetic_dataset
from weaksegtf.errors import ConfigError, DataError
from weaksegtf.training import (
    check_arrays,
    image_labels_from_masks,
    make_train_dataset,
    run_training,
    select_streams,
)

CLASSES = ["background", "benign gland", "malignant gland"]


def _arrays(n, size=32):
    rng = np.random.default_rng(n)
    return (rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8),
            rng.integers(0, 3, (n, size, size)).astype(np.uint8),
            rng.integers(0, 3, (n,)).astype(np.int32))


def test_image_labels_from_masks_takes_the_dominant_foreground_class():
    masks = np.zeros((3, 4, 4), np.uint8)
    masks[0, :2] = 2
    masks[0, 3, 0] = 1
    masks[1] = 255
    masks[2, 0, 0] = 1
    assert image_labels_from_masks(masks).tolist() == [2, 0, 1]


def test_modes_select_the_right_streams():
    mx, my, _ = _arrays(3)
    lx, _, ly = _arrays(5)
    assert select_streams("S", mx, my, lx, ly)[2] is None
    assert select_streams("C", mx, my, lx, ly)[0] is None
    _, _, star_x, star_y = select_streams("S+C*", mx, my, lx, ly, mask_labels=np.array([1, 2, 1]))
    assert len(star_x) == 8 and star_y[-3:].tolist() == [1, 2, 1]
    _, _, both_x, _ = select_streams("S+C", mx, my, lx, ly)
    assert len(both_x) == 5


def test_empty_label_set_in_s_plus_c_is_refused():
    mx, my, _ = _arrays(3)
    with pytest.raises(ConfigError, match="mode S\\+C needs a non-empty label set, got 0 label images"):
        select_streams("S+C", mx, my, mx[:0], np.zeros(0, np.int32))
    with pytest.raises(ConfigError, match="mode 'X' is unknown"):
        select_streams("X", mx, my, None, None)


def test_out_of_range_values_are_refused_before_tensorflow():
    x, y, labels = _arrays(2)
    y[1, 3, 4] = 7
    with pytest.raises(DataError, match="mask set: mask value 7 is out of range for 3 classes"):
        check_arrays(x, y, 3, "mask set")
    y[1, 3, 4] = 255  # not annotated is fine
    check_arrays(x, y, 3, "mask set")
    with pytest.raises(DataError, match="label set: label 5 is out of range for 3 classes"):
        check_arrays(x, np.array([0, 5]), 3, "label set")
    with pytest.raises(ConfigError, match="tiles are 30x30; height and width must be multiples of 16"):
        check_arrays(x[:, :30, :30], y[:, :30, :30], 3, "mask set")


def test_streams_are_zipped_and_the_shorter_repeats():
    mx, my, _ = _arrays(3)
    lx, _, ly = _arrays(9)
    dataset, steps = make_train_dataset(mx, my, lx, ly, batch_size=2)
    assert steps == 5  # ceil(9 / 2): one pass over the larger stream
    batches = list(dataset.take(steps))
    assert set(batches[0]) == {"mask", "label"}
    assert tuple(batches[0]["mask"][0].shape) == (2, 32, 32, 3)
    assert tuple(batches[0]["label"][1].shape) == (2,)
    assert batches[0]["mask"][0].dtype.name == "float32"


def _write_folders(root, n_masked=4, n_labels=4, size=32):
    mask_set, labels = make_synthetic_dataset(n_images=n_masked + n_labels + 2, size_px=size, seed=3)
    mask_set.subset(range(n_masked)).write(root / "masks")
    rows = range(n_masked, n_masked + n_labels)
    LabelSet([mask_set.images[i] for i in rows], [int(labels[i]) for i in rows],
             [mask_set.names[i] for i in rows]).write(root / "labels")
    mask_set.subset(range(n_masked + n_labels, n_masked + n_labels + 2)).write(root / "val")


@pytest.mark.slow
def test_train_cli_writes_model_history_metrics_and_overlay(tmp_path):
    _write_folders(tmp_path)
    out = tmp_path / "run"
    code = train_cli.main([
        "--masks", str(tmp_path / "masks"), "--labels", str(tmp_path / "labels"), "--val", str(tmp_path / "val"),
        "--out", str(out), "--classes", ",".join(CLASSES), "--tile-size", "32", "--epochs", "2",
        "--batch-size", "2", "--steps-per-epoch", "0", "--no-self-training",
    ])
    assert code == 0
    assert {p.name for p in out.iterdir()} >= {"model.keras", "history.csv", "metrics.json", "predictions.png"}
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["mode"] == "S+C" and metrics["n_mask_tiles"] == 4 and metrics["n_label_items"] == 4
    assert metrics["steps_per_epoch"] == 2  # 0: one pass over the 4 mask tiles in batches of 2, as the paper
    assert set(metrics["validation"]["dice"]) == set(CLASSES)
    # the whole TrainingConfig the CLI built: its options, and the library's settings it leaves alone
    assert metrics["config"]["class_names"] == CLASSES and metrics["config"]["learning_rate"] == 1e-3
    assert metrics["config"]["steps_per_epoch"] is None and metrics["config"]["verbose"] == 2
    assert metrics["config"]["precise_batch_norm"] is True
    header = (out / "history.csv").read_text().splitlines()[0].split(",")
    assert {"epoch", "seg_loss", "cls_loss", "val_mean_iou"} <= set(header)
    assert len((out / "history.csv").read_text().splitlines()) == 3
    model = keras.saving.load_model(out / "model.keras")
    assert model.class_names == CLASSES
    assert cv2.imread(str(out / "predictions.png")) is not None


def test_train_cli_defaults_are_the_recipe_measured_on_glas_validation_patients(tmp_path):
    """docs/results.md: light augmentation, a cosine learning rate and, wherever it applies (masks + whole
    labelled images, S+C or S+C*), self-training from a masks-only teacher with two student rounds."""
    from weaksegtf.cli.train import build_parser, training_config_from_args

    def config(*extra):
        args = build_parser().parse_args(["--masks", "m", "--labels", "l", "--out", str(tmp_path / "o"),
                                          "--classes", "a,b", *extra])
        return training_config_from_args(args, ["a", "b"], {})

    default = config()
    assert (default.augment, default.lr_schedule, default.learning_rate) == ("light", "cosine", 1e-3)
    assert default.self_training and default.teacher == "S" and default.self_training_rounds == 2
    assert (default.epochs, default.steps_per_epoch, default.best_epoch) == (15, 50, True)
    assert not config("--no-self-training").self_training
    assert not config("--mode", "S").self_training  # nothing to self-train from
    assert not config("--label-tiles", "grid").self_training
    assert config("--mode", "S+C*").self_training
    with pytest.raises(ConfigError, match="self-training needs masks and whole labelled images"):
        config("--mode", "S", "--self-training")


def test_train_cli_reports_mismatched_mask_without_a_traceback(tmp_path, capsys):
    _write_folders(tmp_path)
    cv2.imwrite(str(tmp_path / "masks" / "masks" / "synthetic_0001.png"), np.zeros((20, 24), np.uint8))
    code = train_cli.main(["--masks", str(tmp_path / "masks"), "--labels", str(tmp_path / "labels"),
                           "--out", str(tmp_path / "run"), "--classes", ",".join(CLASSES), "--tile-size", "32"])
    err = capsys.readouterr().err
    assert code == 2
    assert "synthetic_0001.png has shape (20, 24) but image synthetic_0001.png is (32, 32)" in err
    assert "Traceback" not in err
    assert not (tmp_path / "run" / "model.keras").exists()


def test_train_cli_refuses_s_plus_c_without_labels(tmp_path, capsys):
    _write_folders(tmp_path)
    code = train_cli.main(["--masks", str(tmp_path / "masks"), "--out", str(tmp_path / "run"),
                           "--classes", ",".join(CLASSES), "--mode", "S+C", "--tile-size", "32"])
    assert code == 2
    assert "mode S+C needs a non-empty label set" in capsys.readouterr().err


@pytest.mark.slow
def test_demo_runs_end_to_end_on_tiny_settings(tmp_path):
    from weaksegtf.demo import run_demo

    result = run_demo(tmp_path / "demo", n_images=8, n_val=2, tile_size_px=32, epochs=1, verbose=0)
    assert result.model_path.is_file() and result.overlay_path.is_file()
    assert result.metrics["n_mask_tiles"] == 2 and result.metrics["n_label_items"] == 6
    assert 0.0 <= result.metrics["validation"]["pixel_accuracy"] <= 1.0


def test_cli_help_is_instant_and_imports_no_tensorflow():
    code = ("import sys, weaksegtf.cli.demo, weaksegtf.cli.train;"
            "assert 'tensorflow' not in sys.modules and 'keras' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True)
    with pytest.raises(SystemExit) as exit_info:
        demo_cli.main(["--help"])
    assert exit_info.value.code == 0


def test_augmented_streams_keep_shapes_and_dtypes():
    mx, my, _ = _arrays(4)
    lx, _, ly = _arrays(4)
    dataset, _ = make_train_dataset(mx, my, lx, ly, batch_size=2, augment=True)
    batch = next(iter(dataset))
    assert tuple(batch["mask"][0].shape) == (2, 32, 32, 3) and batch["mask"][0].dtype.name == "float32"
    assert tuple(batch["mask"][1].shape) == (2, 32, 32)
    # Masks stay class indices after geometric augmentation (nearest resampling).
    assert set(np.unique(batch["mask"][1].numpy())) <= {0, 1, 2}


def test_cosine_schedule_halves_at_mid_training_and_ends_near_zero():
    from weaksegtf.training import learning_rate_schedule

    assert learning_rate_schedule(1e-3, "constant", 100) == 1e-3
    cosine = learning_rate_schedule(1e-3, "cosine", 100)
    expected = [1e-3 * 0.5 * (1 + np.cos(np.pi * step / 100)) for step in (0, 25, 50, 100)]
    assert [float(cosine(step)) for step in (0, 25, 50, 100)] == pytest.approx(expected, abs=1e-9)
    with pytest.raises(ConfigError, match="lr_schedule 'linear' is unknown; expected one of"):
        learning_rate_schedule(1e-3, "linear", 100)


def test_cosine_training_decays_over_all_updates_and_is_recorded(tmp_path):
    from weaksegtf.training import train_weak_segmenter

    mx, my, _ = _arrays(4)
    model, _ = train_weak_segmenter(mx, my, None, None, num_classes=3, mode="S", epochs=2, steps_per_epoch=3,
                                    batch_size=2, learning_rate=1e-3, lr_schedule="cosine", verbose=0)
    optimizer = model.optimizer
    assert int(optimizer.iterations) == 6
    # after 6 of 6 updates the half cosine has reached 0
    assert float(optimizer.learning_rate) == pytest.approx(0.0, abs=1e-9)
