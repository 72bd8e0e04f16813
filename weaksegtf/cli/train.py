"""``weakseg-train``: train from a mask-set folder and/or a label-set folder."""

from __future__ import annotations

import argparse
import sys

from weaksegtf.cli.common import add_version_argument, fail, missing_training_extra, quiet_tensorflow
from weaksegtf.training.config import (
    AUGMENTATIONS,
    DEFAULT_ALLOWED_CLASS_WEIGHT,
    LABEL_TILES,
    LR_SCHEDULES,
    MODES,
    SELF_TRAINING_MODES,
    TEACHERS,
    TrainingConfig,
)
from weaksegtf.training.strategy import STRATEGIES


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="weakseg-train",
        description="Train a WeakSegmenter from folders. A mask set is images/*.png + masks/*.png "
        "(uint8 class indices, 255 = not annotated); a label set is images + labels.csv (path,label) "
        "or one sub-folder per class; a low-resolution set is a label set whose labels are rows of "
        "--joint-table, one whole image per block. Writes model.keras, history.csv, metrics.json and "
        "predictions.png; the model card inside model.keras holds the classes, colours, mpp, tile size and "
        "stain reference that weakseg-export and weakseg-infer read.",
        epilog="Exit codes: 0 trained and written; 2 bad input (data, option, occupied or unwritable --out, "
        "missing [train] extra).",
    )
    _add_data_arguments(parser.add_argument_group("data and outputs"))
    _add_model_arguments(parser.add_argument_group("model"))
    _add_loss_arguments(parser.add_argument_group("losses"))
    _add_schedule_arguments(parser.add_argument_group("schedule"))
    return add_version_argument(parser)


def _add_data_arguments(group) -> None:
    group.add_argument("--masks", help="mask-set folder (images/, masks/)")
    group.add_argument("--labels", help="label-set folder (labels.csv or one folder per class)")
    group.add_argument("--val", help="validation mask-set folder")
    group.add_argument("--out", required=True, help="output folder")
    group.add_argument("--classes", required=True,
                       help="comma-separated class names, background first, e.g. 'background,benign,malignant'")
    group.add_argument("--lowres", help="low-resolution set folder: images + labels.csv of block labels (rows of --joint-table)")
    group.add_argument("--mode", default="S+C", choices=MODES,
                       help="data mode; LR = low-resolution labels only (default: %(default)s)")
    group.add_argument("--tile-size", type=int, default=128, help="training tile side in pixels (default: %(default)s)")
    group.add_argument("--label-tiles", default="whole", choices=LABEL_TILES,
                       help="'whole': each labelled image is one classification patch, fed whole (the paper's); "
                       "'grid': cut into --tile-size tiles that all inherit its label, only for label sets whose "
                       "images are already patch-sized (default: %(default)s)")
    group.add_argument("--label-max-size", type=int, default=512,
                       help="whole labelled images whose longer side exceeds this are shrunk to it (default: %(default)s)")
    group.add_argument("--label-batch-size", type=int, default=None,
                       help="whole labelled images per step (default: as many as fit in the pixels of one mask batch)")
    group.add_argument("--no-background-patches", dest="background_patches", action="store_false",
                       help="do not add the masked images' tiles that are >= 90%% background to the label stream "
                       "as background-labelled patches")
    group.add_argument("--mpp", type=float, default=None, metavar="X",
                       help="microns per pixel of the training images, stored in the model card (default: "
                       "from weakseg-prepare's summary.json or the GlaS split.json beside --masks/--labels)")
    group.add_argument("--overwrite", action="store_true",
                       help="accept a non-empty --out, replacing what weaksegtf wrote there (nothing else)")


def _add_model_arguments(group) -> None:
    group.add_argument("--architecture", default="resnet18", choices=["resnet18", "unet"],
                       help="ResNet-18 of Ciga & Martel or U-Net of Bokhorst et al. (default: %(default)s)")
    group.add_argument("--decoder", default="paper", choices=["paper", "skip"],
                       help="resnet18 decoder: paper (Table A.2, logits at 1/8) or skip (refined with the encoder's "
                       "stride-8 and stride-4 features, logits at 1/4) (default: %(default)s)")
    group.add_argument("--upsampling", default="nearest", choices=["nearest", "bilinear"],
                       help="resnet18: final enlargement of the logits to the input size (default: %(default)s)")
    group.add_argument("--unet-filters", type=int, default=32, help="U-Net first-level filters (default: %(default)s)")
    group.add_argument("--encoder-weights", help="torchvision ResNet-18 .pth or Keras .weights.h5")


def _add_loss_arguments(group) -> None:
    group.add_argument("--loss", default="weighted_ce", choices=["weighted_ce", "instance_balanced", "minibatch_balanced"],
                       help="mask loss; the balanced ones are for sparse annotations (default: %(default)s)")
    group.add_argument("--class-weights", default="auto",
                       help="'auto' (inverse pixel frequency), 'none', or comma-separated floats (default: %(default)s)")
    group.add_argument("--update", default="joint", choices=["joint", "sequential"],
                       help="one update on L_seg + L_cls, or two sequential updates (default: %(default)s)")
    group.add_argument("--classification-weight", type=float, default=1.0,
                       help="weight of the classification loss against the mask loss (default: %(default)s, the paper's)")
    group.add_argument("--allowed-class-weight", type=float, default=DEFAULT_ALLOWED_CLASS_WEIGHT,
                       help="weight of the allowed-class loss: every pixel of an image labelled y should be "
                       "background or y (default: %(default)s, measured best on GlaS validation patients; "
                       "0 is the paper's loss)")
    group.add_argument("--present-class-share", type=float, default=0.0, metavar="X",
                       help="with X > 0, an image labelled y should have at least this share of y pixels "
                       "(present-class size loss; default: %(default)s, off)")
    group.add_argument("--joint-table", help="joint distribution table (.csv or .json) for --lowres")
    group.add_argument("--lowres-loss", default="intra_inter", choices=["intra", "inter", "intra_inter"],
                       help="label super-resolution loss (default: %(default)s)")
    group.add_argument("--group-size", type=int, default=15,
                       help="blocks per group of the inter-instance statistics (default: %(default)s)")
    group.add_argument("--lowres-weight", type=float, default=1.0, help="weight of the low-resolution loss (default: %(default)s)")


def _add_schedule_arguments(group) -> None:
    group.add_argument("--epochs", type=int, default=15, help="epochs (default: %(default)s)")
    group.add_argument("--steps-per-epoch", type=int, default=50,
                       help="optimizer steps per epoch, the same for every mode; 0 = one pass over the largest "
                       "stream, the paper's epoch (default: %(default)s)")
    group.add_argument("--batch-size", type=int, default=20,
                       help="batch size of each stream per step; with --strategy, the global batch, split among "
                       "the replicas (default: %(default)s)")
    group.add_argument("--strategy", default="none", choices=STRATEGIES,
                       help="none: one device; mirrored: every GPU of this machine (CUDA_VISIBLE_DEVICES selects "
                       "them); multiworker: the machines of the TF_CONFIG environment variable, each running this "
                       "command (default: %(default)s)")
    group.add_argument("--lr", type=float, default=1e-3,
                       help="Adam learning rate; the paper's 1e-4 needs about 5,000 updates (default: %(default)s)")
    group.add_argument("--lr-schedule", default="cosine", choices=LR_SCHEDULES,
                       help="constant, or a half cosine from --lr to 0 over all updates (default: %(default)s)")
    group.add_argument("--augment", nargs="?", const="full", default="light", choices=AUGMENTATIONS,
                       help="light: flips, 90° rotations and mild colour jitter; full (--augment alone): also "
                       "elastic deformation and blur, several times slower (default: %(default)s)")
    group.add_argument("--seed", type=int, default=0, help="random seed (default: %(default)s)")
    group.add_argument("--last-epoch", dest="best_epoch", action="store_false",
                       help="with --val, keep the last epoch instead of the best one on --val")
    group.add_argument("--self-training", action=argparse.BooleanOptionalAction, default=None,
                       help="S+C / S+C*: a first model draws each labelled image's mask (background or its label, "
                       "where the model is sure), then models train from scratch on the masks + these pseudo-masks "
                       "(default: on with --masks, whole --labels and mode S+C or S+C*; --no-self-training trains "
                       "once, with the paper's alternating mask/label step)")
    group.add_argument("--teacher", default="S", choices=TEACHERS,
                       help="with self-training, the first round: S (the masks alone; the labels then act through "
                       "the pseudo-masks) or S+C (masks and the label stream) (default: %(default)s)")
    group.add_argument("--self-training-rounds", type=int, default=2, metavar="N",
                       help="with self-training, trainings on masks + pseudo-masks after the first round, each "
                       "model drawing the next round's pseudo-masks (default: %(default)s)")
    group.add_argument("--pseudo-confidence", type=float, default=0.9, metavar="P",
                       help="with --self-training, pixels whose background or foreground probability is below P "
                       "stay unannotated (default: %(default)s)")


def parse_class_weights(text: str):
    if text == "auto":
        return "auto"
    if text.lower() == "none":
        return None
    return [float(v) for v in text.split(",")]


def self_training_default(args: argparse.Namespace) -> bool:
    """Self-training is on by default wherever it applies: masks and whole labelled images in mode S+C or S+C*."""
    return bool(args.masks and args.labels and args.mode in SELF_TRAINING_MODES and args.label_tiles == "whole")


def training_config_from_args(args: argparse.Namespace, class_names: list[str], model_card: dict) -> TrainingConfig:
    """The ``TrainingConfig`` of the parsed options (the joint table is read later, with the data)."""
    return TrainingConfig(
        class_names=class_names, mode=args.mode, tile_size_px=args.tile_size, epochs=args.epochs,
        steps_per_epoch=args.steps_per_epoch or None, batch_size=args.batch_size, learning_rate=args.lr,
        lr_schedule=args.lr_schedule, class_weights=parse_class_weights(args.class_weights), update=args.update,
        augment=args.augment, seed=args.seed, encoder_weights=args.encoder_weights,
        architecture=args.architecture, unet_filters=args.unet_filters, segmentation_loss=args.loss,
        lowres_loss=args.lowres_loss, lowres_group_size=args.group_size, lowres_weight=args.lowres_weight,
        label_tiles=args.label_tiles, label_max_size_px=args.label_max_size,
        background_patches=args.background_patches, label_batch_size=args.label_batch_size,
        best_epoch=args.best_epoch, classification_weight=args.classification_weight,
        allowed_class_weight=args.allowed_class_weight, present_class_share=args.present_class_share,
        self_training=self_training_default(args) if args.self_training is None else args.self_training,
        pseudo_confidence=args.pseudo_confidence, teacher=args.teacher,
        self_training_rounds=args.self_training_rounds, decoder=args.decoder,
        upsampling=args.upsampling, model_card=model_card, overwrite=args.overwrite, strategy=args.strategy,
    )


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    quiet_tensorflow()
    missing = missing_training_extra()
    if missing:
        return fail(missing)
    from weaksegtf.data import LabelSet, MaskSet
    from weaksegtf.data.joint_distribution_table import JointDistributionTable
    from weaksegtf.errors import WeaksegError
    from weaksegtf.model_card import card_settings_from_folders
    from weaksegtf.training import run_training
    from weaksegtf.training.outputs import check_training_outputs

    class_names = [c.strip() for c in args.classes.split(",") if c.strip()]
    try:
        card = card_settings_from_folders(args.mpp, [args.masks, args.labels, args.lowres])
        # The cheap checks first, so a bad option or --out fails before any image is read.
        config = training_config_from_args(args, class_names, card)  # multiworker needs TF_CONFIG
        check_training_outputs(args.out, config)
        masks = MaskSet.from_folder(args.masks, len(class_names)) if args.masks else None
        labels = LabelSet.from_folder(args.labels, len(class_names), class_names) if args.labels else None
        val = MaskSet.from_folder(args.val, len(class_names)) if args.val else None
        table = JointDistributionTable.from_file(args.joint_table) if args.joint_table else None
        lowres = None
        if args.lowres:
            lowres = LabelSet.from_folder(args.lowres, class_names=table.labels if table else None)
        result = run_training(masks, labels, val, args.out, config, train_lowres=lowres, joint_table=table)
    except WeaksegError as error:
        return fail(str(error))
    except ValueError as error:  # e.g. malformed --class-weights
        return fail(str(error))
    from weaksegtf.cli.demo import _print_summary

    _print_summary(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
