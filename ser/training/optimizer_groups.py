"""The YAML's ``optimizers``: one optimizer per named group of modules, every parameter in one group."""

from ser.errors import UserInputError
from ser.training.run_summary import trainable_parameters


class OptimizerGroupsError(UserInputError, ValueError):
    """Optimizer groups that share parameters, or trainable parameters in no group."""


def group_parameters(groups, model):
    """The trainable parameters of each group of ``groups`` (``{name: {"modules": [...], ...}}``).

    Every trainable parameter of ``model`` must belong to exactly one group, so a YAML
    edit that forgets a module fails loudly instead of freezing it silently.

    Example
    -------
    >>> import torch
    >>> model = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Linear(2, 1))
    >>> groups = {"first": {"modules": [model[0]]}, "second": {"modules": [model[1]]}}
    >>> {name: len(params) for name, params in group_parameters(groups, model).items()}
    {'first': 2, 'second': 2}
    >>> group_parameters({"first": {"modules": [model[0]]}}, model)
    Traceback (most recent call last):
    ...
    ser.training.optimizer_groups.OptimizerGroupsError: trainable parameters in no optimizer group: ...
    """
    owner, grouped = {}, {}
    for name, group in groups.items():
        grouped[name] = trainable_parameters(group["modules"])
        for param in grouped[name]:
            if id(param) in owner:
                shared = f"optimizer groups {owner[id(param)]!r} and {name!r} share parameters"
                raise OptimizerGroupsError(shared)
            owner[id(param)] = name
    orphans = [n for n, p in model.named_parameters() if p.requires_grad and id(p) not in owner]
    if orphans:
        raise OptimizerGroupsError(f"trainable parameters in no optimizer group: {orphans[:5]}")
    return grouped
