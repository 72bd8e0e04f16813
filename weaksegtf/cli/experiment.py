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
        description="Reproduce Ciga & Martel's experiment: train S, S+C and S+C* over s%% of images with masks, "
        "with repeats that redraw the masked images (the same draw for every mode), then summarise as in "
        "Fig. 5/6. Resumable: finished runs recorded in OUT/runs.csv are not redone.",
    )
    commands = parser.add_subparsers(dest="command", required=True)

    sweep = commands.add_parser("sweep", help="run (or resume) a sweep",
                                description="Run or resume a sweep; writes runs.csv, sweep.json, draws.json, "
                                "summary.csv and plots into --out.")
    data = sweep.add_mutually_exclusive_group(required=True)
    data.add_argument("--glas", help="GlaS training folder (Grade.csv, images/, masks/): patient-wise split")
    data.add_argument("--synthetic", type=int, metavar="N", help="use N built-in synthetic training images")
    data.add_argument("--masks", help="mask-set folder of training images (labels = dominant foreground class)")
    sweep.add_argument("--val", help="validation mask-set folder (with --masks)")
    sweep.add_argument("--classes", help="comma-separated class names, background first (with --masks)")
    sweep.add_argument("--out", required=True, help="results folder (an existing one is resumed)")
    sweep.add_argument("--percents", type=float, nargs="+", default=[5, 10, 25, 100],
                       help="s values: %% of training images that keep masks (default: %(default)s)")
    sweep.add_argument("--modes", nargs="+", default=list(MODES), choices=MODES, help="modes (default: all)")
    sweep.add_argument("--repeats", type=int, default=3, help="draws per setting (default: %(default)s)")
    sweep.add_argument("--c-percents", type=float, nargs="*", default=[],
                       help="classification-head experiment: c values in [0, 50] for S2+C2, S2+C2*, S2*+C2 "
                       "(default: none)")
    sweep.add_argument("--epochs", type=int, default=2, help="epochs per run (default: %(default)s)")
    sweep.add_argument("--steps-per-epoch", type=int, default=None,
                       help="optimizer steps per epoch, the same for every run (default: one pass over the tiles "
                       "of all training images)")
    sweep.add_argument("--batch-size", type=int, default=20, help="batch size per stream (default: %(default)s)")
    sweep.add_argument("--lr", type=float, default=1e-3,
                       help="Adam learning rate (default: %(default)s; at the paper's 1e-4 the classifier barely "
                       "moves in a few hundred steps)")
    sweep.add_argument("--tile-size", type=int, default=128, help="training tile side in pixels (default: %(default)s)")
    sweep.add_argument("--downsample", type=int, default=2, help="GlaS: divide each side by this (default: %(default)s)")
    sweep.add_argument("--split-seed", type=int, default=0, help="GlaS: seed of the patient split (default: %(default)s)")
    sweep.add_argument("--image-size", type=int, default=64, help="synthetic: image side (default: %(default)s)")
    sweep.add_argument("--update", default="joint", choices=["joint", "sequential"], help="(default: %(default)s)")
    sweep.add_argument("--seed", type=int, default=0, help="repeat r uses seed + r (default: %(default)s)")
    sweep.add_argument("--label-source", default="tile_rule", choices=["tile_rule", "image"],
                       help="label of a label-stream tile: the section 3.3 tile rule on its mask (dominant class "
                            ">= --dominant, else dropped) or its image's label (default: %(default)s)")
    sweep.add_argument("--dominant", type=float, default=0.9, help="tile-rule threshold (default: %(default)s)")
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
    return add_version_argument(parser)


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
        return _report(args)
    except WeaksegError as error:
        return fail(str(error))


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
    if args.glas:
        data = glas_sweep_data(args.glas, downsample=args.downsample, split_seed=args.split_seed)
    elif args.synthetic:
        data = synthetic_sweep_data(args.synthetic, n_val=max(4, args.synthetic // 4), size_px=args.image_size,
                                    seed=args.split_seed)
    else:
        data = folder_sweep_data(args.masks, args.val, [c.strip() for c in args.classes.split(",") if c.strip()])
    settings = SweepSettings(
        epochs=args.epochs, steps_per_epoch=args.steps_per_epoch, batch_size=args.batch_size,
        learning_rate=args.lr, tile_size_px=args.tile_size, update=args.update, seed=args.seed,
        boundary_distance_px=args.boundary_px, label_source=args.label_source, dominant_fraction=args.dominant,
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
    for path in report.figure_paths:
        print(f"figure:  {path}")
    if report.results_md:
        print(f"updated: {report.results_md}")


if __name__ == "__main__":
    sys.exit(main())
