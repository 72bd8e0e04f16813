"""The reader pipeline: its ceiling with reader processes, what it costs a real model, and Dask cohorts.

Builds (once, under ``--work``, never committed) the 40,000 x 40,000 px pyramidal TIFF of
``slide_inference.py`` (0.5 um/px, levels 1x to 32x, tiled from a crop of CMU-1-Small-Region with
``read_tiles.write_mosaic_slide``) and a smaller one, hard-linked under ``--cohort`` names for the
cohort. Then, side by side in one run:

1. **Ceiling.** A near-free model (16 x 16 average pooling, a 1 x 1 colour classifier, nearest
   upsampling: ``slide_inference.cheap_model``, with the input, outputs and metadata of an exported
   model) segments the whole big slide at 2 um/px with the real model's tiling (512-px tiles
   overlapping by 128, batches of 4) and one onnxruntime thread, so its tiles/s is what reading,
   decoding, the session call and stitching deliver at most. Reader threads (the default),
   ``--readers 1`` and ``--readers 2`` alternate, ``--rounds`` times, after one warm-up run; the
   ratio of 2 to 1 reader processes is taken within each round. The CPU time of the main process and
   of the reader processes per tile shows where the ceiling is on a given number of cores.
2. **Real model.** An exported WeakSegmenter (ResNet-18 trunk, random weights, as in
   ``slide_inference.py``) segments the same slide end to end (tissue mask, tiles, every output
   file) with reader threads and with ``--readers 2``, alternating with the same onnxruntime session
   running preloaded tiles (model only); each run is compared with the mean of the model-only runs
   on either side of it.
3. **Cohort on Dask.** ``segment_slides`` on the cohort: one process with 2 onnxruntime threads
   against a local cluster of 2 workers with one thread (and one onnxruntime thread) each
   (``ClusterSettings(n_workers=2)``), alternating; throughput is the tiles of every slide over the
   wall time of the whole call, with and without the cluster's start (until its workers are up).

Prints a markdown table, writes the numbers to ``--work``/results.json and replaces the
"## Reader pipeline" section of docs/benchmarks.md (other sections are kept). ``--quick`` runs every
part on small slides, once, to check that the script works: its numbers mean nothing, and it writes
no docs unless ``--write`` is given. Run the full benchmark on an otherwise idle machine.

Usage:
    python benchmarks/reader_pipeline.py [--size 40000] [--cohort-size 20000] [--cohort 6] [--rounds 3]
        [--model-tiles 64] [--work /tmp/weakseg_reader_pipeline] [--write docs/benchmarks.md]
        [--skip ceiling real dask] [--quick]

Parts 1 and 2 need nothing beyond the base install and TensorFlow for the one export; part 3 needs
``weaksegtf[cluster]``; psutil (which dask installs) gives the reader processes' CPU time.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _markdown import replace_section  # noqa: E402
from read_tiles import DEFAULT_SLIDE, write_mosaic_slide  # noqa: E402
from slide_inference import BATCH, INFERENCE_MPP, cheap_model, resnet_model  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
HEADING = "## Reader pipeline"
#: The ``--quick`` sizes: every part runs, in about a minute once the models exist.
QUICK = {"size": 4096, "cohort_size": 2048, "rounds": 1, "model_tiles": 8}
#: (name, ``readers``) of the ceiling runs, in the order they alternate.
CEILING_READERS = (("2 reading threads (default)", None), ("1 reader process", 1), ("2 reader processes", 2))
REAL_READERS = (("2 reading threads (default)", None), ("2 reader processes", 2))
TARGET_CEILING, TARGET_REAL, TARGET_DASK = 1.7, 0.85, 0.95


def mosaic(work: Path, side_px: int) -> Path:
    path = work / f"mosaic_{side_px}.tif"
    if not path.exists():
        seconds = write_mosaic_slide(DEFAULT_SLIDE, path, side_px)
        print(f"wrote {path} ({path.stat().st_size / 1e9:.1f} GB) in {seconds:.0f} s", flush=True)
    return path


def cohort(work: Path, side_px: int, count: int) -> list[Path]:
    """``count`` names for one slide (hard links: distinct inputs, one copy on disk and in the page cache)."""
    source = mosaic(work, side_px)
    folder = work / f"cohort_{side_px}"
    folder.mkdir(exist_ok=True)
    paths = []
    for index in range(count):
        path = folder / f"slide_{index}.tif"
        if not path.exists():
            try:
                os.link(source, path)
            except OSError:
                shutil.copyfile(source, path)
        paths.append(path)
    return paths


@contextlib.contextmanager
def reader_cpu_counted():
    """Yields a list that gets the CPU seconds of every reader process, read just before the readers end."""
    from weaksegtf.inference.reader_processes import ReaderProcesses

    try:
        import psutil
    except ImportError:
        yield None
        return
    seconds: list[float] = []
    close = ReaderProcesses.close

    def counted_close(self) -> None:
        for process in (getattr(self._pool, "_processes", None) or {}).values():
            with contextlib.suppress(psutil.Error):
                times = psutil.Process(process.pid).cpu_times()
                seconds.append(times.user + times.system)
        close(self)

    ReaderProcesses.close = counted_close
    try:
        yield seconds
    finally:
        ReaderProcesses.close = close


def segment_once(model: Path, slide: Path, out: Path, readers: int | None, **settings) -> dict:
    """One whole slide with ``readers``: tiles/s of the pipeline (tiles only) and end to end, CPU, timings."""
    from weaksegtf.inference import SlideSegmenter

    segmenter = SlideSegmenter(model, mpp=INFERENCE_MPP, batch_size=BATCH, readers=readers, progress=False,
                               **settings)
    with reader_cpu_counted() as reader_cpu:
        start, cpu = time.perf_counter(), time.process_time()
        result = segmenter.segment(slide, out, force=True)
        wall, cpu = time.perf_counter() - start, time.process_time() - cpu
    summary = result.summary
    tiles, timings = summary["tiles"]["run"], summary["timings_s"]
    return {"tiles": tiles, "pipeline": tiles / timings["inference"], "end_to_end": tiles / wall,
            "wall_s": wall, "timings_s": timings, "tile_readers": summary["tile_readers"],
            "threads": summary["model"]["threads"], "main_cpu_ms_per_tile": 1e3 * cpu / tiles,
            "reader_cpu_ms_per_tile": None if not reader_cpu else 1e3 * sum(reader_cpu) / tiles}


# ---------------------------------------------------------------------- 1. ceiling
def ceiling(slide: Path, model: Path, work: Path, rounds: int) -> dict:
    out = work / "ceiling"
    segment_once(model, slide, out, 1, threads=1, geojson=False)  # warm-up: page cache, fork server
    runs: dict[str, list[dict]] = {name: [] for name, _ in CEILING_READERS}
    for _ in range(rounds):
        for name, readers in CEILING_READERS:
            runs[name].append(segment_once(model, slide, out, readers, threads=1, geojson=False))
            print(f"ceiling, {name}: {runs[name][-1]['pipeline']:.1f} tiles/s", flush=True)
    one, two = runs["1 reader process"], runs["2 reader processes"]
    return {"runs": runs, "ratio_2_to_1": [b["pipeline"] / a["pipeline"] for a, b in zip(one, two)],
            "tiles": one[0]["tiles"]}


# ---------------------------------------------------------------------- 2. real model
def preloaded_batches(slide_path: Path, count: int, tile_px: int, overlap_px: int) -> np.ndarray:
    """``count`` tiles spread over the slide, read at the inference mpp, as float32 batches of ``BATCH``."""
    from weaksegtf.inference import plan_tiles
    from weaksegtf.inference.slide_tiles import SlideTiles
    from weaksegtf.slides import open_slide

    with open_slide(slide_path) as slide:
        plan = plan_tiles(*slide.size_at_mpp(INFERENCE_MPP), tile_px, overlap_px)
        tiles = SlideTiles(plan, INFERENCE_MPP, INFERENCE_MPP / slide.mpp)
        indices = np.linspace(0, plan.n_tiles - 1, max(BATCH, count // BATCH * BATCH)).astype(int)
        batch = tiles.read_batch(slide, indices.tolist()).astype(np.float32)
    return batch.reshape(-1, BATCH, *batch.shape[1:])


def real_model(slide: Path, model: Path, work: Path, rounds: int, model_tiles: int) -> dict:
    from weaksegtf.inference import SlideSegmenter

    segmenter = SlideSegmenter(model, mpp=INFERENCE_MPP, batch_size=BATCH, progress=False)
    session = segmenter.model  # the session every run below uses: one per process
    batches = preloaded_batches(slide, model_tiles, segmenter.tile_size_px, segmenter.overlap_px)
    session.run(batches[0])  # warm-up

    def model_only() -> float:
        start = time.perf_counter()
        for batch in batches:
            session.run(batch)
        return batches.shape[0] * BATCH / (time.perf_counter() - start)

    out = work / "real"
    segment_once(model, slide, out, 2)  # warm-up
    # Alternate, so that a change in the machine's load shows up as spread, not bias.
    alone, runs = [model_only()], {name: [] for name, _ in REAL_READERS}
    order = []
    for _ in range(rounds):
        for name, readers in REAL_READERS:
            runs[name].append(segment_once(model, slide, out, readers))
            order.append(name)
            alone.append(model_only())
            print(f"real model, {name}: {runs[name][-1]['end_to_end']:.1f} tiles/s end to end, "
                  f"model only {alone[-1]:.1f}", flush=True)
    ratios: dict[str, list[float]] = {name: [] for name, _ in REAL_READERS}
    seen = {name: 0 for name, _ in REAL_READERS}
    for position, name in enumerate(order):
        reference = (alone[position] + alone[position + 1]) / 2
        run = runs[name][seen[name]]
        seen[name] += 1
        ratios[name].append({"end_to_end": run["end_to_end"] / reference, "pipeline": run["pipeline"] / reference})
    return {"runs": runs, "model_only": alone, "ratios": ratios, "model_tiles": int(batches.shape[0] * BATCH),
            "threads": session.threads, "providers": session.providers_in_use, "tiles": runs[order[0]][0]["tiles"]}


# ---------------------------------------------------------------------- 3. Dask
@contextlib.contextmanager
def cluster_start_timed():
    """Yields a list that gets the seconds each local cluster took to start (until its workers are up)."""
    import weaksegtf.inference.cluster_run as cluster_run

    seconds: list[float] = []
    connect = cluster_run.connect

    @contextlib.contextmanager
    def timed(*args, **kwargs):
        start = time.perf_counter()
        with connect(*args, **kwargs) as client:
            seconds.append(time.perf_counter() - start)
            yield client

    cluster_run.connect = timed
    try:
        yield seconds
    finally:
        cluster_run.connect = connect


def dask_cohort(paths: list[Path], model: Path, work: Path, rounds: int) -> dict:
    from weaksegtf.inference import ClusterSettings, SlideSegmenter, load_session, segment_slides

    single = SlideSegmenter(model, batch_size=BATCH, threads=2, progress=False)
    # The client checks the model on one thread; each worker opens it with one onnxruntime thread.
    clustered = SlideSegmenter(load_session(model, providers="cpu", threads=1), batch_size=BATCH, threads=1,
                               progress=False)
    arms = (("one process, 2 onnxruntime threads", single, None),
            ("local Dask cluster, 2 workers x 1 thread", clustered, ClusterSettings(n_workers=2)))
    runs: dict[str, list[dict]] = {name: [] for name, _, _ in arms}
    for _ in range(rounds):
        for index, (name, segmenter, cluster) in enumerate(arms):
            out = work / f"cohort_out_{index}"
            shutil.rmtree(out, ignore_errors=True)
            with cluster_start_timed() as started:
                start = time.perf_counter()
                result = segment_slides(segmenter, paths, out, force=True, cluster=cluster)
                wall = time.perf_counter() - start
            if result.failed:
                raise RuntimeError(f"{name}: slides failed: {[(s.path.name, s.error) for s in result.failed]}")
            tiles = sum(s.summary["tiles"]["run"] for s in result.slides)
            start_s = sum(started)
            runs[name].append({"tiles": tiles, "wall_s": wall, "cluster_start_s": start_s,
                               "tiles_per_s": tiles / wall, "tiles_per_s_after_start": tiles / (wall - start_s)})
            print(f"cohort, {name}: {tiles / wall:.1f} tiles/s", flush=True)
    first, second = (runs[name] for name, _, _ in arms)
    return {"runs": runs, "ratio": [b["tiles_per_s"] / a["tiles_per_s"] for a, b in zip(first, second)],
            "ratio_after_start": [b["tiles_per_s_after_start"] / a["tiles_per_s"] for a, b in zip(first, second)],
            "slides": len(paths)}


# ---------------------------------------------------------------------- report
def _each(values, fmt: str = "{:.1f}") -> str:
    return " / ".join(fmt.format(v) for v in values)


def report(args, results: dict, command: str) -> str:
    import onnxruntime
    import openslide

    load = results.get("load_average", [float("nan")] * 2)
    lines = [HEADING, "", f"Command: `{command}` ({time.strftime('%Y-%m-%d')}, {platform.machine()}, "
             f"{os.cpu_count()} cores, Python {platform.python_version()}, onnxruntime {onnxruntime.__version__}, "
             f"OpenSlide {openslide.__library_version__}).", "",
             f"Synthetic slide: {args.size} x {args.size} px at 0.5 um/px, 6 levels, uncompressed 256-px tiles "
             f"(`read_tiles.write_mosaic_slide`), read at {INFERENCE_MPP} um/px from level 2 with 512-px tiles "
             f"overlapping by 128 px, batches of {BATCH}. `--readers N` starts N processes that each open the slide "
             "and read, decode and prepare whole batches for the one onnxruntime session; without it two threads "
             "of the session's process read the tiles.", ""]
    if "ceiling" in results:
        part = results["ceiling"]
        lines += ["### Ceiling: a near-free model", "",
                  f"`slide_inference.cheap_model` (16 x 16 average pooling, 1 x 1 colour classifier, nearest "
                  f"upsampling), one onnxruntime thread, no GeoJSON; {part['tiles']} tiles per run, "
                  f"{len(part['ratio_2_to_1'])} alternated rounds after a warm-up. Pipeline = tiles / the time "
                  "from the first tile read to the last tile stitched to disk.", "",
                  "| tile readers | pipeline tiles/s, each round | session waited for tiles, s | end to end tiles/s "
                  "| CPU ms per tile: main process | reader processes |",
                  "|---|---:|---:|---:|---:|---:|"]
        for name, _ in CEILING_READERS:
            runs = part["runs"][name]
            readers_cpu = [r["reader_cpu_ms_per_tile"] for r in runs if r["reader_cpu_ms_per_tile"] is not None]
            lines.append(f"| {name} | {_each(r['pipeline'] for r in runs)} | "
                         f"{_each((r['timings_s']['session_wait'] for r in runs), '{:.2f}')} | "
                         f"{_each(r['end_to_end'] for r in runs)} | "
                         f"{np.median([r['main_cpu_ms_per_tile'] for r in runs]):.1f} | "
                         f"{f'{np.median(readers_cpu):.1f}' if readers_cpu else ''} |")
        lines += ["", f"2 reader processes / 1: **{_each(part['ratio_2_to_1'], '{:.2f}')}** "
                  f"(target >= {TARGET_CEILING}). CPU per tile covers the whole call (tissue mask and outputs "
                  "included); with threads the main process's CPU includes reading. When the main process's share "
                  "of a tile is m ms and the readers' r ms, two readers can reach at most "
                  "min(2, cores x r / (r + m)) times one reader's speed."]
    if "real" in results:
        part = results["real"]
        lines += ["", "### Real model: end to end against model only", "",
                  f"An exported WeakSegmenter (ResNet-18 trunk, random weights), {part['threads']} onnxruntime "
                  f"threads, {', '.join(part['providers'])}; {part['tiles']} tiles per run, end to end = the whole "
                  f"`segment()` call (tissue mask, tiles, pyramidal TIFF, overlay, GeoJSON). Model only = the same "
                  f"session on {part['model_tiles']} preloaded tiles, run before and after every pipeline run: "
                  f"{_each(part['model_only'])} tiles/s.", "",
                  "| tile readers | end to end tiles/s | vs model only | pipeline vs model only |",
                  "|---|---:|---:|---:|"]
        for name, _ in REAL_READERS:
            lines.append(f"| {name} | {_each(r['end_to_end'] for r in part['runs'][name])} | "
                         f"**{_each((r['end_to_end'] for r in part['ratios'][name]), '{:.2f}')}** | "
                         f"{_each((r['pipeline'] for r in part['ratios'][name]), '{:.2f}')} |")
        lines += ["", f"Target: end to end >= {TARGET_REAL} x model only."]
    if "dask" in results:
        part = results["dask"]
        lines += ["", "### Cohort: a local Dask cluster against one process", "",
                  f"{part['slides']} slides of {args.cohort_size} x {args.cohort_size} px (hard links to one file), "
                  "the real model, `segment_slides(..., force=True)` into an empty folder each time; tiles/s over "
                  "the whole call, and without the cluster's start (until its workers are up; their opening of the "
                  "model stays in).", "",
                  "| run | tiles/s, each round | without the cluster's start | cluster start, s |",
                  "|---|---:|---:|---:|"]
        for name, runs in part["runs"].items():
            lines.append(f"| {name} | {_each(r['tiles_per_s'] for r in runs)} | "
                         f"{_each(r['tiles_per_s_after_start'] for r in runs)} | "
                         f"{_each(r['cluster_start_s'] for r in runs)} |")
        lines += ["", f"Cluster / one process: **{_each(part['ratio'], '{:.2f}')}** with the cluster's start, "
                  f"{_each(part['ratio_after_start'], '{:.2f}')} without it (target >= {TARGET_DASK})."]
    lines += ["", f"Load average before: {load[0]:.1f}, after: {load[1]:.1f}.", ""]
    return "\n".join(lines)


def verdicts(results: dict) -> list[tuple[str, bool]]:
    found = []
    if "ceiling" in results:
        found.append((f"ceiling, 2 / 1 reader processes >= {TARGET_CEILING}",
                      float(np.median(results["ceiling"]["ratio_2_to_1"])) >= TARGET_CEILING))
    if "real" in results:
        ratios = results["real"]["ratios"]["2 reader processes"]
        found.append((f"real model end to end with 2 reader processes >= {TARGET_REAL} x model only",
                      float(np.median([r["end_to_end"] for r in ratios])) >= TARGET_REAL))
    if "dask" in results:
        found.append((f"2-worker cluster >= {TARGET_DASK} x one process",
                      float(np.median(results["dask"]["ratio"])) >= TARGET_DASK))
    return found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=40000, help="side of the big slide, px (default: %(default)s)")
    parser.add_argument("--cohort-size", type=int, default=20000, help="side of the cohort's slides (default: %(default)s)")
    parser.add_argument("--cohort", type=int, default=6, help="slides in the cohort (default: %(default)s)")
    parser.add_argument("--rounds", type=int, default=3, help="alternated rounds of each part (default: %(default)s)")
    parser.add_argument("--model-tiles", type=int, default=64, help="preloaded tiles of a model-only run (default: %(default)s)")
    parser.add_argument("--work", default="/tmp/weakseg_reader_pipeline", help="scratch folder (default: %(default)s)")
    parser.add_argument("--write", default=None, help="markdown file to update (default: docs/benchmarks.md; "
                        "none with --quick; '' for none)")
    parser.add_argument("--skip", nargs="*", default=[], choices=["ceiling", "real", "dask"])
    parser.add_argument("--quick", action="store_true", help="small slides, one round: check that the script works")
    args = parser.parse_args()
    if args.quick:
        for key, value in QUICK.items():
            setattr(args, key, value)
    write = args.write if args.write is not None else ("" if args.quick else str(ROOT / "docs" / "benchmarks.md"))
    command = "python benchmarks/reader_pipeline.py" + "".join(f" {a}" for a in sys.argv[1:])
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    load_before = os.getloadavg()[0]
    results_path = work / ("results_quick.json" if args.quick else "results.json")
    # Parts skipped on this run keep their numbers from the last run (same work folder).
    results: dict = json.loads(results_path.read_text()) if results_path.exists() else {}
    if "ceiling" not in args.skip:
        results["ceiling"] = ceiling(mosaic(work, args.size), cheap_model(work), work, args.rounds)
    if "real" not in args.skip:
        results["real"] = real_model(mosaic(work, args.size), resnet_model(work), work, args.rounds,
                                     args.model_tiles)
    if "dask" not in args.skip:
        results["dask"] = dask_cohort(cohort(work, args.cohort_size, args.cohort), resnet_model(work), work,
                                      args.rounds)
    results["load_average"] = [load_before, os.getloadavg()[0]]
    results_path.write_text(json.dumps(results, indent=2) + "\n")
    section = report(args, results, command)
    print(section)
    found = verdicts(results)
    for text, ok in found:
        print(f"{text}: {'yes' if ok else 'NO'}")
    if write:
        replace_section(Path(write), HEADING, section)
        print(f"wrote the {HEADING[3:]!r} section of {write}")
    return 0 if args.quick or all(ok for _, ok in found) else 1


if __name__ == "__main__":
    sys.exit(main())
