"""Ablations with seeds: one system under several override sets, a Markdown table of mean ± std.

Usage::

    python -m recipes.ablate hparams/system_a.yaml --profile hparams/profiles/demo.yaml \\
        --set loss=nll --set class_weights=auto --set "loss=focal class_weights=auto" \\
        --set soft_labels=True --seeds 3 --out results/ablate/system_a

Each ``--set`` is one variant: space-separated ``key=value`` YAML overrides (the keys of the
system file, as on ``train.py``'s command line). Each variant runs with seeds 1993, 1994, ...
(``--seeds N``), each run in its own folder ``<out>/<variant>/seed_<seed>/`` through the one
``train.py``; other arguments (``--profile``, ``--data_folder``, ``--number_of_epochs=5``) are
passed to every run. A run whose ``metrics.json`` exists is not run again, and an interrupted run
resumes from its checkpoint, so re-running the command finishes what is left.

The score is dev macro-F1 for a system with classes, dev mean CCC for an attribute system. The
table (printed and written to ``<out>/ablation.md``) gives mean ± standard deviation over the
seeds (sample std, ``ddof=1``) and every seed's value; a failed run is listed with its log and
makes the exit code 1.
"""

import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from ser.cli import ArgumentParser, exit_with
from ser.io.atomic import atomic_write
from ser.io.json_files import read_json

ROOT = Path(__file__).resolve().parents[1]
FIRST_SEED = 1993


def parse_variant(text):
    """``"loss=focal class_weights=auto"`` -> ``["--loss=focal", "--class_weights=auto"]``.

    Example
    -------
    >>> parse_variant("loss=focal  class_weights=auto")
    ['--loss=focal', '--class_weights=auto']
    >>> parse_variant("loss")
    Traceback (most recent call last):
    ...
    ValueError: --set 'loss': expected key=value pairs separated by spaces
    """
    pairs = text.split()
    if not pairs or not all(re.fullmatch(r"[A-Za-z_]\w*=\S*", pair) for pair in pairs):
        raise ValueError(f"--set {text!r}: expected key=value pairs separated by spaces")
    return [f"--{pair}" for pair in pairs]


def variant_folder(text):
    """A folder name for a variant.

    Example
    -------
    >>> variant_folder("loss=focal class_weights=auto")
    'loss-focal_class_weights-auto'
    """
    return re.sub(r"[^\w.-]+", "_", text.replace("=", "-")).strip("_")


def score_of(metrics):
    """The run's dev score: macro-F1 when it has classes, else mean CCC; and its name.

    Example
    -------
    >>> score_of({"macro_f1": 0.4, "mean_ccc": 0.2}), score_of({"mean_ccc": 0.2})
    ((0.4, 'dev macro-F1'), (0.2, 'dev mean CCC'))
    """
    if "macro_f1" in metrics:
        return metrics["macro_f1"], "dev macro-F1"
    return metrics["mean_ccc"], "dev mean CCC"


def run_one(hparams_file, overrides, seed, folder, train_args):
    """Train one (variant, seed) unless its metrics exist; the metrics or None (failed)."""
    metrics_files = sorted(folder.glob(f"*/{seed}/metrics.json"))
    if metrics_files:
        return read_json(metrics_files[0]), None
    folder.mkdir(parents=True, exist_ok=True)
    log = folder / "train.log"
    command = [sys.executable, str(ROOT / "train.py"), str(hparams_file), *train_args, *overrides,
               f"--seed={seed}", f"--results_folder={folder}"]
    with open(log, "w") as stream:
        done = subprocess.run(command, cwd=ROOT, stdout=stream, stderr=subprocess.STDOUT)
    metrics_files = sorted(folder.glob(f"*/{seed}/metrics.json"))
    if done.returncode != 0 or not metrics_files:
        return None, log
    return read_json(metrics_files[0]), None


def format_table(rows, metric):
    """Markdown table: variant, mean ± std over seeds, the per-seed values.

    Example
    -------
    >>> print(format_table([("loss=nll", [0.3, 0.4], [])], "dev macro-F1"))
    | variant | dev macro-F1 (mean ± std) | seeds |
    |---|---:|---|
    | `loss=nll` | 0.350 ± 0.071 | 0.300, 0.400 |
    """
    lines = [f"| variant | {metric} (mean ± std) | seeds |", "|---|---:|---|"]
    for variant, scores, failed in rows:
        if len(scores) > 1:
            cell = f"{np.mean(scores):.3f} ± {np.std(scores, ddof=1):.3f}"
        elif scores:
            cell = f"{scores[0]:.3f} (one seed: no std)"
        else:
            cell = "—"
        seeds = ", ".join(f"{s:.3f}" for s in scores) + "".join(f"; failed: {log}" for log in failed)
        lines.append(f"| `{variant}` | {cell} | {seeds} |")
    return "\n".join(lines)


def main(argv=None):
    parser = ArgumentParser(prog="recipes.ablate", description=__doc__.split("\n")[0])
    parser.add_argument("hparams", type=Path, help="system YAML (hparams/system_a.yaml)")
    parser.add_argument("--set", dest="variants", action="append", required=True, metavar="'KEY=VALUE ...'",
                        help="one variant: YAML overrides (repeat for each variant)")
    parser.add_argument("--seeds", type=int, default=3, help="seeds per variant (1993, 1994, ...)")
    parser.add_argument("--out", type=Path, default=None,
                        help="output folder (default results/ablate/<yaml name>)")
    args, train_args = parser.parse_known_args(argv)
    if not args.hparams.is_file():
        parser.error(f"{args.hparams}: no such hparams file")
    if args.seeds < 1:
        parser.error(f"--seeds must be at least 1, got {args.seeds}")
    try:
        variants = [(text, parse_variant(text)) for text in args.variants]
    except ValueError as error:
        parser.error(str(error))
    out = args.out or ROOT / "results" / "ablate" / args.hparams.stem
    rows, metric, any_failed = [], "dev score", False
    for text, overrides in variants:
        scores, failed = [], []
        for seed in range(FIRST_SEED, FIRST_SEED + args.seeds):
            start = time.perf_counter()
            folder = out / variant_folder(text) / f"seed_{seed}"
            metrics, log = run_one(args.hparams.resolve(), overrides, seed, folder, train_args)
            if metrics is None:
                failed.append(str(log))
                any_failed = True
                print(f"{text} seed {seed}: failed, see {log}", flush=True)
                continue
            score, metric = score_of(metrics)
            scores.append(score)
            seconds = time.perf_counter() - start
            print(f"{text} seed {seed}: {metric} {score:.3f} ({seconds:.0f} s)", flush=True)
        rows.append((text, scores, failed))
    table = format_table(rows, metric)
    header = (f"Ablation of {args.hparams.name}, {args.seeds} seed(s) per variant"
              + (f", run with {' '.join(train_args)}" if train_args else "") + "\n\n")
    out.mkdir(parents=True, exist_ok=True)
    with atomic_write(out / "ablation.md") as stream:
        stream.write(header + table + "\n")
    print("\n" + header + table)
    print(f"\n{out / 'ablation.md'}")
    return 1 if any_failed else 0


if __name__ == "__main__":
    exit_with("recipes.ablate", main, interrupted="finished runs are kept in their folders; "
              "run the same command again to resume")
