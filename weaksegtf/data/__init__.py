"""Data in: image and mask files, mask and label sets, tiles, GlaS, BACH, Gleason2019, DigestPath2019 and a synthetic set.

Only numpy, OpenCV, Pillow and tifffile are used here (never TensorFlow), so
the folder formats can be prepared and checked on a machine without it.
"""

from weaksegtf.data.bach import (
    CLASS_NAMES as BACH_CLASS_NAMES,
    BachAnnotation,
    BachPhoto,
    BachRegion,
    BachSlide,
    BachSlidePlan,
    load_bach_part_a,
    plan_bach_slides,
    prepare_bach,
    rasterize_bach_xml,
    read_bach_part_b,
    read_bach_photos,
    read_bach_xml,
    write_bach_geojson,
)
from weaksegtf.data.block_labels import bin_shares, block_class_shares, block_labels_from_masks
from weaksegtf.data.dataset_split import DatasetSplit, plan_grouped_split
from weaksegtf.data.digestpath import (
    CLASS_NAMES as DIGESTPATH2019_CLASS_NAMES,
    DigestPathImage,
    load_digestpath2019,
    prepare_digestpath2019,
    read_digestpath,
)
from weaksegtf.data.glas import (
    CLASS_NAMES as GLAS_CLASS_NAMES,
    GlasPlan,
    GlasRecord,
    GlasSplit,
    load_glas,
    plan_glas_split,
    read_glas_grades,
)
from weaksegtf.data.gleason2019 import (
    CLASS_NAMES as GLEASON2019_CLASS_NAMES,
    GleasonCore,
    gleason2019_mask,
    load_gleason2019,
    prepare_gleason2019,
    read_gleason2019,
)
from weaksegtf.data.images import (
    IMAGE_SUFFIXES,
    MASK_SUFFIXES,
    list_image_files,
    read_mask,
    read_rgb,
)
from weaksegtf.data.joint_distribution_table import JointDistributionTable
from weaksegtf.data.label_set import LabelSet
from weaksegtf.data.mask_set import MaskSet
from weaksegtf.data.patches import (
    background_tiles,
    cut_tiles,
    downsample_label_set,
    downsample_mask_set,
    label_set_to_arrays,
    label_set_to_images,
    mask_set_to_arrays,
    pad_to_tile,
    resize_image,
    resize_mask,
    tile_rule_label_arrays,
    tile_rule_labels,
)
from weaksegtf.data.synthetic import CLASS_NAMES as SYNTHETIC_CLASS_NAMES
from weaksegtf.data.synthetic import make_synthetic_dataset
from weaksegtf.io import write_png

__all__ = [
    "BACH_CLASS_NAMES",
    "DIGESTPATH2019_CLASS_NAMES",
    "GLAS_CLASS_NAMES",
    "GLEASON2019_CLASS_NAMES",
    "IMAGE_SUFFIXES",
    "MASK_SUFFIXES",
    "SYNTHETIC_CLASS_NAMES",
    "BachAnnotation",
    "BachPhoto",
    "BachRegion",
    "BachSlide",
    "BachSlidePlan",
    "DatasetSplit",
    "DigestPathImage",
    "GlasPlan",
    "GlasRecord",
    "GlasSplit",
    "GleasonCore",
    "JointDistributionTable",
    "LabelSet",
    "MaskSet",
    "bin_shares",
    "block_class_shares",
    "block_labels_from_masks",
    "cut_tiles",
    "downsample_label_set",
    "downsample_mask_set",
    "background_tiles",
    "gleason2019_mask",
    "label_set_to_arrays",
    "label_set_to_images",
    "list_image_files",
    "load_bach_part_a",
    "load_digestpath2019",
    "load_glas",
    "load_gleason2019",
    "make_synthetic_dataset",
    "mask_set_to_arrays",
    "pad_to_tile",
    "plan_bach_slides",
    "plan_glas_split",
    "plan_grouped_split",
    "prepare_bach",
    "prepare_digestpath2019",
    "prepare_gleason2019",
    "rasterize_bach_xml",
    "read_bach_part_b",
    "read_bach_photos",
    "read_bach_xml",
    "read_digestpath",
    "read_glas_grades",
    "read_gleason2019",
    "read_mask",
    "read_rgb",
    "resize_image",
    "resize_mask",
    "tile_rule_label_arrays",
    "tile_rule_labels",
    "write_bach_geojson",
    "write_png",
]
