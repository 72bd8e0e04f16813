"""Self-training from grade labels on GlaS, with the S model of the scenario as the teacher.

For each seed of ``benchmarks/glas_scenario.py`` whose S run is trained (``OUT/seed{S}/S/train/model.keras``),
the S model (7 masks) draws a pseudo-mask for each of the 48 grade-labelled training images with
``weaksegtf.pseudo_labels.pseudo_mask_set``: the model decides where the gland is, the image's grade
decides its class, pixels the model is less than ``--confidence`` sure of are not annotated. A second
training (mode S, the same ``--train-args`` as the scenario) then runs from scratch on the 7 masks plus
the 48 pseudo-masks. This is the second round of ``weakseg-train --self-training`` with S as its first
round: it measures what the grade labels add through pseudo-masks alone, at the cost of one more S-all-sized
training. The best epoch is chosen on the validation patients; test patients are scored once, in inference
mode with ``weakseg-infer``'s padding (``weaksegtf.training.evaluate_images``, which agrees with the exported
model within 0.01 Dice: tests/test_deployed_quality.py).

The pseudo-masks are also scored against the labelled images' true masks (which the training never reads):
the share of pixels annotated, and the gland Dice on the annotated pixels.

    python benchmarks/glas_self_training.py --out runs/scen2 --seeds 0 1 --train-args "--augment light --lr-schedule cosine"
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np

CLASSES = ["background", "benign gland", "malignant gland"]


def gland_dice(confusion: np.ndarray) -> float:
    from weaksegtf.metrics.confusion import dice_per_class

    dice = dice_per_class(confusion)
    return float(np.mean(dice[1:]))


def one_seed(out: Path, seed: int, confidence: float, train_args: dict, student: str = "S", teacher: str = "S",
             name: str | None = None) -> dict:
    import cv2
    import keras

    import weaksegtf.models  # noqa: F401  (registers the model classes for load_model)
    from weaksegtf.data import LabelSet, MaskSet
    from weaksegtf.metrics.confusion import confusion_matrix
    from weaksegtf.pseudo_labels import pseudo_mask_set
    from weaksegtf.training import evaluate_images, inference_tile_px, run_training
    from weaksegtf.visualize import comparison_grid

    split = out / f"split_seed{seed}"
    run_name = name or ("S+ST" if student == "S" else "S+ST(S+C student)")
    run_dir = out / f"seed{seed}" / run_name
    teacher_name = teacher
    if (run_dir / "row.json").is_file():
        return json.loads((run_dir / "row.json").read_text())
    teacher = keras.saving.load_model(out / f"seed{seed}" / teacher / "train" / "model.keras")
    labels = LabelSet.from_folder(split / "train_labels", len(CLASSES), CLASSES)
    pseudo = pseudo_mask_set(teacher, labels.images, labels.labels, confidence, inference_tile_px(128))
    # Diagnostic only: the labelled images' true masks, which training never reads.
    truth_dir = split / "train_full" / "masks"
    truths = [cv2.imread(str(truth_dir / f"{name}.png"), cv2.IMREAD_UNCHANGED) for name in labels.names]
    total = sum(confusion_matrix(np.where(p == 255, 255, t), np.where(p == 255, 0, p), len(CLASSES))
                for t, p in zip(truths, pseudo.masks))  # on the annotated pixels only
    annotated = float(np.mean([(m != 255).mean() for m in pseudo.masks]))
    picked = [i for g in (1, 2) for i in np.flatnonzero(np.asarray(labels.labels) == g)[:2]]
    run_dir.mkdir(parents=True, exist_ok=True)
    comparison_grid([labels.images[i] for i in picked], [truths[i] for i in picked],
                    {"pseudo-mask": [pseudo.masks[i] for i in picked]}, CLASSES, run_dir / "pseudo_masks.png",
                    titles=[labels.names[i] for i in picked], cell_px=256)
    masks = MaskSet.from_folder(split / "train_masks", len(CLASSES))
    combined = MaskSet(masks.images + pseudo.images, masks.masks + pseudo.masks,
                       masks.names + [f"pseudo_{n}" for n in labels.names])
    val = MaskSet.from_folder(split / "val", len(CLASSES))
    # Student S: masks + pseudo-masks. Student S+C: the same mask stream, and the labelled images whole in the
    # label stream too (classifier and allowed-class losses), as in weakseg-train's mode S+C.
    result = run_training(combined, labels if student == "S+C" else None, val, run_dir / "train", class_names=CLASSES,
                          mode=student, seed=seed, overwrite=True, **train_args)
    model = keras.saving.load_model(result.model_path)
    test = MaskSet.from_folder(split / "test", len(CLASSES))
    test_metrics, _ = evaluate_images(model, test.images, test.masks, CLASSES, inference_tile_px(128))
    val_dice = result.metrics["validation"]["dice"]
    row = {
        "seed": seed, "run": run_name, "teacher": teacher_name, "confidence": confidence, "pseudo_annotated_share": annotated,
        "pseudo_gland_dice_on_annotated": gland_dice(total),
        "best_epoch": result.metrics["best_epoch"], "train_s": result.metrics["train_seconds"],
        "val_gland_dice": float(np.mean([val_dice["benign gland"], val_dice["malignant gland"]])),
        "test_gland_dice": gland_dice(np.asarray(test_metrics["confusion_matrix"])),
        "test_dice": test_metrics["dice"],
    }
    (run_dir / "row.json").write_text(json.dumps(row, indent=2))
    return row


def summarise(out: Path, seeds: list[int], runs=("S", "S+ST", "S+ST2", "S-all")) -> str:
    """Per-seed gland Dice (validation / test) of the runs, and paired differences with 95% bootstrap CIs.

    Rows come from ``OUT/seed*/RUN/row.json`` (this script's and glas_scenario.py's); a trained scenario run
    whose row is missing is read from its ``train/metrics.json`` (validation only).
    """
    from weaksegtf.experiment_report import bootstrap_ci

    def row(seed, run):
        folder = out / f"seed{seed}" / run
        if (folder / "row.json").is_file():
            return json.loads((folder / "row.json").read_text())
        if (folder / "train" / "metrics.json").is_file():
            dice = json.loads((folder / "train" / "metrics.json").read_text())["validation"]["dice"]
            return {"val_gland_dice": float(np.mean([dice["benign gland"], dice["malignant gland"]]))}
        return {}

    table = {(seed, run): row(seed, run) for seed in seeds for run in runs}
    lines = ["| seed | " + " | ".join(runs) + " |", "|---|" + "---|" * len(runs)]
    for seed in seeds:
        cells = []
        for run in runs:
            r = table[(seed, run)]
            val, test = r.get("val_gland_dice"), r.get("test_gland_dice")
            cells.append("—" if val is None else f"{val:.3f} / " + ("—" if test is None else f"{test:.3f}"))
        lines.append(f"| {seed} | " + " | ".join(cells) + " |")
    lines.append("")
    for key, where in (("val_gland_dice", "validation"), ("test_gland_dice", "test")):
        for a in runs:
            for b in runs:
                if a == b or b not in ("S", "S-all") or (a, b) == ("S", "S-all"):
                    continue
                pairs = [(table[(s, a)].get(key), table[(s, b)].get(key)) for s in seeds]
                pairs = [(x, y) for x, y in pairs if x is not None and y is not None]
                if len(pairs) < 2:
                    continue
                diff = np.array([x - y for x, y in pairs])
                low, high = bootstrap_ci(diff)
                ratio = np.mean([x for x, _ in pairs]) / np.mean([y for _, y in pairs])
                lines.append(f"- {where}: {a} − {b} = {diff.mean():+.3f} (95% bootstrap CI {low:+.3f} to "
                             f"{high:+.3f}, {len(diff)} seeds); {a} / {b} = {ratio:.2f}")
    return "\n".join(lines)


def figure(out: Path, seed: int, runs=("S", "S+ST2", "S-all"), n_images: int = 4) -> Path:
    """Test images | truth | one column per run (its Keras model in inference mode, padded as weakseg-infer pads)."""
    import keras

    import weaksegtf.models  # noqa: F401  (registers the model classes for load_model)
    from weaksegtf.data import MaskSet
    from weaksegtf.training import inference_tile_px, predict_image
    from weaksegtf.visualize import comparison_grid

    test = MaskSet.from_folder(out / f"split_seed{seed}" / "test", len(CLASSES))
    grades = [int(np.max(m % 255)) for m in test.masks]
    picked = [i for g in (1, 2) for i in [j for j, h in enumerate(grades) if h == g][: n_images // 2]]
    columns = {}
    for run in runs:
        model = keras.saving.load_model(out / f"seed{seed}" / run / "train" / "model.keras")
        columns[run] = [predict_image(model, test.images[i], inference_tile_px(128)) for i in picked]
    return comparison_grid([test.images[i] for i in picked], [test.masks[i] for i in picked], columns, CLASSES,
                           out / f"self_training_seed{seed}.png", titles=[test.names[i] for i in picked],
                           cell_px=256)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", required=True, help="the scenario's output folder")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--confidence", type=float, default=0.9)
    parser.add_argument("--augment", default="light")
    parser.add_argument("--lr-schedule", default="cosine")
    parser.add_argument("--student", choices=("S", "S+C"), default="S",
                        help="the second round: masks + pseudo-masks (S), or also the labelled images whole (S+C)")
    parser.add_argument("--teacher", default="S", help="the run (OUT/seed*/RUN/train/model.keras) that draws the "
                        "pseudo-masks: S, or an earlier self-training run for another round, e.g. S+ST")
    parser.add_argument("--name", default=None, help="this run's folder name (default S+ST)")
    parser.add_argument("--summary", action="store_true", help="only print the per-seed table and paired differences")
    parser.add_argument("--figure", action="store_true", help="only draw S | S+ST2 | S-all on test images per seed")
    args = parser.parse_args(argv)
    train_args = {"augment": args.augment, "lr_schedule": args.lr_schedule, "epochs": 15, "steps_per_epoch": 50,
                  "learning_rate": 1e-3, "verbose": 2}
    if args.figure:
        for seed in args.seeds:
            print(figure(Path(args.out), seed))
        return 0
    if args.summary:
        print(summarise(Path(args.out), args.seeds))
        return 0
    for seed in args.seeds:
        row = one_seed(Path(args.out), seed, args.confidence, train_args, args.student, args.teacher, args.name)
        print(json.dumps(row), flush=True)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    sys.exit(main())
