"""Command-line plumbing of ``train.py``: profiles and overrides.

A *profile* is a YAML file of overrides shared by every system (e.g.
``hparams/profiles/demo.yaml``: tiny local models, the mini corpus, fewer
epochs). It is loaded with HyperPyYAML, so it may build what it points to
(``!apply:``). Only the keys that the system file defines are applied —
system A has no text encoder, so the profile's ``text_hub`` does not concern
it — and command-line overrides win over the profile.
"""

import os
import re

import yaml
from hyperpyyaml import load_hyperpyyaml

_TOP_LEVEL_KEY = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)\s*:", re.MULTILINE)


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
                raise ValueError("--profile needs a path")
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


def merge_overrides(hparams_file, profile=None, cli_overrides=""):
    r"""The overrides (a YAML string) for ``load_hyperpyyaml``.

    Parameters
    ----------
    hparams_file : str
        The system YAML (only its top-level keys are read).
    profile : str, optional
        A profile YAML; its values that the system defines are applied.
    cli_overrides : str or dict
        Overrides from the command line. They win over the profile; one that
        names a key of the profile only (e.g. ``tiny_models_folder``) is
        applied to the profile itself. Unknown keys are left in, so that
        ``load_hyperpyyaml`` rejects them.

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
    """
    with open(hparams_file) as stream:
        system_keys = top_level_keys(stream.read())
    cli = cli_overrides or {}
    if isinstance(cli, str):
        cli = yaml.safe_load(cli) or {}
    merged = {}
    if profile:
        with open(profile) as stream:
            profile_text = stream.read()
        profile_keys = top_level_keys(profile_text) - system_keys
        profile_only = {key: value for key, value in cli.items() if key in profile_keys}
        cli = {key: value for key, value in cli.items() if key not in profile_only}
        values = load_hyperpyyaml(profile_text, overrides=profile_only or None)
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
