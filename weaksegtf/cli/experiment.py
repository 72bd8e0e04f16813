"""``weakseg-experiment``: the paper's S / S+C / S+C* sweep (and classification-head runs), and its report."""

from __future__ import annotations

import argparse
import shlex
import sys

from weaksegtf.cli.common import add_version_argument, fail, missing_training_extra, quiet_tensorflow

MODES = ("S", "S+C", "S+C*")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="weakseg-experiment",
        description="Reproduce Ciga & Martel's experiment: train S, S+C and S+C* over s%% of images (or patches) "
        "with masks, with paired repeats that redraw the masked data (the same draw for every mode), choose each "
        "run's epoch on selection images and score it once on test images, then summarise as in Fig. 5/6 with "
        "paired differences and bootstrap CIs. Resumable: finished runs recorded in OUT/runs.csv are not redone.",
    )
    commands = parser.add_subparsers(dest="command", required=True)

    sweep = commands.add_parser(
        "sweep", help="run (or resume) a sweep",
        description="Run or resume a sweep; writes runs.csv, sweep.json, draws.json, summary.csv, paired.csv and "
        "plots into --out. Each run keeps its best epoch on a selection set (GlaS: inner validation patients; "
        "--select with --masks) and is scored once on a test set of other patients (GlaS: outer test patients; "
        "--val with --masks). Without a selection set the last epoch is scored.",
    )
    data = sweep.add_mutually_exclusive_group(required=True)
    data.add_argument("--glas", help="GlaS training folder (Grade.csv, images/, masks/): patient-wise split into "
                      "training, selection (--val-fraction) and test (--test-fraction) patients")
    data.add_argument("--synthetic", type=int, metavar="N", help="use N built-in synthetic training images "
                      "(and N/4 selection and N/4 test images)")
    data.add_argument("--masks", help="mask-set folder of training images (labels = dominant foreground class)")
    sweep.add_argument("--val", help="with --masks: mask-set folder of the test images every run is scored on")
    sweep.add_argument("--select", help="with --masks: mask-set folder of selection images, on which each run "
                       "keeps its best epoch (default: none, the last epoch is scored)")
    sweep.add_argument("--classes", help="comma-separated class names, background first (with --masks)")
    sweep.add_argument("--out", required=True, help="results folder (an existing one is resumed)")
    sweep.add_argument("--percents", type=float, nargs="+", default=[5, 10, 25, 100],
                       help="s values: %% of the training data that keep masks (default: %(default)s)")
    sweep.add_argument("--percent-of", default="images", choices=["images", "patches"],
                       help="what s%% counts: 'images' (s%% of the training images keep their masks) or "
                       "'patches' (the paper's: s%% of the mask tiles of all training images, --tile-size tiles) "
                       "(default: %(default)s)")
    sweep.add_argument("--modes", nargs="+", default=list(MODES), choices=MODES, help="modes (default: all)")
    sweep.add_argument("--repeats", type=int, default=5,
                       help="paired repeats: repeat r draws the masked data once (seed + r) and every mode uses "
                       "that draw (default: %(default)s)")
    sweep.add_argument("--c-percents", type=float, nargs="*", default=[],
                       help="classification-head experiment: c values in [0, 50] for S2+C2, S2+C2*, S2*+C2 "
                       "(default: none)")
    sweep.add_argument("--epochs", type=int, default=2, help="epochs per run (default: %(default)s)")
    sweep.add_argument("--epoch-length", default="equal", choices=["pass", "equal"],
                       help="'pass': the paper's epoch, one pass over each run's own streams (runs with more data "
                       "make more updates); 'equal': the same --steps-per-epoch for every run (default: "
                       "%(default)s)")
    sweep.add_argument("--steps-per-epoch", type=int, default=None,
                       help="with --epoch-length equal: optimizer steps per epoch, the same for every run (default: "
                       "one pass over the tiles of all training images)")
    sweep.add_argument("--batch-size", type=int, default=20, help="batch size per stream (default: %(default)s)")
    sweep.add_argument("--lr", type=float, default=1e-3,
                       help="Adam learning rate (default: %(default)s; at the paper's 1e-4 the classifier barely "
                       "moves in a few hundred steps)")
    sweep.add_argument("--tile-size", type=int, default=128, help="training tile side in pixels (default: %(default)s)")
    sweep.add_argument("--downsample", type=int, default=2, help="GlaS: divide each side by this (default: %(default)s)")
    sweep.add_argument("--split-seed", type=int, default=0, help="GlaS: seed of the patient split (default: %(default)s)")
    sweep.add_argument("--test-fraction", type=float, default=0.2,
                       help="GlaS: share of images (whole patients) in the test set, scored once; 0 scores the "
                       "validation patients and selects nothing (default: %(default)s)")
    sweep.add_argument("--val-fraction", type=float, default=0.15,
                       help="GlaS: share of images (whole patients) in the selection set (default: %(default)s)")
    sweep.add_argument("--image-size", type=int, default=64, help="synthetic: image side (default: %(default)s)")
    sweep.add_argument("--update", default="joint", choices=["joint", "sequential"], help="(default: %(default)s)")
    sweep.add_argument("--seed", type=int, default=0, help="repeat r uses seed + r (default: %(default)s)")
    sweep.add_argument("--label-source", default="whole", choices=["whole", "image", "tile_rule"],
                       help="how labelled data enter the label stream: 'whole' (each labelled image whole, one "
                       "classification patch, as the paper's), 'image' (grid tiles inheriting their image's "
                       "label), 'tile_rule' (section 3.3: a tile whose dominant class covers >= --dominant gets "
                       "that class, others are dropped) (default: %(default)s)")
    sweep.add_argument("--no-background-patches", dest="background_patches", action="store_false",
                       help="with --label-source whole or image: do not add the tiles of the masked data that are "
                       ">= --dominant background to the label stream as background patches (added by default)")
    sweep.add_argument("--label-max-size", type=int, default=512,
                       help="with --label-source whole: longest side of a labelled image (default: %(default)s)")
    sweep.add_argument("--dominant", type=float, default=0.9, help="tile-rule threshold (default: %(default)s)")
    sweep.add_argument("--encoder-weights", metavar="PATH",
                       help="torchvision ResNet-18 .pth (or Keras .weights.h5) every run starts from; nothing is "
                       "downloaded (docs/training.md says how to get the ImageNet file) (default: from scratch)")
    sweep.add_argument("--boundary-px", type=float, default=3.0, help="boundary band in pixels (default: %(default)s)")
    sweep.add_argument("--results-md", help="also rewrite this file's sweep section (e.g. docs/results.md)")

    report = commands.add_parser("report", help="summarise a sweep folder; optionally fill docs/results.md",
                                 description="Write summary.csv and Fig. 5/6-style plots of a sweep folder and, "
                                 "with --results-md, rewrite its section between the marker comments.")
    report.add_argument("--out", required=True, help="the sweep's results folder")
    report.add_argument("--results-md", help="Markdown file to update (e.g. docs/results.md)")
    report.add_argument("--figures-dir", help="where plots go (default: figures/ beside --results-md, else --out)")
    report.add_argument("--section", default="glas-sweep", help="marker name of the section (default: %(default)s)")
    report.add_argument("--heading", default="## Sweep: S, S+C, S+C* on GlaS",
                        help="heading used when the section is new (default: %(default)r)")
    _add_prepare_parser(commands)
    return add_version_argument(parser)


#: Datasets ``weakseg-experiment prepare`` reads, as their challenges distribute them.
DATASETS = ("bach", "gleason2019", "digestpath2019")


def _add_prepare_parser(commands) -> None:
    prepare = commands.add_parser(
        "prepare", help="turn a challenge dataset (BACH, Gleason2019, DigestPath2019) into the paper's splits",
        description="Read a dataset exactly as its challenge distributes it and write the paper's training, "
        "selection and test sets into --out (mask sets, label sets, split.json with classes, colours and mpp), "
        "ready for 'weakseg-experiment sweep --masks ... --select ... --val ...'. docs/data-formats.md describes "
        "each layout.",
    )
    prepare.add_argument("dataset", choices=DATASETS, help="which dataset ROOT holds")
    prepare.add_argument("root", help="the unpacked dataset folder (BACH: ICIAR2018_BACH_Challenge with Photos/ and "
                         "WSI/; Gleason2019: 'Train Imgs/' and Maps1_T/ .. Maps6_T/; DigestPath2019: "
                         "tissue-train-pos-v1/ and tissue-train-neg/)")
    prepare.add_argument("--out", required=True, help="output folder (new or empty)")
    prepare.add_argument("--seed", type=int, default=0, help="seed of the split (default: %(default)s)")
    prepare.add_argument("--map", default="first",
                         help="Gleason2019: ground truth, 'first' (the paper's: each core's lowest-numbered "
                         "pathologist's map), 'majority' (per-pixel plurality, ties not annotated) or a pathologist "
                         "1..6 (default: %(default)s)")
    prepare.add_argument("--downsample", type=int, default=8,
                         help="Gleason2019: divide each side of the cores by this (default: %(default)s)")
    prepare.add_argument("--size", type=int, default=1024,
                         help="DigestPath2019: resize every image to SIZE x SIZE px, the paper's (default: "
                         "%(default)s)")
    prepare.add_argument("--mpp", type=float, default=None,
                         help="DigestPath2019: resize to this many microns per pixel instead, keeping the aspect; "
                         "BACH: resolution of patches, slides and photos (default: 8.0, the paper's 1.25x)")
    prepare.add_argument("--native-mpp", type=float, default=None,
                         help="Gleason2019 / DigestPath2019: microns per pixel of the images as distributed "
                         "(default: 0.25 for Gleason2019's 40x, 0.5 for DigestPath2019's 20x)")
    prepare.add_argument("--train-slides", nargs="+", metavar="NAME",
                         help="BACH: part B training slides, e.g. A01 A03 A05 (default: 3 drawn with --seed)")
    prepare.add_argument("--select-slide", metavar="NAME",
                         help="BACH: the selection slide (default: one with all four classes, drawn with --seed)")
    prepare.add_argument("--slide-mpp", type=float, default=None,
                         help="BACH: level-0 microns per pixel of the slides, overriding the .svs files")
    prepare.add_argument("--no-part-a", dest="part_a", action="store_false", help="BACH: skip part A")
    prepare.add_argument("--quiet", action="store_true", help="no progress lines")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    quiet_tensorflow()
    missing = missing_training_extra() if args.command == "sweep" else None
    if missing:
        return fail(missing)
    from weaksegtf.errors import WeaksegError

    try:
        if args.command == "sweep":
            return _sweep(args, argv)
        if args.command == "prepare":
            return _prepare(args)
        return _report(args)
    except WeaksegError as error:
        return fail(str(error))


def _prepare(args) -> int:
    """One library call per dataset; prints what was written and the sweep command that reads it."""
    progress = not args.quiet
    if args.dataset == "bach":
        from weaksegtf.data.bach import PATCH_MPP, prepare_bach

        summary = prepare_bach(args.root, args.out, train=args.train_slides, select=args.select_slide,
                               seed=args.seed, patch_mpp=args.mpp or PATCH_MPP, slide_mpp=args.slide_mpp,
                               part_a=args.part_a, progress=progress)
        masks = f"{args.out}/train/masks_set"
    elif args.dataset == "gleason2019":
        from weaksegtf.data.gleason2019 import NOMINAL_MPP, prepare_gleason2019

        summary = prepare_gleason2019(args.root, args.out, map=args.map, downsample=args.downsample, seed=args.seed,
                                      native_mpp=args.native_mpp or NOMINAL_MPP)
        masks = f"{args.out}/train"
    else:
        from weaksegtf.data.digestpath import NOMINAL_MPP, prepare_digestpath2019

        summary = prepare_digestpath2019(args.root, args.out, size_px=None if args.mpp else args.size, mpp=args.mpp,
                                         seed=args.seed, native_mpp=args.native_mpp or NOMINAL_MPP,
                                         progress=progress)
        masks = f"{args.out}/train"
    counts = ", ".join(f"{len(summary[key])} {key}" for key in ("train", "select", "test"))
    print(f"wrote {args.out}: {counts} ({'slides' if args.dataset == 'bach' else 'images'}); classes "
          f"{', '.join(summary['class_names'])}; split.json")
    classes = shlex.quote(",".join(summary["class_names"]))
    source = "whole" if args.dataset == "bach" else "tile_rule"  # section 3.3: Gleason and DigestPath by the tile rule
    print(f"next: weakseg-experiment sweep --masks {masks} --select {args.out}/select --val {args.out}/test "
          f"--classes {classes} --percent-of patches --label-source {source} --out runs/{args.dataset}")
    return 0


def _sweep(args, argv) -> int:
    from weaksegtf.experiment import (
        SweepSettings,
        folder_sweep_data,
        glas_sweep_data,
        run_sweep,
        synthetic_sweep_data,
    )
    from weaksegtf.experiment_report import write_report

    if args.masks and not (args.val and args.classes):
        return fail("--masks needs --val DIR and --classes NAMES")
    if args.select and not args.masks:
        return fail("--select goes with --masks (GlaS and synthetic data bring their own selection set)")
    if args.glas:
        data = glas_sweep_data(args.glas, downsample=args.downsample, split_seed=args.split_seed,
                               test_fraction=args.test_fraction, val_fraction=args.val_fraction)
    elif args.synthetic:
        n_held = max(4, args.synthetic // 4)
        data = synthetic_sweep_data(args.synthetic, n_test=n_held, n_select=n_held, size_px=args.image_size,
                                    seed=args.split_seed)
    else:
        data = folder_sweep_data(args.masks, args.val, [c.strip() for c in args.classes.split(",") if c.strip()],
                                 select_dir=args.select)
    settings = SweepSettings(
        epochs=args.epochs, steps_per_epoch=args.steps_per_epoch, epoch_length=args.epoch_length,
        batch_size=args.batch_size, learning_rate=args.lr, tile_size_px=args.tile_size, update=args.update,
        seed=args.seed, boundary_distance_px=args.boundary_px, percent_of=args.percent_of,
        label_source=args.label_source, background_patches=args.background_patches,
        label_max_size_px=args.label_max_size, dominant_fraction=args.dominant, encoder_weights=args.encoder_weights,
    )
    command = "weakseg-experiment " + shlex.join(sys.argv[1:] if argv is None else argv)
    result = run_sweep(data, args.out, percents=args.percents, modes=args.modes, repeats=args.repeats,
                       classification_percents=args.c_percents, settings=settings, command=command)
    report = write_report(args.out, results_md=args.results_md)
    print(f"{result.trained} runs trained, {result.skipped} already done; runs: {result.runs_path}")
    _print_report(report)
    return 0


def _report(args) -> int:
    from weaksegtf.experiment_report import write_report

    report = write_report(args.out, results_md=args.results_md, figures_dir=args.figures_dir,
                          section=args.section, heading=args.heading)
    _print_report(report)
    return 0


def _print_report(report) -> None:
    print(f"summary: {report.summary_path}")
    if report.paired_path:
        print(f"paired:  {report.paired_path}")
    for path in report.figure_paths:
        print(f"figure:  {path}")
    if report.results_md:
        print(f"updated: {report.results_md}")


if __name__ == "__main__":
    sys.exit(main())
