#!/usr/bin/env python3
"""Train and evaluate one sub-system (A–E) of the LIA MSP-Podcast SER system.

Usage::

    python train.py hparams/system_d.yaml --data_folder /path/to/MSP-PODCAST-1.11
    python train.py hparams/system_a.yaml --profile hparams/profiles/demo.yaml   # mini corpus, tiny models
    torchrun --nproc_per_node=4 train.py hparams/system_c.yaml --data_folder ...

Runs the data stages (unless ``skip_prep``), logs what an epoch will be (turns,
optimizer steps, turns per batch, padding, global batch, trainable parameters
per optimizer group), trains with SpeechBrain (resumes by itself from the last
checkpoint), keeps the checkpoint with the best dev score (``selection_metric``:
macro-F1 or error rate; mean CCC for an attribute system), then writes to the
output folder: ``posteriors/valid.csv``, ``posteriors/test.csv`` (``FileName`` +
one probability per class of the YAML's ``classes``), for systems with
``attributes`` ``attributes/valid.csv``, ``attributes/test.csv``
(``FileName,EmoAct,EmoVal,EmoDom``), and ``metrics.json`` (dev); for each
labelled split of ``eval_splits`` that the corpus holds (``Test1`` -> ``test1``),
``posteriors/test1.csv`` (``attributes/test1.csv``) and ``metrics_test1.json``
in the same formats; and ``system.json``: who this system is (name, targets,
the kept checkpoint's fingerprint), which the fusion and ``ser.predict`` check.
"""

import dataclasses
import logging
import os
import sys
from pathlib import Path

import speechbrain as sb
import torch
from hyperpyyaml import load_hyperpyyaml

from data_prep.system_prep import prepare_system_data
from ser.cli import check_device, exit_with
from ser.io.system_folder import write_identity
from ser.nn.encoders import SPEECH_ENCODERS
from ser.nn.imbalance import balanced_sampler_for, class_counts, inverse_frequency_weights
from ser.nn.losses import JeffreysLoss
from ser.targets import Targets
from ser.training.batching import effective_lengths, loader_options
from ser.training.brain import EmotionBrain
from ser.training.datasets import epoch_dev_subset, make_dataset
from ser.training.evaluation_files import EvaluationFiles
from ser.training.overrides import OverrideError, merge_overrides, pop_profile
from ser.training.preemption import StopRequest, TrainingStopped
from ser.training.run_guard import RunLock, check_same_settings
from ser.training.run_summary import epoch_batches, format_training_summary, training_summary

logger = logging.getLogger(__name__)


def main(argv):
    profile, argv = pop_profile(argv)
    hparams_file, run_opts, cli_overrides = sb.parse_arguments(argv)
    check_device(run_opts["device"])
    sb.utils.distributed.ddp_init_group(run_opts)
    if run_opts["debug"] and int(os.environ.get("WORLD_SIZE", "1")) > 1:
        # In debug mode each process would checkpoint to its own temporary folder, and the
        # processes would then disagree on what to load: share the experiment's save folder.
        run_opts = dataclasses.replace(
            run_opts,
            debug_persistently=True,
            overridden_args=set(run_opts.overridden_args) | {"debug_persistently"},
        )
    # A profile may build models (cached): the main process first, then the others reuse them.
    merged = {}

    def resolve_overrides():
        merged["overrides"] = merge_overrides(hparams_file, profile, cli_overrides)

    sb.utils.distributed.run_on_main(resolve_overrides, post_func=resolve_overrides)
    overrides = merged["overrides"]
    with open(hparams_file) as stream:
        hparams = load_hyperpyyaml(stream, overrides)
    targets = Targets.from_hparams(hparams)
    _check_label_tools(hparams, targets)  # before any work
    if sb.utils.distributed.if_main_process():
        # A trained run only with its settings (checked first: it only reads, so a refused
        # command leaves the folder byte for byte as it was), and one writer per folder (held
        # until the process ends).
        check_same_settings(hparams["output_folder"], hparams_file, overrides)
        run_lock = RunLock(hparams["output_folder"])  # noqa: F841 - released when the process ends
    sb.create_experiment_directory(
        experiment_directory=hparams["output_folder"],
        hyperparams_to_save=hparams_file,
        overrides=overrides,
    )
    manifests = {}
    sb.utils.distributed.run_on_main(
        lambda: manifests.update(prepare_system_data(hparams)),
        post_func=lambda: manifests.update(prepare_system_data({**hparams, "skip_prep": True})),
    )

    options = {
        "with_text": hparams["model"].uses_text,
        "max_duration": hparams["max_duration"],
        "eval_max_duration": hparams["eval_max_duration"],
        "classes": targets.classes,
        "attributes": targets.attributes,
    }
    soft = bool(hparams.get("soft_labels", False))
    datasets = {
        name: make_dataset(path, train=(name == "train"), soft_labels=soft and name == "train", **options)
        for name, path in manifests.items()
    }
    _set_auto_class_weights(hparams, manifests["train"], targets)
    brain = EmotionBrain(
        modules=hparams["modules"],
        hparams=hparams,
        run_opts=run_opts,
        checkpointer=hparams["checkpointer"],
    )
    # Bucketed, duration-capped or random batches (YAML "Batching" section).
    loaders = {name: loader_options(data, hparams, name == "train") for name, data in datasets.items()}
    if hparams.get("balanced_sampler", False):
        loaders["train"] = _balanced(loaders["train"], datasets["train"], hparams, targets)
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    log_training_summary(brain, hparams, datasets["train"], loaders["train"], world_size)
    if world_size > 1 and any(
        isinstance(module, SPEECH_ENCODERS) and module.layerdrop > 0 for module in hparams["model"].modules()
    ):
        # A layer skipped by layerdrop gets no gradient in that step: DDP must look for it.
        brain.find_unused_parameters = True
    # Pre-emption (SLURM, torchrun forwarding SIGTERM): checkpoint after the current step and stop.
    brain.stop_request = StopRequest.install()
    epoch_dev = epoch_dev_subset(datasets["valid"], hparams.get("epoch_dev_turns"))
    if epoch_dev is not datasets["valid"]:
        logger.info("Each epoch is scored on %d of the %d dev turns (epoch_dev_turns); the dev "
                    "metrics at the end on all of them", len(epoch_dev), len(datasets["valid"]))
    try:
        brain.fit(
            brain.hparams.epoch_counter,
            datasets["train"],
            epoch_dev,
            train_loader_kwargs=loaders["train"],
            valid_loader_kwargs=loader_options(epoch_dev, hparams, False),
        )
    except TrainingStopped as stopped:  # not an error: the requeued job resumes from the checkpoint
        print(f"train.py: {stopped}", file=sys.stderr)
        return stopped.exit_code

    output = Path(hparams["output_folder"])
    # Dev (metrics.json), the challenge test set (posteriors only), then each labelled
    # evaluation split (metrics_<name>.json).
    for name in datasets:
        if name != "train":
            files = EvaluationFiles.for_split(output, name)
            brain.evaluate(datasets[name], files, test_loader_kwargs=loaders[name])
    if sb.utils.distributed.if_main_process():
        # Each target's class order (Task 2 attributes: their column order).
        declared = {"classes": list(targets.classes), "attributes": list(targets.attributes)}
        write_identity(output, Path(hparams_file).stem, declared, brain.evaluated_checkpoint.path)
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        # Every process reaches here together; a gloo group left to the interpreter's exit can
        # abort a process in its C++ teardown ("terminate called without an active exception").
        torch.distributed.barrier()
        torch.distributed.destroy_process_group()


def _set_auto_class_weights(hparams, train_manifest, targets):
    """``class_weights: auto``: the official baseline's N / (K N_c) from the training manifest."""
    cost = hparams.get("compute_cost")
    if targets.classes and getattr(cost, "auto_weights", False):
        weights = inverse_frequency_weights(class_counts(train_manifest, targets.classes))
        cost.set_class_weights(weights)
        logger.info("class weights (N / (K N_c)) %s", dict(zip(targets.classes, weights, strict=True)))


def _check_label_tools(hparams, targets):
    """Combinations of the imbalance / label options that cannot work, as one clear line."""
    weights = getattr(hparams.get("compute_cost"), "class_weights", None)
    if weights is not None and targets.classes and weights.numel() != len(targets.classes):
        raise OverrideError(f"class_weights: {weights.numel()} weights for {len(targets.classes)} "
                            f"classes ({' '.join(targets.classes)}): give one per class, in that order")
    if hparams.get("balanced_sampler", False):
        if hparams.get("batching", "random") != "random":
            raise OverrideError("balanced_sampler: True needs batching: random (length buckets "
                                "decide the batch order themselves)")
        if not targets.classes:
            raise OverrideError("balanced_sampler: True needs classes (an attribute system has none)")
    if hparams.get("soft_labels", False) and (
        not targets.classes or isinstance(hparams["compute_cost"], JeffreysLoss)
    ):
        raise OverrideError("soft_labels: True needs classes and loss nll or focal (the Jeffreys loss "
                            "takes class indices)")


def _balanced(options, dataset, hparams, targets):
    """Training loader options with the class-balanced sampler in place of shuffling."""
    options = {key: value for key, value in options.items() if key != "shuffle"}
    options["sampler"] = balanced_sampler_for(dataset, targets.classes, seed=int(hparams["seed"]))
    return options


def log_training_summary(brain, hparams, train_set, train_loader, world_size):
    """Log (console and log.txt) what an epoch will be, before training starts."""
    limit = hparams["max_duration"]
    batches = epoch_batches(train_loader, train_set, limit, seed=int(hparams["seed"]))
    accumulation = int(brain.grad_accumulation_factor)
    summary = training_summary(
        batches,
        effective_lengths(train_set, limit),
        world_size=world_size,
        grad_accumulation=accumulation,
        optimizer_groups={name: group["modules"] for name, group in hparams["optimizers"].items()},
        model=hparams["model"],
    )
    batching = hparams.get("batching", "random")
    for line in format_training_summary(summary, batching, world_size, accumulation).splitlines():
        logger.info(line)


if __name__ == "__main__":
    # Bad input (an override, a model that is not available offline, a corpus problem, an output
    # folder that is read-only or full) ends in one line naming the key or path (ser.cli).
    exit_with("train.py", main, interrupted="the checkpoints saved so far are kept in the save folder; "
              "run the same command again to resume from the last one")
