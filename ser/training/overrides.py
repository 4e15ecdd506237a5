"""Command-line plumbing of ``train.py``: profiles and overrides.

A *profile* is a YAML file of overrides shared by every system (e.g.
``hparams/profiles/demo.yaml``: tiny local models, the mini corpus, fewer
epochs). It is loaded with HyperPyYAML, so it may build what it points to
(``!apply:``). Only the keys that the system file defines are applied —
system A has no text encoder, so the profile's ``text_hub`` does not concern
it — and command-line overrides win over the profile.

Command-line overrides are checked before anything is built (:func:`check_overrides`): an
unknown key, a value of the wrong type (``--batch_size=abc``) or out of its range
(``--number_of_epochs=0``, which would report an untrained model; ``--max_duration=0``, which
would silently disable cropping) is an :class:`OverrideError` naming the key, the YAML file and
what is expected, instead of a traceback from deep inside training or a silent wrong result.
"""

import difflib
import os
import re

import yaml
from hyperpyyaml import load_hyperpyyaml

from ser.errors import UserInputError

_TOP_LEVEL_KEY = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)\s*:", re.MULTILINE)
_FLOAT_TEXT = re.compile(r"^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$")


class OverrideError(UserInputError, ValueError):
    """A command-line override the hparams file cannot take (names the key and the file)."""


class _Tagged:
    """A HyperPyYAML value (``!ref``, ``!new:``, ``!PLACEHOLDER`` ...): its type is known only once built."""


class _TagTolerantLoader(yaml.SafeLoader):
    """Reads HyperPyYAML text as plain YAML, every tagged value becoming a :class:`_Tagged`."""


_TagTolerantLoader.add_multi_constructor("!", lambda loader, suffix, node: _Tagged())


def plain_values(yaml_text):
    """Top-level values of a HyperPyYAML text, read without building anything.

    Tagged values (``!ref``, ``!new:`` ...) are :class:`_Tagged` (their type is known only
    once built); a text that is not valid YAML gives ``{}``.

    Example
    -------
    >>> values = plain_values("seed: 1993\\nlr: !ref <seed> * 2\\n")
    >>> values["seed"], type(values["lr"]).__name__
    (1993, '_Tagged')
    """
    try:
        values = yaml.load(yaml_text, Loader=_TagTolerantLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError:
        return {}  # load_hyperpyyaml reports a broken file better than this check could
    return values if isinstance(values, dict) else {}


def _expected_type(example):
    """What a value must be to replace ``example``: a name, and a test (None: anything goes)."""
    if example is None or isinstance(example, _Tagged):
        return None, None
    if isinstance(example, bool):
        return "true or false", lambda v: isinstance(v, bool)
    if isinstance(example, int):
        return "an integer", lambda v: isinstance(v, int) and not isinstance(v, bool)
    if isinstance(example, float):  # an integer widens to a float
        return "a number", lambda v: isinstance(v, (int, float)) and not isinstance(v, bool)
    if isinstance(example, str):
        return "a string", lambda v: isinstance(v, str)
    if isinstance(example, list):
        return "a list", lambda v: isinstance(v, list)
    if isinstance(example, dict):
        return "a mapping", lambda v: isinstance(v, dict)
    return None, None


# Ranges of numeric settings, by key: (test of the key, test of the value, what is expected).
# One table for every system: the keys mean the same thing in each YAML.
_RANGES = (
    (lambda key: key in ("number_of_epochs", "batch_size", "max_batch_size", "num_buckets",
                            "epoch_dev_turns"),
     lambda v: v >= 1, "at least 1"),
    (lambda key: key == "num_workers" or key.startswith("ckpt_interval"), lambda v: v >= 0, "0 or more"),
    (lambda key: key.startswith("lr_") or key == "lr" or key.endswith("duration"),
     lambda v: 0 < v < float("inf"), "a finite number above 0"),
    (lambda key: key.endswith("threshold") or key.endswith("factor") or key.startswith("jeffreys_"),
     lambda v: 0 <= v <= 1, "between 0 and 1"),
)


def _check_range(key, value, source):
    """An :class:`OverrideError` when a number is outside the range its key allows."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return
    for applies, fits, expected in _RANGES:
        if applies(key) and not fits(value):
            raise OverrideError(f"--{key}={value}: {key} must be {expected} (in {source})")


def _coerce(value, example):
    """Fix what PyYAML reads differently from HyperPyYAML, and numbers given for strings.

    PyYAML (YAML 1.1) reads ``1e-5`` as a string, HyperPyYAML (YAML 1.2) as a float; a folder
    may be called ``2024``.
    """
    if isinstance(example, float) and isinstance(value, str) and _FLOAT_TEXT.match(value.strip()):
        return float(value)
    if isinstance(example, str) and isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    return value


def pop_profile(argv):
    """Remove ``--profile PATH`` (or ``--profile=PATH``) from an argument list.

    Returns
    -------
    (str or None, list)
        The profile path and the remaining arguments.

    Example
    -------
    >>> pop_profile(["h.yaml", "--profile", "demo.yaml", "--seed=3"])
    ('demo.yaml', ['h.yaml', '--seed=3'])
    """
    rest, profile, args = [], None, iter(argv)
    for arg in args:
        if arg == "--profile":
            profile = next(args, None)
            if profile is None:
                raise OverrideError("--profile needs a path")
        elif arg.startswith("--profile="):
            profile = arg.split("=", 1)[1]
        else:
            rest.append(arg)
    return profile, rest


def top_level_keys(yaml_text):
    """Keys defined at the top level of a YAML text.

    Example
    -------
    >>> sorted(top_level_keys("a: 1\\nb:\\n  c: 2\\n"))
    ['a', 'b']
    """
    return set(_TOP_LEVEL_KEY.findall(yaml_text))


def check_overrides(overrides, hparams_file, profile=None):
    r"""Check command-line overrides against the hparams file (and profile) before building anything.

    A key must be a top-level key of ``hparams_file`` or of ``profile``; its value must be in
    the range its key allows (epochs, batch sizes and bucket counts ≥ 1, worker counts ≥ 0,
    learning rates and durations > 0, thresholds and factors in [0, 1]) and have the
    type of the value it replaces: an integer for an integer, a number (integer or float) for a
    float, true/false for a boolean, a string, a list or a mapping likewise. ``null`` is always
    accepted, and so is anything for a value the file builds or leaves to the user (``!ref``,
    ``!new:``, ``!PLACEHOLDER``) or sets to ``null``.

    Parameters
    ----------
    overrides : dict
        Key → value, as YAML read them.
    hparams_file : str
    profile : str, optional

    Returns
    -------
    dict
        The overrides, with ``1e-5`` given for a float read as a float and a number given for a
        string turned into a string.

    Raises
    ------
    OverrideError
        Naming the key, the file, the expected type and the value given.

    Example
    -------
    >>> import tempfile, os
    >>> system = os.path.join(tempfile.mkdtemp(), "system.yaml")
    >>> _ = open(system, "w").write("batch_size: 4\nlr: 0.001\nout: !ref <batch_size>\n")
    >>> check_overrides({"batch_size": 8, "lr": "1e-4", "out": 3}, system)
    {'batch_size': 8, 'lr': 0.0001, 'out': 3}
    >>> check_overrides({"batch_size": 2.5}, system)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ser.training.overrides.OverrideError: --batch_size=2.5: ... sets batch_size to an integer (4); got a float
    >>> check_overrides({"batchsize": 8}, system)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ser.training.overrides.OverrideError: --batchsize: unknown key: ... (did you mean batch_size?)
    >>> check_overrides({"batch_size": 0}, system)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ser.training.overrides.OverrideError: --batch_size=0: batch_size must be at least 1 (in ...system.yaml)
    """
    examples, sources = {}, {}
    for path in (profile, hparams_file):  # the system file's value wins over the profile's
        if path:
            with open(path) as stream:
                text = stream.read()
            values = {key: _Tagged() for key in top_level_keys(text)} | plain_values(text)
            examples.update(values)
            sources.update(dict.fromkeys(values, path))
    checked = {}
    for key, value in overrides.items():
        if key not in examples:
            files = (
                f"neither {hparams_file} nor the profile {profile} has"
                if profile
                else f"{hparams_file} has no"
            )
            near = difflib.get_close_matches(key, list(examples), n=1)
            hint = f" (did you mean {near[0]}?)" if near else ""
            raise OverrideError(f"--{key}: unknown key: {files} a top-level key {key}{hint}")
        example = examples[key]
        value = _coerce(value, example)
        name, fits = _expected_type(example)
        if value is not None and fits is not None and not fits(value):
            raise OverrideError(
                f"--{key}={value}: {sources[key]} sets {key} to {name} ({example!r}); got {_type_name(value)}"
            )
        _check_range(key, value, sources[key])
        checked[key] = value
    return checked


def _type_name(value):
    names = {
        bool: "a boolean",
        int: "an integer",
        float: "a float",
        str: "a string",
        list: "a list",
        dict: "a mapping",
    }
    return names.get(type(value), type(value).__name__)


def merge_overrides(hparams_file, profile=None, cli_overrides=""):
    r"""The overrides (a YAML string) for ``load_hyperpyyaml``.

    Parameters
    ----------
    hparams_file : str
        The system YAML (only its top-level keys are read).
    profile : str, optional
        A profile YAML; its values that the system defines are applied.
    cli_overrides : str or dict
        Overrides from the command line. They win over the profile: one that
        names a key of the profile replaces it before the profile is evaluated
        (so ``--tiny_models_folder`` moves what the profile builds, and a model the
        profile would build for an overridden key is not built). They are checked
        by :func:`check_overrides` (unknown key or wrong type: :class:`OverrideError`).

    Returns
    -------
    str
        YAML text.

    Example
    -------
    >>> import tempfile, os
    >>> folder = tempfile.mkdtemp()
    >>> system = os.path.join(folder, "system.yaml")
    >>> _ = open(system, "w").write("lr: 0.1\nepochs: 2\n")
    >>> profile = os.path.join(folder, "profile.yaml")
    >>> _ = open(profile, "w").write("scale: 3\nlr: !ref <scale> * 0.01\nother: 1\n")
    >>> print(merge_overrides(system, profile, "epochs: 5\nscale: 10"))
    epochs: 5
    lr: 0.1
    <BLANKLINE>
    >>> _ = open(profile, "w").write("lr: !apply:builtins.open [/no/such/model]\n")
    >>> merge_overrides(system, profile, {"lr": 0.5})  # the profile's lr is never evaluated
    'lr: 0.5\n'
    """
    with open(hparams_file) as stream:
        system_keys = top_level_keys(stream.read())
    cli = cli_overrides or {}
    if isinstance(cli, str):
        cli = yaml.safe_load(cli) or {}
    cli = check_overrides(cli, hparams_file, profile)
    merged = {}
    if profile:
        with open(profile) as stream:
            profile_text = stream.read()
        in_profile = top_level_keys(profile_text)
        # Every override the profile holds replaces its value before the profile is evaluated:
        # what the profile would build for that key (a converted model) is then not built.
        given = {key: value for key, value in cli.items() if key in in_profile}
        cli = {key: value for key, value in cli.items() if key not in in_profile - system_keys}
        values = load_hyperpyyaml(profile_text, overrides=given or None)
        merged.update({key: _plain(value) for key, value in values.items() if key in system_keys})
    merged.update(cli)
    return yaml.safe_dump(merged, sort_keys=True) if merged else ""


def _plain(value):
    """Paths (e.g. of models a profile built) become strings YAML can hold."""
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    return value
