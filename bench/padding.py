"""Padded frames: fixed random batches vs. length-bucketed dynamic batches.

Synthesizes the turn durations of an MSP-Podcast-sized training split and
counts how much of what the encoder computes is padding (each batch is padded
to its longest turn) with random batches of ``--batch_size`` turns and with
the bucketed sampler of :mod:`ser.batching` (the real sampler, built with the
Batching options of ``--hparams``). Target: at most 5 % padding with buckets.

Durations: log-normal, median 5.4 s, sigma 0.42, redrawn until within
[2, 12] s; ``--turns`` of them (default 84,030, the v1.11 Train split). Mean
about 5.7 s, 5th/50th/95th percentiles about 2.8 / 5.3 / 9.8 s, like the
2.75–11 s turns of MSP-Podcast. Training crops at ``max_duration`` (12 s), so
the effective lengths are the durations themselves.

Usage::

    python bench/padding.py [--turns 84030] [--hparams hparams/system_a.yaml] [--batch_size 16]
"""

import argparse
import logging
import re
import sys
import time
from pathlib import Path

import numpy as np
from speechbrain.dataio.dataset import DynamicItemDataset

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from ser.batching import bucketed_batch_sampler, effective_lengths, padded_fraction  # noqa: E402

logger = logging.getLogger(__name__)

MEDIAN_S, SIGMA, SHORTEST_S, LONGEST_S = 5.4, 0.42, 2.0, 12.0
BATCHING_KEYS = ("seed", "max_duration", "eval_max_duration", "max_batch_duration", "num_buckets")


def msp_like_durations(n_turns, seed=0):
    """``n_turns`` durations (s): log-normal (median 5.4 s, sigma 0.42) truncated to [2, 12] s.

    Example
    -------
    >>> durations = msp_like_durations(2000, seed=1)
    >>> bool(durations.min() >= 2.0 and durations.max() <= 12.0), round(float(durations.mean()))
    (True, 6)
    """
    rng = np.random.default_rng(seed)
    durations = np.empty(0)
    while len(durations) < n_turns:
        draw = rng.lognormal(np.log(MEDIAN_S), SIGMA, size=2 * n_turns)
        durations = np.concatenate([durations, draw[(draw >= SHORTEST_S) & (draw <= LONGEST_S)]])
    return np.round(durations[:n_turns], 3)


def yaml_scalars(path, keys):
    """Plain top-level numbers of a system YAML (it cannot be loaded without building models).

    Example
    -------
    >>> yaml_scalars("hparams/system_a.yaml", ["seed"])
    {'seed': 1993.0}
    """
    text = Path(path).read_text()
    values = {}
    for key in keys:
        match = re.search(rf"^{key}:\s*([-+0-9.eE]+)\s*(#.*)?$", text, flags=re.MULTILINE)
        if match is None:
            raise ValueError(f"{path}: no numeric top-level key {key!r} (the Batching section)")
        values[key] = float(match.group(1))
    return values


def random_batches(n_turns, batch_size, seed):
    """Fixed-size batches of a random permutation (the last one may be smaller)."""
    order = np.random.default_rng(seed).permutation(n_turns)
    return [order[start : start + batch_size] for start in range(0, n_turns, batch_size)]


def batch_stats(name, batches, lengths):
    sizes = np.array([len(batch) for batch in batches])
    padded = np.array([lengths[list(batch)].max() * len(batch) for batch in batches])
    return {
        "batching": name,
        "batches": len(batches),
        "mean_size": sizes.mean(),
        "max_padded_s": padded.max(),
        "padding": padded_fraction(batches, lengths),
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--turns", type=int, default=84030, help="number of synthetic turns")
    parser.add_argument("--hparams", default="hparams/system_a.yaml", help="system YAML (Batching section)")
    parser.add_argument("--batch_size", type=int, default=16, help="fixed random batch size (paper: 16)")
    parser.add_argument("--num_buckets", type=int, help="override the YAML's num_buckets")
    parser.add_argument("--max_batch_duration", type=float, help="override the YAML's max_batch_duration")
    parser.add_argument("--seed", type=int, default=0, help="seed of the synthetic durations")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("speechbrain").setLevel(logging.WARNING)

    options = yaml_scalars(args.hparams, BATCHING_KEYS)
    num_buckets = args.num_buckets or int(options["num_buckets"])
    max_batch = args.max_batch_duration or options["max_batch_duration"]
    durations = msp_like_durations(args.turns, seed=args.seed)
    dataset = DynamicItemDataset({f"turn{i:06d}": {"duration": float(d)} for i, d in enumerate(durations)})

    rows = []
    lengths = effective_lengths(dataset, options["max_duration"])
    rows.append(
        batch_stats(
            f"random, {args.batch_size} turns", random_batches(len(lengths), args.batch_size, 0), lengths
        )
    )
    for stage, limit, train in (
        ("train", options["max_duration"], True),
        ("eval", options["eval_max_duration"], False),
    ):
        start = time.perf_counter()
        sampler = bucketed_batch_sampler(
            dataset, limit, max_batch, num_buckets, train=train, seed=int(options["seed"])
        )
        sampler.set_epoch(1)
        batches = list(sampler)
        elapsed = time.perf_counter() - start
        name = f"bucketed {stage}, {max_batch:g} s, {num_buckets} buckets"
        rows.append({**batch_stats(name, batches, effective_lengths(dataset, limit)), "build_s": elapsed})

    print(
        f"{args.turns} turns, mean {durations.mean():.2f} s, "
        f"p5/p50/p95 {np.percentile(durations, 5):.2f}/{np.median(durations):.2f}/"
        f"{np.percentile(durations, 95):.2f} s ({args.hparams})"
    )
    print("| batching | batches/epoch | mean turns/batch | max padded s/batch | padded frames |")
    print("|---|---:|---:|---:|---:|")
    for row in rows:
        print(
            f"| {row['batching']} | {row['batches']} | {row['mean_size']:.1f} | "
            f"{row['max_padded_s']:.1f} | {100 * row['padding']:.1f} % |"
        )
    bucketed = rows[1]["padding"]
    print(
        f"target <= 5 % padding with buckets: {'met' if bucketed <= 0.05 else 'NOT met'} "
        f"({100 * bucketed:.1f} %); sampler built in {rows[1]['build_s']:.2f} s"
    )


if __name__ == "__main__":
    main()
