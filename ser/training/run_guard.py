"""What guards a run folder before ``train.py`` writes in it: one writer, the run's own settings.

* :class:`RunLock` -- one ``train.py`` per output folder. The lock is an ``flock`` on
  ``<output>/.train.lock``, which the system drops when the process ends however it ends, so a
  killed run leaves nothing stuck; a second writer is refused at once, naming the holder's pid.
* :func:`check_same_settings` -- a folder that already holds a trained run (a checkpoint or
  ``system.json``) resumes or re-evaluates only with the settings it was trained with; other
  settings are refused with the differing keys named (use another ``--output_folder`` for a new
  run). Keys in :data:`RUN_ONLY_KEYS` (where files are, how many loader workers) do not change the
  model and do not count.
"""

import fcntl
import os
from pathlib import Path

import ruamel.yaml
from hyperpyyaml import resolve_references

from ser.errors import UserInputError
from ser.io.system_folder import CHECKPOINTS_DIR, HPARAMS_FILE, IDENTITY_FILE

__all__ = ["RUN_ONLY_KEYS", "RunFolderBusyError", "RunSettingsError", "RunLock", "changed_settings",
           "check_same_settings"]

LOCK_FILE = ".train.lock"
#: Settings that say where files are or how fast they load, not what is trained.
RUN_ONLY_KEYS = frozenset({
    "data_folder", "results_folder", "output_folder", "save_folder", "manifest_folder", "train_log",
    "tensorboard_folder", "use_tensorboard", "num_workers", "skip_prep", "tiny_models_folder",
    "model_cache", "whisper_folder", "eval_splits",
})


class RunFolderBusyError(UserInputError, RuntimeError):
    """Another ``train.py`` holds the output folder."""


class RunSettingsError(UserInputError, ValueError):
    """The output folder holds a run trained with other settings."""


class RunLock:
    """Hold ``<folder>/.train.lock`` for as long as this object lives (until :meth:`release`).

    Example
    -------
    >>> import tempfile
    >>> folder = tempfile.mkdtemp()
    >>> first = RunLock(folder)
    >>> RunLock(folder)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ser.training.run_guard.RunFolderBusyError: ...: another train.py (pid ...) is writing this folder; ...
    >>> first.release()
    >>> RunLock(folder).release()
    """

    def __init__(self, folder):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.folder / LOCK_FILE
        self._fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(self._fd, 32, 0).decode(errors="replace").strip() or "unknown"
            os.close(self._fd)
            raise RunFolderBusyError(
                f"{self.folder}: another train.py (pid {holder}) is writing this folder; wait for it to "
                "end, or give this run another --output_folder"
            ) from None
        os.ftruncate(self._fd, 0)
        os.pwrite(self._fd, f"{os.getpid()}\n".encode(), 0)

    def release(self):
        if self._fd is not None:
            os.close(self._fd)  # closing drops the flock
            self._fd = None


def _plain(node):
    """A YAML node without comments: mappings, lists and scalars, tags kept as ``(tag, value)``."""
    tag = getattr(node, "tag", None)
    tag = getattr(tag, "value", tag)
    if isinstance(node, dict):
        value = {str(key): _plain(item) for key, item in node.items()}
    elif isinstance(node, list):
        value = [_plain(item) for item in node]
    else:
        value = getattr(node, "value", node)
    return (tag, value) if isinstance(tag, str) and tag.startswith("!") else value


def _load(text):
    return _plain(ruamel.yaml.YAML().load(text)) or {}


def changed_settings(saved_text, hparams_file, overrides):
    """Top-level keys whose value differs between a saved run and this command, with both values.

    Keys of :data:`RUN_ONLY_KEYS` take the saved values first, so paths built from them (the
    checkpointer's folder, the log file) do not count either.

    Parameters
    ----------
    saved_text : str
        The run's ``hyperparams.yaml`` (references resolved, as ``train.py`` saves it).
    hparams_file : str or Path
        The system's YAML given now.
    overrides : str or dict
        This command's overrides (profile and command line, as merged).

    Returns
    -------
    list of (str, object, object)
        ``(key, saved value, new value)``, sorted by key.

    Example
    -------
    >>> import tempfile, os
    >>> system = os.path.join(tempfile.mkdtemp(), "system.yaml")
    >>> _ = open(system, "w").write("lr: 0.1\\nnum_workers: 2\\nlog: !ref <out>/log.txt\\nout: /r/1\\n")
    >>> changed_settings("lr: 0.1\\nnum_workers: 2\\nlog: /r/1/log.txt\\nout: /r/1\\n", system,
    ...                  {"lr": 0.05, "num_workers": 8})
    [('lr', 0.1, 0.05)]
    """
    saved = _load(saved_text)
    if isinstance(overrides, str):
        overrides = ruamel.yaml.YAML(typ="safe").load(overrides) or {}
    pinned = {key: saved[key] for key in RUN_ONLY_KEYS
              if key in saved and not isinstance(saved[key], (dict, list, tuple))}
    with open(hparams_file, encoding="utf-8") as stream:
        current = _load(resolve_references(stream, {**(overrides or {}), **pinned}).getvalue())
    keys = sorted((set(saved) | set(current)) - RUN_ONLY_KEYS)
    return [(key, saved.get(key), current.get(key)) for key in keys if saved.get(key) != current.get(key)]


def _short(value, limit=60):
    text = repr(value[1] if isinstance(value, tuple) and len(value) == 2 else value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def check_same_settings(output_folder, hparams_file, overrides):
    """Refuse to resume a trained run in ``output_folder`` with other settings than its own.

    A folder holds a trained run when it has a checkpoint or a ``system.json``; a folder without
    one (new, or a run killed before its first checkpoint) takes any settings.

    Raises
    ------
    RunSettingsError
        Naming the folder's ``hyperparams.yaml`` and each differing key, with both values.
    """
    folder = Path(output_folder)
    trained = (folder / IDENTITY_FILE).is_file() or any((folder / CHECKPOINTS_DIR).glob("CKPT+*"))
    saved_path = folder / HPARAMS_FILE
    if not trained:
        return
    try:
        saved_text = saved_path.read_text(encoding="utf-8")
        changes = changed_settings(saved_text, hparams_file, overrides)
    except (OSError, UnicodeDecodeError, ruamel.yaml.YAMLError) as error:
        raise RunSettingsError(
            f"{saved_path}: unreadable ({type(error).__name__}), so the settings this folder was trained "
            "with are unknown; give this run another --output_folder"
        ) from None
    if changes:
        # A scalar given differently (lr_head) also changes what refers to it (optimizers): name the cause.
        scalars = [change for change in changes if not isinstance(change[1], (dict, list, tuple))]
        changes = scalars or changes
        listed = "; ".join(f"{key}: {_short(old)} there, {_short(new)} now" for key, old, new in changes[:6])
        more = f" (and {len(changes) - 6} more)" if len(changes) > 6 else ""
        raise RunSettingsError(
            f"{saved_path}: this folder holds a run trained with other settings ({listed}{more}); "
            "re-run with its settings to resume or evaluate it, or give the new run another --output_folder"
        )
