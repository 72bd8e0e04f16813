"""Data in: image and mask files, mask and label sets, tiles, GlaS and a synthetic set.

Only numpy, OpenCV, Pillow and tifffile are used here (never TensorFlow), so
the folder formats can be prepared and checked on a machine without it.
"""

from weaksegtf.data.block_labels import bin_shares, block_class_shares, block_labels_from_masks
from weaksegtf.data.glas import (
    CLASS_NAMES as GLAS_CLASS_NAMES,
    GlasPlan,
    GlasRecord,
    GlasSplit,
    load_glas,
    plan_glas_split,
    read_glas_grades,
)
from weaksegtf.data.images import (
    IMAGE_SUFFIXES,
    MASK_SUFFIXES,
    list_image_files,
    read_mask,
    read_rgb,
    write_png,
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

__all__ = [
    "GLAS_CLASS_NAMES",
    "IMAGE_SUFFIXES",
    "MASK_SUFFIXES",
    "SYNTHETIC_CLASS_NAMES",
    "GlasPlan",
    "GlasRecord",
    "GlasSplit",
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
    "label_set_to_arrays",
    "label_set_to_images",
    "list_image_files",
    "load_glas",
    "make_synthetic_dataset",
    "mask_set_to_arrays",
    "pad_to_tile",
    "plan_glas_split",
    "read_glas_grades",
    "read_mask",
    "read_rgb",
    "resize_image",
    "resize_mask",
    "tile_rule_label_arrays",
    "tile_rule_labels",
    "write_png",
]
