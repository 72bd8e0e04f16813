"""The natural GlaS scenario, run as a user runs it: weakseg-train -> weakseg-export -> weakseg-infer -> weakseg-eval.

For each seed, GlaS is split by patient into training, validation (best-epoch selection) and test patients
(scored once); the seed draws which training images keep their masks (the same draw for every run of
the seed: paired). Runs:

- ``S``: the masked images alone;
- ``S+C``: the masked images plus every other training image with only its grade (whole images), with
  ``weakseg-train``'s defaults: self-training (a masks-only teacher draws label-constrained pseudo-masks of the
  graded images, then two rounds of students); the row also carries the teacher's validation scores
  (``round1_val_gland_dice``);
- ``S-all``: every training image with its mask (the fully supervised reference);
- ``S+C (one training)``: S+C with ``--no-self-training``: the paper's alternating mask/label step alone.

Every run uses ``weakseg-train``'s defaults apart from the options given here (the same for all runs). The
exported ONNX model segments the test images with ``weakseg-infer``; ``weakseg-eval`` scores them. Gland
Dice is the mean of the benign-gland and malignant-gland Dice. Resumable: a run whose ``eval/metrics.json``
exists is not redone, and a run whose ``train/metrics.json`` exists is not retrained. ``--jobs 2`` runs two
trainings at a time with one TensorFlow thread each (the same total work on 2 cores, and each run's time is
then measured under that load). Results go to ``OUT/scenario.csv`` and ``OUT/summary.md``; validation-patient
scores come from the training's whole-image validation in inference mode (``metrics.json``), which agrees
with the exported model on the same images (tests/test_deployed_quality.py).

    python benchmarks/glas_scenario.py --glas ../shared/data/glas-train --seeds 0 1 2 --out runs/scenario --jobs 2
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from weaksegtf.experiment_report import bootstrap_ci

CLASSES = "background,benign gland,malignant gland"
RUNS = ("S", "S+C", "S-all", "S+C (one training)")


def run(command: list[str], log: Path, threads: int | None = None) -> None:
    env = dict(os.environ)
    if threads:
        env.update(TF_NUM_INTRAOP_THREADS=str(threads), TF_NUM_INTEROP_THREADS=str(threads))
    with open(log, "a") as handle:
        handle.write("$ " + " ".join(command) + "\n")
        handle.flush()
        result = subprocess.run(command, stdout=handle, stderr=subprocess.STDOUT, env=env)
    if result.returncode:
        sys.exit(f"{command[0]} failed (exit {result.returncode}); see {log}")


def split_folder(glas: Path, out: Path, seed: int, masked: int, downsample: int) -> Path:
    from weaksegtf.data import load_glas

    folder = out / f"split_seed{seed}"
    if not (folder / "split.json").is_file():
        split = load_glas(glas, masked=masked, seed=seed, downsample=downsample, test_fraction=0.2, val_fraction=0.15)
        split.write(folder)
    return folder


def one_run(name: str, split: Path, out: Path, train_args: list[str], seed: int, threads: int | None = None) -> dict:
    mpp = json.loads((split / "split.json").read_text())["mpp"]
    run_dir = out / f"seed{seed}" / name.replace(" (one training)", "-once")
    row_path = run_dir / "row.json"
    if row_path.is_file():
        row = json.loads(row_path.read_text())
        if "val_boundary_gland_dice" in row:  # rows from before validation scoring are completed below
            return row
    trained = (run_dir / "train" / "metrics.json").is_file()
    if not trained and run_dir.is_dir():
        shutil.rmtree(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    log = run_dir / "log.txt"
    masks = split / ("train_full" if name == "S-all" else "train_masks")
    command = ["weakseg-train", "--masks", str(masks), "--val", str(split / "val"), "--classes", CLASSES,
               "--mode", "S+C" if name.startswith("S+C") else "S", "--seed", str(seed), "--out", str(run_dir / "train"),
               *train_args]
    if name.startswith("S+C"):
        command[3:3] = ["--labels", str(split / "train_labels")]
    if name == "S+C (one training)":
        command.append("--no-self-training")
    if not trained:
        run(command, log, threads)
    if not (run_dir / "model.onnx").is_file():
        run(["weakseg-export", str(run_dir / "train" / "model.keras"), "--onnx", str(run_dir / "model.onnx")], log)
    test = score_images(run_dir, split / "test", "", mpp, log, threads)
    train = json.loads((run_dir / "train" / "metrics.json").read_text())
    dice, val = test["dice"], train["validation"]["dice"]
    row = {
        "seed": seed, "run": name, "best_epoch": train.get("best_epoch"),
        "train_s": round(train["train_seconds"], 1), "threads": threads,
        "val_mean_dice": train["validation"]["mean_dice"],
        "val_gland_dice": float(np.mean([val["benign gland"], val["malignant gland"]])),
        "test_dice_background": dice["background"], "test_dice_benign": dice["benign gland"],
        "test_dice_malignant": dice["malignant gland"],
        "test_gland_dice": float(np.mean([dice["benign gland"], dice["malignant gland"]])),
        "test_mean_dice": float(np.nanmean(list(dice.values()))),
        "test_binary_gland_dice": binary_gland_dice(test["confusion_matrix"]),
        "test_boundary_gland_dice": float(np.mean([test["boundary"]["dice"][c] for c in GLANDS])),
        **gland_errors(np.asarray(test["confusion_matrix"])),
    }
    row.update(validation_row(run_dir, split, mpp, log, threads))
    first = train.get("self_training")
    if first and first.get("validation"):
        dice1 = first["validation"]["dice"]
        row["round1_val_gland_dice"] = float(np.mean([dice1["benign gland"], dice1["malignant gland"]]))
        row["round1_best_epoch"] = first["best_epoch"]
    row_path.write_text(json.dumps(row, indent=2))
    return row


GLANDS = ("benign gland", "malignant gland")


def score_images(run_dir: Path, part: Path, suffix: str, mpp: float, log: Path, threads: int | None) -> dict:
    """``weakseg-infer`` with the exported model on ``part/images``, then ``weakseg-eval`` against ``part/masks``."""
    eval_dir = run_dir / f"eval{suffix}"
    if (eval_dir / "metrics.json").is_file():
        return json.loads((eval_dir / "metrics.json").read_text())
    infer, predictions = run_dir / f"infer{suffix}", run_dir / f"predictions{suffix}"
    for stale in (infer, predictions):
        if stale.is_dir():
            shutil.rmtree(stale)
    run(["weakseg-infer", str(run_dir / "model.onnx"), str(part / "images"), "--out", str(infer),
         "--mpp", str(mpp), "--quiet", "--no-geojson"], log, threads)
    predictions.mkdir()
    for labels in sorted(infer.glob("*/labels.tif")):
        shutil.copy(labels, predictions / f"{labels.parent.name}.tif")
    run(["weakseg-eval", "--predictions", str(predictions), "--masks", str(part / "masks"),
         "--classes", CLASSES, "--out", str(eval_dir)], log)
    return json.loads((eval_dir / "metrics.json").read_text())


def binary_gland_dice(confusion) -> float:
    """Dice of gland (either grade) against background: where the glands are, whatever their grade."""
    confusion = np.asarray(confusion, float)
    true_gland, predicted_gland = confusion[1:].sum(), confusion[:, 1:].sum()
    overlap = confusion[1:, 1:].sum()
    return float(2 * overlap / (true_gland + predicted_gland)) if true_gland + predicted_gland else float("nan")


def validation_row(run_dir: Path, split: Path, mpp: float, log: Path, threads: int | None) -> dict:
    """The validation patients scored like the test ones: exported model, ``weakseg-infer``, ``weakseg-eval``.

    Their gland Dice agrees with the training's own whole-image validation (``val_gland_dice``) within 0.01
    (tests/test_deployed_quality.py); the boundary band (3 px = 3.7 µm at 1.24 µm/px) and the binary gland
    Dice are what that validation does not report.
    """
    val = score_images(run_dir, split / "val", "_val", mpp, log, threads)
    return {
        "val_onnx_gland_dice": float(np.mean([val["dice"][c] for c in GLANDS])),
        "val_binary_gland_dice": binary_gland_dice(val["confusion_matrix"]),
        "val_boundary_gland_dice": float(np.mean([val["boundary"]["dice"][c] for c in GLANDS])),
    }


def gland_errors(confusion: np.ndarray) -> dict:
    """Gland painted on true background, and benign/malignant confused inside true glands (rows = truth)."""
    from weaksegtf.metrics.confusion import foreground_confusion, foreground_on_background

    return {
        "gland_on_stroma": foreground_on_background(confusion),
        "grade_confusion_in_glands": foreground_confusion(confusion),
    }


def summarise(rows: list[dict]) -> str:
    by = {(r["seed"], r["run"]): r for r in rows}
    seeds = sorted({r["seed"] for r in rows})
    lines = ["| run | seeds | val gland Dice | val gland Dice, ONNX | val binary gland | val boundary gland | "
             "test gland Dice | test benign | test malignant | test background | test binary gland | "
             "test boundary gland | gland on stroma | grade confusion in glands | best epoch | train s |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for name in RUNS:
        got = [by[(s, name)] for s in seeds if (s, name) in by]
        if not got:
            continue

        def stat(key):
            if any(key not in g for g in got):
                return "—"
            values = np.array([g[key] for g in got], float)
            return f"{values.mean():.3f} ± {values.std(ddof=1):.3f}" if len(values) > 1 else f"{values[0]:.3f}"

        label = name
        lines.append(f"| {label} | {len(got)} | {stat('val_gland_dice')} | {stat('val_onnx_gland_dice')} | "
                     f"{stat('val_binary_gland_dice')} | {stat('val_boundary_gland_dice')} | "
                     f"{stat('test_gland_dice')} | {stat('test_dice_benign')} | "
                     f"{stat('test_dice_malignant')} | {stat('test_dice_background')} | {stat('test_binary_gland_dice')} | "
                     f"{stat('test_boundary_gland_dice')} | {stat('gland_on_stroma')} | "
                     f"{stat('grade_confusion_in_glands')} | {stat('best_epoch')} | {stat('train_s')} |")
    lines.append("")
    for key, where in (("val_gland_dice", "validation"), ("test_gland_dice", "test")):
        for a, b in (("S+C", "S"), ("S-all", "S"), ("S+C", "S-all"), ("S+C (one training)", "S"),
                     ("S+C", "S+C (one training)")):
            paired = [(by[(s, a)][key], by[(s, b)][key]) for s in seeds
                      if key in by.get((s, a), {}) and key in by.get((s, b), {})]
            if len(paired) < 2:
                continue
            diff = np.array([x - y for x, y in paired])
            low, high = bootstrap_ci(diff)  # weaksegtf.experiment_report's: percentile, 10,000 resamples
            ratio = np.mean([x for x, _ in paired]) / np.mean([y for _, y in paired])
            lines.append(f"- {where} patients, {a} − {b}, gland Dice, paired over {len(diff)} seeds: "
                         f"{diff.mean():+.3f} (95% bootstrap CI {low:+.3f} to {high:+.3f}); {a} / {b} = {ratio:.2f}")
    return "\n".join(lines)


def overlays(out: Path, split: Path, seed: int, runs: list[str], n_images: int = 4) -> Path | None:
    """Test images | truth | one column per run, for the first ``n_images`` test images (half of each grade)."""
    import cv2
    import tifffile

    from weaksegtf.visualize import comparison_grid

    masks_dir = split / "test" / "masks"
    names = sorted(p.stem for p in masks_dir.glob("*.png"))
    grades = {name: int(np.max(cv2.imread(str(masks_dir / f"{name}.png"), cv2.IMREAD_UNCHANGED) % 255))
              for name in names}
    picked = [n for n in names if grades[n] == 1][: n_images // 2]
    picked += [n for n in names if grades[n] == 2][: n_images - len(picked)]
    columns = {}
    for name in runs:
        folder = out / f"seed{seed}" / name.replace(" (one training)", "-once") / "predictions"
        if not all((folder / f"{n}.tif").is_file() for n in picked):
            return None
        columns[name] = [tifffile.imread(folder / f"{n}.tif") for n in picked]
    images = [cv2.cvtColor(cv2.imread(str(split / "test" / "images" / f"{n}.png")), cv2.COLOR_BGR2RGB) for n in picked]
    truths = [cv2.imread(str(masks_dir / f"{n}.png"), cv2.IMREAD_UNCHANGED) for n in picked]
    return comparison_grid(images, truths, columns, CLASSES.split(","), out / f"overlays_seed{seed}.png",
                           titles=picked, cell_px=256)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--glas", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--masked", type=int, default=7)
    parser.add_argument("--downsample", type=int, default=2)
    parser.add_argument("--runs", nargs="+", default=list(RUNS), choices=RUNS)
    parser.add_argument("--train-args", default="", help="extra weakseg-train options, as one string")
    parser.add_argument("--jobs", type=int, default=1, help="runs at a time, each with cores / jobs threads")
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    splits = {seed: split_folder(Path(args.glas), out, seed, args.masked, args.downsample) for seed in args.seeds}
    threads = max(1, (os.cpu_count() or 1) // args.jobs) if args.jobs > 1 else None
    plan = [(seed, name) for seed in args.seeds for name in args.runs]
    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        futures = [pool.submit(one_run, name, splits[seed], out, args.train_args.split(), seed, threads)
                   for seed, name in plan]
        rows = []
        for future in futures:  # in plan order; a failed run stops the benchmark with its log named
            rows.append(future.result())
            print(json.dumps(rows[-1]), flush=True)
            with open(out / "scenario.csv", "w", newline="") as handle:
                writer = csv.DictWriter(handle, fieldnames=list(dict.fromkeys(k for r in rows for k in r)))
                writer.writeheader()
                writer.writerows(rows)
    print(summarise(rows))
    (out / "summary.md").write_text(summarise(rows) + "\n")
    picture = overlays(out, splits[args.seeds[0]], args.seeds[0], args.runs)
    if picture is not None:
        print(f"overlays: {picture}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
