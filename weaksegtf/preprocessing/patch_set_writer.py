"""Write patches in the folder formats the trainer reads.

Layout under the output folder::

    masks_set/images/NAME.png   RGB patch
    masks_set/masks/NAME.png    uint8 class indices, 255 = not annotated
    label_set/images/NAME.png   RGB patch
    label_set/labels.csv        "path,label", path relative to label_set/
    manifest.csv                provenance of every patch (see manifest.py)
"""

from __future__ import annotations

import csv
import os
import shutil
from pathlib import Path

from weaksegtf.errors import ConfigError
from weaksegtf.io import write_png
from weaksegtf.output_names import claim_name
from weaksegtf.preprocessing.manifest import PatchRecord, write_manifest
from weaksegtf.preprocessing.patch_extraction import Patch
from weaksegtf.preprocessing.tile_rule import LABEL, MASK

MASK_SET, LABEL_SET = "masks_set", "label_set"
MANIFEST_NAME, LABELS_NAME = "manifest.csv", "labels.csv"


class PatchSetWriter:
    """Writes a mask set, a label set and the manifest into one folder.

    Args:
        out_dir: str or path. Output folder, created if missing.
        overwrite: bool. Replace existing ``masks_set/``, ``label_set/`` and
            ``manifest.csv``. Defaults to ``False`` (refuse to mix with them).

    Example:
    >>> with PatchSetWriter("out") as writer:  # doctest: +SKIP
    ...     for patch in read_patches(slide, plans, 2.0, 128):
    ...         writer.write(patch, "slide.svs")
    """

    def __init__(self, out_dir: Path | str, overwrite: bool = False) -> None:
        self.out_dir = Path(out_dir)
        existing = [
            self.out_dir / name
            for name in (MASK_SET, LABEL_SET, MANIFEST_NAME)
            if (self.out_dir / name).exists()
        ]
        if existing and not overwrite:
            raise ConfigError(
                f"output folder {self.out_dir} already holds {', '.join(p.name for p in existing)}; "
                f"expected an empty folder (or pass overwrite=True / --overwrite to replace them)"
            )
        for path in existing:
            shutil.rmtree(path) if path.is_dir() else path.unlink()
        for folder in (
            self.out_dir / MASK_SET / "images",
            self.out_dir / MASK_SET / "masks",
            self.out_dir / LABEL_SET / "images",
        ):
            folder.mkdir(parents=True, exist_ok=True)
        self.records: list[PatchRecord] = []
        self._names: set[str] = set()
        self._stems: dict[str, str] = {}

    def stem_of(self, slide: str | Path) -> str:
        """The name prefix of ``slide``'s patches (and thumbnails): its file name without the suffix, or
        ``<name>-<8 hex digits>`` when another slide of this set already holds that name
        (:func:`weaksegtf.output_names.claim_name`, the convention of ``weakseg-infer``'s folders)."""
        return claim_name(slide, self._stems)

    def _unique_name(self, stem: str, patch: Patch) -> str:
        plan = patch.plan
        name = f"{stem}_x{plan.x_px}_y{plan.y_px}_{plan.source}"
        if name in self._names:
            raise ConfigError(f"patch {name}.png was already written; expected one stem per slide")
        self._names.add(name)
        return name + ".png"

    def write(self, patch: Patch, slide: str, stem: str | None = None) -> PatchRecord:
        """Write one patch to its set and remember its manifest row.

        Args:
            patch: Patch. A ``"mask"`` or ``"label"`` patch.
            slide: str. The slide path, recorded in the manifest.
            stem: str, optional. File-name prefix. Defaults to :meth:`stem_of` the slide.
        """
        plan = patch.plan
        name = self._unique_name(stem or self.stem_of(slide), patch)
        if plan.kind == MASK:
            if plan.mask is None:
                raise ConfigError(f"mask patch {name} has no mask")
            write_png(self.out_dir / MASK_SET / "images" / name, patch.image)
            write_png(self.out_dir / MASK_SET / "masks" / name, plan.mask)
            relative, set_name = f"{MASK_SET}/images/{name}", MASK_SET
        elif plan.kind == LABEL:
            write_png(self.out_dir / LABEL_SET / "images" / name, patch.image)
            relative, set_name = f"{LABEL_SET}/images/{name}", LABEL_SET
        else:
            raise ConfigError(f"patch {name} is {plan.kind!r}; only mask and label patches are written")
        record = PatchRecord(
            path=relative,
            set=set_name,
            slide=str(slide),
            x_px=plan.x_px,
            y_px=plan.y_px,
            level=patch.level,
            mpp=patch.mpp,
            patch_size_px=patch.image.shape[0],
            source=plan.source,
            label=plan.label,
            classes=" ".join(str(c) for c in plan.classes),
            tissue_fraction=plan.tissue_fraction,
        )
        self.records.append(record)
        return record

    def close(self) -> None:
        """Write ``label_set/labels.csv`` and ``manifest.csv``."""
        labels_path = self.out_dir / LABEL_SET / LABELS_NAME
        partial = labels_path.with_name(LABELS_NAME + ".partial")
        with partial.open("w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(["path", "label"])
            for record in self.records:
                if record.set == LABEL_SET:
                    writer.writerow([record.path[len(LABEL_SET) + 1 :], record.label])
        os.replace(partial, labels_path)
        write_manifest(self.records, self.out_dir / MANIFEST_NAME)

    def __enter__(self) -> "PatchSetWriter":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
