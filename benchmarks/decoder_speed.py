"""onnxruntime fp32 milliseconds per tile for the ResNet-18 decoders, side by side.

Variants: the paper's decoder (Table A.2, logits at 1/8, nearest enlargement), the same with bilinear
enlargement, and the skip-connection decoder (logits at 1/4, bilinear). Each is exported with
``weaksegtf.export.export_model`` (the parity gate included); timing does not depend on the weights, so
the models are untrained. The variants time the same random tiles in alternating rounds, so machine noise
hits all of them alike; the table reports the median per variant and each variant's median ratio to the
paper decoder within a round.

    python benchmarks/decoder_speed.py --tile 512 --rounds 15 --threads 2
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

VARIANTS = (("paper", "nearest"), ("paper", "bilinear"), ("skip", "bilinear"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tile", type=int, default=512, help="tile side in px (default: %(default)s)")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()

    import keras
    import numpy as np
    import onnxruntime as ort

    from weaksegtf.export import export_model
    from weaksegtf.models import WeakSegmenter

    sessions = {}
    with tempfile.TemporaryDirectory() as tmp:
        for decoder, upsampling in VARIANTS:
            keras.utils.set_random_seed(0)
            model = WeakSegmenter(num_classes=3, decoder=decoder, upsampling=upsampling)
            model(np.zeros((1, 64, 64, 3), "float32"))
            path = Path(tmp) / f"{decoder}_{upsampling}.keras"
            model.save(path)
            export_model(path, path.with_suffix(".onnx"), tile_size_px=64, parity_shapes_px=[(64, 64)])
            options = ort.SessionOptions()
            options.intra_op_num_threads = args.threads
            options.inter_op_num_threads = 1
            sessions[(decoder, upsampling)] = ort.InferenceSession(
                str(path.with_suffix(".onnx")), options, providers=["CPUExecutionProvider"])
    tiles = np.random.default_rng(0).uniform(0, 255, (args.batch, args.tile, args.tile, 3)).astype("float32")
    for session in sessions.values():  # warm-up
        session.run(["mask_logits"], {"image": tiles})
    times = {variant: [] for variant in VARIANTS}
    for _ in range(args.rounds):
        for variant, session in sessions.items():
            start = time.perf_counter()
            session.run(["mask_logits"], {"image": tiles})
            times[variant].append((time.perf_counter() - start) * 1000 / args.batch)
    base = times[VARIANTS[0]]
    print(f"| decoder | upsampling | ms per {args.tile} px tile (median of {args.rounds}) | / paper, nearest "
          f"(median of per-round ratios) |")
    print("|---|---|---|---|")
    for variant, values in times.items():
        ratio = statistics.median(v / b for v, b in zip(values, base))
        print(f"| {variant[0]} | {variant[1]} | {statistics.median(values):.1f} | {ratio:.2f} |")


if __name__ == "__main__":
    main()
