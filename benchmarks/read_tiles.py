"""Reading tiles at a target mpp from a pyramid, and preparing a large slide.

Builds a 20,000 x 20,000 px pyramidal TIFF (0.5 um/px, levels 1x to 32x) by
tiling a tissue-dense 896 x 1120 px crop of the real CMU-1-Small-Region slide,
under /tmp (never committed), then
measures side by side in one run:

1. reading 128-px tiles at a target mpp with ``SlideReader.read_at_mpp``
   (from the closest pyramid level) against reading the same region at level 0
   and resizing it (``read_region`` + ``cv2.resize``); the ratio must be >= 50x;
2. ``prepare_patches`` on the whole slide at 1.25x equivalent (8 um/px,
   128-px patches, centred and tiled extraction); the target is < 30 s.

Prints a table and replaces the "## Reading tiles" section of
docs/benchmarks.md (other sections are kept).

Usage:
    python benchmarks/read_tiles.py [--size 20000] [--tiles 40] [--work /tmp/weakseg_read_tiles]
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

from _markdown import replace_section

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_SLIDE = ROOT.parent / "shared" / "data" / "slides" / "CMU-1-Small-Region.svs"
MPP = 0.5
TILE_PX = 256
N_LEVELS = 6  # downsamples 1, 2, 4, 8, 16, 32
PERIOD = 32  # the mosaic's unit is a multiple of this, so every level tiles seamlessly
#: (x, y, width, height) of the mosaic's unit in the CMU slide: 95% tissue.
CROP = (896, 1824, 896, 1120)


def write_mosaic_slide(source: Path, path: Path, size_px: int) -> float:
    """Tile ``source`` into a ``size_px`` square pyramidal TIFF; return seconds taken."""
    import tifffile

    from weaksegtf.slides import open_slide

    x, y, width, height = CROP
    with open_slide(source) as slide:
        unit = slide.read_region((x, y), 0, (width, height))
    start = time.perf_counter()
    with tifffile.TiffWriter(path, bigtiff=True) as writer:
        for index in range(N_LEVELS):
            factor = 2**index
            level_unit = unit if index == 0 else cv2.resize(
                unit, (unit.shape[1] // factor, unit.shape[0] // factor), interpolation=cv2.INTER_AREA
            )
            side = -(-size_px // factor)
            period_y, period_x = level_unit.shape[:2]

            def tiles(level_unit=level_unit, side=side, period_y=period_y, period_x=period_x):
                for y in range(0, side, TILE_PX):
                    rows = np.arange(y, y + TILE_PX) % period_y
                    band = level_unit[rows]
                    for x in range(0, side, TILE_PX):
                        yield band[:, np.arange(x, x + TILE_PX) % period_x]

            per_cm = 1e4 / (MPP * factor)
            writer.write(
                tiles(),
                shape=(side, side, 3),
                dtype=np.uint8,
                tile=(TILE_PX, TILE_PX),
                photometric="rgb",
                compression=None,
                resolution=(per_cm, per_cm),
                resolutionunit="CENTIMETER",
                subfiletype=0 if index == 0 else 1,
                metadata=None,
            )
    return time.perf_counter() - start


def write_mosaic_labels(path: Path, size_px: int, seed: int = 0) -> None:
    """A label image at 1/32 of the slide: discs of classes 1 and 2 on class 0."""
    side = -(-size_px // 32)
    labels = np.zeros((side, side), np.uint8)
    rng = np.random.default_rng(seed)
    for _ in range(60):
        centre = (int(rng.integers(side)), int(rng.integers(side)))
        cv2.circle(labels, centre, int(rng.integers(4, 30)), int(rng.integers(1, 3)), -1)
    cv2.imwrite(str(path), labels)


def time_tile_reads(slide_path: Path, target_mpp: float, n_tiles: int, seed: int = 0) -> dict:
    """Seconds per 128-px tile at ``target_mpp``: pyramid level vs level 0 plus resize."""
    from weaksegtf.slides import open_slide

    size = 128
    with open_slide(slide_path) as slide:
        level = slide.best_level_for_mpp(target_mpp)
        side0 = int(round(size * target_mpp / slide.mpp))
        width, height = slide.dimensions
        rng = np.random.default_rng(seed)
        # Corners on the coarsest level's pixel grid, so both methods see exactly
        # the same area and their results can be compared pixel by pixel.
        grid = 2 ** (N_LEVELS - 1)
        locations = [
            (int(rng.integers(0, (width - side0) // grid)) * grid,
             int(rng.integers(0, (height - side0) // grid)) * grid)
            for _ in range(n_tiles)
        ]
        # Different random locations for a warm-up, so neither timing starts cold.
        slide.read_at_mpp((0, 0), (size, size), target_mpp)
        slide.read_region((width - side0, 0), 0, (side0, side0))

        start = time.perf_counter()
        pyramid_tiles = [slide.read_at_mpp(loc, (size, size), target_mpp) for loc in locations]
        pyramid_s = (time.perf_counter() - start) / n_tiles

        start = time.perf_counter()
        level0_tiles = [
            cv2.resize(slide.read_region(loc, 0, (side0, side0)), (size, size), interpolation=cv2.INTER_AREA)
            for loc in locations
        ]
        level0_s = (time.perf_counter() - start) / n_tiles
    difference = float(np.mean([np.abs(a.astype(int) - b).mean() for a, b in zip(pyramid_tiles, level0_tiles)]))
    return {
        "target_mpp": target_mpp,
        "level": level,
        "level0_region_px": side0,
        "pyramid_ms": pyramid_s * 1e3,
        "level0_ms": level0_s * 1e3,
        "ratio": level0_s / pyramid_s,
        "mean_abs_difference": difference,
    }


def time_prepare(slide_path: Path, labels_path: Path, out_dir: Path) -> tuple[float, object]:
    from weaksegtf.preprocessing import prepare_patches

    start = time.perf_counter()
    summary = prepare_patches(
        [slide_path], [labels_path], out_dir, patch_mpp=8.0, patch_size_px=128, overwrite=True
    )
    return time.perf_counter() - start, summary



def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--source", type=Path, default=DEFAULT_SLIDE, help="real slide to tile")
    parser.add_argument("--size", type=int, default=20000, help="side of the synthetic slide in px")
    parser.add_argument("--tiles", type=int, default=40, help="tiles read per method and mpp")
    parser.add_argument("--work", type=Path, default=Path("/tmp/weakseg_read_tiles"), help="scratch folder")
    parser.add_argument("--write", default=str(ROOT / "docs" / "benchmarks.md"),
                        help="markdown file to update ('' to skip)")
    args = parser.parse_args()

    args.work.mkdir(parents=True, exist_ok=True)
    slide_path = args.work / f"mosaic_{args.size}.tif"
    labels_path = args.work / f"mosaic_{args.size}_labels.png"
    if slide_path.exists():
        write_s = float("nan")
    else:
        write_s = write_mosaic_slide(args.source, slide_path, args.size)
    write_mosaic_labels(labels_path, args.size)

    reads = [time_tile_reads(slide_path, mpp, args.tiles) for mpp in (2.0, 4.0, 8.0)]
    prepare_s, summary = time_prepare(slide_path, labels_path, args.work / "prepared")

    import openslide

    machine = f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, OpenSlide {openslide.__library_version__}"
    lines = [
        f"Synthetic slide: {args.size} x {args.size} px at {MPP} um/px, {N_LEVELS} levels "
        f"(1x..{2 ** (N_LEVELS - 1)}x), 256-px uncompressed tiles, tiled from a {CROP[2]} x {CROP[3]} px "
        f"crop of CMU-1-Small-Region.svs"
        + ("" if write_s != write_s else f" (written in {write_s:.1f} s)") + ".",
        "",
        "| target mpp | level read | level-0 region | pyramid ms/tile | level 0 + resize ms/tile | speed-up | mean abs diff |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in reads:
        lines.append(
            f"| {r['target_mpp']:g} | {r['level']} | {r['level0_region_px']} px | {r['pyramid_ms']:.2f} | "
            f"{r['level0_ms']:.1f} | {r['ratio']:.0f}x | {r['mean_abs_difference']:.2f} |"
        )
    lines += [
        "",
        f"`prepare_patches` on the whole slide at 8 um/px (1.25x), 128-px patches, centred + tiled: "
        f"**{prepare_s:.1f} s** (target < 30 s), {summary.mask_patches} mask patches and "
        f"{summary.label_patches} label patches; tissue {summary.slides[0].tissue_fraction:.1%}.",
    ]
    table = "\n".join(lines)
    print(table)
    ok_ratio = reads[-1]["ratio"] >= 50
    ok_prepare = prepare_s < 30
    print(f"\n1.25x read speed-up >= 50x: {'yes' if ok_ratio else 'NO'}; prepare < 30 s: {'yes' if ok_prepare else 'NO'}")

    if args.write:
        command = "python benchmarks/read_tiles.py" + "".join(f" {a}" for a in sys.argv[1:])
        section = (
            "## Reading tiles\n\n"
            f"Command: `{command}` ({time.strftime('%Y-%m-%d')}, {machine}).\n\n"
            "Each row reads the same random 128-px tiles twice in one run: with `read_at_mpp`, which "
            "reads the closest pyramid level that is not coarser than the target, and by reading the "
            "region at level 0 and shrinking it with `cv2.resize(INTER_AREA)`. The mean absolute "
            "difference (0-255) between the two results shows they are the same image.\n\n"
            + table + "\n"
        )
        replace_section(Path(args.write), "## Reading tiles", section)
    return 0 if ok_ratio and ok_prepare else 1


if __name__ == "__main__":
    sys.exit(main())
