"""BACH 2018 as the paper uses it: part A photos as classification patches, part B slides as segmentation.

Classes follow Ciga & Martel (section 3.1): 0 normal (everything no region
covers, glass included), 1 benign, 2 in situ carcinoma, 3 invasive carcinoma,
shown white, red, green and blue as the challenge's organisers draw them.

Layout, as ``ICIAR2018_BACH_Challenge.zip`` unpacks (Aresta et al. 2019):

- ``Photos/{Normal,Benign,InSitu,Invasive}/*.tif``: 400 microscopy images,
  2048 x 1536 px at 0.42 um/px, one label each (the folder), also listed in
  ``Photos/microscopy_ground_truth.csv`` as ``file,Class`` rows without header;
- ``WSI/A01.svs .. A10.svs`` with ``WSI/A01.xml .. A10.xml``: the annotated
  slides, regions in Aperio ImageScope XML (``Annotations/Annotation/Regions/
  Region`` with its label in the ``Text`` attribute, or in ``Attributes/
  Attribute@Value``, and ``Vertices/Vertex@X,Y`` in level-0 pixels). Slides
  without an XML (the unannotated ones) are not part B's training data.

A region's class is read as the challenge's own ``read_xml.py`` reads it: the
first of "benign", "in situ", "invasive" found in its label, case-insensitive.

Protocol (section 3.3): 3 part B slides for training (cut into patches by
``weakseg-prepare``), 1 slide with all four classes for validation (here the
*selection* slide), the other 6 for testing, and all of part A as
classification patches.

Data: Aresta et al., "BACH: Grand challenge on breast cancer histology
images", Medical Image Analysis 2019; CC BY-NC-ND 4.0.
"""

from __future__ import annotations

import csv
import json
import tempfile
import xml.etree.ElementTree as ElementTree
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from weaksegtf.data.dataset_split import check_new_folder, split_summary, write_split_json
from weaksegtf.data.images import PathLike, list_image_files, natural_key, read_rgb
from weaksegtf.data.label_set import LabelSet
from weaksegtf.data.mask_set import MaskSet
from weaksegtf.errors import ConfigError, DataError
from weaksegtf.io import write_png

CLASS_NAMES: tuple[str, ...] = ("normal", "benign", "in situ", "invasive")
#: White, red, green, blue: the organisers' colours (Aresta et al. 2019), as in the paper's figures.
CLASS_COLORS: tuple[tuple[int, int, int], ...] = ((255, 255, 255), (255, 0, 0), (0, 255, 0), (0, 0, 255))
#: GeoJSON classification name -> class index, for ``weakseg-prepare --class-map``.
CLASS_MAP: dict[str, int] = {name: index for index, name in enumerate(CLASS_NAMES)}
#: Part A class folders (and ``microscopy_ground_truth.csv`` labels), in class order.
PHOTO_CLASS_FOLDERS: tuple[str, ...] = ("Normal", "Benign", "InSitu", "Invasive")
PHOTOS_FOLDER = "Photos"
WSI_FOLDER = "WSI"
GROUND_TRUTH_CSV = "microscopy_ground_truth.csv"
#: Pixel scale of the part A photos, microns per pixel (challenge dataset page).
PHOTO_MPP = 0.42
#: Resolution of training patches: the paper's 1.25x, ``weakseg-prepare``'s default ``--patch-mpp``.
PATCH_MPP = 8.0
# The challenge's read_xml.py: the first keyword found in a region's label gives its class.
_REGION_KEYWORDS: tuple[tuple[str, int], ...] = (("benign", 1), ("in situ", 2), ("invasive", 3))
_PHOTO_SUFFIXES = (".tif", ".tiff")


# ----------------------------------------------------------------------------- part A


@dataclass(frozen=True)
class BachPhoto:
    """One part A microscopy image.

    Args:
        name: str. File stem, such as ``"b001"``.
        path: Path. The ``.tif`` file.
        label: int. Class index (0 normal .. 3 invasive).
    """

    name: str
    path: Path
    label: int


def _find_folder(root: Path, name: str, what: str) -> Path:
    """``root/name``, or ``root`` itself when it is that folder."""
    if (root / name).is_dir():
        return root / name
    if root.name == name and root.is_dir():
        return root
    raise DataError(f"{root} has no {name}/ folder; expected the unpacked ICIAR2018_BACH_Challenge folder with "
                    f"{name}/ ({what})")


def read_bach_photos(root: PathLike) -> list[BachPhoto]:
    """List part A: ``Photos/<Class>/*.tif``, checked against ``microscopy_ground_truth.csv`` when present.

    Args:
        root: str or path. The ``ICIAR2018_BACH_Challenge`` folder (or its ``Photos`` folder).

    Returns:
        The photos, by class then name.

    Raises:
        DataError: ``Photos/`` or a class folder is missing or empty, or the
            CSV names a file or class that the folders do not have, or a file
            the CSV does not list.
    """
    photos = _find_folder(Path(root), PHOTOS_FOLDER, "Normal/, Benign/, InSitu/, Invasive/ of .tif photos")
    missing = [name for name in PHOTO_CLASS_FOLDERS if not (photos / name).is_dir()]
    if missing:
        raise DataError(f"{photos} lacks the class folder{'s' if len(missing) > 1 else ''} {', '.join(missing)}; "
                        f"expected {', '.join(PHOTO_CLASS_FOLDERS)}")
    found: list[BachPhoto] = []
    for label, folder in enumerate(PHOTO_CLASS_FOLDERS):
        files = list_image_files(photos / folder, _PHOTO_SUFFIXES)
        if not files:
            raise DataError(f"{photos / folder} holds no .tif photos; expected the {folder} microscopy images")
        found += [BachPhoto(stem, path, label) for stem, path in files.items()]
    seen: dict[str, Path] = {}
    for photo in found:
        if photo.name in seen:
            raise DataError(f"{photo.path} and {seen[photo.name]} share the name {photo.name!r}; expected one "
                            f"photo per name")
        seen[photo.name] = photo.path
    csv_path = photos / GROUND_TRUTH_CSV
    if csv_path.is_file():
        _check_ground_truth(csv_path, found)
    return found


def _check_ground_truth(csv_path: Path, photos: list[BachPhoto]) -> None:
    by_file = {photo.path.name: photo for photo in photos}
    listed = set()
    with open(csv_path, newline="", encoding="utf-8-sig") as handle:
        rows = [(n, row) for n, row in enumerate(csv.reader(handle), start=1) if any(c.strip() for c in row)]
    for number, row in rows:
        if len(row) < 2:
            raise DataError(f"{csv_path} line {number} is {row}; expected file,Class such as b001.tif,Benign")
        file_name, class_name = row[0].strip(), row[1].strip()
        if class_name not in PHOTO_CLASS_FOLDERS:
            if number == 1:
                continue  # a header row some copies add
            raise DataError(f"{csv_path} line {number}: class {class_name!r} of {file_name} is not one of "
                            f"{list(PHOTO_CLASS_FOLDERS)}")
        photo = by_file.get(file_name)
        if photo is None:
            raise DataError(f"{csv_path} line {number} lists {file_name} as {class_name}, but "
                            f"{csv_path.parent / class_name / file_name} does not exist")
        if PHOTO_CLASS_FOLDERS[photo.label] != class_name:
            raise DataError(f"{csv_path} line {number} lists {file_name} as {class_name}, but it is in "
                            f"{photo.path.parent}; expected the folder and the CSV to agree")
        listed.add(file_name)
    unlisted = [photo for photo in photos if photo.path.name not in listed]
    if unlisted:
        raise DataError(f"{unlisted[0].path} is not listed in {csv_path} ({len(unlisted)} photos unlisted)")


def load_bach_part_a(root: PathLike, mpp: float | None = PATCH_MPP) -> LabelSet:
    """Part A as a label set: each whole photo one classification patch with its class.

    Args:
        root: str or path. The ``ICIAR2018_BACH_Challenge`` folder (or ``Photos``).
        mpp: float, optional. Resize each photo from its 0.42 um/px to this
            resolution, so it matches the part B patches; ``None`` keeps the
            native 2048 x 1536 px (about 9.4 MB each in memory). Defaults to
            :data:`PATCH_MPP` (8.0, the paper's 1.25x).

    Raises:
        ConfigError: ``mpp`` is not positive.
        DataError: see :func:`read_bach_photos`; a photo is unreadable.

    Example:
    >>> labels = load_bach_part_a("ICIAR2018_BACH_Challenge")  # doctest: +SKIP
    >>> labels.class_counts(4).tolist()  # doctest: +SKIP
    [100, 100, 100, 100]
    """
    from weaksegtf.data.patches import resize_image
    from weaksegtf.model_card import check_mpp

    mpp = check_mpp(mpp)
    photos = read_bach_photos(root)
    images = []
    for photo in photos:
        image = read_rgb(photo.path)
        images.append(image if mpp is None else resize_image(image, PHOTO_MPP / mpp))
    label_set = LabelSet(images, [p.label for p in photos], [p.name for p in photos], CLASS_NAMES)
    label_set.validate()
    return label_set


# ----------------------------------------------------------------------------- part B


@dataclass(frozen=True)
class BachRegion:
    """One annotated region of a part B slide.

    Args:
        region_id: str. The XML ``Id``.
        text: str. The label as written in the XML.
        label: int. Class index (1 benign, 2 in situ, 3 invasive).
        vertices: float array ``(n, 2)``. ``(x, y)`` in level-0 pixels.
    """

    region_id: str
    text: str
    label: int
    vertices: np.ndarray = field(repr=False)


@dataclass(frozen=True)
class BachAnnotation:
    """The regions of one part B XML file.

    Args:
        path: Path. The XML file.
        regions: tuple of BachRegion. Regions with at least 3 vertices.
        mpp: float, optional. The file's ``MicronsPerPixel``.
        skipped: tuple of str. Ids of regions with fewer than 3 vertices (no area).
    """

    path: Path
    regions: tuple[BachRegion, ...]
    mpp: float | None = None
    skipped: tuple[str, ...] = ()

    @property
    def classes(self) -> tuple[int, ...]:
        """Classes on the slide: normal (0) and every region's class, sorted."""
        return tuple(sorted({0} | {region.label for region in self.regions}))

    def geojson(self) -> dict[str, Any]:
        """The regions as a QuPath-style GeoJSON FeatureCollection (classification names of :data:`CLASS_NAMES`)."""
        features = []
        for region in self.regions:
            ring = [[float(x), float(y)] for x, y in region.vertices]
            ring.append(list(ring[0]))
            name = CLASS_NAMES[region.label]
            features.append({
                "type": "Feature",
                "geometry": {"type": "Polygon", "coordinates": [ring]},
                "properties": {
                    "objectType": "annotation",
                    "classification": {"name": name, "color": list(CLASS_COLORS[region.label])},
                    "bach_region_id": region.region_id,
                    "bach_text": region.text,
                },
            })
        return {"type": "FeatureCollection", "features": features}


def _region_label(texts: list[str], path: Path, region_id: str) -> tuple[str, int]:
    for text in texts:
        lowered = text.lower()
        for keyword, label in _REGION_KEYWORDS:
            if keyword in lowered:
                return text, label
    shown = texts[0] if texts else ""
    raise DataError(f"{path}: region {region_id} has label {shown!r}; expected a label containing 'benign', "
                    f"'in situ' or 'invasive' (how the challenge's read_xml.py reads BACH regions)")


def read_bach_xml(path: PathLike) -> BachAnnotation:
    """Read the regions of a BACH part B annotation (Aperio ImageScope XML).

    Raises:
        DataError: the file is missing or not XML, is not ``<Annotations>``, or
            a region has an unknown label or a vertex without numeric X and Y.

    Example:
    >>> annotation = read_bach_xml("ICIAR2018_BACH_Challenge/WSI/A01.xml")  # doctest: +SKIP
    >>> annotation.classes  # doctest: +SKIP
    (0, 1, 2, 3)
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"annotation {path} does not exist or is not a file")
    try:
        root = ElementTree.parse(path).getroot()
    except ElementTree.ParseError as error:
        raise DataError(f"{path} is not valid XML ({error}); expected BACH's Aperio ImageScope annotation") from None
    if root.tag != "Annotations":
        raise DataError(f"{path} has root element <{root.tag}>; expected <Annotations> (Aperio ImageScope XML)")
    regions, skipped = [], []
    for number, region in enumerate(root.iter("Region"), start=1):
        region_id = region.get("Id") or str(number)
        # read_xml.py looks at the first attribute's Value, then at the region's Text.
        attributes = region.find("Attributes")
        texts = [a.get("Value", "") for a in (attributes if attributes is not None else [])]
        texts = [t.strip() for t in [*texts, region.get("Text", "")] if t and t.strip()]
        text, label = _region_label(texts, path, region_id)
        try:
            vertices = np.array([[float(v.get("X")), float(v.get("Y"))] for v in region.iter("Vertex")],
                                dtype=np.float64).reshape(-1, 2)
        except (TypeError, ValueError):
            raise DataError(f"{path}: region {region_id} has a vertex without numeric X and Y; expected "
                            f"<Vertex X=\"...\" Y=\"...\"/> in level-0 pixels") from None
        if len(vertices) < 3 or not np.isfinite(vertices).all():
            skipped.append(region_id)
            continue
        regions.append(BachRegion(region_id, text, label, vertices))
    mpp_text = root.get("MicronsPerPixel")
    try:
        mpp = float(mpp_text) if mpp_text else None
    except ValueError:
        mpp = None
    return BachAnnotation(path, tuple(regions), mpp if mpp and mpp > 0 else None, tuple(skipped))


def write_bach_geojson(xml_path: PathLike, out_path: PathLike) -> Path:
    """Convert a BACH XML annotation to GeoJSON that ``weakseg-prepare --class-map`` reads.

    Example:
    >>> write_bach_geojson("WSI/A01.xml", "annotations/A01.geojson")  # doctest: +SKIP
    """
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(json.dumps(read_bach_xml(xml_path).geojson()) + "\n", encoding="utf-8")
    return out_path


def rasterize_bach_xml(xml_path: PathLike, shape_px: tuple[int, int], downsample: float) -> np.ndarray:
    """A BACH XML annotation as class indices (0 where no region lies: normal).

    The regions go through :func:`weaksegtf.preprocessing.geojson_rasterizer.rasterize_geojson`,
    so BACH and QuPath annotations are drawn by one rasteriser: larger regions
    first (a nested region keeps its class), outline pixels inside.

    Args:
        xml_path: str or path. The BACH XML file.
        shape_px: (int, int). ``(height, width)`` of the raster.
        downsample: float. Level-0 pixels per raster pixel.

    Returns:
        uint8 array of shape ``shape_px`` with values 0..3.
    """
    from weaksegtf.preprocessing.geojson_rasterizer import rasterize_geojson

    with tempfile.TemporaryDirectory() as folder:
        geojson = write_bach_geojson(xml_path, Path(folder) / f"{Path(xml_path).stem}.geojson")
        return rasterize_geojson(geojson, CLASS_MAP, shape_px, downsample, outside_value=0)


@dataclass(frozen=True)
class BachSlide:
    """One annotated part B slide.

    Args:
        name: str. File stem, such as ``"A01"``.
        slide_path: Path. The ``.svs`` file.
        xml_path: Path. Its annotation.
        annotation: BachAnnotation. The regions read from ``xml_path``.
    """

    name: str
    slide_path: Path
    xml_path: Path
    annotation: BachAnnotation = field(repr=False)


def read_bach_part_b(root: PathLike) -> list[BachSlide]:
    """The annotated part B slides: every ``WSI/*.xml`` with its ``.svs``.

    Args:
        root: str or path. The ``ICIAR2018_BACH_Challenge`` folder (or its ``WSI`` folder).

    Raises:
        DataError: ``WSI/`` is missing or holds no annotation XML, an XML has no
            slide beside it, or an XML is malformed (see :func:`read_bach_xml`).
    """
    wsi = _find_folder(Path(root), WSI_FOLDER, "A01.svs .. A10.svs with A01.xml .. A10.xml")
    xmls = sorted((p for p in wsi.iterdir() if p.suffix.lower() == ".xml" and not p.name.startswith(".")),
                  key=lambda p: natural_key(p.stem))
    if not xmls:
        raise DataError(f"{wsi} holds no annotation .xml; expected A01.xml .. A10.xml beside A01.svs .. A10.svs")
    slides = []
    for xml_path in xmls:
        slide_path = next((p for p in wsi.glob(f"{xml_path.stem}.*") if p.suffix.lower() == ".svs"), None)
        if slide_path is None:
            raise DataError(f"annotation {xml_path.name} has no slide: expected {wsi / (xml_path.stem + '.svs')}")
        slides.append(BachSlide(xml_path.stem, slide_path, xml_path, read_bach_xml(xml_path)))
    return slides


@dataclass(frozen=True)
class BachSlidePlan:
    """Which part B slides train, select the epoch, and test.

    Args:
        train: tuple of str. Slides cut into training patches.
        select: tuple of str. The slide on which each run keeps its best epoch.
        test: tuple of str. Slides every run is scored on.
    """

    train: tuple[str, ...]
    select: tuple[str, ...]
    test: tuple[str, ...]


def plan_bach_slides(
    slides: list[BachSlide],
    train: tuple[str, ...] | list[str] | None = None,
    select: str | None = None,
    n_train: int = 3,
    seed: int = 0,
) -> BachSlidePlan:
    """The paper's slide split: ``n_train`` training slides, one selection slide with all four classes, the rest test.

    Args:
        slides: list of BachSlide. From :func:`read_bach_part_b`.
        train: sequence of str, optional. Training slide names. Defaults to
            ``n_train`` drawn with ``seed`` after the selection slide.
        select: str, optional. Selection slide name. Defaults to one drawn with
            ``seed`` among the slides whose regions cover benign, in situ and
            invasive (normal is everywhere else).
        n_train: int. Training slides to draw when ``train`` is not given. Defaults to 3.
        seed: int. Random seed. Defaults to 0.

    Raises:
        ConfigError: an unknown slide name, a slide in two roles, no slide with
            all four classes, or no slide left for testing.
    """
    names = [slide.name for slide in slides]
    for name in [*(train or ()), *([select] if select else [])]:
        if name not in names:
            raise ConfigError(f"slide {name!r} is not an annotated part B slide; expected one of {names}")
    rng = np.random.default_rng(seed)
    if select is None:
        complete = [s.name for s in slides if s.annotation.classes == (0, 1, 2, 3) and s.name not in (train or ())]
        if not complete:
            raise ConfigError(f"no slide among {names} (outside the training slides) has regions of all four "
                              f"classes; pass the selection slide (--select-slide)")
        select = complete[int(rng.integers(len(complete)))]
    if train is None:
        others = [name for name in names if name != select]
        if not isinstance(n_train, int) or not 1 <= n_train < len(others):
            raise ConfigError(f"n_train={n_train!r} but {len(others)} slides remain besides selection slide "
                              f"{select}; expected 1..{len(others) - 1} so at least one slide is left for testing")
        picked = set(rng.choice(len(others), size=n_train, replace=False).tolist())
        train = [name for i, name in enumerate(others) if i in picked]
    train = tuple(train)
    if not train:
        raise ConfigError(f"no training slide given; expected one or more of {names}")
    if select in train:
        raise ConfigError(f"slide {select} cannot both train and select the epoch")
    test = tuple(name for name in names if name not in train and name != select)
    if not test:
        raise ConfigError(f"no part B slide is left for testing after training {list(train)} and selection {select}")
    return BachSlidePlan(train, (select,), test)


def _slide_mask(
    slide: BachSlide, geojson: Path, patch_mpp: float, slide_mpp: float | None, with_image: bool
) -> tuple[np.ndarray | None, np.ndarray]:
    """The class mask of a whole slide at ``patch_mpp``, and the slide itself when ``with_image``."""
    from weaksegtf.preprocessing.prepare import load_label_map
    from weaksegtf.slides import open_slide

    with open_slide(slide.slide_path, mpp=slide_mpp) as reader:
        size = reader.size_at_mpp(patch_mpp)
        labels = load_label_map(geojson, reader, patch_mpp, CLASS_MAP, outside_value=0)
        mask, _ = labels.read((0, 0), reader.dimensions, size)
        return (reader.read_full_at_mpp(patch_mpp) if with_image else None), mask


def prepare_bach(
    root: PathLike,
    out_dir: PathLike,
    *,
    train: tuple[str, ...] | list[str] | None = None,
    select: str | None = None,
    n_train: int = 3,
    seed: int = 0,
    patch_mpp: float = PATCH_MPP,
    patch_size_px: int = 128,
    slide_mpp: float | None = None,
    part_a: bool = True,
    progress: bool | Callable[[str], None] = False,
) -> dict[str, Any]:
    """Everything the paper's BACH experiment trains and scores on, in one folder.

    Writes into ``out_dir``:

    - ``annotations/<slide>.geojson``: each XML's regions as GeoJSON (class
      names ``benign``, ``in situ``, ``invasive``), and ``masks/<slide>.png``,
      the class mask at ``patch_mpp``;
    - ``train/``: ``weakseg-prepare``'s output for the training slides
      (``masks_set/``, ``label_set/``, ``manifest.csv``, ``summary.json``);
    - ``select/`` and ``test/``: mask sets of the selection and test slides,
      each whole at ``patch_mpp``;
    - ``part_a/``: part A as a label set at ``patch_mpp``;
    - ``split.json``: classes, colours, mpp, the slide split and counts.

    Args:
        root: str or path. The ``ICIAR2018_BACH_Challenge`` folder.
        out_dir: str or path. A new or empty folder.
        train: sequence of str, optional. Training slides (see :func:`plan_bach_slides`).
        select: str, optional. Selection slide.
        n_train: int. Training slides drawn when ``train`` is not given. Defaults to 3.
        seed: int. Seed of the slide draw and of ``weakseg-prepare``. Defaults to 0.
        patch_mpp: float. Resolution of every patch, slide and photo. Defaults to 8.0 (1.25x).
        patch_size_px: int. Training patch side. Defaults to 128.
        slide_mpp: float, optional. Level-0 mpp of the slides, overriding the files.
        part_a: bool. Also write part A. Defaults to ``True``.
        progress: bool or callable. Print progress, or call this with each line. Defaults to ``False``.

    Returns:
        The ``split.json`` document.

    Raises:
        ConfigError: ``out_dir`` holds files, or a bad slide choice.
        DataError: the folder does not have the challenge's layout (naming what is missing).
        SlideError: a slide cannot be read.
    """
    from weaksegtf.model_card import check_mpp
    from weaksegtf.preprocessing.prepare import prepare_patches

    patch_mpp = check_mpp(patch_mpp, "patch_mpp")
    say = progress if callable(progress) else (print if progress else (lambda line: None))
    out_dir = check_new_folder(out_dir)
    slides = read_bach_part_b(root)
    photos = read_bach_photos(root) if part_a else []  # checked before anything is written
    plan = plan_bach_slides(slides, train=train, select=select, n_train=n_train, seed=seed)
    by_name = {slide.name: slide for slide in slides}
    geojsons = {}
    for slide in slides:
        geojsons[slide.name] = write_bach_geojson(slide.xml_path, out_dir / "annotations" / f"{slide.name}.geojson")
    for role, names in (("select", plan.select), ("test", plan.test)):
        images, masks = [], []
        for name in names:
            say(f"{role}: reading {by_name[name].slide_path.name} at {patch_mpp:g} um/px")
            image, mask = _slide_mask(by_name[name], geojsons[name], patch_mpp, slide_mpp, with_image=True)
            images.append(image)
            masks.append(mask)
            write_png(out_dir / "masks" / f"{name}.png", mask)
        held_out = MaskSet(images, masks, list(names))
        held_out.validate(len(CLASS_NAMES))
        held_out.write(out_dir / role)
    for name in plan.train:
        _, mask = _slide_mask(by_name[name], geojsons[name], patch_mpp, slide_mpp, with_image=False)
        write_png(out_dir / "masks" / f"{name}.png", mask)
    say(f"train: cutting patches from {', '.join(plan.train)}")
    summary = prepare_patches(
        [by_name[name].slide_path for name in plan.train], [geojsons[name] for name in plan.train],
        out_dir / "train", mpp=slide_mpp, patch_mpp=patch_mpp, patch_size_px=patch_size_px, class_map=CLASS_MAP,
        outside_value=0, background_class=0, seed=seed, progress=progress,
    )
    n_photos = 0
    if part_a:
        say(f"part A: {len(photos)} photos to {patch_mpp:g} um/px")
        load_bach_part_a(root, mpp=patch_mpp).write(out_dir / "part_a")
        n_photos = len(photos)
    details = {
        "class_map": dict(CLASS_MAP),
        "slides": {name: {"slide": str(by_name[name].slide_path), "annotation": str(by_name[name].xml_path),
                          "classes": list(by_name[name].annotation.classes),
                          "skipped_regions": list(by_name[name].annotation.skipped)} for name in by_name},
        "train_mask_patches": summary.mask_patches,
        "train_label_patches": summary.label_patches,
        "part_a_photos": n_photos,
    }
    document = split_summary(
        dataset=f"BACH 2018 (Aresta et al. 2019), {Path(root).name}: part B slides and part A photos",
        class_names=CLASS_NAMES, class_colors=CLASS_COLORS, mpp=patch_mpp, seed=seed,
        names={"train": plan.train, "select": plan.select, "test": plan.test}, groups={}, details=details,
    )
    write_split_json(out_dir, document)
    return document
