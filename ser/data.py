"""SpeechBrain datasets built from the preparation's JSON manifests.

Each item gives ``id``, ``sig`` (16 kHz mono waveform), ``emo_encoded`` (class
index in :data:`ser.emotions.EMOTIONS` order, or ``-1`` when the label is
hidden or not one of the 8 classes) and, for text systems, ``transcript``.

Length limits (so WavLM-large fits GPU memory):

- training: a turn longer than ``max_duration`` is **randomly cropped** to it
  (another window each epoch);
- evaluation: the **whole turn** is used up to ``eval_max_duration``; longer
  turns are **center-cropped** to it.
"""

import speechbrain as sb
import torch

from ser.audio import SAMPLE_RATE, crop_waveform, load_waveform
from ser.emotions import EMOTIONS

UNKNOWN_LABEL = -1


def emotion_index(label):
    """Index of a class letter in :data:`EMOTIONS`; ``-1`` if hidden or X/O.

    Example
    -------
    >>> emotion_index("A"), emotion_index("U"), emotion_index(None), emotion_index("X")
    (0, 7, -1, -1)
    """
    return EMOTIONS.index(label) if label in EMOTIONS else UNKNOWN_LABEL


def make_dataset(manifest, train, max_duration=None, eval_max_duration=None, with_text=False):
    """A ``DynamicItemDataset`` over one manifest.

    Parameters
    ----------
    manifest : str or Path
        JSON manifest written by ``data_prep.msp_prepare``.
    train : bool
        Random crop to ``max_duration`` when True, center crop to
        ``eval_max_duration`` otherwise.
    max_duration, eval_max_duration : float or None
        Seconds; ``None`` keeps whole turns.
    with_text : bool
        Also provide ``transcript`` (error if the manifest has none).

    Returns
    -------
    speechbrain.dataio.dataset.DynamicItemDataset
    """
    dataset = sb.dataio.dataset.DynamicItemDataset.from_json(str(manifest))
    limit = max_duration if train else eval_max_duration
    max_samples = int(limit * SAMPLE_RATE) if limit else None
    mode = "random" if train else "center"

    @sb.utils.data_pipeline.takes("wav")
    @sb.utils.data_pipeline.provides("sig")
    def audio_pipeline(wav):
        try:
            waveform = load_waveform(wav)
        except ValueError as error:  # AudioError: also name the (probably stale) manifest
            raise type(error)(
                f"{error}; listed in {manifest}: if the corpus changed since the preparation, "
                "delete prepare_options.json beside it to prepare again"
            ) from error
        return crop_waveform(waveform, max_samples, mode=mode)

    @sb.utils.data_pipeline.takes("emotion")
    @sb.utils.data_pipeline.provides("emo_encoded")
    def label_pipeline(emotion):
        return torch.LongTensor([emotion_index(emotion)])

    dataset.add_dynamic_item(audio_pipeline)
    dataset.add_dynamic_item(label_pipeline)
    keys = ["id", "sig", "emo_encoded"]
    if with_text:
        missing = [uid for uid, entry in dataset.data.items() if "transcript" not in entry]
        if missing:
            raise ValueError(
                f"{manifest}: {len(missing)} entries have no transcript (e.g. {missing[0]}); "
                "prepare with transcripts (human or Whisper) for a text system"
            )
        keys.append("transcript")
    dataset.set_output_keys(keys)
    return dataset
