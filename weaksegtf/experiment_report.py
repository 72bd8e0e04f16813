"""Summaries, paired differences, Fig. 5/6-style plots and the ``docs/results.md`` section of a sweep.

``weakseg-experiment report`` reads ``runs.csv`` (see :mod:`weaksegtf.experiment`),
writes ``summary.csv`` (mean ± std per mode and percentage, absolute and
relative), ``paired.csv`` (paired differences with bootstrap CIs) and the plots, and optionally rewrites one section of a Markdown
file between two marker comments, leaving the rest of the file untouched.

Relative values follow the paper: segmentation metrics are divided by the mean
of ``S`` at s = 100% (Fig. 5), classification accuracy by the mean of
``S2+C2`` at c = 50% (Fig. 6); when that setting was not run, the largest
percentage run stands in and the report says so. Standard deviations are
sample standard deviations (n - 1) over repeats, 0 for a single repeat.

Paired differences (``paired.csv``): repeats share their masked draw across
modes, so S+C and S+C* are compared with S repeat by repeat. For each s%, the
mean of the per-repeat differences gets a 95% percentile-bootstrap confidence
interval (resampling repeats, fixed seed), for gland (foreground) Dice and F1 macro.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from weaksegtf.data.images import PathLike
from weaksegtf.errors import DataError
from weaksegtf.experiment import (
    CLASSIFICATION_MODES,
    RUN_METRICS,
    SEGMENTATION_MODES,
    SWEEP_JSON,
    read_runs,
)
from weaksegtf.markdown_section import replace_markdown_section

SUMMARY_CSV = "summary.csv"
PAIRED_CSV = "paired.csv"
#: Comparisons of the paired-differences table: (mode, baseline), same s% and repeat.
PAIRS = (("S+C", "S"), ("S+C*", "S"))
#: Metrics of the paired-differences table, with their labels.
PAIRED_METRICS = {"foreground_dice": "gland (foreground) Dice", "f1_macro": "F1 macro"}
BOOTSTRAP_RESAMPLES = 10_000
BOOTSTRAP_SEED = 0
DEFAULT_HEADING = "## Sweep: S, S+C, S+C* on GlaS"
DEFAULT_SECTION = "glas-sweep"
#: Metrics drawn in the segmentation figure, with their labels.
SEGMENTATION_PLOT_METRICS = {
    "foreground_dice": "gland (foreground) Dice",
    "f1_weighted": "F1 weighted (paper's F1 micro)",
    "f1_macro": "F1 macro",
    "mean_iou": "mean IoU",
    "bach_score": "BACH score (eq. 6)",
    "foreground_on_background": "foreground on true background",
    "boundary_mean_iou": "boundary mean IoU",
}
_TABLE_METRICS = {
    "foreground_dice": "gland Dice",
    "f1_weighted": "F1 weighted",
    "f1_macro": "F1 macro",
    "mean_iou": "mIoU",
    "bach_score": "BACH",
    "foreground_on_background": "fg on bg",
    "foreground_confusion": "fg confusion",
    "boundary_mean_iou": "boundary mIoU",
    "cls_accuracy": "cls acc",
    "best_epoch": "best epoch",
}
_MARKER = "<!-- weakseg-experiment report {} {} -->"


@dataclass
class ReportResult:
    """Files a report wrote."""

    summary_path: Path
    figure_paths: list[Path]
    results_md: Path | None
    summary: list[dict]
    paired_path: Path | None = None
    paired: list[dict] = field(default_factory=list)


def _mean_std(values: list[float]) -> tuple[float | None, float | None]:
    values = [v for v in values if v is not None]
    if not values:
        return None, None
    std = float(np.std(values, ddof=1)) if len(values) > 1 else 0.0
    return float(np.mean(values)), std


def _reference(rows: list[dict], experiment: str) -> tuple[str, float] | None:
    """Mode and percentage that relative values are divided by."""
    mode, wanted = ("S", 100.0) if experiment == "segmentation" else ("S2+C2", 50.0)
    percents = sorted({r["percent"] for r in rows if r["experiment"] == experiment and r["mode"] == mode})
    if not percents:
        return None
    return mode, wanted if wanted in percents else percents[-1]


def summarize(rows: list[dict]) -> list[dict]:
    """One dict per (experiment, mode, percent): n, and mean/std, rel_mean/rel_std of each metric."""
    groups: dict[tuple, list[dict]] = {}
    for row in rows:
        groups.setdefault((row["experiment"], row["mode"], float(row["percent"])), []).append(row)
    order = {m: i for i, m in enumerate(SEGMENTATION_MODES + CLASSIFICATION_MODES)}
    summary = []
    for (experiment, mode, percent), members in sorted(groups.items(), key=lambda kv: (kv[0][0] != "segmentation",
                                                                                      order.get(kv[0][1], 99), kv[0][2])):
        entry = {"experiment": experiment, "mode": mode, "percent": percent, "n": len(members),
                 "n_mask_images": members[0]["n_mask_images"], "n_label_images": members[0]["n_label_images"]}
        for metric in RUN_METRICS + ("best_epoch", "steps", "train_seconds"):
            entry[f"{metric}_mean"], entry[f"{metric}_std"] = _mean_std([m.get(metric) for m in members])
        summary.append(entry)
    for experiment in ("segmentation", "classification"):
        reference = _reference(rows, experiment)
        if reference is None:
            continue
        base = next(e for e in summary if (e["experiment"], e["mode"], e["percent"]) == (experiment, *reference))
        for entry in summary:
            if entry["experiment"] != experiment:
                continue
            entry["relative_to"] = f"{reference[0]}@{reference[1]:g}%"
            for metric in RUN_METRICS:
                ref = base[f"{metric}_mean"]
                mean, std = entry[f"{metric}_mean"], entry[f"{metric}_std"]
                ok = ref not in (None, 0) and mean is not None
                entry[f"{metric}_rel_mean"] = mean / ref if ok else None
                entry[f"{metric}_rel_std"] = std / ref if ok else None
    return summary


def bootstrap_ci(values: Sequence[float], level: float = 0.95, n_resamples: int = BOOTSTRAP_RESAMPLES,
                 seed: int = BOOTSTRAP_SEED) -> tuple[float, float] | None:
    """Percentile-bootstrap confidence interval of the mean of ``values``.

    Resamples ``values`` with replacement ``n_resamples`` times (a fixed
    ``seed``, so a report is reproducible) and returns the ``(1 - level) / 2``
    and ``(1 + level) / 2`` percentiles of the resampled means (Efron &
    Tibshirani 1993, ch. 13). ``None`` for fewer than two values: one repeat
    says nothing about spread.

    Example:
    >>> low, high = bootstrap_ci([0.1, 0.12, 0.08, 0.11, 0.09])
    >>> bool(low < 0.1 < high)
    True
    """
    values = np.asarray([v for v in values if v is not None], dtype=np.float64)
    if len(values) < 2:
        return None
    rng = np.random.default_rng(seed)
    means = values[rng.integers(0, len(values), size=(n_resamples, len(values)))].mean(1)
    tail = (1.0 - level) / 2 * 100
    return float(np.percentile(means, tail)), float(np.percentile(means, 100 - tail))


def paired_differences(rows: list[dict], pairs: Sequence[tuple[str, str]] = PAIRS,
                       metrics: Sequence[str] = tuple(PAIRED_METRICS)) -> list[dict]:
    """Per s%, pair and metric: mean over repeats of (mode - baseline), with its 95% bootstrap CI.

    Runs are paired by repeat (they share the masked draw); a repeat missing
    either run, or its metric, is left out. Segmentation runs only.
    """
    by_key = {(r["mode"], float(r["percent"]), r["repeat"]): r for r in rows if r["experiment"] == "segmentation"}
    percents = sorted({key[1] for key in by_key})
    table = []
    for percent in percents:
        for mode, baseline in pairs:
            repeats = sorted(k[2] for k in by_key if k[0] == mode and k[1] == percent
                             and (baseline, percent, k[2]) in by_key)
            if not repeats:
                continue
            for metric in metrics:
                diffs = [by_key[(mode, percent, r)].get(metric) - by_key[(baseline, percent, r)].get(metric)
                         for r in repeats if by_key[(mode, percent, r)].get(metric) is not None
                         and by_key[(baseline, percent, r)].get(metric) is not None]
                if not diffs:
                    continue
                ci = bootstrap_ci(diffs)
                table.append({"percent": percent, "mode": mode, "baseline": baseline, "metric": metric,
                              "n": len(diffs), "mean_difference": float(np.mean(diffs)),
                              "ci_low": None if ci is None else ci[0], "ci_high": None if ci is None else ci[1]})
    return table


def plot_sweep(summary: list[dict], experiment: str, path: PathLike, metrics: dict[str, str],
               relative: bool = True, title: str = "", percent_of: str = "images") -> Path:
    """One panel per metric: mean per mode against the percentage, std shaded (Fig. 5 / Fig. 6 style)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    entries = [e for e in summary if e["experiment"] == experiment]
    if not entries:
        raise DataError(f"no {experiment} runs to plot")
    modes = [m for m in SEGMENTATION_MODES + CLASSIFICATION_MODES if any(e["mode"] == m for e in entries)]
    columns = min(3, len(metrics))
    rows = -(-len(metrics) // columns)
    figure, axes = plt.subplots(rows, columns, figsize=(4.2 * columns, 3.4 * rows), squeeze=False)
    styles = {"S": ("x", "-"), "S2+C2": ("x", "-")}
    percents = sorted({e["percent"] for e in entries})
    log_x = experiment == "segmentation" and percents[0] > 0
    reference = entries[0].get("relative_to")
    for axis, (metric, label) in zip(axes.ravel(), metrics.items()):
        # A reference mean of 0 (e.g. an untrained classifier) leaves no relative value: draw absolute ones.
        panel_relative = relative and any(e.get(f"{metric}_rel_mean") is not None for e in entries)
        suffix = "_rel" if panel_relative else ""
        axis.set_ylabel(f"relative to {reference}" if panel_relative else "value")
        for mode in modes:
            points = [e for e in entries if e["mode"] == mode and e.get(f"{metric}{suffix}_mean") is not None]
            if not points:
                continue
            x = np.array([e["percent"] for e in points])
            mean = np.array([e[f"{metric}{suffix}_mean"] for e in points])
            std = np.array([e[f"{metric}{suffix}_std"] for e in points])
            marker, line = styles.get(mode, ("o", "-"))
            axis.plot(x, mean, marker=marker, linestyle=line, label=mode)
            axis.fill_between(x, mean - std, mean + std, alpha=0.2)
        if panel_relative:
            axis.axhline(1.0, color="grey", linewidth=0.8, linestyle=":")
        if log_x:
            axis.set_xscale("log")
        axis.set_xticks(percents, [f"{p:g}" for p in percents])
        axis.minorticks_off()
        axis.set_title(label, fontsize=10)
        axis.set_xlabel(f"s (% of {percent_of} with masks)" if experiment == "segmentation" else "c (% with labels)")
        axis.grid(alpha=0.3)
    for axis in axes.ravel()[len(metrics):]:
        axis.axis("off")
    if axes.ravel()[0].get_legend_handles_labels()[0]:
        axes.ravel()[0].legend(fontsize=8)
    if title:
        figure.suptitle(title, fontsize=11)
    figure.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def paper_claim(summary: list[dict], threshold: float = 0.15) -> list[dict]:
    """The paper's claim at each s <= 10%: S+C (or S+C*) beats S by >= 15% (relative to S at 100%) in both F1s."""
    by_key = {(e["mode"], e["percent"]): e for e in summary if e["experiment"] == "segmentation"}
    checks = []
    for (mode, percent), entry in sorted(by_key.items(), key=lambda kv: kv[0][1]):
        if mode == "S" or percent > 10 or ("S", percent) not in by_key:
            continue
        base = by_key[("S", percent)]
        gaps = {}
        for metric in ("f1_weighted", "f1_macro"):
            a, b = entry.get(f"{metric}_rel_mean"), base.get(f"{metric}_rel_mean")
            gaps[metric] = None if a is None or b is None else a - b
        holds = all(g is not None and g >= threshold for g in gaps.values())
        checks.append({"mode": mode, "percent": percent, **{f"gap_{k}": v for k, v in gaps.items()}, "holds": holds})
    return checks


def _cell(entry: dict, metric: str, relative: bool = False) -> str:
    suffix = "_rel" if relative else ""
    mean, std = entry.get(f"{metric}{suffix}_mean"), entry.get(f"{metric}{suffix}_std")
    return "–" if mean is None else f"{mean:.3f} ± {std:.3f}"


def _scoring_text(record: dict) -> str:
    n_test = record.get("n_test_images", record.get("n_val_images", "?"))
    n_select = record.get("n_select_images", 0)
    if n_select:
        return (f"{n_select} selection images (inner validation: each run keeps its best epoch by mean Dice on "
                f"them) and {n_test} test images (GlaS: other patients than training and selection), scored once "
                f"and used to choose nothing.")
    if "n_test_images" in record:
        return f"{n_test} test images, scored once; no selection set, so each run is scored at its last epoch."
    return f"{n_test} validation images, scored at each run's last epoch (a sweep from before selection sets)."


def _training_text(settings: dict, record: dict) -> str:
    if settings.get("epoch_length") == "pass":
        steps = (f"{settings.get('epochs')} epoch(s), each one pass over the run's own streams (the paper's "
                 f"epoch: runs with more data make more updates; steps per run in the table)")
    else:
        steps = (f"{settings.get('epochs')} epoch(s) × {record.get('steps_per_epoch')} steps for every run "
                 f"(equal optimizer steps across modes and s)")
    source = settings.get("label_source", "tile_rule")
    labels = {"whole": "each labelled image whole, as one classification patch",
              "image": "grid tiles inheriting their image's label",
              "tile_rule": "tiles labelled by the section 3.3 tile rule (dominant class ≥ "
                           f"{settings.get('dominant_fraction')}, else dropped)"}.get(source, source)
    background = (", plus background tiles (≥ 90% background) of the masked data"
                  if settings.get("background_patches") and source != "tile_rule" else "")
    weights = settings.get("encoder_weights")
    encoder = f"encoder from {Path(weights).name}" if weights else "encoder from scratch"
    return (f"{steps}; s% counts {settings.get('percent_of', 'images')}; label stream: {labels}{background}; "
            f"batch {settings.get('batch_size')} per stream, Adam lr {settings.get('learning_rate')}, "
            f"{settings.get('tile_size_px')} px tiles, {settings.get('update')} update, {encoder}, "
            f"seed {settings.get('seed')} + repeat")


def _paired_lines(paired: list[dict]) -> list[str]:
    lines = ["", "### Paired differences (same masked draw; mean over repeats, 95% bootstrap CI)", ""]
    if not paired:
        return lines + ["No s% with both S and S+C (or S+C*) in the same repeat.", ""]
    lines += ["| s % | comparison | metric | repeats | mean difference | 95% CI |", "|---|---|---|---|---|---|"]
    for p in paired:
        ci = "– (one repeat)" if p["ci_low"] is None else f"{p['ci_low']:+.3f} to {p['ci_high']:+.3f}"
        lines.append(f"| {p['percent']:g} | {p['mode']} − {p['baseline']} | {PAIRED_METRICS.get(p['metric'], p['metric'])} "
                     f"| {p['n']} | {p['mean_difference']:+.3f} | {ci} |")
    return lines + [""]


def markdown_section(out_dir: Path, summary: list[dict], rows: list[dict], record: dict,
                     figures: list[Path], relative_to: Path) -> str:
    """The generated part of the results section (between the markers)."""
    settings = record.get("settings", {})
    trained = [r for r in rows if not r.get("reused_from")]
    seconds = sum((r.get("train_seconds") or 0) + (r.get("eval_seconds") or 0) for r in trained)
    per_run = seconds / len(trained) if trained else 0.0
    lines = ["*Generated by `weakseg-experiment report`; edit outside the markers.*", ""]
    commands = list(dict.fromkeys(record.get("commands", [])))
    if commands:
        lines += ["Command" + ("s (the sweep was resumed)" if len(commands) > 1 else "") + ":", "", "```bash",
                  *commands, "```", ""]
    lines += [
        f"- Data: {settings.get('data', '?')}; {record.get('n_pool_images', '?')} training images; "
        + _scoring_text(record),
        "- Training: " + _training_text(settings, record) + ".",
        f"- Runs: {len(rows)} ({len(trained)} trained, {len(rows) - len(trained)} identical to another run and "
        f"not retrained); compute {seconds / 60:.0f} min, {per_run:.0f} s per trained run. Repeats are paired: "
        f"repeat r draws the masked {settings.get('percent_of', 'images')} once (seed {settings.get('seed')} + r) "
        f"and every mode of the repeat uses that draw.",
        "- F1 weighted is the paper's \"F1 micro\" (class F1 weighted by true pixel share); F1 macro weighs "
        "classes equally; gland Dice is the mean Dice of the foreground classes; fg on bg is the share of true "
        "background pixels predicted as a foreground class (gland on stroma); fg confusion is the share of true "
        "foreground pixels predicted as another foreground class (e.g. benign/malignant inside glands). Values "
        "are whole-image metrics over all test pixels, mean ± sample std over repeats; cls acc is the "
        "classifier's accuracy on the test images (untrained in S runs, which have no labels).",
        "",
    ]
    seg = [e for e in summary if e["experiment"] == "segmentation"]
    if seg:
        unit = settings.get("percent_of", "images")
        header = (f"| mode | s % of {unit} | masked / labelled images | n | steps | " + " | ".join(_TABLE_METRICS.values())
                  + " |")
        lines += ["### Segmentation on the test set (absolute)", "", header, "|" + "---|" * (5 + len(_TABLE_METRICS))]
        for e in seg:
            steps = "–" if e.get("steps_mean") is None else f"{e['steps_mean']:.0f}"
            lines.append(f"| {e['mode']} | {e['percent']:g} | {e['n_mask_images']} / {e['n_label_images']} | "
                         f"{e['n']} | {steps} | " + " | ".join(_cell(e, m) for m in _TABLE_METRICS) + " |")
        reference = seg[0].get("relative_to", "?")
        lines += ["", f"### Segmentation relative to {reference} (as Fig. 5)", "",
                  "| mode | s % | F1 weighted | F1 macro | mIoU | BACH |", "|---|---|---|---|---|---|"]
        for e in seg:
            lines.append(f"| {e['mode']} | {e['percent']:g} | " + " | ".join(
                _cell(e, m, relative=True) for m in ("f1_weighted", "f1_macro", "mean_iou", "bach_score")) + " |")
        lines += _paired_lines(paired_differences(rows))
        checks = paper_claim(summary)
        lines += ["", "### The paper's claim: ≥ 15% F1 gap for S+C over S when s ≤ 10%", ""]
        if not checks:
            lines.append("No s ≤ 10% with both S and S+C in this sweep.")
        for c in checks:
            gaps = ", ".join(f"{name} {c[f'gap_{key}'] * 100:+.1f}%" if c[f"gap_{key}"] is not None else f"{name} n/a"
                             for key, name in (("f1_weighted", "F1 weighted"), ("f1_macro", "F1 macro")))
            verdict = "holds" if c["holds"] else "does not hold"
            lines.append(f"- s = {c['percent']:g}%, {c['mode']} − S (relative to S at 100%): {gaps} → {verdict}.")
        lines.append("")
    cls = [e for e in summary if e["experiment"] == "classification"]
    if cls:
        lines += [f"### Classification head (as Fig. 6, relative to {cls[0].get('relative_to', '?')})", "",
                  "| mode | c % | masked / labelled images | n | cls acc | relative |", "|---|---|---|---|---|---|"]
        for e in cls:
            lines.append(f"| {e['mode']} | {e['percent']:g} | {e['n_mask_images']} / {e['n_label_images']} | {e['n']} | "
                         f"{_cell(e, 'cls_accuracy')} | {_cell(e, 'cls_accuracy', relative=True)} |")
        lines.append("")
    for figure in figures:
        link = Path(os.path.relpath(figure, relative_to))
        lines.append(f"![{figure.stem}]({link.as_posix()})")
    lines += ["", f"Raw runs: `{out_dir / 'runs.csv'}`; summary: `{out_dir / SUMMARY_CSV}`; paired differences: "
              f"`{out_dir / PAIRED_CSV}`."]
    return "\n".join(lines)


def update_markdown(path: PathLike, body: str, section: str = DEFAULT_SECTION, heading: str = DEFAULT_HEADING) -> Path:
    """Replace the text between this section's markers; append heading and markers if absent.

    Everything outside the markers (other sections, hand-written discussion) is kept
    (:func:`weaksegtf.markdown_section.replace_markdown_section`).
    """
    return replace_markdown_section(path, heading, body, markers=sweep_markers(section), header="# Results\n")


def write_report(
    out_dir: PathLike,
    results_md: PathLike | None = None,
    figures_dir: PathLike | None = None,
    section: str = DEFAULT_SECTION,
    heading: str = DEFAULT_HEADING,
    figure_prefix: str | None = None,
) -> ReportResult:
    """Write ``summary.csv`` and the plots of a sweep folder, and optionally its Markdown section.

    Args:
        out_dir: str or path. A sweep folder (``runs.csv``, ``sweep.json``).
        results_md: str or path, optional. Markdown file whose section is
            rewritten (e.g. ``docs/results.md``). Defaults to ``None``.
        figures_dir: str or path, optional. Where the plots go. Defaults to
            ``<results_md folder>/figures`` with ``results_md``, else ``out_dir``.
        section: str. Marker name of the section. Defaults to ``"glas-sweep"``.
        heading: str. Heading written when the section is new.
        figure_prefix: str, optional. Plot file prefix. Defaults to ``section``.

    Raises:
        DataError: no finished run in ``out_dir``.
    """
    from weaksegtf.evaluation import write_rows_csv

    out_dir = Path(out_dir)
    rows = read_runs(out_dir)
    if not rows:
        raise DataError(f"no finished runs in {out_dir / 'runs.csv'}")
    record = json.loads((out_dir / SWEEP_JSON).read_text()) if (out_dir / SWEEP_JSON).is_file() else {}
    summary = summarize(rows)
    summary_path = write_rows_csv(summary, out_dir / SUMMARY_CSV)
    paired = paired_differences(rows)
    paired_path = write_rows_csv(paired, out_dir / PAIRED_CSV) if paired else None
    percent_of = record.get("settings", {}).get("percent_of", "images")
    if figures_dir is None:
        figures_dir = Path(results_md).parent / "figures" if results_md is not None else out_dir
    figures_dir = Path(figures_dir)
    prefix = figure_prefix or section
    figures = []
    if any(e["experiment"] == "segmentation" for e in summary):
        figures.append(plot_sweep(summary, "segmentation", figures_dir / f"{prefix}_segmentation.png",
                                  SEGMENTATION_PLOT_METRICS, title="Segmentation on the test set, relative (Fig. 5 style)",
                                  percent_of=percent_of))
        figures.append(plot_sweep(summary, "segmentation", figures_dir / f"{prefix}_segmentation_absolute.png",
                                  SEGMENTATION_PLOT_METRICS, relative=False, title="Segmentation on the test set",
                                  percent_of=percent_of))
    if any(e["experiment"] == "classification" for e in summary):
        figures.append(plot_sweep(summary, "classification", figures_dir / f"{prefix}_classification.png",
                                  {"cls_accuracy": "classifier accuracy"},
                                  title="Classification head, relative (Fig. 6 style)"))
    markdown = None
    if results_md is not None:
        results_md = Path(results_md)
        body = markdown_section(out_dir, summary, rows, record, figures, results_md.parent)
        markdown = update_markdown(results_md, body, section, heading)
    return ReportResult(summary_path, figures, markdown, summary, paired_path, paired)


def sweep_markers(section: str = DEFAULT_SECTION) -> Sequence[str]:
    """The begin and end marker lines of a section (for templates)."""
    return _MARKER.format(section, "begin"), _MARKER.format(section, "end")
