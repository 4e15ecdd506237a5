"""The fitted score-level fusion (paper §7) and how it is loaded.

:class:`FusionModel` holds a fitted standard scaler + :class:`sklearn.svm.SVC`
together with the order of its inputs (systems, then classes within each
system's block), so a saved model cannot be fed posteriors in the wrong order.
``fusion/`` fits it (:func:`fusion.svm.fit_fusion_model`) and calibrates its
probabilities (a temperature, :mod:`ser.calibration`); inference only loads and
applies it.
"""

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ser.calibration import scaled_softmax
from ser.errors import UserInputError
from ser.io.system_folder import SystemIdentity, SystemIdentityError

__all__ = ["FusionModel", "FusionFolderError", "softmax", "load_fusion", "load_fusion_identities",
           "AttributeFusion", "load_attribute_fusion", "ATTRIBUTE_MODEL_FILE", "ATTRIBUTE_FUSION_METRICS",
           "split_fusion_dirs",
           "MODEL_FILE", "MODEL_INFO_FILE"]

#: The fitted model (joblib) and its description (JSON) in a fusion folder.
MODEL_FILE = "fusion_model.joblib"
MODEL_INFO_FILE = "fusion_model.json"

logger = logging.getLogger(__name__)


class FusionFolderError(UserInputError, ValueError):
    """A fusion folder without a usable ``fusion_model.joblib`` (names the file)."""


def softmax(scores):
    """Row-wise softmax; ``-inf`` (a class unseen in training) becomes 0.

    Example
    -------
    >>> softmax(np.array([[0.0, 0.0, -np.inf]])).tolist()
    [[0.5, 0.5, 0.0]]
    """
    return scaled_softmax(scores, 1.0)


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
    temperature : float or None
        The decision values are divided by it before the softmax of :meth:`predict_proba`
        (temperature scaling fitted on out-of-fold dev scores, :mod:`ser.calibration`); None for
        a model saved without calibration (its probabilities are then plain softmax scores).
    """

    systems: list
    classes: tuple
    estimator: object
    params: dict
    constant_class: str = None
    # A class-level default, so models pickled before calibration existed load with None.
    temperature: float = None

    @property
    def calibrated(self):
        """Whether :meth:`predict_proba` gives calibrated probabilities."""
        return self.temperature is not None

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
        """Class probabilities, ``(n, 8)``: ``softmax(decision_scores / temperature)``.

        Rows sum to 1 and their argmax is :meth:`predict` (a temperature never changes it). A
        model without :attr:`temperature` gives the plain softmax of the scores, which is not
        calibrated.

        Example
        -------
        >>> from sklearn.svm import LinearSVC
        >>> from ser.emotions import EMOTIONS
        >>> labels = np.array(list("AHNS") * 10)
        >>> posteriors = np.eye(8)[[EMOTIONS.index(c) for c in labels]] * 0.6 + 0.05
        >>> model = FusionModel(["sys"], EMOTIONS, LinearSVC().fit(posteriors, labels), {})
        >>> sharp = model.predict_proba(posteriors[:1])
        >>> model.temperature = 4.0
        >>> flat = model.predict_proba(posteriors[:1])
        >>> bool(flat.max() < sharp.max()), bool(flat.argmax() == sharp.argmax())
        (True, True)
        """
        scores = self.decision_scores(posteriors)
        return scaled_softmax(scores, self.temperature) if self.calibrated else softmax(scores)

    def predict(self, posteriors):
        """Predicted class letters, ``(n,)`` array of str.

        Example
        -------
        >>> from sklearn.svm import SVC
        >>> from ser.emotions import EMOTIONS
        >>> labels = np.array(list("AHNS") * 10)
        >>> posteriors = np.eye(8)[[EMOTIONS.index(c) for c in labels]] * 0.6 + 0.05
        >>> model = FusionModel(["sys"], EMOTIONS, SVC(kernel="linear").fit(posteriors, labels), {})
        >>> "".join(model.predict(posteriors[:4]))
        'AHNS'
        """
        scores = self.decision_scores(posteriors)
        return np.asarray(self.classes)[scores.argmax(axis=1)]


def load_fusion(folder):
    """Load the fusion model written by ``python -m fusion.fuse`` (or exported) in ``folder``.

    Returns
    -------
    FusionModel
        Call ``model.predict([posteriors_a, ..., posteriors_e])`` (or with the
        concatenated ``(n, 8 * n_systems)`` array) to get class letters.

    Raises
    ------
    FusionFolderError
        No ``fusion_model.joblib`` in ``folder``, or one that cannot be loaded or holds something else.

    Example
    -------
    >>> load_fusion("no/such/folder")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ser.fusion_model.FusionFolderError: no/such/folder/fusion_model.joblib: no fusion model (run ...)
    """
    import joblib

    path = Path(folder) / MODEL_FILE
    if not path.is_file():
        raise FusionFolderError(f"{path}: no fusion model (run python -m fusion.fuse first)")
    try:
        model = joblib.load(path)
    except Exception as error:  # noqa: BLE001 - a cut or foreign file fails in many ways inside pickle
        raise FusionFolderError(
            f"{path}: cannot be loaded ({type(error).__name__}: {error}); damaged or cut short: "
            "run python -m fusion.fuse again"
        ) from error
    if not isinstance(model, FusionModel):
        raise FusionFolderError(f"{path}: holds a {type(model).__name__}, not a FusionModel")
    if not model.calibrated:
        logger.warning("%s: fitted without calibration; its probabilities are softmax scores, not "
                       "calibrated (run python -m fusion.fuse again to calibrate them)", path)
    return model


def load_fusion_identities(folder):
    """The identities of the systems the fusion in ``folder`` was trained on, in its input order.

    Raises
    ------
    SystemIdentityError
        When ``fusion_model.json`` is missing, unreadable or records no identity for a system
        (fused from posteriors without ``system.json``): nothing could check the systems given.

    Example
    -------
    >>> load_fusion_identities("no/such/folder")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ser.io.system_folder.SystemIdentityError: no/such/folder/fusion_model.json: no record of the fused ...
    """
    path = Path(folder) / MODEL_INFO_FILE
    try:
        recorded = json.loads(path.read_text(encoding="utf-8"))["system_identities"]
        identities = [SystemIdentity(**item) if item else None for item in recorded]
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise SystemIdentityError(
            f"{path}: no record of the fused systems' identities ({type(error).__name__}: {error}); "
            "run python -m fusion.fuse again"
        ) from None
    if None in identities:
        raise SystemIdentityError(
            f"{path}: system {identities.index(None) + 1} was fused without its system.json, so the "
            "systems given cannot be checked; fuse folders written by train.py"
        )
    return identities


#: The fitted Task 2 fusion (joblib) in a folder written by ``python -m fusion.attributes``.
ATTRIBUTE_MODEL_FILE = "attribute_fusion.joblib"
#: Its dev scores (CCC per attribute, per system and fused), beside it.
ATTRIBUTE_FUSION_METRICS = "attribute_fusion_metrics.json"


@dataclass
class AttributeFusion:
    """Fitted Task 2 fusion: one regressor per attribute on the systems' concatenated predictions.

    ``fusion.attributes`` fits it; inference only loads and applies it, which is why it lives in
    the library (a package loads it with nothing but ``ser`` installed).

    Attributes
    ----------
    systems : list of str
        Attribute systems, in the order their predictions are concatenated.
    attributes : tuple of str
        ``EmoAct``, ``EmoVal``, ``EmoDom``: the order of each block and of the outputs.
    regressors : list
        One fitted scikit-learn regressor per attribute.
    alphas : list of float
        The ridge regularisation chosen for each attribute.
    """

    systems: list
    attributes: tuple
    regressors: list
    alphas: list

    def predict(self, blocks):
        """``(n, n_attributes)`` fused values from a list of per-system ``(n, n_attributes)`` blocks
        (or their concatenation), clipped to the 1-7 scale.

        Example
        -------
        >>> from sklearn.linear_model import LinearRegression
        >>> x = np.array([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]])
        >>> fusion = AttributeFusion(["a"], ("EmoAct",), [LinearRegression().fit(x, [2.0, 4.0, 9.0])], [0])
        >>> fusion.predict([x]).shape, float(fusion.predict([x]).max())
        ((3, 1), 7.0)
        """
        features = np.hstack(blocks) if isinstance(blocks, (list, tuple)) else np.asarray(blocks)
        return np.clip(np.column_stack([r.predict(features) for r in self.regressors]), 1.0, 7.0)


def load_attribute_fusion(folder):
    """Load the :class:`AttributeFusion` of ``folder`` (``python -m fusion.attributes --out``).

    Raises
    ------
    FusionFolderError
        No ``attribute_fusion.joblib`` in ``folder``, or one that cannot be loaded or holds something else.

    Example
    -------
    >>> load_attribute_fusion("no/such/folder")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ser.fusion_model.FusionFolderError: no/such/folder/attribute_fusion.joblib: no Task 2 fusion model ...
    """
    import joblib

    path = Path(folder) / ATTRIBUTE_MODEL_FILE
    if not path.is_file():
        raise FusionFolderError(f"{path}: no Task 2 fusion model (run python -m fusion.attributes first)")
    try:
        model = joblib.load(path)
    except Exception as error:  # noqa: BLE001 - a cut or foreign file fails in many ways inside pickle
        raise FusionFolderError(f"{path}: cannot be loaded ({type(error).__name__}: {error}); damaged or "
                                "cut short: run python -m fusion.attributes again") from error
    if not isinstance(model, AttributeFusion):
        raise FusionFolderError(f"{path}: holds a {type(model).__name__}, not an AttributeFusion")
    return model


def split_fusion_dirs(fusion_dirs):
    """``(Task 1 fusion folder, Task 2 fusion folder)`` among the ``--fusion`` folders (None if absent).

    A Task 1 fusion folder (``python -m fusion.fuse``) holds ``fusion_model.joblib``; a Task 2 one
    (``python -m fusion.attributes``) holds ``attribute_fusion.joblib``.

    Example
    -------
    >>> import tempfile
    >>> task1, task2 = Path(tempfile.mkdtemp()), Path(tempfile.mkdtemp())
    >>> _ = (task1 / "fusion_model.joblib").write_bytes(b"")
    >>> _ = (task2 / "attribute_fusion.joblib").write_bytes(b"")
    >>> split_fusion_dirs([task2, task1]) == (task1, task2)
    True
    """
    found = {"task1": None, "task2": None}
    for folder in map(Path, fusion_dirs or ()):
        kind = ("task1" if (folder / MODEL_FILE).is_file()
                else "task2" if (folder / ATTRIBUTE_MODEL_FILE).is_file() else None)
        if kind is None:
            raise FusionFolderError(f"{folder}: no fusion model ({MODEL_FILE} of python -m fusion.fuse or "
                                    f"{ATTRIBUTE_MODEL_FILE} of python -m fusion.attributes)")
        if found[kind] is not None:
            raise FusionFolderError(f"--fusion {folder}: a second {kind.replace('task', 'Task ')} fusion "
                              f"(the first is {found[kind]})")
        found[kind] = folder
    return found["task1"], found["task2"]
