"""weakseg-eval on small folders: files written, numbers, bad input, and the --model path."""

import csv
import json

import numpy as np
import pytest
import tifffile

from weaksegtf.cli import evaluate as eval_cli
from weaksegtf.data import write_png
from weaksegtf.evaluation import evaluate_predictions, read_label_image
from weaksegtf.errors import ConfigError

CLASSES = "background,benign,malignant"


def _write_pyramid(path, labels):
    """A tiled two-level label TIFF, as whole-slide inference writes."""
    with tifffile.TiffWriter(path) as tif:
        tif.write(labels, tile=(16, 16), subifds=1)
        tif.write(labels[::2, ::2], tile=(16, 16), subfiletype=1)


@pytest.fixture
def folders(tmp_path):
    """Three 32x32 cases: a perfect one, one half wrong, one stored as a pyramidal TIFF."""
    masks, predictions, images = tmp_path / "masks", tmp_path / "pred", tmp_path / "images"
    truth = np.zeros((32, 32), np.uint8)
    truth[8:24, 8:24] = 1
    write_png(masks / "a.png", truth)
    write_png(predictions / "a.png", truth)
    other = np.zeros((32, 32), np.uint8)
    other[:, 16:] = 2
    other[0, 0] = 255
    write_png(masks / "b.png", other)
    write_png(predictions / "b.png", np.zeros((32, 32), np.uint8))  # misses class 2 entirely
    write_png(masks / "c.png", truth)
    predictions.mkdir(exist_ok=True)
    _write_pyramid(predictions / "c.tif", truth)
    rng = np.random.default_rng(0)
    for name in "abc":
        write_png(images / f"{name}.png", rng.integers(0, 256, (32, 32, 3), dtype=np.uint8))
    return tmp_path


def test_pyramidal_tiff_is_read_at_level_0(folders):
    labels = read_label_image(folders / "pred" / "c.tif")
    assert labels.shape == (32, 32) and labels[8:24, 8:24].min() == 1


def test_cli_writes_every_file_with_the_right_numbers(folders, capsys):
    out = folders / "eval"
    code = eval_cli.main(["--predictions", str(folders / "pred"), "--masks", str(folders / "masks"),
                          "--images", str(folders / "images"), "--classes", CLASSES, "--out", str(out), "--grid", "1"])
    assert code == 0
    for name in ("metrics.json", "per_image.csv", "confusion_matrix.png", "best_worst.png"):
        assert (out / name).is_file() and (out / name).stat().st_size > 0
    metrics = json.loads((out / "metrics.json").read_text())
    # a and c perfect (256 gland + 768 background each); b: 511 background right, 512 malignant missed.
    assert metrics["confusion_matrix"] == [[768 * 2 + 511, 0, 0], [0, 512, 0], [512, 0, 0]]
    assert metrics["pixel_accuracy"] == pytest.approx((2048 + 511) / (3072 - 1))
    assert metrics["foreground_accuracy"] == pytest.approx(512 / 1024)
    assert metrics["f1"]["malignant"] == 0.0 and metrics["recall"]["benign"] == 1.0
    assert metrics["worst"] == ["b"] and metrics["best"] == ["c"]
    with open(out / "per_image.csv") as handle:
        rows = {row["name"]: row for row in csv.DictReader(handle)}
    assert float(rows["a"]["f1_macro"]) == 1.0 and float(rows["b"]["pixel_accuracy"]) == pytest.approx(511 / 1023)
    assert "boundary_mean_iou" in rows["a"]
    assert "F1 macro" in capsys.readouterr().out


def test_library_result_matches_the_json(folders):
    result = evaluate_predictions(folders / "pred", folders / "masks", folders / "lib", class_names=CLASSES.split(","),
                                  boundary_distance_px=None, n_grid=0)
    assert result.grid_path is None and "boundary" not in result.metrics
    assert json.loads(result.metrics_path.read_text())["f1_macro"] == pytest.approx(result.metrics["f1_macro"])


def _run(folders, capsys, *extra):
    code = eval_cli.main(["--predictions", str(folders / "pred"), "--masks", str(folders / "masks"),
                          "--out", str(folders / "eval"), *extra])
    return code, capsys.readouterr().err


def test_size_mismatch_names_both_files(folders, capsys):
    write_png(folders / "pred" / "a.png", np.zeros((30, 32), np.uint8))
    code, err = _run(folders, capsys, "--classes", CLASSES)
    assert code == 2
    assert "error: prediction a.png has shape (30, 32) but mask a.png is (32, 32)" in err


def test_class_count_mismatch_names_the_file(folders, capsys):
    code, err = _run(folders, capsys, "--classes", "background,benign")
    assert code == 2
    assert "mask b.png contains value 2, out of range for 2 classes (0..1; 255 = not annotated)" in err
    bad = np.zeros((32, 32), np.uint8)
    bad[3, 3] = 7
    write_png(folders / "pred" / "a.png", bad)
    code, err = _run(folders, capsys, "--classes", CLASSES)
    assert "prediction a.png contains value 7, out of range for 3 classes (0..2)" in err


def test_missing_ground_truth_names_the_prediction(folders, capsys):
    write_png(folders / "pred" / "d.png", np.zeros((32, 32), np.uint8))
    code, err = _run(folders, capsys, "--classes", CLASSES)
    assert code == 2
    assert f"error: prediction d.png has no ground truth: expected {folders / 'masks' / 'd'}.png" in err


def test_argument_errors(folders, capsys):
    assert _run(folders, capsys)[1].startswith("error: --classes is required")
    code = eval_cli.main(["--masks", "m", "--out", "o"])
    assert code == 2 and "give either --predictions DIR or --model" in capsys.readouterr().err
    with pytest.raises(ConfigError, match="rank_by must be one of"):
        evaluate_predictions(folders / "pred", folders / "masks", folders / "x", class_names=["a"], rank_by="bad")


@pytest.mark.slow
def test_model_path_predicts_then_scores(folders, capsys):
    import keras

    from weaksegtf.models import WeakSegmenter

    keras.utils.set_random_seed(0)
    model = WeakSegmenter(num_classes=3, class_names=CLASSES.split(","))
    model.save(folders / "model.keras")
    out = folders / "model_eval"
    code = eval_cli.main(["--model", str(folders / "model.keras"), "--images", str(folders / "images"),
                          "--masks", str(folders / "masks"), "--out", str(out)])
    assert code == 0, capsys.readouterr().err
    assert sorted(p.name for p in (out / "predictions").iterdir()) == ["a.png", "b.png", "c.png"]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["class_names"] == CLASSES.split(",") and metrics["n_images"] == 3
    code = eval_cli.main(["--model", str(folders / "model.keras"), "--images", str(folders / "images"),
                          "--masks", str(folders / "masks"), "--out", str(out), "--classes", "a,b", "--overwrite"])
    assert code == 2 and "got 2 class names ['a', 'b'] but model model.keras predicts 3 classes" in capsys.readouterr().err
