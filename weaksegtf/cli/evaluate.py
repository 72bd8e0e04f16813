"""``weakseg-eval``: score label images (or a model's predictions) against ground-truth masks."""

from __future__ import annotations

import argparse
import sys

from weaksegtf.cli.common import add_version_argument, fail, missing_training_extra, quiet_tensorflow

RANK_METRICS = ("pixel_accuracy", "foreground_accuracy", "f1_macro", "f1_weighted", "mean_iou", "mean_dice", "bach_score")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="weakseg-eval",
        description="Compare predicted label images with ground-truth masks (paired by file name) and write "
        "metrics.json (accuracy, foreground accuracy, precision/recall/F1 per class, F1 macro and "
        "support-weighted 'micro', IoU, Dice, BACH score, boundary IoU/Dice), per_image.csv, "
        "confusion_matrix.png and best_worst.png. Predictions are PNG/TIFF class indices (pyramidal TIFFs "
        "are read at level 0); with --model, the images are predicted first.",
        epilog="Exit codes: 0 scored and written; 2 bad input (files, classes, a non-weaksegtf --model, an "
        "occupied or unwritable --out, or --model without the [train] extra).",
    )
    parser.add_argument("--predictions", help="folder of predicted label images")
    parser.add_argument("--model", help="a saved model.keras: predict --images first (instead of --predictions)")
    parser.add_argument("--masks", required=True, help="folder of ground-truth masks (uint8 class indices)")
    parser.add_argument("--images", help="folder of RGB images (needed with --model; optional, for the overlay grid)")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--classes",
                        help="comma-separated class names, background first, or a class count "
                        "(default with --model: the model's class names)")
    parser.add_argument("--ignore-value", type=int, default=255,
                        help="mask value of pixels without annotation (default: %(default)s)")
    parser.add_argument("--boundary-px", type=float, default=3.0,
                        help="band around true class boundaries for boundary IoU/Dice, in pixels; "
                        "negative to skip (default: %(default)s)")
    parser.add_argument("--grid", type=int, default=4, help="worst and best images in the overlay grid, each "
                        "(default: %(default)s)")
    parser.add_argument("--rank-by", default="f1_macro", choices=RANK_METRICS,
                        help="per-image metric ordering worst to best (default: %(default)s)")
    parser.add_argument("--suffix", default="",
                        help="suffix to drop from prediction names before matching, e.g. _pred (default: none)")
    parser.add_argument("--overwrite", action="store_true",
                        help="accept a non-empty --out, replacing what weaksegtf wrote there (nothing else)")
    return add_version_argument(parser)


def parse_classes(text: str | None) -> list[str] | None:
    if text is None:
        return None
    text = text.strip()
    if text.isdigit():
        return [f"class_{c}" for c in range(int(text))]
    return [name.strip() for name in text.split(",") if name.strip()]


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if (args.predictions is None) == (args.model is None):
        return fail("give either --predictions DIR or --model model.keras (with --images DIR)")
    if args.model is not None and args.images is None:
        return fail("--model needs --images DIR, the images to predict")
    class_names = parse_classes(args.classes)
    if args.model is None and not class_names:
        return fail("--classes is required with --predictions (names like background,benign,malignant or a count)")
    boundary = None if args.boundary_px < 0 else args.boundary_px
    quiet_tensorflow()
    missing = missing_training_extra() if args.model is not None else None
    if missing:
        return fail(missing)
    from weaksegtf.errors import WeaksegError
    from weaksegtf.evaluation import evaluate_model, evaluate_predictions

    try:
        if args.model is not None:
            result = evaluate_model(
                args.model, args.images, args.masks, args.out, class_names=class_names,
                ignore_value=args.ignore_value, boundary_distance_px=boundary, n_grid=args.grid, rank_by=args.rank_by,
                overwrite=args.overwrite,
            )
        else:
            result = evaluate_predictions(
                args.predictions, args.masks, args.out, class_names=class_names, images_dir=args.images,
                ignore_value=args.ignore_value, boundary_distance_px=boundary, n_grid=args.grid,
                rank_by=args.rank_by, prediction_suffix=args.suffix, overwrite=args.overwrite,
            )
    except WeaksegError as error:
        return fail(str(error))
    _print_summary(result)
    return 0


def _print_summary(result) -> None:
    m = result.metrics

    def show(value):
        return "n/a" if value is None else f"{value:.3f}"

    print(f"{m['n_images']} images, {m['n_pixels']:,} annotated pixels")
    print(f"pixel accuracy {show(m['pixel_accuracy'])}, foreground accuracy {show(m['foreground_accuracy'])}, "
          f"BACH score {show(m['bach_score'])}")
    print(f"F1 macro {show(m['f1_macro'])}, F1 weighted (paper's micro) {show(m['f1_weighted'])}, "
          f"mean IoU {show(m['mean_iou'])}, mean Dice {show(m['mean_dice'])}")
    if "boundary" in m:
        b = m["boundary"]
        print(f"boundary ({b['distance_px']:g} px): mean IoU {show(b['mean_iou'])}, mean Dice {show(b['mean_dice'])}")
    if m.get("masks_without_prediction"):
        print(f"note: {len(m['masks_without_prediction'])} masks have no prediction and were not scored")
    print(f"metrics:   {result.metrics_path}")
    print(f"per image: {result.per_image_path}")
    print(f"confusion: {result.confusion_plot_path}")
    if result.grid_path:
        print(f"overlays:  {result.grid_path}")


if __name__ == "__main__":
    sys.exit(main())
