"""The fusion SVM: model selection by speaker-grouped CV.

The fitted model, :class:`ser.fusion_model.FusionModel` (a standard scaler +
SVM with the order of its inputs), lives in the library: inference loads it.

Two searches over the same grid (kernel x C x class weight):

- ``fast`` (default): the linear kernel is a linear SVM solved in the primal
  (:class:`sklearn.svm.LinearSVC`, one-vs-rest, on every turn); the other
  kernels are :class:`sklearn.svm.SVC` fitted on a class-stratified sample of at
  most ``kernel_max_turns`` turns (all turns when fewer), in the search and in
  the final fit alike, so a candidate is scored as it is used. Kernel SVMs cost
  about n^2 to fit, so this bounds the whole fusion to about linear time: at
  MSP-Podcast size (19,815 dev turns x 5 systems) ``bench/fusion.py`` measures
  it at about 160 CPU seconds, instead of about an hour.
- ``exact``: :class:`sklearn.svm.SVC` with every kernel on every turn (the
  search before ``fast``; fine for a few thousand turns).

Calibration: once kernel, C and class weight are chosen, the chosen configuration
is fitted again on each inner fold's training speakers and scores the held-out
ones; a temperature fitted on those out-of-fold decision values
(:func:`ser.calibration.fit_temperature`) is stored in the model. It must come
from the same configuration: a linear SVM's one-vs-rest values span about
[-2, 2], a kernel SVC's (votes plus a confidence) about [-0.5, 7.5], so one
temperature fitted on a mixture of the two fits neither.
"""

import logging
import warnings

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.exceptions import ConvergenceWarning, UndefinedMetricWarning
from sklearn.model_selection import GridSearchCV, StratifiedGroupKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC, LinearSVC

from ser.calibration import fit_temperature
from ser.emotions import EMOTIONS
from ser.fusion_model import FusionModel, softmax

logger = logging.getLogger(__name__)

__all__ = ["FusionModel", "speaker_folds", "fit_fusion_model", "softmax", "SEARCHES"]

DEFAULT_KERNELS = ("linear", "rbf")
DEFAULT_C = (0.1, 1.0, 10.0)
SEARCHES = ("fast", "exact")
# Kernel SVCs of the fast search see at most this many turns: fitting one and scoring
# it on 5,000 turns then takes about 0.3 s of CPU.
DEFAULT_KERNEL_MAX_TURNS = 1000
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


def stratified_sample(labels, max_turns, seed=0):
    """Row indices of a class-stratified random sample of about ``max_turns`` rows (all when fewer).

    Every class keeps at least one row, so a kernel SVM fitted on the sample knows every
    class of the full set.

    Example
    -------
    >>> labels = np.array(list("N" * 90 + "A" * 9 + "F"))
    >>> rows = stratified_sample(labels, 20)
    >>> sorted("".join(labels[rows]).count(c) for c in "ANF")
    [1, 2, 18]
    >>> len(stratified_sample(labels, 500))
    100
    """
    labels = np.asarray(labels)
    if max_turns is None or len(labels) <= max_turns:
        return np.arange(len(labels))
    rng = np.random.default_rng(seed)
    rows = []
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        share = max(1, round(max_turns * len(members) / len(labels)))
        rows.append(rng.choice(members, size=min(share, len(members)), replace=False))
    return np.sort(np.concatenate(rows))


def _svm_pipeline(kernel, C, class_weight, seed, search):
    # Posteriors of different systems have different spreads: standardise them.
    if search == "fast" and kernel == "linear":
        # The primal of a linear SVM costs about n (SVC's dual about n^2); one-vs-rest.
        svm = LinearSVC(C=C, class_weight=class_weight, dual=False, random_state=seed)
    else:
        svm = SVC(kernel=kernel, C=C, class_weight=class_weight, cache_size=500, random_state=seed)
    return make_pipeline(StandardScaler(), svm)


class _BudgetedSVM(ClassifierMixin, BaseEstimator):
    """A candidate of the search: the plain pipeline of :func:`_svm_pipeline`, fitted on the
    rows it would be fitted on in the final model (a sample for kernel SVMs of the fast search).

    Only the search uses it; the saved model is the plain scikit-learn pipeline.
    """

    def __init__(self, kernel="rbf", C=1.0, class_weight=None, seed=0, search="fast",
                 kernel_max_turns=DEFAULT_KERNEL_MAX_TURNS):
        self.kernel, self.C, self.class_weight = kernel, C, class_weight
        self.seed, self.search, self.kernel_max_turns = seed, search, kernel_max_turns

    def fit(self, features, labels):
        self.pipeline_ = _fit_candidate(features, np.asarray(labels), self.kernel, self.C,
                                        self.class_weight, self.seed, self.search, self.kernel_max_turns)
        self.classes_ = self.pipeline_.classes_
        return self

    def predict(self, features):
        return self.pipeline_.predict(features)


def _fit_candidate(features, labels, kernel, C, class_weight, seed, search, kernel_max_turns):
    rows = np.arange(len(labels))
    if search == "fast" and kernel != "linear":
        rows = stratified_sample(labels, kernel_max_turns, seed)
    with warnings.catch_warnings():
        # liblinear's primal solver may stop at max_iter on noisy, overlapping posteriors;
        # its solution is then still the one that the search scored.
        warnings.filterwarnings("ignore", category=ConvergenceWarning)
        return _svm_pipeline(kernel, C, class_weight, seed, search).fit(features[rows], labels[rows])


def _fit_calibration(features, labels, folds, params, seed, search, kernel_max_turns, systems, classes):
    """Temperature of the configuration ``params``, fitted on its out-of-fold decision values.

    Turns whose class a fold's training set lacked have no finite score for it: they say nothing
    about the scale of the scores (and the final model, fitted on every turn, knows the class),
    so they are left out of the fit. None when no fold scores any turn.
    """
    scores = np.full((len(labels), len(classes)), -np.inf)
    for train, test in folds:
        estimator = _fit_candidate(features[train], labels[train], params["kernel"], params["C"],
                                   params["class_weight"], seed, search, kernel_max_turns)
        fold_model = FusionModel(list(systems), tuple(classes), estimator, {})
        scores[test] = fold_model.decision_scores(features[test])
    rows = np.isfinite(scores[np.arange(len(labels)), [list(classes).index(c) for c in labels]])
    if not rows.any():
        return None
    return fit_temperature(scores[rows], labels[rows], classes)


def fit_fusion_model(features, labels, speakers, systems, kernels=DEFAULT_KERNELS, c_values=DEFAULT_C,
                     inner_folds=3, seed=0, search="fast", kernel_max_turns=DEFAULT_KERNEL_MAX_TURNS,
                     n_jobs=1, classes=EMOTIONS):
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
        Fold shuffling (and the sample of the fast search's kernel SVMs).
    search : {"fast", "exact"}
        How candidates are fitted (module docstring).
    kernel_max_turns : int
        Largest training set of a kernel SVM in the fast search.
    n_jobs : int
        Candidates fitted in parallel (scikit-learn's ``n_jobs``: -1 for every core).
    classes : sequence of str
        Class order of each system's block (the systems' ``system.json``), and of the outputs.

    Returns
    -------
    FusionModel
        With its calibration :attr:`~ser.fusion_model.FusionModel.temperature` (module
        docstring); None when there were too few speakers for an inner cross-validation.

    Example
    -------
    >>> x = np.vstack([np.eye(8)[[0]] + 0.1, np.eye(8)[[5]] + 0.1] * 6)
    >>> model = fit_fusion_model(x, list("AN") * 6, np.arange(12) % 3, ["s"], kernels=("linear",))
    >>> sorted(model.params), model.temperature > 0
    (['C', 'class_weight', 'kernel', 'search', 'selection_f1'], True)
    """
    if search not in SEARCHES:
        raise ValueError(f"search {search!r}: expected one of {', '.join(SEARCHES)}")
    labels, speakers = np.asarray(labels), np.asarray(speakers)
    present = sorted(set(labels.tolist()))
    if len(present) < 2:
        logger.warning("training set holds one class (%s): the fusion predicts it always", present)
        return FusionModel(list(systems), tuple(classes), None, {"constant": present[0]}, present[0])
    n_inner = min(inner_folds, len(set(speakers.tolist())))
    folds = speaker_folds(labels, speakers, n_inner, seed) if n_inner >= 2 else []
    if not folds or any(len(set(labels[train].tolist())) < 2 for train, _ in folds):
        # Too few speakers (or classes per inner fold) to compare candidates fairly.
        logger.warning("%d speaker(s) in this training set: no inner search, using %s",
                       len(set(speakers.tolist())), FALLBACK_PARAMS)
        params = dict(FALLBACK_PARAMS)
        estimator = _fit_candidate(features, labels, **params, seed=seed, search=search,
                                   kernel_max_turns=kernel_max_turns)
        return FusionModel(list(systems), tuple(classes), estimator, {**params, "search": search})
    grid = {"kernel": list(kernels), "C": [float(c) for c in c_values], "class_weight": [None, "balanced"]}
    candidate = _BudgetedSVM(seed=seed, search=search, kernel_max_turns=kernel_max_turns)
    grid_search = GridSearchCV(candidate, grid, scoring="f1_macro", refit=False, cv=folds,
                               n_jobs=n_jobs)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=UndefinedMetricWarning)
        grid_search.fit(features, labels)
    params = dict(grid_search.best_params_)
    estimator = _fit_candidate(features, labels, **params, seed=seed, search=search,
                               kernel_max_turns=kernel_max_turns)
    temperature = _fit_calibration(features, labels, folds, params, seed, search, kernel_max_turns, systems,
                                   classes)
    params["search"] = search
    params["selection_f1"] = float(grid_search.best_score_)
    return FusionModel(list(systems), tuple(classes), estimator, params, temperature=temperature)
