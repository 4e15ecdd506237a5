"""Fusion at MSP-Podcast size: time ``fusion.fuse`` as a user runs it, and check its selection.

Builds five system folders (``posteriors/valid.csv``, ``posteriors/test.csv``,
``manifests/valid.json``, as ``train.py`` writes them) holding synthetic
posteriors of MSP-Podcast v1.11's size: 19,815 dev turns of 454 speakers and
2,347 Test3 turns (``--turns``, ``--speakers``, ``--test``; MSP-Podcast 2.0 has
34,399 dev turns). Dev classes follow the corpus' skew (paper Table 2), Test3
is balanced. The errors are mostly shared across systems, and the fusion gains
about what it gains on the real corpus (paper Table 1: 0.350 over 0.336, +0.014):
every turn has one shared logit vector (true class + noise + a speaker offset +
a pull towards the frequent classes) and each system adds noise and a class bias
of its own (a fifth of the logit noise variance, so the systems agree on most
errors).

Then it runs, timed (wall clock, this process):

- ``python -m fusion.fuse`` with the default search (``fast``): 5 speaker-disjoint
  outer folds, each with its own 3-fold inner search, then the final fit;
- ``--old-fold``: the ``exact`` search (SVC on every turn, the search before
  ``fast``) on the first outer fold's training set only; the whole old run is
  about ``folds + 1`` such searches (the final one on 25 % more turns, so more);
- ``--compare-turns N``: both searches through the CLI on a set of N turns (small
  enough for the exact grid), printing both fused macro-F1s and their difference;
- ``--intervals N [N ...]``: the speaker bootstrap alone (:mod:`ser.bootstrap`, 1000
  resamples, 8 turns per speaker as the mini corpus) on dev sets of N turns: CPU
  seconds, the width of system A's 95 % interval and of the paired A - B difference
  (how small a difference that dev size can tell).

The fused run's summary also gives the fusion's 95 % interval, the paired test
against the best system and the calibration error before and after temperature
scaling.

Usage::

    python bench/fusion.py [--turns 19815] [--speakers 454] [--test 2347] [--old-fold]
    python bench/fusion.py --turns 34399 --speakers 788         # MSP-Podcast 2.0's dev size
    python bench/fusion.py --turns 0 --compare-turns 4000       # selection quality only
    python bench/fusion.py --turns 0 --intervals 77 259 19815    # what a dev size can tell apart
"""

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from fusion.svm import fit_fusion_model, speaker_folds  # noqa: E402
from ser.bootstrap import SpeakerBootstrap  # noqa: E402
from ser.emotions import EMOTIONS  # noqa: E402
from ser.io.posteriors import write_posteriors  # noqa: E402

# Train class counts of MSP-Podcast v1.11 (paper Table 2): the dev skew.
CLASS_COUNTS = {"A": 3053, "C": 2443, "D": 1426, "F": 1139, "H": 13440, "N": 25106, "S": 3882, "U": 2897}
N_SYSTEMS = 5
# Logit scale of the true class, shared noise, speaker offsets, per-system noise, and how much of
# the class prior the systems absorbed: tuned so that each system scores about 0.32-0.35 dev
# macro-F1 (paper Table 1: 0.318-0.336) and the fast fusion gains about 0.015 at 19,815 turns.
# With the per-system noise at 0.3 (shared 1.1) the systems were near copies of each other:
# the fusion gained -0.0006 (README, Performance).
CORES = len(os.sched_getaffinity(0))
TRUE_CLASS, SHARED_NOISE, SPEAKER_NOISE, SYSTEM_NOISE, PRIOR_PULL = 1.25, 0.975, 0.5, 0.525, 0.4


def msp_like_posteriors(n_turns, n_speakers, balanced=False, n_systems=N_SYSTEMS, seed=0):
    """Labels, speakers and ``n_systems`` posterior arrays whose errors are mostly shared.

    Returns
    -------
    (numpy.ndarray, numpy.ndarray, list of numpy.ndarray)
        Class letters ``(n,)``, speaker ids ``(n,)`` (str) and one ``(n, 8)`` probability
        array per system.

    Example
    -------
    >>> from ser.metrics import classification_report
    >>> labels, speakers, systems = msp_like_posteriors(4000, 90, seed=1)
    >>> len(systems), systems[0].shape, bool(np.allclose(systems[0].sum(axis=1), 1))
    (5, (4000, 8), True)
    >>> f1 = [classification_report(labels, np.asarray(EMOTIONS)[p.argmax(1)])["macro_f1"] for p in systems]
    >>> bool(0.25 < min(f1) and max(f1) < 0.42)
    True
    """
    rng = np.random.default_rng(seed)
    prior = np.array([CLASS_COUNTS[c] for c in EMOTIONS], dtype=float)
    prior /= prior.sum()
    n_classes = len(EMOTIONS)
    classes = rng.integers(0, n_classes, n_turns) if balanced else rng.choice(n_classes, n_turns, p=prior)
    speakers = rng.integers(0, n_speakers, n_turns)
    speaker_offsets = rng.normal(0, SPEAKER_NOISE, (n_speakers, len(EMOTIONS)))
    shared = (TRUE_CLASS * np.eye(len(EMOTIONS))[classes] + SHARED_NOISE * rng.normal(size=(n_turns, 8))
              + speaker_offsets[speakers] + PRIOR_PULL * np.log(prior))
    systems = []
    for _ in range(n_systems):
        logits = shared + SYSTEM_NOISE * rng.normal(size=shared.shape) + rng.normal(0, 0.3, len(EMOTIONS))
        probabilities = np.exp(logits - logits.max(axis=1, keepdims=True))
        systems.append(probabilities / probabilities.sum(axis=1, keepdims=True))
    return np.asarray(EMOTIONS)[classes], np.array([f"{1000 + s}" for s in speakers]), systems


def write_system_folders(root, n_turns, n_speakers, n_test, seed=0):
    """Five system folders as ``train.py`` writes them.

    Returns ``(folders, labels, speakers, dev arrays)``.
    """
    labels, speakers, dev = msp_like_posteriors(n_turns, n_speakers, seed=seed)
    _, _, test = msp_like_posteriors(n_test, max(2, n_speakers // 2), balanced=True, seed=seed + 1)
    dev_names = [f"MSP-PODCAST_{i // 1000:04d}_{i % 1000:04d}.wav" for i in range(n_turns)]
    test_names = [f"MSP-PODCAST_test3_{i:05d}.wav" for i in range(n_test)]
    manifest = {name[:-4]: {"emotion": label, "speaker": speaker}
                for name, label, speaker in zip(dev_names, labels, speakers, strict=True)}
    folders = []
    for index in range(N_SYSTEMS):
        folder = Path(root) / f"system_{'abcde'[index]}" / "1993"
        write_posteriors(folder / "posteriors" / "valid.csv", dev_names, dev[index])
        write_posteriors(folder / "posteriors" / "test.csv", test_names, test[index])
        (folder / "manifests").mkdir(parents=True, exist_ok=True)
        (folder / "manifests" / "valid.json").write_text(json.dumps(manifest))
        folders.append(folder)
    return folders, labels, speakers, dev


def run_cli(folders, out, *extra):
    """``python -m fusion.fuse`` as a user runs it (a new process); returns (wall s, CPU s, metrics).

    CPU seconds are those of the command and its worker processes: on a shared machine they
    say what a quiet one would take (CPU seconds / cores), whatever the wall clock says.
    """
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    command = [sys.executable, "-m", "fusion.fuse", *map(str, folders), "--out", str(out), *extra]
    done = subprocess.run(command,
                          cwd=ROOT, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode:
        raise SystemExit(f"fusion.fuse exited with {done.returncode}:\n{done.stderr[-3000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return seconds, cpu, json.loads((Path(out) / "fusion_metrics.json").read_text())


def old_search_one_fold(labels, speakers, dev, folds=5, seed=0):
    """Seconds of the exact search (today's grid) on the first outer fold's training set."""
    features = np.hstack(dev)
    train, _ = speaker_folds(labels, speakers, folds, seed)[0]
    start, cpu = time.perf_counter(), time.process_time()
    model = fit_fusion_model(features[train], labels[train], speakers[train], list("ABCDE"), seed=seed,
                             search="exact")
    return time.perf_counter() - start, time.process_time() - cpu, len(train), model.params


def interval_widths(n_turns, turns_per_speaker=8, n_resamples=1000, seed=0):
    """CPU seconds of the bootstrap of 5 systems + 1 paired test, and the interval widths, at one dev size.

    Example
    -------
    >>> widths = interval_widths(400, n_resamples=200)
    >>> widths["turns"], widths["speakers"], widths["a_ci_width"] > widths["a_minus_b_ci_width"] > 0
    (400, 50, True)
    """
    n_speakers = max(2, round(n_turns / turns_per_speaker))
    labels, speakers, dev = msp_like_posteriors(n_turns, n_speakers, seed=seed)
    predictions = [np.asarray(EMOTIONS)[p.argmax(axis=1)] for p in dev]
    start = time.process_time()
    boot = SpeakerBootstrap(speakers, n_resamples=n_resamples, seed=seed)
    intervals = [boot.macro_f1_interval(labels, p) for p in predictions]
    paired = boot.paired_macro_f1_test(labels, predictions[0], predictions[1])
    cpu = time.process_time() - start
    return {"turns": n_turns, "speakers": n_speakers, "cpu_s": round(cpu, 3),
            "a_macro_f1": round(intervals[0].estimate, 4),
            "a_ci_width": round(intervals[0].high - intervals[0].low, 4),
            "a_minus_b_ci_width": round(paired.difference.high - paired.difference.low, 4)}


def _summary(metrics):
    best = max(report["macro_f1"] for report in metrics["per_system"].values())
    summary = {"fused_macro_f1": round(metrics["macro_f1"], 4), "best_system_macro_f1": round(best, 4),
               "gain": round(metrics["macro_f1"] - best, 4), "final_model": metrics["final_model"]}
    if "statistics" in metrics:
        fused = metrics["statistics"]["macro_f1"]["Fusion"]
        test = metrics["statistics"]["paired_tests"][0]
        calibration = metrics["calibration"]
        summary.update({
            "fused_ci95": [round(fused["low"], 4), round(fused["high"], 4)],
            "fusion_minus_best_ci95": [round(test["difference"][side], 4) for side in ("low", "high")],
            "p_fusion_not_better": round(test["p_value"], 4),
            "temperature": round(calibration["temperature"], 3),
            "ece_before_after": [round(calibration["ece_before"], 4), round(calibration["ece_after"], 4)]})
    return summary


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--turns", type=int, default=19815, help="dev turns (0: skip the timed run)")
    parser.add_argument("--speakers", type=int, default=454, help="dev speakers")
    parser.add_argument("--test", type=int, default=2347, help="Test3 turns")
    parser.add_argument("--old-fold", action="store_true",
                        help="also time the exact search on the first outer fold")
    parser.add_argument("--compare-turns", type=int, default=0,
                        help="compare the fast and the exact search on a set of this many turns")
    parser.add_argument("--intervals", type=int, nargs="*", default=[], metavar="N",
                        help="time the speaker bootstrap alone on dev sets of N turns")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        if args.turns:
            root = Path(tmp) / "full"
            folders, labels, speakers, dev = write_system_folders(root, args.turns, args.speakers, args.test,
                                                                  args.seed)
            seconds, cpu, metrics = run_cli(folders, root / "fusion")
            results["fast"] = {"turns": args.turns, "wall_s": round(seconds, 1), "cpu_s": round(cpu, 1),
                               **_summary(metrics)}
            print(f"fast search, {args.turns} dev turns x {N_SYSTEMS} systems + {args.test} test: "
                  f"{seconds:.1f} s wall, {cpu:.1f} CPU s ({cpu / CORES:.1f} s on {CORES} idle cores), "
                  f"fused macro-F1 {metrics['macro_f1']:.4f}; {json.dumps(results['fast'])}", flush=True)
            if args.old_fold:
                seconds, cpu, n_train, params = old_search_one_fold(labels, speakers, dev, seed=args.seed)
                results["exact_one_fold"] = {"train_turns": n_train, "wall_s": round(seconds, 1),
                                             "cpu_s": round(cpu, 1), "params": params,
                                             "whole_run_cpu_s_at_least": round(6 * cpu)}
                print(f"exact search, first outer fold only ({n_train} turns): {seconds:.1f} s wall, "
                      f"{cpu:.1f} CPU s (one process); whole run (5 folds + final fit) >= {6 * cpu / 60:.0f} "
                      "CPU min (extrapolated from this fold)", flush=True)
        if args.compare_turns:
            root = Path(tmp) / "compare"
            n_speakers = max(10, round(args.speakers * args.compare_turns / (args.turns or 19815)))
            folders, *_ = write_system_folders(root, args.compare_turns, n_speakers, args.test, args.seed)
            compare = {}
            for search in ("fast", "exact"):
                seconds, cpu, metrics = run_cli(folders, root / search, "--search", search)
                compare[search] = {"wall_s": round(seconds, 1), "cpu_s": round(cpu, 1), **_summary(metrics)}
                print(f"{search} search, {args.compare_turns} turns ({n_speakers} speakers): "
                      f"{seconds:.1f} s wall, "
                      f"{cpu:.1f} CPU s, fused macro-F1 {metrics['macro_f1']:.4f}", flush=True)
            compare["fast_minus_exact"] = round(compare["fast"]["fused_macro_f1"]
                                                - compare["exact"]["fused_macro_f1"], 4)
            results["compare"] = compare
    if args.intervals:
        results["intervals"] = [interval_widths(n, seed=args.seed) for n in args.intervals]
        for row in results["intervals"]:
            print(f"bootstrap, {row['turns']} dev turns ({row['speakers']} speakers): {row['cpu_s']:.2f} "
                  f"CPU s for 5 intervals + 1 paired test; system A {row['a_macro_f1']:.3f}, 95 % CI width "
                  f"{row['a_ci_width']:.3f}, A - B difference CI width {row['a_minus_b_ci_width']:.3f}",
                  flush=True)
    results["load_average"] = os.getloadavg()
    print(json.dumps(results))
    return results


if __name__ == "__main__":
    main()
