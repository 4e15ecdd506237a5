"""Checkpoints that a kill can never leave half-written where they are loaded.

SpeechBrain's ``Checkpointer`` writes a checkpoint in place: it creates
``CKPT+<stamp>``, writes ``CKPT.yaml`` *first*, then one file per recoverable.
A process killed between the two leaves a folder that looks complete to
``find_checkpoints`` and that the next run tries to load (and crashes on, or
worse, loads a truncated model). :class:`AtomicCheckpointer` writes the whole
checkpoint into a staging folder whose name SpeechBrain does not recognise,
then renames it into place: a checkpoint is either whole or invisible.
Staging folders left by a kill are removed at the next save.

:class:`RandomState` is a recoverable holding the Python, NumPy and torch
random generators, so a run resumed from a checkpoint draws the same random
crops as the uninterrupted run would have.

:func:`dev_score_rank` orders checkpoints (the kept one, the evaluated one);
:func:`drop_epochs_after` trims the train log back to a resumed checkpoint;
:func:`epoch_loggers` are who log each epoch (train log, TensorBoard).
"""

import logging
import os
import pickle
import random
import re
import shutil
import time
from pathlib import Path

import numpy as np
import speechbrain as sb
import torch
import yaml
from speechbrain.utils.checkpoints import (
    CKPT_PREFIX,
    METAFNAME,
    Checkpoint,
    Checkpointer,
    mark_as_loader,
    mark_as_saver,
    register_checkpoint_hooks,
)

from ser.errors import UserInputError
from ser.io.atomic import atomic_write, write_error_code

logger = logging.getLogger(__name__)

STAGING_PREFIX = "staging+"


class CheckpointError(UserInputError):
    """A checkpoint that cannot be loaded (truncated, damaged), or none where one is needed."""


class AtomicCheckpointer(Checkpointer):
    """A SpeechBrain ``Checkpointer`` whose checkpoints appear atomically.

    Same arguments and behaviour as ``speechbrain.utils.checkpoints.Checkpointer``.

    Example
    -------
    >>> import tempfile, torch
    >>> folder = tempfile.mkdtemp()
    >>> checkpointer = AtomicCheckpointer(folder, {"layer": torch.nn.Linear(2, 2)})
    >>> ckpt = checkpointer.save_checkpoint(meta={"macro_f1": 0.5})
    >>> ckpt.path.name.startswith("CKPT+"), sorted(p.name for p in ckpt.path.iterdir())
    (True, ['CKPT.yaml', 'layer.ckpt'])
    >>> checkpointer.find_checkpoint().meta["macro_f1"]
    0.5
    """

    def save_checkpoint(self, meta={}, end_of_epoch=True, name=None, verbosity=logging.INFO):  # noqa: B006
        final_dir = None
        if sb.utils.distributed.if_main_process():
            self._remove_stale_staging()
            final_dir = (
                self._new_checkpoint_dirpath() if name is None else self._custom_checkpoint_dirpath(name)
            )
        final_dir = sb.utils.distributed.ddp_broadcast(final_dir, src=0)
        staging_dir = final_dir.with_name(STAGING_PREFIX + final_dir.name)
        # The parent class writes wherever its dirpath helpers point: point them at the staging folder.
        self._staging_target = staging_dir
        try:
            staged = super().save_checkpoint(
                meta=meta, end_of_epoch=end_of_epoch, name=None, verbosity=logging.DEBUG
            )
        except RuntimeError as error:
            # torch.save reports a full disk as a RuntimeError of its zip writer ("unexpected pos"),
            # without the OS error: told by the space left, looked at before the cleanup frees some.
            code = write_error_code(error, staging_dir)
            shutil.rmtree(staging_dir, ignore_errors=True)
            if code is not None:
                raise OSError(code, os.strerror(code), str(self.checkpoints_dir)) from error
            raise OSError(
                f"{self.checkpoints_dir}: could not write a checkpoint ({error}); is the disk full?"
            ) from error
        finally:
            self._staging_target = None
        sb.utils.distributed.ddp_barrier()  # every process has written its part
        checkpoint = None
        if sb.utils.distributed.if_main_process():
            _fsync_tree(staging_dir)
            os.replace(staging_dir, final_dir)
            logger.log(verbosity, "Saved a checkpoint in %s", final_dir)
            paramfiles = {key: final_dir / path.name for key, path in staged.paramfiles.items()}
            checkpoint = Checkpoint(final_dir, staged.meta, paramfiles)
        # Nobody lists the checkpoints (to delete old ones) before the rename: under DDP the
        # processes would disagree on what to delete and wait for each other forever.
        sb.utils.distributed.ddp_barrier()
        return checkpoint

    def list_checkpoints(self):
        """SpeechBrain's list; an unreadable, empty or malformed ``CKPT.yaml`` is a :class:`CheckpointError`.

        Example
        -------
        >>> import tempfile, torch
        >>> checkpointer = AtomicCheckpointer(tempfile.mkdtemp(), {"layer": torch.nn.Linear(2, 2)})
        >>> ckpt = checkpointer.save_checkpoint(meta={"macro_f1": 0.5})
        >>> _ = (ckpt.path / "CKPT.yaml").write_text("")
        >>> checkpointer.find_checkpoint()  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        ser.io.checkpoints.CheckpointError: .../CKPT.yaml: empty or not a mapping of checkpoint facts; ...
        """
        checkpoints = []
        for folder in self._list_checkpoint_dirs():
            meta_file = folder / METAFNAME
            advice = f"restore it, or delete {folder} to fall back on an earlier checkpoint"
            try:
                (checkpoint,) = self._construct_checkpoint_objects([folder])
            except (OSError, UnicodeDecodeError, yaml.YAMLError) as error:
                reason = " ".join(str(error).split())[:160]
                raise CheckpointError(f"{meta_file}: unreadable ({reason}); {advice}") from None
            if not isinstance(checkpoint.meta, dict):
                raise CheckpointError(f"{meta_file}: empty or not a mapping of checkpoint facts; {advice}")
            checkpoints.append(checkpoint)
        return checkpoints

    def load_checkpoint(self, checkpoint):
        """Load ``checkpoint``; a damaged file is a :class:`CheckpointError` naming its folder."""
        try:
            super().load_checkpoint(checkpoint)
        except (RuntimeError, EOFError, pickle.UnpicklingError, ValueError, KeyError) as error:
            raise CheckpointError(
                f"{checkpoint.path}: cannot load this checkpoint ({error}); it is damaged (a copy cut "
                "short?): restore it, or delete the folder to fall back on an earlier checkpoint"
            ) from error

    def _new_checkpoint_dirpath(self):
        target = getattr(self, "_staging_target", None)
        if target is not None:
            return target
        # A checkpoint saved within the same second must not reuse the name of one being staged.
        path = super()._new_checkpoint_dirpath()
        while path.with_name(STAGING_PREFIX + path.name).exists() or path.exists():
            time.sleep(0.01)
            path = super()._new_checkpoint_dirpath()
        return path

    def _remove_stale_staging(self):
        if not self.checkpoints_dir.is_dir():
            return
        for leftover in self.checkpoints_dir.glob(STAGING_PREFIX + CKPT_PREFIX + "*"):
            logger.warning("Removing %s: a checkpoint interrupted while being written", leftover)
            shutil.rmtree(leftover, ignore_errors=True)


def _fsync_tree(folder):
    # A rename is atomic for readers, but only data on disk survives a power cut.
    for path in folder.iterdir():
        with open(path, "rb") as stream:
            os.fsync(stream.fileno())


@register_checkpoint_hooks
class RandomState:
    """The Python, NumPy and torch (CPU and CUDA) random generators, as a recoverable.

    ``loader_generator`` is a generator of its own for the data loaders: a
    ``DataLoader`` draws a worker seed each time an epoch starts, and from the
    global generator that draw would land at a different place in a resumed
    run (after the checkpoint is loaded) than in the uninterrupted one.

    Example
    -------
    >>> import tempfile, pathlib, torch
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "rng.ckpt"
    >>> state = RandomState()
    >>> state.save(path)
    >>> first = torch.rand(3)
    >>> state.load(path)
    >>> bool((torch.rand(3) == first).all())
    True
    """

    def __init__(self):
        self.loader_generator = torch.Generator()
        # Derived from the experiment seed, which the YAML sets before building this.
        self.loader_generator.manual_seed(torch.initial_seed() + 1)

    @mark_as_saver
    def save(self, path):
        state = {
            "loader": self.loader_generator.get_state(),
            "python": random.getstate(),
            "numpy": np.random.get_state(),
            "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        }
        torch.save(state, path)

    @mark_as_loader
    def load(self, path, end_of_epoch=False):
        state = torch.load(path, weights_only=False)
        self.loader_generator.set_state(state["loader"])
        random.setstate(state["python"])
        np.random.set_state(state["numpy"])
        torch.set_rng_state(state["torch"])
        if state["cuda"] and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(state["cuda"])


def dev_score_rank(checkpoint):
    """Sort key of checkpoints: dev score (macro-F1, or mean CCC for attribute systems), then epoch.

    The epoch breaks ties the same way on every process; ranking by the
    score alone lets DDP processes pick different "best" checkpoints among
    equal scores and then disagree on which to delete.

    Example
    -------
    >>> from types import SimpleNamespace as Ckpt
    >>> ckpts = [Ckpt(meta={"macro_f1": 0.3, "epoch": e}) for e in (1, 2)]
    >>> max(ckpts, key=dev_score_rank).meta["epoch"]
    2
    """
    # Intra-epoch checkpoints (--ckpt_interval_minutes) have no dev score: they rank last.
    score = checkpoint.meta.get("score", checkpoint.meta.get("macro_f1", -1.0))
    return (score, checkpoint.meta.get("epoch", -1))


def drop_epochs_after(train_log, last_epoch):
    """Remove the lines of epochs after ``last_epoch`` (the loaded checkpoint's) from a train log.

    An epoch is logged just before its checkpoint is saved: a run killed in
    between logged an epoch that the resumed run trains again. Trimming the
    log to the checkpoint keeps one line per epoch.

    Example
    -------
    >>> import tempfile, os
    >>> log = os.path.join(tempfile.mkdtemp(), "train_log.txt")
    >>> _ = open(log, "w").writelines(["epoch: 1, lr: 1 - loss: 2\\n", "epoch: 2, lr: 1 - loss: 1\\n"])
    >>> drop_epochs_after(log, 1)
    >>> print(open(log).read().strip())
    epoch: 1, lr: 1 - loss: 2
    """
    path = Path(train_log)
    if not path.is_file():
        return
    lines = path.read_text().splitlines(keepends=True)
    kept = [line for line in lines if _logged_epoch(line) <= last_epoch]
    if len(kept) != len(lines):
        logger.info("%s: dropped %d line(s) of epochs after %d", path, len(lines) - len(kept), last_epoch)
        with atomic_write(path) as stream:
            stream.writelines(kept)


def _logged_epoch(line):
    match = re.match(r"epoch: (\d+)\b", line)
    return int(match.group(1)) if match else 0


def epoch_loggers(hparams):
    """Who logs each epoch's line: the YAML's ``train_logger``, and TensorBoard when ``use_tensorboard``.

    Example
    -------
    >>> epoch_loggers({"train_logger": "log.txt"})
    ['log.txt']
    """
    loggers = [hparams["train_logger"]]
    if hparams.get("use_tensorboard"):
        # SpeechBrain's logger (needs the tensorboard package), switched on in the YAML.
        from speechbrain.utils.train_logger import TensorboardLogger

        loggers.append(TensorboardLogger(str(hparams["tensorboard_folder"])))
    return loggers
