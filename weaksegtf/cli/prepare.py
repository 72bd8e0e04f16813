"""``weakseg-prepare``: slides plus annotations to a mask set, a label set and a manifest.

A thin layer over :func:`weaksegtf.preprocessing.prepare_patches`; every
option is one of its arguments. Heavy imports happen inside :func:`main`, so
``--help`` is instant.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from weaksegtf.cli.common import add_version_argument, fail


def parse_mapping(text: str, value_type: type = int) -> dict:
    """``'Tumor=1,Stroma=2'`` (or a JSON file of that mapping) to a dict."""
    path = Path(text)
    if text.endswith(".json") and path.is_file():
        return {k: value_type(v) for k, v in json.loads(path.read_text(encoding="utf-8")).items()}
    mapping = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        key, sep, value = item.rpartition("=")
        if not sep or not key:
            raise argparse.ArgumentTypeError(f"expected NAME=INDEX pairs separated by commas, got {item!r}")
        mapping[key.strip()] = int(value)
    return mapping


def _class_map(text: str) -> dict[str, int]:
    return parse_mapping(text)


def _remap(text: str) -> dict[int, int]:
    return {int(k): v for k, v in parse_mapping(text).items()}


def _int_list(text: str) -> list[int]:
    return [int(v) for v in text.split(",") if v.strip()]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="weakseg-prepare",
        description=(
            "Cut training patches from whole slides (or plain images) and their annotations. "
            "Writes OUT/masks_set/{images,masks}/*.png (uint8 class indices, 255 = not annotated), "
            "OUT/label_set/images/*.png with OUT/label_set/labels.csv (path,label), "
            "OUT/manifest.csv (slide, location, level, mpp of every patch), "
            "OUT/thumbnails/ and OUT/summary.json (with the patch mpp that weakseg-train puts in the model card)."
        ),
        epilog="Exit codes: 0 written; 2 bad input (slide, annotation, option) or an occupied or unwritable "
        "--out (nothing read or written).",
    )
    parser.add_argument("slides", nargs="+", type=Path, help="slides or images (.svs, .ndpi, .tif, .png, ...)")
    parser.add_argument(
        "--masks", nargs="+", type=Path, required=True,
        help="one annotation per slide, in order: a label image the size of any slide level, "
        "or a QuPath .geojson export",
    )
    parser.add_argument("--out", type=Path, required=True, help="output folder")
    parser.add_argument("--mpp", type=float, help="level-0 microns per pixel, overriding the slide files")
    parser.add_argument("--patch-mpp", type=float, default=8.0,
                        help="microns per pixel of the patches (default: %(default)s, i.e. 1.25x)")
    parser.add_argument("--patch-size", type=int, default=128, help="patch side in pixels (default: %(default)s)")
    parser.add_argument("--stride", type=int, help="sliding-window step in pixels (default: the patch size)")
    parser.add_argument("--extraction", choices=["centred", "tiles", "both"], default="both",
                        help="centred patches on labelled regions, tiles with the tile rule, or both "
                        "(default: %(default)s)")
    parser.add_argument("--min-tissue", type=float, default=0.75,
                        help="drop tiles with less tissue than this fraction (default: %(default)s)")
    parser.add_argument("--dominant", type=float, default=0.9,
                        help="tile rule: a class covering this fraction makes a label patch (default: %(default)s)")
    parser.add_argument("--mask-classes", type=int, default=2,
                        help="tile rule: tiles with exactly this many classes make mask patches (default: %(default)s)")
    parser.add_argument("--centred-classes", type=_int_list,
                        help="comma-separated classes whose regions get centred patches (default: all but background)")
    parser.add_argument("--background-class", type=int, default=0,
                        help="class that is not a region of interest (default: %(default)s)")
    parser.add_argument("--class-map", type=_class_map,
                        help="GeoJSON class names to indices, 'Tumor=1,Stroma=2' or a .json file")
    parser.add_argument("--outside", type=int, default=255,
                        help="GeoJSON value where no polygon lies (default: %(default)s = not annotated)")
    parser.add_argument("--mask-remap", type=_remap,
                        help="change label-image values, e.g. '255=1' for a 0/255 binary mask")
    parser.add_argument("--tissue-mpp", type=float, default=8.0,
                        help="resolution of the tissue mask in microns per pixel (default: %(default)s)")
    parser.add_argument("--saturation", type=float, default=0.1,
                        help="tissue threshold, fraction of the maximum HSV saturation (default: %(default)s)")
    parser.add_argument("--stain-reference", type=Path,
                        help="Macenko-normalise patches to this image (or saved normaliser .json)")
    parser.add_argument("--seed", type=int, default=0, help="K-means seed (default: %(default)s)")
    parser.add_argument("--overwrite", action="store_true",
                        help="accept a non-empty --out, replacing what weaksegtf wrote there (nothing else)")
    parser.add_argument("--quiet", action="store_true", help="no progress lines")
    return add_version_argument(parser)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    import warnings

    from weaksegtf.errors import WeaksegError
    from weaksegtf.preprocessing.prepare import PreparationWarning, prepare_patches

    warnings.simplefilter("ignore", PreparationWarning)  # printed below from the summary

    try:
        summary = prepare_patches(
            args.slides,
            args.masks,
            args.out,
            mpp=args.mpp,
            patch_mpp=args.patch_mpp,
            patch_size_px=args.patch_size,
            stride_px=args.stride,
            extraction=args.extraction,
            min_tissue_fraction=args.min_tissue,
            dominant_fraction=args.dominant,
            mask_classes=args.mask_classes,
            centred_classes=args.centred_classes,
            background_class=args.background_class,
            class_map=args.class_map,
            outside_value=args.outside,
            mask_remap=args.mask_remap,
            tissue_mpp=args.tissue_mpp,
            saturation_threshold=args.saturation,
            stain_reference=args.stain_reference,
            seed=args.seed,
            overwrite=args.overwrite,
            progress=not args.quiet,
        )
    except WeaksegError as error:
        return fail(str(error))
    names = {index: name for name, index in (args.class_map or {}).items()}
    print(summary.table(names))
    print(
        f"wrote {summary.mask_patches} mask patches and {summary.label_patches} label patches "
        f"to {args.out} (manifest.csv, thumbnails/, summary.json)"
    )
    for warning in summary.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
