"""Training images per second of the Bokhorst U-Net at 384x384 (the paper's patch size).

``WeakSegmenter(architecture="unet")`` (32 filters, five levels) trains on
384x384 crops of real GlaS images at native resolution, batch 4, augmentation
off, through its own ``train_step``. Three streams are timed in alternating
rounds so machine noise hits them alike:

- masks only (``S``), class-weighted cross-entropy;
- masks only, mini-batch balancing (Bokhorst et al. eq. 2) on sparse masks;
- masks + labels (``S+C``), each step 4 masked and 4 labelled crops (charged 8 images).

Tracing, the optimizer build and the first step of every timed ``fit`` call
(which fills a fresh shuffle buffer) are not counted.

    python benchmarks/unet_throughput.py --rounds 2 --steps 2

On 2 shared CPU cores a 384x384 step of batch 4 takes tens of seconds (about
130 GFLOP per image forward), so this takes 15-30 minutes.

Writes a ``## U-Net training throughput`` section into docs/benchmarks.md (other
sections are kept).
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
HEADING = "## U-Net training throughput"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--glas", default=str(ROOT.parent / "shared/data/glas-train"))
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--tile-size", type=int, default=384)
    parser.add_argument("--write", default=str(ROOT / "docs/benchmarks.md"), help="markdown file to update ('' to skip)")
    args = parser.parse_args()

    import keras
    import numpy as np
    import tensorflow as tf

    from weaksegtf.data import load_glas, mask_set_to_arrays
    from weaksegtf.models import WeakSegmenter
    from weaksegtf.training import make_train_dataset

    bs, steps, tile = args.batch_size, args.steps, args.tile_size
    split = load_glas(args.glas, masked=1.0, seed=0, downsample=1)
    images, masks = mask_set_to_arrays(split.full_train_masks, tile)
    labels = np.array([int(m[m != 255].max(initial=0)) for m in masks], np.int32)
    sparse = masks.copy()
    sparse[:, :, tile // 2:] = 255  # half of every crop unannotated

    def build(loss: str):
        keras.utils.set_random_seed(0)
        model = WeakSegmenter(num_classes=3, architecture="unet", segmentation_loss=loss)
        model.compile(optimizer=keras.optimizers.Adam(1e-4))
        return model

    runs = {
        "S, weighted CE": (build("weighted_ce"), make_train_dataset(images, masks, None, None, batch_size=bs)[0], 1),
        "S, mini-batch balanced, sparse masks": (
            build("minibatch_balanced"), make_train_dataset(images, sparse, None, None, batch_size=bs)[0], 1),
        "S+C (4 masked + 4 labelled per step)": (
            build("weighted_ce"), make_train_dataset(images, masks, images, labels, batch_size=bs)[0], 2),
    }

    class BatchClock(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            self.ends.append(time.perf_counter())

    def run(model, dataset, n) -> float:
        """Seconds for ``n`` steps, timed from the end of an extra first step.

        Each ``fit`` call makes a new iterator whose shuffle buffer fills
        during its first step; that is input start-up, not training.
        """
        clock = BatchClock()
        clock.ends = []
        model.fit(dataset, steps_per_epoch=n + 1, epochs=1, verbose=0, callbacks=[clock])
        return clock.ends[-1] - clock.ends[0]

    for model, dataset, _ in runs.values():
        model.fit(dataset, steps_per_epoch=1, epochs=1, verbose=0)  # warm-up: tracing, first step
    load_before = os.getloadavg()[0]
    rates = {name: [] for name in runs}
    for r in range(args.rounds):
        for name, (model, dataset, streams) in runs.items():
            rates[name].append(steps * bs * streams / run(model, dataset, steps))
        print(f"round {r + 1}: " + ", ".join(f"{name} {rates[name][-1]:.2f} img/s" for name in runs))

    params = runs["S, weighted CE"][0].count_params()
    rows = "\n".join(
        f"| {name} | {statistics.median(v):.2f} | {min(v):.2f}-{max(v):.2f} |" for name, v in rates.items()
    )
    summary = (
        f"| stream | images/s (median) | range over rounds |\n|---|---|---|\n{rows}\n\n"
        f"`WeakSegmenter(architecture=\"unet\")`, 32 filters, five levels, {params:,} parameters; "
        f"{len(images)} crops of {tile}x{tile} px from GlaS at native resolution, batch {bs}, "
        f"{args.rounds} alternating rounds of {steps} timed steps after warm-up, "
        f"TensorFlow {tf.__version__}, {os.cpu_count()} CPU cores, 1-minute load average "
        f"{load_before:.1f} before and {os.getloadavg()[0]:.1f} after timing (other jobs share the cores "
        f"when it exceeds 1)."
    )
    print("\n" + summary)
    if args.write:
        section = (
            f"{HEADING}\n\nCommand: `python benchmarks/unet_throughput.py --rounds {args.rounds} --steps {steps}`\n\n"
            f"{summary}\n"
        )
        replace_section(Path(args.write), HEADING, section)



if __name__ == "__main__":
    main()
