"""Gleason2019: prostate tissue-microarray cores, each mapped by several pathologists.

Layout, as the challenge's ``Train Imgs.zip`` and ``Maps1_T.zip`` ..
``Maps6_T.zip`` unpack side by side (Nir et al. 2018; gleason2019.grand-challenge.org):

- ``Train Imgs/slide001_core003.jpg`` ...: the 244 training cores (some
  copies rename the folder ``Train_imgs``; both are read);
- ``Maps1_T/`` .. ``Maps6_T/``: one folder per pathologist, holding
  ``slide001_core003_classimg_nonconvex.png``, a map of class codes the size
  of the core. Not every pathologist mapped every core (each core has four to
  six maps, section 3.1).

Map codes: 0 not annotated (background), 1 benign, 3, 4 and 5 Gleason
patterns 3, 4 and 5. Code 6 also occurs, rarely; the challenge does not
document it and public preprocessing scripts disagree (benign, or invalid), so
by default its pixels count as not annotated (255). Any other code is an
error naming the map.

Classes (section 3.1, "the Gleason grade (1 to 5) of each pixel"): 0
background, 1 benign, 2 Gleason 3, 3 Gleason 4, 4 Gleason 5, in the jet
colours of the paper's figures.

Which map is the ground truth (``map=``): ``"first"``, the paper's, is each
core's lowest-numbered map (``Maps1_T`` when that pathologist mapped it);
``"majority"`` is the per-pixel plurality of the core's maps, ties and
pixels nobody annotated left not annotated; an integer k uses ``Maps{k}_T``
only and leaves out the cores that pathologist did not map.

Data: Nir et al., "Automatic grading of prostate cancer in digitized
histopathology images: Learning from multiple experts", Medical Image
Analysis 2018; Gleason2019 challenge (MICCAI 2019), training data for research use.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from weaksegtf.data.dataset_split import (
    PAPER_FRACTIONS,
    DatasetSplit,
    dominant_foreground_label,
    plan_grouped_split,
)
from weaksegtf.data.images import PathLike, list_image_files, read_mask, read_rgb
from weaksegtf.data.mask_set import MaskSet
from weaksegtf.errors import ConfigError, DataError

CLASS_NAMES: tuple[str, ...] = ("background", "benign", "Gleason 3", "Gleason 4", "Gleason 5")
#: The jet colormap at 0, 1/4, ..., 1: the colours of the paper's Gleason2019 figures.
CLASS_COLORS: tuple[tuple[int, int, int], ...] = (
    (0, 0, 128), (0, 128, 255), (125, 255, 122), (255, 148, 0), (128, 0, 0),
)
#: Map code -> class index (255: not annotated). Code 6 is undocumented; see the module docstring.
CLASS_CODES: dict[int, int] = {0: 0, 1: 1, 3: 2, 4: 3, 5: 4, 6: 255}
IMAGE_FOLDERS: tuple[str, ...] = ("Train Imgs", "Train_imgs")
MAP_FOLDER = "Maps{}_T"
MAP_SUFFIX = "_classimg_nonconvex.png"
#: Pathologists' map folders the challenge distributes.
PATHOLOGISTS: tuple[int, ...] = (1, 2, 3, 4, 5, 6)
#: Microns per pixel of the cores: scanned at 40x (Nir et al. 2018); the challenge states no pixel
#: size, so this is the usual 40x value. Pass ``native_mpp`` when your scanner's is known.
NOMINAL_MPP = 0.25
#: Each side divided by this by default: the paper's "8x downsampling per extracted patch".
DEFAULT_DOWNSAMPLE = 8
MAP_CHOICES = ("first", "majority")


@dataclass(frozen=True)
class GleasonCore:
    """One training core and its maps.

    Args:
        name: str. File stem, such as ``"slide001_core003"``.
        image_path: Path. The ``.jpg``.
        map_paths: dict of int to Path. Pathologist number -> map file.
    """

    name: str
    image_path: Path
    map_paths: dict[int, Path]


def _image_folder(root: Path) -> Path:
    for name in IMAGE_FOLDERS:
        if (root / name).is_dir():
            return root / name
    raise DataError(f"{root} has no {IMAGE_FOLDERS[0]}/ folder (nor {IMAGE_FOLDERS[1]}/); expected the unpacked "
                    f"Gleason2019 training data: '{IMAGE_FOLDERS[0]}/slide001_core003.jpg' and Maps1_T/ .. Maps6_T/")


def read_gleason2019(root: PathLike) -> list[GleasonCore]:
    """List the training cores and every pathologist's map of each.

    Raises:
        DataError: the image folder or every map folder is missing, a map
            folder holds a file not named ``<core>_classimg_nonconvex.png``, a
            map has no core, or a core has no map in any folder.

    Example:
    >>> cores = read_gleason2019("Gleason2019")  # doctest: +SKIP
    >>> len(cores), sorted(cores[0].map_paths)  # doctest: +SKIP
    (244, [1, 2, 3, 4, 5, 6])
    """
    root = Path(root)
    image_folder = _image_folder(root)
    images = list_image_files(image_folder, (".jpg", ".jpeg", ".png", ".tif", ".tiff"))
    if not images:
        raise DataError(f"{image_folder} holds no images; expected slideNNN_coreMMM.jpg cores")
    folders = {k: root / MAP_FOLDER.format(k) for k in PATHOLOGISTS if (root / MAP_FOLDER.format(k)).is_dir()}
    if not folders:
        raise DataError(f"{root} has no map folder; expected {MAP_FOLDER.format(1)}/ .. {MAP_FOLDER.format(6)}/ "
                        f"holding <core>{MAP_SUFFIX}")
    maps: dict[str, dict[int, Path]] = {name: {} for name in images}
    for number, folder in folders.items():
        for path in sorted(folder.iterdir()):
            if path.name.startswith(".") or not path.is_file():
                continue
            if not path.name.endswith(MAP_SUFFIX):
                raise DataError(f"{path} is not named <core>{MAP_SUFFIX}; expected maps such as "
                                f"{folder / ('slide001_core003' + MAP_SUFFIX)}")
            core = path.name[: -len(MAP_SUFFIX)]
            if core not in maps:
                raise DataError(f"map {path} has no core: expected {image_folder / core}.jpg")
            maps[core][number] = path
    unmapped = [name for name, found in maps.items() if not found]
    if unmapped:
        looked = ", ".join(f"{folder.name}/" for folder in folders.values())
        raise DataError(f"core {images[unmapped[0]]} has no map in {looked}; expected {unmapped[0]}{MAP_SUFFIX} "
                        f"in at least one ({len(unmapped)} cores without a map)")
    return [GleasonCore(name, path, dict(sorted(maps[name].items()))) for name, path in images.items()]


def _code_table(class_codes: Mapping[int, int]) -> np.ndarray:
    table = np.full(256, -1, dtype=np.int16)
    for code, index in class_codes.items():
        if not (0 <= int(code) <= 255 and (0 <= int(index) < len(CLASS_NAMES) or int(index) == 255)):
            raise ConfigError(f"class code {code} -> {index} is out of range; expected codes 0..255 and classes "
                              f"0..{len(CLASS_NAMES) - 1} or 255 (not annotated)")
        table[int(code)] = int(index)
    return table


def _read_map(path: Path, table: np.ndarray, shape: tuple[int, int], image_path: Path) -> np.ndarray:
    codes = read_mask(path)
    if codes.shape != shape:
        raise DataError(f"map {path} has shape {codes.shape} but core {image_path.name} is {shape}; expected a map "
                        f"the size of its core")
    present = np.flatnonzero(np.bincount(codes.ravel(), minlength=256))
    unknown = [int(v) for v in present if table[v] < 0]
    if unknown:
        known = sorted(int(c) for c in np.flatnonzero(table >= 0))
        raise DataError(f"map {path} holds code{'s' if len(unknown) > 1 else ''} {', '.join(map(str, unknown))}; "
                        f"expected Gleason2019 map codes {known}")
    return table[codes].astype(np.uint8)


def majority_vote(masks: Sequence[np.ndarray], num_classes: int, ignore_value: int = 255) -> np.ndarray:
    """Per-pixel plurality of class masks; ties and pixels no mask annotates become ``ignore_value``.

    Example:
    >>> a, b, c = (np.array([[1, 2, 255, 1]], np.uint8), np.array([[1, 3, 255, 2]], np.uint8),
    ...            np.array([[2, 3, 255, 255]], np.uint8))
    >>> majority_vote([a, b, c], 4).tolist()
    [[1, 3, 255, 255]]
    """
    stack = np.stack(masks)
    counts = np.stack([(stack == c).sum(axis=0, dtype=np.uint8) for c in range(num_classes)])
    best = counts.argmax(axis=0).astype(np.uint8)
    top = counts.max(axis=0)
    tied = (counts == top[None]).sum(axis=0) > 1
    return np.where((top == 0) | tied, np.uint8(ignore_value), best).astype(np.uint8)


def gleason2019_mask(
    core: GleasonCore,
    map: str | int = "first",
    class_codes: Mapping[int, int] | None = None,
    downsample: int = 1,
    shape: tuple[int, int] | None = None,
) -> np.ndarray | None:
    """A core's ground truth as class indices, from the chosen map(s).

    Args:
        core: GleasonCore. From :func:`read_gleason2019`.
        map: str or int. ``"first"``, ``"majority"`` or a pathologist 1..6.
            Defaults to ``"first"`` (the paper's).
        class_codes: mapping int -> int, optional. Map code -> class index
            (255 not annotated). Defaults to :data:`CLASS_CODES`.
        downsample: int. Divide each side by this (nearest neighbour, so each
            map is sampled at the same pixels before voting). Defaults to 1.
        shape: (int, int), optional. ``(height, width)`` of the core; read
            from the image when not given.

    Returns:
        uint8 ``(H, W)`` mask, or ``None`` when ``map`` is a pathologist who did
        not map this core.

    Raises:
        DataError: a map's size differs from its core's, or it holds an unknown code.
    """
    from weaksegtf.data.patches import resize_mask

    choice = _check_map(map)
    table = _code_table(CLASS_CODES if class_codes is None else class_codes)
    if shape is None:
        shape = read_rgb(core.image_path).shape[:2]
    if choice == "first":
        numbers = [min(core.map_paths)]
    elif choice == "majority":
        numbers = list(core.map_paths)
    elif choice in core.map_paths:
        numbers = [choice]
    else:
        return None
    masks = []
    for number in numbers:
        mask = _read_map(core.map_paths[number], table, tuple(shape), core.image_path)
        masks.append(mask if downsample == 1 else resize_mask(mask, 1.0 / downsample))
    return masks[0] if len(masks) == 1 else majority_vote(masks, len(CLASS_NAMES))


def _check_map(map: str | int) -> str | int:
    if isinstance(map, str) and map.isdigit():
        map = int(map)
    pathologist = isinstance(map, (int, np.integer)) and not isinstance(map, bool) and map in PATHOLOGISTS
    if not (pathologist or (isinstance(map, str) and map in MAP_CHOICES)):
        raise ConfigError(f"map must be 'first', 'majority' or a pathologist in {list(PATHOLOGISTS)}, got {map!r}")
    return map if isinstance(map, str) else int(map)


def load_gleason2019(
    root: PathLike,
    map: str | int = "first",
    downsample: int = DEFAULT_DOWNSAMPLE,
    seed: int = 0,
    fractions: Sequence[float] = PAPER_FRACTIONS,
    class_codes: Mapping[int, int] | None = None,
    native_mpp: float = NOMINAL_MPP,
) -> DatasetSplit:
    """Gleason2019 as training, selection and test mask sets (the paper's 50 / 25 / 25 % of cores).

    Cores are the unit of the split (the challenge distributes no patient
    ids), balanced by each core's most frequent foreground class.

    Args:
        root: str or path. Folder with ``Train Imgs/`` and ``Maps1_T/`` .. ``Maps6_T/``.
        map: str or int. Ground truth: ``"first"`` (default, the paper's),
            ``"majority"``, or a pathologist 1..6.
        downsample: int. Divide each side by this. Defaults to 8.
        seed: int. Seed of the split. Defaults to 0.
        fractions: three floats. Shares of training, selection and test cores.
            Defaults to 0.5, 0.25, 0.25.
        class_codes: mapping int -> int, optional. Map code -> class index.
            Defaults to :data:`CLASS_CODES`.
        native_mpp: float. Microns per pixel of the cores. Defaults to
            :data:`NOMINAL_MPP` (0.25, 40x).

    Raises:
        ConfigError: a bad ``map``, ``downsample``, ``fractions`` or code table.
        DataError: the folder does not have the challenge's layout (see
            :func:`read_gleason2019`), or a map does not fit its core.

    Example:
    >>> split = load_gleason2019("Gleason2019", map="majority")  # doctest: +SKIP
    >>> split.write("prepared/gleason2019-majority")  # doctest: +SKIP
    """
    from weaksegtf.data.patches import resize_image
    from weaksegtf.model_card import check_mpp

    choice = _check_map(map)
    if isinstance(downsample, bool) or not isinstance(downsample, (int, np.integer)) or downsample < 1:
        raise ConfigError(f"downsample must be an int of at least 1, got {downsample!r}")
    native_mpp = check_mpp(native_mpp, "native_mpp")
    _code_table(CLASS_CODES if class_codes is None else class_codes)  # refuse a bad table before reading
    cores = read_gleason2019(root)
    images, masks, names, without = [], [], [], []
    for core in cores:
        if isinstance(choice, int) and choice not in core.map_paths:
            without.append(core.name)  # this pathologist did not map the core
            continue
        image = read_rgb(core.image_path)
        mask = gleason2019_mask(core, choice, class_codes, downsample, shape=image.shape[:2])
        images.append(image if downsample == 1 else resize_image(image, 1.0 / downsample))
        masks.append(mask)
        names.append(core.name)
    if len(names) < 3:
        raise DataError(f"only {len(names)} cores of {root} have a map for map={choice!r}; a training, selection "
                        f"and test split needs at least 3")
    everything = MaskSet(images, masks, names)
    everything.validate(len(CLASS_NAMES))
    labels = [dominant_foreground_label(mask) for mask in masks]
    train, select, test = plan_grouped_split(names, names, labels, fractions, seed)
    position = {name: i for i, name in enumerate(names)}
    details: dict[str, Any] = {
        "map": choice,
        "class_codes": {str(k): v for k, v in (CLASS_CODES if class_codes is None else class_codes).items()},
        "downsample": int(downsample),
        "native_mpp": native_mpp,
        "maps_per_core": {core.name: sorted(core.map_paths) for core in cores},
        "cores_without_map": without,
    }
    return DatasetSplit(
        train=everything.subset([position[n] for n in train]),
        select=everything.subset([position[n] for n in select]),
        test=everything.subset([position[n] for n in test]),
        class_names=CLASS_NAMES,
        class_colors=CLASS_COLORS,
        dataset=f"Gleason2019 (Nir et al. 2018), {Path(root).name}, map {choice}, downsample {downsample}",
        mpp=native_mpp * downsample,
        seed=seed,
        groups={name: name for name in names},
        details=details,
    )


def prepare_gleason2019(root: PathLike, out_dir: PathLike, **options: Any) -> dict[str, Any]:
    """:func:`load_gleason2019` with ``options``, written to the new folder ``out_dir``; returns ``split.json``.

    Raises:
        ConfigError: ``out_dir`` already holds files (checked before any core is read).
    """
    from weaksegtf.data.dataset_split import check_new_folder

    check_new_folder(out_dir)
    split = load_gleason2019(root, **options)
    split.write(out_dir)
    return split.summary()
