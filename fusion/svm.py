"""The fusion SVM: model selection by speaker-grouped CV.

The fitted model, :class:`ser.fusion_model.FusionModel` (a standard scaler +
:class:`sklearn.svm.SVC` with the order of its inputs), lives in the library:
inference loads it.
"""

import logging
import warnings

import numpy as np
from sklearn.exceptions import UndefinedMetricWarning
from sklearn.model_selection import GridSearchCV, StratifiedGroupKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC

from ser.emotions import EMOTIONS
from ser.fusion_model import FusionModel, softmax

logger = logging.getLogger(__name__)

__all__ = ["FusionModel", "speaker_folds", "fit_fusion_model", "softmax"]

DEFAULT_KERNELS = ("linear", "rbf")
DEFAULT_C = (0.1, 1.0, 10.0)
# Used when a training set has too few speakers for an inner cross-validation.
FALLBACK_PARAMS = {"kernel": "rbf", "C": 1.0, "class_weight": "balanced"}


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
