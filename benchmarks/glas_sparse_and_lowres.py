"""Real data (issue 7): sparse annotations and low-resolution labels on GlaS, each beside its baseline.

Both experiments train the Bokhorst U-Net (``--architecture``) on tiles of the
patient-wise GlaS training split and score whole validation images of other
patients: per-class Dice, and masked Dice within ``--boundary-px`` of the true
class boundaries (Zhao et al. section 3.2; for GlaS at 1.24 um/px, one block).
Every run of an experiment takes the same number of optimizer steps.

**Sparse** (Bokhorst et al. 2018), classes background / benign gland /
malignant gland. Sparse masks keep only eroded interiors of a random
``--keep-glands`` share of the glands and a few eroded stroma discs; every
other pixel is 255 (not annotated). Runs: ``dense`` (full masks), then the
sparse masks with ``none`` (valid-pixel mask only), ``instance`` (eq. 1) and
``minibatch`` (eq. 2) balancing.

**Low resolution** (Zhao et al. 2019), classes background / gland. Every
``--block-px`` block of a tile gets a low-resolution label: its gland fraction,
binned at ``--bins``. The joint table is estimated from the dense masks of 5
training images only (``--table-images``). Runs: ``lowres_model``, the
baseline (a U-Net trained on the block labels as a coarse mask; its block
prediction is upsampled, each block painted with the class its label most
likely holds), then the ``intra``, ``inter`` and ``intra_inter`` LSR losses.

    python benchmarks/glas_sparse_and_lowres.py --glas ../shared/data/glas-train
    python benchmarks/glas_sparse_and_lowres.py --quick     # tiny smoke run: 4 images, 2 steps a run

Runtime: 786 training tiles of 128 px, so 99 steps an epoch and about 1000
steps a run, 8 runs. A step of the 16-filter U-Net at batch 8 took 2.9 s
(mask) and 3.6 s (low-resolution) on 2 shared CPU cores at load 5: about 7 h
in all, roughly half that on an idle machine. ``--experiments sparse`` and
``--experiments lowres`` split it into two halves; ``--quick`` takes about 4 min.

Results: runs/glas_sparse_lowres/<experiment>/<run>/ (model.keras, metrics.json),
summary.json (resumable: finished runs are not redone), a table on stdout and,
unless --quick, a ``## Sparse annotations and low-resolution labels (GlaS)``
section in docs/results.md (other sections are kept).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shlex
import sys
import time
from pathlib import Path

from _markdown import replace_section

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

ROOT = Path(__file__).resolve().parents[1]
HEADING = "## Sparse annotations and low-resolution labels (GlaS)"
SPARSE_RUNS = {"dense": "weighted_ce", "none": "weighted_ce", "instance": "instance_balanced",
               "minibatch": "minibatch_balanced"}
LOWRES_RUNS = ("lowres_model", "intra", "inter", "intra_inter")
LOWRES_CLASSES = ("background", "gland")


# --- annotations derived from dense masks (numpy + OpenCV) --------------------------------------


def sparsify(mask: np.ndarray, rng: np.random.Generator, keep_glands: float, erosion_px: int,
             stroma_discs: int, disc_radius_px: int) -> np.ndarray:
    """Sparse annotation of one dense mask: eroded interiors of some glands and some stroma, else 255."""
    import cv2

    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * erosion_px + 1, 2 * erosion_px + 1))
    sparse = np.full_like(mask, 255)
    count, components = cv2.connectedComponents((mask > 0).astype(np.uint8))
    for component in range(1, count):
        if rng.random() < keep_glands:
            interior = cv2.erode((components == component).astype(np.uint8), kernel) > 0
            sparse[interior] = mask[interior]
    stroma = cv2.erode((mask == 0).astype(np.uint8), kernel) > 0
    ys, xs = np.nonzero(stroma)
    if len(ys):
        discs = np.zeros(mask.shape, np.uint8)
        for j in rng.integers(0, len(ys), stroma_discs):
            cv2.circle(discs, (int(xs[j]), int(ys[j])), disc_radius_px, 1, -1)
        sparse[stroma & (discs > 0)] = 0
    return sparse


def block_masks(block_maps: np.ndarray, block_px: int) -> np.ndarray:
    """Block-label maps ``(N, R, C)`` painted at pixel resolution ``(N, R*b, C*b)``."""
    return block_maps.repeat(block_px, axis=1).repeat(block_px, axis=2)


# --- evaluation -------------------------------------------------------------------------------------


def evaluate(predict, images, masks, class_names, boundary_px, run_dir: Path, figure_images) -> dict:
    """Per-class and masked (boundary) Dice and IoU of ``predict(image) -> class map`` over whole images.

    The predictions of the images indexed by ``figure_images`` go to ``run_dir/predictions.npz`` for the figure.
    """
    from weaksegtf.metrics import SegmentationEvaluator

    evaluator = SegmentationEvaluator(class_names=list(class_names), boundary_distance_px=boundary_px, keep_rows=False)
    kept = {}
    for i, (image, mask) in enumerate(zip(images, masks)):
        prediction = predict(image)
        evaluator.update(mask, prediction)
        if i in figure_images:
            kept[f"image_{i}"] = prediction.astype(np.uint8)
    run_dir.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(run_dir / "predictions.npz", **kept)
    result = evaluator.result()
    keep = ("pixel_accuracy", "mean_dice", "mean_iou", "dice", "iou", "n_images")
    return {**{k: result[k] for k in keep}, "masked": {k: result["boundary"][k] for k in
                                                       ("distance_px", "mean_dice", "mean_iou", "dice", "iou")}}


def lowres_model_predictor(model, table, block_px: int):
    """Baseline prediction: mean block logits -> block label -> the class it most likely holds, per block."""
    label_to_class = np.argmax(table.mean, axis=1).astype(np.uint8)

    def predict(image: np.ndarray) -> np.ndarray:
        height, width = image.shape[:2]
        step = math.lcm(block_px, 16)
        pad_y, pad_x = (-height) % step, (-width) % step
        padded = np.pad(image, ((0, pad_y), (0, pad_x), (0, 0)), mode="reflect")
        logits = np.asarray(model(padded[None].astype(np.float32), training=False)["mask"])[0]
        rows, cols = padded.shape[0] // block_px, padded.shape[1] // block_px
        block_logits = logits.reshape(rows, block_px, cols, block_px, -1).mean(axis=(1, 3))
        classes = label_to_class[block_logits.argmax(-1)]
        return block_masks(classes[None], block_px)[0, :height, :width]

    return predict


# --- experiments ------------------------------------------------------------------------------------


def run_sparse(args, split, summary, save) -> None:
    from weaksegtf.data import GLAS_CLASS_NAMES, MaskSet, mask_set_to_arrays
    from weaksegtf.training import predict_image, train_weak_segmenter

    train = split.full_train_masks
    rng = np.random.default_rng(args.seed)
    sparse_masks = [sparsify(m, rng, args.keep_glands, args.erosion_px, args.stroma_discs, args.disc_radius_px)
                    for m in train.masks]
    dense_x, dense_y = mask_set_to_arrays(train, args.tile_size)
    sparse_x, sparse_y = mask_set_to_arrays(MaskSet(train.images, sparse_masks, train.names), args.tile_size)
    annotated = float(np.mean(sparse_y != 255) / np.mean(dense_y != 255))
    steps = args.steps or math.ceil(len(dense_x) / args.batch_size)
    for run, loss in SPARSE_RUNS.items():
        key = f"sparse/{run}"
        if key in summary or run not in args.sparse_runs:
            continue
        x, y = (dense_x, dense_y) if run == "dense" else (sparse_x, sparse_y)
        start = time.perf_counter()
        model, _ = train_weak_segmenter(
            x, y, None, None, num_classes=3, class_names=GLAS_CLASS_NAMES, mode="S", epochs=args.epochs,
            steps_per_epoch=steps, batch_size=args.batch_size, learning_rate=args.lr, class_weights=None,
            segmentation_loss=loss, architecture=args.architecture, unet_filters=args.unet_filters,
            seed=args.seed, verbose=args.verbose,
        )
        seconds = time.perf_counter() - start
        metrics = evaluate(lambda image, model=model: predict_image(model, image), split.val.images, split.val.masks,
                           GLAS_CLASS_NAMES, args.boundary_px, Path(args.out) / key, args.figure_images)
        summary[key] = {"experiment": "sparse", "run": run, "segmentation_loss": loss,
                        "annotated_share": 1.0 if run == "dense" else annotated, "tiles": len(x),
                        "steps": steps * args.epochs, "train_seconds": round(seconds, 1), "validation": metrics}
        save(key, model, summary)


def run_lowres(args, split, summary, save) -> None:
    from weaksegtf.data import cut_tiles
    from weaksegtf.data.block_labels import bin_shares, block_class_shares
    from weaksegtf.data.joint_distribution_table import JointDistributionTable
    from weaksegtf.errors import DataError
    from weaksegtf.training import predict_image, train_weak_segmenter

    train = split.full_train_masks
    binary = [(m > 0).astype(np.uint8) for m in train.masks]
    val_binary = [(m > 0).astype(np.uint8) for m in split.val.masks]
    image_tiles = [cut_tiles(image, args.tile_size, pad_value=255) for image in train.images]
    mask_tiles = [cut_tiles(mask, args.tile_size, pad_value=255) for mask in binary]
    tiles, tile_masks = np.concatenate(image_tiles), np.concatenate(mask_tiles)
    owner = np.concatenate([np.full(len(t), i) for i, t in enumerate(image_tiles)])  # image of each tile
    edges = args.bins
    block_maps = np.stack([bin_shares(block_class_shares(m, args.block_px, 2)[..., 1], edges) for m in tile_masks])
    names = tuple(f"{100 * lo:g}-{100 * hi:g}%" for lo, hi in zip(edges[:-1], edges[1:]))

    # The joint table from the dense masks of a few images, as an expert would estimate it.
    rng = np.random.default_rng(args.seed)
    table = chosen = None
    for _ in range(200):
        chosen = np.sort(rng.choice(len(train), size=min(args.table_images, len(train)), replace=False))
        rows = np.isin(owner, chosen)
        try:
            table = JointDistributionTable.estimate(tile_masks[rows], block_maps[rows], len(names), 2,
                                                    labels=names, classes=LOWRES_CLASSES)
            break
        except DataError:
            continue
    if table is None:
        raise SystemExit(f"no {args.table_images} training images hold a block of every label {names}; change --bins")
    out = Path(args.out) / "lowres"
    out.mkdir(parents=True, exist_ok=True)
    table.save(out / "joint_table.csv")

    steps = args.steps or math.ceil(len(tiles) / args.batch_size)
    for run in LOWRES_RUNS:
        key = f"lowres/{run}"
        if key in summary or run not in args.lowres_runs:
            continue
        start = time.perf_counter()
        common = dict(epochs=args.epochs, steps_per_epoch=steps, batch_size=args.batch_size, learning_rate=args.lr,
                      architecture=args.architecture, unet_filters=args.unet_filters, seed=args.seed,
                      verbose=args.verbose)
        if run == "lowres_model":
            # Block labels as a coarse mask of len(names) classes (255 where a block has no label).
            model, _ = train_weak_segmenter(tiles, block_masks(block_maps, args.block_px), None, None,
                                            num_classes=len(names), class_names=names, mode="S", **common)
            predict = lowres_model_predictor(model, table, args.block_px)
        else:
            model, _ = train_weak_segmenter(None, None, None, None, num_classes=2, class_names=LOWRES_CLASSES,
                                            mode="LR", lowres_images=tiles, block_labels=block_maps,
                                            joint_table=table, lowres_loss=run, lowres_group_size=args.group_size,
                                            **common)
            predict = lambda image, model=model: predict_image(model, image)  # noqa: E731
        seconds = time.perf_counter() - start
        metrics = evaluate(predict, split.val.images, val_binary, LOWRES_CLASSES, args.boundary_px,
                           Path(args.out) / key, args.figure_images)
        summary[key] = {"experiment": "lowres", "run": run, "tiles": len(tiles), "block_px": args.block_px,
                        "bins": list(edges), "table_images": [train.names[i] for i in chosen],
                        "steps": steps * args.epochs, "train_seconds": round(seconds, 1), "validation": metrics}
        save(key, model, summary)


# --- reporting --------------------------------------------------------------------------------------


def figure_image_indices(masks) -> list[int]:
    """Two validation images for the figure: the first holding benign glands, the first holding malignant."""
    chosen = []
    for cls in (1, 2):
        hit = next((i for i, m in enumerate(masks) if np.any(m == cls) and i not in chosen), None)
        if hit is not None:
            chosen.append(hit)
    return chosen or [0]


def draw_figure(path: Path, args, split, summary: dict, experiment: str) -> Path | None:
    """Rows of validation images: image, ground truth, the supervision it would get, then each run's prediction."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from weaksegtf.data import GLAS_CLASS_NAMES
    from weaksegtf.data.block_labels import bin_shares, block_class_shares
    from weaksegtf.visualize import colorize, overlay

    runs = [row["run"] for row in summary.values() if row["experiment"] == experiment]
    if not runs:
        return None
    binary = experiment == "lowres"
    names = LOWRES_CLASSES if binary else GLAS_CLASS_NAMES
    rng = np.random.default_rng(args.seed)
    columns = ["image", "ground truth", "low-res labels (dark: gland)" if binary else "sparse annotation", *runs]
    fig, axes = plt.subplots(len(args.figure_images), len(columns), squeeze=False,
                             figsize=(2.2 * len(columns), 2.3 * len(args.figure_images)))
    for row, index in enumerate(args.figure_images):
        image, mask = split.val.images[index], split.val.masks[index]
        truth = (mask > 0).astype(np.uint8) if binary else mask
        if binary:  # each block's binned gland fraction, as a grey level (dark: mostly gland)
            height, width = truth.shape
            pad = ((0, (-height) % args.block_px), (0, (-width) % args.block_px))
            shares = block_class_shares(np.pad(truth, pad, mode="edge"), args.block_px, 2)[..., 1]
            centres = np.convolve(args.bins, [0.5, 0.5], mode="valid")[bin_shares(shares, args.bins)]
            grey = np.repeat(np.repeat(255 * (1 - centres), args.block_px, 0), args.block_px, 1)[:height, :width]
            supervision = np.repeat(grey[..., None], 3, axis=2).astype(np.uint8)
        else:
            supervision = colorize(sparsify(mask, rng, args.keep_glands, args.erosion_px, args.stroma_discs,
                                            args.disc_radius_px), len(names))
        pictures = [image, colorize(truth, len(names)), supervision]
        for run in runs:
            with np.load(Path(args.out) / experiment / run / "predictions.npz") as saved:
                pictures.append(overlay(image, saved[f"image_{index}"], len(names)))
        for col, picture in enumerate(pictures):
            ax = axes[row, col]
            ax.imshow(picture)
            ax.set_xticks([])
            ax.set_yticks([])
            if row == 0:
                ax.set_title(columns[col], fontsize=9)
        axes[row, 0].set_ylabel(split.val.names[index], fontsize=8)
    legend = ", ".join(f"{name} {colour}" for name, colour in zip(names, ("grey", "red", "green")))
    fig.suptitle(f"GlaS validation images, {experiment} runs ({legend}; black: not annotated)", fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def table_markdown(summary: dict, experiment: str, class_names) -> str:
    head = ("| run | " + " | ".join(f"Dice {c}" for c in class_names) + " | mean Dice | "
            + " | ".join(f"masked Dice {c}" for c in class_names) + " | masked mean Dice | train s |")
    lines = [head, "|" + "---|" * (2 * len(class_names) + 4)]
    for row in summary.values():
        if row["experiment"] != experiment:
            continue
        v = row["validation"]

        def fmt(value):
            return "n/a" if value is None else f"{value:.3f}"

        name = row["run"] + (f" ({100 * row['annotated_share']:.0f}% of pixels)" if "annotated_share" in row else "")
        lines.append(
            f"| {name} | " + " | ".join(fmt(v["dice"][c]) for c in class_names) + f" | {fmt(v['mean_dice'])} | "
            + " | ".join(fmt(v["masked"]["dice"][c]) for c in class_names)
            + f" | {fmt(v['masked']['mean_dice'])} | {row['train_seconds']:.0f} |"
        )
    return "\n".join(lines)



def figure_link(figures: dict, experiment: str, results_md: str) -> str:
    if experiment not in figures:
        return ""
    relative = os.path.relpath(figures[experiment], Path(results_md).parent)
    return f"![{experiment} runs on two validation images]({relative})\n\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--glas", default=str(ROOT.parent / "shared/data/glas-train"))
    parser.add_argument("--out", default="runs/glas_sparse_lowres")
    parser.add_argument("--experiments", nargs="+", default=["sparse", "lowres"], choices=["sparse", "lowres"])
    parser.add_argument("--sparse-runs", nargs="+", default=list(SPARSE_RUNS), choices=list(SPARSE_RUNS))
    parser.add_argument("--lowres-runs", nargs="+", default=list(LOWRES_RUNS), choices=list(LOWRES_RUNS))
    parser.add_argument("--architecture", default="unet", choices=["unet", "resnet18"])
    parser.add_argument("--unet-filters", type=int, default=16, help="32 is the paper's; 16 is 4x cheaper on CPU")
    parser.add_argument("--downsample", type=int, default=2, help="GlaS side divisor (2: ~1.24 um/px)")
    parser.add_argument("--tile-size", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--steps", type=int, default=0, help="steps per epoch (0: one pass over the dense tiles)")
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--boundary-px", type=float, default=32.0, help="masked Dice band half-width")
    parser.add_argument("--keep-glands", type=float, default=0.5, help="share of glands annotated (sparse)")
    parser.add_argument("--erosion-px", type=int, default=4)
    parser.add_argument("--stroma-discs", type=int, default=3)
    parser.add_argument("--disc-radius-px", type=int, default=24)
    parser.add_argument("--block-px", type=int, default=32, help="low-resolution block side")
    parser.add_argument("--bins", type=float, nargs="+", default=[0, 0.05, 0.25, 0.5, 0.75, 0.95, 1.0],
                        help="gland-fraction bin edges: the low-resolution labels")
    parser.add_argument("--table-images", type=int, default=5, help="dense images the joint table is estimated from")
    parser.add_argument("--group-size", type=int, default=15)
    parser.add_argument("--results-md", default=str(ROOT / "docs/results.md"), help="'' to skip")
    parser.add_argument("--figures", default=str(ROOT / "docs/figures"),
                        help="where glas-sparse-lowres_<experiment>.png go ('' for --out)")
    parser.add_argument("--quick", action="store_true", help="tiny smoke settings (minutes, numbers meaningless)")
    parser.add_argument("--verbose", type=int, default=2)
    args = parser.parse_args()
    if args.quick:
        args.unet_filters, args.tile_size, args.batch_size, args.epochs, args.steps = 4, 64, 2, 1, 2
        args.block_px, args.bins, args.table_images, args.group_size, args.verbose = 16, [0, 0.5, 1.0], 3, 4, 0
        args.results_md, args.out, args.figures = "", args.out + "_quick", ""

    import keras

    from weaksegtf.data import GLAS_CLASS_NAMES, load_glas

    split = load_glas(args.glas, masked=1.0, seed=args.seed, downsample=args.downsample)
    if args.quick:
        split.full_train_masks = split.full_train_masks.subset(range(4))
        split.val = split.val.subset(range(2))
    args.figure_images = figure_image_indices(split.val.masks)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    summary_path = out / "summary.json"
    summary = json.loads(summary_path.read_text()) if summary_path.exists() else {}

    def save(key: str, model: keras.Model, summary: dict) -> None:
        run_dir = out / key
        run_dir.mkdir(parents=True, exist_ok=True)
        model.save(run_dir / "model.keras")
        (run_dir / "metrics.json").write_text(json.dumps(summary[key], indent=2))
        summary_path.write_text(json.dumps(summary, indent=2))
        print(f"{key}: mean Dice {summary[key]['validation']['mean_dice']}, "
              f"masked mean Dice {summary[key]['validation']['masked']['mean_dice']}", flush=True)

    if "sparse" in args.experiments:
        run_sparse(args, split, summary, save)
    if "lowres" in args.experiments:
        run_lowres(args, split, summary, save)

    settings = (f"`{args.architecture}` ({args.unet_filters} filters), {args.tile_size}-px tiles, batch "
                f"{args.batch_size}, {args.epochs} epochs, Adam lr {args.lr}, seed {args.seed}, GlaS / {args.downsample}; "
                f"{len(split.full_train_masks)} training and {len(split.val)} validation images "
                f"(patients {list(split.val_patients)}); masked Dice within {args.boundary_px:g} px of true boundaries.")
    sparse_table = table_markdown(summary, "sparse", GLAS_CLASS_NAMES)
    lowres_table = table_markdown(summary, "lowres", LOWRES_CLASSES)
    print(f"\n{settings}\n\nSparse annotations\n{sparse_table}\n\nLow-resolution labels\n{lowres_table}")
    figures = {}
    for experiment in ("sparse", "lowres"):
        path = draw_figure(Path(args.figures or out) / f"glas-sparse-lowres_{experiment}.png", args, split,
                           summary, experiment)
        if path is not None:
            figures[experiment] = path
            print(f"figure: {path}")
    if args.results_md:
        command = " ".join(["python benchmarks/glas_sparse_and_lowres.py", *map(shlex.quote, sys.argv[1:])])
        section = (f"{HEADING}\n\nCommand: `{command}`\n\n"
                   f"{settings}\n\n### Sparse annotations (Bokhorst et al. 2018)\n\n{sparse_table}\n\n"
                   f"{figure_link(figures, 'sparse', args.results_md)}"
                   f"### Low-resolution labels (Zhao et al. 2019)\n\nBlocks of {args.block_px} px, gland-fraction "
                   f"bins {args.bins}; joint table from {args.table_images} dense images in `{out / 'lowres/joint_table.csv'}`.\n\n"
                   f"{lowres_table}\n\n{figure_link(figures, 'lowres', args.results_md)}")
        replace_section(Path(args.results_md), HEADING, section, header="# Results\n")


if __name__ == "__main__":
    main()
