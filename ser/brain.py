"""One SpeechBrain ``Brain`` for all five sub-systems.

What differs between systems (encoders, pooling, loss, optimizer groups)
comes from the YAML; this class only wires it together:

- ``compute_forward``: waveform (+ transcripts) → ``hparams.model`` → outputs
  (log-probs and/or attributes: the targets the YAML declares, :mod:`ser.targets`);
- ``compute_objectives``: ``hparams.compute_cost`` on the turns with a known
  label (test turns may have hidden labels), plus ``attribute_weight`` times
  ``hparams.attribute_cost`` on the turns with known attributes;
- one optimizer per entry of ``hparams.optimizers`` (each over a named group of
  modules, each annealed by its own NewBob scheduler on the dev score);
- NewBob and the kept checkpoint follow the dev score: ``selection_metric``
  ``macro_f1`` (the challenge metric, STYLE.md habit 6) or ``error_rate``
  (1 - accuracy, the authors' recipe), or dev mean CCC for an attribute system;
- evaluation writes the posteriors (one probability per class and turn), the
  attribute predictions and the metrics.
"""

import functools
import logging
import re
from pathlib import Path

import speechbrain as sb
import torch

from ser import targets as target_tools
from ser.atomic_io import atomic_write, write_json_atomic
from ser.checkpoints import CheckpointError
from ser.posteriors import write_attributes, write_posteriors
from ser.preemption import TrainingStopped
from ser.run_summary import trainable_parameters
from ser.targets import EXCLUDED_LABEL, Targets

logger = logging.getLogger(__name__)


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
    """Remove the lines of epochs after ``last_epoch`` from a train log.

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


class EmotionBrain(sb.Brain):
    """Trains and evaluates an :class:`ser.model.EmotionClassifier`.

    Before ``evaluate``, set ``posteriors_file`` / ``attributes_file`` (and
    optionally ``metrics_file``) to have that split's outputs written.
    """

    posteriors_file = None
    attributes_file = None
    metrics_file = None
    #: The checkpoint the last ``evaluate`` loaded (its identity goes into ``system.json``).
    evaluated_checkpoint = None
    #: A :class:`ser.preemption.StopRequest` (train.py installs one): checkpoint and stop on SIGTERM.
    stop_request = None

    @functools.cached_property
    def targets(self):
        return Targets.from_hparams(vars(self.hparams))

    def compute_forward(self, batch, stage):
        batch = batch.to(self.device)
        wavs, wav_lens = batch.sig
        texts = batch.transcript if self.hparams.model.uses_text else None
        return self.modules.model(wavs, wav_lens, texts)

    def compute_objectives(self, outputs, batch, stage):
        targets = self.targets
        if stage != sb.Stage.TRAIN:
            target_tools.collect(self.outputs, targets, outputs, batch)
        soft = stage == sb.Stage.TRAIN and bool(getattr(self.hparams, "soft_labels", False))
        return target_tools.training_loss(
            targets, outputs, batch, self.hparams.compute_cost, self.hparams.attribute_cost, soft_labels=soft
        )

    def on_stage_start(self, stage, epoch=None):
        self.outputs = target_tools.empty_outputs(self.targets)

    def on_stage_end(self, stage, stage_loss, epoch=None):
        if stage == sb.Stage.TRAIN:
            self.train_loss = stage_loss
            return
        collected = self._gather_outputs()
        reports = target_tools.evaluation_reports(self.targets, collected)
        if stage == sb.Stage.VALID:
            self._end_of_epoch(epoch, stage_loss, *reports)
        else:
            self._write_evaluation(collected, stage_loss, *reports)

    @property
    def selection_metric(self):
        """``hparams.selection_metric`` (``macro_f1`` when a YAML predates the option)."""
        return self.hparams.selection_metric if hasattr(self.hparams, "selection_metric") else "macro_f1"

    def _end_of_epoch(self, epoch, stage_loss, class_report, attribute_scores):
        score = target_tools.selection_score(self.targets, class_report, attribute_scores)
        if self.selection_metric == "error_rate" and class_report:
            # The authors' recipe: the score is 1 - dev error rate, so NewBob anneals on the error
            # rate and the kept checkpoint has the lowest.
            score = class_report["accuracy"]
        elif self.selection_metric not in ("macro_f1", "error_rate"):
            raise ValueError(f"selection_metric: macro_f1 or error_rate, not {self.selection_metric!r}")
        learning_rates = {}
        for name, group in self.hparams.optimizers.items():
            if name not in self.optimizers_dict:
                continue
            # NewBob anneals when the dev error (1 - score: 1 - macro-F1, the error rate, or
            # 1 - mean CCC) stops improving.
            old_lr, new_lr = group["lr_annealing"](1.0 - score)
            sb.nnet.schedulers.update_learning_rate(self.optimizers_dict[name], new_lr)
            learning_rates[f"lr_{name}"] = old_lr
        valid_stats = {"loss": stage_loss, **_headline(class_report, attribute_scores)}
        for train_logger in (self.hparams.train_logger, getattr(self, "tensorboard_logger", None)):
            if train_logger is not None:
                train_logger.log_stats(
                    stats_meta={"epoch": epoch, **learning_rates},
                    train_stats={"loss": self.train_loss},
                    valid_stats=valid_stats,
                )
        meta = {"score": score, "epoch": epoch}
        meta.update({k: v for k, v in valid_stats.items() if k in ("macro_f1", "mean_ccc")})
        if class_report:
            meta["error_rate"] = 1.0 - class_report["accuracy"]
        self.checkpointer.save_and_keep_only(meta=meta, importance_keys=[dev_score_rank])

    def on_fit_start(self):
        super().on_fit_start()  # loads the latest checkpoint, if any
        hparams = vars(self.hparams)
        if hparams.get("use_tensorboard"):
            # SpeechBrain's logger (needs the tensorboard package), switched on in the YAML.
            from speechbrain.utils.train_logger import TensorboardLogger

            self.tensorboard_logger = TensorboardLogger(str(hparams["tensorboard_folder"]))
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
            # SpeechBrain calls set_epoch only on the samplers it makes itself (shuffle, DDP): a
            # bucketed batch sampler (or the class-balanced one) would repeat one order, and a
            # resumed epoch would skip the batches of another order. (Under DDP it is wrapped, and
            # the wrapper passes it on.)
            self.train_sampler = sampler
        return loader

    def _should_save_intra_epoch_ckpt(self, last_ckpt_time, steps_since_ckpt):
        # Asked after every training step: a stop signal (pre-emption) means "checkpoint now".
        if self.stop_request is not None and self.checkpointer is not None:
            if self.stop_request.agreed(self.device):
                return True
        return super()._should_save_intra_epoch_ckpt(last_ckpt_time, steps_since_ckpt)

    def _save_intra_epoch_ckpt(self):
        # SpeechBrain's own version records no position: say where the run stands, so a
        # resumed run (and whoever reads the folder) knows which epoch and step it restarts from.
        self.checkpointer.save_and_keep_only(
            end_of_epoch=False,
            num_to_keep=1,
            ckpt_predicate=lambda c: sb.core.INTRA_EPOCH_CKPT_FLAG in c.meta,
            meta={
                sb.core.INTRA_EPOCH_CKPT_FLAG: True,
                "epoch": self.hparams.epoch_counter.current,
                "step": self.step,
            },
            verbosity=logging.DEBUG,
        )
        if self.stop_request is not None and self.stop_request.signum is not None:
            raise TrainingStopped(self.stop_request.signum, self.hparams.epoch_counter.current, self.step)

    def on_evaluate_start(self, max_key=None, min_key=None):
        """Load the checkpoint with the best dev score (ties: the later epoch).

        Without one there is nothing to evaluate: random weights are not results.
        """
        if self.checkpointer is not None:
            self.evaluated_checkpoint = self.checkpointer.recover_if_possible(importance_key=dev_score_rank)
            if self.evaluated_checkpoint is None:
                raise CheckpointError(
                    f"{self.checkpointer.checkpoints_dir}: no checkpoint to evaluate (no epoch was "
                    "trained); nothing is written from untrained weights"
                )

    def _write_evaluation(self, collected, stage_loss, class_report, attribute_scores):
        # Every process gets here: the train logger is collective under DDP
        # (main_process_only broadcasts), only the files are the main's job.
        main = sb.utils.distributed.if_main_process()
        targets = self.targets
        names = [f"{uid}.wav" for uid in collected["ids"]]
        if self.posteriors_file and targets.classes and main:
            # Turns whose known label is outside the class set (X, O: kept for the attributes)
            # have no Task 1 posterior: fusion scores posteriors against the labels.
            rows = (collected["labels"] != EXCLUDED_LABEL).nonzero().view(-1).tolist()
            write_posteriors(self.posteriors_file, [names[i] for i in rows], collected["probs"][rows].numpy(),
                             classes=targets.classes)
            logger.info("Posteriors of %d turns written to %s", len(rows), self.posteriors_file)
        if self.attributes_file and targets.attributes and main:
            scale = self.hparams.attribute_scale
            write_attributes(self.attributes_file, names, collected["attr_pred"].numpy(), targets.attributes,
                             scale=scale)
            logger.info("Attributes of %d turns written to %s", len(names), self.attributes_file)
        if self.metrics_file and (class_report or attribute_scores):
            if main:
                metrics = {"loss": float(stage_loss), "n_turns": len(names), **targets.as_dict()}
                metrics.update(class_report or {})
                if attribute_scores:
                    metrics.update({"ccc": attribute_scores["ccc"], "mean_ccc": attribute_scores["mean_ccc"],
                                    "n_turns_attributes": attribute_scores["n_samples"]})
                if class_report:
                    metrics["n_turns"] = class_report["n_samples"]
                write_json_atomic(self.metrics_file, metrics, indent=2)
            self.hparams.train_logger.log_stats(
                stats_meta={"evaluation": str(self.metrics_file)},
                test_stats=_headline(class_report, attribute_scores),
            )

    def _gather_outputs(self):
        """All processes' outputs (DDP shards), duplicates from padding removed."""
        collected = target_tools.concatenated(self.outputs, self.targets)
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            shards = [None] * torch.distributed.get_world_size()
            torch.distributed.all_gather_object(shards, collected)
            collected = {"ids": [uid for shard in shards for uid in shard["ids"]]}
            collected.update({name: torch.cat([shard[name] for shard in shards]) for name in shards[0]
                              if name != "ids"})
        first = {}
        for row, uid in enumerate(collected["ids"]):
            first.setdefault(uid, row)
        rows = torch.tensor(list(first.values()), dtype=torch.long)
        gathered = {name: value[rows] for name, value in collected.items() if name != "ids"}
        return {"ids": list(first), **gathered}

    def init_optimizers(self):
        """One optimizer per ``hparams.optimizers`` group, each with its scheduler.

        Every trainable parameter must belong to exactly one group, so a YAML
        edit that forgets a module fails loudly instead of freezing it silently.
        """
        self.optimizers_dict = {}
        owner = {}
        for name, group in self.hparams.optimizers.items():
            params = trainable_parameters(group["modules"])
            for param in params:
                if id(param) in owner:
                    raise ValueError(f"optimizer groups {owner[id(param)]!r} and {name!r} share parameters")
                owner[id(param)] = name
            if not params:
                logger.info("Optimizer group %r has no trainable parameter: skipped", name)
                continue
            self.optimizers_dict[name] = group["opt_class"](params)
            if self.checkpointer is not None:
                self.checkpointer.add_recoverable(f"optimizer_{name}", self.optimizers_dict[name])
                self.checkpointer.add_recoverable(f"lr_annealing_{name}", group["lr_annealing"])
        orphans = [n for n, p in self.modules.named_parameters() if p.requires_grad and id(p) not in owner]
        if orphans:
            raise ValueError(f"trainable parameters in no optimizer group: {orphans[:5]}")


def _headline(class_report, attribute_scores):
    """The numbers a log line shows: macro-F1 and accuracy, and/or CCC per attribute and mean."""
    stats = {}
    if class_report:
        stats.update(macro_f1=class_report["macro_f1"], accuracy=class_report["accuracy"])
    if attribute_scores:
        stats.update({f"ccc_{name}": value for name, value in attribute_scores["ccc"].items()})
        stats["mean_ccc"] = attribute_scores["mean_ccc"]
    return stats
