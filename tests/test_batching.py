"""Batching (``ser.training.batching``: bucketed, duration, random), its use by train.py, benches."""

import sys
from pathlib import Path

import numpy as np
import pytest
from speechbrain.dataio.dataloader import SaveableDataLoader
from speechbrain.dataio.dataset import DynamicItemDataset

from ser.training.batching import (
    BatchingError,
    BucketedBatchSampler,
    bucketed_batch_sampler,
    effective_lengths,
    loader_options,
    padded_fraction,
)
from tests.conftest import run, train_command

ROOT = Path(__file__).resolve().parents[1]
MAX_BATCH_S = 60.0


def msp_like_dataset(n_turns=600, seed=0):
    """Turns of 2-14 s (some longer than the 12 s crop), ids in dataset order."""
    durations = np.random.default_rng(seed).uniform(2.0, 14.0, size=n_turns).round(2)
    return DynamicItemDataset({f"turn{i:04d}": {"duration": float(d)} for i, d in enumerate(durations)})


def sampler_for(dataset, epoch, limit=12.0, max_batch=MAX_BATCH_S, seed=1993, train=True):
    sampler = bucketed_batch_sampler(dataset, limit, max_batch, num_buckets=8, train=train, seed=seed)
    sampler.set_epoch(epoch)
    return sampler


def test_every_turn_once_per_epoch_and_batches_within_budget():
    dataset = msp_like_dataset()
    lengths = effective_lengths(dataset, 12.0)
    assert lengths.max() == 12.0  # the 12-14 s turns count as their crop
    for epoch in (1, 2):
        batches = list(sampler_for(dataset, epoch))
        flat = [index for batch in batches for index in batch]
        assert sorted(flat) == list(range(len(dataset)))
        for batch in batches:
            assert len(batch) * lengths[batch].max() <= MAX_BATCH_S


def test_a_turn_longer_than_the_budget_gets_a_batch_of_its_own():
    dataset = DynamicItemDataset({f"u{i}": {"duration": d} for i, d in enumerate([3.0] * 40 + [25.0, 3.0])})
    batches = list(sampler_for(dataset, 1, limit=30.0, max_batch=20.0))
    long_batch = [batch for batch in batches if 40 in batch]
    assert long_batch == [[40]]
    assert sorted(i for batch in batches for i in batch) == list(range(42))


def test_buckets_pad_less_than_fixed_random_batches():
    dataset = msp_like_dataset()
    lengths = effective_lengths(dataset, 12.0)
    order = np.random.default_rng(0).permutation(len(lengths))
    fixed = [order[i : i + 8] for i in range(0, len(order), 8)]
    bucketed = list(sampler_for(dataset, 1))
    assert padded_fraction(bucketed, lengths) < 0.10 < 0.25 < padded_fraction(fixed, lengths)


def test_batches_depend_only_on_seed_and_epoch():
    dataset = msp_like_dataset()
    first = list(sampler_for(dataset, 3))
    assert list(sampler_for(dataset, 3)) == first
    assert list(sampler_for(dataset, 4)) != first
    assert list(sampler_for(dataset, 3, seed=7)) != first
    # A sampler reused over epochs (Brain calls set_epoch) gives each epoch's own order.
    reused = sampler_for(dataset, 1)
    _ = list(reused)
    reused.set_epoch(3)
    assert list(reused) == first


def test_evaluation_batches_are_fixed_longest_first():
    dataset = msp_like_dataset()
    lengths = effective_lengths(dataset, 30.0)
    batches = list(sampler_for(dataset, 1, limit=30.0, train=False))
    assert list(sampler_for(dataset, 5, limit=30.0, train=False)) == batches
    longest = [lengths[batch].max() for batch in batches]
    assert longest == sorted(longest, reverse=True)


def test_resumed_epoch_skips_exactly_the_batches_already_done(tmp_path):
    """SaveableDataLoader's intra-epoch checkpoint + a fresh sampler give the rest of the same epoch."""
    dataset = msp_like_dataset()
    dataset.set_output_keys(["id"])
    whole = [batch["id"] for batch in SaveableDataLoader(dataset, batch_sampler=sampler_for(dataset, 2))]

    loader = SaveableDataLoader(dataset, batch_sampler=sampler_for(dataset, 2))
    iterator = iter(loader)
    done = [next(iterator)["id"] for _ in range(5)]
    loader._speechbrain_save(tmp_path / "loader.ckpt")

    # A new process: the sampler is built at epoch 0, then Brain.fit calls set_epoch(2).
    fresh = sampler_for(dataset, 0)
    resumed = SaveableDataLoader(dataset, batch_sampler=fresh)
    resumed._speechbrain_load(tmp_path / "loader.ckpt", end_of_epoch=False)
    fresh.set_epoch(2)
    rest = [batch["id"] for batch in resumed]
    assert done + rest == whole


def test_random_batches_stay_available():
    dataset = msp_like_dataset(50)
    hparams = {"batching": "random", "train_dataloader_opts": {"batch_size": 16, "shuffle": True}}
    assert loader_options(dataset, hparams, train=True) == {"batch_size": 16, "shuffle": True}


def test_an_unknown_batching_mode_is_a_clear_error():
    dataset = msp_like_dataset(50)
    hparams = {"batching": "dynamic", "train_dataloader_opts": {"batch_size": 16}}
    with pytest.raises(BatchingError, match="batching: 'dynamic' is not one of bucketed, duration, random"):
        loader_options(dataset, hparams, train=True)


def bucketed_for(dataset, epoch, batch_size=16, train=True, seed=1993, limit=12.0):
    sampler = BucketedBatchSampler(effective_lengths(dataset, limit), batch_size, 8, train=train, seed=seed)
    sampler.set_epoch(epoch)
    return sampler


def test_bucketed_batches_hold_batch_size_turns_each_turn_once():
    dataset = msp_like_dataset(601)
    for epoch in (1, 2):
        batches = list(bucketed_for(dataset, epoch))
        assert len(batches) == -(-601 // 16) == len(bucketed_for(dataset, epoch))
        assert sorted(len(batch) for batch in batches)[1:] == [16] * (len(batches) - 1)  # one partial
        assert sorted(i for batch in batches for i in batch) == list(range(601))


def test_bucketed_batches_pad_little_and_mix_turns_across_epochs():
    dataset = msp_like_dataset(2000)
    lengths = effective_lengths(dataset, 12.0)
    order = np.random.default_rng(0).permutation(len(lengths))
    fixed = [order[i : i + 16] for i in range(0, len(order), 16)]
    first, second = list(bucketed_for(dataset, 1)), list(bucketed_for(dataset, 2))
    assert padded_fraction(first, lengths) < 0.10 < 0.25 < padded_fraction(fixed, lengths)
    # The turns cropped to 12 s are equally long: their bucket-mates change between epochs.
    cropped = set(np.flatnonzero(lengths == 12.0).tolist())
    pairs = [
        {frozenset((a, b)) for batch in batches for a in batch for b in batch if a < b and {a, b} <= cropped}
        for batches in (first, second)
    ]
    assert pairs[0] and len(pairs[0] & pairs[1]) < len(pairs[0]) / 2


def test_bucketed_batches_depend_only_on_seed_and_epoch_and_resume():
    dataset = msp_like_dataset()
    first = list(bucketed_for(dataset, 3))
    assert list(bucketed_for(dataset, 3)) == first
    assert list(bucketed_for(dataset, 4)) != first
    assert list(bucketed_for(dataset, 3, seed=7)) != first
    evaluation = list(bucketed_for(dataset, 1, train=False, limit=30.0))
    assert evaluation == list(bucketed_for(dataset, 9, train=False, limit=30.0))
    lengths = effective_lengths(dataset, 30.0)
    longest = [lengths[batch].max() for batch in evaluation]
    assert longest == sorted(longest, reverse=True)


def test_missing_duration_is_a_clear_error():
    dataset = DynamicItemDataset({"good": {"duration": 3.0}, "bad": {"wav": "x.wav"}})
    with pytest.raises(ValueError, match="'bad'.*duration"):
        effective_lengths(dataset, 12.0)


def test_train_py_with_duration_batching(mini_corpus, tiny_models, tmp_path):
    command = train_command(
        "a",
        mini_corpus,
        tmp_path,
        tiny_models,
        "--debug",
        "--batching=duration",
        "--max_batch_duration=6.0",
    )
    done = run(command)
    assert "Duration batching:" in done.stdout + done.stderr
    assert "(duration)" in done.stdout + done.stderr  # the training summary names the mode
    assert (tmp_path / "system_a" / "1993" / "posteriors" / "test.csv").is_file()


def test_ddp_with_duration_batching(mini_corpus, tiny_models, tmp_path):
    # Brain wraps the batch sampler in DistributedSamplerWrapper: each process gets its share.
    torchrun = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node=2",
        "--standalone",  # torchrun binds a free port itself: no race for one picked here
    ]
    extra = ["--debug", "--distributed_backend=gloo", "--batching=duration", "--max_batch_duration=6.0"]
    command = train_command("a", mini_corpus, tmp_path, tiny_models, *extra)
    done = run(torchrun + command[1:], timeout=300)
    assert (tmp_path / "system_a" / "1993" / "posteriors" / "valid.csv").is_file(), done.stderr[-2000:]


def test_padding_bench_prints_its_table():
    done = run([sys.executable, "bench/padding.py", "--turns", "500"])
    assert "| random train, 16 turns | 32 | 32 |" in done.stdout
    assert "| bucketed train, 16 turns, 40 buckets | 32 | 32 | 15.6 |" in done.stdout
    assert "| duration train, 192 s" in done.stdout


def test_memory_estimate_prints_its_table():
    done = run([sys.executable, "bench/memory.py", "--skip_measure"])
    assert "ESTIMATE" in done.stdout and "| WavLM-large (A, B) | fp32 |" in done.stdout


def test_train_step_bench_runs_tiny(tiny_models):
    command = [
        sys.executable,
        "bench/train_step.py",
        "--turns",
        "8",
        "--repeats",
        "1",
        "--precisions",
        "fp32",
        f"--models_folder={tiny_models}",
    ]
    done = run(command)
    assert "| random | fp32 |" in done.stdout and "| bucketed | fp32 |" in done.stdout
    assert "| duration | fp32 |" in done.stdout


def test_memory_bench_measures_the_demo(mini_corpus, tiny_models):
    command = [
        sys.executable,
        "bench/memory.py",
        f"--data_folder={mini_corpus}",
        f"--models_folder={tiny_models}",
        "--epochs",
        "1",
    ]
    done = run(command)
    assert "| train.py system A" in done.stdout and "| ser.predict" in done.stdout
