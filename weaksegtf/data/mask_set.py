"""A set of images with full masks: the "S" half of S+C training."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from weaksegtf.data.images import (
    IMAGE_SUFFIXES,
    MASK_SUFFIXES,
    PathLike,
    list_image_files,
    read_mask,
    read_rgb,
)
from weaksegtf.errors import ConfigError, DataError
from weaksegtf.io import write_png

_LOSSY_SUFFIXES = (".jpg", ".jpeg")


def _check_num_classes(num_classes: int, ignore_value: int) -> None:
    if isinstance(num_classes, bool) or not isinstance(num_classes, (int, np.integer)):
        raise ConfigError(f"num_classes must be an int, got {num_classes!r}")
    if not 1 <= num_classes <= 255:
        raise ConfigError(f"num_classes must be in 1..255 (uint8 masks), got {num_classes}")
    if not num_classes <= ignore_value <= 255:
        raise ConfigError(
            f"ignore_value {ignore_value} must be in {num_classes}..255, outside the "
            f"class indices 0..{num_classes - 1}"
        )


def _ensure_empty(folder: Path) -> None:
    if folder.is_dir() and any(folder.iterdir()):
        count = sum(1 for _ in folder.iterdir())
        raise ConfigError(
            f"folder {folder} already holds {count} entries; write into an empty or new folder "
            f"so old files do not mix with the new set"
        )


@dataclass(eq=False)
class MaskSet:
    """Images with pixel masks of class indices.

    On disk a mask set is a folder with ``images/`` and ``masks/``, paired by
    file stem: ``images/a.png`` (or ``.jpg``, ``.tif``, ``.bmp``) goes with
    ``masks/a.png`` (or ``.tif``, ``.bmp``; never JPEG, whose artefacts would
    invent class indices). Masks are uint8 class indices, and pixels equal to
    ``ignore_value`` are "not annotated": they count for no class and add
    nothing to the loss.

    Args:
        images: list of uint8 arrays ``(H, W, 3)``, RGB. Sizes may differ
            between images.
        masks: list of uint8 arrays ``(H, W)``, one per image, same size as it.
        names: list of str. One unique name per image, the file stem on disk.
        ignore_value: int. Mask value meaning "not annotated". Defaults to 255.

    Example:
    >>> masks = MaskSet.from_folder("data/train_masks", num_classes=3)  # doctest: +SKIP
    >>> tiny = MaskSet([np.zeros((4, 4, 3), np.uint8)], [np.ones((4, 4), np.uint8)], ["a"])
    >>> tiny.class_pixel_counts(2).tolist()
    [0, 16]
    """

    images: list[np.ndarray]
    masks: list[np.ndarray]
    names: list[str]
    ignore_value: int = 255

    def __len__(self) -> int:
        return len(self.images)

    @classmethod
    def from_folder(cls, root: PathLike, num_classes: int, ignore_value: int = 255) -> MaskSet:
        """Read and validate ``root/images`` and ``root/masks``.

        Args:
            root: str or path. The mask-set folder.
            num_classes: int. Number of classes; mask values must lie in
                ``0..num_classes - 1`` or equal ``ignore_value``.
            ignore_value: int. Mask value meaning "not annotated".
                Defaults to 255.

        Raises:
            DataError: a folder is missing or empty, an image has no mask or
                a mask no image, a mask is JPEG, a file is unreadable, or
                :meth:`validate` fails; the message names the file.
        """
        root = Path(root)
        _check_num_classes(num_classes, ignore_value)
        if not root.is_dir():
            raise DataError(f"mask set folder {root} does not exist")
        image_files = list_image_files(root / "images", IMAGE_SUFFIXES)
        mask_files = list_image_files(root / "masks", MASK_SUFFIXES + _LOSSY_SUFFIXES)
        if not image_files and not mask_files:
            raise DataError(
                f"mask set {root} is empty: no images in {root / 'images'} and no masks in "
                f"{root / 'masks'}; expected image files paired with masks by name"
            )
        for stem, mask_path in mask_files.items():
            if mask_path.suffix.lower() in _LOSSY_SUFFIXES:
                raise DataError(
                    f"mask {mask_path} is JPEG, whose compression changes class indices; "
                    f"expected a lossless mask ({', '.join(MASK_SUFFIXES)})"
                )
        for stem, image_path in image_files.items():
            if stem not in mask_files:
                raise DataError(
                    f"image {image_path.name} has no mask: expected {root / 'masks' / stem}.png"
                )
        for stem, mask_path in mask_files.items():
            if stem not in image_files:
                raise DataError(
                    f"mask {mask_path.name} has no image: expected {root / 'images' / stem}.png "
                    f"(or .jpg, .tif)"
                )
        names = list(image_files)
        mask_set = cls(
            images=[read_rgb(image_files[name]) for name in names],
            masks=[read_mask(mask_files[name]) for name in names],
            names=names,
            ignore_value=ignore_value,
        )
        mask_set._validate(
            num_classes,
            image_labels=[image_files[name].name for name in names],
            mask_labels=[mask_files[name].name for name in names],
            where=f" (in {root})",
        )
        return mask_set

    def validate(self, num_classes: int) -> None:
        """Check layouts, sizes and mask values.

        Args:
            num_classes: int. Number of classes.

        Raises:
            DataError: lists of different lengths, duplicate names, an image
                that is not uint8 RGB, a mask that is not uint8 ``(H, W)`` or
                whose size differs from its image, or a mask value outside
                ``0..num_classes - 1`` that is not ``ignore_value``.
        """
        self._validate(
            num_classes,
            image_labels=[f"{name!r}" for name in self.names],
            mask_labels=[f"{name!r}" for name in self.names],
            where="",
        )

    def _validate(
        self, num_classes: int, image_labels: list[str], mask_labels: list[str], where: str
    ) -> None:
        _check_num_classes(num_classes, self.ignore_value)
        counts = (len(self.images), len(self.masks), len(self.names))
        if len(set(counts)) != 1:
            raise DataError(
                f"mask set has {counts[0]} images, {counts[1]} masks and {counts[2]} names; "
                f"expected one mask and one name per image"
            )
        if len(set(self.names)) != len(self.names):
            duplicates = sorted({n for n in self.names if self.names.count(n) > 1})
            raise DataError(f"mask set has duplicate names {duplicates}; expected unique names")
        allowed = np.zeros(256, dtype=bool)
        allowed[:num_classes] = True
        allowed[self.ignore_value] = True
        for image, mask, image_label, mask_label in zip(
            self.images, self.masks, image_labels, mask_labels
        ):
            if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
                raise DataError(
                    f"image {image_label} is {image.dtype} with shape {tuple(image.shape)}; "
                    f"expected uint8 (H, W, 3){where}"
                )
            if mask.dtype != np.uint8 or mask.ndim != 2:
                raise DataError(
                    f"mask {mask_label} is {mask.dtype} with shape {tuple(mask.shape)}; "
                    f"expected uint8 (H, W){where}"
                )
            if mask.shape != image.shape[:2]:
                raise DataError(
                    f"mask {mask_label} has shape {tuple(mask.shape)} but image {image_label} "
                    f"is {tuple(image.shape[:2])}{where}"
                )
            present = np.flatnonzero(np.bincount(mask.ravel(), minlength=256))
            bad = [int(v) for v in present if not allowed[v]]
            if bad:
                values = "value " if len(bad) == 1 else "values "
                raise DataError(
                    f"mask {mask_label} contains {values}{', '.join(map(str, bad))}, out of range "
                    f"for {num_classes} classes (0..{num_classes - 1}; "
                    f"{self.ignore_value} = not annotated){where}"
                )

    def class_pixel_counts(self, num_classes: int) -> np.ndarray:
        """Pixels per class over all masks, not counting ``ignore_value``.

        Args:
            num_classes: int. Number of classes.

        Returns:
            int64 array of shape ``(num_classes,)``.

        Raises:
            DataError: a mask holds a value that is neither a class nor
                ``ignore_value``.
        """
        _check_num_classes(num_classes, self.ignore_value)
        totals = np.zeros(256, dtype=np.int64)
        for mask in self.masks:
            totals += np.bincount(np.asarray(mask, dtype=np.uint8).ravel(), minlength=256)
        totals[self.ignore_value] = 0
        bad = np.flatnonzero(totals[num_classes:])
        if bad.size:
            raise DataError(
                f"masks contain value {int(bad[0]) + num_classes}, out of range for "
                f"{num_classes} classes (0..{num_classes - 1}; "
                f"{self.ignore_value} = not annotated)"
            )
        return totals[:num_classes].copy()

    def subset(self, indices: Sequence[int] | np.ndarray) -> MaskSet:
        """The images at ``indices``, in that order (arrays are shared, not copied)."""
        picked = [int(i) for i in np.asarray(indices, dtype=np.int64).ravel()]
        return MaskSet(
            images=[self.images[i] for i in picked],
            masks=[self.masks[i] for i in picked],
            names=[self.names[i] for i in picked],
            ignore_value=self.ignore_value,
        )

    def write(self, root: PathLike) -> Path:
        """Write ``root/images/<name>.png`` and ``root/masks/<name>.png``.

        Raises:
            ConfigError: ``root/images`` or ``root/masks`` already holds files.
        """
        root = Path(root)
        _ensure_empty(root / "images")
        _ensure_empty(root / "masks")
        (root / "images").mkdir(parents=True, exist_ok=True)
        (root / "masks").mkdir(parents=True, exist_ok=True)
        for image, mask, name in zip(self.images, self.masks, self.names):
            write_png(root / "images" / f"{name}.png", image)
            write_png(root / "masks" / f"{name}.png", mask)
        return root
