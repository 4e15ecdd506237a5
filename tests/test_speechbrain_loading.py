"""An exported package loads with SpeechBrain's own ``foreign_class``, from a local folder.

The package is the five debug systems and their fusion (``demo_package`` in conftest.py). What
SpeechBrain returns is checked against :class:`ser.inference.EmotionRecognizer` on the same files.
"""

import filecmp
import math

import numpy as np
import pytest
import soundfile
import torch

from ser.emotions import EMOTION_NAMES, EMOTIONS
from ser.inference import speechbrain_interface
from ser.inference.recognizer import EmotionRecognizer


@pytest.fixture(scope="module")
def clips(mini_corpus):
    return sorted((mini_corpus / "Audios").glob("*test3*.wav"))[:2]


def _foreign_class(source, **kwargs):
    from speechbrain.inference.interfaces import foreign_class

    return foreign_class(source=str(source), pymodule_file="custom_interface.py",
                         classname="EmotionRecognition", **kwargs)


def test_package_holds_what_foreign_class_reads(demo_package):
    package = demo_package[0]
    assert filecmp.cmp(package / speechbrain_interface.INTERFACE_FILE, speechbrain_interface.__file__,
                       shallow=False)
    hparams = (package / "hyperparams.yaml").read_text()
    assert "!PLACEHOLDER" not in hparams and hparams == speechbrain_interface.PACKAGE_HPARAMS


@pytest.mark.parametrize("savedir", [False, True], ids=["in_place", "savedir"])
def test_foreign_class_returns_speechbrains_four_tuple(demo_package, clips, tmp_path, savedir):
    package = demo_package[0]
    kwargs = {"savedir": tmp_path / "pretrained"} if savedir else {}
    classifier = _foreign_class(package, **kwargs)
    reference = EmotionRecognizer.from_pretrained(package).classify_files(clips)

    out_prob, score, index, text_lab = classifier.classify_file(str(clips[0]))
    assert out_prob.shape == (1, len(EMOTIONS)) and score.shape == (1,) and index.shape == (1,)
    assert text_lab == [reference[0].label] and EMOTIONS[int(index)] == reference[0].label
    np.testing.assert_allclose(out_prob.exp().numpy()[0], [reference[0].probabilities[c] for c in EMOTIONS],
                               atol=1e-6)
    assert math.isclose(float(score), float(out_prob.max()))
    assert classifier.id2label == {i: EMOTION_NAMES[c] for i, c in enumerate(EMOTIONS)}

    # A padded batch with relative lengths, as SpeechBrain's classify_batch takes it.
    audio = [soundfile.read(clip, dtype="float32")[0] for clip in clips]
    longest = max(len(a) for a in audio)
    wavs = torch.tensor(np.stack([np.pad(a, (0, longest - len(a))) for a in audio]))
    wav_lens = torch.tensor([len(a) / longest for a in audio])
    out_prob, score, index, text_lab = classifier.classify_batch(wavs, wav_lens)
    assert text_lab == [r.label for r in reference]
    np.testing.assert_allclose(out_prob.exp().numpy(),
                               [[r.probabilities[c] for c in EMOTIONS] for r in reference], atol=1e-5)


def test_a_bad_file_is_one_clear_error(demo_package, tmp_path):
    from ser.errors import UserInputError

    classifier = _foreign_class(demo_package[0])
    empty = tmp_path / "empty.wav"
    empty.write_bytes(b"")
    with pytest.raises(UserInputError, match="empty.wav"):
        classifier.classify_file(str(empty))


def test_interface_outside_a_package_says_so(tmp_path):
    from ser.errors import UserInputError

    with pytest.raises(UserInputError, match="not inside a model package"):
        speechbrain_interface.package_folder(tmp_path / speechbrain_interface.INTERFACE_FILE)
