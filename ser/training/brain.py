"""One SpeechBrain ``Brain`` for all sub-systems: what differs comes from the YAML.

- ``compute_forward``: waveform (+ transcripts) → ``hparams.model`` → the outputs of
  the targets the YAML declares (:mod:`ser.targets`);
- ``compute_objectives``: the loss of :meth:`ser.targets.Targets.loss`;
- one optimizer per ``hparams.optimizers`` group (:mod:`ser.training.optimizer_groups`), each
  annealed by its own NewBob scheduler on the dev score (:meth:`ser.targets.Targets.selection_score`),
  which also picks the kept checkpoint (:func:`ser.io.checkpoints.dev_score_rank`);
- ``evaluate(dataset, files)`` writes that split's :class:`ser.training.evaluation_files.EvaluationFiles`.
"""

import functools
import logging

import speechbrain as sb

from ser.io.atomic import naming_output
from ser.io.checkpoints import CheckpointError, dev_score_rank, drop_epochs_after, epoch_loggers
from ser.targets import Targets, checkpoint_meta, headline
from ser.training.batching import ProcessShare
from ser.training.evaluation_files import EvaluationFiles
from ser.training.optimizer_groups import group_parameters
from ser.training.preemption import TrainingStopped

logger = logging.getLogger(__name__)


def _log_stats(train_logger, *args, **kwargs):
    """``train_logger.log_stats``; a write that fails names the logger's file (SpeechBrain's lose it)."""
    where = getattr(train_logger, "save_file", None) or getattr(train_logger, "save_dir", None)
    if where is None:
        train_logger.log_stats(*args, **kwargs)
        return
    with naming_output(where):
        train_logger.log_stats(*args, **kwargs)


class EmotionBrain(sb.Brain):
    """Trains and evaluates an :class:`ser.nn.model.EmotionClassifier`."""

    #: The checkpoint the last ``evaluate`` loaded (its identity goes into ``system.json``).
    evaluated_checkpoint = None
    #: A :class:`ser.training.preemption.StopRequest` (train.py installs one): checkpoint and stop on SIGTERM.
    stop_request = None
    _files = EvaluationFiles()  # what the running ``evaluate`` writes

    @functools.cached_property
    def targets(self):
        return Targets.from_hparams(vars(self.hparams))

    def compute_forward(self, batch, stage):
        batch = batch.to(self.device)
        wavs, wav_lens = batch.sig
        texts = batch.transcript if self.hparams.model.uses_text else None
        return self.modules.model(wavs, wav_lens, texts)

    def compute_objectives(self, outputs, batch, stage):
        if stage != sb.Stage.TRAIN:
            self.targets.collect(self.outputs, outputs, batch)
        soft = stage == sb.Stage.TRAIN and bool(getattr(self.hparams, "soft_labels", False))
        return self.targets.loss(outputs, batch, self.hparams.compute_cost, self.hparams.attribute_cost,
                                 soft_labels=soft)

    def evaluate(self, test_set, files=EvaluationFiles(), **kwargs):  # noqa: B008 (frozen, no state)
        """SpeechBrain's ``evaluate`` on the best checkpoint, writing ``files``."""
        self._files = files  # for on_stage_end, at the end of this evaluation
        return super().evaluate(test_set, **kwargs)

    def on_stage_start(self, stage, epoch=None):
        self.outputs = self.targets.empty_outputs()

    def on_stage_end(self, stage, stage_loss, epoch=None):
        if stage == sb.Stage.TRAIN:
            self.train_loss = stage_loss
            return
        collected = self.targets.gathered(self.outputs)
        reports = self.targets.reports(collected)
        if stage == sb.Stage.VALID:
            self._end_of_epoch(epoch, stage_loss, *reports)
            return
        # Every process gets here: the train logger is collective under DDP
        # (main_process_only broadcasts), only the files are the main's job.
        if sb.utils.distributed.if_main_process():
            scale = getattr(self.hparams, "attribute_scale", None)  # only attribute systems have one
            self._files.write(self.targets, collected, stage_loss, *reports, scale)
        if self._files.has_metrics(*reports):
            _log_stats(self.hparams.train_logger, {"evaluation": str(self._files.metrics)},
                       test_stats=headline(*reports))

    def _end_of_epoch(self, epoch, stage_loss, class_report, attribute_scores):
        metric = self.hparams.selection_metric if hasattr(self.hparams, "selection_metric") else "macro_f1"
        score = self.targets.selection_score(class_report, attribute_scores, metric)
        learning_rates = {}
        for name, optimizer in self.optimizers_dict.items():
            # NewBob anneals when the dev error (1 - score) stops improving.
            old_lr, new_lr = self.hparams.optimizers[name]["lr_annealing"](1.0 - score)
            sb.nnet.schedulers.update_learning_rate(optimizer, new_lr)
            learning_rates[f"lr_{name}"] = old_lr
        valid_stats = {"loss": stage_loss, **headline(class_report, attribute_scores)}
        for train_logger in self.epoch_loggers:
            _log_stats(train_logger, {"epoch": epoch, **learning_rates}, {"loss": self.train_loss},
                       valid_stats)
        meta = checkpoint_meta(epoch, score, class_report, attribute_scores)
        self.checkpointer.save_and_keep_only(meta=meta, importance_keys=[dev_score_rank])

    def on_fit_start(self):
        super().on_fit_start()  # loads the latest checkpoint, if any
        self.epoch_loggers = epoch_loggers(vars(self.hparams))
        if sb.utils.distributed.if_main_process():
            drop_epochs_after(self.hparams.train_log, self.hparams.epoch_counter.current)

    def make_dataloader(self, dataset, stage, ckpt_prefix="dataloader-", **loader_kwargs):
        """SpeechBrain's loader, drawing its worker seeds from the checkpointed generator."""
        random_state = self.checkpointer.recoverables.get("random_state") if self.checkpointer else None
        if random_state is not None:
            loader_kwargs.setdefault("generator", random_state.loader_generator)
        loader = super().make_dataloader(dataset, stage, ckpt_prefix=ckpt_prefix, **loader_kwargs)
        sampler = loader_kwargs.get("batch_sampler") or loader_kwargs.get("sampler")
        if stage == sb.Stage.TRAIN and self.train_sampler is None and hasattr(sampler, "set_epoch"):
            # SpeechBrain calls set_epoch only on the samplers it makes (shuffle, DDP): a bucketed or
            # class-balanced one would repeat one order, and a resumed epoch skip another order's batches.
            self.train_sampler = sampler
        return loader

    def _train_loader_specifics(self, dataset, loader_kwargs):
        loader_kwargs = super()._train_loader_specifics(dataset, loader_kwargs)
        for key in ("batch_sampler", "sampler"):
            wrapper = loader_kwargs.get(key)
            if type(wrapper) is sb.dataio.sampler.DistributedSamplerWrapper:
                loader_kwargs[key] = ProcessShare.replacing(wrapper)
                if self.train_sampler is wrapper:
                    self.train_sampler = loader_kwargs[key]
        return loader_kwargs

    def _should_save_intra_epoch_ckpt(self, last_ckpt_time, steps_since_ckpt):
        # Asked after every training step: a stop signal (pre-emption) means "checkpoint now".
        stopping = self.stop_request is not None and self.checkpointer is not None
        return (stopping and self.stop_request.agreed(self.device)) or super()._should_save_intra_epoch_ckpt(
            last_ckpt_time, steps_since_ckpt)

    def _save_intra_epoch_ckpt(self):
        # SpeechBrain's own version records no position: say where the run stands, so a
        # resumed run (and whoever reads the folder) knows which epoch and step it restarts from.
        epoch = self.hparams.epoch_counter.current
        self.checkpointer.save_and_keep_only(
            end_of_epoch=False, num_to_keep=1, verbosity=logging.DEBUG,
            ckpt_predicate=lambda c: sb.core.INTRA_EPOCH_CKPT_FLAG in c.meta,
            meta={sb.core.INTRA_EPOCH_CKPT_FLAG: True, "epoch": epoch, "step": self.step})
        if self.stop_request is not None and self.stop_request.signum is not None:
            raise TrainingStopped(self.stop_request.signum, epoch, self.step)

    def on_evaluate_start(self, max_key=None, min_key=None):
        """Load the checkpoint with the best dev score (ties: the later epoch); none is an error."""
        if self.checkpointer is not None:
            self.evaluated_checkpoint = self.checkpointer.recover_if_possible(importance_key=dev_score_rank)
            if self.evaluated_checkpoint is None:  # random weights are not results
                raise CheckpointError(f"{self.checkpointer.checkpoints_dir}: no checkpoint to evaluate (no "
                                      "epoch was trained); nothing is written from untrained weights")

    def init_optimizers(self):
        """One optimizer per non-empty ``hparams.optimizers`` group, each with its NewBob scheduler."""
        self.optimizers_dict = {}
        for name, params in group_parameters(self.hparams.optimizers, self.modules).items():
            if not params:
                logger.info("Optimizer group %r has no trainable parameter: skipped", name)
                continue
            group = self.hparams.optimizers[name]
            self.optimizers_dict[name] = group["opt_class"](params)
            if self.checkpointer is not None:
                self.checkpointer.add_recoverable(f"optimizer_{name}", self.optimizers_dict[name])
                self.checkpointer.add_recoverable(f"lr_annealing_{name}", group["lr_annealing"])
