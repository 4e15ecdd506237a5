"""Padded frames and optimizer steps per epoch of the three ``batching`` modes.

Synthesizes the turn durations of an MSP-Podcast-sized training split and
counts, for each way of batching of :mod:`ser.training.batching` (the real samplers,
built with the Batching options of ``--hparams``): batches and optimizer
steps per epoch (batches / ``grad_accumulation_factor``), turns per batch and
how much of what the encoder computes is padding (each batch is padded to its
longest turn). ``random``: random batches of ``batch_size``; ``bucketed``:
length-bucketed batches of ``batch_size``; ``duration``: batches of at most
``max_batch_duration`` s. Target: at most 5 % padding with ``bucketed``, and
its steps per epoch = ceil(turns / batch_size / accumulation).

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
import sys
import time
from pathlib import Path

import numpy as np
from speechbrain.dataio.dataset import DynamicItemDataset

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from ser.training.batching import (  # noqa: E402
    BucketedBatchSampler,
    bucketed_batch_sampler,
    effective_lengths,
    padded_fraction,
)
from ser.training.overrides import plain_values  # noqa: E402

logger = logging.getLogger(__name__)

MEDIAN_S, SIGMA, SHORTEST_S, LONGEST_S = 5.4, 0.42, 2.0, 12.0
BATCHING_KEYS = (
    "seed", "max_duration", "eval_max_duration", "max_batch_duration", "num_buckets", "batch_size"
)


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


def yaml_scalars(path, keys, defaults=None):
    """Plain top-level numbers of a system YAML (it cannot be loaded without building models).

    Example
    -------
    >>> yaml_scalars("hparams/system_a.yaml", ["seed"])
    {'seed': 1993.0}
    >>> yaml_scalars("hparams/system_a.yaml", ["no_such_key"], defaults={"no_such_key": 1})
    {'no_such_key': 1}
    """
    plain = plain_values(Path(path).read_text())
    values = {}
    for key in keys:
        number = plain.get(key)
        if not isinstance(number, (int, float)) or isinstance(number, bool):
            if defaults and key in defaults:
                values[key] = defaults[key]
                continue
            raise ValueError(f"{path}: no numeric top-level key {key!r} (the Batching section)")
        values[key] = float(number)
    return values


def random_batches(n_turns, batch_size, seed):
    """Fixed-size batches of a random permutation (the last one may be smaller)."""
    order = np.random.default_rng(seed).permutation(n_turns)
    return [order[start : start + batch_size] for start in range(0, n_turns, batch_size)]


def batch_stats(name, batches, lengths, accumulation=1):
    sizes = np.array([len(batch) for batch in batches])
    padded = np.array([lengths[list(batch)].max() * len(batch) for batch in batches])
    return {
        "batching": name,
        "batches": len(batches),
        "steps": -(-len(batches) // accumulation),
        "mean_size": sizes.mean(),
        "max_padded_s": padded.max(),
        "padding": padded_fraction(batches, lengths),
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--turns", type=int, default=84030, help="number of synthetic turns")
    parser.add_argument("--hparams", default="hparams/system_a.yaml", help="system YAML (Batching section)")
    parser.add_argument("--batch_size", type=int, help="override the YAML's batch_size")
    parser.add_argument("--num_buckets", type=int, help="override the YAML's num_buckets")
    parser.add_argument("--max_batch_duration", type=float, help="override the YAML's max_batch_duration")
    parser.add_argument("--seed", type=int, default=0, help="seed of the synthetic durations")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("speechbrain").setLevel(logging.WARNING)

    options = yaml_scalars(args.hparams, BATCHING_KEYS)
    accumulation = int(
        yaml_scalars(args.hparams, ["grad_accumulation_factor"], {"grad_accumulation_factor": 1})[
            "grad_accumulation_factor"
        ]
    )
    batch_size = args.batch_size or int(options["batch_size"])
    num_buckets = args.num_buckets or int(options["num_buckets"])
    max_batch = args.max_batch_duration or options["max_batch_duration"]
    seed = int(options["seed"])
    durations = msp_like_durations(args.turns, seed=args.seed)
    dataset = DynamicItemDataset({f"turn{i:06d}": {"duration": float(d)} for i, d in enumerate(durations)})

    rows = []
    for stage, limit, train in (
        ("train", options["max_duration"], True),
        ("eval", options["eval_max_duration"], False),
    ):
        lengths = effective_lengths(dataset, limit)
        if train:
            batches = random_batches(len(lengths), batch_size, 0)
            rows.append(batch_stats(f"random train, {batch_size} turns", batches, lengths, accumulation))
        start = time.perf_counter()
        sampler = BucketedBatchSampler(lengths, batch_size, num_buckets, train=train, seed=seed)
        sampler.set_epoch(1)
        batches = list(sampler)
        name = f"bucketed {stage}, {batch_size} turns, {num_buckets} buckets"
        elapsed = time.perf_counter() - start
        rows.append({**batch_stats(name, batches, lengths, accumulation if train else 1), "build_s": elapsed})
        sampler = bucketed_batch_sampler(dataset, limit, max_batch, num_buckets, train=train, seed=seed)
        sampler.set_epoch(1)
        name = f"duration {stage}, {max_batch:g} s, {num_buckets} buckets"
        rows.append(batch_stats(name, list(sampler), lengths, accumulation if train else 1))

    print(
        f"{args.turns} turns, mean {durations.mean():.2f} s, "
        f"p5/p50/p95 {np.percentile(durations, 5):.2f}/{np.median(durations):.2f}/"
        f"{np.percentile(durations, 95):.2f} s ({args.hparams}, grad_accumulation_factor {accumulation})"
    )
    print(
        "| batching | batches/epoch | optimizer steps/epoch | mean turns/batch | max padded s/batch "
        "| padded frames |"
    )
    print("|---|---:|---:|---:|---:|---:|")
    for row in rows:
        print(
            f"| {row['batching']} | {row['batches']} | {row['steps']} | {row['mean_size']:.1f} | "
            f"{row['max_padded_s']:.1f} | {100 * row['padding']:.1f} % |"
        )
    bucketed = rows[1]
    expected = -(-args.turns // (batch_size * accumulation))
    print(
        f"target <= 5 % padding with bucketed batches: {'met' if bucketed['padding'] <= 0.05 else 'NOT met'} "
        f"({100 * bucketed['padding']:.1f} %); optimizer steps/epoch {bucketed['steps']} "
        f"(ceil(turns / batch / accumulation) = {expected}); sampler built in {bucketed['build_s']:.2f} s"
    )


if __name__ == "__main__":
    main()
