"""Milliseconds per 128 px tile: Keras ``model(x)``, onnxruntime fp32 and onnxruntime int8, side by side.

The model is exported with ``weaksegtf.export.export_model`` (fp32 and static
int8 QDQ). int8 is calibrated on GlaS tiles from the training patients and
its argmax agreement with fp32 is measured on tiles from the held-out
validation patients (the patient-wise split ``plan_glas_split(seed=0)``).
Images are halved first, as in training (about 1.24 um/px). All three
runtimes use 2 threads. They time the same batches in alternating rounds, so
machine noise hits all of them alike, and the table reports medians.

    python benchmarks/onnx_vs_keras.py --model runs/glas_masks_vs_labels/S_seed0/model.keras

Without ``--model``, the script uses that file if ``benchmarks/glas_masks_vs_labels.py``
has written it. Otherwise it first trains a short GlaS model (3 epochs).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

from _markdown import replace_section

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_MODEL = ROOT / "runs/glas_masks_vs_labels/S_seed0/model.keras"
TILE_PX = 128


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None, help=f"trained .keras model (default: {DEFAULT_MODEL.relative_to(ROOT)})")
    parser.add_argument("--glas", default=str(ROOT.parent / "shared/data/glas-train"))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch", type=int, default=8, help="tiles per timed call")
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--repeats", type=int, default=3, help="timed calls per runtime per round")
    parser.add_argument("--eval-tiles", type=int, default=128, help="held-out tiles for int8 agreement")
    parser.add_argument("--write", default=str(ROOT / "docs/benchmarks.md"), help="markdown file to update ('' to skip)")
    args = parser.parse_args()

    import tensorflow as tf

    # Before any TensorFlow op runs: afterwards the thread pools are fixed.
    tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    import keras
    import numpy as np
    import onnxruntime as ort

    from weaksegtf.data import plan_glas_split, read_rgb, resize_image, write_png
    from weaksegtf.export import export_model
    from weaksegtf.export.sample_tiles import TileSource
    from weaksegtf.inference.session import load_session

    with tempfile.TemporaryDirectory(prefix="onnx-vs-keras-") as scratch:
        scratch = Path(scratch)
        model_path = _model_path(args, scratch)

        plan = plan_glas_split(args.glas, masked=7, seed=0)
        folders = {"calibration": plan.train_mask_names + plan.train_label_names, "heldout": plan.val_names}
        for folder, names in folders.items():
            (scratch / folder).mkdir()
            for name in names:
                image = read_rgb(Path(args.glas) / "images" / f"{name}.png")
                write_png(scratch / folder / f"{name}.png", resize_image(image, 0.5))

        report = export_model(
            model_path, scratch / "model.onnx", int8=True, calibration_dir=scratch / "calibration",
            samples_dir=scratch / "heldout", tile_size_px=TILE_PX, min_int8_agreement=0.0,
        )
        print(report.format(), "\n")

        # The sessions weakseg-infer uses (sequential, no spinning threads), on the CPU.
        fp32, int8 = (load_session(path, providers="cpu", threads=args.threads).session
                      for path in (report.onnx_path, report.int8_path))
        gflop = _conv_gflop(report.onnx_path, TILE_PX)
        import weaksegtf.models  # noqa: F401  (registers the classes)

        model = keras.saving.load_model(model_path, compile=False)

        heldout = TileSource(scratch / "heldout", seed=1).batch(args.eval_tiles, TILE_PX, TILE_PX)
        a, b = ([s.run(["mask_logits"], {"image": heldout[i:i + 16]})[0] for i in range(0, len(heldout), 16)]
                for s in (fp32, int8))
        fp32_classes, int8_classes = np.concatenate(a).argmax(-1), np.concatenate(b).argmax(-1)
        agreement = float(np.mean(fp32_classes == int8_classes))

        x = TileSource(scratch / "heldout", seed=2).batch(args.batch, TILE_PX, TILE_PX)
        runners = {
            "Keras `model(x)`": lambda: model(x, training=False),
            "onnxruntime fp32": lambda: fp32.run(["mask_logits", "label_logits"], {"image": x}),
            "onnxruntime int8": lambda: int8.run(["mask_logits", "label_logits"], {"image": x}),
        }
        for run in runners.values():  # warm-up: tracing, allocation, kernel selection
            run(), run()
        times: dict[str, list[float]] = {name: [] for name in runners}
        cpu_times: dict[str, list[float]] = {name: [] for name in runners}
        load_before = os.getloadavg()[0]
        n_tiles = args.repeats * args.batch
        for r in range(args.rounds):
            for name, run in runners.items():
                start, cpu_start = time.perf_counter(), time.process_time()
                for _ in range(args.repeats):
                    run()
                times[name].append(1000 * (time.perf_counter() - start) / n_tiles)
                cpu_times[name].append(1000 * (time.process_time() - cpu_start) / n_tiles)
            print(f"round {r + 1}: " + ", ".join(f"{n} {t[-1]:.2f}" for n, t in times.items()) + " ms/tile")
        load_after = os.getloadavg()[0]

    # Other jobs share the CPU. The median wall time is what a user sees on a
    # busy machine; the best round is closest to what the hardware can do.
    # CPU time (all threads) barely depends on the load, so its ratio is the
    # steadiest measure of the work each runtime does.
    medians = {name: statistics.median(t) for name, t in times.items()}
    bests = {name: min(t) for name, t in times.items()}
    cpu = {name: statistics.median(t) for name, t in cpu_times.items()}
    fp32_median, fp32_best, fp32_cpu = medians["onnxruntime fp32"], bests["onnxruntime fp32"], cpu["onnxruntime fp32"]
    rows = [
        f"| {name} | {medians[name]:.2f} | {bests[name]:.2f} | {max(t):.2f} | {cpu[name]:.2f} | "
        f"{fp32_median / medians[name]:.2f}x | {fp32_best / bests[name]:.2f}x | {fp32_cpu / cpu[name]:.2f}x |"
        for name, t in times.items()
    ]
    table = ("| runtime | wall ms per 128 px tile, median | best round | worst round | CPU ms per tile (median) | "
             "speed vs fp32 ORT: median wall | best wall | CPU time |\n"
             "|---|---|---|---|---|---|---|---|\n" + "\n".join(rows))
    speedup = fp32_median / medians["onnxruntime int8"]
    speedup_best = fp32_best / bests["onnxruntime int8"]
    speedup_cpu = fp32_cpu / cpu["onnxruntime int8"]
    summary = (
        f"{table}\n\n"
        f"- int8 vs fp32 argmax agreement on {args.eval_tiles} held-out GlaS tiles (validation patients "
        f"{', '.join(map(str, plan.val_patients))}): **{agreement:.2%}**. The export's own check on 10 held-out "
        f"crops gave {report.int8_parity.agreement:.2%}.\n"
        f"- fp32 onnxruntime vs Keras: max |logit difference| {report.parity.max_abs_diff:.1e}, argmax agreement "
        f"{report.parity.agreement:.2%}.\n"
        f"- int8 runs at **{speedup:.2f}x** the speed of fp32 onnxruntime by median wall time, {speedup_best:.2f}x by "
        f"best rounds and {speedup_cpu:.2f}x by CPU time (target: at least 2.5x). {_int8_note()}\n"
        f"- Work: {gflop:.3f} GFLOP of convolutions per {TILE_PX} px tile. The best fp32 round reached "
        f"{gflop / fp32_best * 1000:.0f} GFLOP/s. {_peak_note(gflop / fp32_best * 1000)}\n"
        f"- Setup: batches of {args.batch} tiles; {args.rounds} alternating rounds of {args.repeats} calls; "
        f"{args.threads} threads each. Model: `{_shown(model_path)}`. onnxruntime {ort.__version__}, TensorFlow "
        f"{tf.__version__}, {_cpu()}. The machine "
        f"was shared: load average {load_before:.1f} before timing and {load_after:.1f} after."
    )
    threads_used = cpu["onnxruntime fp32"] / medians["onnxruntime fp32"]
    if threads_used < 0.75 * args.threads:
        summary += (
            f"\n- CPU time per tile was {threads_used:.2f}x the wall time for fp32 onnxruntime. The other jobs "
            f"left each runtime about {threads_used:.1f} of its {args.threads} threads' worth of CPU, so wall times "
            f"here are slower than on an idle machine."
        )
    print("\n" + summary)
    if args.write:
        command = "python benchmarks/onnx_vs_keras.py" + (f" --model {_shown(Path(args.model))}" if args.model else "")
        command += f" --rounds {args.rounds} --repeats {args.repeats}"
        section = f"## ONNX vs Keras\n\nCommand: `{command}`\n\n{summary}\n"
        replace_section(Path(args.write), "## ONNX vs Keras", section)


def _model_path(args, scratch: Path) -> Path:
    if args.model:
        return Path(args.model)
    if DEFAULT_MODEL.is_file():
        return DEFAULT_MODEL
    from weaksegtf.demo import run_demo

    print(f"{DEFAULT_MODEL} not found: training a short GlaS model first (3 epochs)")
    return run_demo(scratch / "train", glas=args.glas, epochs=3, export_onnx=False, verbose=0).model_path


def _conv_gflop(onnx_path: Path, tile_px: int) -> float:
    """Floating-point operations of the convolutions for one tile, from the graph's static shapes."""
    import numpy as np
    import onnx
    from onnx import numpy_helper, shape_inference

    model = onnx.load(str(onnx_path))
    for dim, size in zip(model.graph.input[0].type.tensor_type.shape.dim, (1, tile_px, tile_px, 3)):
        dim.dim_value = size
    model = shape_inference.infer_shapes(model)
    shapes = {v.name: [d.dim_value for d in v.type.tensor_type.shape.dim]
              for v in [*model.graph.value_info, *model.graph.output]}
    weights = {w.name: numpy_helper.to_array(w).shape for w in model.graph.initializer}
    flop = 0
    for node in model.graph.node:
        out = shapes.get(node.output[0])
        if node.op_type == "Conv" and node.input[1] in weights and out and all(out):
            flop += 2 * int(np.prod(out)) * int(np.prod(weights[node.input[1]][1:]))  # 2 per multiply-add
    return flop / 1e9


def _int8_note() -> str:
    from weaksegtf.export.quantize import default_reduce_range, int8_dot_product_extensions

    vnni = int8_dot_product_extensions()
    if vnni:
        return (f"This CPU has {', '.join(vnni)}: int8 dot products run 4 multiply-adds per 32-bit lane, and the "
                f"export chose reduce_range {'on' if default_reduce_range() else 'off (full-range int8 weights)'}.")
    return ("This CPU has no VNNI, so onnxruntime's int8 convolutions use 16-bit intermediate products "
            "(with 7-bit weights, `reduce_range`); expect far less than 2.5x here.")


def _peak_note(gflop_per_s: float) -> str:
    """Achieved fp32 FLOP per cycle and core against the limit: 2 FMA units x float32 lanes (8 AVX2, 16 AVX-512) x 2."""
    from weaksegtf.export.quantize import cpu_flags

    try:
        mhz = max(float(line.split(":")[1]) for line in Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("cpu MHz"))
    except (OSError, ValueError):
        return ""
    lanes = 16 if "avx512f" in cpu_flags() else 8
    limit = 2 * lanes * 2
    per_cycle = gflop_per_s * 1000 / mhz / os.cpu_count()
    verdict = (f"above it, so the cores run faster than the reported clock (boost): fp32 onnxruntime is at the "
               f"machine's float32 limit" if per_cycle >= limit else f"{per_cycle / limit:.0%} of it")
    return (f"That is {per_cycle:.0f} float32 FLOP per cycle and core at the reported {mhz:.0f} MHz, against a "
            f"limit of {limit} (2 FMA units x {lanes} lanes x 2): {verdict}.")


def _cpu() -> str:
    """CPU model, core count and the int8 dot-product extensions int8 speed depends on."""
    try:
        info = Path("/proc/cpuinfo").read_text()
    except OSError:
        return f"{platform.machine()}, {os.cpu_count()} cores"
    name = next((line.split(":", 1)[1].strip() for line in info.splitlines() if line.startswith("model name")), "")
    from weaksegtf.export.quantize import cpu_flags, int8_dot_product_extensions

    flags = cpu_flags()
    vnni = int8_dot_product_extensions()
    isa = ", ".join(f for f in ("avx2", "avx512f") if f in flags) or "no AVX2"
    return f"{name or platform.machine()}, {os.cpu_count()} cores, {isa}, {'VNNI: ' + ', '.join(vnni) if vnni else 'no VNNI'}"


def _shown(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(ROOT))
    except ValueError:
        return str(path)



if __name__ == "__main__":
    main()
