"""What evaluating one split writes: its posteriors, attribute predictions and metrics.

``train.py`` evaluates every split but train; :meth:`EvaluationFiles.for_split` takes the
file names from the system folder's layout (:mod:`ser.io.system_folder`).
"""

import logging
from dataclasses import dataclass
from pathlib import Path

from ser.io.atomic import write_json_atomic
from ser.io.posteriors import write_attributes, write_posteriors
from ser.io.system_folder import attributes_file, metrics_file, posteriors_file
from ser.targets import EXCLUDED_LABEL

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class EvaluationFiles:
    """The files one evaluation writes (None: that file is not written).

    Example
    -------
    >>> files = EvaluationFiles.for_split("out", "test1")
    >>> str(files.posteriors), str(files.attributes), str(files.metrics)
    ('out/posteriors/test1.csv', 'out/attributes/test1.csv', 'out/metrics_test1.json')
    >>> EvaluationFiles.for_split("out", "test").metrics is None
    True
    """

    posteriors: Path = None
    attributes: Path = None
    metrics: Path = None

    @classmethod
    def for_split(cls, output_folder, split):
        return cls(posteriors=posteriors_file(output_folder, split),
                   attributes=attributes_file(output_folder, split),
                   metrics=metrics_file(output_folder, split))

    def write(self, targets, collected, stage_loss, class_report, attribute_scores, attribute_scale):
        """Write what ``targets`` produce from ``collected`` (:meth:`ser.targets.Targets.gathered`)."""
        names = [f"{uid}.wav" for uid in collected["ids"]]
        if self.posteriors and targets.classes:
            # Turns whose known label is outside the class set (X, O: kept for the attributes)
            # have no Task 1 posterior: fusion scores posteriors against the labels.
            rows = (collected["labels"] != EXCLUDED_LABEL).nonzero().view(-1).tolist()
            write_posteriors(self.posteriors, [names[i] for i in rows], collected["probs"][rows].numpy(),
                             classes=targets.classes)
            logger.info("Posteriors of %d turns written to %s", len(rows), self.posteriors)
        if self.attributes and targets.attributes:
            write_attributes(self.attributes, names, collected["attr_pred"].numpy(), targets.attributes,
                             scale=attribute_scale)
            logger.info("Attributes of %d turns written to %s", len(names), self.attributes)
        if self.has_metrics(class_report, attribute_scores):
            record = targets.metrics_record(stage_loss, len(names), class_report, attribute_scores)
            write_json_atomic(self.metrics, record, indent=2)

    def has_metrics(self, class_report, attribute_scores):
        """Whether this evaluation writes a metrics file (something labelled was scored)."""
        return bool(self.metrics and (class_report or attribute_scores))
