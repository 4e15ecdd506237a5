"""Score-level fusion of the sub-systems with an SVM (paper §7).

The posteriors of the sub-systems (8 per system, class order A C D F H N S U)
are concatenated into one feature vector per turn, and an SVM
(:class:`sklearn.svm.SVC`) learns the emotion from it on the development set.
Kernel, C and class weighting are chosen by an inner cross-validation on
macro-F1, grouped by speaker.

The SVM is trained on dev, so its dev score must come from turns it did not
see: dev is cut into speaker-disjoint folds, each fold's SVM (with its own
model selection) predicts its held-out speakers, and the out-of-fold
predictions of all dev turns give the fused dev report. The final SVM is then
fitted on all of dev and predicts the test split (the submission).

Two more things come from the same out-of-fold dev scores:

- **statistics** (:mod:`ser.bootstrap`): each system's and the fusion's dev macro-F1 with a 95 %
  confidence interval (speakers resampled with replacement, all their turns), and paired tests on
  the same resamples: the fusion against the best sub-system, and E against D when both are fused;
- **calibration** (:mod:`ser.calibration`): the softmax of SVM decision values is not a
  probability, so a temperature is fitted on the out-of-fold scores (negative log-likelihood) and
  stored in the model; every probability written or shown afterwards (``fused_*.csv``,
  ``ser.predict``, the web page, packages) is calibrated. The expected calibration error before and
  after is reported; "after" is scored honestly, each fold's turns calibrated by the temperature
  of its fold model, fitted on that fold's training speakers only.

Usage::

    python -m fusion.fuse results/system_a ... results/system_e --out results/fusion
"""

import argparse
import json
import logging
import sys
from pathlib import Path

import joblib
import numpy as np
import sklearn
from tqdm import tqdm

from fusion.inputs import load_labelled_splits, load_systems, read_dev_labels, stack_features
from fusion.svm import (
    DEFAULT_C,
    DEFAULT_KERNEL_MAX_TURNS,
    DEFAULT_KERNELS,
    SEARCHES,
    FusionModel,
    fit_fusion_model,
    softmax,
    speaker_folds,
)
from ser.bootstrap import DEFAULT_RESAMPLES, SpeakerBootstrap
from ser.calibration import (
    DEFAULT_BINS,
    expected_calibration_error,
    negative_log_likelihood,
    reliability_bins,
    scaled_softmax,
)
from ser.cli import ArgumentParser, positive_float, positive_int, run_command
from ser.console import progress_wanted
from ser.fusion_model import MODEL_FILE, MODEL_INFO_FILE
from ser.io.atomic import atomic_write, ensure_writable_folder, write_json_atomic
from ser.io.posteriors import write_posteriors
from ser.io.system_folder import display_name
from ser.metrics import classification_report

logger = logging.getLogger(__name__)

__all__ = ["FusionModel", "speaker_folds", "fit_fusion_model", "fuse_systems"]

METRICS_FILE = "fusion_metrics.json"


def _cross_validated_scores(features, labels, speakers, systems, folds, seed, grid, classes):
    """Out-of-fold decision values of dev, fold by fold (``folds``: :func:`speaker_folds`)."""
    scores = np.full((len(labels), len(classes)), -np.inf)
    per_fold = []
    # A bar only on a terminal: piped to a file it would be escape codes in the log.
    for index, (train, test) in enumerate(tqdm(folds, desc="fusion CV folds", disable=not progress_wanted())):
        model = fit_fusion_model(features[train], labels[train], speakers[train], systems, seed=seed,
                                 classes=classes, **grid)
        scores[test] = model.decision_scores(features[test])
        per_fold.append(
            {
                "fold": index,
                "n_train": len(train),
                "n_test": len(test),
                "n_test_speakers": len(set(speakers[test].tolist())),
                "params": model.params,
                "temperature": model.temperature,
            }
        )
    return scores, per_fold


def _calibrate(oof_scores, labels, folds, fold_temperatures, temperature, classes):
    """Out-of-fold calibrated dev probabilities and the calibration report.

    Each fold's model carries a temperature fitted on its own training speakers (an inner
    speaker-disjoint cross-validation, :func:`fusion.svm.fit_fusion_model`), so calibrating a
    fold's held-out turns with it, and scoring them, is as honest as their macro-F1.
    """
    calibrated = np.zeros(oof_scores.shape)
    for (_, test), fold_t in zip(folds, fold_temperatures, strict=True):
        calibrated[test] = scaled_softmax(oof_scores[test], fold_t) if fold_t else softmax(oof_scores[test])
    before = softmax(oof_scores)
    report = {
        "method": "temperature scaling of the SVM decision values (negative log-likelihood)",
        "fitted_on": "out-of-fold decision values of the chosen SVM configuration, speaker-disjoint "
                     "inner cross-validation on dev",
        "temperature": temperature,
        "evaluation": "each fold's turns calibrated by its fold model's temperature, fitted on the "
                      "other folds' speakers",
        "fold_temperatures": fold_temperatures,
        "n_bins": DEFAULT_BINS,
        "ece_before": expected_calibration_error(before, labels, classes),
        "ece_after": expected_calibration_error(calibrated, labels, classes),
        "nll_before": negative_log_likelihood(before, labels, classes),
        "nll_after": negative_log_likelihood(calibrated, labels, classes),
        "reliability": {"before": reliability_bins(before, labels, classes),
                        "after": reliability_bins(calibrated, labels, classes)},
    }
    return calibrated, report


def _statistics(labels, speakers, oof_scores, features, systems, classes, n_resamples, seed):
    """Dev macro-F1 intervals of every system and the fusion, and the paired tests (one resample set)."""
    boot = SpeakerBootstrap(speakers, n_resamples=n_resamples, seed=seed)
    n = len(classes)
    predictions = {s.name: _argmax_letters(features[:, i * n:(i + 1) * n], classes)
                   for i, s in enumerate(systems)}
    predictions["Fusion"] = _argmax_letters(oof_scores, classes)
    intervals = {name: boot.macro_f1_interval(labels, predicted, classes)
                 for name, predicted in predictions.items()}
    pairs = []
    # Picked on the same dev set, the best sub-system's score is flattering: a hard comparison.
    best = max((s.name for s in systems), key=lambda name: intervals[name].estimate)
    pairs.append(("Fusion", best))
    d, e = display_name("system_d"), display_name("system_e")
    if d in predictions and e in predictions:
        pairs.append((e, d))  # paper §5.4: relabeling (E) over the same system without it (D)
    tests = [boot.paired_macro_f1_test(labels, predictions[a], predictions[b], classes, names=(a, b))
             for a, b in pairs]
    return {"bootstrap": boot.describe(), "best_system": best,
            "macro_f1": {name: interval.as_dict() for name, interval in intervals.items()},
            "paired_tests": [test.as_dict() for test in tests]}


def _score_labelled_splits(out, model, systems, labelled_splits):
    """Score the final model and each system on every extra labelled split (Test1, Test2, ...)."""
    reports = {}
    for split, (names, labels) in labelled_splits.items():
        features = stack_features(systems, split, names)
        scores = model.decision_scores(features)
        write_posteriors(out / f"fused_{split}.csv", names, model.predict_proba(features), model.classes)
        reports[split] = {
            "n": len(names),
            "fusion": _report(labels, scores, model.classes),
            "per_system": _per_system_reports(labels, features, systems, model.classes),
        }
    return reports


def _argmax_letters(matrix, classes):
    return np.asarray(classes)[np.asarray(matrix).argmax(axis=1)]


def _report(labels, scores, classes):
    """The classification report of the argmax of ``scores`` (columns in ``classes`` order)."""
    return classification_report(labels, _argmax_letters(scores, classes), classes)


def _per_system_reports(labels, features, systems, classes):
    """Each system's report, from its block of the concatenated posteriors."""
    n = len(classes)
    return {s.name: _report(labels, features[:, i * n : (i + 1) * n], classes) for i, s in enumerate(systems)}


def _write_outputs(out, model, names, x_test, test_scores, oof_probabilities, systems):
    out.mkdir(parents=True, exist_ok=True)
    with atomic_write(out / "submission.csv") as stream:
        stream.write("FileName,EmoClass\n")
        predictions = _argmax_letters(test_scores, model.classes)
        for name, letter in sorted(zip(names["test"], predictions, strict=True)):
            stream.write(f"{name},{letter}\n")
    write_posteriors(out / "fused_test.csv", names["test"], model.predict_proba(x_test), model.classes)
    write_posteriors(out / "fused_valid_oof.csv", names["valid"], oof_probabilities, model.classes)
    with atomic_write(out / MODEL_FILE, "wb") as stream:
        joblib.dump(model, stream)
    write_json_atomic(
        out / MODEL_INFO_FILE,
        {
            "file": MODEL_FILE,
            "systems": model.systems,
            "system_folders": [str(s.folder) for s in systems],
            # Who the systems are (their system.json): inference accepts exactly these.
            "system_identities": [s.identity.as_dict() if s.identity else None for s in systems],
            "classes": list(model.classes),
            "params": model.params,
            "calibration": {"method": "temperature", "temperature": model.temperature},
            "n_features": model.n_features,
            "input": "posteriors of the systems concatenated in system order, each in class order",
            "scikit_learn": sklearn.__version__,
        },
    )


def fuse_systems(
    system_dirs, out, folds=5, seed=0, kernels=DEFAULT_KERNELS, c_values=DEFAULT_C, inner_folds=3,
    search="fast", kernel_max_turns=DEFAULT_KERNEL_MAX_TURNS, n_jobs=1, n_resamples=DEFAULT_RESAMPLES,
):
    """Cross-validate the fusion on dev, fit it on all of dev, predict test, write everything.

    Writes into ``out``: ``submission.csv``, ``fused_test.csv``,
    ``fused_valid_oof.csv``, ``fused_<split>.csv`` for each extra labelled split
    that every system scored (calibrated probabilities), ``fusion_model.joblib``,
    ``fusion_model.json``, ``fusion_metrics.json`` (with ``statistics`` and
    ``calibration``) and the report (:func:`fusion.report.write_report`).

    Parameters
    ----------
    system_dirs : sequence of str or Path
        Sub-system folders (``results/system_a`` or its seed folder).
    out : str or Path
        Output folder.
    folds, seed : int
        Outer speaker-disjoint folds and shuffling seed.
    kernels, c_values, inner_folds, search, kernel_max_turns, n_jobs
        Passed to :func:`fit_fusion_model`.
    n_resamples : int
        Bootstrap resamples of the confidence intervals and paired tests (:mod:`ser.bootstrap`).

    Returns
    -------
    dict
        The content of ``fusion_metrics.json``, plus ``report_files``.

    Example
    -------
    >>> import json, tempfile
    >>> from ser.emotions import EMOTIONS
    >>> root = Path(tempfile.mkdtemp())
    >>> labels = list("AHNS") * 8
    >>> valid = [f"v{i:02d}.wav" for i in range(32)]
    >>> for system in ("system_a", "system_b"):
    ...     probs = np.eye(8)[[EMOTIONS.index(c) for c in labels]] * 0.6 + 0.05
    ...     write_posteriors(root / system / "posteriors" / "valid.csv", valid, probs)
    ...     write_posteriors(root / system / "posteriors" / "test.csv", ["t.wav"], probs[:1])
    ...     manifest = {n[:-4]: {"emotion": c, "speaker": str(i // 4)}
    ...                 for i, (n, c) in enumerate(zip(valid, labels))}
    ...     (root / system / "manifests").mkdir()
    ...     _ = (root / system / "manifests" / "valid.json").write_text(json.dumps(manifest))
    >>> metrics = fuse_systems([root / "system_a", root / "system_b"], root / "fusion", folds=2,
    ...                        kernels=("linear",), c_values=(1.0,))
    >>> metrics["macro_f1"]  # 4 of the 8 classes, all right
    0.5
    >>> (root / "fusion" / "submission.csv").read_text().splitlines()
    ['FileName,EmoClass', 't.wav,A']
    >>> from ser.fusion_model import load_fusion
    >>> load_fusion(root / "fusion").predict(np.full((1, 16), 0.125)).shape
    (1,)
    """
    from fusion.report import write_report  # the report reads what this writes

    out = Path(out)
    systems = load_systems(system_dirs)
    names = {split: systems[0].posteriors[split].index.tolist() for split in ("valid", "test")}
    system_names = [s.name for s in systems]
    labels, speakers = read_dev_labels(systems, names["valid"])
    labelled_splits = load_labelled_splits(systems)  # checked before the long part
    x_valid = stack_features(systems, "valid", names["valid"])
    x_test = stack_features(systems, "test", names["test"])
    grid = {"kernels": tuple(kernels), "c_values": tuple(c_values), "inner_folds": inner_folds,
            "search": search, "kernel_max_turns": kernel_max_turns, "n_jobs": n_jobs}
    logger.info(
        "fusing %s: %d dev turns, %d speakers, %d test turns",
        ", ".join(system_names),
        len(labels),
        len(set(speakers.tolist())),
        len(names["test"]),
    )

    # The class order every system's system.json declares (load_systems checked they agree).
    classes = systems[0].classes
    cv_folds = speaker_folds(labels, speakers, folds, seed)
    oof_scores, per_fold = _cross_validated_scores(x_valid, labels, speakers, system_names, cv_folds, seed,
                                                   grid, classes)
    fused = _report(labels, oof_scores, classes)
    per_system = _per_system_reports(labels, x_valid, systems, classes)
    statistics = _statistics(labels, speakers, oof_scores, x_valid, systems, classes, n_resamples, seed)
    final = fit_fusion_model(x_valid, labels, speakers, system_names, seed=seed, classes=classes, **grid)
    oof_probabilities, calibration = _calibrate(oof_scores, labels, cv_folds,
                                                [fold["temperature"] for fold in per_fold],
                                                final.temperature, classes)
    test_scores = final.decision_scores(x_test)
    folders = [str(s.folder) for s in systems]
    _write_outputs(out, final, names, x_test, test_scores, oof_probabilities, systems)
    splits = _score_labelled_splits(out, final, systems, labelled_splits)
    metrics = {
        "macro_f1": fused["macro_f1"],
        "evaluation": "out-of-fold predictions of speaker-disjoint cross-validation on dev",
        "fusion": fused,
        "per_system": per_system,
        "systems": [{"name": n, "folder": f} for n, f in zip(system_names, folders, strict=True)],
        "n_valid": len(labels),
        "n_test": len(names["test"]),
        "n_speakers": len(set(speakers.tolist())),
        "cv": {
            "folds": len(per_fold),
            "requested_folds": folds,
            "seed": seed,
            "grid": {k: list(v) if isinstance(v, tuple) else v for k, v in grid.items()},
            "per_fold": per_fold,
        },
        "final_model": final.params,
        "statistics": statistics,
        "calibration": calibration,
        # Extra labelled splits scored by the final model: key -> n, fusion, per_system.
        "splits": splits,
    }
    write_json_atomic(out / METRICS_FILE, metrics)
    metrics["report_files"] = {k: str(v) for k, v in write_report(out).items()}
    return metrics


#: SVC kernels the model selection may try.
KERNELS = ("linear", "rbf", "poly", "sigmoid")


def _at_least_two(text):
    value = positive_int(text)
    if value < 2:
        raise argparse.ArgumentTypeError(f"cross-validation needs at least 2 folds, got {value}")
    return value


def _parse_args(argv):
    parser = ArgumentParser(prog="fusion.fuse", description=__doc__.split("\n\n")[0])
    parser.add_argument("systems", nargs="+", help="sub-system folders (results/system_a ...)")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--folds", type=_at_least_two, default=5, help="speaker-disjoint CV folds on dev")
    parser.add_argument("--inner-folds", type=_at_least_two, default=3, help="folds of the model selection")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--kernels", nargs="+", default=list(DEFAULT_KERNELS), choices=KERNELS)
    parser.add_argument("--C", nargs="+", type=positive_float, default=list(DEFAULT_C), dest="c_values")
    parser.add_argument("--search", choices=SEARCHES, default="fast",
                        help="fast: linear SVM in the primal, kernel SVMs on a sample (default); "
                             "exact: SVC on every turn (slow beyond a few thousand turns)")
    parser.add_argument("--kernel-max-turns", type=positive_int, default=DEFAULT_KERNEL_MAX_TURNS,
                        help="turns a kernel SVM of the fast search is fitted on at most")
    parser.add_argument("--jobs", type=int, default=-1, dest="n_jobs",
                        help="candidates fitted in parallel (default -1: every core)")
    parser.add_argument("--resamples", type=positive_int, default=DEFAULT_RESAMPLES, dest="n_resamples",
                        help=f"speaker bootstrap resamples of the confidence intervals (default "
                             f"{DEFAULT_RESAMPLES})")
    return parser.parse_args(argv)


def main(argv=None):
    """Run the CLI; returns the exit code (see :mod:`ser.cli`: 2 on bad inputs, 1 on a write failure).

    Bad inputs (systems covering different files, rows that are not probabilities, a missing
    folder) and write failures end in one line naming the file and the problem (the edge,
    :func:`ser.cli.run_command`); the output folder is checked before the fusion runs, and
    nothing in it is replaced on error.
    """
    from fusion.report import render_report

    args = _parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    ensure_writable_folder(args.out)
    metrics = fuse_systems(
        args.systems,
        args.out,
        folds=args.folds,
        seed=args.seed,
        kernels=args.kernels,
        c_values=args.c_values,
        inner_folds=args.inner_folds,
        search=args.search,
        kernel_max_turns=args.kernel_max_turns,
        n_jobs=args.n_jobs,
        n_resamples=args.n_resamples,
    )
    print(render_report(metrics))
    for path in metrics["report_files"].values():
        print(path)
    interval = metrics["statistics"]["macro_f1"]["Fusion"]
    print(json.dumps({"fused_dev_macro_f1_cv": round(metrics["macro_f1"], 4),
                      "ci95": [round(interval["low"], 4), round(interval["high"], 4)],
                      "ece_before": round(metrics["calibration"]["ece_before"], 4),
                      "ece_after": round(metrics["calibration"]["ece_after"], 4)}))
    return 0


if __name__ == "__main__":
    sys.exit(run_command("fusion.fuse", main, sys.argv[1:], interrupted="nothing in --out was replaced "
                         "(outputs are written at the end); run the same command again"))
