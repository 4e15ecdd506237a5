"""The fusion's evaluation report: paper Table 1, Figure 4, per-class F1, Table 2.

Reads ``fusion_metrics.json`` (written by :mod:`fusion.fuse`) and writes,
into the same folder, ``report.md``, ``confusion_matrix.png``,
``f1_per_class.png``, ``reliability_diagram.png`` (the fused probabilities
before and after calibration) and ``training_curves/<system>.png`` (each
system's ``train_log.txt`` drawn, linked from the report). The report gives
every dev macro-F1 with its 95 % confidence interval and the paired tests
(:mod:`ser.bootstrap`), and the calibration error of the fused probabilities
(:mod:`ser.calibration`).

Usage::

    python -m fusion.report --fusion results/fusion
"""

import logging
from pathlib import Path

import pandas as pd

from data_prep.consensus import class_count_table
from fusion.plots import plot_confusion_matrix, plot_f1_per_class
from ser.calibration import plot_reliability_diagram
from ser.cli import ArgumentParser, exit_with
from ser.fusion_model import FusionFolderError
from ser.io.atomic import atomic_write
from ser.io.json_files import read_json
from ser.io.system_folder import HPARAMS_FILE
from ser.metrics import format_f1_table
from ser.training.curves import plot_training_curves
from ser.training.overrides import plain_values

logger = logging.getLogger(__name__)

__all__ = ["column_reports", "split_column_groups", "relabeling_tables", "statistics_lines",
           "calibration_lines", "render_report", "write_report"]

METRICS_FILE = "fusion_metrics.json"
RELABELED_COLUMNS = ("Split_Set", "EmoClass_Original", "EmoClass_Recomputed", "AddedToTrain")


def column_reports(metrics):
    """Table-1 columns: each sub-system's report, then the fusion's.

    Example
    -------
    >>> column_reports({"per_system": {"Sub-System A": 1}, "fusion": 2})
    {'Sub-System A': 1, 'Fusion': 2}
    """
    return {**metrics["per_system"], "Fusion": metrics["fusion"]}


def split_column_groups(metrics):
    """Table-1 columns in one group per labelled split: dev (CV), then Test1, Test2, ...

    Without extra labelled splits, the dev columns alone (:func:`column_reports`).

    Example
    -------
    >>> metrics = {"per_system": {"A": 1}, "fusion": 2, "splits": {"test1": {"per_system": {"A": 3},
    ...     "fusion": 4}}}
    >>> split_column_groups(metrics)
    {'Dev A': 1, 'Dev Fusion': 2, 'Test1 A': 3, 'Test1 Fusion': 4}
    """
    if not metrics.get("splits"):
        return column_reports(metrics)
    groups = {"Dev": column_reports(metrics)}
    groups.update({split.capitalize(): column_reports(scored) for split, scored in metrics["splits"].items()})
    return {f"{group} {name}": report
            for group, columns in groups.items() for name, report in columns.items()}


def relabeling_tables(metrics):
    """Table-2 class counts of each ``manifests/relabeled_*.csv`` in the system folders.

    Returns
    -------
    list of (str, str)
        ``(csv path, table text)``, one per relabeled file found.

    Example
    -------
    >>> import tempfile
    >>> folder = Path(tempfile.mkdtemp())
    >>> (folder / "manifests").mkdir()
    >>> pd.DataFrame({"Split_Set": ["Train"], "EmoClass_Original": ["X"], "EmoClass_Recomputed": ["S"],
    ...     "AddedToTrain": [True]}).to_csv(folder / "manifests" / "relabeled_K0.5.csv", index=False)
    >>> [(Path(p).name, t.splitlines()[-1]) for p, t in relabeling_tables({"systems": [{"folder": folder}]})]
    [('relabeled_K0.5.csv', 'Total          0                1       1')]
    """
    tables = []
    for system in metrics["systems"]:
        for path in sorted(Path(system["folder"]).glob("manifests/relabeled_*.csv")):
            frame = pd.read_csv(path)
            missing = [c for c in RELABELED_COLUMNS if c not in frame.columns]
            if missing:
                raise ValueError(f"{path}: lacks column(s) {', '.join(missing)} of a relabeling output")
            tables.append((str(path), class_count_table(frame)))
    return tables


def interval_row(metrics):
    """A last Table-1 row: the 95 % interval of each dev column's macro-F1 (``—`` elsewhere).

    Empty for metrics written without statistics; begins with a newline otherwise.

    Example
    -------
    >>> interval = {"estimate": 0.35, "low": 0.33, "high": 0.37, "level": 0.95}
    >>> metrics = {"per_system": {"A": 1}, "fusion": 2,
    ...            "statistics": {"macro_f1": {"A": interval, "Fusion": interval}}}
    >>> interval_row(metrics)
    '\\n| F1-Macro 95 % CI | [0.330, 0.370] | [0.330, 0.370] |'
    """
    stats = metrics.get("statistics")
    if not stats:
        return ""
    dev = [f"Dev {name}" if metrics.get("splits") else name for name in column_reports(metrics)]
    cells = []
    for column in split_column_groups(metrics):
        name = column.removeprefix("Dev ") if column in dev else None
        interval = stats["macro_f1"].get(name) if name else None
        cells.append(f"[{interval['low']:.3f}, {interval['high']:.3f}]" if interval else "—")
    return "\n| F1-Macro 95 % CI | " + " | ".join(cells) + " |"


def statistics_lines(metrics):
    """Markdown lines: dev macro-F1 with its 95 % interval per system, then the paired tests.

    Empty for metrics written without statistics.

    Example
    -------
    >>> interval = {"estimate": 0.35, "low": 0.33, "high": 0.37, "level": 0.95}
    >>> difference = {"estimate": 0.014, "low": -0.002, "high": 0.03, "level": 0.95}
    >>> stats = {"bootstrap": {"n_resamples": 1000, "clusters": 454, "seed": 0},
    ...          "macro_f1": {"Sub-System E": interval, "Fusion": interval},
    ...          "paired_tests": [{"a": "Fusion", "b": "Sub-System E", "difference": difference,
    ...                            "p_value": 0.051, "n_resamples": 1000}]}
    >>> for line in statistics_lines({"statistics": stats})[-3:]:
    ...     print(line)
    | Comparison | Difference | 95 % CI | p (first not better) |
    |---|---:|---:|---:|
    | Fusion vs Sub-System E | +0.014 | [-0.002, +0.030] | 0.051 |
    """
    stats = metrics.get("statistics")
    if not stats:
        return []
    boot = stats["bootstrap"]
    lines = [
        "## Dev macro-F1 with 95 % confidence intervals", "",
        f"Percentile bootstrap over {boot['n_resamples']} resamples of the {boot['clusters']} speakers "
        f"(drawn with replacement, each with all its turns; seed {boot['seed']}). Paired tests score "
        "both systems on the same resamples; p is the share of resamples in which the first does not "
        "beat the second (one-sided).", "",
        "| System | Dev macro-F1 | 95 % CI |", "|---|---:|---:|",
    ]
    lines += [f"| {name} | {i['estimate']:.3f} | [{i['low']:.3f}, {i['high']:.3f}] |"
              for name, i in stats["macro_f1"].items()]
    lines += ["", "| Comparison | Difference | 95 % CI | p (first not better) |", "|---|---:|---:|---:|"]
    for test in stats["paired_tests"]:
        d = test["difference"]
        lines.append(f"| {test['a']} vs {test['b']} | {d['estimate']:+.3f} "
                     f"| [{d['low']:+.3f}, {d['high']:+.3f}] | {test['p_value']:.3f} |")
    return lines


def calibration_lines(metrics):
    """Markdown lines on the calibration of the fused probabilities (empty without one).

    Example
    -------
    >>> calibration = {"temperature": 2.5, "ece_before": 0.21, "ece_after": 0.04, "nll_before": 1.9,
    ...                "nll_after": 1.5, "n_bins": 15}
    >>> calibration_lines({"calibration": calibration})[2][:46]
    '| Fused probabilities | ECE (15 bins) | NLL |'
    """
    calibration = metrics.get("calibration")
    if not calibration:
        return []
    if calibration["temperature"] is None:
        return ["## Calibration of the fused probabilities", "",
                "Not calibrated: dev has too few speakers for the inner cross-validation that fits the "
                "temperature; the fused probabilities are the softmax of the SVM scores."]
    return [
        "## Calibration of the fused probabilities", "",
        f"| Fused probabilities | ECE ({calibration['n_bins']} bins) | NLL |", "|---|---:|---:|",
        f"| softmax of the SVM scores | {calibration['ece_before']:.3f} | {calibration['nll_before']:.3f} |",
        f"| calibrated (temperature {calibration['temperature']:.2f}) | {calibration['ece_after']:.3f} "
        f"| {calibration['nll_after']:.3f} |", "",
        "The temperature is fitted on the out-of-fold dev scores and stored in the model, so every "
        "probability it gives (`fused_*.csv`, `ser.predict`, the web page) is calibrated. The "
        "calibrated row is scored out of fold: each fold's turns are calibrated by the temperature of "
        "their fold's model, fitted on that fold's training speakers only. A temperature never changes "
        "the predicted class. "
        "Figure: `reliability_diagram.png`.",
    ]


def render_report(metrics, curves=None):
    """The Markdown report: Table 1 (F1 per class, accuracy, macro-F1), settings, Table 2.

    ``curves`` maps a system name to its training-curves PNG (relative to the report), linked
    in a last section.

    Example
    -------
    >>> from ser.metrics import classification_report
    >>> r = classification_report(list("AN"), list("AA"))
    >>> text = render_report({"per_system": {"Sub-System A": r}, "fusion": r, "systems": [],
    ...     "n_valid": 2, "n_speakers": 2, "cv": {"folds": 2, "seed": 0}, "final_model": {"C": 1.0}})
    >>> sum(line.startswith("| ") for line in text.splitlines())  # header + 8 classes + 2
    11
    """
    cv = metrics["cv"]
    lines = [
        "# Fusion report",
        "",
        f"Dev scores on {metrics['n_valid']} turns of {metrics['n_speakers']} speakers. The fusion "
        f"column is the out-of-fold prediction of a {cv['folds']}-fold speaker-disjoint "
        f"cross-validation (seed {cv['seed']}): each turn is scored by an SVM that never saw its "
        "speaker. Sub-system columns are the argmax of their posteriors on the same turns.",
        *[f"The {split.capitalize()} columns ({scored['n']} turns) score the final fusion model, fitted on "
          "all of dev, and the sub-systems on that split."
          for split, scored in metrics.get("splits", {}).items()],
        "",
        "## F1 per class, accuracy and macro-F1 (paper Table 1)",
        "",
        format_f1_table(split_column_groups(metrics)) + interval_row(metrics),
        "",
        *[line for section in (statistics_lines(metrics), calibration_lines(metrics)) if section
          for line in (*section, "")],
        "## Final fusion model (fitted on all of dev)",
        "",
        # Scores rounded as in the tables (a selection macro-F1 is a ratio such as 1/15).
        ", ".join(f"{key}: {value:.4g}" if isinstance(value, float) else f"{key}: {value}"
                  for key, value in metrics["final_model"].items()),
        "",
        "Figures: `confusion_matrix.png` (fusion, row-normalised, like paper Figure 4), "
        "`f1_per_class.png`.",
    ]
    for path, table in relabeling_tables(metrics):
        lines += ["", "## Train class counts after relabeling (paper Table 2)", "", f"From `{path}`:",
                  "", "```", table, "```"]
    if curves:
        lines += ["", "## Training curves", "",
                  "Train and dev loss, dev macro-F1 and learning rates per epoch:", ""]
        lines += [f"- [{name}]({path})" for name, path in curves.items()]
    return "\n".join(lines) + "\n"


def write_report(fusion_dir):
    """Write ``report.md`` and the two PNGs into ``fusion_dir``.

    Returns
    -------
    dict
        ``report``, ``confusion_matrix``, ``f1_per_class`` -> Path, and
        ``reliability_diagram`` when the fusion was calibrated.

    Example
    -------
    >>> import json, tempfile
    >>> from ser.metrics import classification_report
    >>> r = classification_report(list("AN"), list("AA"))
    >>> folder = Path(tempfile.mkdtemp())
    >>> _ = (folder / METRICS_FILE).write_text(json.dumps({"per_system": {"Sub-System A": r},
    ...     "fusion": r, "systems": [], "n_valid": 2, "n_speakers": 2, "cv": {"folds": 2, "seed": 0},
    ...     "final_model": {"kernel": "rbf"}}))
    >>> sorted(path.name for path in write_report(folder).values())
    ['confusion_matrix.png', 'f1_per_class.png', 'report.md']
    """
    fusion_dir = Path(fusion_dir)
    metrics_path = fusion_dir / METRICS_FILE
    if not metrics_path.is_file():
        raise FusionFolderError(f"{metrics_path}: missing (run python -m fusion.fuse first)")
    metrics = read_json(metrics_path)
    paths = {
        "report": fusion_dir / "report.md",
        "confusion_matrix": fusion_dir / "confusion_matrix.png",
        "f1_per_class": fusion_dir / "f1_per_class.png",
    }
    curves = {}
    for system in metrics["systems"]:
        train_log = Path(system["folder"]) / "train_log.txt"
        if train_log.is_file():
            relative = f"training_curves/{system['name'].lower().replace(' ', '_')}.png"
            hparams = Path(system["folder"]) / HPARAMS_FILE
            # A run that scored each epoch on part of dev says so on its curve.
            own = plain_values(hparams.read_text(encoding="utf-8")) if hparams.is_file() else {}
            subset = own.get("epoch_dev_turns")
            if plot_training_curves(train_log, fusion_dir / relative, f"{system['name']}: training curves",
                                    epoch_dev_turns=subset if isinstance(subset, int) else None):
                curves[system["name"]] = relative
    with atomic_write(paths["report"]) as stream:
        stream.write(render_report(metrics, curves))
    fused = metrics["fusion"]
    plot_confusion_matrix(fused["confusion_matrix"], fused["classes"], paths["confusion_matrix"],
                          title=f"Fusion: confusion matrix (dev, CV macro-F1 {fused['macro_f1']:.3f})")
    plot_f1_per_class(column_reports(metrics), paths["f1_per_class"])
    calibration = metrics.get("calibration")
    if calibration and calibration["temperature"] is not None:
        paths["reliability_diagram"] = fusion_dir / "reliability_diagram.png"
        bins = calibration["reliability"]
        plot_reliability_diagram(
            {f"softmax of SVM scores (ECE {calibration['ece_before']:.3f})": bins["before"],
             f"calibrated, T = {calibration['temperature']:.2f} (ECE {calibration['ece_after']:.3f})":
                 bins["after"]},
            paths["reliability_diagram"], title="Fused probabilities on dev (out of fold)")
    logger.info("report written to %s", fusion_dir)
    return paths


def main(argv=None):
    parser = ArgumentParser(prog="fusion.report", description="Write the fusion report (Table 1, Figure 4).")
    parser.add_argument("--fusion", required=True, help="fusion output folder (holds fusion_metrics.json)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    paths = write_report(args.fusion)
    print(paths["report"].read_text())
    print(paths["confusion_matrix"])
    print(paths["f1_per_class"])


if __name__ == "__main__":
    exit_with("fusion.report", main, interrupted="each file is written whole or not at all; run the same "
              "command again to write the report")
