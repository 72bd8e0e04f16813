"""weakseg-experiment's protocol (issue 13): selection set apart from the test set, paired draws, s% by
patches, epoch length, label sources, encoder weights, per-run metrics and bootstrap CIs of paired differences.

Most tests replace training with a stand-in that records what each run was given (fast, exact); one slow
test trains real tiny models end to end through the CLI.
"""

import csv
import hashlib
import json
from types import SimpleNamespace

import numpy as np
import pytest

from weaksegtf import experiment
from weaksegtf.cli import experiment as experiment_cli
from weaksegtf.errors import ConfigError
from weaksegtf.experiment import (
    SweepData,
    SweepSettings,
    build_streams,
    run_streams,
    run_sweep,
    synthetic_sweep_data,
    unit_labels,
)
from weaksegtf.experiment_report import bootstrap_ci, paired_differences, write_report
from weaksegtf.metrics import foreground_confusion, foreground_dice, foreground_on_background


def _key(image):
    return hashlib.sha1(np.ascontiguousarray(image).tobytes()).hexdigest()


class _AllBackground:
    """Predicts background everywhere and class 1 as every image label."""

    def __init__(self, num_classes):
        self.num_classes = num_classes

    def __call__(self, batch, training=False):
        batch = np.asarray(batch)
        mask = np.zeros(batch.shape[:3] + (self.num_classes,), np.float32)
        mask[..., 0] = 1.0
        label = np.zeros((len(batch), self.num_classes), np.float32)
        label[:, 1] = 1.0
        return {"mask": mask, "label": label}


@pytest.fixture
def recorded(monkeypatch):
    """Training replaced by a recorder; predictions recorded too. Yields (training calls, predicted image lists)."""
    calls, predicted = [], []

    def train(mask_x, mask_y, label_x, label_y, config, **kwargs):
        kwargs = {**vars(config), **kwargs}  # the run's TrainingConfig and the call's other arguments
        calls.append({"mask_x": mask_x, "mask_y": mask_y, "label_x": label_x, "label_y": label_y, **kwargs})
        selection = None
        if kwargs["validation"] is not None:
            selection = SimpleNamespace(best_epoch=1, best_metrics={"mean_dice": 0.5})
        steps = kwargs["steps_per_epoch"] or 3
        history = SimpleNamespace(history={"loss": [1.0] * kwargs["epochs"], "seg_loss": [0.5] * kwargs["epochs"]},
                                  params={"steps": steps}, whole_image_validation=selection)
        return _AllBackground(kwargs["num_classes"]), history

    original = experiment.predict_images

    def predict(model, images, batch_size=8):
        predicted.append(list(images))
        return original(model, images, batch_size)

    monkeypatch.setattr("weaksegtf.training.train_weak_segmenter", train)
    monkeypatch.setattr(experiment, "predict_images", predict)
    return calls, predicted


def _tiny(n_select=2):
    return synthetic_sweep_data(n_images=8, n_test=3, size_px=32, seed=0, n_select=n_select)


def _settings(**changes):
    base = dict(epochs=1, steps_per_epoch=2, batch_size=4, tile_size_px=32)
    base.update(changes)
    return SweepSettings(**base)


def test_selection_images_choose_the_epoch_and_only_test_images_are_scored(recorded, tmp_path):
    calls, predicted = recorded
    data = _tiny()
    run_sweep(data, tmp_path, percents=[50], repeats=2, settings=_settings(), log=None)
    select = {_key(im) for im in data.select.images}
    test = [_key(im) for im in data.test.images]
    assert len(calls) == 6 and len(predicted) == 6
    for call, images in zip(calls, predicted):
        assert [_key(im) for im in call["validation"][0]] == [_key(im) for im in data.select.images]
        assert call["best_epoch"] is True
        assert [_key(im) for im in images] == test  # scored on the test set, nothing else
        trained = [_key(im) for im in call["mask_x"]] + [_key(im) for im in ([] if call["label_x"] is None else call["label_x"])]
        assert not (set(trained) & (select | set(test)))
    rows = experiment.read_runs(tmp_path)
    assert {r["best_epoch"] for r in rows} == {1} and {r["select_mean_dice"] for r in rows} == {0.5}
    record = json.loads((tmp_path / "sweep.json").read_text())
    assert (record["n_select_images"], record["n_test_images"]) == (2, 3)


def test_without_a_selection_set_the_last_epoch_is_scored(recorded, tmp_path):
    calls, _ = recorded
    run_sweep(_tiny(n_select=0), tmp_path, percents=[50], modes=["S"], repeats=1, settings=_settings(), log=None)
    assert calls[0]["validation"] is None and calls[0]["best_epoch"] is False
    assert experiment.read_runs(tmp_path)[0]["best_epoch"] is None


def test_a_shared_image_between_sets_is_refused():
    data = _tiny()
    with pytest.raises(ConfigError, match="test image synthetic_0001 is training image synthetic_0001 \\(same pixels\\)"):
        SweepData(data.pool, data.pool_labels, data.pool.subset([1]), data.class_names)
    with pytest.raises(ConfigError, match="selection image synthetic_0008 is test image synthetic_0008"):
        SweepData(data.pool, data.pool_labels, data.test, data.class_names, select=data.test.subset([0]))


def test_every_mode_of_a_repeat_trains_on_the_same_masked_draw(recorded, tmp_path):
    calls, _ = recorded
    run_sweep(_tiny(), tmp_path, percents=[50], repeats=3, settings=_settings(background_patches=False), log=None)
    by_seed = {}
    for call in calls:
        by_seed.setdefault(call["seed"], []).append(call)
    assert sorted(by_seed) == [0, 1, 2]
    draws = []
    for seed, runs in by_seed.items():
        assert [r["mode"] for r in runs] == ["S", "S+C", "S+C"]  # S+C* trains as S+C with every image labelled
        masks = [sorted(_key(im) for im in r["mask_x"]) for r in runs]
        assert masks[0] == masks[1] == masks[2] and len(masks[0]) == 4
        assert runs[0]["label_x"] is None and len(runs[1]["label_x"]) == 4 and len(runs[2]["label_x"]) == 8
        draws.append(masks[0])
    assert draws[0] != draws[1] or draws[1] != draws[2]  # redrawn per repeat


def test_by_patches_draws_s_percent_of_the_tiles():
    data = synthetic_sweep_data(n_images=4, n_test=1, size_px=64, seed=0)
    settings = _settings(percent_of="patches", label_source="image", background_patches=False)
    labels = unit_labels(data, settings)
    assert len(labels) == 16 and np.bincount(labels).tolist() == [0, 8, 8]  # 4 tiles of 32 px per image
    masked, labelled = run_streams("S+C", 25, labels, seed=0)
    assert len(masked) == 4 and np.bincount(labels[masked]).tolist() == [0, 2, 2]  # 25% of 16, by grade
    assert sorted(np.concatenate([masked, labelled]).tolist()) == list(range(16))
    assert len(run_streams("S", 10, labels, seed=0)[0]) == 2  # 1.6 rounds to 2
    tiles = data.pool_tiles(32)
    streams = build_streams(data, settings, masked, labelled)
    assert np.array_equal(streams.mask_x, tiles.images[masked]) and np.array_equal(streams.mask_y, tiles.masks[masked])
    assert len(streams.label_x) == 12 and np.array_equal(streams.label_y, labels[labelled])
    # Whole images: only the images none of whose tiles has its mask in the draw.
    whole_settings = _settings(percent_of="patches", background_patches=False)
    assert build_streams(data, whole_settings, masked, labelled).label_x is None  # this draw touches every image
    hand = np.array([0, 1, 4, 5])  # two tiles of image 0, two of image 1
    whole = build_streams(data, whole_settings, hand, np.setdiff1d(np.arange(16), hand))
    assert [im.shape for im in whole.label_x] == [(64, 64, 3)] * 2
    assert whole.label_y.tolist() == data.pool_labels[[2, 3]].tolist()
    assert [_key(im) for im in whole.label_x] == [_key(data.pool.images[i]) for i in (2, 3)]
    # By images, 25% of 4 images is one image: its 4 tiles.
    by_images = build_streams(data, _settings(label_source="image"), *run_streams("S+C", 25, data.pool_labels, 0))
    assert len(by_images.mask_x) == 4 and len(by_images.label_x) == 12


def test_background_patches_come_from_the_masked_data_only():
    data = synthetic_sweep_data(n_images=4, n_test=1, size_px=64, seed=0)
    masked, labelled = np.array([0, 1]), np.array([2, 3])
    from weaksegtf.data import tile_rule_labels

    streams = build_streams(data, _settings(), masked, labelled)  # whole images + background patches
    rule = tile_rule_labels(streams.mask_y)
    assert (rule == 0).any() and streams.background_x is not None
    assert [_key(t) for t in streams.background_x] == [_key(t) for t in streams.mask_x[rule == 0]]
    assert len(streams.label_x) == 2 and streams.label_x[0].shape == (64, 64, 3)  # whole images
    assert build_streams(data, _settings(background_patches=False), masked, labelled).background_x is None
    assert build_streams(data, _settings(label_source="tile_rule"), masked, labelled).background_x is None
    assert build_streams(data, _settings(), masked, labelled[:0]).background_x is None  # S: no label stream


def test_epoch_length_pass_and_equal(recorded, tmp_path):
    calls, _ = recorded
    data = _tiny()
    run_sweep(data, tmp_path / "pass", percents=[50], repeats=1,
              settings=_settings(steps_per_epoch=None, epoch_length="pass"), log=None)
    assert [c["steps_per_epoch"] for c in calls] == [None, None, None]
    calls.clear()
    run_sweep(data, tmp_path / "equal", percents=[25, 50], repeats=1, settings=_settings(steps_per_epoch=None),
              log=None)
    assert {c["steps_per_epoch"] for c in calls} == {2}  # ceil(8 pool tiles / batch 4), the same for every run
    with pytest.raises(ConfigError, match="steps_per_epoch=3 contradicts epoch_length 'pass'"):
        SweepSettings(steps_per_epoch=3, epoch_length="pass")
    with pytest.raises(ConfigError, match="percent_of 'tiles' is unknown"):
        SweepSettings(percent_of="tiles")


def test_encoder_weights_flow_to_every_run_and_must_exist(recorded, tmp_path):
    calls, _ = recorded
    weights = tmp_path / "resnet18.pth"
    weights.write_bytes(b"stand-in")
    run_sweep(_tiny(), tmp_path / "sweep", percents=[50], repeats=1,
              settings=_settings(encoder_weights=weights), log=None)
    assert [c["encoder_weights"] for c in calls] == [str(weights)] * 3
    with pytest.raises(ConfigError, match="encoder weights .*missing.pth are not a file"):
        run_sweep(_tiny(), tmp_path / "other", percents=[50], repeats=1,
                  settings=_settings(encoder_weights=tmp_path / "missing.pth"), log=None)


def test_run_metrics_and_resume_check(recorded, tmp_path):
    calls, _ = recorded
    data = _tiny()
    run_sweep(data, tmp_path, percents=[50], repeats=1, settings=_settings(), log=None)
    row = experiment.read_runs(tmp_path)[0]
    # All background predicted: glands all missed, none painted on background, no gland-vs-gland confusion.
    assert row["foreground_dice"] == 0 and row["foreground_on_background"] == 0
    assert row["foreground_confusion"] is None
    assert row["dice_background"] > 0 and row["dice_benign gland"] == 0
    assert row["steps"] == 2 and row["n_mask_images"] == 4
    trained = len(calls)
    assert run_sweep(data, tmp_path, percents=[50], repeats=1, settings=_settings(), log=None).trained == 0
    assert len(calls) == trained
    with pytest.raises(ConfigError, match="label_source: 'whole' there, 'image' now"):
        run_sweep(data, tmp_path, percents=[50], repeats=1, settings=_settings(label_source="image"), log=None)


def test_foreground_metrics_by_hand():
    confusion = np.array([[6, 2, 0],   # truth background: 2 of 8 painted benign
                          [0, 4, 0],
                          [0, 1, 3]])  # truth malignant: 1 of 4 called benign
    assert foreground_on_background(confusion) == pytest.approx(2 / 8)
    assert foreground_confusion(confusion) == pytest.approx(1 / 8)  # of the 8 fg pixels predicted fg
    assert foreground_dice(confusion) == pytest.approx((2 * 4 / (7 + 4) + 2 * 3 / (3 + 4)) / 2)
    assert np.isnan(foreground_confusion(np.array([[3, 1], [1, 3]])))  # one foreground class


def test_bootstrap_ci_contains_the_mean_and_narrows_with_less_spread():
    wide = [0.0, 0.2, 0.1, 0.3, -0.1]
    narrow = [0.09, 0.11, 0.10, 0.12, 0.08]
    low_w, high_w = bootstrap_ci(wide)
    low_n, high_n = bootstrap_ci(narrow)
    assert low_w < 0.1 < high_w and low_n < 0.1 < high_n
    assert high_n - low_n < (high_w - low_w) / 5
    assert bootstrap_ci(wide) == (low_w, high_w)  # fixed seed: reproducible
    assert low_w >= min(wide) and high_w <= max(wide)
    assert bootstrap_ci([0.2, 0.2, 0.2]) == pytest.approx((0.2, 0.2))
    assert bootstrap_ci([0.3]) is None


def _seg(mode, percent, repeat, dice, f1=None):
    return {"experiment": "segmentation", "mode": mode, "percent": percent, "repeat": repeat,
            "foreground_dice": dice, "f1_macro": dice if f1 is None else f1, "n_mask_images": 1, "n_label_images": 0}


def test_paired_differences_pair_runs_by_repeat():
    # Repeats differ a lot, but S+C beats S by exactly 0.1 in each: paired, the CI is a point.
    rows = [_seg("S", 5, r, d) for r, d in enumerate([0.2, 0.5, 0.8])]
    rows += [_seg("S+C", 5, r, d + 0.1) for r, d in enumerate([0.2, 0.5, 0.8])]
    rows += [_seg("S+C", 5, 3, 0.99), _seg("S+C*", 5, 0, 0.1, f1=0.3)]  # repeat 3 has no S: left out
    table = {(p["mode"], p["metric"]): p for p in paired_differences(rows)}
    sc = table[("S+C", "foreground_dice")]
    assert sc["n"] == 3 and sc["mean_difference"] == pytest.approx(0.1)
    assert (sc["ci_low"], sc["ci_high"]) == pytest.approx((0.1, 0.1))
    star = table[("S+C*", "f1_macro")]
    assert star["n"] == 1 and star["mean_difference"] == pytest.approx(0.1) and star["ci_low"] is None


def test_cli_options_reach_the_settings(monkeypatch, tmp_path, capsys):
    seen = {}

    def fake_sweep(data, out, **kwargs):
        seen.update(kwargs, data=data)
        return SimpleNamespace(trained=0, skipped=0, runs_path=out)

    monkeypatch.setattr(experiment, "run_sweep", fake_sweep)
    monkeypatch.setattr("weaksegtf.experiment_report.write_report", lambda *a, **k: SimpleNamespace(
        summary_path="s", paired_path=None, figure_paths=[], results_md=None))
    args = ["sweep", "--synthetic", "8", "--image-size", "32", "--out", str(tmp_path), "--percent-of", "patches",
            "--epoch-length", "pass", "--label-source", "image", "--no-background-patches",
            "--encoder-weights", "w.pth"]
    assert experiment_cli.main(args) == 0, capsys.readouterr().err
    settings = seen["settings"]
    assert (settings.percent_of, settings.epoch_length, settings.label_source, settings.background_patches,
            settings.encoder_weights, settings.steps_per_epoch) == ("patches", "pass", "image", False, "w.pth", None)
    assert seen["repeats"] == 5 and len(seen["data"].select) == 4 and len(seen["data"].test) == 4
    defaults = SweepSettings()
    assert (defaults.label_source, defaults.background_patches, defaults.percent_of) == ("whole", True, "images")
    assert experiment_cli.main(["sweep", "--synthetic", "8", "--select", "s", "--out", str(tmp_path)]) == 2
    assert "error: --select goes with --masks" in capsys.readouterr().err
    assert experiment_cli.main(["sweep", "--synthetic", "8", "--epoch-length", "pass", "--steps-per-epoch", "3",
                                "--out", str(tmp_path)]) == 2
    assert "contradicts epoch_length 'pass'" in capsys.readouterr().err


def test_folder_data_with_and_without_a_selection_folder(tmp_path):
    data = _tiny()
    data.pool.write(tmp_path / "train")
    data.test.write(tmp_path / "test")
    data.select.write(tmp_path / "select")
    names = ["background", "benign gland", "malignant gland"]
    with_select = experiment.folder_sweep_data(tmp_path / "train", tmp_path / "test", names, tmp_path / "select")
    assert len(with_select.select) == 2 and len(with_select.test) == 3 and "(selection)" in with_select.source
    without = experiment.folder_sweep_data(tmp_path / "train", tmp_path / "test", names)
    assert without.select is None and "no selection set" in without.source


def test_glas_split_has_disjoint_training_selection_and_test_patients(glas_dir):
    data = experiment.glas_sweep_data(glas_dir, downsample=8)
    names = [set(data.pool.names), set(data.select.names), set(data.test.names)]
    assert all(names) and not (names[0] & names[1] or names[0] & names[2] or names[1] & names[2])
    assert sum(map(len, names)) == 85 and 0.15 < len(data.test) / 85 < 0.3
    assert "selection patients" in data.source and "test patients" in data.source


def _torch_resnet18_state(seed=0):
    """A torchvision-style ResNet-18 state_dict (conv1 .. layer3) of random tensors."""
    import torch

    generator = torch.Generator().manual_seed(seed)
    state = {}

    def conv(name, out, inp, k):
        state[f"{name}.weight"] = torch.randn(out, inp, k, k, generator=generator) * 0.05

    def bn(name, n):
        state.update({f"{name}.weight": torch.ones(n), f"{name}.bias": torch.zeros(n),
                      f"{name}.running_mean": torch.zeros(n), f"{name}.running_var": torch.ones(n),
                      f"{name}.num_batches_tracked": torch.tensor(0)})

    conv("conv1", 64, 3, 7)
    bn("bn1", 64)
    inplanes = 64
    for layer, planes in ((1, 64), (2, 128), (3, 256)):
        for block in (0, 1):
            prefix = f"layer{layer}.{block}"
            source = inplanes if block == 0 else planes
            conv(f"{prefix}.conv1", planes, source, 3)
            bn(f"{prefix}.bn1", planes)
            conv(f"{prefix}.conv2", planes, planes, 3)
            bn(f"{prefix}.bn2", planes)
            if block == 0 and source != planes:
                conv(f"{prefix}.downsample.0", planes, source, 1)
                bn(f"{prefix}.downsample.1", planes)
        inplanes = planes
    return state


@pytest.mark.slow
def test_tiny_real_sweep_with_encoder_weights_then_report(tmp_path, monkeypatch, capsys):
    torch = pytest.importorskip("torch")
    from weaksegtf import training

    state = _torch_resnet18_state()
    weights = tmp_path / "resnet18.pth"
    torch.save(state, weights)
    models = []
    real = training.train_weak_segmenter

    def keep_model(*args, **kwargs):
        model, history = real(*args, **kwargs)
        models.append(model)
        return model, history

    monkeypatch.setattr(training, "train_weak_segmenter", keep_model)
    out, md = tmp_path / "sweep", tmp_path / "docs" / "results.md"
    args = ["sweep", "--synthetic", "8", "--image-size", "32", "--tile-size", "32", "--percents", "50",
            "--modes", "S", "S+C", "--repeats", "2", "--epochs", "2", "--steps-per-epoch", "1", "--batch-size", "4",
            "--lr", "1e-9", "--encoder-weights", str(weights), "--out", str(out), "--results-md", str(md)]
    assert experiment_cli.main(args) == 0, capsys.readouterr().err
    assert len(models) == 4
    expected = state["conv1.weight"].numpy().transpose(2, 3, 1, 0)  # torch (out, in, h, w) -> Keras (h, w, in, out)
    for model in models:  # lr 1e-9: the loaded kernel barely moves
        np.testing.assert_allclose(np.asarray(model.encoder.get_layer("conv1").kernel), expected, atol=1e-6)
    with open(out / "runs.csv", newline="") as handle:
        runs = {row["run_id"]: row for row in csv.DictReader(handle)}
    assert set(runs) == {"S@50%#0", "S+C@50%#0", "S@50%#1", "S+C@50%#1"}
    assert {r["best_epoch"] for r in runs.values()} <= {"1", "2"} and {r["steps"] for r in runs.values()} == {"2"}
    assert int(runs["S+C@50%#0"]["n_label_items"]) == 4 and "foreground_on_background" in runs["S@50%#0"]
    with open(out / "paired.csv", newline="") as handle:
        paired = list(csv.DictReader(handle))
    assert {(p["mode"], p["metric"], p["n"]) for p in paired} == {("S+C", "foreground_dice", "2"),
                                                                  ("S+C", "f1_macro", "2")}
    text = md.read_text()
    assert "4 selection images (inner validation" in text and "4 test images (GlaS: other patients" in text
    assert "test set" in text and "validation patients are the test set" not in text
    assert "| 50 | S+C − S | gland (foreground) Dice | 2 |" in text
    assert "encoder from resnet18.pth" in text
    report = write_report(out)
    assert report.paired_path == out / "paired.csv"
