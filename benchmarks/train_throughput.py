"""Images per second of alternating S+C training against a plain ``model.fit``, side by side.

Both train the same ResNet-18 segmenter on the same 128x128 real GlaS tiles at
batch 20 with augmentation off. The plain baseline is an ordinary Keras
functional model (image -> mask logits) compiled with the same weighted loss
and optimizer, run by Keras' own train_step. S+C runs ``WeakSegmenter``'s
alternating train_step on a zipped {mask, label} stream: each step processes 20
masked and 20 labelled tiles, so it is charged 40 images. Rounds alternate
plain / S+C so machine noise hits both alike; the ratio is of the medians.
Because an S+C step pushes 40 images through the network and a plain step 20,
a plain ``model.fit`` at batch 40 (the same images per update) is timed in the
same rounds too: the S+C / plain-40 ratio isolates the cost of alternation from
the CPU's better efficiency at larger batches.
The input pipeline alone (no model) is timed too, to show it is not the bottleneck.

    python benchmarks/train_throughput.py --rounds 5 --steps 10
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

from _markdown import replace_section

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--glas", default=str(ROOT.parent / "shared/data/glas-train"))
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=20)
    parser.add_argument("--write", default=str(ROOT / "docs/benchmarks.md"), help="markdown file to update ('' to skip)")
    args = parser.parse_args()

    import keras
    import tensorflow as tf

    from weaksegtf.data import label_set_to_arrays, load_glas, mask_set_to_arrays
    from weaksegtf.losses import WeightedCrossEntropy
    from weaksegtf.models import WeakSegmenter
    from weaksegtf.training import make_train_dataset

    split = load_glas(args.glas, masked=1.0, seed=0)
    mask_x, mask_y = mask_set_to_arrays(split.full_train_masks, 128)
    label_x, label_y = label_set_to_arrays(split.full_train_labels, 128)
    bs, steps = args.batch_size, args.steps
    weights = [0.6, 2.0, 1.5]

    keras.utils.set_random_seed(0)
    weak = WeakSegmenter(num_classes=3, class_weights=weights)
    weak.compile(optimizer=keras.optimizers.Adam(1e-4))
    zipped, _ = make_train_dataset(mask_x, mask_y, label_x, label_y, batch_size=bs)

    keras.utils.set_random_seed(0)
    twin = WeakSegmenter(num_classes=3)
    plain = keras.Model(twin.input, twin.output["mask"], name="plain_segmenter")
    plain.compile(optimizer=keras.optimizers.Adam(1e-4), loss=WeightedCrossEntropy(weights))
    plain_ds, _ = make_train_dataset(mask_x, mask_y, None, None, batch_size=bs)
    plain_ds = plain_ds.map(lambda element: element["mask"])
    plain40_ds, _ = make_train_dataset(mask_x, mask_y, None, None, batch_size=2 * bs)
    plain40_ds = plain40_ds.map(lambda element: element["mask"])

    cpu_per_image: dict[str, list[float]] = {"plain": [], "weak": [], "plain40": []}

    def run(model, dataset, name: str | None = None, images: int = 0) -> float:
        start, cpu = time.perf_counter(), time.process_time()
        model.fit(dataset, steps_per_epoch=steps, epochs=1, verbose=0)
        if name is not None:
            cpu_per_image[name].append((time.process_time() - cpu) / images)
        return time.perf_counter() - start

    # Warm-up: tracing and the first optimizer build are not throughput.
    run(plain, plain_ds)
    run(weak, zipped)
    run(plain, plain40_ds)
    plain_rates, weak_rates, plain40_rates = [], [], []
    for r in range(args.rounds):
        plain_rates.append(steps * bs / run(plain, plain_ds, "plain", steps * bs))
        weak_rates.append(steps * 2 * bs / run(weak, zipped, "weak", steps * 2 * bs))
        plain40_rates.append(steps * 2 * bs / run(plain, plain40_ds, "plain40", steps * 2 * bs))
        print(f"round {r + 1}: plain {plain_rates[-1]:.1f} img/s, S+C {weak_rates[-1]:.1f} img/s, "
              f"plain at batch {2 * bs} {plain40_rates[-1]:.1f} img/s")

    iterator = iter(zipped)
    next(iterator)
    start = time.perf_counter()
    n_pipeline = 50
    for _ in range(n_pipeline):
        next(iterator)
    pipeline_rate = n_pipeline * 2 * bs / (time.perf_counter() - start)

    plain_median, weak_median = statistics.median(plain_rates), statistics.median(weak_rates)
    plain40_median = statistics.median(plain40_rates)
    ratio = weak_median / plain_median
    rows = [
        ("plain `model.fit` (masks only)", f"{plain_median:.1f}", f"{min(plain_rates):.1f}-{max(plain_rates):.1f}"),
        ("alternating S+C `train_step`", f"{weak_median:.1f}", f"{min(weak_rates):.1f}-{max(weak_rates):.1f}"),
        (f"plain `model.fit` at batch {2 * bs}", f"{plain40_median:.1f}",
         f"{min(plain40_rates):.1f}-{max(plain40_rates):.1f}"),
        ("input pipeline alone (zipped, no model)", f"{pipeline_rate:.0f}", ""),
    ]
    cpu_ms = {name: 1000 * statistics.median(values) for name, values in cpu_per_image.items()}
    rows = [(*row, f"{cpu_ms[key]:.1f}" if key else "") for row, key in zip(rows, ("plain", "weak", "plain40", None))]
    table = "| what | images/s (median) | range over rounds | CPU ms per image (median) |\n|---|---|---|---|\n" + "\n".join(
        f"| {a} | {b} | {c} | {d} |" for a, b, c, d in rows
    )
    summary = (
        f"{table}\n\nS+C / plain throughput ratio: **{ratio:.2f}** (target >= 0.9). An S+C step carries "
        f"{2 * bs} images (20 masked + 20 labelled), so against plain training at batch {2 * bs} the ratio is "
        f"**{weak_median / plain40_median:.2f}**. Per round (same round, side by side), S+C / plain: "
        f"{', '.join(f'{w / p:.2f}' for w, p in zip(weak_rates, plain_rates))}. By CPU time per image, which "
        f"does not depend on how much of the CPU other jobs or the host leave us, S+C / plain is "
        f"**{cpu_ms['plain'] / cpu_ms['weak']:.2f}** (batch 20) and **{cpu_ms['plain40'] / cpu_ms['weak']:.2f}** "
        f"(batch 40). "
        f"{len(mask_x)} mask tiles and {len(label_x)} label tiles of 128x128 px from GlaS, batch {bs}, "
        f"{args.rounds} alternating rounds of {steps} steps, TensorFlow {tf.__version__}, "
        f"{os.cpu_count()} CPU cores."
    )
    print("\n" + summary)
    if args.write:
        section = (
            "## Training throughput\n\n"
            "Command: `python benchmarks/train_throughput.py "
            f"--rounds {args.rounds} --steps {steps}`\n\n{summary}\n"
        )
        replace_section(Path(args.write), "## Training throughput", section)



if __name__ == "__main__":
    main()
