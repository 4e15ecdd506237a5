"""Write the mini corpus's labels in the format of each MSP-Podcast release.

The same seed gives the same turns, voices and votes whatever the release; only
the file names and the label files change, as they do between the real releases
(facts in :mod:`data_prep.corpora.msp_podcast`):

=========  ==================================================================
release    what differs from v1.11
=========  ==================================================================
``v1.11``  (the reference) ``Labels/labels_detailed.csv`` = ``FileName,EmoDetail``
``v1.12``  Test3 named ``MSP-PODCAST_test3_0001.wav`` (four digits, in order),
           every fourth labelled turn named in three parts
           (``MSP-PODCAST_3571_0440_0001.wav``), ``ForceAligned/`` and
           ``Previous_releases_information/`` folders
``2.0``    ``labels_detailed.csv`` in columns (``WorkerID``, words spelt
           ``Anger``/``Happiness``/``Sadness``, integer ratings),
           ``labels_detailed_aggregated.csv`` (``count::<Emotion>``), and one
           consensus row whose audio is not released
``v1.6``   ``Labels/labels_concensus.csv`` (the old spelling), Development
           called ``Validation``, ``labels_detailed.csv`` with ``Workers`` columns
=========  ==================================================================

Every release keeps the mini corpus's Test3 (audio only), v1.6 included although
the real v1.6 had none, so that the same three manifests can be compared.
"""

import csv
import io
import re

import numpy as np

from ser.emotions import EMOTION_NAMES, LETTER_TO_WORD, OTHER

RELEASES = ("v1.11", "v1.12", "2.0", "v1.6")
DEFAULT_RELEASE = "v1.11"
CONSENSUS_HEADER = ("FileName", "EmoClass", "EmoAct", "EmoVal", "EmoDom", "SpkrID", "Gender", "Split_Set")
#: The 2.0 consensus row without audio (podcast 0000 is never drawn for a real turn).
UNRELEASED_AUDIO_TURN = "MSP-PODCAST_0000_0001.wav"
#: Folders only v1.12 has (the reader tells v1.12 by them).
V112_FOLDERS = ("ForceAligned", "Previous_releases_information")
_AGGREGATED_ORDER = ("A", "S", "H", "U", "F", "D", "C", "N")
_DETAILED_FIELDS = ("EmoClass_Major", "EmoClass_Second", "EmoAct", "EmoVal", "EmoDom")


def check_release(release):
    """Raise ``ValueError`` for a release the generator cannot write.

    Example
    -------
    >>> check_release("2.0")
    >>> check_release("3.0")
    Traceback (most recent call last):
    ...
    ValueError: release '3.0': the mini corpus writes v1.11, v1.12, 2.0, v1.6
    """
    if release not in RELEASES:
        raise ValueError(f"release {release!r}: the mini corpus writes {', '.join(RELEASES)}")


def release_file_names(turns, release):
    """The name each turn's file has in ``release`` (planned name → release name).

    Example
    -------
    >>> from types import SimpleNamespace as Turn
    >>> turns = [Turn(file_name="MSP-PODCAST_test3_07312.wav", split="Test3"),
    ...          Turn(file_name="MSP-PODCAST_0042_0008.wav", split="Train")]
    >>> list(release_file_names(turns, "v1.12").values())
    ['MSP-PODCAST_test3_0001.wav', 'MSP-PODCAST_0042_0008_0001.wav']
    """
    check_release(release)
    names = {turn.file_name: turn.file_name for turn in turns}
    if release != "v1.12":
        return names
    test3 = sorted(turn.file_name for turn in turns if turn.split == "Test3")
    for rank, name in enumerate(test3, start=1):
        names[name] = f"MSP-PODCAST_test3_{rank:04d}.wav"
    for turn in turns:
        match = re.fullmatch(r"(MSP-PODCAST_\d{4}_(\d{4}))\.wav", turn.file_name)
        if turn.split != "Test3" and match and int(match.group(2)) % 4 == 0:
            names[turn.file_name] = f"{match.group(1)}_0001.wav"
    return names


def _csv(rows):
    stream = io.StringIO()
    csv.writer(stream, lineterminator="\n").writerows(rows)
    return stream.getvalue()


def _mean(values):
    return str(round(float(np.mean(values)), 4))


def _consensus_rows(labelled, consensus_label, split_names):
    rows = [CONSENSUS_HEADER]
    for turn in labelled:
        notes = turn.annotations
        rows.append((turn.file_name, consensus_label(turn), _mean([a.act for a in notes]),
                     _mean([a.val for a in notes]), _mean([a.dom for a in notes]),
                     str(turn.speaker.spkr_id), turn.speaker.gender, split_names.get(turn.split, turn.split)))
    return rows


def _word_2_0(annotation):
    """2.0's spelling: the noun (``Anger``, ``Happiness``), ``Other - <text>``."""
    if annotation.label == OTHER:
        text = annotation.primary.partition("-")[2]
        return f"Other - {text.lower()}" if text else "Other"
    return EMOTION_NAMES[annotation.label]


def label_files(labelled, release, format_emo_detail, consensus_label):
    """The label files of ``release``: relative path → text.

    Parameters
    ----------
    labelled : list of Turn
        The labelled turns (Train, Development), already named for the release,
        sorted by file name.
    release : str
        One of :data:`RELEASES`.
    format_emo_detail : callable
        Annotation → v1.11 EmoDetail string.
    consensus_label : callable
        Turn → its consensus class letter.
    """
    check_release(release)
    files = {}
    split_names = {"Development": "Validation"} if release == "v1.6" else {}
    consensus = _consensus_rows(labelled, consensus_label, split_names)
    if release == "2.0":
        donor = next(turn for turn in labelled if turn.split == "Development")
        consensus.append((UNRELEASED_AUDIO_TURN, "N", "4.0", "4.0", "4.0", str(donor.speaker.spkr_id),
                          donor.speaker.gender, "Development"))
    consensus_name = "labels_concensus.csv" if release == "v1.6" else "labels_consensus.csv"
    # No field of the consensus holds a comma: rows are joined as the release writes them.
    files[f"Labels/{consensus_name}"] = "".join(",".join(row) + "\n" for row in consensus)
    notes = [(turn.file_name, a) for turn in labelled for a in turn.annotations]
    if release in ("v1.11", "v1.12"):
        # EmoDetail always quoted, as in the release.
        files["Labels/labels_detailed.csv"] = "FileName,EmoDetail\n" + "".join(
            f'{name},"{format_emo_detail(a)}"\n' for name, a in notes)
    elif release == "2.0":
        detailed = [("FileName", "WorkerID", *_DETAILED_FIELDS)]
        detailed += [(name, a.worker_id, _word_2_0(a), ",".join(a.secondary), int(a.act), int(a.val),
                      int(a.dom)) for name, a in notes]
        counts = [("FileName", *(f"count::{EMOTION_NAMES[c]}" for c in _AGGREGATED_ORDER),
                   "num_other_annotations")]
        for turn in labelled:
            letters = [a.label for a in turn.annotations]
            counts.append((turn.file_name, *(letters.count(c) for c in _AGGREGATED_ORDER),
                           letters.count(OTHER)))
        files["Labels/labels_detailed_aggregated.csv"] = _csv(counts)
    else:
        detailed = [("FileName", "Workers", *_DETAILED_FIELDS)]
        detailed += [(name, a.worker_id, LETTER_TO_WORD[a.label] if a.label != OTHER else a.primary,
                      ",".join(a.secondary), f"{a.act:.1f}", f"{a.val:.1f}", f"{a.dom:.1f}")
                     for name, a in notes]
    if release in ("2.0", "v1.6"):
        files["Labels/labels_detailed.csv"] = _csv(detailed)
    if release == "v1.12":
        for folder in V112_FOLDERS:
            files[f"{folder}/README.txt"] = "Not part of the mini corpus: only marks the v1.12 layout.\n"
    return files
