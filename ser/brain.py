"""One SpeechBrain ``Brain`` for all five sub-systems.

What differs between systems (encoders, pooling, loss, optimizer groups)
comes from the YAML; this class only wires it together:

- ``compute_forward``: waveform (+ transcripts) → ``hparams.model`` → log-probs;
- ``compute_objectives``: ``hparams.compute_cost`` on the turns with a known
  label (test turns may have hidden labels);
- one optimizer per entry of ``hparams.optimizers`` (each over a named group of
  modules, each annealed by its own NewBob scheduler on the dev score);
- checkpoints kept by **dev macro-F1** (the challenge metric, STYLE.md habit 6);
- evaluation writes the posteriors (8 probabilities per turn) and metrics.
"""

import logging
import re
from pathlib import Path

import speechbrain as sb
import torch

from ser.atomic_io import atomic_write, write_json_atomic
from ser.data import UNKNOWN_LABEL
from ser.emotions import EMOTIONS
from ser.metrics import classification_report
from ser.posteriors import write_posteriors

logger = logging.getLogger(__name__)


def dev_score_rank(checkpoint):
    """Sort key of checkpoints: dev macro-F1, then epoch.

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
    return (checkpoint.meta.get("macro_f1", -1.0), checkpoint.meta.get("epoch", -1))


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

    Before ``evaluate``, set ``posteriors_file`` (and optionally
    ``metrics_file``) to have the posteriors and metrics of that split written.
    """

    posteriors_file = None
    metrics_file = None

    def compute_forward(self, batch, stage):
        batch = batch.to(self.device)
        wavs, wav_lens = batch.sig
        texts = batch.transcript if self.hparams.model.uses_text else None
        return self.modules.model(wavs, wav_lens, texts)

    def compute_objectives(self, log_probs, batch, stage):
        targets = batch.emo_encoded.data.view(-1)
        if stage != sb.Stage.TRAIN:
            self.outputs["ids"].extend(batch.id)
            self.outputs["probs"].append(log_probs.detach().exp().float().cpu())
            self.outputs["targets"].append(targets.cpu())
        known = targets != UNKNOWN_LABEL
        if not bool(known.any()):
            # Hidden labels (e.g. Test3): posteriors only, no loss.
            return log_probs.sum() * 0.0
        return self.hparams.compute_cost(log_probs[known], targets[known])

    def on_stage_start(self, stage, epoch=None):
        self.outputs = {"ids": [], "probs": [], "targets": []}

    def on_stage_end(self, stage, stage_loss, epoch=None):
        if stage == sb.Stage.TRAIN:
            self.train_loss = stage_loss
            return
        ids, probs, targets = self._gather_outputs()
        known = targets != UNKNOWN_LABEL
        report = None
        if bool(known.any()):
            report = classification_report(targets[known].tolist(), probs[known].argmax(-1).tolist())
        if stage == sb.Stage.VALID:
            self._end_of_epoch(epoch, stage_loss, report)
        else:
            self._write_evaluation(ids, probs, stage_loss, report)

    def _end_of_epoch(self, epoch, stage_loss, report):
        score = report["macro_f1"] if report else 0.0
        learning_rates = {}
        for name, group in self.hparams.optimizers.items():
            if name not in self.optimizers_dict:
                continue
            # NewBob anneals when the dev error (1 - macro-F1) stops improving.
            old_lr, new_lr = group["lr_annealing"](1.0 - score)
            sb.nnet.schedulers.update_learning_rate(self.optimizers_dict[name], new_lr)
            learning_rates[f"lr_{name}"] = old_lr
        valid_stats = {"loss": stage_loss, "macro_f1": score}
        if report:
            valid_stats["accuracy"] = report["accuracy"]
        self.hparams.train_logger.log_stats(
            stats_meta={"epoch": epoch, **learning_rates},
            train_stats={"loss": self.train_loss},
            valid_stats=valid_stats,
        )
        self.checkpointer.save_and_keep_only(
            meta={"macro_f1": score, "epoch": epoch}, importance_keys=[dev_score_rank]
        )

    def on_fit_start(self):
        super().on_fit_start()  # loads the latest checkpoint, if any
        if sb.utils.distributed.if_main_process():
            drop_epochs_after(self.hparams.train_log, self.hparams.epoch_counter.current)

    def make_dataloader(self, dataset, stage, ckpt_prefix="dataloader-", **loader_kwargs):
        """SpeechBrain's loader, drawing its worker seeds from the checkpointed generator."""
        random_state = self.checkpointer.recoverables.get("random_state") if self.checkpointer else None
        if random_state is not None:
            loader_kwargs.setdefault("generator", random_state.loader_generator)
        loader = super().make_dataloader(dataset, stage, ckpt_prefix=ckpt_prefix, **loader_kwargs)
        batch_sampler = loader_kwargs.get("batch_sampler")
        if stage == sb.Stage.TRAIN and self.train_sampler is None and hasattr(batch_sampler, "set_epoch"):
            # SpeechBrain calls set_epoch only on the samplers it makes itself (shuffle, DDP): a
            # bucketed batch sampler would repeat one batch order, and a resumed epoch would skip
            # the batches of another order. (Under DDP it is wrapped, and the wrapper passes it on.)
            self.train_sampler = batch_sampler
        return loader

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

    def on_evaluate_start(self, max_key=None, min_key=None):
        """Load the checkpoint with the best dev macro-F1 (ties: the later epoch)."""
        if self.checkpointer is not None:
            self.checkpointer.recover_if_possible(importance_key=dev_score_rank)

    def _write_evaluation(self, ids, probs, stage_loss, report):
        # Every process gets here: the train logger is collective under DDP
        # (main_process_only broadcasts), only the files are the main's job.
        main = sb.utils.distributed.if_main_process()
        if self.posteriors_file and main:
            write_posteriors(self.posteriors_file, [f"{uid}.wav" for uid in ids], probs.numpy())
            logger.info("Posteriors of %d turns written to %s", len(ids), self.posteriors_file)
        if self.metrics_file and report:
            if main:
                metrics = {"loss": float(stage_loss), "n_turns": len(ids), **report}
                write_json_atomic(self.metrics_file, metrics, indent=2)
            self.hparams.train_logger.log_stats(
                stats_meta={"evaluation": str(self.metrics_file)},
                test_stats={"macro_f1": report["macro_f1"], "accuracy": report["accuracy"]},
            )

    def _gather_outputs(self):
        """All processes' outputs (DDP shards), duplicates from padding removed."""
        ids = list(self.outputs["ids"])
        probs = torch.cat(self.outputs["probs"]) if ids else torch.empty(0, len(EMOTIONS))
        targets = torch.cat(self.outputs["targets"]) if ids else torch.empty(0, dtype=torch.long)
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            shards = [None] * torch.distributed.get_world_size()
            torch.distributed.all_gather_object(shards, (ids, probs, targets))
            ids = [uid for shard in shards for uid in shard[0]]
            probs = torch.cat([shard[1] for shard in shards])
            targets = torch.cat([shard[2] for shard in shards])
        first = {}
        for row, uid in enumerate(ids):
            first.setdefault(uid, row)
        rows = torch.tensor(list(first.values()), dtype=torch.long)
        return list(first), probs[rows], targets[rows]

    def init_optimizers(self):
        """One optimizer per ``hparams.optimizers`` group, each with its scheduler.

        Every trainable parameter must belong to exactly one group, so a YAML
        edit that forgets a module fails loudly instead of freezing it silently.
        """
        self.optimizers_dict = {}
        owner = {}
        for name, group in self.hparams.optimizers.items():
            params = [p for module in group["modules"] for p in module.parameters() if p.requires_grad]
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
