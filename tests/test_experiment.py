"""The sweep: draws shared across modes, stream selection, summaries, the results.md section.

The protocol (selection vs test, paired draws, patches, epoch length, encoder weights, bootstrap CIs) is in
test_experiment_protocol.py."""

import numpy as np
import pytest

from weaksegtf.cli import experiment as experiment_cli
from weaksegtf.errors import ConfigError
from weaksegtf.experiment import draw_masked, masked_count, plan_runs, run_id, run_streams
from weaksegtf.experiment_report import summarize, update_markdown

# 20 benign and 48 malignant images, like GlaS's 68 training images.
LABELS = np.array([1] * 20 + [2] * 48)


def test_masked_counts_round_half_up_and_keep_one():
    assert [masked_count(s, 68) for s in (1, 5, 10, 25, 100)] == [1, 3, 7, 17, 68]
    assert masked_count(0, 68) == 0
    with pytest.raises(ConfigError, match="a percentage must be in 0..100, got 120"):
        masked_count(120, 68)


def test_draws_are_reproducible_stratified_and_redrawn_per_repeat():
    first = draw_masked(LABELS, 5, seed=0)
    assert first.tolist() == draw_masked(LABELS, 5, seed=0).tolist()
    assert len(first) == 3 and set(LABELS[first]) == {1, 2}  # both grades even at 5%
    assert first.tolist() != draw_masked(LABELS, 5, seed=1).tolist()
    quarter = draw_masked(LABELS, 25, seed=0)
    assert np.bincount(LABELS[quarter]).tolist() == [0, 5, 12]  # 17 in proportion 20:48
    assert draw_masked(LABELS, 100, seed=3).tolist() == list(range(68))


def test_quotas_pass_what_a_small_class_cannot_hold_to_the_others():
    from weaksegtf.data.stratified_draw import class_quotas, draw_stratified

    # 5 of 3 + 1 + 1: one each; the other two go by shares 1.2, 0.4, 0.4 to classes 1 and 2; class 2 has
    # only one unit, so its extra passes to class 1 (the GlaS adapter's own copy stopped at 4 here).
    assert class_quotas({1: 3, 2: 1, 3: 1}, 5) == {1: 3, 2: 1, 3: 1}
    assert class_quotas({1: 20, 2: 48}, 17) == {1: 5, 2: 12}
    labels = np.array([1, 1, 1, 2, 3])
    for member_draw in ("permutation", "choice"):
        assert draw_stratified(labels, 5, np.random.default_rng(0), member_draw).tolist() == [0, 1, 2, 3, 4]
    with pytest.raises(ConfigError, match="cannot draw 6 of 5 units"):
        draw_stratified(labels, 6, np.random.default_rng(0))


def test_modes_share_the_draw_and_differ_only_in_labels():
    streams = {mode: run_streams(mode, 10, LABELS, seed=4) for mode in ("S", "S+C", "S+C*")}
    masked = streams["S"][0]
    assert all(np.array_equal(streams[m][0], masked) for m in streams)
    assert len(streams["S"][1]) == 0
    assert sorted(np.concatenate([masked, streams["S+C"][1]]).tolist()) == list(range(68))
    assert streams["S+C*"][1].tolist() == list(range(68))


def test_classification_head_modes():
    # S2+C2 at c is S+C at s = 100 - 2c; S2+C2* is S+C*; S2*+C2 keeps every mask.
    for a, b in zip(run_streams("S2+C2", 20, LABELS, 1), run_streams("S+C", 60, LABELS, 1)):
        assert np.array_equal(a, b)
    for a, b in zip(run_streams("S2+C2*", 20, LABELS, 1), run_streams("S+C*", 60, LABELS, 1)):
        assert np.array_equal(a, b)
    masks, labels = run_streams("S2*+C2", 20, LABELS, 1)
    assert len(masks) == 68 and np.array_equal(labels, run_streams("S2+C2", 20, LABELS, 1)[1])
    masks, labels = run_streams("S2+C2", 50, LABELS, 1)
    assert len(masks) == 0 and len(labels) == 68  # c = 50%: labels only (mode C)
    with pytest.raises(ConfigError, match="c must be in 0..50% for S2\\+C2, got 60"):
        run_streams("S2+C2", 60, LABELS, 1)


def test_plan_is_repeat_major_and_checks_its_arguments():
    plan = plan_runs([5, 100], ["S", "S+C"], repeats=2, classification_percents=[0])
    assert plan[:5] == [("segmentation", "S", 5.0, 0), ("segmentation", "S+C", 5.0, 0),
                        ("segmentation", "S", 100.0, 0), ("segmentation", "S+C", 100.0, 0),
                        ("classification", "S2+C2", 0.0, 0)]
    assert len(plan) == 2 * (4 + 3)
    assert run_id("S+C*", 7.5, 2) == "S+C*@7.5%#2"
    with pytest.raises(ConfigError, match="segmentation mode 'C' is unknown"):
        plan_runs([5], ["C"], 1)
    with pytest.raises(ConfigError, match="s must be in \\(0, 100\\]%, got 0"):
        plan_runs([0], ["S"], 1)


def _row(mode, percent, repeat, f1):
    return {"experiment": "segmentation", "mode": mode, "percent": percent, "repeat": repeat, "f1_weighted": f1,
            "n_mask_images": 1, "n_label_images": 0}


def test_summary_mean_sample_std_and_relative_to_s_at_100():
    rows = [_row("S", 100, 0, 0.8), _row("S", 100, 1, 0.6), _row("S+C", 5, 0, 0.5), _row("S+C", 5, 1, 0.7),
            _row("S+C", 5, 2, 0.9)]
    summary = {(e["mode"], e["percent"]): e for e in summarize(rows)}
    s100, sc5 = summary[("S", 100.0)], summary[("S+C", 5.0)]
    assert s100["f1_weighted_mean"] == pytest.approx(0.7)
    assert s100["f1_weighted_std"] == pytest.approx(np.sqrt(0.02))  # n - 1 = 1
    assert sc5["f1_weighted_std"] == pytest.approx(0.2)
    assert sc5["f1_weighted_rel_mean"] == pytest.approx(0.7 / 0.7)
    assert sc5["f1_weighted_rel_std"] == pytest.approx(0.2 / 0.7)
    assert sc5["relative_to"] == "S@100%" and sc5["n"] == 3


def test_results_section_is_replaced_between_markers_only(tmp_path):
    path = tmp_path / "results.md"
    path.write_text("# Results\n\n## Other\n\nkeep me\n")
    update_markdown(path, "first table")
    update_markdown(path, "second table")
    text = path.read_text()
    assert text.count("## Sweep: S, S+C, S+C* on GlaS") == 1 and "keep me" in text
    assert "second table" in text and "first table" not in text
    path.write_text(text + "\nhand-written discussion\n")
    update_markdown(path, "third")
    assert path.read_text().endswith("hand-written discussion\n")
    path.write_text("<!-- weakseg-experiment report glas-sweep begin -->\n")
    with pytest.raises(ConfigError, match="has only one of the markers"):
        update_markdown(path, "x")


def test_cli_errors_are_one_line(tmp_path, capsys):
    assert experiment_cli.main(["sweep", "--masks", "m", "--out", str(tmp_path)]) == 2
    assert "error: --masks needs --val DIR and --classes NAMES" in capsys.readouterr().err
    assert experiment_cli.main(["report", "--out", str(tmp_path)]) == 2
    assert f"error: no finished runs in {tmp_path / 'runs.csv'}" in capsys.readouterr().err


def test_batched_prediction_equals_one_image_at_a_time():
    from weaksegtf.experiment import predict_images
    from weaksegtf.training import predict_image

    def model(batch, training=False):  # the RGB values act as 3 class logits
        return {"mask": batch}

    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, shape, dtype=np.uint8) for shape in [(20, 30, 3), (20, 30, 3), (16, 16, 3), (5, 40, 3)]]
    for single, batched in zip([predict_image(model, im) for im in images], predict_images(model, images, batch_size=1)):
        assert np.array_equal(single, batched)
