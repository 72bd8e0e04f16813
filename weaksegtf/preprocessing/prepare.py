"""From slides and annotations to the trainer's mask set and label set.

:func:`prepare_patches` is the library behind ``weakseg-prepare``: every
command-line option is one of its arguments.
"""

from __future__ import annotations

import json
import warnings
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np

from weaksegtf.errors import ConfigError, DataError
from weaksegtf.io import MASK_SUFFIXES, read_label_image, write_png
from weaksegtf.model_card import STAIN_REFERENCE
from weaksegtf.output_guard import OutputFolder
from weaksegtf.output_names import input_key
from weaksegtf.progress import Progress
from weaksegtf.preprocessing.geojson_rasterizer import (
    check_classes,
    rasterize_geojson,
    read_geojson,
)
from weaksegtf.preprocessing.label_map import IGNORE_INDEX, LabelMap, check_aspect, remap_labels
from weaksegtf.preprocessing.macenko_normalizer import MacenkoNormalizer, StainWarning
from weaksegtf.preprocessing.patch_extraction import (
    EXTRACTIONS,
    Patch,
    PatchPlan,
    patch_size_level0,
    plan_patches,
    read_patches,
)
from weaksegtf.preprocessing.patch_overlay import draw_patch_overlay
from weaksegtf.preprocessing.patch_set_writer import LABEL_SET, MASK_SET, PatchSetWriter
from weaksegtf.preprocessing.prepare_summary import PrepareSummary, SlideSummary
from weaksegtf.preprocessing.tile_rule import IGNORE, LABEL, MASK
from weaksegtf.preprocessing.tissue_mask import DEFAULT_TISSUE_MPP, TissueMask
from weaksegtf.provenance import provenance
from weaksegtf.slides.array_reader import as_rgb_uint8
from weaksegtf.slides.image_reader import read_plain_image
from weaksegtf.slides.open_slide import open_slide
from weaksegtf.slides.slide_reader import SlideReader

#: A GeoJSON annotation is rasterised at the patch mpp, but never larger than
#: this many pixels a side (a 100k-pixel slide at full resolution would not fit).
MAX_RASTER_SIDE_PX = 16384

#: Patches are stain-normalised in batches of this many.
_STAIN_BATCH = 64
COMMAND = "weakseg-prepare"
#: Everything prepare_patches may write into its output folder.
PREPARE_OUTPUTS = (MASK_SET, LABEL_SET, "manifest.csv", "thumbnails", "summary.json", STAIN_REFERENCE)


class PreparationWarning(UserWarning):
    """A slide gave no patches (no tissue, or nothing the tile rule keeps)."""


def _label_image_shape(path: Path) -> tuple[int, int]:
    """``(height, width)`` of a label image without decoding its pixels."""
    try:
        if path.suffix.lower() in (".tif", ".tiff"):
            import tifffile

            with tifffile.TiffFile(path) as tif:
                shape = tif.pages[0].shape
            return int(shape[0]), int(shape[1])
        from PIL import Image

        with Image.open(path) as image:
            return image.height, image.width
    except Exception as error:  # noqa: BLE001 - any decoder failure reads the same
        raise DataError(f"cannot read annotation mask {path}: {error}") from None


def _is_geojson(path: Path) -> bool:
    return path.suffix.lower() in (".geojson", ".json")


def _raster_downsample(slide: SlideReader, patch_mpp: float) -> float:
    width0, height0 = slide.dimensions
    return max(1.0, patch_mpp / slide.mpp, max(width0, height0) / MAX_RASTER_SIDE_PX)


def load_label_map(
    mask: Path | str,
    slide: SlideReader,
    patch_mpp: float,
    class_map: Mapping[str, int] | None = None,
    outside_value: int = IGNORE_INDEX,
    mask_remap: Mapping[int, int] | None = None,
) -> LabelMap:
    """The annotation of ``slide`` as a :class:`LabelMap`.

    Args:
        mask: str or path. A label image covering the slide (any level's size)
            or a QuPath ``.geojson`` export.
        slide: SlideReader. The annotated slide.
        patch_mpp: float. GeoJSON is rasterised at this mpp (capped at
            :data:`MAX_RASTER_SIDE_PX` a side).
        class_map: mapping str -> int, optional. GeoJSON class indices.
        outside_value: int. GeoJSON value where no polygon lies. Defaults to 255.
        mask_remap: mapping int -> int, optional. Label-image value changes,
            such as ``{255: 1}`` for a 0/255 mask.

    Raises:
        DataError: unreadable mask, wrong aspect ratio, unknown GeoJSON class.
    """
    mask = Path(mask)
    if _is_geojson(mask):
        if not class_map:
            raise ConfigError(
                f"annotation {mask} is GeoJSON but no class map was given; expected "
                f"class_map (--class-map) such as {{'Tumor': 1, 'Stroma': 2}}"
            )
        downsample = _raster_downsample(slide, patch_mpp)
        width0, height0 = slide.dimensions
        shape = (max(1, int(round(height0 / downsample))), max(1, int(round(width0 / downsample))))
        labels = rasterize_geojson(mask, class_map, shape, downsample, outside_value)
    else:
        check_aspect(_label_image_shape(mask), slide.dimensions, mask.name, slide.name)
        labels = read_label_image(mask, "annotation mask")
        if mask_remap:
            labels = remap_labels(labels, mask_remap)
    return LabelMap(labels, slide.dimensions, IGNORE_INDEX, name=mask.name, slide_name=slide.name)


def _validate_inputs(
    slides: Sequence[Path],
    masks: Sequence[Path],
    mpp: float | None,
    class_map: Mapping[str, int] | None,
) -> None:
    """Open every slide and check every mask before anything is written."""
    for slide_path, mask_path in zip(slides, masks):
        with open_slide(slide_path, mpp=mpp) as slide:
            if _is_geojson(mask_path):
                if not class_map:
                    raise ConfigError(
                        f"annotation {mask_path} is GeoJSON but no class map was given; expected "
                        f"--class-map such as 'Tumor=1,Stroma=2'"
                    )
                check_classes(read_geojson(mask_path), class_map, mask_path)
            else:
                if not mask_path.is_file():
                    raise DataError(f"annotation mask {mask_path} does not exist or is not a file")
                if mask_path.suffix.lower() not in MASK_SUFFIXES:
                    raise DataError(
                        f"annotation mask {mask_path} has suffix {mask_path.suffix!r}; expected a lossless label "
                        f"image ({', '.join(MASK_SUFFIXES)}) or QuPath .geojson"
                    )
                check_aspect(
                    _label_image_shape(mask_path), slide.dimensions, mask_path.name, slide.name
                )


class _Tally:
    """Running counts per class over all slides."""

    def __init__(self) -> None:
        self.label_patches: Counter[int] = Counter()
        self.mask_patches: Counter[int] = Counter()
        self.mask_pixels = np.zeros(256, dtype=np.int64)

    def add(self, plan: PatchPlan, slide_summary: SlideSummary) -> None:
        if plan.kind == LABEL:
            slide_summary.label_patches += 1
            self.label_patches[int(plan.label)] += 1
        elif plan.kind == MASK and plan.mask is not None:
            slide_summary.mask_patches += 1
            self.mask_patches.update(c for c in plan.classes if c != IGNORE_INDEX)
            self.mask_pixels += np.bincount(plan.mask.ravel(), minlength=256)

    def fill(self, summary: PrepareSummary) -> None:
        pixels = self.mask_pixels.copy()
        pixels[IGNORE_INDEX] = 0
        summary.label_patches_per_class = dict(sorted(self.label_patches.items()))
        summary.mask_patches_per_class = dict(sorted(self.mask_patches.items()))
        summary.mask_pixels_per_class = {int(c): int(pixels[c]) for c in np.flatnonzero(pixels)}


def _write_patches(
    slide: SlideReader,
    slide_path: Path,
    plans: Sequence[PatchPlan],
    writer: PatchSetWriter,
    normalizer: MacenkoNormalizer | None,
    patch_mpp: float,
    patch_size_px: int,
    tally: _Tally,
    slide_summary: SlideSummary,
    report: Callable[[str], None],
) -> None:
    """Read, optionally stain-normalise (in batches) and write every kept plan."""
    kept = sum(p.kind != IGNORE for p in plans)
    batch: list[Patch] = []

    def flush() -> None:
        if normalizer is not None and batch:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", StainWarning)  # counted instead
                images = normalizer.transform(np.stack([p.image for p in batch]))
            for patch, image in zip(batch, images):
                patch.image = image
        for patch in batch:
            writer.write(patch, str(slide_path))
        batch.clear()

    for done, patch in enumerate(read_patches(slide, plans, patch_mpp, patch_size_px), start=1):
        batch.append(patch)
        tally.add(patch.plan, slide_summary)
        if len(batch) >= _STAIN_BATCH:
            flush()
        report(f"{done}/{kept} patches")
    flush()


def prepare_patches(
    slides: Sequence[Path | str],
    masks: Sequence[Path | str],
    out_dir: Path | str,
    *,
    mpp: float | None = None,
    patch_mpp: float = 8.0,
    patch_size_px: int = 128,
    stride_px: int | None = None,
    extraction: str = "both",
    min_tissue_fraction: float = 0.75,
    dominant_fraction: float = 0.9,
    mask_classes: int = 2,
    centred_classes: Sequence[int] | None = None,
    background_class: int | None = 0,
    class_map: Mapping[str, int] | None = None,
    outside_value: int = IGNORE_INDEX,
    mask_remap: Mapping[int, int] | None = None,
    tissue_mpp: float = DEFAULT_TISSUE_MPP,
    saturation_threshold: float = 0.1,
    stain_reference: Path | str | None = None,
    thumbnail_size_px: int = 1024,
    seed: int = 0,
    overwrite: bool = False,
    progress: bool | Callable[[str], None] = False,
) -> PrepareSummary:
    """Write the mask set, label set, manifest and thumbnails for slides.

    For each slide: the tissue mask (Appendix B.1) at ``tissue_mpp``; patches
    centred on labelled regions (Appendix B.2) and/or sliding-window tiles with
    at least ``min_tissue_fraction`` tissue sorted by the tile rule (section
    3.3); RGB read at ``patch_mpp`` from the closest pyramid level.

    Args:
        slides: sequence of str or path. Whole-slide files or plain images.
        masks: sequence of str or path. One annotation per slide, in order: a
            label image (uint8 class indices, 255 not annotated) the size of
            any slide level, or QuPath GeoJSON.
        out_dir: str or path. Output folder.
        mpp: float, optional. Level-0 mpp of every slide, overriding the
            files. Defaults to ``None``.
        patch_mpp: float. Microns per pixel of the patches. Defaults to 8.0
            (1.25x, the paper's setting).
        patch_size_px: int. Patch side. Defaults to 128 (the paper's).
        stride_px: int, optional. Tile step at ``patch_mpp``. Defaults to
            ``patch_size_px``.
        extraction: str. ``"centred"``, ``"tiles"`` or ``"both"``. Defaults to
            ``"both"``.
        min_tissue_fraction: float. Tiles with less tissue are dropped.
            Defaults to 0.75.
        dominant_fraction: float. Tile rule: a class covering this much makes a
            label patch. Defaults to 0.9.
        mask_classes: int. Tile rule: tiles with exactly this many classes make
            mask patches. Defaults to 2.
        centred_classes: sequence of int, optional. Classes whose regions get
            centred patches. Defaults to every class but ``background_class``.
        background_class: int, optional. Class that is not a region of
            interest. Defaults to 0.
        class_map: mapping str -> int, optional. GeoJSON class names to indices.
        outside_value: int. GeoJSON value where no polygon lies. Defaults to 255.
        mask_remap: mapping int -> int, optional. Label-image value changes,
            e.g. ``{255: 1}`` for a 0/255 binary mask.
        tissue_mpp: float. Resolution of the tissue mask. Defaults to 8.0.
        saturation_threshold: float. Tissue threshold on HSV saturation.
            Defaults to 0.1.
        stain_reference: str or path, optional. Reference image, or saved
            normaliser ``.json``, for Macenko normalisation of every patch.
            Defaults to ``None`` (no normalisation).
        thumbnail_size_px: int. Longer side of the thumbnails. Defaults to 1024.
        seed: int. K-means seed. Defaults to 0.
        overwrite: bool. Accept a non-empty ``out_dir``, replacing what
            weaksegtf wrote there (``weaksegtf.output_guard.OutputFolder``; other
            files are never touched). Defaults to ``False``: a non-empty folder
            is refused before any slide is read.
        progress: bool or callable. Print progress to stderr, or call this
            with each status line. Defaults to ``False``.

    Returns:
        A :class:`PrepareSummary`; it is also written as ``summary.json``.

    Raises:
        SlideError, DataError, ConfigError: bad input, found before writing.

    Example:
    >>> summary = prepare_patches(
    ...     ["CMU-1-Small-Region.svs"], ["cmu_mask.png"], "patches", patch_mpp=2.0
    ... )  # doctest: +SKIP
    >>> print(summary.table())  # doctest: +SKIP
    """
    slide_paths = [Path(p) for p in slides]
    mask_paths = [Path(p) for p in masks]
    if not slide_paths:
        raise ConfigError("no slides given; expected at least one slide or image")
    if len(mask_paths) != len(slide_paths):
        raise ConfigError(
            f"got {len(slide_paths)} slides but {len(mask_paths)} annotation masks; expected "
            f"one mask per slide, in the same order"
        )
    repeated = [key for key, count in Counter(input_key(p) for p in slide_paths).items() if count > 1]
    if repeated:
        raise ConfigError(f"slide {repeated[0]} is given more than once; expected each slide once, with one mask")
    if extraction not in EXTRACTIONS:
        raise ConfigError(f"extraction must be one of {EXTRACTIONS}, got {extraction!r}")
    if patch_size_px <= 0 or patch_mpp <= 0:
        raise ConfigError(
            f"patch_size_px and patch_mpp must be positive, got {patch_size_px} and {patch_mpp}"
        )
    if not 0.0 <= min_tissue_fraction <= 1.0:
        raise ConfigError(f"min_tissue_fraction must be in [0, 1], got {min_tissue_fraction}")
    if isinstance(outside_value, bool) or not isinstance(outside_value, int) or not 0 <= outside_value <= 255:
        raise ConfigError(f"outside_value (--outside) must be a class index 0..255 (255 = not annotated), got {outside_value!r}")
    settings = {key: value for key, value in locals().items() if key not in ("progress", "slide_paths", "mask_paths")}
    folder = OutputFolder(Path(out_dir), COMMAND, overwrite=overwrite)
    folder.check(PREPARE_OUTPUTS)
    _validate_inputs(slide_paths, mask_paths, mpp, class_map)

    normalizer = None
    if stain_reference is not None:
        reference = Path(stain_reference)
        if reference.suffix.lower() == ".json":
            normalizer = MacenkoNormalizer.load(reference)
        else:
            image, _ = read_plain_image(reference)
            normalizer = MacenkoNormalizer().fit(as_rgb_uint8(image, str(reference)))

    report: Callable[[str, bool], None]
    if callable(progress):
        report = lambda text, final=False: progress(text) if final else None  # noqa: E731
    else:
        report = Progress(len(slide_paths), enabled=bool(progress)).status

    out = Path(out_dir)
    summary = PrepareSummary(out_dir=str(out), patch_mpp=float(patch_mpp), patch_size_px=int(patch_size_px),
                             provenance=provenance(**settings))
    tally = _Tally()
    folder.remove_own()  # an earlier run's thumbnails never mix with this run's
    (out / "thumbnails").mkdir(parents=True, exist_ok=True)
    with PatchSetWriter(out, overwrite=overwrite) as writer:
        if normalizer is not None:
            normalizer.save(out / STAIN_REFERENCE)
            summary.stain_reference = STAIN_REFERENCE
        for index, (slide_path, mask_path) in enumerate(zip(slide_paths, mask_paths), start=1):
            prefix = f"[{index}/{len(slide_paths)}] {slide_path.name}"
            with open_slide(slide_path, mpp=mpp) as slide:
                report(f"{prefix}: tissue mask", False)
                tissue = TissueMask.from_slide(
                    slide, mpp=tissue_mpp, saturation_threshold=saturation_threshold
                )
                labels = load_label_map(
                    mask_path, slide, patch_mpp, class_map, outside_value, mask_remap
                )
                if tissue.fraction == 0.0:
                    # A blank scan (or a mask paired with the wrong slide):
                    # annotations there would only teach the model glass.
                    plans = []
                else:
                    plans = plan_patches(
                        labels,
                        slide.mpp,
                        patch_mpp,
                        patch_size_px,
                        extraction=extraction,
                        stride_px=stride_px,
                        tissue=tissue,
                        min_tissue_fraction=min_tissue_fraction,
                        dominant_fraction=dominant_fraction,
                        mask_classes=mask_classes,
                        centred_classes=centred_classes,
                        background=background_class,
                        seed=seed,
                    )
                slide_summary = SlideSummary(
                    slide=str(slide_path),
                    mask=str(mask_path),
                    mpp=slide.mpp,
                    level=slide.best_level_for_mpp(patch_mpp),
                    tissue_fraction=tissue.fraction,
                    ignored_by_rule=sum(p.kind == IGNORE and p.reason != "tissue" for p in plans),
                    ignored_for_tissue=sum(p.reason == "tissue" for p in plans),
                )
                _write_patches(
                    slide, slide_path, plans, writer, normalizer, patch_mpp, patch_size_px,
                    tally, slide_summary, lambda text: report(f"{prefix}: {text}", False),
                )

                thumbnail, thumbnail_mpp = slide.thumbnail(thumbnail_size_px)
                side0 = patch_size_level0(patch_size_px, patch_mpp, slide.mpp)
                overlay = draw_patch_overlay(
                    tissue.overlay(thumbnail), plans, thumbnail_mpp / slide.mpp, side0
                )
                stem = writer.stem_of(slide_path)  # two slides may share a file name
                write_png(out / "thumbnails" / f"{stem}.png", overlay)
                write_png(out / "thumbnails" / f"{stem}_tissue.png", tissue.to_image())

            if tissue.fraction == 0.0:
                message = (
                    f"slide {slide_path} has no tissue at {tissue_mpp} um/px (saturation under "
                    f"{saturation_threshold:.0%} of the maximum everywhere, or only specks): "
                    f"zero patches"
                )
                summary.warnings.append(message)
                warnings.warn(message, PreparationWarning, stacklevel=2)
            elif slide_summary.mask_patches + slide_summary.label_patches == 0:
                message = (
                    f"slide {slide_path} gave zero patches: {slide_summary.ignored_for_tissue} "
                    f"tiles had under {min_tissue_fraction:.0%} tissue and "
                    f"{slide_summary.ignored_by_rule} failed the tile rule"
                )
                summary.warnings.append(message)
                warnings.warn(message, PreparationWarning, stacklevel=2)
            summary.slides.append(slide_summary)
            report(
                f"{prefix}: {slide_summary.mask_patches} mask patches, "
                f"{slide_summary.label_patches} label patches, tissue {tissue.fraction:.1%}",
                True,
            )

    tally.fill(summary)
    if normalizer is not None:
        summary.stain_unchanged_patches = normalizer.n_unchanged
    (out / "summary.json").write_text(json.dumps(summary.to_json(), indent=2) + "\n", encoding="utf-8")
    folder.commit([name for name in PREPARE_OUTPUTS if (out / name).exists()])
    return summary


__all__ = [
    "LABEL_SET",
    "MASK_SET",
    "PreparationWarning",
    "PrepareSummary",
    "SlideSummary",
    "load_label_map",
    "prepare_patches",
]
