"""What a system predicts, declared once in its YAML, and how it is scored.

Keys of every system YAML (section "Targets")::

    classes: [A, C, D, F, H, N, S, U]    # Task 1 class set, in posterior-file order; null: none
    attributes: []                       # Task 2: [EmoAct, EmoVal, EmoDom]; []: none
    attribute_weight: 1.0                # lambda of NLL + lambda * (1 - CCC) (multi-task)

The class set sizes the classification head, orders ``posteriors/{split}.csv``
and the metrics; the attributes size the regression head and name the
columns of ``attributes/{split}.csv``. With both, the system is multi-task:
both heads on the shared pooled vector, both outputs written. The checkpoint
is kept by dev macro-F1 when the system has classes, by dev mean CCC
otherwise (an attribute system).
"""

from dataclasses import dataclass

import torch

from ser.errors import UserInputError

#: Task 2 attribute names, as in ``labels_consensus.csv``.
ATTRIBUTES = ("EmoAct", "EmoVal", "EmoDom")
#: Class index of a turn whose label is hidden (e.g. Test3).
UNKNOWN_LABEL = -1
#: Class index of a turn whose known label is not one of the classes (X, O).
EXCLUDED_LABEL = -2


class TargetsError(UserInputError, ValueError):
    """A YAML's targets that no system can have (nothing, duplicates, an unknown attribute)."""


@dataclass(frozen=True)
class Targets:
    """The targets of one system.

    Example
    -------
    >>> t = Targets.from_hparams({"classes": list("ACDFHNSU"), "attributes": ["EmoAct"]})
    >>> t.n_classes, t.multitask, t.selection_metric
    (8, True, 'macro_f1')
    >>> Targets.from_hparams({"classes": None, "attributes": list(ATTRIBUTES)}).selection_metric
    'mean_ccc'
    """

    classes: tuple = ()
    attributes: tuple = ()
    attribute_weight: float = 1.0

    @classmethod
    def from_hparams(cls, hparams):
        classes = tuple(hparams.get("classes") or ())
        attributes = tuple(hparams.get("attributes") or ())
        if not classes and not attributes:
            raise TargetsError("the system predicts nothing: set classes and/or attributes in its YAML")
        if len(set(classes)) != len(classes) or len(set(attributes)) != len(attributes):
            raise TargetsError(f"classes {list(classes)} and attributes {list(attributes)} must be distinct")
        unknown = [a for a in attributes if a not in ATTRIBUTES]
        if unknown:
            raise TargetsError(f"attributes {unknown} are not among {list(ATTRIBUTES)}")
        return cls(classes, attributes, float(hparams.get("attribute_weight", 1.0)))

    @property
    def n_classes(self):
        return len(self.classes)

    @property
    def multitask(self):
        return bool(self.classes) and bool(self.attributes)

    @property
    def selection_metric(self):
        """The dev score that keeps checkpoints and drives NewBob."""
        return "macro_f1" if self.classes else "mean_ccc"

    def as_dict(self):
        return {"classes": list(self.classes), "attributes": list(self.attributes)}

    def loss(self, outputs, batch, class_cost, attribute_cost, soft_labels=False):
        """The loss of one batch: class loss + weight * attribute loss, on the turns that have them.

        Parameters
        ----------
        outputs : dict
            Model outputs: ``log_probs`` and/or ``attributes``.
        batch : PaddedBatch
            With ``emo_encoded`` (class index, negative when none), ``attr`` (NaN when unknown) and,
            for soft labels, ``soft`` (NaN rows when no vote is for a class).
        class_cost, attribute_cost : callable
        soft_labels : bool
            Train the classes on the vote distributions instead of the consensus class.
        """
        zero = sum(value.sum() for value in outputs.values()) * 0.0  # keeps the graph when no term applies
        loss = zero
        if self.classes:
            log_probs = outputs["log_probs"]
            if soft_labels:
                soft = batch.soft.data.to(log_probs.device)
                has = soft.isfinite().all(dim=1)
                if bool(has.any()):
                    loss = loss + class_cost(log_probs[has], soft[has])
            else:
                labels = batch.emo_encoded.data.view(-1).to(log_probs.device)
                known = labels >= 0
                if bool(known.any()):
                    loss = loss + class_cost(log_probs[known], labels[known])
        if self.attributes:
            predicted = outputs["attributes"]
            reference = batch.attr.data.to(predicted.device)
            has = reference.isfinite().all(dim=1)
            if int(has.sum()) >= 1:
                weight = self.attribute_weight if self.classes else 1.0
                loss = loss + weight * attribute_cost(predicted[has], reference[has])
        return loss

    def reports(self, collected):
        """Task 1 and Task 2 reports of an evaluation (None where nothing is known).

        Parameters
        ----------
        collected : dict
            ``labels`` (class indices), ``probs`` ``(n, K)``, ``attr_pred`` and ``attr_true``
            ``(n, A)`` (NaN when unknown), as gathered by the Brain.

        Returns
        -------
        (dict or None, dict or None)
            :func:`ser.metrics.classification_report` and :func:`ser.metrics.attribute_report`.
        """
        # Here, not at the top: scikit-learn (and its scipy and pandas, 1 s) is for scoring, so
        # classifying with a package that has no fusion never imports it.
        from ser.metrics import attribute_report, classification_report

        class_report = attribute_scores = None
        if self.classes:
            labels = collected["labels"]
            known = labels >= 0
            if bool(known.any()):
                predicted = collected["probs"][known].argmax(-1).tolist()
                class_report = classification_report(labels[known].tolist(), predicted, classes=self.classes)
        if self.attributes:
            reference = collected["attr_true"]
            has = reference.isfinite().all(dim=1)
            if bool(has.any()):
                predicted = collected["attr_pred"][has].double().numpy()
                reference = reference[has].double().numpy()
                attribute_scores = attribute_report(predicted, reference, self.attributes)
        return class_report, attribute_scores

    def selection_score(self, class_report, attribute_scores, metric="macro_f1"):
        """The dev score that keeps checkpoints and drives NewBob (0 when nothing is known).

        Parameters
        ----------
        class_report, attribute_scores : dict or None
            As :meth:`reports` returns them.
        metric : str
            The YAML's ``selection_metric`` for a system with classes: ``macro_f1`` (the challenge
            metric) or ``error_rate`` (the authors' recipe: the score is 1 - error rate, i.e. the
            accuracy). An attribute system is scored by its mean CCC.

        Example
        -------
        >>> Targets((), ("EmoAct",)).selection_score(None, {"mean_ccc": 0.4})
        0.4
        >>> Targets(("A", "H")).selection_score({"macro_f1": 0.3, "accuracy": 0.6}, None, "error_rate")
        0.6
        """
        if metric not in ("macro_f1", "error_rate"):
            raise TargetsError(f"selection_metric: macro_f1 or error_rate, not {metric!r}")
        if self.classes:
            if not class_report:
                return 0.0
            return class_report["accuracy"] if metric == "error_rate" else class_report["macro_f1"]
        return attribute_scores["mean_ccc"] if attribute_scores else 0.0

    def metrics_record(self, stage_loss, n_turns, class_report, attribute_scores):
        """The content of ``metrics.json`` (``metrics_<split>.json``) of one evaluated split.

        Example
        -------
        >>> scores = {"ccc": {"EmoAct": 0.1}, "mean_ccc": 0.1, "n_samples": 2}
        >>> record = Targets((), ("EmoAct",)).metrics_record(0.5, 3, None, scores)
        >>> record["n_turns"], record["n_turns_attributes"], record["attributes"]
        (3, 2, ['EmoAct'])
        """
        metrics = {"loss": float(stage_loss), "n_turns": n_turns, **self.as_dict()}
        metrics.update(class_report or {})
        if attribute_scores:
            metrics.update({"ccc": attribute_scores["ccc"], "mean_ccc": attribute_scores["mean_ccc"],
                            "n_turns_attributes": attribute_scores["n_samples"]})
        if class_report:
            metrics["n_turns"] = class_report["n_samples"]
        return metrics

    def empty_outputs(self):
        """What an evaluation collects per batch (lists, concatenated at the end)."""
        names = ["labels"] + (["probs"] if self.classes else []) + (
            ["attr_pred", "attr_true"] if self.attributes else [])
        return {"ids": [], **{name: [] for name in names}}

    def collect(self, store, outputs, batch):
        """Append one evaluation batch's outputs and references to ``store`` (on the CPU)."""
        store["ids"].extend(batch.id)
        store["labels"].append(batch.emo_encoded.data.view(-1).cpu())
        if self.classes:
            store["probs"].append(outputs["log_probs"].detach().exp().float().cpu())
        if self.attributes:
            store["attr_pred"].append(outputs["attributes"].detach().float().cpu())
            store["attr_true"].append(batch.attr.data.float().cpu())

    def concatenated(self, store):
        """``store`` with every list of tensors concatenated (empty tensors of the right width)."""
        widths = {"probs": self.n_classes, "attr_pred": len(self.attributes),
                  "attr_true": len(self.attributes)}
        result = {"ids": list(store["ids"])}
        for name, parts in store.items():
            if name == "ids":
                continue
            if parts:
                result[name] = torch.cat(parts)
            elif name == "labels":
                result[name] = torch.empty(0, dtype=torch.long)
            else:
                result[name] = torch.empty(0, widths[name])
        return result

    def gathered(self, store):
        """All processes' outputs (DDP shards) concatenated, duplicates from padding removed."""
        collected = self.concatenated(store)
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
        kept = {name: value[rows] for name, value in collected.items() if name != "ids"}
        return {"ids": list(first), **kept}


def headline(class_report, attribute_scores):
    """The numbers a log line shows: macro-F1 and accuracy, and/or CCC per attribute and mean.

    Example
    -------
    >>> headline({"macro_f1": 0.3, "accuracy": 0.5}, {"ccc": {"EmoAct": 0.2}, "mean_ccc": 0.2})
    {'macro_f1': 0.3, 'accuracy': 0.5, 'ccc_EmoAct': 0.2, 'mean_ccc': 0.2}
    """
    stats = {}
    if class_report:
        stats.update(macro_f1=class_report["macro_f1"], accuracy=class_report["accuracy"])
    if attribute_scores:
        stats.update({f"ccc_{name}": value for name, value in attribute_scores["ccc"].items()})
        stats["mean_ccc"] = attribute_scores["mean_ccc"]
    return stats


def checkpoint_meta(epoch, score, class_report, attribute_scores):
    """What a checkpoint records of its epoch's dev scores (:func:`ser.io.checkpoints.dev_score_rank`)."""
    meta = {"score": score, "epoch": epoch}
    scores = headline(class_report, attribute_scores)
    meta.update({k: v for k, v in scores.items() if k in ("macro_f1", "mean_ccc")})
    if class_report:
        meta["error_rate"] = 1.0 - class_report["accuracy"]
    return meta
