"""Real data: S (a few masks) against S+C (the same masks plus every other image's label) on GlaS.

Both modes run the same number of optimizer steps (the S+C epoch length), so
S+C gets no extra segmentation updates, only the label batches. Validation is
on whole images of held-out patients.

    python benchmarks/glas_masks_vs_labels.py --glas ../shared/data/glas-train --masked 7 --epochs 15 --lr 1e-3 --seeds 0 1

Results go to runs/glas_masks_vs_labels/<mode>_seed<k>/ and a table to stdout
and runs/glas_masks_vs_labels/summary.json.

This is the quick two-mode, fixed-count case of the paper's experiment. The full
sweep (S, S+C, S+C* over s% with repeats, the same equal-steps rule, resumable,
with Fig. 5/6 plots) is ``weakseg-experiment sweep`` (weaksegtf/experiment.py).
"""

from __future__ import annotations

import argparse
import json
import math
import os
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--glas", default=str(Path(__file__).resolve().parents[2] / "shared/data/glas-train"))
    parser.add_argument("--masked", type=int, default=7)
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--lr", type=float, default=1e-3,
                        help="Adam learning rate for both modes (the paper's 1e-4 assumes 100 epochs)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--modes", nargs="+", default=["S", "S+C"])
    parser.add_argument("--out", default="runs/glas_masks_vs_labels")
    args = parser.parse_args()

    from weaksegtf.data import GLAS_CLASS_NAMES, load_glas
    from weaksegtf.training import run_training

    out = Path(args.out)
    summary_path = out / "summary.json"
    summary = json.loads(summary_path.read_text()) if summary_path.exists() else {}
    for seed in args.seeds:
        split = load_glas(args.glas, masked=args.masked, seed=seed)
        label_tiles = sum(math.ceil(img.shape[0] / 128) * math.ceil(img.shape[1] / 128) for img in split.train_labels.images)
        steps = math.ceil(label_tiles / 20)
        for mode in args.modes:
            key = f"{mode}_seed{seed}"
            if key in summary:
                continue  # resumable: finished runs are not redone
            result = run_training(
                split.train_masks, split.train_labels, split.val, out / key.replace("+", "p").replace("*", "star"),
                class_names=GLAS_CLASS_NAMES, mode=mode, epochs=args.epochs, steps_per_epoch=steps,
                learning_rate=args.lr, seed=seed,
            )
            summary[key] = {
                "mode": mode, "seed": seed, "masked_images": len(split.train_masks),
                "label_images": len(split.train_labels), "val_images": len(split.val),
                "val_patients": list(split.val_patients), "steps": steps * args.epochs, "lr": args.lr,
                **{k: result.metrics[k] for k in ("train_seconds", "validation")},
            }
            out.mkdir(parents=True, exist_ok=True)
            summary_path.write_text(json.dumps(summary, indent=2))
    print(f"{'run':<14}{'pixel acc':>10}{'mIoU':>8}" + "".join(f"{'Dice ' + n:>24}" for n in GLAS_CLASS_NAMES))
    for key, row in summary.items():
        v = row["validation"]
        dice = "".join(f"{(v['dice'][n] if v['dice'][n] is not None else float('nan')):>24.3f}" for n in GLAS_CLASS_NAMES)
        print(f"{key:<14}{v['pixel_accuracy']:>10.3f}{v['mean_iou']:>8.3f}{dice}")


if __name__ == "__main__":
    main()
