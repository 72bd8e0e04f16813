"""The paper's decoder against the skip decoder with bilinear logits on GlaS: region and boundary Dice, paired.

Issue 15's question: does a decoder that refines with the encoder's stride-4 and stride-8 features and enlarges
its logits bilinearly (``--decoder skip --upsampling bilinear``) follow gland boundaries better than the paper's
decoder (stride 8, nearest), at the same training budget? The paper-decoder runs are the S runs of a finished
``benchmarks/glas_scenario.py`` folder (``--base``); this script trains the same S runs (same splits, same masked
draw, same ``--train-args``) with the skip decoder into ``--out`` and scores both on the validation patients
(which choose) and the test patients (scored once) through the exported ONNX model and ``weakseg-infer``:
gland Dice (region) and gland Dice within 3 px (3.7 µm) of the true boundaries. Resumable like the scenario.

    python benchmarks/glas_decoders.py --base runs/scen3 --out runs/decoders --seeds 0 1 2 \
        --train-args "--augment light --lr-schedule cosine"

``--variant "paper + bilinear"`` measures the paper decoder with its logits enlarged bilinearly instead.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from glas_scenario import CLASSES, one_run  # noqa: E402

from weaksegtf.experiment_report import bootstrap_ci  # noqa: E402

#: the variants measured against the paper decoder (stride 8, nearest): weakseg-train options
VARIANTS = {"skip + bilinear": ["--decoder", "skip", "--upsampling", "bilinear"],
            "paper + bilinear": ["--upsampling", "bilinear"]}
KEYS = (("val_onnx_gland_dice", "val gland Dice"), ("val_boundary_gland_dice", "val boundary gland Dice"),
        ("test_gland_dice", "test gland Dice"), ("test_boundary_gland_dice", "test boundary gland Dice"))


def summarise(pairs: dict[int, tuple[dict, dict]], variant: str = "skip + bilinear") -> str:
    lines = ["| decoder | seeds | " + " | ".join(title for _, title in KEYS) + " |",
             "|---|---|" + "---|" * len(KEYS)]
    for index, name in enumerate(("paper (stride 8, nearest)", variant)):
        cells = []
        for key, _ in KEYS:
            values = np.array([pair[index][key] for pair in pairs.values()], float)
            cells.append(f"{values.mean():.3f} ± {values.std(ddof=1):.3f}" if len(values) > 1 else f"{values[0]:.3f}")
        lines.append(f"| {name} | {len(pairs)} | " + " | ".join(cells) + " |")
    lines.append("")
    for key, title in KEYS:
        diff = np.array([other[key] - paper[key] for paper, other in pairs.values()])
        low, high = bootstrap_ci(diff) if len(diff) > 1 else (float("nan"), float("nan"))
        per_seed = ", ".join(f"{d:+.3f}" for d in diff)
        lines.append(f"- {title}, {variant} − paper, paired over {len(diff)} seeds: {diff.mean():+.3f} "
                     f"(95% bootstrap CI {low:+.3f} to {high:+.3f}; per seed {per_seed})")
    return "\n".join(lines)


def overlays(base: Path, out: Path, seed: int, variant: str = "skip + bilinear", n_images: int = 4,
             crop_px: int = 160) -> Path:
    """Validation images | truth | paper | variant, cropped to the centre so the boundaries show at full size."""
    import cv2
    import tifffile

    from weaksegtf.visualize import comparison_grid

    split = base / f"split_seed{seed}" / "val"
    names = sorted(p.stem for p in (split / "masks").glob("*.png"))[:n_images]

    def crop(array):
        h, w = array.shape[:2]
        y, x = max(0, (h - crop_px) // 2), max(0, (w - crop_px) // 2)
        return array[y: y + crop_px, x: x + crop_px]

    images = [crop(cv2.cvtColor(cv2.imread(str(split / "images" / f"{n}.png")), cv2.COLOR_BGR2RGB)) for n in names]
    truths = [crop(cv2.imread(str(split / "masks" / f"{n}.png"), cv2.IMREAD_UNCHANGED)) for n in names]
    columns = {
        "paper decoder": [crop(tifffile.imread(base / f"seed{seed}" / "S" / "predictions_val" / f"{n}.tif")) for n in names],
        variant: [crop(tifffile.imread(out / f"seed{seed}" / "S" / "predictions_val" / f"{n}.tif")) for n in names],
    }
    return comparison_grid(images, truths, columns, CLASSES.split(","), out / f"decoders_seed{seed}.png",
                           titles=names, cell_px=320)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--base", required=True, help="a glas_scenario.py folder whose S runs use the paper decoder")
    parser.add_argument("--out", required=True)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--train-args", default="", help="the scenario's extra weakseg-train options, as one string")
    parser.add_argument("--jobs", type=int, default=1, help="runs at a time, each with cores / jobs threads")
    parser.add_argument("--variant", choices=VARIANTS, default="skip + bilinear",
                        help="the decoder options trained against the paper decoder")
    args = parser.parse_args(argv)
    base, out = Path(args.base), Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    threads = max(1, (os.cpu_count() or 1) // args.jobs) if args.jobs > 1 else None
    train_args = args.train_args.split()

    def pair(seed: int) -> tuple[dict, dict]:
        split = base / f"split_seed{seed}"
        paper = one_run("S", split, base, train_args, seed, threads)
        variant = one_run("S", split, out, train_args + VARIANTS[args.variant], seed, threads)
        return paper, variant

    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        pairs = dict(zip(args.seeds, pool.map(pair, args.seeds)))
    text = summarise(pairs, args.variant)
    print(text)
    (out / "summary.md").write_text(text + "\n")
    (out / "pairs.json").write_text(json.dumps({str(s): list(p) for s, p in pairs.items()}, indent=2))
    print(f"overlays: {overlays(base, out, args.seeds[0], args.variant)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
