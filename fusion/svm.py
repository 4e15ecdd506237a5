"""The fusion SVM: model selection by speaker-grouped CV, and the fitted model.

:class:`FusionModel` holds a fitted standard scaler + :class:`sklearn.svm.SVC`
together with the order of its inputs (systems, then classes within each
system's block), so a saved model cannot be fed posteriors in the wrong order.
"""

import logging
import warnings
from dataclasses import dataclass

import numpy as np
from sklearn.exceptions import UndefinedMetricWarning
from sklearn.model_selection import GridSearchCV, StratifiedGroupKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC

from ser.emotions import EMOTIONS

logger = logging.getLogger(__name__)

__all__ = ["FusionModel", "speaker_folds", "fit_fusion_model", "softmax"]

DEFAULT_KERNELS = ("linear", "rbf")
DEFAULT_C = (0.1, 1.0, 10.0)
# Used when a training set has too few speakers for an inner cross-validation.
FALLBACK_PARAMS = {"kernel": "rbf", "C": 1.0, "class_weight": "balanced"}


def softmax(scores):
    """Row-wise softmax; ``-inf`` (a class unseen in training) becomes 0.

    Example
    -------
    >>> softmax(np.array([[0.0, 0.0, -np.inf]])).tolist()
    [[0.5, 0.5, 0.0]]
    """
    shifted = np.exp(scores - scores.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)


@dataclass
class FusionModel:
    """A fitted fusion SVM with the order of its inputs and outputs.

    Attributes
    ----------
    systems : list of str
        Sub-system names, in the order their posteriors are concatenated.
    classes : tuple of str
        Class order of each posterior block and of the outputs.
    estimator : sklearn Pipeline or None
        Standard scaler + SVC; ``None`` when dev held a single class.
    params : dict
        ``kernel``, ``C``, ``class_weight`` and, when an inner search ran,
        its mean macro-F1 ``selection_f1``.
    constant_class : str or None
        The class predicted when ``estimator`` is None.
    """

    systems: list
    classes: tuple
    estimator: object
    params: dict
    constant_class: str = None

    @property
    def n_features(self):
        return len(self.systems) * len(self.classes)

    def features(self, posteriors):
        """Turn a list of per-system posteriors (or their concatenation) into features.

        Parameters
        ----------
        posteriors : list of array-like or array-like
            Either one ``(n, 8)`` block per system, in :attr:`systems` order
            (DataFrames must have the class columns in order), or the
            ``(n, 8 * n_systems)`` concatenation of those blocks.
        """
        if isinstance(posteriors, (list, tuple)):
            if len(posteriors) != len(self.systems):
                raise ValueError(
                    f"got {len(posteriors)} posterior blocks; the fusion takes one per system: "
                    f"{', '.join(self.systems)}"
                )
            for system, block in zip(self.systems, posteriors, strict=True):
                if hasattr(block, "columns") and tuple(block.columns) != tuple(self.classes):
                    raise ValueError(f"posteriors of {system}: columns {list(block.columns)}, "
                                     f"expected {list(self.classes)}")
            posteriors = np.hstack([np.asarray(block, dtype=np.float64) for block in posteriors])
        features = np.asarray(posteriors, dtype=np.float64)
        if features.ndim == 1:
            features = features[None, :]
        if features.ndim != 2 or features.shape[1] != self.n_features:
            raise ValueError(
                f"features of shape {features.shape}: expected (n, {self.n_features}), the posteriors "
                f"of {', '.join(self.systems)} concatenated in that order, each in class order "
                f"{' '.join(self.classes)}"
            )
        return features

    def decision_scores(self, posteriors):
        """One-vs-rest SVM decision values, ``(n, 8)``; ``-inf`` for classes unseen in training."""
        features = self.features(posteriors)
        scores = np.full((len(features), len(self.classes)), -np.inf)
        if self.estimator is None:
            scores[:, self.classes.index(self.constant_class)] = 0.0
            return scores
        values = self.estimator.decision_function(features)
        if values.ndim == 1:  # two classes: one signed value for the second class
            values = np.stack([-values, values], axis=1)
        columns = [self.classes.index(c) for c in self.estimator.classes_]
        scores[:, columns] = values
        return scores

    def predict_proba(self, posteriors):
        """Softmax of :meth:`decision_scores`: normalised scores, not calibrated probabilities.

        Rows sum to 1 and their argmax is :meth:`predict`.
        """
        return softmax(self.decision_scores(posteriors))

    def predict(self, posteriors):
        """Predicted class letters, ``(n,)`` array of str.

        Example
        -------
        >>> rng = np.random.default_rng(0)
        >>> labels = np.array(list("AHNS") * 10)
        >>> posteriors = np.eye(8)[[EMOTIONS.index(c) for c in labels]] * 0.6 + 0.05
        >>> model = fit_fusion_model(posteriors, labels, np.arange(40) % 4, ["sys"], c_values=(1.0,))
        >>> "".join(model.predict(posteriors[:4]))
        'AHNS'
        """
        scores = self.decision_scores(posteriors)
        return np.asarray(self.classes)[scores.argmax(axis=1)]


def speaker_folds(labels, speakers, n_folds=5, seed=0):
    """Speaker-disjoint folds, stratified by class as far as the speakers allow.

    Parameters
    ----------
    labels, speakers : array-like
        One class letter and one speaker id per turn. All turns of one
        speaker id (``Unknown`` included) land in the same fold.
    n_folds : int
        Wanted folds; capped at the number of speakers.
    seed : int
        Shuffles the speakers.

    Returns
    -------
    list of (numpy.ndarray, numpy.ndarray)
        ``(train_indices, test_indices)`` per fold; every turn is tested once.

    Example
    -------
    >>> folds = speaker_folds(list("ANAN"), ["s1", "s1", "s2", "s2"], n_folds=5)
    >>> [test.tolist() for _, test in folds]
    [[2, 3], [0, 1]]
    """
    labels, speakers = np.asarray(labels), np.asarray(speakers)
    if len(labels) != len(speakers):
        raise ValueError(f"{len(labels)} labels but {len(speakers)} speakers")
    n_speakers = len(set(speakers.tolist()))
    if n_speakers < 2:
        raise ValueError(f"speaker-disjoint folds need at least 2 speakers, dev has {n_speakers}")
    n_splits = min(n_folds, n_speakers)
    splitter = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    _, counts = np.unique(labels, return_counts=True)
    if counts.max() < n_splits:
        # No class fills every fold (tiny sets): stratifying is impossible, group only.
        labels = np.zeros(len(labels), dtype=int)
    with warnings.catch_warnings():
        # Rare classes with fewer turns than folds are expected on small dev sets.
        warnings.filterwarnings("ignore", message=".*least populated class.*")
        return list(splitter.split(np.zeros(len(labels)), labels, groups=speakers))


def _svm_pipeline(seed):
    # Posteriors of different systems have different spreads: standardise them.
    return make_pipeline(StandardScaler(), SVC(cache_size=500, random_state=seed))


def fit_fusion_model(features, labels, speakers, systems, kernels=DEFAULT_KERNELS, c_values=DEFAULT_C,
                     inner_folds=3, seed=0):
    """Fit the fusion SVM, choosing kernel, C and class weights by grouped inner CV.

    Parameters
    ----------
    features : numpy.ndarray
        ``(n, 8 * len(systems))`` concatenated posteriors.
    labels, speakers : array-like
        Class letter and speaker id per row.
    systems : list of str
        Names of the systems, in feature order.
    kernels, c_values : sequence
        The grid; class weights ``None`` and ``"balanced"`` are both tried.
    inner_folds : int
        Speaker-disjoint folds of the inner search (capped at the speakers).
    seed : int
        Fold shuffling.

    Returns
    -------
    FusionModel

    Example
    -------
    >>> x = np.vstack([np.eye(8)[[0]] + 0.1, np.eye(8)[[5]] + 0.1] * 6)
    >>> model = fit_fusion_model(x, list("AN") * 6, np.arange(12) % 3, ["s"], kernels=("linear",))
    >>> sorted(model.params)
    ['C', 'class_weight', 'kernel', 'selection_f1']
    """
    labels, speakers = np.asarray(labels), np.asarray(speakers)
    present = sorted(set(labels.tolist()))
    if len(present) < 2:
        logger.warning("training set holds one class (%s): the fusion predicts it always", present)
        return FusionModel(list(systems), EMOTIONS, None, {"constant": present[0]}, present[0])
    n_inner = min(inner_folds, len(set(speakers.tolist())))
    folds = speaker_folds(labels, speakers, n_inner, seed) if n_inner >= 2 else []
    if not folds or any(len(set(labels[train].tolist())) < 2 for train, _ in folds):
        # Too few speakers (or classes per inner fold) to compare candidates fairly.
        logger.warning("%d speaker(s) in this training set: no inner search, using %s",
                       len(set(speakers.tolist())), FALLBACK_PARAMS)
        params = dict(FALLBACK_PARAMS)
        estimator = _svm_pipeline(seed).set_params(**{f"svc__{k}": v for k, v in params.items()})
        estimator.fit(features, labels)
        return FusionModel(list(systems), EMOTIONS, estimator, params)
    grid = {"svc__kernel": list(kernels), "svc__C": [float(c) for c in c_values],
            "svc__class_weight": [None, "balanced"]}
    search = GridSearchCV(_svm_pipeline(seed), grid, scoring="f1_macro", refit=True,
                          cv=folds)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=UndefinedMetricWarning)
        search.fit(features, labels)
    params = {key.removeprefix("svc__"): value for key, value in search.best_params_.items()}
    params["selection_f1"] = float(search.best_score_)
    return FusionModel(list(systems), EMOTIONS, search.best_estimator_, params)
