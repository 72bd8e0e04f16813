"""Counts of what :func:`~weaksegtf.preprocessing.prepare_patches` wrote."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class SlideSummary:
    """Counts for one slide."""

    slide: str
    mask: str
    mpp: float
    level: int
    tissue_fraction: float
    mask_patches: int = 0
    label_patches: int = 0
    ignored_by_rule: int = 0
    ignored_for_tissue: int = 0


@dataclass
class PrepareSummary:
    """What :func:`prepare_patches` wrote.

    Attributes:
        out_dir: str. Output folder.
        slides: list of SlideSummary. Per-slide counts.
        label_patches_per_class: dict int -> int. Label-set patches per class.
        mask_patches_per_class: dict int -> int. Mask-set patches containing
            each class.
        mask_pixels_per_class: dict int -> int. Mask-set pixels per class
            (255, not annotated, excluded).
        warnings: list of str. Slides that gave no patches, and why.
        stain_unchanged_patches: int. Patches with too little stain to
            normalise, written unchanged (0 without a stain reference).
        patch_mpp: float, optional. Microns per pixel of the patches; weakseg-train
            reads it into the model card. Defaults to ``None``.
        patch_size_px: int, optional. Patch side in pixels. Defaults to ``None``.
        stain_reference: str, optional. File name of the saved Macenko reference
            in the output folder, when patches were normalised. Defaults to ``None``.
        provenance: dict. ``weaksegtf.provenance.provenance()`` of the run.
    """

    out_dir: str
    slides: list[SlideSummary] = field(default_factory=list)
    label_patches_per_class: dict[int, int] = field(default_factory=dict)
    mask_patches_per_class: dict[int, int] = field(default_factory=dict)
    mask_pixels_per_class: dict[int, int] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    stain_unchanged_patches: int = 0
    patch_mpp: float | None = None
    patch_size_px: int | None = None
    stain_reference: str | None = None
    provenance: dict[str, Any] = field(default_factory=dict)

    @property
    def mask_patches(self) -> int:
        return sum(s.mask_patches for s in self.slides)

    @property
    def label_patches(self) -> int:
        return sum(s.label_patches for s in self.slides)

    def table(self, class_names: Mapping[int, str] | None = None) -> str:
        """Counts per class as a plain-text table."""
        names = dict(class_names or {})
        classes = sorted(
            set(self.label_patches_per_class)
            | set(self.mask_patches_per_class)
            | set(self.mask_pixels_per_class)
        )
        lines = [
            f"{'class':<16}{'label patches':>15}{'mask patches':>14}{'mask pixels':>14}",
        ]
        for cls in classes:
            name = f"{cls} {names[cls]}" if cls in names else str(cls)
            lines.append(
                f"{name:<16}{self.label_patches_per_class.get(cls, 0):>15}"
                f"{self.mask_patches_per_class.get(cls, 0):>14}"
                f"{self.mask_pixels_per_class.get(cls, 0):>14}"
            )
        lines.append(
            f"{'total':<16}{self.label_patches:>15}{self.mask_patches:>14}"
            f"{sum(self.mask_pixels_per_class.values()):>14}"
        )
        return "\n".join(lines)

    def to_json(self) -> dict[str, Any]:
        """The summary as JSON-ready data, with the two totals."""
        document = asdict(self)
        document["mask_patches"] = self.mask_patches
        document["label_patches"] = self.label_patches
        return document
