"""Stop a training run cleanly when a cluster asks: checkpoint at the next step, exit, resume.

A scheduler that pre-empts a job, or whose time limit is near, signals it first and kills it a
grace period later: SLURM sends ``SIGTERM`` (pre-emption, ``scancel``) or the signal the job
asked for (``--signal=USR1@300``), and ``torchrun`` forwards ``SIGTERM`` to its workers and gives
them 30 s. Without a handler Python dies at once and the run loses everything since its last
checkpoint. With :class:`StopRequest` installed, the first ``SIGTERM`` / ``SIGUSR1`` only
records the request; :class:`ser.training.brain.EmotionBrain` sees it after the current training step,
saves an intra-epoch checkpoint and raises :class:`TrainingStopped`. Re-running the same command
(a requeued job) resumes from that step. Ctrl-C (SIGINT) still stops at once.

Under DDP every process calls :meth:`StopRequest.agreed` at the same step (one tiny all-reduce):
all stop together even when only one of them was signalled, so none waits forever in a
collective its peers have left.
"""

import logging
import signal

import torch

logger = logging.getLogger(__name__)

STOP_SIGNALS = (signal.SIGTERM, signal.SIGUSR1)


class TrainingStopped(Exception):
    """Raised after the checkpoint that a stop signal asked for; ``exit_code`` is 128 + signal."""

    def __init__(self, signum, epoch, step):
        self.signum, self.epoch, self.step = signum, epoch, step
        self.exit_code = 128 + signum
        super().__init__(
            f"stopped by {signal.Signals(signum).name} at epoch {epoch}, step {step}, after saving a "
            "checkpoint; run the same command again to resume from it"
        )


class StopRequest:
    """Records the first stop signal a process receives.

    Example
    -------
    >>> import os
    >>> request = StopRequest.install()
    >>> request.agreed("cpu")
    False
    >>> os.kill(os.getpid(), signal.SIGUSR1)
    >>> request.agreed("cpu"), request.signum == signal.SIGUSR1
    (True, True)
    >>> request.uninstall()
    """

    def __init__(self):
        self.signum = None
        self._previous = {}

    @classmethod
    def install(cls, signals=STOP_SIGNALS):
        """A request that the given signals set (call from the main thread)."""
        request = cls()
        for signum in signals:
            request._previous[signum] = signal.signal(signum, request._on_signal)
        return request

    def uninstall(self):
        """Give the signals their previous handlers back."""
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous = {}

    def _on_signal(self, signum, frame):
        # SLURM signals every process of a step and torchrun forwards what it gets: the same stop
        # often arrives twice. Only the first is logged; the scheduler's SIGKILL ends a hung run.
        if self.signum is not None:
            return
        self.signum = signum
        logger.warning(
            "%s received: saving a checkpoint after this training step, then stopping",
            signal.Signals(signum).name,
        )

    def agreed(self, device):
        """Whether this process or any other of the run was asked to stop.

        Under DDP this is a collective: every process must call it at the same point.
        """
        flag = self.signum or 0
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            shared = torch.tensor([flag], dtype=torch.int64, device=device)
            torch.distributed.all_reduce(shared, op=torch.distributed.ReduceOp.MAX)
            flag = int(shared.item())
            if flag and self.signum is None:
                self.signum = flag  # another process was signalled: report its signal
        return bool(flag)
