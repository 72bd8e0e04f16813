"""Summaries, Fig. 5/6-style plots and the ``docs/results.md`` section of a sweep.

``weakseg-experiment report`` reads ``runs.csv`` (see :mod:`weaksegtf.experiment`),
writes ``summary.csv`` (mean ± std per mode and percentage, absolute and
relative) and the plots, and optionally rewrites one section of a Markdown
file between two marker comments, leaving the rest of the file untouched.

Relative values follow the paper: segmentation metrics are divided by the mean
of ``S`` at s = 100% (Fig. 5), classification accuracy by the mean of
``S2+C2`` at c = 50% (Fig. 6); when that setting was not run, the largest
percentage run stands in and the report says so. Standard deviations are
sample standard deviations (n - 1) over repeats, 0 for a single repeat.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from weaksegtf.data.images import PathLike
from weaksegtf.errors import ConfigError, DataError
from weaksegtf.experiment import (
    CLASSIFICATION_MODES,
    RUN_METRICS,
    SEGMENTATION_MODES,
    SWEEP_JSON,
    read_runs,
)

SUMMARY_CSV = "summary.csv"
DEFAULT_HEADING = "## Sweep: S, S+C, S+C* on GlaS"
DEFAULT_SECTION = "glas-sweep"
#: Metrics drawn in the segmentation figure, with their labels.
SEGMENTATION_PLOT_METRICS = {
    "f1_weighted": "F1 weighted (paper's F1 micro)",
    "f1_macro": "F1 macro",
    "mean_iou": "mean IoU",
    "bach_score": "BACH score (eq. 6)",
    "foreground_accuracy": "foreground accuracy",
    "boundary_mean_iou": "boundary mean IoU",
}
_TABLE_METRICS = {
    "f1_weighted": "F1 weighted",
    "f1_macro": "F1 macro",
    "mean_iou": "mIoU",
    "bach_score": "BACH",
    "foreground_accuracy": "fg acc",
    "boundary_mean_iou": "boundary mIoU",
    "cls_accuracy": "cls acc",
}
_MARKER = "<!-- weakseg-experiment report {} {} -->"


@dataclass
class ReportResult:
    """Files a report wrote."""

    summary_path: Path
    figure_paths: list[Path]
    results_md: Path | None
    summary: list[dict]


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
        for metric in RUN_METRICS + ("train_seconds",):
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


def plot_sweep(summary: list[dict], experiment: str, path: PathLike, metrics: dict[str, str],
               relative: bool = True, title: str = "") -> Path:
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
        axis.set_xlabel("s (% of images with masks)" if experiment == "segmentation" else "c (% with labels)")
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
        f"- Data: {settings.get('data', '?')}; {record.get('n_pool_images', '?')} training images, "
        f"{record.get('n_val_images', '?')} validation images (the test set: no epoch is picked on it).",
        f"- Training: {settings.get('epochs')} epoch(s) × {record.get('steps_per_epoch')} steps for every run "
        f"(equal optimizer steps across modes and s), batch {settings.get('batch_size')} per stream, "
        f"Adam lr {settings.get('learning_rate')}, {settings.get('tile_size_px')} px tiles, "
        f"{settings.get('update')} update, seed {settings.get('seed')} + repeat.",
        f"- Runs: {len(rows)} ({len(trained)} trained, {len(rows) - len(trained)} identical to another run and "
        f"not retrained); compute {seconds / 60:.0f} min, {per_run:.0f} s per trained run.",
        "- F1 weighted is the paper's \"F1 micro\" (class F1 weighted by true pixel share); F1 macro weighs "
        "classes equally. Values are whole-image metrics over all validation pixels, mean ± sample std over repeats; "
        "cls acc is the classifier's tile accuracy on the validation images (untrained in S runs, which have no labels).",
        "",
    ]
    seg = [e for e in summary if e["experiment"] == "segmentation"]
    if seg:
        header = "| mode | s % | masked / labelled images | n | " + " | ".join(_TABLE_METRICS.values()) + " |"
        lines += ["### Segmentation (absolute)", "", header, "|" + "---|" * (4 + len(_TABLE_METRICS))]
        for e in seg:
            lines.append(f"| {e['mode']} | {e['percent']:g} | {e['n_mask_images']} / {e['n_label_images']} | "
                         f"{e['n']} | " + " | ".join(_cell(e, m) for m in _TABLE_METRICS) + " |")
        reference = seg[0].get("relative_to", "?")
        lines += ["", f"### Segmentation relative to {reference} (as Fig. 5)", "",
                  "| mode | s % | F1 weighted | F1 macro | mIoU | BACH |", "|---|---|---|---|---|---|"]
        for e in seg:
            lines.append(f"| {e['mode']} | {e['percent']:g} | " + " | ".join(
                _cell(e, m, relative=True) for m in ("f1_weighted", "f1_macro", "mean_iou", "bach_score")) + " |")
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
    lines += ["", f"Raw runs: `{out_dir / 'runs.csv'}`; summary: `{out_dir / SUMMARY_CSV}`."]
    return "\n".join(lines)


def update_markdown(path: PathLike, body: str, section: str = DEFAULT_SECTION, heading: str = DEFAULT_HEADING) -> Path:
    """Replace the text between this section's markers; append heading and markers if absent.

    Everything outside the markers (other sections, hand-written discussion) is kept.
    """
    path = Path(path)
    begin, end = _MARKER.format(section, "begin"), _MARKER.format(section, "end")
    text = path.read_text() if path.is_file() else "# Results\n"
    block = f"{begin}\n{body.rstrip()}\n{end}"
    if begin in text and end in text:
        head, rest = text.split(begin, 1)
        _, tail = rest.split(end, 1)
        text = head + block + tail
    elif begin in text or end in text:
        raise ConfigError(f"{path} has only one of the markers {begin!r} and {end!r}; fix it by hand")
    else:
        text = text.rstrip() + f"\n\n{heading}\n\n{block}\n"
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    tmp.replace(path)
    return path


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
    if figures_dir is None:
        figures_dir = Path(results_md).parent / "figures" if results_md is not None else out_dir
    figures_dir = Path(figures_dir)
    prefix = figure_prefix or section
    figures = []
    if any(e["experiment"] == "segmentation" for e in summary):
        figures.append(plot_sweep(summary, "segmentation", figures_dir / f"{prefix}_segmentation.png",
                                  SEGMENTATION_PLOT_METRICS, title="Segmentation on validation, relative (Fig. 5 style)"))
        figures.append(plot_sweep(summary, "segmentation", figures_dir / f"{prefix}_segmentation_absolute.png",
                                  SEGMENTATION_PLOT_METRICS, relative=False, title="Segmentation on validation"))
    if any(e["experiment"] == "classification" for e in summary):
        figures.append(plot_sweep(summary, "classification", figures_dir / f"{prefix}_classification.png",
                                  {"cls_accuracy": "classifier tile accuracy"},
                                  title="Classification head, relative (Fig. 6 style)"))
    markdown = None
    if results_md is not None:
        results_md = Path(results_md)
        body = markdown_section(out_dir, summary, rows, record, figures, results_md.parent)
        markdown = update_markdown(results_md, body, section, heading)
    return ReportResult(summary_path, figures, markdown, summary)


def sweep_markers(section: str = DEFAULT_SECTION) -> Sequence[str]:
    """The begin and end marker lines of a section (for templates)."""
    return _MARKER.format(section, "begin"), _MARKER.format(section, "end")
