"""Deployed quality equals reported quality: metrics.json of weakseg-train agrees with weakseg-eval on what the
exported ONNX model predicts through weakseg-infer, on the same validation images (real GlaS)."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from weaksegtf.cli import evaluate as eval_cli
from weaksegtf.cli import export as export_cli
from weaksegtf.cli import infer as infer_cli
from weaksegtf.cli import train as train_cli

CLASSES = "background,benign gland,malignant gland"


@pytest.mark.slow
def test_metrics_json_agrees_with_weakseg_eval_on_the_onnx_model(glas_dir, tmp_path):
    from weaksegtf.data import load_glas

    split = load_glas(glas_dir, masked=3, seed=1, downsample=4, val_fraction=0.1)
    split.val = split.val.subset(range(3))
    split.write(tmp_path / "glas", include_full=False)
    run = tmp_path / "run"
    assert train_cli.main([
        "--masks", str(tmp_path / "glas" / "train_masks"), "--labels", str(tmp_path / "glas" / "train_labels"),
        "--val", str(tmp_path / "glas" / "val"), "--classes", CLASSES, "--tile-size", "64", "--epochs", "2",
        "--steps-per-epoch", "3", "--batch-size", "4", "--label-batch-size", "2", "--lr", "1e-3", "--out", str(run),
    ]) == 0
    reported = json.loads((run / "metrics.json").read_text())
    assert reported["best_epoch"] in (1, 2) and reported["model_card"]["mpp"] == pytest.approx(0.62 * 4)

    assert export_cli.main([str(run / "model.keras"), "--onnx", str(run / "model.onnx")]) == 0
    # PNG files carry no resolution: they are at the training resolution, which the model card holds.
    assert infer_cli.main([str(run / "model.onnx"), str(tmp_path / "glas" / "val" / "images"), "--out",
                           str(tmp_path / "infer"), "--mpp", str(0.62 * 4), "--quiet", "--no-geojson"]) == 0
    predictions = tmp_path / "predictions"
    predictions.mkdir()
    for labels in (tmp_path / "infer").glob("*/labels.tif"):
        shutil.copy(labels, predictions / f"{labels.parent.name}.tif")
    assert len(list(predictions.iterdir())) == 3
    assert eval_cli.main(["--predictions", str(predictions), "--masks", str(tmp_path / "glas" / "val" / "masks"),
                          "--classes", CLASSES, "--out", str(tmp_path / "eval")]) == 0
    deployed = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    for name in CLASSES.split(","):
        want, got = reported["validation"]["dice"][name], deployed["dice"][name]
        assert (want is None and got is None) or abs(want - got) <= 0.01, (name, want, got)
    assert abs(np.nanmean([v for v in deployed["dice"].values() if v is not None]) - reported["validation"]["mean_dice"]) <= 0.01
