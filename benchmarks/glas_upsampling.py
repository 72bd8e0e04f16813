"""Nearest vs bilinear enlargement of the paper decoder's logits, on the same trained GlaS models.

The paper's decoder (Table A.2) predicts at 1/8 of the input and enlarges its logits by nearest
interpolation; ``--upsampling bilinear`` enlarges the same logits bilinearly before the argmax. The
enlargement has no weights, so a model trained with one can be run with the other: this benchmark loads
each trained model of ``benchmarks/glas_scenario.py`` (``OUT/seed*/RUN/train/model.keras``, paper decoder,
nearest), rebuilds it with ``upsampling="bilinear"``, copies the weights, and scores both on the validation
and test patients of the seed in inference mode with ``weakseg-infer``'s tile padding
(``weaksegtf.training.evaluate_images``): gland Dice (mean of the benign- and malignant-gland Dice) and
boundary gland Dice (the same within 3 px of the true class boundaries, as ``weakseg-eval``).

    python benchmarks/glas_upsampling.py --out runs/scen3 --seeds 0 1 2 --runs S S+C S-all
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

CLASSES = ["background", "benign gland", "malignant gland"]
BOUNDARY_PX = 3.0


def gland_dice(confusion: np.ndarray) -> float:
    from weaksegtf.metrics.confusion import dice_per_class

    return float(np.mean(dice_per_class(np.asarray(confusion))[1:]))


def with_upsampling(model, upsampling: str):
    """The same network and weights, with its logits enlarged by ``upsampling``."""
    from weaksegtf.models import WeakSegmenter

    config = model.get_config()
    if config.get("decoder", "paper") != "paper":
        raise SystemExit(f"{model.name}: decoder {config.get('decoder')!r}; this benchmark swaps the paper decoder's")
    config["upsampling"] = upsampling
    clone = WeakSegmenter.from_config(config)
    clone.set_weights(model.get_weights())
    return clone


def score(model, part, tile_px: int) -> dict:
    from weaksegtf.metrics.boundary import boundary_confusion_matrix
    from weaksegtf.training import evaluate_images

    metrics, predictions = evaluate_images(model, part.images, part.masks, CLASSES, tile_px)
    boundary = sum(boundary_confusion_matrix(m, p, len(CLASSES), BOUNDARY_PX) for m, p in zip(part.masks, predictions))
    return {"gland_dice": gland_dice(metrics["confusion_matrix"]), "boundary_gland_dice": gland_dice(boundary)}


def one_model(out: Path, seed: int, run: str) -> dict | None:
    import keras

    import weaksegtf.models  # noqa: F401  (registers the model classes for load_model)
    from weaksegtf.data import MaskSet
    from weaksegtf.training import inference_tile_px

    path = out / f"seed{seed}" / run / "train" / "model.keras"
    cache = out / f"seed{seed}" / run / "upsampling.json"
    if cache.is_file():
        return json.loads(cache.read_text())
    if not path.is_file():
        return None
    split = out / f"split_seed{seed}"
    parts = {name: MaskSet.from_folder(split / name, len(CLASSES)) for name in ("val", "test")}
    trained = keras.saving.load_model(path)
    tile_px = inference_tile_px(int(json.loads((path.parent / "metrics.json").read_text())["model_card"]["tile_size_px"]))
    row = {"seed": seed, "run": run}
    for upsampling in ("nearest", "bilinear"):
        model = trained if upsampling == "nearest" else with_upsampling(trained, upsampling)
        for name, part in parts.items():
            for key, value in score(model, part, tile_px).items():
                row[f"{name}_{key}_{upsampling}"] = value
    cache.write_text(json.dumps(row, indent=2))
    return row


def summarise(rows: list[dict]) -> str:
    from weaksegtf.experiment_report import bootstrap_ci

    lines = ["| run | seed | val gland nearest | val gland bilinear | val boundary nearest | val boundary bilinear | "
             "test gland nearest | test gland bilinear | test boundary nearest | test boundary bilinear |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        cells = [f"{r[f'{p}_{k}_{u}']:.3f}" for p in ("val", "test") for k in ("gland_dice", "boundary_gland_dice")
                 for u in ("nearest", "bilinear")]
        lines.append(f"| {r['run']} | {r['seed']} | " + " | ".join(cells) + " |")
    lines.append("")
    lines.append("Paired bilinear − nearest over every model (95% percentile-bootstrap CI):")
    for p in ("val", "test"):
        for k in ("gland_dice", "boundary_gland_dice"):
            diff = np.array([r[f"{p}_{k}_bilinear"] - r[f"{p}_{k}_nearest"] for r in rows])
            low, high = bootstrap_ci(diff)
            lines.append(f"- {p} {k.replace('_', ' ')}: {diff.mean():+.4f} (CI {low:+.4f} to {high:+.4f}); "
                         f"lower on {int((diff < 0).sum())} of {len(diff)} models")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", required=True, help="the scenario's output folder")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--runs", nargs="+", default=["S", "S+C", "S-all"])
    args = parser.parse_args(argv)
    out = Path(args.out)
    rows = []
    for seed in args.seeds:
        for run in args.runs:
            row = one_model(out, seed, run)
            if row is not None:
                rows.append(row)
                print(json.dumps(row), flush=True)
    text = summarise(rows)
    print(text)
    (out / "upsampling.md").write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
