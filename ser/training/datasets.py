"""SpeechBrain datasets built from the preparation's JSON manifests.

Each item gives ``id``, ``sig`` (16 kHz mono waveform), ``emo_encoded`` (class
index in the system's class order, ``-1`` when the label is hidden, ``-2``
when it is known but not one of the classes, as X and O), ``attr`` (the
Task 2 attributes, NaN when unknown), for soft labels ``soft`` (the
distribution of the annotators' votes over the classes, NaN when none) and,
for text systems, ``transcript``.

Length limits (so WavLM-large fits GPU memory):

- training: a turn longer than ``max_duration`` is **randomly cropped** to it
  (another window each epoch);
- evaluation: the **whole turn** is used up to ``eval_max_duration``; longer
  turns are **center-cropped** to it.
"""

import speechbrain as sb
import torch

from ser.emotions import EMOTIONS
from ser.io.audio import SAMPLE_RATE, crop_waveform, load_waveform
from ser.nn.imbalance import soft_target
from ser.targets import EXCLUDED_LABEL, UNKNOWN_LABEL


def emotion_index(label, classes=EMOTIONS):
    """Index of a class letter in ``classes``; ``-1`` if hidden, ``-2`` if outside them (X, O).

    Example
    -------
    >>> emotion_index("A"), emotion_index("U"), emotion_index(None), emotion_index("X")
    (0, 7, -1, -2)
    """
    if label is None:
        return UNKNOWN_LABEL
    return list(classes).index(label) if label in classes else EXCLUDED_LABEL


def epoch_dev_subset(dataset, n_turns):
    """The dev turns scored after each epoch: ``n_turns`` spread over classes and speakers.

    The turns are ordered by class, speaker and id and taken at even steps, so each class
    keeps its share of dev (the macro-F1 of a subset then estimates the dev one) and no
    speaker fills it. Fixed for a dev manifest, so every epoch is scored on the same turns.

    Parameters
    ----------
    dataset : speechbrain.dataio.dataset.DynamicItemDataset
        The dev split (entries with ``emotion`` and ``speaker``, as the manifests write them).
    n_turns : int or None
        How many; ``None``, or as many as dev has or more, keeps them all.

    Returns
    -------
    speechbrain.dataio.dataset.DynamicItemDataset
        ``dataset`` itself, or a filtered view of it with the same pipelines.

    Example
    -------
    >>> from speechbrain.dataio.dataset import DynamicItemDataset
    >>> dev = DynamicItemDataset({f"t{i:02d}": {"emotion": "NNNNHHSA"[i % 8], "speaker": str(i % 5)}
    ...                           for i in range(40)})
    >>> len(epoch_dev_subset(dev, None)), len(epoch_dev_subset(dev, 40))
    (40, 40)
    >>> subset = epoch_dev_subset(dev, 8)
    >>> with subset.output_keys_as(["emotion"]):
    ...     sorted(item["emotion"] for item in subset)
    ['A', 'H', 'H', 'N', 'N', 'N', 'N', 'S']
    """
    if n_turns is None or n_turns >= len(dataset):
        return dataset
    order = sorted(dataset.data_ids, key=lambda i: (str(dataset.data[i].get("emotion") or ""),
                                                    str(dataset.data[i].get("speaker") or ""), i))
    chosen = {order[int((k + 0.5) * len(order) / n_turns)] for k in range(n_turns)}
    return dataset.filtered_sorted(key_test={"id": lambda turn: turn in chosen})


def attribute_values(entry_attributes, names):
    """The attribute values of a manifest entry, NaN where unknown.

    Example
    -------
    >>> attribute_values({"EmoAct": 4.2, "EmoVal": None}, ["EmoAct", "EmoVal", "EmoDom"])
    [4.2, nan, nan]
    """
    values = entry_attributes or {}
    return [float("nan") if values.get(name) is None else float(values[name]) for name in names]


def make_dataset(manifest, train, max_duration=None, eval_max_duration=None, with_text=False,
                 classes=EMOTIONS, attributes=(), soft_labels=False):
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
    classes : sequence of str
        The class order of ``emo_encoded`` (and ``soft``).
    attributes : sequence of str
        The attributes of ``attr`` (``EmoAct EmoVal EmoDom``); the manifest entries'
        ``attributes`` mapping gives them.
    soft_labels : bool
        Also provide ``soft`` from the entries' ``votes`` (class letter -> count).

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

    classes = tuple(classes or ())

    @sb.utils.data_pipeline.takes("emotion")
    @sb.utils.data_pipeline.provides("emo_encoded")
    def label_pipeline(emotion):
        return torch.LongTensor([emotion_index(emotion, classes)])

    dataset.add_dynamic_item(audio_pipeline)
    dataset.add_dynamic_item(label_pipeline)
    keys = ["id", "sig", "emo_encoded"]
    if attributes:
        names = tuple(attributes)

        @sb.utils.data_pipeline.takes("attributes")
        @sb.utils.data_pipeline.provides("attr")
        def attribute_pipeline(values):
            return torch.tensor(attribute_values(values, names), dtype=torch.float32)

        _require_key(dataset, manifest, "attributes", "prepare again: the manifests predate attributes")
        dataset.add_dynamic_item(attribute_pipeline)
        keys.append("attr")
    if soft_labels:

        @sb.utils.data_pipeline.takes("votes")
        @sb.utils.data_pipeline.provides("soft")
        def soft_pipeline(votes):
            target = soft_target(votes, classes)
            return torch.tensor(target if target else [float("nan")] * len(classes), dtype=torch.float32)

        _require_key(dataset, manifest, "votes", "soft labels need the annotators' votes (soft_labels: True "
                     "prepares them)")
        dataset.add_dynamic_item(soft_pipeline)
        keys.append("soft")
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


def _require_key(dataset, manifest, key, hint):
    missing = [uid for uid, entry in dataset.data.items() if key not in entry]
    if missing:
        raise ValueError(f"{manifest}: {len(missing)} entries have no {key!r} (e.g. {missing[0]}); {hint}")
