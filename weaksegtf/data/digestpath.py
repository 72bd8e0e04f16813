"""DigestPath2019 colonoscopy tissue segmentation: malignant lesions on tissue slices, resized as the paper does.

Layout, as the challenge's ``tissue-train-pos-v1.zip`` and ``tissue-train-neg.zip``
unpack (Li et al. 2019; digestpath2019.grand-challenge.org):

- ``tissue-train-pos-v1/<name>.jpg`` with ``<name>_mask.jpg``: 250 images
  with malignant lesions and their binary masks (JPEG, so values near 0 or
  255; a pixel is malignant from 128 up);
- ``tissue-train-neg/<name>.jpg``: 410 benign images and **no** masks (all
  background). Mask files some tools write there are ignored.

The name of a patch is ``<case>_<scan date time>-lv1-<x>-<y>-<w>-<h>``: the
part before ``-lv1-`` is the whole-slide scan it was cut from. The 660 patches
come from 324 slides (section 3.1), and a slide's patches stay together in
one set of the split.

Classes: 0 benign (everything not malignant, glass included), 1 malignant,
in the jet colours of the paper's figures. Images average about 5000 x 5000 px
at 20x; the paper resizes each to 1024 x 1024 px (``size_px``, aspect ratio
not kept), or pass ``mpp`` to resize to one resolution keeping the aspect.

Data: DigestPath 2019 challenge (MICCAI 2019), cited by the paper as Li et al.,
"Signet ring cell detection with a semi-supervised learning framework", IPMI
2019; the challenge's terms (registration, research use, no redistribution).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import cv2
import numpy as np

from weaksegtf.data.dataset_split import (
    PAPER_FRACTIONS,
    SPLIT_FOLDERS,
    DatasetSplit,
    check_new_folder,
    plan_grouped_split,
    split_summary,
    write_split_json,
)
from weaksegtf.data.images import PathLike, list_image_files, read_rgb
from weaksegtf.data.mask_set import MaskSet
from weaksegtf.errors import ConfigError, DataError
from weaksegtf.io import write_png

CLASS_NAMES: tuple[str, ...] = ("benign", "malignant")
#: The jet colormap at 0 and 1: the colours of the paper's DigestPath2019 figures.
CLASS_COLORS: tuple[tuple[int, int, int], ...] = ((0, 0, 128), (128, 0, 0))
POSITIVE_FOLDERS: tuple[str, ...] = ("tissue-train-pos-v1", "tissue-train-pos")
NEGATIVE_FOLDER = "tissue-train-neg"
#: Folder some copies keep the two training folders in.
DATASET_FOLDER = "Colonoscopy_tissue_segment_dataset"
MASK_SUFFIX = "_mask"
SLIDE_SEPARATOR = "-lv1-"
#: Paper's size: every image resized to 1024 x 1024 px (section 3.1).
PAPER_SIZE_PX = 1024
#: Microns per pixel: scanned at 20x (section 3.1); the challenge states no pixel size, so this is
#: the usual 20x value. Pass ``native_mpp`` when it is known.
NOMINAL_MPP = 0.5
# JPEG masks hold values near 0 and 255; the midpoint separates them.
_MALIGNANT_FROM = 128
_IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".tif", ".tiff")


@dataclass(frozen=True)
class DigestPathImage:
    """One training image.

    Args:
        name: str. File stem.
        image_path: Path. The image.
        mask_path: Path, optional. Its ``_mask`` file; ``None`` for a negative image.
        label: int. 1 for an image from the positive folder, 0 for a negative one.
        slide: str. The whole-slide scan it was cut from (the name before ``-lv1-``).
    """

    name: str
    image_path: Path
    mask_path: Path | None
    label: int
    slide: str


def digestpath_slide(name: str) -> str:
    """The whole-slide scan of a patch: its name before ``-lv1-`` (the whole name when there is none).

    Example:
    >>> digestpath_slide("18-03912A_2019-05-07 22_55_07-lv1-13993-9429-2461-4154")
    '18-03912A_2019-05-07 22_55_07'
    """
    return name.split(SLIDE_SEPARATOR, 1)[0] if SLIDE_SEPARATOR in name else name


def _dataset_folder(root: Path) -> Path:
    for place in (root, root / DATASET_FOLDER):
        if any((place / name).is_dir() for name in POSITIVE_FOLDERS) or (place / NEGATIVE_FOLDER).is_dir():
            return place
    raise DataError(f"{root} has neither {POSITIVE_FOLDERS[0]}/ nor {NEGATIVE_FOLDER}/; expected the unpacked "
                    f"DigestPath2019 tissue training data ({POSITIVE_FOLDERS[0]}.zip and {NEGATIVE_FOLDER}.zip)")


def read_digestpath(root: PathLike) -> list[DigestPathImage]:
    """List the positive images with their masks and the negative images.

    Args:
        root: str or path. Folder holding ``tissue-train-pos-v1/`` and
            ``tissue-train-neg/`` (or ``Colonoscopy_tissue_segment_dataset/`` with them).

    Raises:
        DataError: a folder is missing or empty, a positive image has no
            ``_mask`` file or a mask no image, or a name repeats across folders.

    Example:
    >>> images = read_digestpath("DigestPath2019")  # doctest: +SKIP
    >>> sum(i.label for i in images), len(images)  # doctest: +SKIP
    (250, 660)
    """
    folder = _dataset_folder(Path(root))
    positive = next((folder / name for name in POSITIVE_FOLDERS if (folder / name).is_dir()), None)
    if positive is None:
        raise DataError(f"{folder} has no {POSITIVE_FOLDERS[0]}/; expected the positive images with their "
                        f"<name>{MASK_SUFFIX}.jpg masks")
    negative = folder / NEGATIVE_FOLDER
    if not negative.is_dir():
        raise DataError(f"{folder} has no {NEGATIVE_FOLDER}/; expected the negative images (no masks)")
    files = list_image_files(positive, _IMAGE_SUFFIXES)
    masks = {stem[: -len(MASK_SUFFIX)]: path for stem, path in files.items() if stem.endswith(MASK_SUFFIX)}
    images = {stem: path for stem, path in files.items() if not stem.endswith(MASK_SUFFIX)}
    if not images:
        raise DataError(f"{positive} holds no images; expected <name>.jpg with <name>{MASK_SUFFIX}.jpg")
    for stem, path in images.items():
        if stem not in masks:
            raise DataError(f"positive image {path.name} has no mask: expected {positive / (stem + MASK_SUFFIX)}.jpg")
    for stem, path in masks.items():
        if stem not in images:
            raise DataError(f"mask {path.name} has no image: expected {positive / stem}.jpg")
    found = [DigestPathImage(stem, path, masks[stem], 1, digestpath_slide(stem)) for stem, path in images.items()]
    negatives = {s: p for s, p in list_image_files(negative, _IMAGE_SUFFIXES).items() if not s.endswith(MASK_SUFFIX)}
    if not negatives:
        raise DataError(f"{negative} holds no images; expected the negative <name>.jpg images")
    for stem, path in negatives.items():
        if stem in images:
            raise DataError(f"{path} and {images[stem]} share the name {stem!r}; expected each image once")
        found.append(DigestPathImage(stem, path, None, 0, digestpath_slide(stem)))
    return found


def _resize(image: np.ndarray, mask: np.ndarray, size_px: int | None, scale: float | None):
    from weaksegtf.data.patches import resize_image, resize_mask

    if scale is not None:
        return resize_image(image, scale), resize_mask(mask, scale)
    height, width = image.shape[:2]
    shrink = size_px * size_px < height * width
    # As weaksegtf.data.patches: area averaging to shrink, nearest-exact for classes.
    image = cv2.resize(image, (size_px, size_px), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)
    mask = cv2.resize(mask, (size_px, size_px), interpolation=cv2.INTER_NEAREST_EXACT)
    return image, mask


def load_digestpath_image(
    record: DigestPathImage, size_px: int | None = PAPER_SIZE_PX, scale: float | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """One image and its class mask (0 benign, 1 malignant), resized.

    Args:
        record: DigestPathImage. From :func:`read_digestpath`.
        size_px: int, optional. Resize to ``size_px`` x ``size_px``. Defaults to 1024.
        scale: float, optional. Resize by this factor instead (``size_px`` ignored).

    Raises:
        DataError: the mask's size differs from the image's, or a file is unreadable.
    """
    image, mask, _ = _load(record, size_px, scale)
    return image, mask


def _load(
    record: DigestPathImage, size_px: int | None, scale: float | None
) -> tuple[np.ndarray, np.ndarray, tuple[int, int]]:
    image = read_rgb(record.image_path)
    if record.mask_path is None:
        mask = np.zeros(image.shape[:2], np.uint8)
    else:
        # A JPEG mask may come back with three slightly different channels; the brightest decides.
        mask = (read_rgb(record.mask_path).max(axis=2) >= _MALIGNANT_FROM).astype(np.uint8)
        if mask.shape != image.shape[:2]:
            raise DataError(f"mask {record.mask_path.name} has shape {mask.shape} but image "
                            f"{record.image_path.name} is {image.shape[:2]}; expected the same size")
    original = image.shape[:2]
    image, mask = _resize(image, mask, size_px, scale)
    return image, mask, original


def _check_resize(size_px: int | None, mpp: float | None) -> None:
    if (size_px is None) == (mpp is None):
        raise ConfigError(f"give exactly one of size_px (the paper's {PAPER_SIZE_PX}) and mpp, got size_px={size_px!r} "
                          f"and mpp={mpp!r}")
    if size_px is not None and (isinstance(size_px, bool) or not isinstance(size_px, (int, np.integer))
                                or size_px < 16):
        raise ConfigError(f"size_px must be an int of at least 16, got {size_px!r}")


def _plan(
    root: PathLike, size_px: int | None, mpp: float | None, seed: int, fractions: Sequence[float], native_mpp: float
) -> tuple[list[DigestPathImage], list[list[str]], dict[str, Any]]:
    from weaksegtf.model_card import check_mpp

    _check_resize(size_px, mpp)
    native_mpp = check_mpp(native_mpp, "native_mpp")
    if mpp is not None:
        check_mpp(mpp)
    records = read_digestpath(root)
    sets = plan_grouped_split([r.name for r in records], [r.slide for r in records], [r.label for r in records],
                              fractions, seed)
    details = {"size_px": size_px, "native_mpp": native_mpp, "positive": [r.name for r in records if r.label],
               "negative": [r.name for r in records if not r.label]}
    return records, list(sets), details


def _mpp_of(image_shape: tuple[int, ...], resized_shape: tuple[int, ...], native_mpp: float) -> list[float]:
    """``[mpp_x, mpp_y]`` of a resized image."""
    return [round(native_mpp * image_shape[1] / resized_shape[1], 6),
            round(native_mpp * image_shape[0] / resized_shape[0], 6)]


def _iter_loaded(
    records: list[DigestPathImage], size_px: int | None, mpp: float | None, native_mpp: float
) -> Iterator[tuple[DigestPathImage, np.ndarray, np.ndarray, list[float]]]:
    scale = None if mpp is None else native_mpp / mpp
    for record in records:
        image, mask, original = _load(record, size_px, scale)
        yield record, image, mask, _mpp_of(original, image.shape, native_mpp)


def load_digestpath2019(
    root: PathLike,
    size_px: int | None = PAPER_SIZE_PX,
    mpp: float | None = None,
    seed: int = 0,
    fractions: Sequence[float] = PAPER_FRACTIONS,
    native_mpp: float = NOMINAL_MPP,
) -> DatasetSplit:
    """DigestPath2019 as training, selection and test mask sets (50 / 25 / 25 %, whole slides at a time).

    Holds every image in memory (about 4 MB each at 1024 px);
    :func:`prepare_digestpath2019` writes them one at a time instead.

    Args:
        root: str or path. Folder with ``tissue-train-pos-v1/`` and ``tissue-train-neg/``.
        size_px: int, optional. Resize every image to this square (the paper's
            1024). Defaults to 1024.
        mpp: float, optional. Instead, resize to this resolution keeping the
            aspect ratio (pass ``size_px=None``).
        seed: int. Seed of the split. Defaults to 0.
        fractions: three floats. Shares of training, selection and test images.
        native_mpp: float. Microns per pixel of the images. Defaults to
            :data:`NOMINAL_MPP` (0.5, 20x).

    Raises:
        ConfigError: both or neither of ``size_px`` and ``mpp``, or bad fractions.
        DataError: the folder does not have the challenge's layout (see :func:`read_digestpath`).
    """
    records, sets, details = _plan(root, size_px, mpp, seed, fractions, native_mpp)
    loaded = {r.name: (image, mask, pixel) for r, image, mask, pixel in _iter_loaded(records, size_px, mpp, native_mpp)}
    parts = [MaskSet([loaded[n][0] for n in names], [loaded[n][1] for n in names], list(names)) for names in sets]
    for part in parts:
        part.validate(len(CLASS_NAMES))
    details["mpp_per_image"] = {name: value[2] for name, value in loaded.items()}
    return DatasetSplit(
        train=parts[0], select=parts[1], test=parts[2], class_names=CLASS_NAMES, class_colors=CLASS_COLORS,
        dataset=_describe(root, size_px, mpp), mpp=mpp, seed=seed, groups={r.name: r.slide for r in records},
        details=details,
    )


def _describe(root: PathLike, size_px: int | None, mpp: float | None) -> str:
    how = f"resized to {size_px} x {size_px} px" if size_px is not None else f"resized to {mpp:g} um/px"
    return f"DigestPath2019 tissue segmentation (Li et al. 2019), {Path(root).name}, {how}"


def prepare_digestpath2019(
    root: PathLike,
    out_dir: PathLike,
    size_px: int | None = PAPER_SIZE_PX,
    mpp: float | None = None,
    seed: int = 0,
    fractions: Sequence[float] = PAPER_FRACTIONS,
    native_mpp: float = NOMINAL_MPP,
    progress: bool | Callable[[str], None] = False,
) -> dict[str, Any]:
    """:func:`load_digestpath2019`, written to ``out_dir`` one image at a time.

    Writes ``train/``, ``select/`` and ``test/`` as mask sets and ``split.json``,
    never holding more than one image in memory.

    Returns:
        The ``split.json`` document.

    Raises:
        ConfigError: ``out_dir`` already holds files, or bad options.
        DataError: see :func:`read_digestpath`.
    """
    say = progress if callable(progress) else (print if progress else (lambda line: None))
    out_dir = check_new_folder(out_dir)
    records, sets, details = _plan(root, size_px, mpp, seed, fractions, native_mpp)
    by_name = {r.name: r for r in records}
    pixel_sizes = {}
    for folder, names in zip(SPLIT_FOLDERS, sets):
        say(f"{folder}: {len(names)} images")
        for record, image, mask, pixel in _iter_loaded([by_name[n] for n in names], size_px, mpp, native_mpp):
            write_png(out_dir / folder / "images" / f"{record.name}.png", image)
            write_png(out_dir / folder / "masks" / f"{record.name}.png", mask)
            pixel_sizes[record.name] = pixel
    details["mpp_per_image"] = pixel_sizes
    document = split_summary(
        dataset=_describe(root, size_px, mpp), class_names=CLASS_NAMES, class_colors=CLASS_COLORS, mpp=mpp,
        seed=seed, names=dict(zip(SPLIT_FOLDERS, sets)), groups={r.name: r.slide for r in records}, details=details,
    )
    write_split_json(out_dir, document)
    return document
