"""The paper's experiments as one resumable sweep: what ``weakseg-experiment sweep`` calls.

**Segmentation** (Ciga & Martel section 3.3, Fig. 5). For each s% and repeat,
s% of the training images keep their masks; the draw is redrawn per repeat and
shared by the three modes:

- ``S``: the s% masks only;
- ``S+C``: the s% masks, plus the other (100 - s)% images with their label only;
- ``S+C*``: the s% masks, plus *every* training image with its label.

**Classification head** (section 3.3, Fig. 6, Table D.4): does training for
segmentation help the classifier? For c in [0, 50]%, a share 2c% of the
training pool (the paper's c% of a dataset whose other 50% is the test set)
goes to the label stream:

- ``S2+C2``: masks on the other (100 - 2c)%, labels on the 2c%;
- ``S2+C2*``: masks on the (100 - 2c)%, labels on every image;
- ``S2*+C2``: masks on every image, labels on the 2c%.

The classifier is scored by tile accuracy on the validation images (tiles
labelled with their image's label); the paper instead holds out 50% of its
classification patches. ``S2+C2`` at c uses exactly the data of ``S+C`` at
s = 100 - 2c, and such identical runs are trained once.

**Equal optimizer steps.** Every run, whatever its mode and s, makes
``epochs x steps_per_epoch`` updates, and ``steps_per_epoch`` defaults to one
pass over the tiles of *all* training images, ``ceil(pool tiles / batch)``
(the length of the S+C* label stream). So S+C gets no extra segmentation
updates over S (only the label batches that ride along in each joint update),
and a small s gets as many updates as s = 100%: its few masks are seen more often.

**Resuming.** Each finished run is a row of ``runs.csv``, rewritten atomically
after every run; a run whose id is there is not redone. ``sweep.json`` holds
the settings; resuming with different ones is refused. The model of each run
is evaluated at its last step (the paper picks the best of 100 epochs on a
validation WSI; here validation is the test set, so no epoch is picked on it).
"""

from __future__ import annotations

import csv
import hashlib
import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from weaksegtf.data.images import PathLike
from weaksegtf.data.label_set import LabelSet
from weaksegtf.data.mask_set import MaskSet
from weaksegtf.data.patches import IMAGE_PAD_VALUE
from weaksegtf.errors import ConfigError

SEGMENTATION_MODES = ("S", "S+C", "S+C*")
CLASSIFICATION_MODES = ("S2+C2", "S2+C2*", "S2*+C2")
RUNS_CSV = "runs.csv"
SWEEP_JSON = "sweep.json"
DRAWS_JSON = "draws.json"
#: Scalar validation metrics of each run (columns of runs.csv).
RUN_METRICS = (
    "pixel_accuracy",
    "foreground_accuracy",
    "f1_weighted",
    "f1_macro",
    "mean_iou",
    "mean_dice",
    "bach_score",
    "boundary_mean_iou",
    "boundary_mean_dice",
    "cls_accuracy",
)


@dataclass(eq=False)
class SweepData:
    """The training pool and the validation set of a sweep.

    Args:
        pool: MaskSet. Every training image with its full mask.
        pool_labels: int array ``(N,)``. Image label of each pool image.
        val: MaskSet. Validation images with masks (the test set of the sweep).
        class_names: tuple of str. Background first.
        source: str. Where the data came from, for the record.

    Example:
    >>> data = glas_sweep_data("../shared/data/glas-train", downsample=2)  # doctest: +SKIP
    >>> len(data.pool), len(data.val)  # doctest: +SKIP
    (68, 17)
    """

    pool: MaskSet
    pool_labels: np.ndarray
    val: MaskSet
    class_names: tuple[str, ...]
    source: str = ""

    def __post_init__(self):
        self.pool_labels = np.asarray(self.pool_labels, dtype=np.int32)
        if len(self.pool_labels) != len(self.pool):
            raise ConfigError(f"{len(self.pool)} pool images but {len(self.pool_labels)} labels")
        if not len(self.pool) or not len(self.val):
            raise ConfigError(f"a sweep needs training and validation images, got {len(self.pool)} and {len(self.val)}")

    def val_labels(self) -> np.ndarray:
        """Image label of each validation image: its most frequent foreground class."""
        from weaksegtf.training import image_labels_from_masks

        return image_labels_from_masks(self.val.masks, self.val.ignore_value)


def glas_sweep_data(root: PathLike, downsample: int = 2, split_seed: int = 0, val_fraction: float = 0.2) -> SweepData:
    """GlaS with its patient-wise split (:func:`weaksegtf.data.load_glas`); the split is fixed across repeats."""
    from weaksegtf.data import load_glas

    split = load_glas(root, masked=0, val_fraction=val_fraction, seed=split_seed, downsample=downsample)
    return SweepData(
        pool=split.full_train_masks,
        pool_labels=np.asarray(split.full_train_labels.labels),
        val=split.val,
        class_names=tuple(split.class_names),
        source=f"GlaS {Path(root).name}, downsample {downsample}, split seed {split_seed}, "
        f"validation patients {list(split.val_patients)}",
    )


def synthetic_sweep_data(n_images: int = 80, n_val: int = 20, size_px: int = 64, seed: int = 0) -> SweepData:
    """The built-in synthetic H&E set (:func:`weaksegtf.data.make_synthetic_dataset`)."""
    from weaksegtf.data import SYNTHETIC_CLASS_NAMES, make_synthetic_dataset

    everything, labels = make_synthetic_dataset(n_images=n_images + n_val, size_px=size_px, seed=seed)
    return SweepData(
        pool=everything.subset(range(n_images)),
        pool_labels=labels[:n_images],
        val=everything.subset(range(n_images, n_images + n_val)),
        class_names=tuple(SYNTHETIC_CLASS_NAMES),
        source=f"synthetic, {n_images} training + {n_val} validation images of {size_px} px, seed {seed}",
    )


def folder_sweep_data(masks_dir: PathLike, val_dir: PathLike, class_names: Sequence[str]) -> SweepData:
    """Mask-set folders; each image's label is its most frequent foreground class."""
    from weaksegtf.training import image_labels_from_masks

    pool = MaskSet.from_folder(masks_dir, len(class_names))
    val = MaskSet.from_folder(val_dir, len(class_names))
    return SweepData(pool, image_labels_from_masks(pool.masks, pool.ignore_value), val, tuple(class_names),
                     source=f"mask sets {masks_dir} (train), {val_dir} (validation)")


def masked_count(percent: float, n_images: int) -> int:
    """Images that keep masks at s = ``percent``: rounded half up, at least 1 when s > 0."""
    if not 0 <= percent <= 100:
        raise ConfigError(f"a percentage must be in 0..100, got {percent}")
    if percent == 0:
        return 0
    return min(n_images, max(1, math.floor(percent / 100 * n_images + 0.5)))


def draw_masked(labels: np.ndarray, percent: float, seed: int) -> np.ndarray:
    """Indices of the images that keep masks at ``percent``, sorted.

    Classes are drawn in proportion to their share of the pool (largest
    remainder), each class at least once when the count allows, so that a
    5% draw of GlaS holds both grades. The same ``seed`` gives the same draw
    to every mode (section 3.3: "randomly picking the same s% of training
    data for S, S+C, and S+C*").
    """
    labels = np.asarray(labels)
    n_masked = masked_count(percent, len(labels))
    rng = np.random.default_rng(seed)
    classes = np.unique(labels)
    members = {c: np.flatnonzero(labels == c)[rng.permutation(int((labels == c).sum()))] for c in classes}
    quota = {c: 0 for c in classes}
    if n_masked >= len(classes):
        quota = {c: 1 for c in classes}
    remaining = n_masked - sum(quota.values())
    shares = {c: remaining * len(members[c]) / len(labels) for c in classes}
    for c in classes:
        quota[c] += int(math.floor(shares[c]))
    for c in sorted(classes, key=lambda c: (-(shares[c] - math.floor(shares[c])), c)):
        if sum(quota.values()) >= n_masked:
            break
        quota[c] += 1
    # A class with fewer images than its quota passes the rest on.
    spill = sum(max(0, quota[c] - len(members[c])) for c in classes)
    for c in classes:
        quota[c] = min(quota[c], len(members[c]))
    for c in classes:
        extra = min(spill, len(members[c]) - quota[c])
        quota[c] += extra
        spill -= extra
    return np.sort(np.concatenate([members[c][: quota[c]] for c in classes] + [np.zeros(0, np.int64)])).astype(np.int64)


def run_streams(mode: str, percent: float, labels: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Pool indices of the mask stream and of the label stream of one run."""
    everything = np.arange(len(labels))
    if mode in SEGMENTATION_MODES:
        masked = draw_masked(labels, percent, seed)
        rest = np.setdiff1d(everything, masked)
        return masked, {"S": rest[:0], "S+C": rest, "S+C*": everything}[mode]
    if mode in CLASSIFICATION_MODES:
        if not 0 <= percent <= 50:
            raise ConfigError(f"c must be in 0..50% for {mode}, got {percent}")
        masked = draw_masked(labels, 100 - 2 * percent, seed)
        rest = np.setdiff1d(everything, masked)
        return {"S2+C2": (masked, rest), "S2+C2*": (masked, everything), "S2*+C2": (everything, rest)}[mode]
    raise ConfigError(f"mode {mode!r} is unknown; expected one of {SEGMENTATION_MODES + CLASSIFICATION_MODES}")


LABEL_SOURCES = ("tile_rule", "image")


@dataclass
class SweepSettings:
    """Training and evaluation settings shared by every run of a sweep (stored in ``sweep.json``).

    Args:
        epochs: int. Defaults to 2.
        steps_per_epoch: int, optional. Defaults to ``None``: one pass over all pool tiles.
        batch_size: int. Per stream. Defaults to 20 (section 2.3).
        learning_rate: float. Adam. Defaults to 1e-3: at the paper's 1e-4 the
            80-weight classifier barely moves in a few hundred steps (measured:
            cls_accuracy stays at chance), so short CPU runs would show no effect of labels.
        tile_size_px: int. Training tile side. Defaults to 128.
        update: str. ``"joint"`` or ``"sequential"``. Defaults to ``"joint"``.
        seed: int. Repeat r draws masks and trains with seed ``seed + r``. Defaults to 0.
        boundary_distance_px: float. Band for boundary IoU/Dice. Defaults to 3.0.
        label_source: str. How label-stream tiles get their label:
            ``"tile_rule"`` (section 3.3, as the paper built the classification
            patches of Gleason2019 and DigestPath2019: a tile whose dominant class
            covers >= ``dominant_fraction`` gets that class, other tiles are
            dropped) or ``"image"`` (every tile inherits its image's label, e.g.
            the GlaS grade, even a stroma-only tile). Defaults to ``"tile_rule"``.
        dominant_fraction: float. Tile-rule threshold. Defaults to 0.9.
        data: str. Description of the data (checked on resume).
    """

    epochs: int = 2
    steps_per_epoch: int | None = None
    batch_size: int = 20
    learning_rate: float = 1e-3
    tile_size_px: int = 128
    update: str = "joint"
    seed: int = 0
    boundary_distance_px: float = 3.0
    label_source: str = "tile_rule"
    dominant_fraction: float = 0.9
    data: str = ""

    def __post_init__(self):
        if self.label_source not in LABEL_SOURCES:
            raise ConfigError(f"label_source {self.label_source!r} is unknown; expected one of {LABEL_SOURCES}")


@dataclass
class SweepResult:
    """Paths and rows of a sweep."""

    out_dir: Path
    runs_path: Path
    rows: list[dict] = field(default_factory=list)
    trained: int = 0
    skipped: int = 0


def _data_key(pool_names: Sequence[str], masked: np.ndarray, labelled: np.ndarray, seed: int) -> str:
    text = json.dumps([sorted(pool_names[i] for i in masked), sorted(pool_names[i] for i in labelled), seed])
    return hashlib.sha1(text.encode()).hexdigest()[:12]


def run_id(mode: str, percent: float, repeat: int) -> str:
    """``"S+C@5%#0"``: mode, percentage and repeat of one run."""
    return f"{mode}@{percent:g}%#{repeat}"


def read_runs(out_dir: PathLike) -> list[dict]:
    """Rows of ``runs.csv`` with numbers parsed (empty cells become ``None``)."""
    path = Path(out_dir) / RUNS_CSV
    if not path.is_file():
        return []
    with open(path, newline="") as handle:
        return [{k: _parse(v) for k, v in row.items()} for row in csv.DictReader(handle)]


def _parse(text: str):
    if text == "":
        return None
    try:
        number = float(text)
    except ValueError:
        return text
    return int(number) if number.is_integer() and "." not in text and "e" not in text.lower() else number


def _write_runs(rows: list[dict], path: Path) -> None:
    from weaksegtf.evaluation import write_rows_csv

    write_rows_csv(rows, path)


def _check_settings(out_dir: Path, settings: SweepSettings) -> None:
    path = out_dir / SWEEP_JSON
    wanted = asdict(settings)
    if path.is_file():
        stored = json.loads(path.read_text())["settings"]
        differ = [f"{k}: {stored.get(k)!r} there, {v!r} now" for k, v in wanted.items() if stored.get(k) != v]
        if differ:
            raise ConfigError(
                f"{out_dir} holds a sweep with other settings ({'; '.join(differ)}); resume with the same "
                f"settings or use a new --out"
            )


def _steps_per_epoch(data: SweepData, settings: SweepSettings) -> int:
    if settings.steps_per_epoch is not None:
        return settings.steps_per_epoch
    t = settings.tile_size_px
    tiles = sum(math.ceil(m.shape[0] / t) * math.ceil(m.shape[1] / t) for m in data.pool.masks)
    return max(1, math.ceil(tiles / settings.batch_size))


def train_and_evaluate(
    data: SweepData, masked: np.ndarray, labelled: np.ndarray, settings: SweepSettings, steps: int, seed: int
) -> dict:
    """Train one run on the given pool indices and score it on the validation set."""
    from weaksegtf.data import label_set_to_arrays, mask_set_to_arrays, tile_rule_label_arrays
    from weaksegtf.training import train_weak_segmenter

    tile = settings.tile_size_px
    mask_x = mask_y = label_x = label_y = None
    if len(masked):
        mask_x, mask_y = mask_set_to_arrays(data.pool.subset(masked), tile)
    if len(labelled) and settings.label_source == "tile_rule":
        label_x, label_y = tile_rule_label_arrays(data.pool.subset(labelled), tile, settings.dominant_fraction)
    elif len(labelled):
        label_set = LabelSet([data.pool.images[i] for i in labelled], [int(data.pool_labels[i]) for i in labelled],
                             [data.pool.names[i] for i in labelled])
        label_x, label_y = label_set_to_arrays(label_set, tile)
    if label_x is not None and not len(label_x):
        label_x = label_y = None  # the tile rule kept no tile: the run is mask-only
    mode = "S+C" if mask_x is not None and label_x is not None else ("S" if mask_x is not None else "C")
    start = time.perf_counter()
    model, history = train_weak_segmenter(
        mask_x, mask_y, label_x, label_y, num_classes=len(data.class_names), class_names=data.class_names,
        mode=mode, epochs=settings.epochs, steps_per_epoch=steps, batch_size=settings.batch_size,
        learning_rate=settings.learning_rate, update=settings.update, seed=seed, verbose=0,
    )
    train_seconds = time.perf_counter() - start
    start = time.perf_counter()
    row = evaluate_run(model, data, settings)
    last = {k: v[-1] for k, v in history.history.items() if v}
    row.update({
        "n_mask_tiles": 0 if mask_x is None else len(mask_x),
        "n_label_tiles": 0 if label_x is None else len(label_x),
        "seg_loss": last.get("seg_loss"),
        "cls_loss": last.get("cls_loss"),
        "train_seconds": round(train_seconds, 1),
        "eval_seconds": round(time.perf_counter() - start, 1),
    })
    return row


def evaluate_run(model, data: SweepData, settings: SweepSettings) -> dict:
    """Whole-image segmentation metrics and classifier tile accuracy on the validation set."""
    from weaksegtf.data import label_set_to_arrays, tile_rule_label_arrays
    from weaksegtf.metrics import SegmentationEvaluator

    evaluator = SegmentationEvaluator(
        len(data.class_names), data.class_names, data.val.ignore_value, settings.boundary_distance_px,
        keep_rows=False,
    )
    for mask, prediction in zip(data.val.masks, predict_images(model, data.val.images)):
        evaluator.update(mask, prediction)
    result = evaluator.result()
    row = {key: result[key] for key in RUN_METRICS if key in result}
    row["boundary_mean_iou"] = result["boundary"]["mean_iou"]
    row["boundary_mean_dice"] = result["boundary"]["mean_dice"]
    row.update({f"dice_{name}": value for name, value in result["dice"].items()})
    if settings.label_source == "tile_rule":
        tiles, labels = tile_rule_label_arrays(data.val, settings.tile_size_px, settings.dominant_fraction)
    else:
        val_labels = LabelSet(list(data.val.images), [int(v) for v in data.val_labels()], list(data.val.names))
        tiles, labels = label_set_to_arrays(val_labels, settings.tile_size_px)
    logits = np.concatenate([
        np.asarray(model(tiles[i : i + 64].astype(np.float32), training=False)["label"])
        for i in range(0, len(tiles), 64)
    ])
    row["cls_accuracy"] = float((logits.argmax(-1) == labels).mean())
    return row


def predict_images(model, images: Sequence[np.ndarray], batch_size: int = 8) -> list[np.ndarray]:
    """Argmax masks of whole images, as :func:`weaksegtf.training.predict_image` gives them.

    Images are padded white to a multiple of 16 (as ``weakseg-infer`` does) and those of the same padded
    size go through the model together, which saves most of the per-call cost.
    """
    padded, groups = [], {}
    for index, image in enumerate(images):
        height, width = image.shape[:2]
        pad = ((0, (-height) % 16), (0, (-width) % 16), (0, 0))
        padded.append(np.pad(image, pad, constant_values=IMAGE_PAD_VALUE) if any(p[1] for p in pad[:2]) else image)
        groups.setdefault(padded[-1].shape, []).append(index)
    predictions: list[np.ndarray | None] = [None] * len(images)
    for members in groups.values():
        for start in range(0, len(members), batch_size):
            chunk = members[start : start + batch_size]
            batch = np.stack([padded[i] for i in chunk]).astype(np.float32)
            logits = np.asarray(model(batch, training=False)["mask"])
            for i, row in zip(chunk, logits):
                height, width = images[i].shape[:2]
                predictions[i] = row[:height, :width].argmax(-1).astype(np.uint8)
    return predictions


def plan_runs(
    segmentation_percents: Sequence[float],
    modes: Sequence[str],
    repeats: int,
    classification_percents: Sequence[float] = (),
    classification_modes: Sequence[str] = CLASSIFICATION_MODES,
) -> list[tuple[str, str, float, int]]:
    """``(experiment, mode, percent, repeat)`` of every run, repeat by repeat so a partial sweep is balanced."""
    for mode in modes:
        if mode not in SEGMENTATION_MODES:
            raise ConfigError(f"segmentation mode {mode!r} is unknown; expected some of {SEGMENTATION_MODES}")
    for mode in classification_modes:
        if mode not in CLASSIFICATION_MODES:
            raise ConfigError(f"classification mode {mode!r} is unknown; expected some of {CLASSIFICATION_MODES}")
    for s in segmentation_percents:
        if not 0 < s <= 100:
            raise ConfigError(f"s must be in (0, 100]%, got {s}")
    for c in classification_percents:
        if not 0 <= c <= 50:
            raise ConfigError(f"c must be in [0, 50]%, got {c}")
    if repeats < 1:
        raise ConfigError(f"repeats must be at least 1, got {repeats}")
    plan = []
    for repeat in range(repeats):
        plan += [("segmentation", m, float(s), repeat) for s in segmentation_percents for m in modes]
        plan += [("classification", m, float(c), repeat) for c in classification_percents for m in classification_modes]
    return plan


def run_sweep(
    data: SweepData,
    out_dir: PathLike,
    *,
    percents: Sequence[float] = (5, 10, 25, 100),
    modes: Sequence[str] = SEGMENTATION_MODES,
    repeats: int = 3,
    classification_percents: Sequence[float] = (),
    settings: SweepSettings | None = None,
    command: str | None = None,
    log: Callable[[str], None] | None = print,
) -> SweepResult:
    """Run (or resume) the sweep and write ``runs.csv``, ``sweep.json`` and ``draws.json``.

    Args:
        data: SweepData. Pool and validation set.
        out_dir: str or path. Results folder; an existing one is resumed.
        percents: list of float. s values in (0, 100]. Defaults to 5, 10, 25, 100.
        modes: list of str. Among ``S``, ``S+C``, ``S+C*``. Defaults to all three.
        repeats: int. Draws per setting. Defaults to 3.
        classification_percents: list of float. c values in [0, 50] for the
            classification-head modes; empty skips them. Defaults to ``()``.
        settings: SweepSettings. Defaults to ``SweepSettings()``.
        command: str, optional. The command line, stored for the report.
        log: callable or None. Receives one line per run. Defaults to ``print``.

    Raises:
        ConfigError: unknown modes, percentages out of range, or an ``out_dir``
            that holds a sweep with other settings.
    """
    settings = settings or SweepSettings()
    if not settings.data:
        settings.data = data.source
    out_dir = Path(out_dir)
    plan = plan_runs(percents, modes, repeats, classification_percents)
    _check_settings(out_dir, settings)
    out_dir.mkdir(parents=True, exist_ok=True)
    steps = _steps_per_epoch(data, settings)
    sweep_path = out_dir / SWEEP_JSON
    record = json.loads(sweep_path.read_text()) if sweep_path.is_file() else {"commands": []}
    record.update({"settings": asdict(settings), "steps_per_epoch": steps, "class_names": list(data.class_names),
                   "n_pool_images": len(data.pool), "n_val_images": len(data.val)})
    if command:
        record["commands"].append(command)
    _atomic_write(sweep_path, json.dumps(record, indent=2) + "\n")

    runs_path = out_dir / RUNS_CSV
    rows = read_runs(out_dir)
    done = {row["run_id"]: row for row in rows}
    by_data = {row["data_key"]: row for row in rows if not row.get("reused_from")}
    draws_path = out_dir / DRAWS_JSON
    draws = json.loads(draws_path.read_text()) if draws_path.is_file() else {}
    result = SweepResult(out_dir, runs_path, rows)
    todo = [p for p in plan if run_id(p[1], p[2], p[3]) not in done]
    result.skipped = len(plan) - len(todo)
    if log and result.skipped:
        log(f"{result.skipped} of {len(plan)} runs already in {runs_path}; {len(todo)} to go")
    started = time.perf_counter()
    for number, (experiment, mode, percent, repeat) in enumerate(todo, start=1):
        seed = settings.seed + repeat
        masked, labelled = run_streams(mode, percent, data.pool_labels, seed)
        key = _data_key(data.pool.names, masked, labelled, seed)
        row = {"run_id": run_id(mode, percent, repeat), "experiment": experiment, "mode": mode, "percent": percent,
               "repeat": repeat, "seed": seed, "n_mask_images": len(masked), "n_label_images": len(labelled),
               "steps": steps * settings.epochs, "data_key": key}
        if masked.size == 0 and labelled.size == 0:
            raise ConfigError(f"run {row['run_id']} has no training data")
        if key in by_data:
            # Same images in both streams and same seed: the run would repeat another one.
            source = by_data[key]
            row.update({k: v for k, v in source.items() if k not in row and k not in ("run_id", "reused_from")})
            row.update({"reused_from": source["run_id"], "train_seconds": 0.0, "eval_seconds": 0.0})
        else:
            row.update(train_and_evaluate(data, masked, labelled, settings, steps, seed))
            row["reused_from"] = None
            by_data[key] = row
            result.trained += 1
        row["finished"] = time.strftime("%Y-%m-%d %H:%M:%S")
        mask_percent = 100 - 2 * percent if experiment == "classification" else percent
        draws.setdefault(f"repeat {repeat}", {})[f"s={mask_percent:g}%"] = [
            data.pool.names[i] for i in draw_masked(data.pool_labels, mask_percent, seed)
        ]
        rows.append(row)
        _write_runs(rows, runs_path)
        _atomic_write(draws_path, json.dumps(draws, indent=1) + "\n")
        if log:
            elapsed = time.perf_counter() - started
            eta = elapsed / number * (len(todo) - number)
            how = f"same data as {row['reused_from']}" if row["reused_from"] else f"{row['train_seconds']:.0f} s"
            log(f"[{number}/{len(todo)}] {row['run_id']}: {len(masked)} masked, {len(labelled)} labelled images, "
                f"{row['steps']} steps; F1 weighted {_show(row.get('f1_weighted'))}, F1 macro "
                f"{_show(row.get('f1_macro'))}, mIoU {_show(row.get('mean_iou'))}, cls acc "
                f"{_show(row.get('cls_accuracy'))} ({how}; about {eta / 60:.0f} min left)")
    return result


def _show(value) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    tmp.replace(path)
