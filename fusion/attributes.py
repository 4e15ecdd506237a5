"""Task 2 fusion: a regressor on the attribute systems' concatenated predictions.

Each attribute system (``hparams/task2_*.yaml``, or any multi-task system)
writes ``attributes/valid.csv`` and ``attributes/test.csv``
(``FileName,EmoAct,EmoVal,EmoDom``). Their values are concatenated into one
feature vector per turn, and one ridge regressor per attribute learns the
annotated value from it on the development set (its regularisation chosen by
an inner speaker-grouped search on CCC). As for Task 1 (:mod:`fusion.fuse`),
the dev score comes from speaker-disjoint cross-validation: each fold's
regressors predict held-out speakers. The final regressors, fitted on all of
dev, predict the test split (the Task 2 submission). Every dev CCC comes with
a 95 % confidence interval (speakers resampled with replacement, all their
turns: :mod:`ser.bootstrap`), and a paired test on the same resamples says
whether the fusion's mean CCC beats the best system's.

Usage::

    python -m fusion.attributes results/task2_wavlm results/task2_d --out results/fusion_task2

Writes in ``--out``: ``submission.csv`` (``FileName,EmoAct,EmoVal,EmoDom``,
sorted by file), ``fused_valid_oof.csv``, ``attribute_fusion.joblib``,
``attribute_fusion_metrics.json`` (CCC per attribute, per system and fused),
``report.md`` (the CCC table) and ``scatter_<attribute>.png`` (predicted vs
annotated, dev).
"""

import json
import logging
import sys
from pathlib import Path

import joblib
import numpy as np
from sklearn.linear_model import Ridge
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from fusion.inputs import SPLITS, system_name
from fusion.svm import speaker_folds
from ser.bootstrap import DEFAULT_RESAMPLES, SpeakerBootstrap
from ser.cli import ArgumentParser, exit_with, positive_int
from ser.fusion_model import ATTRIBUTE_FUSION_METRICS as METRICS_FILE
from ser.fusion_model import ATTRIBUTE_MODEL_FILE as MODEL_FILE
from ser.fusion_model import AttributeFusion
from ser.fusion_model import load_attribute_fusion as _load_attribute_fusion
from ser.io.atomic import atomic_write, describe_os_error, ensure_writable_folder, write_json_atomic
from ser.io.posteriors import read_attributes, write_attributes
from ser.io.system_folder import ATTRIBUTES_DIR, attributes_file, manifest_file, read_identity, run_folder
from ser.metrics import attribute_report, concordance_cc, format_ccc_table
from ser.targets import ATTRIBUTES

logger = logging.getLogger(__name__)

__all__ = ["AttributeFusion", "fuse_attribute_systems", "load_attribute_fusion"]

ALPHAS = (0.1, 1.0, 10.0, 100.0)


def _load(system_dirs):
    """Attribute tables per system and split, checked to cover the same turns."""
    systems = []
    for path in system_dirs:
        folder = run_folder(path, ATTRIBUTES_DIR)
        tables = {}
        for split in SPLITS:
            csv = attributes_file(folder, split)
            if not csv.is_file():
                raise FileNotFoundError(f"{csv}: missing; every system must give valid and test attributes "
                                        "(train it with attributes in its YAML)")
            tables[split] = read_attributes(csv).sort_index()
        systems.append((system_name(folder, read_identity(folder, required=False)), folder, tables))
    first_name, _, first = systems[0]
    for name, _, tables in systems[1:]:
        for split in SPLITS:
            if not tables[split].index.equals(first[split].index):
                raise ValueError(f"{name}: its {split} attributes cover other turns than {first_name}'s")
    return systems


def _dev_references(folder, names):
    path = manifest_file(folder, "valid")
    if not path.is_file():
        raise FileNotFoundError(f"{path}: missing; the fusion reads dev attributes and speakers from it")
    manifest = json.loads(path.read_text())
    values, speakers = [], []
    for name in names:
        entry = manifest.get(Path(name).stem)
        if entry is None or not entry.get("attributes") or "speaker" not in entry:
            raise ValueError(f"{path}: entry {Path(name).stem!r} needs 'attributes' and a 'speaker'")
        values.append([entry["attributes"].get(a) for a in ATTRIBUTES])
        speakers.append(str(entry["speaker"]))
    return np.asarray(values, dtype=np.float64), np.asarray(speakers)


def _ccc_scorer(estimator, x, y):
    return concordance_cc(estimator.predict(x), y)


def _fit_one(features, target, speakers, seed):
    """Ridge on standardised features, alpha chosen by grouped inner CV on CCC."""
    from sklearn.model_selection import GridSearchCV

    pipeline = make_pipeline(StandardScaler(), Ridge())
    n_speakers = len(set(speakers.tolist()))
    if n_speakers < 3:
        pipeline.set_params(ridge__alpha=1.0).fit(features, target)
        return pipeline, 1.0
    folds = speaker_folds(np.zeros(len(target)), speakers, min(3, n_speakers), seed)
    search = GridSearchCV(pipeline, {"ridge__alpha": list(ALPHAS)}, scoring=_ccc_scorer, cv=folds)
    search.fit(features, target)
    return search.best_estimator_, float(search.best_params_["ridge__alpha"])


def _fit(features, targets, speakers, systems, seed):
    fitted = [_fit_one(features, targets[:, i], speakers, seed) for i in range(targets.shape[1])]
    return AttributeFusion(list(systems), ATTRIBUTES, [f[0] for f in fitted], [f[1] for f in fitted])


def _statistics(predictions, references, speakers, n_resamples, seed):
    """CCC intervals per attribute and of the mean, per column; the fusion vs the best system."""
    boot = SpeakerBootstrap(speakers, n_resamples=n_resamples, seed=seed)
    intervals = {}
    for name, predicted in predictions.items():
        *per_attribute, mean = boot.ccc_intervals(predicted, references)
        intervals[name] = {**{a: i.as_dict() for a, i in zip(ATTRIBUTES, per_attribute, strict=True)},
                           "mean": mean.as_dict()}
    systems = [name for name in predictions if name != "Fusion"]
    best = max(systems, key=lambda name: intervals[name]["mean"]["estimate"])
    test = boot.paired_ccc_test(predictions["Fusion"], predictions[best], references, names=("Fusion", best))
    return {"bootstrap": boot.describe(), "best_system": best, "ccc": intervals,
            "paired_tests": [test.as_dict()]}


def fuse_attribute_systems(system_dirs, out, folds=5, seed=0, n_resamples=DEFAULT_RESAMPLES):
    """Cross-validate the Task 2 fusion on dev, fit it on all of dev, predict test, write everything.

    Returns
    -------
    dict
        The content of ``attribute_fusion_metrics.json``: ``fusion`` and ``per_system``
        (:func:`ser.metrics.attribute_report` each), ``mean_ccc``, ``n_valid``, ``n_test``, and
        ``statistics`` (95 % intervals and the paired test, :mod:`ser.bootstrap`).

    Example
    -------
    >>> import tempfile
    >>> root = Path(tempfile.mkdtemp())
    >>> rng = np.random.default_rng(0)
    >>> truth = rng.uniform(1, 7, (40, 3))
    >>> valid = [f"v{i:02d}.wav" for i in range(40)]
    >>> for system in ("task2_wavlm", "task2_d"):
    ...     noisy = truth + rng.normal(0, 1, truth.shape)
    ...     write_attributes(root / system / "attributes" / "valid.csv", valid, noisy, ATTRIBUTES)
    ...     write_attributes(root / system / "attributes" / "test.csv", ["t2.wav", "t1.wav"], truth[:2],
    ...                      ATTRIBUTES)
    ...     manifest = {n[:-4]: {"attributes": dict(zip(ATTRIBUTES, row)), "speaker": str(i // 5)}
    ...                 for i, (n, row) in enumerate(zip(valid, truth.tolist()))}
    ...     (root / system / "manifests").mkdir()
    ...     _ = (root / system / "manifests" / "valid.json").write_text(json.dumps(manifest))
    >>> metrics = fuse_attribute_systems([root / "task2_wavlm", root / "task2_d"], root / "fusion", folds=4)
    >>> metrics["mean_ccc"] > max(r["mean_ccc"] for r in metrics["per_system"].values())
    True
    >>> [line.split(",")[0] for line in (root / "fusion" / "submission.csv").read_text().splitlines()]
    ['FileName', 't1.wav', 't2.wav']
    """
    out = Path(out)
    systems = _load(system_dirs)
    names = {split: systems[0][2][split].index.tolist() for split in SPLITS}
    references, speakers = _dev_references(systems[0][1], names["valid"])
    known = np.isfinite(references).all(axis=1)
    if not known.any():
        raise ValueError(f"{systems[0][1]}: no dev turn has all attributes: nothing to fuse on")
    x = {split: np.hstack([tables[split].to_numpy() for _, _, tables in systems]) for split in SPLITS}
    x_valid, y_valid, spk = x["valid"][known], references[known], speakers[known]
    system_names = [name for name, _, _ in systems]
    logger.info("fusing %s (Task 2): %d dev turns, %d speakers", ", ".join(system_names), len(y_valid),
                len(set(spk.tolist())))
    oof = np.zeros_like(y_valid)
    for train, test in speaker_folds(np.zeros(len(y_valid)), spk, folds, seed):
        fold_model = _fit(x_valid[train], y_valid[train], spk[train], system_names, seed)
        oof[test] = fold_model.predict(x_valid[test])
    n_attr = len(ATTRIBUTES)
    per_system = {
        name: attribute_report(x_valid[:, i * n_attr : (i + 1) * n_attr], y_valid, ATTRIBUTES)
        for i, name in enumerate(system_names)
    }
    fused = attribute_report(oof, y_valid, ATTRIBUTES)
    columns = {name: x_valid[:, i * n_attr:(i + 1) * n_attr] for i, name in enumerate(system_names)}
    statistics = _statistics({**columns, "Fusion": oof}, y_valid, spk, n_resamples, seed)
    final = _fit(x_valid, y_valid, spk, system_names, seed)
    out.mkdir(parents=True, exist_ok=True)
    test_values = final.predict(x["test"])
    write_attributes(out / "submission.csv", names["test"], test_values, ATTRIBUTES)
    valid_names = [n for n, k in zip(names["valid"], known, strict=True) if k]
    write_attributes(out / "fused_valid_oof.csv", valid_names, oof, ATTRIBUTES)
    with atomic_write(out / MODEL_FILE, "wb") as stream:
        joblib.dump(final, stream)
    metrics = {
        "mean_ccc": fused["mean_ccc"],
        "evaluation": "out-of-fold predictions of speaker-disjoint cross-validation on dev",
        "fusion": fused,
        "per_system": per_system,
        "systems": [{"name": n, "folder": str(f)} for n, f, _ in systems],
        "alphas": dict(zip(ATTRIBUTES, final.alphas, strict=True)),
        "n_valid": int(len(y_valid)),
        "n_test": len(names["test"]),
        "statistics": statistics,
    }
    write_json_atomic(out / METRICS_FILE, metrics)
    _write_report(out, metrics, oof, y_valid)
    return metrics


def _interval_table(statistics):
    """Markdown: mean CCC and each attribute's CCC with its 95 % interval, one row per column."""
    boot = statistics["bootstrap"]
    lines = [f"95 % confidence intervals: percentile bootstrap over {boot['n_resamples']} resamples of "
             f"the {boot['clusters']} speakers (with replacement, all their turns; seed {boot['seed']}).",
             "", "| System | Mean CCC | " + " | ".join(ATTRIBUTES) + " |",
             "|---|" + "---:|" * (1 + len(ATTRIBUTES))]
    for name, intervals in statistics["ccc"].items():
        cells = [f"{i['estimate']:.3f} [{i['low']:.3f}, {i['high']:.3f}]"
                 for i in (intervals["mean"], *(intervals[a] for a in ATTRIBUTES))]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    for test in statistics["paired_tests"]:
        d = test["difference"]
        lines += ["", f"Paired test on the same resamples, mean CCC of {test['a']} minus {test['b']} "
                  f"(the best system on dev): {d['estimate']:+.3f} [{d['low']:+.3f}, {d['high']:+.3f}], p = "
                  f"{test['p_value']:.3f} that the fusion is not better."]
    return "\n".join(lines)


def render_attribute_report(metrics):
    """The CCC table (dev): one column per system, then the fusion (speaker-disjoint CV), and the
    confidence intervals and paired test when the metrics hold them."""
    table = format_ccc_table({**metrics["per_system"], "Fusion": metrics["fusion"]})
    text = (f"## Task 2: CCC on dev ({metrics['n_valid']} turns)\n\n{table}\n\n"
            "The fusion column is scored out of fold (speaker-disjoint cross-validation on dev).\n")
    if metrics.get("statistics"):
        text += "\n" + _interval_table(metrics["statistics"]) + "\n"
    return text


def _write_report(out, metrics, predicted, annotated):
    from fusion.plots import plot_attribute_scatter

    figures = []
    for i, name in enumerate(ATTRIBUTES):
        path = out / f"scatter_{name}.png"
        plot_attribute_scatter(predicted[:, i], annotated[:, i], name, metrics["fusion"]["ccc"][name], path)
        figures.append(f"![{name}]({path.name})")
    with atomic_write(out / "report.md") as stream:
        stream.write(render_attribute_report(metrics) + "\n" + "\n".join(figures) + "\n")


def load_attribute_fusion(out):
    """Load the :class:`ser.fusion_model.AttributeFusion` written by :func:`fuse_attribute_systems`."""
    return _load_attribute_fusion(out)


def main(argv=None):
    """Run the CLI; returns the exit code (1 on bad inputs or an output folder that cannot be written)."""
    parser = ArgumentParser(prog="fusion.attributes", description=__doc__.split("\n\n")[0])
    parser.add_argument("systems", nargs="+", help="attribute system folders (results/task2_wavlm ...)")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--folds", type=positive_int, default=5, help="speaker-disjoint CV folds on dev")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--resamples", type=positive_int, default=DEFAULT_RESAMPLES, dest="n_resamples",
                        help=f"speaker bootstrap resamples of the confidence intervals (default "
                             f"{DEFAULT_RESAMPLES})")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        ensure_writable_folder(args.out)
        metrics = fuse_attribute_systems(args.systems, args.out, folds=args.folds, seed=args.seed,
                                         n_resamples=args.n_resamples)
    except OSError as error:
        print(f"fusion.attributes: error: {describe_os_error(error, args.out)}", file=sys.stderr)
        return 1
    except ValueError as error:  # inputs that do not fit together (UserInputError: the edge below)
        print(f"fusion.attributes: error: {' '.join(str(error).split())}", file=sys.stderr)
        return 1
    print(render_attribute_report(metrics))
    print(Path(args.out) / "submission.csv")
    return 0


if __name__ == "__main__":
    exit_with("fusion.attributes", main,
              interrupted="nothing in --out was replaced; run the same command again")
