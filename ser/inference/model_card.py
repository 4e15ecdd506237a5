"""The model card (``README.md``) of an exported package, in the Hugging Face format.

A YAML metadata header (``library_name``, ``pipeline_tag``, ``tags``, ``license``, ``metrics``),
then what the model is, the dev results of the report (Table 1 layout and the confusion matrix),
how to load it, and the licence note: the model was trained on MSP-Podcast, whose terms apply.
"""

import json
from pathlib import Path

from ser.emotions import EMOTION_NAMES, EMOTIONS
from ser.io import SAMPLE_RATE
from ser.metrics import format_f1_table

__all__ = ["render_model_card", "write_model_card"]


def _confusion_table(report):
    classes = report["classes"]
    lines = ["| true \\ predicted | " + " | ".join(classes) + " |", "|---|" + "---:|" * len(classes)]
    for letter, row in zip(classes, report["confusion_matrix"], strict=True):
        lines.append(f"| {letter} | " + " | ".join(str(int(v)) for v in row) + " |")
    return "\n".join(lines)


def _reports(package, manifest, fusion_dir):
    """Table-1 columns (name → report) and the report the confusion matrix shows."""
    if fusion_dir is not None and (Path(fusion_dir) / "fusion_metrics.json").is_file():
        metrics = json.loads((Path(fusion_dir) / "fusion_metrics.json").read_text(encoding="utf-8"))
        columns = {**metrics["per_system"], "Fusion": metrics["fusion"]}
        note = (f"Dev scores on {metrics['n_valid']} turns of {metrics['n_speakers']} speakers; the fusion "
                f"column comes from a {metrics['cv']['folds']}-fold speaker-disjoint cross-validation.")
        return columns, metrics["fusion"], note
    columns = {}
    for entry in manifest["systems"]:
        path = Path(package) / entry["folder"] / "metrics.json"
        if path.is_file():
            columns[entry["label"]] = json.loads(path.read_text(encoding="utf-8"))
    if not columns:
        return {}, None, "No dev results were found beside the systems."
    first = next(iter(columns.values()))
    return columns, first, f"Dev scores on {first.get('n_turns', '?')} turns (train.py's metrics.json)."


def render_model_card(package, manifest, fusion_dir=None):
    """The card's Markdown text.

    Example
    -------
    >>> manifest = {"systems": [{"name": "system_a", "label": "Sub-System A", "folder": "systems/system_a",
    ...             "uses_text": False}], "fusion": None}
    >>> text = render_model_card("/nonexistent", manifest)
    >>> text.splitlines()[0], "pipeline_tag: audio-classification" in text
    ('---', True)
    """
    columns, confusion, note = _reports(package, manifest, fusion_dir)
    names = ", ".join(f"{e['label']} ({'speech + Whisper text' if e['uses_text'] else 'speech'})"
                      for e in manifest["systems"])
    header = [
        "---",
        "language: en",
        "library_name: speechbrain",
        "pipeline_tag: audio-classification",
        "tags: [speech-emotion-recognition, msp-podcast, speechbrain, wavlm]",
        "license: other",
        "license_name: msp-podcast-academic-license",
        "metrics: [f1]",
        "datasets: [MSP-Podcast]",
        "---",
        "",
        "# Speech emotion recognition (MSP-Podcast, 8 classes)",
        "",
        "Exported with `python -m ser.export` from the msp-ser recipes (a reproduction of the LIA system "
        "for the Odyssey 2024 MSP-Podcast SER Challenge, Task 1). It classifies a speaking turn into "
        + ", ".join(f"{EMOTION_NAMES[c]} ({c})" for c in EMOTIONS) + ".",
        "",
        f"Systems: {names}." + (" Their posteriors are fused by an SVM (paper §7)." if manifest.get("fusion")
                                 else " Their posteriors are averaged."),
        "",
        "## Dev results",
        "",
        note,
        "",
    ]
    if columns:
        header += [format_f1_table(columns), ""]
    if confusion is not None:
        header += ["Confusion matrix (rows: true class, columns: predicted; counts):", "",
                   _confusion_table(confusion), ""]
        if manifest.get("fusion"):
            header += ["![confusion matrix](fusion/confusion_matrix.png)", ""]
    header += [
        "## How to use",
        "",
        "```python",
        "from ser.inference import EmotionRecognizer",
        "",
        'recognizer = EmotionRecognizer.from_pretrained("path/or/hf-id/of/this/model")',
        'result = recognizer.classify_file("turn.wav")        # .label, .probabilities, .transcript',
        f"results = recognizer.classify_batch([waveform], sample_rate={SAMPLE_RATE})  # arrays in memory",
        'timeline = recognizer.classify_timeline("long.wav", window=3.0, hop=1.0)',
        "```",
        "",
        "```bash",
        "python -m ser.predict --model path/to/this/model FILES --out preds.csv \\",
        "    [--timeline] [--embeddings DIR]",
        "python -m ser.app --model path/to/this/model     # web demo on http://127.0.0.1:7860",
        "```",
        "",
        "Audio of any sample rate and channel count is resampled to 16 kHz mono; text systems transcribe "
        "it with the packaged Whisper settings (`systems/*/transcriber.json`).",
        "",
        "## Licence",
        "",
        "The weights were trained on MSP-Podcast, distributed by The University of Texas at Dallas under "
        "an academic licence: its terms apply to this model and to what you do with it (research use; "
        "check the licence before any other use or redistribution). The code is Apache-2.0.",
        "",
    ]
    return "\n".join(header)


def write_model_card(package, manifest, fusion_dir=None):
    """Write ``README.md`` into the package folder; returns its path."""
    path = Path(package) / "README.md"
    path.write_text(render_model_card(package, manifest, fusion_dir), encoding="utf-8")
    return path
