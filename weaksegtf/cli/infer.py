"""``weakseg-infer``: segment whole slides and images with an exported ONNX model (no TensorFlow)."""

from __future__ import annotations

import argparse
import sys

from weaksegtf.cli.common import add_version_argument, fail

#: Exit code when at least one slide failed (the others were written; see batch_summary.json).
SLIDES_FAILED = 1


class _OneLineParser(argparse.ArgumentParser):
    """argparse with its errors on one line (``error: ...``), like every other refusal, exit code 2."""

    def error(self, message: str):  # noqa: D401 - argparse's hook
        self.exit(2, f"error: {message} (weakseg-infer --help lists the options)\n")


def _number(kind, name: str, low: float, low_inclusive: bool = False, high: float | None = None):
    """An argparse type: a finite number of ``kind`` above ``low`` (and below ``high``), said in words otherwise."""
    import math

    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{name} must be a number, got {text!r}") from None
        ok = math.isfinite(value) and (value >= low if low_inclusive else value > low)
        if high is not None:
            ok = ok and value < high
        if not ok:
            bound = f"{'>=' if low_inclusive else '>'} {low:g}" + (f" and < {high:g}" if high is not None else "")
            raise argparse.ArgumentTypeError(f"{name} must be {bound}, got {text}")
        return value

    return parse


def build_parser() -> argparse.ArgumentParser:
    parser = _OneLineParser(
        prog="weakseg-infer",
        description="Segment whole slides (any OpenSlide format), plain images (PNG, JPEG, TIFF), folders "
        "and globs with a model written by weakseg-export, through ONNX Runtime. Per slide, OUT/<name>/ gets "
        "labels.tif (pyramidal TIFF of class indices with class colours, opens in OpenSlide and QuPath), "
        "overlay.png, annotations.geojson (QuPath), summary.json and, with --probabilities, one uint8 "
        "probability pyramid per class. An interrupted run resumes when run again; complete slides are skipped.",
        epilog="Exit codes: 0 every slide done or already complete; 1 some slides failed (listed, and in "
        "OUT/batch_summary.json and OUT/cohort.csv; the others were written); 2 nothing was run or the run "
        "stopped: bad model or options, no input, --out locked by another run, not writable, full, a symbolic "
        "link in it, or a slide folder holding another model's results (see docs/inference.md).",
    )
    parser.add_argument("model", metavar="MODEL.onnx", help="model written by weakseg-export")
    parser.add_argument("inputs", nargs="+", metavar="INPUT", help="slide or image files, folders, or glob patterns")
    parser.add_argument("--out", required=True, metavar="DIR", help="output folder")
    parser.add_argument("--mpp", type=_number(float, "--mpp", 0), default=None, metavar="X",
                        help="level-0 microns per pixel of the inputs, for files without it (or to override theirs)")
    parser.add_argument("--inference-mpp", type=_number(float, "--inference-mpp", 0), default=None, metavar="X",
                        help="resolution to run the model at (default: the model's training mpp from its metadata)")
    parser.add_argument("--tile-size", type=_number(int, "--tile-size", 0), default=None, metavar="N",
                        help="tile side in pixels, a multiple of 16 (default: 4x the model's training tile, 512 for 128-px training tiles)")
    parser.add_argument("--overlap", type=_number(int, "--overlap", 0, low_inclusive=True), default=None, metavar="N",
                        help="overlap of neighbouring tiles in pixels, a multiple of 16; each tile keeps its centre, "
                        "overlap/2 from its borders (default: the training tile size, or a quarter of --tile-size)")
    parser.add_argument("--batch-size", type=_number(int, "--batch-size", 0), default=8, metavar="N", help="tiles per model call (default: %(default)s)")
    parser.add_argument("--providers", default=None, metavar="LIST",
                        help="onnxruntime execution providers in order, e.g. cuda,cpu (default: CUDA if available, else CPU)")
    parser.add_argument("--threads", type=_number(int, "--threads", 0), default=None, metavar="N",
                        help="onnxruntime threads (default: the usable CPU cores)")
    parser.add_argument("--readers", type=_number(int, "--readers", 1, low_inclusive=True), default=None, metavar="N",
                        help="read, decode and prepare tiles in N processes, each with its own handle on the slide, "
                        "for the one onnxruntime session; for models (a GPU, int8) that outrun reading threads "
                        "(default: 2 threads in this process; the outputs are the same)")
    parser.add_argument("--probabilities", action="store_true", help="also write per-class uint8 probability pyramids")
    parser.add_argument("--no-geojson", dest="geojson", action="store_false", help="do not write annotations.geojson")
    parser.add_argument("--geojson-simplify-um", type=_number(float, "--geojson-simplify-um", 0, True), default=0.0,
                        metavar="UM", help="simplify each GeoJSON polygon within this distance in µm, keeping it "
                        "valid (e.g. 1; default: %(default)s, polygons follow label-pixel edges)")
    parser.add_argument("--no-skip-background", dest="skip_background", action="store_false",
                        help="run the model on tiles without tissue too")
    parser.add_argument("--tissue-threshold", type=_number(float, "--tissue-threshold", 0, True, 1), default=0.1,
                        metavar="X", help="HSV saturation (0 to 1) above which a pixel is tissue (default: %(default)s)")
    parser.add_argument("--roi", default=None, metavar="FILE",
                        help="region to analyse: a mask image (non-zero inside, any resolution, covering the slide) "
                        "or a GeoJSON file (QuPath polygons in level-0 pixels); {stem} or {name} in it become "
                        "each slide's file stem or name, e.g. rois/{stem}.geojson")
    parser.add_argument("--outside-tissue", choices=("predict", "background"), default="predict",
                        help="pixels outside the tissue (and the ROI) in tiles with some tissue: 'predict' keeps "
                        "the model's class, 'background' sets class 0 (default: %(default)s)")
    parser.add_argument("--max-pixels", type=_number(int, "--max-pixels", 0), default=None, metavar="N",
                        help="largest plain image (PNG, JPEG, untiled TIFF) or ROI mask decoded whole; its header "
                        "is checked before decoding (default: 2**28 = 268435456)")
    parser.add_argument("--force", action="store_true",
                        help="recompute slides whose output is already complete (implies --overwrite)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace a slide's results made with another model (never another slide's)")
    parser.add_argument("--wait", type=_number(float, "--wait", 0, low_inclusive=True), default=0.0,
                        metavar="SECONDS", help="wait this long for another run on the same --out to finish "
                        "(default: refuse at once)")
    parser.add_argument("--quiet", action="store_true", help="no progress lines")
    cluster = parser.add_mutually_exclusive_group()
    cluster.add_argument("--workers", type=_number(int, "--workers", 0), default=None, metavar="N",
                         help="segment slides in parallel on a local Dask cluster of N worker processes, one "
                         "slide per worker at a time (needs weaksegtf[cluster]; onnxruntime threads default to "
                         "the cores / N)")
    cluster.add_argument("--scheduler", default=None, metavar="ADDRESS",
                         help="send each slide as one task to the running Dask scheduler at ADDRESS "
                         "(tcp://HOST:8786); its workers need weaksegtf and the same paths to the model, the "
                         "slides and --out (needs weaksegtf[cluster]; see docs/deployment.md)")
    return add_version_argument(parser)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from weaksegtf.errors import WeaksegError
    from weaksegtf.inference import ClusterSettings, SlideSegmenter, find_inputs, load_session, segment_slides
    from weaksegtf.io import is_storage_error, storage_error

    try:
        if not find_inputs(args.inputs):
            return fail(f"no slide or image files in {' '.join(args.inputs)}")
        cluster = None
        model = args.model
        if args.workers is not None or args.scheduler is not None:
            from weaksegtf.inference.cluster_run import require_distributed

            require_distributed()
            cluster = ClusterSettings(scheduler_address=args.scheduler, n_workers=args.workers)
            # This process only checks the model and the options, on one CPU thread; each worker opens
            # the model itself, on --providers (a GPU stays free for the worker that uses it).
            model = load_session(args.model, providers="cpu", threads=1)
        segmenter = SlideSegmenter(
            model, mpp=args.inference_mpp, tile_size_px=args.tile_size, overlap_px=args.overlap,
            batch_size=args.batch_size, providers=args.providers, threads=args.threads, readers=args.readers,
            probabilities=args.probabilities, geojson=args.geojson, skip_background=args.skip_background,
            progress=not args.quiet, tissue_threshold=args.tissue_threshold, roi=args.roi,
            outside_tissue=args.outside_tissue, max_pixels=args.max_pixels, overwrite=args.overwrite,
            lock_wait_s=args.wait, geojson_simplify_um=args.geojson_simplify_um,
        )
        result = segment_slides(segmenter, args.inputs, args.out, slide_mpp=args.mpp, force=args.force,
                                cluster=cluster)
    except WeaksegError as error:
        return fail(str(error))
    except OSError as error:
        if not is_storage_error(error):
            raise
        return fail(str(storage_error(error)))
    if cluster is None:
        print(f"providers: {', '.join(segmenter.model.providers_in_use)}")
    else:
        used = sorted({p for s in result.slides if s.summary for p in s.summary["model"]["providers_in_use"]})
        print(f"providers on the workers: {', '.join(used) or 'none reported (no slide ran)'}")
    for slide in result.slides:
        if slide.status == "failed":
            print(f"FAILED   {slide.path}: {slide.error}")
        else:
            tiles = slide.summary["tiles"]
            print(f"{slide.status:<8} {slide.path} -> {slide.out_dir} ({tiles['run']} tiles run, "
                  f"{tiles['skipped_background']} background)")
    counts = result.as_dict()["counts"]
    print(f"{counts['done']} done, {counts['skipped']} already complete, {counts['failed']} failed; "
          f"summary: {result.summary_path}, cohort: {result.cohort_path}")
    return SLIDES_FAILED if result.failed else 0


if __name__ == "__main__":
    sys.exit(main())
