"""The manifest: one CSV row per written patch, recording where it came from."""

from __future__ import annotations

import csv
import os
from collections.abc import Iterable
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from weaksegtf.errors import DataError


@dataclass(frozen=True)
class PatchRecord:
    """Provenance of one written patch.

    Attributes:
        path: str. Image file, relative to the output folder.
        set: str. ``"masks_set"`` or ``"label_set"``.
        slide: str. Slide file the patch was read from.
        x_px: int. Left edge in level-0 pixels of the slide.
        y_px: int. Top edge in level-0 pixels of the slide.
        level: int. Pyramid level the pixels were read from.
        mpp: float. Microns per pixel of the patch.
        patch_size_px: int. Patch side in pixels.
        source: str. ``"centred"`` or ``"tiled"``.
        label: int or None. Class of a label-set patch.
        classes: str. Annotated classes in the patch, space-separated.
        tissue_fraction: float. Share of tissue in the patch.
    """

    path: str
    set: str
    slide: str
    x_px: int
    y_px: int
    level: int
    mpp: float
    patch_size_px: int
    source: str
    label: int | None
    classes: str
    tissue_fraction: float


MANIFEST_COLUMNS: tuple[str, ...] = tuple(f.name for f in fields(PatchRecord))


def write_manifest(records: Iterable[PatchRecord], path: Path | str) -> None:
    """Write records as CSV (atomically: a partial file never replaces a good one)."""
    path = Path(path)
    partial = path.with_name(path.name + ".partial")
    with partial.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=MANIFEST_COLUMNS)
        writer.writeheader()
        for record in records:
            row = asdict(record)
            row["label"] = "" if record.label is None else record.label
            row["mpp"] = f"{record.mpp:.6g}"
            row["tissue_fraction"] = f"{record.tissue_fraction:.4f}"
            writer.writerow(row)
    os.replace(partial, path)


def read_manifest(path: Path | str) -> list[PatchRecord]:
    """Read a manifest written by :func:`write_manifest`.

    Raises:
        DataError: missing file or columns other than :data:`MANIFEST_COLUMNS`.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"manifest {path} does not exist")
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        if tuple(reader.fieldnames or ()) != MANIFEST_COLUMNS:
            raise DataError(
                f"manifest {path} has columns {reader.fieldnames}; expected {list(MANIFEST_COLUMNS)}"
            )
        return [
            PatchRecord(
                path=row["path"],
                set=row["set"],
                slide=row["slide"],
                x_px=int(row["x_px"]),
                y_px=int(row["y_px"]),
                level=int(row["level"]),
                mpp=float(row["mpp"]),
                patch_size_px=int(row["patch_size_px"]),
                source=row["source"],
                label=int(row["label"]) if row["label"] else None,
                classes=row["classes"],
                tissue_fraction=float(row["tissue_fraction"]),
            )
            for row in reader
        ]
