"""GeoJSON validity and tracing time: shapely's verdict on weakseg-infer's polygons, and three ways to trace them.

1. The CMU slide (``$WEAKSEG_DATA/slides/CMU-1-Small-Region.svs``) segmented by
   the colour classifier of ``tests/_onnx_models.py`` (a pixel-wise model: a
   very fragmented label map, the hard case for polygons).
2. A synthetic 40,000 x 40,000 px pyramidal slide of random 64-px cells
   (glass, pink, purple), written tile by tile, segmented the same way.
3. On the CMU label map: the hand-written OpenCV tracer this package used
   before (``git show 5af930f:weaksegtf/inference/mask_polygons.py``, if the
   file is given), the same plus ``shapely.make_valid``, and
   ``rasterio.features.shapes`` (4- and 8-connected).

Run: ``python benchmarks/geojson_validity.py [--skip-40k] [--old-tracer old_mask_polygons.py]``.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))


def shapely_check(folder: Path) -> dict:
    import shapely
    from shapely.geometry import shape

    summary = json.loads((folder / "summary.json").read_text())
    features = json.loads((folder / "annotations.geojson").read_text())["features"]
    geometries = np.array([shape(f["geometry"]) for f in features])
    bounds = shapely.bounds(geometries).reshape(-1, 4)
    width, height = summary["slide_size_px"]
    return {"features": len(features), "invalid": int((~shapely.is_valid(geometries)).sum()),
            "outside_slide": int(((bounds[:, :2] < 0).any(axis=1) | (bounds[:, 2] > width) | (bounds[:, 3] > height)).sum()),
            "geojson_MB": round((folder / "annotations.geojson").stat().st_size / 1e6, 1),
            "writing_s": summary["timings_s"]["writing"], "total_s": summary["timings_s"]["total"],
            "label_level_px": summary["outputs"]["label_levels_px"][summary["outputs"]["geojson_level"]]}


def write_cells_slide(path: Path, side_px: int = 40_000, cell_px: int = 64, mpp: float = 0.5, seed: int = 0) -> None:
    """A tiled pyramid of random coloured cells, generated tile by tile (never whole in memory)."""
    import tifffile

    colours = np.array([(245, 245, 245), (230, 120, 170), (120, 80, 200)], np.uint8)
    cells = np.random.default_rng(seed).integers(0, 3, (side_px // cell_px + 1,) * 2)
    tile = 256
    with tifffile.TiffWriter(path, bigtiff=True) as writer:
        level, size = 0, side_px
        while True:
            step = 2**level

            def tiles(size=size, step=step):
                for y in range(0, size, tile):
                    rows = (np.arange(y, y + tile) * step // cell_px).clip(0, cells.shape[0] - 1)
                    for x in range(0, size, tile):
                        cols = (np.arange(x, x + tile) * step // cell_px).clip(0, cells.shape[1] - 1)
                        yield colours[cells[np.ix_(rows, cols)]]

            per_cm = 1e4 / (mpp * step)
            writer.write(tiles(), shape=(size, size, 3), dtype=np.uint8, tile=(tile, tile), photometric="rgb",
                         compression="zlib", compressionargs={"level": 1}, resolution=(per_cm, per_cm),
                         resolutionunit="CENTIMETER", subfiletype=0 if level == 0 else 1, metadata=None)
            if size <= tile:
                break
            level, size = level + 1, -(-size // 2)


def compare_tracers(labels: np.ndarray, old_tracer: Path | None) -> list[tuple]:
    import rasterio.features
    import shapely
    from shapely.geometry import shape

    rows = []
    methods = {}
    if old_tracer is not None:
        spec = importlib.util.spec_from_file_location("old_mask_polygons", old_tracer)
        old = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(old)
        methods["hand-written OpenCV tracer"] = lambda m: [shapely.Polygon(p[0], p[1:]) for p in old.mask_polygons(m)]

        def repaired(m):
            polygons = np.array(methods["hand-written OpenCV tracer"](m))
            bad = ~shapely.is_valid(polygons)
            fixed = shapely.get_parts(shapely.make_valid(polygons[bad], method="structure"))
            return list(polygons[~bad]) + list(fixed)

        methods["hand-written + shapely.make_valid(structure)"] = repaired
    for connectivity in (4, 8):
        methods[f"rasterio.features.shapes, {connectivity}-connected"] = lambda m, c=connectivity: [
            shape(g) for g, _ in rasterio.features.shapes(m.astype(np.uint8), mask=m, connectivity=c)]
    for name, trace in methods.items():
        tick = time.perf_counter()
        polygons = [p for c in (1, 2) for p in trace(labels == c)]
        seconds = time.perf_counter() - tick
        geometries = np.array(polygons)
        area_error = abs(float(shapely.area(geometries).sum()) - float((labels > 0).sum()))
        rows.append((name, round(seconds, 2), len(polygons), int((~shapely.is_valid(geometries)).sum()), area_error))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--skip-40k", action="store_true")
    parser.add_argument("--old-tracer", type=Path, default=None)
    parser.add_argument("--work", type=Path, default=None)
    args = parser.parse_args()
    from _onnx_models import color_classifier

    from weaksegtf.inference import SlideSegmenter

    data = Path(os.environ.get("WEAKSEG_DATA", REPO.parent / "shared" / "data"))
    work = args.work or Path(tempfile.mkdtemp(prefix="geojson_validity_"))
    results = {}
    for mpp in (0.5, 1.0):
        model = color_classifier(work / f"color_{mpp}.onnx", mpp=mpp, tile_size_px=64)
        out = work / f"cmu_{mpp}"
        SlideSegmenter(model, providers="cpu", progress=False).segment(data / "slides" / "CMU-1-Small-Region.svs", out)
        results[f"CMU-1-Small-Region at {mpp} um/px"] = shapely_check(out)
    import tifffile

    labels = tifffile.imread(work / "cmu_0.5" / "labels.tif")
    tracers = compare_tracers(labels, args.old_tracer)
    if not args.skip_40k:
        slide = work / "cells_40k.tif"
        tick = time.perf_counter()
        write_cells_slide(slide)
        print(f"wrote {slide} ({slide.stat().st_size / 1e6:.0f} MB) in {time.perf_counter() - tick:.0f} s", flush=True)
        model = color_classifier(work / "color_2.onnx", mpp=2.0, tile_size_px=64)
        out = work / "cells_40k"
        SlideSegmenter(model, providers="cpu", progress=False).segment(slide, out)
        results["synthetic 40000 x 40000 px, 64-px cells, at 2 um/px"] = shapely_check(out)
    print("\n| slide | features | invalid (shapely) | outside the slide | GeoJSON MB | label level traced | writing s |")
    print("|---|---|---|---|---|---|---|")
    for name, r in results.items():
        print(f"| {name} | {r['features']} | {r['invalid']} | {r['outside_slide']} | {r['geojson_MB']} | "
              f"{r['label_level_px'][0]} x {r['label_level_px'][1]} | {r['writing_s']} |")
    print(f"\nTracing classes 1 and 2 of the CMU label map at 0.5 um/px ({labels.shape[1]} x {labels.shape[0]} px):\n")
    print("| method | seconds | polygons | invalid (shapely) | area - pixel count |")
    print("|---|---|---|---|---|")
    for row in tracers:
        print("| " + " | ".join(str(v) for v in row) + " |")


if __name__ == "__main__":
    main()
