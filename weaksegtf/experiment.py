"""The paper's experiments as one resumable sweep: what ``weakseg-experiment sweep`` calls.

**Segmentation** (Ciga & Martel section 3.3, Fig. 5). For each s% and repeat,
s% of the training data keep their masks; the draw is redrawn per repeat and
shared by the three modes of the repeat (paired repeats):

- ``S``: the s% masks only;
- ``S+C``: the s% masks, plus the other (100 - s)% with their label only;
- ``S+C*``: the s% masks, plus *all* training data with their label.

**What s% counts** (``SweepSettings.percent_of``): ``"images"`` draws s% of
the training images (each keeps all its tiles' masks); ``"patches"`` (the
paper's) draws s% of the mask tiles of all training images, so a 5% draw
spreads over many images. Both are stratified by image label.

**The label stream** (``SweepSettings.label_source``): ``"whole"`` (default)
feeds each labelled image whole as one classification patch
(:func:`weaksegtf.data.label_set_to_images`), as the paper's classification
patches are; ``"image"`` cuts labelled images (or, by patches, takes the
unmasked tiles) as grid tiles that inherit the image's label; ``"tile_rule"``
labels tiles by the section 3.3 rule on their masks (dominant class >= 90%,
else dropped). By patches with ``"whole"``, an image joins the label stream
when none of its tiles is in the mask draw (S+C) or always (S+C*). With
``background_patches`` (default) in ``whole``/``image``, tiles of the masked
data that are >= 90% background join the label stream with the background label.

**Classification head** (section 3.3, Fig. 6, Table D.4): does training for
segmentation help the classifier? For c in [0, 50]%, a share 2c% of the
training pool (the paper's c% of a dataset whose other 50% is the test set)
goes to the label stream:

- ``S2+C2``: masks on the other (100 - 2c)%, labels on the 2c%;
- ``S2+C2*``: masks on the (100 - 2c)%, labels on all;
- ``S2*+C2``: masks on all, labels on the 2c%.

The classifier is scored by accuracy on the test images (whole images, or
tiles labelled by the label source); the paper instead holds out 50% of its
classification patches. ``S2+C2`` at c uses exactly the data of ``S+C`` at
s = 100 - 2c, and such identical runs are trained once.

**Selection and scoring.** Runs are selected on one set and scored on
another: ``SweepData.select`` (inner validation patients) is scored after
every epoch in inference mode and the best epoch's weights are kept
(:class:`weaksegtf.training.whole_image_validation.WholeImageValidation`);
``SweepData.test`` (outer test patients) is scored once, at the end, and
chooses nothing. Without a selection set the last epoch is scored.

**Epoch length** (``SweepSettings.epoch_length``): ``"equal"`` gives every
run, whatever its mode and s, ``epochs x steps_per_epoch`` updates, with
``steps_per_epoch`` defaulting to one pass over the tiles of *all* training
images, ``ceil(pool tiles / batch)``: S+C gets no extra segmentation
updates over S, and a small s gets as many updates as s = 100%.
``"pass"`` is the paper's epoch: one pass over the run's own streams (the
longest of the mask and label streams, the shorter ones repeating), so runs
with more data make more updates.

**Resuming.** Each finished run is a row of ``runs.csv``, rewritten atomically
after every run; a run whose id is there is not redone. ``sweep.json`` holds
the settings; resuming with different ones is refused.
"""

from __future__ import annotations

import csv
import hashlib
import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Sequence

import numpy as np

from weaksegtf.data.images import PathLike
from weaksegtf.data.label_set import LabelSet
from weaksegtf.data.mask_set import MaskSet
from weaksegtf.data.stratified_draw import draw_stratified
from weaksegtf.constants import IMAGE_PAD_VALUE, SIZE_MULTIPLE
from weaksegtf.errors import ConfigError
from weaksegtf.io import write_text_atomic

if TYPE_CHECKING:
    from weaksegtf.training.config import TrainingConfig

SEGMENTATION_MODES = ("S", "S+C", "S+C*")
CLASSIFICATION_MODES = ("S2+C2", "S2+C2*", "S2*+C2")
#: What s% counts: training images, or mask tiles of all training images (the paper's).
PERCENT_OF = ("images", "patches")
#: ``pass``: one pass over the run's own streams per epoch (the paper's); ``equal``: the same steps for every run.
EPOCH_LENGTHS = ("pass", "equal")
#: How labelled data enter the label stream (see the module docstring).
LABEL_SOURCES = ("whole", "image", "tile_rule")
RUNS_CSV = "runs.csv"
SWEEP_JSON = "sweep.json"
DRAWS_JSON = "draws.json"
#: Scalar test metrics of each run (columns of runs.csv).
RUN_METRICS = (
    "pixel_accuracy",
    "foreground_accuracy",
    "f1_weighted",
    "f1_macro",
    "mean_iou",
    "mean_dice",
    "foreground_dice",
    "foreground_on_background",
    "foreground_confusion",
    "bach_score",
    "boundary_mean_iou",
    "boundary_mean_dice",
    "cls_accuracy",
)


@dataclass(eq=False)
class SweepData:
    """The training pool, the selection set and the scoring set of a sweep.

    Args:
        pool: MaskSet. Every training image with its full mask.
        pool_labels: int array ``(N,)``. Image label of each pool image.
        test: MaskSet. Images with masks that every run is scored on, once
            (outer test patients); nothing is chosen on them.
        class_names: tuple of str. Background first.
        source: str. Where the data came from, for the record.
        select: MaskSet, optional. Images with masks for choosing each run's
            best epoch (inner validation patients). Defaults to ``None``: the
            last epoch is scored.

    Raises:
        ConfigError: an empty pool or test set, or the same image (same
            pixels) in two of pool, selection and test sets.

    Example:
    >>> data = glas_sweep_data("../shared/data/glas-train", downsample=2)  # doctest: +SKIP
    >>> len(data.pool), len(data.select), len(data.test)  # doctest: +SKIP
    (55, 13, 17)
    """

    pool: MaskSet
    pool_labels: np.ndarray
    test: MaskSet
    class_names: tuple[str, ...]
    source: str = ""
    select: MaskSet | None = None

    def __post_init__(self):
        self.pool_labels = np.asarray(self.pool_labels, dtype=np.int32)
        if len(self.pool_labels) != len(self.pool):
            raise ConfigError(f"{len(self.pool)} pool images but {len(self.pool_labels)} labels")
        if not len(self.pool) or not len(self.test):
            raise ConfigError(f"a sweep needs training and test images, got {len(self.pool)} and {len(self.test)}")
        if self.select is not None and not len(self.select):
            self.select = None
        sets = {"training": self.pool, "test": self.test}
        if self.select is not None:
            sets["selection"] = self.select
        seen: dict[str, str] = {}
        for what, mask_set in sets.items():
            for name, image in zip(mask_set.names, mask_set.images):
                key = _image_key(image)
                if key in seen:
                    raise ConfigError(f"{what} image {name} is {seen[key]} (same pixels); training, selection and "
                                      f"test sets must not share images")
                seen[key] = f"{what} image {name}"
        self._tiles: dict[int, PoolTiles] = {}

    def test_labels(self) -> np.ndarray:
        """Image label of each test image: its most frequent foreground class."""
        from weaksegtf.training import image_labels_from_masks

        return image_labels_from_masks(self.test.masks, self.test.ignore_value)

    def pool_tiles(self, tile_size_px: int) -> "PoolTiles":
        """The grid tiles of every pool image (cut once per tile size)."""
        if tile_size_px not in self._tiles:
            self._tiles[tile_size_px] = PoolTiles.cut(self.pool, self.pool_labels, tile_size_px)
        return self._tiles[tile_size_px]


def _image_key(image: np.ndarray) -> str:
    return hashlib.sha1(np.ascontiguousarray(image).tobytes() + str(image.shape).encode()).hexdigest()


@dataclass(eq=False)
class PoolTiles:
    """Grid tiles of the pool images, the units of a by-patches draw.

    Args:
        images: uint8 ``(T, t, t, 3)``.
        masks: uint8 ``(T, t, t)``.
        owner: int ``(T,)``. Pool index of each tile's image.
        labels: int ``(T,)``. Image label of each tile's image.
        names: list of str. ``"<image name>#<k>"``, k counting the image's tiles row-major.
    """

    images: np.ndarray
    masks: np.ndarray
    owner: np.ndarray
    labels: np.ndarray
    names: list[str]

    @classmethod
    def cut(cls, pool: MaskSet, pool_labels: np.ndarray, tile_size_px: int) -> "PoolTiles":
        from weaksegtf.data import mask_set_to_arrays
        from weaksegtf.tiling import tile_grid

        images, masks = mask_set_to_arrays(pool, tile_size_px)
        owner, names = [], []
        for index, mask in enumerate(pool.masks):
            # Images smaller than a tile are padded to one tile (data.pad_to_tile).
            count = len(tile_grid(max(mask.shape[0], tile_size_px), max(mask.shape[1], tile_size_px), tile_size_px))
            owner += [index] * count
            names += [f"{pool.names[index]}#{k}" for k in range(count)]
        owner = np.asarray(owner, np.int64)
        return cls(images, masks, owner, np.asarray(pool_labels)[owner], names)


def glas_sweep_data(
    root: PathLike, downsample: int = 2, split_seed: int = 0, test_fraction: float = 0.2, val_fraction: float = 0.15
) -> SweepData:
    """GlaS split by patient (:func:`weaksegtf.data.load_glas`) into training, selection and test patients.

    The split is fixed across repeats. ``test_fraction`` of the images (whole
    patients) are the test set, scored once; ``val_fraction`` (of all images)
    are the selection set (best epoch); the rest is the training pool. With
    ``test_fraction=0`` the validation patients are scored and nothing is selected.
    """
    from weaksegtf.data import load_glas

    split = load_glas(root, masked=0, val_fraction=val_fraction, seed=split_seed, downsample=downsample,
                      test_fraction=test_fraction)
    if split.test is None:
        test, select, where = split.val, None, f"test patients {list(split.val_patients)} (no selection set)"
    else:
        test, select = split.test, split.val
        where = f"selection patients {list(split.val_patients)}, test patients {list(split.test_patients)}"
    return SweepData(
        pool=split.full_train_masks,
        pool_labels=np.asarray(split.full_train_labels.labels),
        test=test,
        class_names=tuple(split.class_names),
        source=f"GlaS {Path(root).name}, downsample {downsample}, split seed {split_seed}, {where}",
        select=select,
    )


def synthetic_sweep_data(
    n_images: int = 80, n_test: int = 20, size_px: int = 64, seed: int = 0, n_select: int = 0
) -> SweepData:
    """The built-in synthetic H&E set (:func:`weaksegtf.data.make_synthetic_dataset`): pool, test, then selection images."""
    from weaksegtf.data import SYNTHETIC_CLASS_NAMES, make_synthetic_dataset

    everything, labels = make_synthetic_dataset(n_images=n_images + n_test + n_select, size_px=size_px, seed=seed)
    return SweepData(
        pool=everything.subset(range(n_images)),
        pool_labels=labels[:n_images],
        test=everything.subset(range(n_images, n_images + n_test)),
        class_names=tuple(SYNTHETIC_CLASS_NAMES),
        source=f"synthetic, {n_images} training + {n_select} selection + {n_test} test images of {size_px} px, "
        f"seed {seed}",
        select=everything.subset(range(n_images + n_test, n_images + n_test + n_select)) if n_select else None,
    )


def folder_sweep_data(
    masks_dir: PathLike, test_dir: PathLike, class_names: Sequence[str], select_dir: PathLike | None = None
) -> SweepData:
    """Mask-set folders (training, test, optional selection); each image's label is its most frequent foreground class."""
    from weaksegtf.training import image_labels_from_masks

    pool = MaskSet.from_folder(masks_dir, len(class_names))
    test = MaskSet.from_folder(test_dir, len(class_names))
    select = MaskSet.from_folder(select_dir, len(class_names)) if select_dir is not None else None
    where = f"{select_dir} (selection)" if select_dir is not None else "no selection set (last epoch)"
    return SweepData(pool, image_labels_from_masks(pool.masks, pool.ignore_value), test, tuple(class_names),
                     source=f"mask sets {masks_dir} (train), {test_dir} (test), {where}", select=select)


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
    5% draw of GlaS holds both grades (:func:`weaksegtf.data.stratified_draw.draw_stratified`).
    The same ``seed`` gives the same draw to every mode (section 3.3: "randomly
    picking the same s% of training data for S, S+C, and S+C*").
    """
    labels = np.asarray(labels)
    return draw_stratified(labels, masked_count(percent, len(labels)), np.random.default_rng(seed))


def run_streams(mode: str, percent: float, labels: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices of the mask stream's and the label stream's units (pool images, or tiles by patches) of one run.

    ``labels`` holds one label per unit; the mask draw depends on ``labels``,
    ``percent`` and ``seed`` only, so every mode of a repeat gets the same one.
    """
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


def unit_labels(data: SweepData, settings: "SweepSettings") -> np.ndarray:
    """Label of each unit a draw picks from: each pool image's, or (by patches) each tile's image's."""
    if settings.percent_of == "patches":
        return data.pool_tiles(settings.tile_size_px).labels
    return data.pool_labels


def unit_names(data: SweepData, settings: "SweepSettings") -> list[str]:
    """Names of the units a draw picks from: pool image names, or ``"<image>#<k>"`` tile names."""
    if settings.percent_of == "patches":
        return data.pool_tiles(settings.tile_size_px).names
    return list(data.pool.names)


@dataclass
class SweepSettings:
    """Training and evaluation settings shared by every run of a sweep (stored in ``sweep.json``).

    Args:
        epochs: int. Defaults to 2.
        steps_per_epoch: int, optional. With ``epoch_length="equal"`` only.
            Defaults to ``None``: one pass over all pool tiles.
        epoch_length: str. ``"equal"`` (every run makes ``epochs x
            steps_per_epoch`` updates) or ``"pass"`` (the paper's epoch: one pass
            over the run's own streams). Defaults to ``"equal"``.
        batch_size: int. Per stream. Defaults to 20 (section 2.3).
        learning_rate: float. Adam. Defaults to 1e-3: at the paper's 1e-4 the
            80-weight classifier barely moves in a few hundred steps (measured:
            cls_accuracy stays at chance), so short CPU runs would show no effect of labels.
        tile_size_px: int. Training tile side. Defaults to 128.
        update: str. ``"joint"`` or ``"sequential"``. Defaults to ``"joint"``.
        seed: int. Repeat r draws masks and trains with seed ``seed + r``. Defaults to 0.
        boundary_distance_px: float. Band for boundary IoU/Dice. Defaults to 3.0.
        percent_of: str. What s% counts: ``"images"`` (s% of the training
            images keep masks) or ``"patches"`` (s% of the mask tiles of all
            training images, as the paper counts). Defaults to ``"images"``.
        label_source: str. How labelled data enter the label stream:
            ``"whole"`` (each labelled image whole, one classification patch,
            shrunk if a side exceeds ``label_max_size_px``), ``"image"`` (grid
            tiles inheriting the image's label, even a stroma-only tile) or
            ``"tile_rule"`` (section 3.3, as the paper built the classification
            patches of Gleason2019 and DigestPath2019: a tile whose dominant class
            covers >= ``dominant_fraction`` gets that class, other tiles are
            dropped). Defaults to ``"whole"``.
        background_patches: bool. In ``whole`` and ``image``, tiles of the
            masked data that are >= ``dominant_fraction`` background join the
            label stream labelled background. Defaults to ``True``.
        label_max_size_px: int. Longest side of a whole labelled image. Defaults to 512.
        dominant_fraction: float. Tile-rule threshold. Defaults to 0.9.
        encoder_weights: str, optional. torchvision ResNet-18 ``.pth`` (or
            Keras ``.weights.h5``) every run starts from; read from disk, never
            downloaded. Defaults to ``None`` (from scratch).
        data: str. Description of the data (checked on resume).

    Raises:
        ConfigError: an unknown choice, or ``steps_per_epoch`` with ``epoch_length="pass"``.
    """

    epochs: int = 2
    steps_per_epoch: int | None = None
    epoch_length: str = "equal"
    batch_size: int = 20
    learning_rate: float = 1e-3
    tile_size_px: int = 128
    update: str = "joint"
    seed: int = 0
    boundary_distance_px: float = 3.0
    percent_of: str = "images"
    label_source: str = "whole"
    background_patches: bool = True
    label_max_size_px: int = 512
    dominant_fraction: float = 0.9
    encoder_weights: str | None = None
    data: str = ""

    def __post_init__(self):
        for name, choices in (("label_source", LABEL_SOURCES), ("percent_of", PERCENT_OF),
                              ("epoch_length", EPOCH_LENGTHS)):
            if getattr(self, name) not in choices:
                raise ConfigError(f"{name} {getattr(self, name)!r} is unknown; expected one of {choices}")
        if self.epoch_length == "pass" and self.steps_per_epoch is not None:
            raise ConfigError(f"steps_per_epoch={self.steps_per_epoch} contradicts epoch_length 'pass' (one pass "
                              f"over each run's streams); use epoch_length 'equal' to fix the steps")
        if self.encoder_weights is not None:
            self.encoder_weights = str(self.encoder_weights)

    def training_config(
        self, class_names: Sequence[str], mode: str, steps: int | None, seed: int, best_epoch: bool
    ) -> TrainingConfig:
        """The ``TrainingConfig`` of one run of the sweep: its mode, epoch length, seed and epoch choice.

        Every run trains with the paper's loss (``allowed_class_weight=0``): this
        protocol tests the paper's claim.
        """
        from weaksegtf.training import TrainingConfig

        return TrainingConfig(
            class_names=class_names, num_classes=len(class_names), mode=mode, epochs=self.epochs,
            steps_per_epoch=steps, batch_size=self.batch_size, learning_rate=self.learning_rate,
            update=self.update, seed=seed, encoder_weights=self.encoder_weights, best_epoch=best_epoch,
            verbose=0, allowed_class_weight=0.0,
        )


@dataclass
class SweepResult:
    """Paths and rows of a sweep."""

    out_dir: Path
    runs_path: Path
    rows: list[dict] = field(default_factory=list)
    trained: int = 0
    skipped: int = 0


def _data_key(unit_names: Sequence[str], masked: np.ndarray, labelled: np.ndarray, seed: int) -> str:
    text = json.dumps([sorted(unit_names[i] for i in masked), sorted(unit_names[i] for i in labelled), seed])
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


def _steps_per_epoch(data: SweepData, settings: SweepSettings) -> int | None:
    """Steps of every run's epoch (``equal``), or ``None``: each run's own pass (``pass``)."""
    if settings.epoch_length == "pass":
        return None
    if settings.steps_per_epoch is not None:
        return settings.steps_per_epoch
    return max(1, math.ceil(len(data.pool_tiles(settings.tile_size_px).owner) / settings.batch_size))


@dataclass(eq=False)
class RunStreams:
    """What one run trains on: mask tiles, label items (tiles or whole images) and background tiles."""

    mask_x: np.ndarray | None = None
    mask_y: np.ndarray | None = None
    label_x: np.ndarray | list | None = None
    label_y: np.ndarray | None = None
    background_x: np.ndarray | None = None

    @property
    def mode(self) -> str:
        """The training mode these streams make (``S+C``, ``S`` or ``C``)."""
        if self.mask_x is not None and self.label_x is not None:
            return "S+C"
        return "S" if self.mask_x is not None else "C"


def build_streams(data: SweepData, settings: SweepSettings, masked: np.ndarray, labelled: np.ndarray) -> RunStreams:
    """The training arrays of one run from its draw (indices of units: pool images, or tiles by patches)."""
    from weaksegtf.data import (
        label_set_to_arrays,
        label_set_to_images,
        mask_set_to_arrays,
        tile_rule_label_arrays,
        tile_rule_labels,
    )

    tile, source = settings.tile_size_px, settings.label_source
    streams = RunStreams()
    ignore = data.pool.ignore_value
    if settings.percent_of == "patches":
        tiles = data.pool_tiles(tile)
        if len(masked):
            streams.mask_x, streams.mask_y = tiles.images[masked], tiles.masks[masked]
        if len(labelled) and source == "tile_rule":
            rule = tile_rule_labels(tiles.masks[labelled], settings.dominant_fraction, ignore)
            streams.label_x, streams.label_y = tiles.images[labelled][rule >= 0], rule[rule >= 0]
        elif len(labelled) and source == "image":
            streams.label_x, streams.label_y = tiles.images[labelled], tiles.labels[labelled].astype(np.int32)
        elif len(labelled):
            # An image is one whole classification patch when every tile of it is in the label stream.
            inside = np.zeros(len(tiles.owner), bool)
            inside[labelled] = True
            whole = [i for i in range(len(data.pool)) if inside[tiles.owner == i].all()]
            if whole:
                streams.label_x, streams.label_y = label_set_to_images(_label_set(data, whole), settings.label_max_size_px)
        if streams.mask_x is not None and settings.background_patches and source != "tile_rule":
            rule = tile_rule_labels(streams.mask_y, settings.dominant_fraction, ignore)
            streams.background_x = streams.mask_x[rule == 0]
    else:
        if len(masked):
            streams.mask_x, streams.mask_y = mask_set_to_arrays(data.pool.subset(masked), tile)
        if len(labelled) and source == "tile_rule":
            streams.label_x, streams.label_y = tile_rule_label_arrays(data.pool.subset(labelled), tile,
                                                                      settings.dominant_fraction)
        elif len(labelled) and source == "image":
            streams.label_x, streams.label_y = label_set_to_arrays(_label_set(data, labelled), tile)
        elif len(labelled):
            streams.label_x, streams.label_y = label_set_to_images(_label_set(data, labelled),
                                                                   settings.label_max_size_px)
        if len(masked) and settings.background_patches and source != "tile_rule":
            images, labels = tile_rule_label_arrays(data.pool.subset(masked), tile, settings.dominant_fraction)
            streams.background_x = images[labels == 0]
    if streams.label_x is not None and not len(streams.label_x):
        streams.label_x = streams.label_y = None  # the tile rule kept no tile: the run is mask-only
    if streams.label_x is None or (streams.background_x is not None and not len(streams.background_x)):
        streams.background_x = None  # background patches ride along with a label stream only
    return streams


def _label_set(data: SweepData, indices) -> LabelSet:
    return LabelSet([data.pool.images[i] for i in indices], [int(data.pool_labels[i]) for i in indices],
                    [data.pool.names[i] for i in indices])


def train_and_evaluate(
    data: SweepData, masked: np.ndarray, labelled: np.ndarray, settings: SweepSettings, steps: int | None, seed: int
) -> dict:
    """Train one run on its draw, choose its epoch on ``data.select`` (if any) and score it on ``data.test``."""
    from weaksegtf.training import train_weak_segmenter

    streams = build_streams(data, settings, masked, labelled)
    validation = None if data.select is None else (data.select.images, data.select.masks)
    start = time.perf_counter()
    config = settings.training_config(data.class_names, streams.mode, steps, seed, best_epoch=validation is not None)
    model, history = train_weak_segmenter(
        streams.mask_x, streams.mask_y, streams.label_x, streams.label_y, config, validation=validation,
        background_images=streams.background_x,
    )
    train_seconds = time.perf_counter() - start
    start = time.perf_counter()
    row = evaluate_run(model, data, settings)
    selection = getattr(history, "whole_image_validation", None)
    epochs_run = len(history.history.get("loss", [])) or settings.epochs
    last = {k: v[-1] for k, v in history.history.items() if v}
    row.update({
        "n_mask_tiles": 0 if streams.mask_x is None else len(streams.mask_x),
        "n_label_items": 0 if streams.label_x is None else len(streams.label_x),
        "n_background_tiles": 0 if streams.background_x is None else len(streams.background_x),
        "steps": int(history.params.get("steps") or 0) * epochs_run,
        "best_epoch": None if selection is None else selection.best_epoch,
        "select_mean_dice": None if selection is None else selection.best_metrics.get("mean_dice"),
        "seg_loss": last.get("seg_loss"),
        "cls_loss": last.get("cls_loss"),
        "train_seconds": round(train_seconds, 1),
        "eval_seconds": round(time.perf_counter() - start, 1),
    })
    return row


def evaluate_run(model, data: SweepData, settings: SweepSettings) -> dict:
    """Whole-image segmentation metrics and classifier accuracy on the test set (``data.test`` only)."""
    from weaksegtf.data import label_set_to_arrays, label_set_to_images, tile_rule_label_arrays
    from weaksegtf.metrics import (
        SegmentationEvaluator,
        foreground_confusion,
        foreground_dice,
        foreground_on_background,
    )

    evaluator = SegmentationEvaluator(
        len(data.class_names), data.class_names, data.test.ignore_value, settings.boundary_distance_px,
        keep_rows=False,
    )
    for mask, prediction in zip(data.test.masks, predict_images(model, data.test.images)):
        evaluator.update(mask, prediction)
    result = evaluator.result()
    confusion = np.asarray(result["confusion_matrix"])
    row = {key: result[key] for key in RUN_METRICS if key in result}
    row["boundary_mean_iou"] = result["boundary"]["mean_iou"]
    row["boundary_mean_dice"] = result["boundary"]["mean_dice"]
    for key, function in (("foreground_dice", foreground_dice), ("foreground_on_background", foreground_on_background),
                          ("foreground_confusion", foreground_confusion)):
        value = function(confusion)
        row[key] = None if np.isnan(value) else value
    row.update({f"dice_{name}": value for name, value in result["dice"].items()})
    test_labels = LabelSet(list(data.test.images), [int(v) for v in data.test_labels()], list(data.test.names))
    if settings.label_source == "whole":
        images, labels = label_set_to_images(test_labels, settings.label_max_size_px)
        # Cropped to a multiple of 16, so no padding enters the classifier's pooling.
        logits = np.concatenate([
            np.asarray(model(image[None, : image.shape[0] // 16 * 16, : image.shape[1] // 16 * 16]
                             .astype(np.float32), training=False)["label"])
            for image in images
        ])
    else:
        if settings.label_source == "tile_rule":
            tiles, labels = tile_rule_label_arrays(data.test, settings.tile_size_px, settings.dominant_fraction)
        else:
            tiles, labels = label_set_to_arrays(test_labels, settings.tile_size_px)
        logits = np.concatenate([
            np.asarray(model(tiles[i : i + 64].astype(np.float32), training=False)["label"])
            for i in range(0, len(tiles), 64)
        ] or [np.zeros((0, len(data.class_names)))])
    row["cls_accuracy"] = float((logits.argmax(-1) == labels).mean()) if len(labels) else None
    return row


def predict_images(model, images: Sequence[np.ndarray], batch_size: int = 8) -> list[np.ndarray]:
    """Argmax masks of whole images, as :func:`weaksegtf.training.predict_image` gives them.

    Images are padded white to a multiple of :data:`SIZE_MULTIPLE` (as ``weakseg-infer`` does) and those of the
    same padded size go through the model together, which saves most of the per-call cost.
    """
    padded, groups = [], {}
    for index, image in enumerate(images):
        height, width = image.shape[:2]
        pad = ((0, (-height) % SIZE_MULTIPLE), (0, (-width) % SIZE_MULTIPLE), (0, 0))
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
    repeats: int = 5,
    classification_percents: Sequence[float] = (),
    settings: SweepSettings | None = None,
    command: str | None = None,
    log: Callable[[str], None] | None = print,
) -> SweepResult:
    """Run (or resume) the sweep and write ``runs.csv``, ``sweep.json`` and ``draws.json``.

    Args:
        data: SweepData. Pool, selection and test sets.
        out_dir: str or path. Results folder; an existing one is resumed.
        percents: list of float. s values in (0, 100]. Defaults to 5, 10, 25, 100.
        modes: list of str. Among ``S``, ``S+C``, ``S+C*``. Defaults to all three.
        repeats: int. Paired draws per setting (one draw shared by every mode of
            a repeat). Defaults to 5.
        classification_percents: list of float. c values in [0, 50] for the
            classification-head modes; empty skips them. Defaults to ``()``.
        settings: SweepSettings. Defaults to ``SweepSettings()``.
        command: str, optional. The command line, stored for the report.
        log: callable or None. Receives one line per run. Defaults to ``print``.

    Raises:
        ConfigError: unknown modes, percentages out of range, or an ``out_dir``
            that holds a sweep with other settings, or encoder weights that are
            not a file.
    """
    settings = settings or SweepSettings()
    if not settings.data:
        settings.data = data.source
    out_dir = Path(out_dir)
    plan = plan_runs(percents, modes, repeats, classification_percents)
    _check_settings(out_dir, settings)
    if settings.encoder_weights is not None and not Path(settings.encoder_weights).is_file():
        raise ConfigError(f"encoder weights {settings.encoder_weights} are not a file; expected a torchvision "
                          f"ResNet-18 .pth (see docs/training.md) or a Keras .weights.h5")
    out_dir.mkdir(parents=True, exist_ok=True)
    steps = _steps_per_epoch(data, settings)
    sweep_path = out_dir / SWEEP_JSON
    record = json.loads(sweep_path.read_text()) if sweep_path.is_file() else {"commands": []}
    record.update({"settings": asdict(settings), "steps_per_epoch": steps, "class_names": list(data.class_names),
                   "n_pool_images": len(data.pool), "n_test_images": len(data.test),
                   "n_select_images": 0 if data.select is None else len(data.select),
                   "n_units": len(unit_names(data, settings))})
    if command:
        record["commands"].append(command)
    write_text_atomic(sweep_path, json.dumps(record, indent=2) + "\n")

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
    labels, names = unit_labels(data, settings), unit_names(data, settings)
    owner = data.pool_tiles(settings.tile_size_px).owner if settings.percent_of == "patches" else None
    for number, (experiment, mode, percent, repeat) in enumerate(todo, start=1):
        seed = settings.seed + repeat
        masked, labelled = run_streams(mode, percent, labels, seed)
        key = _data_key(names, masked, labelled, seed)
        images = (masked, labelled) if owner is None else (np.unique(owner[masked]), np.unique(owner[labelled]))
        row = {"run_id": run_id(mode, percent, repeat), "experiment": experiment, "mode": mode, "percent": percent,
               "repeat": repeat, "seed": seed, "n_mask_images": len(images[0]), "n_label_images": len(images[1]),
               "n_mask_units": len(masked), "n_label_units": len(labelled), "data_key": key}
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
        draws.setdefault(f"repeat {repeat}", {})[f"s={mask_percent:g}% of {settings.percent_of}"] = [
            names[i] for i in draw_masked(labels, mask_percent, seed)
        ]
        rows.append(row)
        _write_runs(rows, runs_path)
        write_text_atomic(draws_path, json.dumps(draws, indent=1) + "\n")
        if log:
            elapsed = time.perf_counter() - started
            eta = elapsed / number * (len(todo) - number)
            how = f"same data as {row['reused_from']}" if row["reused_from"] else f"{row['train_seconds']:.0f} s"
            log(f"[{number}/{len(todo)}] {row['run_id']}: {len(masked)} masked, {len(labelled)} labelled "
                f"{settings.percent_of}, {row['steps']} steps, best epoch {row.get('best_epoch')}; F1 weighted {_show(row.get('f1_weighted'))}, F1 macro "
                f"{_show(row.get('f1_macro'))}, gland Dice {_show(row.get('foreground_dice'))}, mIoU {_show(row.get('mean_iou'))}, cls acc "
                f"{_show(row.get('cls_accuracy'))} ({how}; about {eta / 60:.0f} min left)")
    return result


def _show(value) -> str:
    return "n/a" if value is None else f"{value:.3f}"


