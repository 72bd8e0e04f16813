"""``weakseg-demo``: train S+C on a built-in synthetic set (or GlaS) and write the results."""

from __future__ import annotations

import argparse
import sys

from weaksegtf.cli.common import EXPORT_MODULES, add_version_argument, fail, missing_training_extra, quiet_tensorflow


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="weakseg-demo",
        description="Train a weakly supervised segmenter end to end on a built-in synthetic H&E set "
        "(no download) or on GlaS, then write model.keras, metrics.json, history.csv and predictions.png.",
    )
    parser.add_argument("--out", default="weakseg-demo", help="output folder (default: %(default)s)")
    parser.add_argument("--glas", default=None, help="GlaS training folder (Grade.csv, images/, masks/)")
    parser.add_argument("--mode", default="S+C", choices=["S", "S+C", "S+C*", "C"], help="data mode (default: %(default)s)")
    parser.add_argument("--epochs", type=int, default=None, help="epochs (default: 12 synthetic, 15 GlaS)")
    parser.add_argument("--masked", type=float, default=None,
                        help="masked training images: a count (>= 1) or a fraction (default: 20%% synthetic, 7 GlaS)")
    parser.add_argument("--n-images", type=int, default=160, help="synthetic training images (default: %(default)s)")
    parser.add_argument("--lr", type=float, default=1e-3,
                        help="Adam learning rate (default: %(default)s; the paper's 1e-4 needs ~100 epochs)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: %(default)s)")
    parser.add_argument("--no-export", dest="export_onnx", action="store_false",
                        help="skip the final model.onnx export and its parity check against Keras")
    parser.add_argument("--no-slide", dest="segment_slide", action="store_false",
                        help="skip segmenting a synthetic pyramidal slide with model.onnx at the end")
    parser.add_argument("--overwrite", action="store_true",
                        help="accept a non-empty --out, replacing what weaksegtf wrote there (nothing else)")
    return add_version_argument(parser)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    quiet_tensorflow()
    missing = missing_training_extra(EXPORT_MODULES if args.export_onnx else ("tensorflow", "keras"))
    if missing:
        return fail(missing)
    from weaksegtf.demo import run_demo
    from weaksegtf.errors import WeaksegError

    masked = None if args.masked is None else (int(args.masked) if args.masked >= 1 else args.masked)
    try:
        result = run_demo(args.out, glas=args.glas, mode=args.mode, epochs=args.epochs,
                          n_images=args.n_images, masked=masked,
                          learning_rate=args.lr, seed=args.seed, export_onnx=args.export_onnx,
                          segment_slide=args.segment_slide, overwrite=args.overwrite)
    except WeaksegError as error:
        return fail(str(error))
    _print_summary(result)
    return 0


def _print_summary(result) -> None:
    validation = result.metrics.get("validation", {})
    print(f"\nmodel:       {result.model_path}")
    print(f"history:     {result.history_path}")
    print(f"metrics:     {result.metrics_path}")
    if result.overlay_path:
        print(f"predictions: {result.overlay_path}")
    onnx = result.metrics.get("onnx")
    if onnx:
        print(f"onnx:        {onnx['path']} (max |logit - Keras| {onnx['max_abs_logit_diff']:.1e}, "
              f"argmax agreement {onnx['argmax_agreement']:.2%})")
    slide = result.metrics.get("slide")
    if slide:
        print(f"slide:       {slide['slide']} -> {slide['outputs']}/ (labels.tif, probabilities_*.tif, overlay.png, "
              f"annotations.geojson, summary.json; {slide['tiles']['run']} tiles run, "
              f"{slide['tiles']['skipped_background']} background, {slide['seconds']:.1f} s)")
    if validation:
        dice = ", ".join(f"{k} {v:.3f}" if v is not None else f"{k} n/a" for k, v in validation["dice"].items())
        print(f"validation:  pixel accuracy {validation['pixel_accuracy']:.3f}, "
              f"mean IoU {validation['mean_iou']:.3f}; Dice {dice}")


if __name__ == "__main__":
    sys.exit(main())
