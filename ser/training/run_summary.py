"""What a training run will do, stated before it starts: batches, steps, batch size, parameters.

``train.py`` logs :func:`training_summary` (console and the experiment's ``log.txt``) so
that the number of optimizer steps per epoch and the global batch — what the learning rates
were tuned for — can be compared with the paper's (A: batches of 16) before any GPU hour
is spent, and so that a frozen part that is not frozen (or the reverse) shows at once.
"""

import math

import numpy as np

from ser.training.batching import padded_fraction


def epoch_batches(loader_kwargs, dataset, limit, seed, epoch=1):
    """The batches (lists of dataset indices) of one training epoch.

    With a batch sampler (``bucketed``, ``duration``) they are the sampler's
    batches for ``epoch``; with fixed random batches (``random``) a random
    permutation cut into ``batch_size`` pieces, which pads like the loader's.

    Example
    -------
    >>> from speechbrain.dataio.dataset import DynamicItemDataset
    >>> data = DynamicItemDataset({f"u{i}": {"duration": 1.0 + i} for i in range(10)})
    >>> [len(b) for b in epoch_batches({"batch_size": 4, "shuffle": True}, data, 12.0, seed=0)]
    [4, 4, 2]
    """
    sampler = loader_kwargs.get("batch_sampler")
    if sampler is not None:
        if hasattr(sampler, "set_epoch"):
            sampler.set_epoch(epoch)
        return [list(batch) for batch in sampler]
    batch_size = int(loader_kwargs.get("batch_size", 1))
    order = np.random.default_rng(seed + epoch).permutation(len(dataset))
    return [order[i : i + batch_size].tolist() for i in range(0, len(order), batch_size)]


def trainable_parameters(modules):
    """The parameters of ``modules`` that require a gradient (each once).

    Example
    -------
    >>> import torch
    >>> frozen, trained = torch.nn.Linear(2, 2), torch.nn.Linear(2, 3, bias=False)
    >>> frozen.requires_grad_(False)  # doctest: +ELLIPSIS
    Linear(...)
    >>> sum(p.numel() for p in trainable_parameters([frozen, trained, trained]))
    6
    """
    seen, params = set(), []
    for module in modules:
        for param in module.parameters():
            if param.requires_grad and id(param) not in seen:
                seen.add(id(param))
                params.append(param)
    return params


def training_summary(batches, lengths, world_size, grad_accumulation, optimizer_groups, model):
    """Figures of a training epoch and of the optimizer groups.

    Parameters
    ----------
    batches : list of list of int
        The batches of one epoch over the whole training set (all processes).
    lengths : sequence of float
        Effective length (s) of each training turn.
    world_size : int
        Number of DDP processes (each gets ``1 / world_size`` of the batches).
    grad_accumulation : int
        Batches per optimizer step (SpeechBrain's ``grad_accumulation_factor``).
    optimizer_groups : dict
        Name → modules of each optimizer group (``hparams["optimizers"]``).
    model : torch.nn.Module
        The whole model (for the frozen parameter count).

    Returns
    -------
    dict
        ``turns``, ``batches``, ``batches_per_process``, ``steps_per_epoch`` (optimizer
        steps of each process), ``mean_turns_per_batch``, ``padded_fraction``,
        ``global_batch`` (mean turns per batch x processes x accumulation),
        ``trainable_parameters`` (group → count) and ``frozen_parameters``.

    Example
    -------
    >>> import torch
    >>> model = torch.nn.Linear(4, 8, bias=False)
    >>> summary = training_summary([[0, 1], [2, 3], [4]], [2.0, 2.0, 3.0, 1.0, 5.0],
    ...                            world_size=2, grad_accumulation=1,
    ...                            optimizer_groups={"head": [model]}, model=model)
    >>> summary["steps_per_epoch"], round(summary["global_batch"], 2), round(summary["padded_fraction"], 3)
    (2, 3.33, 0.133)
    """
    turns = sum(len(batch) for batch in batches)
    per_process = math.ceil(len(batches) / world_size)
    mean_size = turns / len(batches)
    trainable = {
        name: sum(p.numel() for p in trainable_parameters(modules))
        for name, modules in optimizer_groups.items()
    }
    frozen = sum(p.numel() for p in model.parameters() if not p.requires_grad)
    return {
        "turns": turns,
        "batches": len(batches),
        "batches_per_process": per_process,
        "steps_per_epoch": math.ceil(per_process / grad_accumulation),
        "mean_turns_per_batch": mean_size,
        "padded_fraction": padded_fraction(batches, lengths),
        "global_batch": mean_size * world_size * grad_accumulation,
        "trainable_parameters": trainable,
        "frozen_parameters": frozen,
    }


def format_training_summary(summary, batching, world_size, grad_accumulation):
    """The summary as a few log lines.

    Example
    -------
    >>> summary = {"turns": 100, "batches": 7, "batches_per_process": 7, "steps_per_epoch": 7,
    ...            "mean_turns_per_batch": 14.3, "padded_fraction": 0.02, "global_batch": 14.3,
    ...            "trainable_parameters": {"speech": 1000, "head": 8}, "frozen_parameters": 5}
    >>> print(format_training_summary(summary, "bucketed", 1, 1))
    Training: 100 turns, 7 batches per epoch (bucketed), 14.3 turns per batch on average, 2.0 % padded frames
    Optimizer steps per epoch: 7 per process; global batch 14.3 = 14.3 turns x 1 process(es) x 1 accumulated
    Trainable parameters: speech 1,000 · head 8 (total 1,008; frozen 5)
    """
    groups = " · ".join(f"{name} {count:,}" for name, count in summary["trainable_parameters"].items())
    total = sum(summary["trainable_parameters"].values())
    return "\n".join(
        [
            f"Training: {summary['turns']} turns, {summary['batches']} batches per epoch ({batching}), "
            f"{summary['mean_turns_per_batch']:.1f} turns per batch on average, "
            f"{100 * summary['padded_fraction']:.1f} % padded frames",
            f"Optimizer steps per epoch: {summary['steps_per_epoch']} per process; global batch "
            f"{summary['global_batch']:.1f} = {summary['mean_turns_per_batch']:.1f} turns x "
            f"{world_size} process(es) x {grad_accumulation} accumulated",
            f"Trainable parameters: {groups} (total {total:,}; frozen {summary['frozen_parameters']:,})",
        ]
    )
