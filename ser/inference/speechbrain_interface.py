"""SpeechBrain's own loader for an exported package: ``foreign_class`` and its 4-tuple.

``python -m ser.export`` copies this file into every package as ``custom_interface.py``, beside a
``hyperparams.yaml`` made for SpeechBrain (:data:`PACKAGE_HPARAMS`), so that a package loads the
way SpeechBrain's own emotion models do::

    from speechbrain.inference.interfaces import foreign_class

    classifier = foreign_class(source="my_model", pymodule_file="custom_interface.py",
                               classname="EmotionRecognition")
    out_prob, score, index, text_lab = classifier.classify_file("turn.wav")

``out_prob`` holds log-probabilities ``(batch, 8)`` in the class order ``A C D F H N S U``
(SpeechBrain's classifiers return log-posteriors), ``score`` the best one, ``index`` its position
and ``text_lab`` the class letters; ``classifier.id2label`` maps positions to full names
(``Anger`` ...). The work is done by :class:`ser.inference.EmotionRecognizer` (the richer API:
transcripts, attributes, timelines), reached as ``classifier.recognizer``. Loading runs this file's
code, so load packages only from sources you trust (SpeechBrain's warning for ``foreign_class``).
"""

import os
from pathlib import Path

import torch
from speechbrain.inference.interfaces import Pretrained

from ser.emotions import EMOTION_NAMES
from ser.errors import UserInputError
from ser.inference.package import MANIFEST
from ser.io import SAMPLE_RATE

__all__ = ["EmotionRecognition", "INTERFACE_FILE", "CLASS_NAME", "PACKAGE_HPARAMS", "package_folder"]

#: The name of this file in a package, and the class ``foreign_class`` is given.
INTERFACE_FILE = "custom_interface.py"
CLASS_NAME = "EmotionRecognition"

#: The package's top-level ``hyperparams.yaml``: what ``foreign_class`` requires of it, nothing more
#: (the systems' own files are under ``systems/``; the interface loads them itself).
PACKAGE_HPARAMS = """\
# Read by SpeechBrain's foreign_class (custom_interface.py). The systems' hyperparameters are in
# systems/<name>/hyperparams.yaml; EmotionRecognition loads them with the library (msp-ser).
modules: {}
pretrainer: !new:speechbrain.utils.parameter_transfer.Pretrainer
    loadables: {}
"""


def package_folder(interface_file):
    """The package that holds ``interface_file``, following the symbolic links SpeechBrain makes.

    SpeechBrain's fetcher links the file into ``savedir`` (or its cache); the package is the first
    folder along the chain of links that holds ``ser_package.json``.

    Raises
    ------
    ser.errors.UserInputError
        If no folder along the chain is a package.

    Example
    -------
    >>> import tempfile
    >>> package, elsewhere = Path(tempfile.mkdtemp()), Path(tempfile.mkdtemp())
    >>> _ = (package / "ser_package.json").write_text("{}"), (package / INTERFACE_FILE).write_text("")
    >>> (elsewhere / INTERFACE_FILE).symlink_to(package / INTERFACE_FILE)
    >>> package_folder(elsewhere / INTERFACE_FILE) == package
    True
    """
    path, seen = Path(interface_file).absolute(), set()
    while path not in seen:
        seen.add(path)
        if (path.parent / MANIFEST).is_file():
            return path.parent
        if not path.is_symlink():
            break
        path = (path.parent / os.readlink(path)).absolute()
    raise UserInputError(f"{interface_file}: not inside a model package (no {MANIFEST} beside it or "
                         "along its links); pass package=<folder> to foreign_class")


class EmotionRecognition(Pretrained):
    """A package as a SpeechBrain ``Pretrained`` interface (built by ``foreign_class``).

    Parameters
    ----------
    modules, hparams, run_opts, freeze_params
        As SpeechBrain's ``Pretrained`` (``run_opts={"device": "cuda"}`` picks the device).
    package : str or Path, optional
        The package folder, when this file is not read from inside it.
    batch_size : int
        Windows per forward pass.
    """

    def __init__(self, *args, package=None, batch_size=8, **kwargs):
        super().__init__(*args, **kwargs)
        from ser.inference.recognizer import EmotionRecognizer

        folder = Path(package) if package is not None else package_folder(__file__)
        #: The :class:`ser.inference.EmotionRecognizer` doing the work (transcripts, attributes ...).
        self.recognizer = EmotionRecognizer.from_pretrained(folder, device=str(self.device),
                                                            batch_size=batch_size)
        self.classes = tuple(self.recognizer.classes)
        #: Position in ``out_prob`` → full class name, as a Hugging Face ``id2label``.
        self.id2label = {i: EMOTION_NAMES.get(c, c) for i, c in enumerate(self.classes)}

    def classify_batch(self, wavs, wav_lens=None, sample_rate=SAMPLE_RATE):
        """Classify a padded batch of waveforms, SpeechBrain's way.

        Parameters
        ----------
        wavs : torch.Tensor
            ``(batch, samples)`` or ``(samples,)``, at ``sample_rate`` (resampled to 16 kHz if not).
        wav_lens : torch.Tensor, optional
            Relative lengths in (0, 1] of the padded batch; all 1 if not given.
        sample_rate : int

        Returns
        -------
        out_prob : torch.Tensor
            ``(batch, n_classes)`` log-probabilities (fused when the package holds a fusion).
        score : torch.Tensor
            ``(batch,)`` the highest log-probability.
        index : torch.Tensor
            ``(batch,)`` its class position.
        text_lab : list of str
            The predicted class letters.
        """
        if not self.classes:
            raise UserInputError("this package predicts attributes only (Task 2): use "
                                 ".recognizer.classify_batch(...) and each Result's .attributes")
        if isinstance(wav_lens, torch.Tensor):
            wav_lens = wav_lens.detach().cpu().tolist()
        results = self.recognizer.classify_batch(wavs, sample_rate=sample_rate, wav_lens=wav_lens)
        return self._as_tuple(results)

    def classify_file(self, path):
        """Classify one audio file (any format, rate and channel count): the 4-tuple, batch of one."""
        if not self.classes:
            return self.classify_batch(None)
        result = self.recognizer.classify_file(path)
        if result.error is not None:
            raise UserInputError(result.error)
        return self._as_tuple([result])

    def forward(self, wavs, wav_lens=None):
        """Runs :meth:`classify_batch` (SpeechBrain's convention for ``Pretrained.forward``)."""
        return self.classify_batch(wavs, wav_lens)

    def _as_tuple(self, results):
        rows = [[r.probabilities[c] for c in self.classes] for r in results]
        probs = torch.tensor(rows, dtype=torch.float32)
        # Classes the fusion never saw have probability 0: their log is -inf, as SpeechBrain's would be.
        out_prob = probs.log()
        score, index = out_prob.max(dim=-1)
        return out_prob, score, index, [self.classes[i] for i in index.tolist()]
