"""Does an exported runtime give the package's answers? Its parity with PyTorch, on a set of clips.

:func:`check_parity` classifies the same clips with the package in PyTorch and in the exported
runtime (:mod:`ser.inference.onnx_export`): the label agreement, the largest and the mean
absolute difference of the probabilities, per system and for the ensemble, and the macro-F1 of
both where labels are known. The clips are recorded turns (``--parity_audio``, e.g. the corpus's
development turns, with ``--parity_labels``) or :func:`synthetic_clips`. ``python -m ser.export``
refuses a runtime whose agreement is below ``--min_agreement`` (:data:`DEFAULT_MIN_AGREEMENT`).
"""

from pathlib import Path

import numpy as np
import torch

from ser.errors import UserInputError
from ser.io import SAMPLE_RATE

__all__ = [
    "PARITY_FILE",
    "DEFAULT_MIN_AGREEMENT",
    "ParityError",
    "synthetic_clips",
    "check_parity_inputs",
    "parity_set",
    "check_parity",
    "parity_table",
]

#: The parity report the export writes at the package's root.
PARITY_FILE = "parity.json"
#: Label agreement (%) under which the export is refused. fp32 graphs compute what PyTorch
#: computes up to float rounding (measured: 1e-6 on the probabilities), so any flip is a fault.
#: int8 moves the probabilities by about 1e-3-1e-2; a turn whose two best classes are that
#: close may flip, hence the lower bar.
DEFAULT_MIN_AGREEMENT = {"onnx": 99.0, "onnx-int8": 95.0}


class ParityError(UserInputError, ValueError):
    """An exported runtime disagrees with PyTorch beyond the stated threshold."""


def synthetic_clips(n_clips=24, shortest=0.5, longest=20.0, seed=0):
    """Voiced, speech-like clips of lengths spread log-uniformly from ``shortest`` to ``longest`` s.

    A glottal-pulse-like harmonic source (a pitch contour between 90 and 260 Hz) through three
    moving formants, syllable-rate loudness and a little noise: enough to move the encoders off a
    constant output. The parity check's default set when no recorded turns are given.

    Example
    -------
    >>> clips = synthetic_clips(3, seed=1)
    >>> [round(len(c) / SAMPLE_RATE, 2) for c in clips], clips[0].dtype
    ([0.5, 3.16, 20.0], torch.float32)
    """
    rng = np.random.default_rng(seed)
    lengths = np.geomspace(shortest, longest, n_clips) if n_clips > 1 else np.array([shortest])
    clips = []
    for seconds in lengths:
        n = int(round(seconds * SAMPLE_RATE))
        t = np.arange(n) / SAMPLE_RATE
        pitch = rng.uniform(90, 260) * (1 + 0.15 * np.sin(2 * np.pi * rng.uniform(0.2, 2.0) * t))
        phase = 2 * np.pi * np.cumsum(pitch) / SAMPLE_RATE
        source = sum(np.sin(k * phase) / k for k in range(1, 16))
        signal = np.zeros(n)
        for formant in (rng.uniform(300, 800), rng.uniform(900, 2200), rng.uniform(2300, 3200)):
            moving = formant * (1 + 0.1 * np.sin(2 * np.pi * rng.uniform(1, 4) * t))
            signal += source * np.cos(2 * np.pi * np.cumsum(moving) / SAMPLE_RATE) / 3
        loudness = 0.5 + 0.5 * np.sin(2 * np.pi * rng.uniform(2, 6) * t) ** 2
        signal = loudness * signal + 0.02 * rng.standard_normal(n)
        clips.append(torch.from_numpy((0.3 * signal / np.abs(signal).max()).astype(np.float32)))
    return clips


def check_parity_inputs(min_agreement=None, parity_audio=None, parity_labels=None, parity_clips=24):
    """Refuse parity options that cannot work, before the graphs are exported (which takes long).

    Reads the clips and labels the check would read, so an unreadable file is named now.

    Raises
    ------
    ParityError
        ``min_agreement`` outside 0-100, ``parity_clips`` below 1, labels without audio, a
        folder without audio files, a file that is not audio, or a labels CSV that cannot be read.

    Example
    -------
    >>> check_parity_inputs(min_agreement=150)
    Traceback (most recent call last):
    ...
    ser.inference.onnx_parity.ParityError: --min_agreement 150: a percentage of labels, from 0 to 100
    """
    if min_agreement is not None and not 0 <= float(min_agreement) <= 100:
        raise ParityError(f"--min_agreement {float(min_agreement):g}: a percentage of labels, from 0 to 100")
    if int(parity_clips) < 1:
        raise ParityError(f"--parity_clips {parity_clips}: the check needs at least 1 clip")
    if parity_labels is not None and parity_audio is None:
        raise ParityError(f"--parity_labels {parity_labels}: labels of the --parity_audio files; "
                          "give --parity_audio too")
    if parity_audio is not None:
        _read_clips(parity_audio, parity_labels, parity_clips)


def _read_clips(audio_folder, labels_csv=None, max_clips=200):
    """Audio files of a folder (sorted, at most ``max_clips``) and their labels from a CSV, if given."""
    from ser.inference.predict import AUDIO_SUFFIXES
    from ser.io.audio import load_waveform

    folder = Path(audio_folder)
    if not folder.is_dir():
        raise ParityError(f"{folder}: not a folder of audio files (--parity_audio)")
    paths = sorted(p for p in folder.iterdir() if p.suffix.lower() in AUDIO_SUFFIXES)[:max_clips]
    if not paths:
        raise ParityError(f"{folder}: no audio file in it (--parity_audio)")
    labels = None
    if labels_csv is not None:
        import pandas as pd

        if not Path(labels_csv).is_file():
            raise ParityError(f"{labels_csv}: no such file (--parity_labels)")
        try:
            table = pd.read_csv(labels_csv, usecols=["FileName", "EmoClass"], dtype=str)
        except (OSError, ValueError) as error:
            reason = " ".join(str(error).split())
            raise ParityError(f"{labels_csv}: needs columns FileName and EmoClass (--parity_labels; "
                              f"{reason})") from None
        by_name = dict(zip(table["FileName"], table["EmoClass"], strict=True))
        labels = [by_name.get(p.name) for p in paths]
    return [load_waveform(p) for p in paths], [p.name for p in paths], labels


def _macro_f1(truth, predicted, classes):
    from sklearn.metrics import f1_score

    pairs = [(t, p) for t, p in zip(truth, predicted, strict=True) if t in classes]
    if not pairs:
        return None
    return float(
        f1_score(
            [t for t, _ in pairs],
            [p for _, p in pairs],
            labels=list(classes),
            average="macro",
            zero_division=0,
        )
    )


def _compare(reference, exported, truth, classes):
    ref, exp = np.asarray(reference), np.asarray(exported)
    ref_labels = [classes[i] for i in ref.argmax(1)]
    exp_labels = [classes[i] for i in exp.argmax(1)]
    row = {
        "agreement": 100.0 * float(np.mean(ref.argmax(1) == exp.argmax(1))),
        "max_abs_diff": float(np.abs(ref - exp).max()),
        "mean_abs_diff": float(np.abs(ref - exp).mean()),
    }
    if truth is not None:
        row["macro_f1_pytorch"] = _macro_f1(truth, ref_labels, classes)
        row["macro_f1_exported"] = _macro_f1(truth, exp_labels, classes)
    return row


def check_parity(reference, exported, clips, labels=None):
    """Compare two :class:`ser.inference.recognizer.EmotionRecognizer` of one package on ``clips``.

    Parameters
    ----------
    reference, exported : EmotionRecognizer
        The package in PyTorch, and in the exported runtime.
    clips : list of torch.Tensor
        16 kHz mono waveforms.
    labels : list of str or None, optional
        True class of each clip (None where unknown): adds both runtimes' macro-F1.

    Returns
    -------
    dict
        ``systems``: per system name, ``agreement`` (% of clips with the same label),
        ``max_abs_diff`` and ``mean_abs_diff`` of the probabilities (and the macro-F1 of both); the
        same for the ensemble (fused or averaged) under ``ensemble``; ``clips``: how many.
    """
    ref = reference.classify_batch(clips, sample_rate=SAMPLE_RATE)
    exp = exported.classify_batch(clips, sample_rate=SAMPLE_RATE)
    classes = reference.classes
    truth = labels if labels is not None and any(label is not None for label in labels) else None
    report = {"clips": len(clips), "systems": {}}
    for name in ref[0].system_probabilities:
        table = [[r.system_probabilities[name][c] for c in classes] for r in ref]
        other = [[r.system_probabilities[name][c] for c in classes] for r in exp]
        report["systems"][name] = _compare(table, other, truth, classes)
    if classes:
        report["ensemble"] = _compare(
            [[r.probabilities[c] for c in classes] for r in ref],
            [[r.probabilities[c] for c in classes] for r in exp],
            truth,
            classes,
        )
    return report


def parity_table(report, runtime):
    """The parity report as a Markdown table (what ``ser.export`` prints).

    Example
    -------
    >>> row = {"agreement": 100.0, "max_abs_diff": 2e-7, "mean_abs_diff": 1e-8}
    >>> print(parity_table({"clips": 4, "systems": {"a": row}, "ensemble": row}, "onnx"))
    Parity of onnx against PyTorch on 4 clips:
    | system | label agreement | max abs diff | mean abs diff | macro-F1 PyTorch | macro-F1 onnx |
    |---|---:|---:|---:|---:|---:|
    | a | 100.0 % | 2.0e-07 | 1.0e-08 | - | - |
    | ensemble | 100.0 % | 2.0e-07 | 1.0e-08 | - | - |
    """
    lines = [
        f"Parity of {runtime} against PyTorch on {report['clips']} clips:",
        "| system | label agreement | max abs diff | mean abs diff | macro-F1 PyTorch | "
        f"macro-F1 {runtime} |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    rows = list(report["systems"].items()) + (
        [("ensemble", report["ensemble"])] if "ensemble" in report else []
    )
    for name, row in rows:
        f1 = [row.get(k) for k in ("macro_f1_pytorch", "macro_f1_exported")]
        f1 = ["-" if v is None else f"{v:.3f}" for v in f1]
        lines.append(
            f"| {name} | {row['agreement']:.1f} % | {row['max_abs_diff']:.1e} | "
            f"{row['mean_abs_diff']:.1e} | {f1[0]} | {f1[1]} |"
        )
    return "\n".join(lines)


def parity_set(parity_audio=None, parity_labels=None, parity_clips=24):
    """The clips of the parity check and their labels (None without ``parity_labels``).

    At most ``parity_clips`` files of ``parity_audio``, or that many :func:`synthetic_clips`.

    Example
    -------
    >>> clips, labels = parity_set(parity_clips=2)
    >>> len(clips), labels
    (2, None)
    """
    if parity_audio is None:
        return synthetic_clips(parity_clips), None
    clips, _, labels = _read_clips(parity_audio, parity_labels, parity_clips)
    return clips, labels
