"""Whole-slide inference with weakseg-infer: efficiency, peak memory, and MONAI as a peer.

Builds (once, under /tmp, never committed) a 40,000 x 40,000 px pyramidal TIFF
at 0.5 um/px, levels 1x to 32x, by tiling a tissue-dense crop of the real
CMU-1-Small-Region slide (``read_tiles.write_mosaic_slide``), and a smaller one
for the memory comparison. Then, in one run:

1. **Efficiency.** An exported WeakSegmenter (ResNet-18 trunk, random weights:
   speed does not depend on them) segments a region of the big slide at 2 um/px
   with the default tiling (512-px tiles overlapping by 128 px, batches of 4):
   reading from the pyramid, prefetching, the onnxruntime session, stitching
   and writing every output. Side by side, the same onnxruntime session runs
   the same number of tiles, preloaded in memory, before and after. The ratio of
   tiles per second is the pipeline's efficiency.
2. **Memory.** ``weakseg-infer``'s library call on two whole slides of
   different area at level-0 resolution (0.5 um/px), each in its own
   subprocess, with a cheap stride-16 model (16 x 16 average pooling, a 1 x 1
   colour classifier, nearest upsampling: the slide pipeline, not the network,
   is what is measured); peak RSS from ``ru_maxrss``.
3. **Peer.** MONAI's ``sliding_window_inference`` driving the same
   onnxruntime session through a predictor wrapper, on the same in-memory
   region, with the same window, overlap and batch size, against
   ``SlideSegmenter`` on that region (an ``ArrayReader``).
4. **Seams.** Tiled against whole-image labels on the real CMU slide for
   several tilings, near tile borders and inside.

Prints tables and replaces the "## Whole-slide inference" section of
docs/benchmarks.md (other sections are kept).

Usage (about 5 minutes on 2 cores once the slides exist; writing them takes 2 more):
    python benchmarks/slide_inference.py [--size 40000] [--region 12288] [--memory-sizes 10000 40000]
        [--peer-region 2048] [--rounds 2] [--work /tmp/weakseg_slide_inference] [--write docs/benchmarks.md]
        [--skip efficiency memory peer seams]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

from _markdown import replace_section

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
from read_tiles import DEFAULT_SLIDE, MPP, write_mosaic_slide  # noqa: E402

from weaksegtf.slides.slide_reader import SlideReader  # noqa: E402

HEADING = "## Whole-slide inference"
INFERENCE_MPP = 2.0
BATCH = 4


class RegionReader(SlideReader):
    """A rectangle of a slide as a slide of its own (every level), so a region can be segmented end to end."""

    def __init__(self, slide: SlideReader, x: int, y: int, width: int, height: int) -> None:
        super().__init__(None, slide.mpp)
        self.slide, self.x, self.y = slide, int(x), int(y)
        self._downsamples = slide.level_downsamples
        self._dimensions = tuple((max(1, round(width / d)), max(1, round(height / d))) for d in self._downsamples)

    @property
    def name(self) -> str:
        return f"{self.slide.name}[{self.x},{self.y}]"

    @property
    def level_dimensions(self) -> tuple[tuple[int, int], ...]:
        return self._dimensions

    @property
    def level_downsamples(self) -> tuple[float, ...]:
        return self._downsamples

    def _read_region(self, location, level, size):
        return self.slide.read_region((location[0] + self.x, location[1] + self.y), level, size)


# ---------------------------------------------------------------------- models
EXPORT = """
import sys, numpy as np, keras
from weaksegtf.export import export_model
from weaksegtf.models import WeakSegmenter
keras.utils.set_random_seed(0)
model = WeakSegmenter(num_classes=3, class_names=["background", "tissue", "other"])
model(np.zeros((1, 32, 32, 3), "float32"))
model.save(sys.argv[1])
export_model(sys.argv[1], sys.argv[2], mpp=2.0, tile_size_px=128, parity_shapes_px=[(32, 32), (48, 64)],
             parity_batch_sizes=(1,))
"""


def resnet_model(work: Path) -> Path:
    """A random-weight WeakSegmenter exported by weakseg-export (in a subprocess: no TensorFlow here)."""
    path = work / "weaksegmenter.onnx"
    if not path.exists():
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
        subprocess.run([sys.executable, "-c", EXPORT, str(work / "weaksegmenter.keras"), str(path)],
                       check=True, env=env, capture_output=True)
    return path


def cheap_model(work: Path) -> Path:
    """16 x 16 average pooling, a 1 x 1 colour classifier, nearest upsampling: stride 16 like the real trunk."""
    from onnx import TensorProto, helper, numpy_helper, save

    from weaksegtf.export.metadata import OnnxMetadata

    path = work / "cheap_stride16.onnx"
    weights = np.array([[0.0, 0.05, 0.0], [-0.03, 0.0, 0.03], [0.03, 0.0, -0.03]], np.float32).reshape(3, 3, 1, 1)
    nodes = [
        helper.make_node("Transpose", ["image"], ["nchw"], perm=[0, 3, 1, 2]),
        helper.make_node("AveragePool", ["nchw"], ["pooled"], kernel_shape=[16, 16], strides=[16, 16]),
        helper.make_node("Conv", ["pooled", "w", "b"], ["low"], kernel_shape=[1, 1]),
        helper.make_node("Resize", ["low", "", "scales"], ["logits"], mode="nearest"),
        helper.make_node("Transpose", ["logits"], ["mask_logits"], perm=[0, 2, 3, 1]),
        helper.make_node("ReduceMean", ["low"], ["label_logits"], axes=[2, 3], keepdims=0),
    ]
    graph = helper.make_graph(
        nodes, "cheap",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["b", "h", "w", 3])],
        [helper.make_tensor_value_info("mask_logits", TensorProto.FLOAT, ["b", "h", "w", 3]),
         helper.make_tensor_value_info("label_logits", TensorProto.FLOAT, ["b", 3])],
        [numpy_helper.from_array(weights, "w"), numpy_helper.from_array(np.array([-9.0, 0, 0], np.float32), "b"),
         numpy_helper.from_array(np.array([1, 1, 16, 16], np.float32), "scales")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    metadata = OnnxMetadata(("background", "nuclei", "stroma"), ((240, 240, 240), (60, 60, 200), (220, 60, 140)),
                            "cheap", "0.1.0", "cheap", mpp=MPP, tile_size_px=128)
    helper.set_model_props(model, metadata.to_props())
    save(model, str(path))
    return path


# ---------------------------------------------------------------------- 1. efficiency
def efficiency(slide_path: Path, model: Path, region_px: int, work: Path, rounds: int = 2) -> dict:
    from weaksegtf.inference import SlideSegmenter, load_session
    from weaksegtf.inference.tile_scheduler import plan_tiles
    from weaksegtf.slides import open_slide

    segmenter = SlideSegmenter(model, mpp=INFERENCE_MPP, batch_size=BATCH, progress=False)
    session = load_session(model)  # the segmenter's own session: one per process
    assert session is segmenter.model
    tile = segmenter.tile_size_px
    with open_slide(slide_path) as slide:
        x = y = (slide.dimensions[0] - region_px) // 2
        region = RegionReader(slide, x, y, region_px, region_px)
        width, height = region.size_at_mpp(INFERENCE_MPP)
        plan = plan_tiles(width, height, tile, segmenter.overlap_px)
        scale = INFERENCE_MPP / slide.mpp
        preloaded = np.stack([
            region.read_at_mpp((round(plan.origin(i)[0] * scale), round(plan.origin(i)[1] * scale)),
                               (tile, tile), INFERENCE_MPP) for i in range(plan.n_tiles)
        ]).astype(np.float32)
        n = len(preloaded)
        pad = (-n) % BATCH
        batches = np.concatenate([preloaded, np.zeros((pad,) + preloaded.shape[1:], np.float32)])
        session.run(batches[:BATCH])  # warm-up

        def model_alone() -> tuple[float, float]:
            start, cpu = time.perf_counter(), time.process_time()
            for b in range(0, len(batches), BATCH):
                session.run(batches[b : b + BATCH])
            return n / (time.perf_counter() - start), (time.process_time() - cpu) / n

        # Alternate, so that a change in the machine's load between measurements shows up as
        # spread instead of bias: model alone, pipeline, model alone, pipeline, ..., model alone.
        alone, runs = [model_alone()], []
        for _ in range(rounds):
            start, cpu = time.perf_counter(), time.process_time()
            result = segmenter.segment(region, work / "efficiency", force=True)
            wall, cpu = time.perf_counter() - start, time.process_time() - cpu
            alone.append(model_alone())
            timings = result.summary["timings_s"]
            runs.append({"pipeline": result.summary["tiles"]["run"] / timings["inference"],
                         "end_to_end": result.summary["tiles"]["run"] / wall,
                         "cpu_s_per_tile": cpu / result.summary["tiles"]["run"], "timings_s": timings})
    summary = result.summary
    ratios = [run["pipeline"] / ((a[0] + b[0]) / 2) for run, a, b in zip(runs, alone, alone[1:])]
    ratios_e2e = [run["end_to_end"] / ((a[0] + b[0]) / 2) for run, a, b in zip(runs, alone, alone[1:])]
    return {
        "region_level0_px": region_px, "output_px": [width, height], "tile_px": tile,
        "overlap_px": segmenter.overlap_px, "tiles_total": plan.n_tiles, "tiles_run": summary["tiles"]["run"],
        "model_alone_tiles_per_s": [a[0] for a in alone], "model_alone_cpu_s_per_tile": [a[1] for a in alone],
        "pipeline_tiles_per_s": [r["pipeline"] for r in runs], "end_to_end_tiles_per_s": [r["end_to_end"] for r in runs],
        "pipeline_cpu_s_per_tile": [r["cpu_s_per_tile"] for r in runs],
        "ratio_pipeline": ratios, "ratio_end_to_end": ratios_e2e,
        "timings_s": [r["timings_s"] for r in runs],
        "threads": session.threads, "providers": session.providers_in_use, "level_read": summary["level_read"],
    }


# ---------------------------------------------------------------------- 2. memory
# Peak RSS is the process's own high-water mark, VmHWM. ru_maxrss is not: Linux carries the parent's
# resident size at fork into the child's ru_maxrss across exec, so a child of a big parent reports
# the parent's size (the first run of this script showed 1358 MB for both slides, the parent's RSS).
MEMORY_RUN = """
import json, resource, sys, time
import weaksegtf.inference.slide_segmenter as module
from weaksegtf.inference import SlideSegmenter

def hwm_mb():
    return next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM:")) / 1024

from weaksegtf.preprocessing import TissueMask
tiles_done = {}
from_slide = TissueMask.from_slide.__func__
def tissue_recorded(cls, *args, **kwargs):  # the high-water mark once the tissue mask is made
    mask = from_slide(cls, *args, **kwargs)
    tiles_done["tissue_rss_mb"] = hwm_mb()
    return mask
TissueMask.from_slide = classmethod(tissue_recorded)
write_outputs = module.write_slide_outputs
def recorded(*args, **kwargs):  # the high-water mark once every tile is on disk, before the output files
    tiles_done["rss_mb"] = hwm_mb()
    return write_outputs(*args, **kwargs)
module.write_slide_outputs = recorded
start = time.perf_counter()
result = SlideSegmenter(sys.argv[1], batch_size=4, progress=False).segment(sys.argv[2], sys.argv[3], force=True)
summary = result.summary
print(json.dumps({"rss_mb": hwm_mb(), "tiles_rss_mb": tiles_done["rss_mb"], "tissue_rss_mb": tiles_done["tissue_rss_mb"],
                  "ru_maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "wall_s": time.perf_counter() - start, "tiles": summary["tiles"],
                  "output_px": summary["output_size_px"], "features": summary["outputs"]["geojson_features"],
                  "timings_s": summary["timings_s"]}))
"""


def memory(slide_path: Path, model: Path, work: Path) -> dict:
    out = subprocess.run([sys.executable, "-c", MEMORY_RUN, str(model), str(slide_path), str(work / f"memory_{slide_path.stem}")],
                         capture_output=True, text=True)
    if out.returncode:
        raise RuntimeError(f"memory run on {slide_path} failed:\n{out.stderr}")
    row = json.loads(out.stdout.strip().splitlines()[-1])
    from weaksegtf.slides import open_slide

    with open_slide(slide_path) as slide:
        row["slide_px"] = list(slide.dimensions)
    return row


# ---------------------------------------------------------------------- 3. peer
def peer(slide_path: Path, model: Path, region_px: int, work: Path, rounds: int = 2) -> dict:
    try:
        import torch
        from monai.inferers import sliding_window_inference
    except ImportError as error:
        return {"error": f"MONAI is not installed ({error}); pip install monai"}
    import monai

    from weaksegtf.inference import SlideSegmenter, load_session
    from weaksegtf.slides import ArrayReader, open_slide

    segmenter = SlideSegmenter(model, mpp=INFERENCE_MPP, batch_size=BATCH, skip_background=False, progress=False)
    session = load_session(model)
    tile, overlap = segmenter.tile_size_px, segmenter.overlap_px
    with open_slide(slide_path) as slide:
        scale = INFERENCE_MPP / slide.mpp
        x = y = int((slide.dimensions[0] - region_px * scale) // 2)
        image = slide.read_at_mpp((x, y), (region_px, region_px), INFERENCE_MPP)

    def predictor(batch: "torch.Tensor") -> "torch.Tensor":
        logits = session.run(np.ascontiguousarray(batch.permute(0, 2, 3, 1).numpy()))
        return torch.from_numpy(logits).permute(0, 3, 1, 2)

    inputs = torch.from_numpy(image.astype(np.float32)).permute(2, 0, 1)[None]
    monai_times, ours_times, ours_inference = [], [], []
    for _ in range(rounds):  # alternated, best of each: the machine is shared
        start = time.perf_counter()
        with torch.no_grad():
            logits = sliding_window_inference(inputs, (tile, tile), BATCH, predictor, overlap=overlap / tile,
                                              mode="constant")
        monai_labels = logits[0].argmax(0).numpy().astype(np.uint8)
        monai_times.append(time.perf_counter() - start)
        start = time.perf_counter()
        result = segmenter.segment(ArrayReader(image, mpp=INFERENCE_MPP), work / "peer")
        ours_times.append(time.perf_counter() - start)
        ours_inference.append(result.summary["timings_s"]["inference"])
    monai_s, ours_s = min(monai_times), min(ours_times)
    import tifffile

    ours = tifffile.imread(work / "peer" / "labels.tif")
    return {
        "region_px": region_px, "tile_px": tile, "overlap_px": overlap, "batch": BATCH,
        "monai_version": monai.__version__, "torch_threads": torch.get_num_threads(),
        "monai_s": monai_s, "ours_total_s": ours_s, "ours_inference_s": min(ours_inference),
        "monai_all_s": monai_times, "ours_total_all_s": ours_times, "ours_inference_all_s": ours_inference,
        "ours_tiles": result.summary["tiles"]["run"],
        "ratio_total": monai_s / ours_s, "ratio_inference": monai_s / min(ours_inference),
        "label_agreement": float((monai_labels == ours).mean()),
    }


# ---------------------------------------------------------------------- 4. seams
def min_context_px(plan) -> int:
    """Smallest distance from a border between kept centres to the edge of a tile keeping it."""
    distances = []
    for origins, cuts in ((plan.xs, plan.x_cuts), (plan.ys, plan.y_cuts)):
        for i in range(1, len(origins)):
            distances += [int(cuts[i] - origins[i]), int(origins[i - 1] + plan.tile_size_px - cuts[i])]
    return min(distances) if distances else plan.tile_size_px
SEAM_TILINGS = ((128, 32), (256, 64), (256, 128), (512, 128))


def seams(model: Path, work: Path) -> list[dict]:
    """Tiled vs whole-image labels on the real CMU slide, near tile borders and inside, per tiling."""
    import cv2
    import tifffile

    from weaksegtf.inference import SlideSegmenter, load_session, plan_tiles, seam_agreement
    from weaksegtf.slides import open_slide

    with open_slide(DEFAULT_SLIDE) as slide:
        mpp = 4 * slide.mpp  # each pixel the mean of a 4 x 4 level-0 block, for tiles and whole image alike
        level0 = slide.read_region((0, 0), 0, slide.dimensions)
    padded = np.full((-(-level0.shape[0] // 4) * 4, -(-level0.shape[1] // 4) * 4, 3), 255, np.uint8)
    padded[: level0.shape[0], : level0.shape[1]] = level0
    image = cv2.resize(padded, (padded.shape[1] // 4, padded.shape[0] // 4), interpolation=cv2.INTER_AREA)
    rows = []
    for tile, overlap in SEAM_TILINGS:
        out = work / f"seams_{tile}_{overlap}"
        result = SlideSegmenter(model, mpp=mpp, tile_size_px=tile, overlap_px=overlap, batch_size=BATCH,
                                skip_background=False, geojson=False, progress=False).segment(DEFAULT_SLIDE, out, force=True)
        width, height = result.summary["output_size_px"]
        plan = plan_tiles(width, height, tile, overlap)
        canvas = np.full((int(plan.ys[-1]) + tile, int(plan.xs[-1]) + tile, 3), 255, np.uint8)
        canvas[:height, :width] = image[:height, :width]
        whole = load_session(model).run(canvas[None].astype(np.float32))[0][:height, :width].argmax(axis=-1)
        report = seam_agreement(tifffile.imread(out / "labels.tif"), whole, plan, band_px=2)
        rows.append({"tile_px": tile, "overlap_px": overlap, "tiles": plan.n_tiles,
                     "min_context_px": min_context_px(plan), **report})
    return rows


# ---------------------------------------------------------------------- report

def report(args, eff: dict, mem: list[dict], peer_row: dict, seam_rows: list[dict], load: tuple,
           seconds: float) -> str:
    import onnxruntime

    lines = [HEADING, "", f"Command: `python benchmarks/slide_inference.py --size {args.size} --region {args.region} "
             f"--memory-sizes {' '.join(map(str, args.memory_sizes))} --peer-region {args.peer_region} --rounds {args.rounds}` "
             f"({time.strftime('%Y-%m-%d')}, {platform.machine()}, {os.cpu_count()} cores, Python "
             f"{platform.python_version()}, onnxruntime {onnxruntime.__version__}).", ""]
    lines += [
        f"Synthetic slide: {args.size} x {args.size} px at {MPP} um/px, 6 levels (1x..32x), uncompressed 256-px "
        "tiles, tiled from a crop of CMU-1-Small-Region.svs (95% tissue). Model: a WeakSegmenter (ResNet-18 trunk, "
        "3 classes, random weights) exported by `weakseg-export` with training mpp 2.0 and 128-px tiles, so "
        f"`SlideSegmenter` uses its defaults: {eff['tile_px']}-px tiles overlapping by {eff['overlap_px']} px, "
        f"batches of {BATCH}, {eff['threads']} onnxruntime threads, {', '.join(eff['providers'])}. The slides are "
        f"written once under `--work` and reused; MONAI is not a dependency of weaksegtf (`pip install monai` "
        f"for the peer comparison).", "",
        "### Efficiency", "",
        (f"The whole slide" if eff['region_level0_px'] >= args.size else
         f"A {eff['region_level0_px']} x {eff['region_level0_px']} px region in the middle of the slide (a subset: the "
         f"whole slide at 2 um/px would be {(args.size // 4 // 384 + 1) ** 2} tiles, about "
         f"{(args.size // 4 // 384 + 1) ** 2 / np.median(eff['model_alone_tiles_per_s']):.0f} s here)") + ", read at "
        f"{INFERENCE_MPP} um/px from pyramid level {eff['level_read']}: {eff['output_px'][0]} x {eff['output_px'][1]} "
        f"px, {eff['tiles_total']} tiles, {eff['tiles_run']} with tissue.", "",
        "Measured alternately: model alone, pipeline, model alone, pipeline, model alone; each pipeline run is "
        "compared with the mean of the model-alone runs on either side of it.", "",
        "| measurement | tiles/s, each run | CPU s per tile | vs model alone |", "|---|---:|---:|---:|",
        f"| model alone, {eff['tiles_run']} preloaded tiles | "
        f"{' / '.join(f'{v:.2f}' for v in eff['model_alone_tiles_per_s'])} | "
        f"{np.median(eff['model_alone_cpu_s_per_tile']):.3f} | 1.00 |",
        f"| pipeline: read + prefetch + session + stitch to disk | "
        f"{' / '.join(f'{v:.2f}' for v in eff['pipeline_tiles_per_s'])} | "
        f"{np.median(eff['pipeline_cpu_s_per_tile']):.3f} | "
        f"**{' / '.join(f'{v:.2f}' for v in eff['ratio_pipeline'])}** |",
        f"| end to end, also tissue mask and every output file | "
        f"{' / '.join(f'{v:.2f}' for v in eff['end_to_end_tiles_per_s'])} |  | "
        f"{' / '.join(f'{v:.2f}' for v in eff['ratio_end_to_end'])} |", "",
        "Per pipeline run: " + "; ".join(
            f"the session waited {t['session_wait']:.1f} s for tiles in {t['inference']:.1f} s of inference "
            f"(it ran {t['session']:.1f} s), outputs took {t['writing']:.1f} s" for t in eff["timings_s"]) + ".", "",
        "### Peak memory", "",
        "Each slide is segmented whole at level-0 resolution (0.5 um/px) in its own process, with a cheap "
        "stride-16 model (16 x 16 average pooling, 1 x 1 colour classifier, nearest upsampling) so the time goes to "
        "the slide pipeline; default tiling (512 / 128 px), labels, overlay and GeoJSON written. Peak RSS is the "
        "process's `VmHWM` (its `ru_maxrss` includes the parent's size at fork on Linux, so it is not used).", "",
        "| slide | level-0 output | tiles | GeoJSON features | wall s | peak RSS: tissue mask made | tiles done | whole run |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in mem:
        lines.append(f"| {row['slide_px'][0]} x {row['slide_px'][1]} px | {row['output_px'][0] * row['output_px'][1] / 1e6:.0f} Mpx "
                     f"| {row['tiles']['total']} | {row['features']} | {row['wall_s']:.0f} | {row['tissue_rss_mb']:.0f} MB | "
                     f"{row['tiles_rss_mb']:.0f} MB | "
                     f"**{row['rss_mb']:.0f} MB** |")
    if len(mem) == 2:
        area = (mem[1]["output_px"][0] * mem[1]["output_px"][1]) / (mem[0]["output_px"][0] * mem[0]["output_px"][1])
        lines += ["", f"{area:.0f}x the area: {mem[1]['rss_mb'] / mem[0]['rss_mb']:.2f}x the peak RSS. Nothing in the "
                  "tile loop holds the slide or its outputs: results go to disk tile by tile (`os.pwrite`, no memory "
                  "map), and the large buffers are the batches queued between threads, at most 3 + 1 read ahead and "
                  "2 + 1 waiting to be stitched, 12.6 MB each here (4 x 512 x 512 x 3 float32), about 100 MB whatever "
                  "the slide; how full they are at the peak depends on the threads' relative speed, which varies by "
                  "tens of MB between runs on a shared machine. What grows with the slide: the tissue mask "
                  "(`TissueMask.from_slide` at 8 um/px, 1/256 of the level-0 pixels here, with its integral image and "
                  f"the images made on the way; the first RSS column, {mem[1]['tissue_rss_mb'] - mem[0]['tissue_rss_mb']:.0f} MB "
                  "more for the larger slide) and the strips the pyramid writer reads (a few rows of tiles across the "
                  "slide's width). The largest step is the last: the GeoJSON "
                  "polygons are traced on the finest label level no larger than 4096 px (`geojson_max_px`), so it "
                  "follows how fragmented that level is (this colour model's labels are very fragmented), up to a "
                  "fixed cap."]
    lines += ["", "### Peer: MONAI sliding_window_inference", ""]
    if "error" in peer_row:
        lines.append(peer_row["error"])
    else:
        lines += [
            f"The same {peer_row['region_px']} x {peer_row['region_px']} px region at {INFERENCE_MPP} um/px in memory; "
            f"MONAI {peer_row['monai_version']} `sliding_window_inference` with a predictor wrapper calling the same "
            f"onnxruntime session, window {peer_row['tile_px']} px, overlap {peer_row['overlap_px'] / peer_row['tile_px']:.2f}, "
            f"`sw_batch_size={peer_row['batch']}`, `mode=\"constant\"` (mean of overlapping logits), torch threads "
            f"{peer_row['torch_threads']}; against `SlideSegmenter.segment(ArrayReader(region))` without tissue "
            f"skipping, so both run {peer_row['ours_tiles']} windows. Two alternated runs each, best shown "
            f"(MONAI {' / '.join(f'{v:.1f}' for v in peer_row['monai_all_s'])} s, weaksegtf inference "
            f"{' / '.join(f'{v:.1f}' for v in peer_row['ours_inference_all_s'])} s).", "",
            "| | wall s | MONAI / weaksegtf |", "|---|---:|---:|",
            f"| MONAI (logits in memory + argmax) | {peer_row['monai_s']:.1f} | 1.00 |",
            f"| weaksegtf inference (read, prefetch, session, stitch to disk) | {peer_row['ours_inference_s']:.1f} | "
            f"**{peer_row['ratio_inference']:.2f}** |",
            f"| weaksegtf end to end (also tissue mask, pyramidal TIFF, overlay, GeoJSON) | {peer_row['ours_total_s']:.1f} | "
            f"{peer_row['ratio_total']:.2f} |", "",
            f"Label agreement between the two: {peer_row['label_agreement']:.2%} (MONAI averages overlapping logits, "
            "weaksegtf keeps each tile's centre).",
        ]
    lines += [
        "", "### Seams", "",
        "Tiled labels against one whole-image forward pass on the real CMU slide at 4x its 0.499 um/px (tiles "
        "and whole image see identical pixels), same model; the seam band is the pixels within 2 px of a border "
        "between two tiles' kept centres; least context is the smallest distance from such a border to the edge "
        "of a tile (the last tile of each axis sits flush with the slide's edge, so it can overlap more).", "",
        "| tile px | overlap px | least context px | tiles | agreement | seam band | interior |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in seam_rows:
        lines.append(f"| {row['tile_px']} | {row['overlap_px']} | {row['min_context_px']} | {row['tiles']} | "
                     f"{row['agreement']:.2%} | {row['seam_agreement']:.2%} | {row['interior_agreement']:.2%} |")
    lines += ["", "A ResNet-18 trunk sees more than 200 px, so a kept pixel needs tens of pixels of context on every "
              "side before tiles agree with the whole image; the default tiling (4x the training tile, overlapping "
              "by one training tile) keeps at least 64 px for 128-px training tiles."]
    lines += ["", f"Load average before: {load[0]:.1f}, after: {load[1]:.1f} (the machine is shared; other jobs ran "
              "during the measurement, so absolute speeds are lower than on an idle machine; the ratios compare "
              "runs made side by side).", ""]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=40000, help="side of the big slide, px (default: %(default)s)")
    parser.add_argument("--rounds", type=int, default=2, help="pipeline runs between model-alone runs (default: %(default)s)")
    parser.add_argument("--region", type=int, default=12288, help="level-0 side of the efficiency region (default: %(default)s)")
    parser.add_argument("--memory-sizes", type=int, nargs=2, default=[10000, 40000],
                        help="sides of the two slides segmented whole at level 0 (default: %(default)s)")
    parser.add_argument("--peer-region", type=int, default=2048, help="side of the MONAI region at 2 um/px (default: %(default)s)")
    parser.add_argument("--work", default="/tmp/weakseg_slide_inference", help="scratch folder (default: %(default)s)")
    parser.add_argument("--write", default=str(ROOT / "docs" / "benchmarks.md"), help="markdown file to update")
    parser.add_argument("--skip", nargs="*", default=[], choices=["efficiency", "memory", "peer", "seams"])
    args = parser.parse_args()
    start = time.perf_counter()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    load_before = os.getloadavg()[0]
    slides = {}
    for side in sorted({args.size, *args.memory_sizes}):
        path = work / f"mosaic_{side}.tif"
        if not path.exists():
            seconds = write_mosaic_slide(DEFAULT_SLIDE, path, side)
            print(f"wrote {path} ({path.stat().st_size / 1e9:.1f} GB) in {seconds:.0f} s", flush=True)
        slides[side] = path
    results_path = work / "results.json"
    # Parts skipped on this run keep their numbers from the last run (same work folder).
    results: dict = json.loads(results_path.read_text()) if results_path.exists() else {}
    if "efficiency" not in args.skip:
        results["efficiency"] = efficiency(slides[args.size], resnet_model(work), args.region, work, args.rounds)
        print(json.dumps(results["efficiency"], indent=1), flush=True)
    if "memory" not in args.skip:
        model = cheap_model(work)
        results["memory"] = [memory(slides[side], model, work) for side in args.memory_sizes]
        print(json.dumps(results["memory"], indent=1), flush=True)
    if "peer" not in args.skip:
        results["peer"] = peer(slides[args.size], resnet_model(work), args.peer_region, work, args.rounds)
        print(json.dumps(results["peer"], indent=1), flush=True)
    if "seams" not in args.skip:
        results["seams"] = seams(resnet_model(work), work)
        print(json.dumps(results["seams"], indent=1), flush=True)
    load_after = os.getloadavg()[0]
    results["load_average"] = [load_before, load_after] if len(args.skip) == 0 else results.get(
        "load_average", [load_before, load_after])
    results_path.write_text(json.dumps(results, indent=2) + "\n")
    if {"efficiency", "memory", "peer", "seams"} <= set(results):
        section = report(args, results["efficiency"], results["memory"], results["peer"], results["seams"],
                         tuple(results["load_average"]), time.perf_counter() - start)
        print(section)
        replace_section(Path(args.write), HEADING, section)
    print(f"peak RSS of this process: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
