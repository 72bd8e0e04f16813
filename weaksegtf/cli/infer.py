"""``weakseg-infer``: segment whole slides and images with an exported ONNX model (no TensorFlow)."""

from __future__ import annotations

import argparse
import sys

from weaksegtf.cli.common import add_version_argument, fail

#: Exit code when at least one slide failed (the others were written; see batch_summary.json).
SLIDES_FAILED = 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="weakseg-infer",
        description="Segment whole slides (any OpenSlide format), plain images (PNG, JPEG, TIFF), folders "
        "and globs with a model written by weakseg-export, through ONNX Runtime. Per slide, OUT/<name>/ gets "
        "labels.tif (pyramidal TIFF of class indices with class colours, opens in OpenSlide and QuPath), "
        "overlay.png, annotations.geojson (QuPath), summary.json and, with --probabilities, one uint8 "
        "probability pyramid per class. An interrupted run resumes when run again; complete slides are skipped.",
        epilog="Exit codes: 0 every slide done or already complete; 1 some slides failed (listed, and in "
        "OUT/batch_summary.json; the others were written); 2 bad model, options or no input.",
    )
    parser.add_argument("model", metavar="MODEL.onnx", help="model written by weakseg-export")
    parser.add_argument("inputs", nargs="+", metavar="INPUT", help="slide or image files, folders, or glob patterns")
    parser.add_argument("--out", required=True, metavar="DIR", help="output folder")
    parser.add_argument("--mpp", type=float, default=None, metavar="X",
                        help="level-0 microns per pixel of the inputs, for files without it (or to override theirs)")
    parser.add_argument("--inference-mpp", type=float, default=None, metavar="X",
                        help="resolution to run the model at (default: the model's training mpp from its metadata)")
    parser.add_argument("--tile-size", type=int, default=None, metavar="N",
                        help="tile side in pixels, a multiple of 16 (default: 4x the model's training tile, 512 for 128-px training tiles)")
    parser.add_argument("--overlap", type=int, default=None, metavar="N",
                        help="overlap of neighbouring tiles in pixels, a multiple of 16; each tile keeps its centre, "
                        "overlap/2 from its borders (default: the training tile size, or a quarter of --tile-size)")
    parser.add_argument("--batch-size", type=int, default=8, metavar="N", help="tiles per model call (default: %(default)s)")
    parser.add_argument("--providers", default=None, metavar="LIST",
                        help="onnxruntime execution providers in order, e.g. cuda,cpu (default: CUDA if available, else CPU)")
    parser.add_argument("--threads", type=int, default=None, metavar="N",
                        help="onnxruntime threads (default: the usable CPU cores)")
    parser.add_argument("--probabilities", action="store_true", help="also write per-class uint8 probability pyramids")
    parser.add_argument("--no-geojson", dest="geojson", action="store_false", help="do not write annotations.geojson")
    parser.add_argument("--no-skip-background", dest="skip_background", action="store_false",
                        help="run the model on tiles without tissue too")
    parser.add_argument("--force", action="store_true", help="recompute slides whose output is already complete")
    parser.add_argument("--quiet", action="store_true", help="no progress lines")
    return add_version_argument(parser)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from weaksegtf.errors import WeaksegError
    from weaksegtf.inference import SlideSegmenter, segment_slides

    try:
        segmenter = SlideSegmenter(
            args.model, mpp=args.inference_mpp, tile_size_px=args.tile_size, overlap_px=args.overlap,
            batch_size=args.batch_size, providers=args.providers, threads=args.threads,
            probabilities=args.probabilities, geojson=args.geojson, skip_background=args.skip_background,
            progress=not args.quiet,
        )
        if args.mpp is not None and not args.mpp > 0:
            return fail(f"--mpp must be a positive number of microns per pixel, got {args.mpp}")
        from weaksegtf.inference import find_inputs

        if not find_inputs(args.inputs):
            return fail(f"no slide or image files in {' '.join(args.inputs)}")
        result = segment_slides(segmenter, args.inputs, args.out, slide_mpp=args.mpp, force=args.force)
    except WeaksegError as error:
        return fail(str(error))
    print(f"providers: {', '.join(segmenter.model.providers_in_use)}")
    for slide in result.slides:
        if slide.status == "failed":
            print(f"FAILED   {slide.path}: {slide.error}")
        else:
            tiles = slide.summary["tiles"]
            print(f"{slide.status:<8} {slide.path} -> {slide.out_dir} ({tiles['run']} tiles run, "
                  f"{tiles['skipped_background']} background)")
    counts = result.as_dict()["counts"]
    print(f"{counts['done']} done, {counts['skipped']} already complete, {counts['failed']} failed; "
          f"summary: {result.summary_path}")
    return SLIDES_FAILED if result.failed else 0


if __name__ == "__main__":
    sys.exit(main())
