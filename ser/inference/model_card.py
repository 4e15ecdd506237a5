"""The model card (``README.md``) of an exported package, written with ``huggingface_hub``'s ``ModelCard``.

The card's metadata is a :class:`huggingface_hub.ModelCardData`: ``library_name: speechbrain``,
``pipeline_tag``, ``license``, ``base_model`` (the encoders' Hugging Face ids, when the systems were
built from Hub models rather than local folders), ``datasets`` (only for a model trained on
MSP-Podcast) and a ``model-index`` holding the dev results (macro-F1 of Task 1, CCC of Task 2), so
the Hub shows them. The text says what the model is, the dev tables, how to install and load it
(:class:`ser.inference.EmotionRecognizer`, SpeechBrain's ``foreign_class``, ``ser.predict``), how to
publish the folder, the paper to cite, and the licence.

A model trained on the synthetic mini corpus (``make demo``) is a toy: the card says so at the top
and names no corpus. What a system was trained on is read at export time from its YAML's
``data_folder`` (:func:`training_data_kind`): the mini corpus writes ``mini_corpus_options.json``
there, which MSP-Podcast never holds.
"""

from pathlib import Path

from ser.emotions import EMOTION_NAMES, EMOTIONS
from ser.io import SAMPLE_RATE
from ser.io.json_files import read_json
from ser.metrics import format_ccc_table, format_f1_table

__all__ = ["render_model_card", "write_model_card", "build_card_data", "training_data_kind", "base_model_id",
           "SYNTHETIC", "MSP_PODCAST", "UNKNOWN", "TOY_WARNING"]

#: ``training_data`` values of a manifest entry (:func:`training_data_kind`).
SYNTHETIC, MSP_PODCAST, UNKNOWN = "synthetic", "msp-podcast", "unknown"
#: The file the mini corpus writes in its root (``data_prep.mini_corpus``): its mark.
MINI_CORPUS_MARKER = "mini_corpus_options.json"
TOY_WARNING = "Toy model trained on synthetic speech; not for real use."
CITATION = """\
@inproceedings{duret2024antenne,
  title     = {{MSP-Podcast SER Challenge 2024: L'antenne du Ventoux Multimodal Self-Supervised Learning
               for Speech Emotion Recognition}},
  author    = {Duret, Jarod and Rouvier, Mickael and Est{\\`e}ve, Yannick},
  booktitle = {The Speaker and Language Recognition Workshop (Odyssey 2024)},
  year      = {2024},
  note      = {hal-04628187}
}"""
INTERFACE_LINE = ('foreign_class(source="path/or/hf-id/of/this/model", pymodule_file="custom_interface.py", '
                  'classname="EmotionRecognition")')


def training_data_kind(data_folder):
    """What a system was trained on, from its YAML's ``data_folder``.

    Returns
    -------
    str
        :data:`SYNTHETIC` for the mini corpus (it holds ``mini_corpus_options.json``),
        :data:`MSP_PODCAST` for a folder with MSP-Podcast's ``Labels/``, else :data:`UNKNOWN`
        (no folder recorded, or moved since training).

    Example
    -------
    >>> import tempfile
    >>> folder = Path(tempfile.mkdtemp())
    >>> training_data_kind(folder), training_data_kind(None)
    ('unknown', 'unknown')
    >>> _ = (folder / MINI_CORPUS_MARKER).write_text("{}")
    >>> training_data_kind(folder)
    'synthetic'
    """
    if not data_folder:
        return UNKNOWN
    folder = Path(str(data_folder))
    if (folder / MINI_CORPUS_MARKER).is_file():
        return SYNTHETIC
    if (folder / "Labels").is_dir():
        return MSP_PODCAST
    return UNKNOWN


def base_model_id(source):
    """``source`` if it is a Hugging Face model id (``microsoft/wavlm-large``), else None (a local folder).

    Example
    -------
    >>> base_model_id("microsoft/wavlm-large"), base_model_id("/home/me/models/wavlm"), base_model_id("wavlm")
    ('microsoft/wavlm-large', None, None)
    """
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    text = str(source)
    if text.count("/") != 1 or text.startswith((".", "~")) or Path(text).exists():
        return None
    try:
        validate_repo_id(text)
    except HFValidationError:
        return None
    return text


def _data_kind(manifest):
    kinds = {entry.get("training_data", UNKNOWN) for entry in manifest["systems"]}
    if SYNTHETIC in kinds:
        return SYNTHETIC  # one toy system makes the whole package a toy
    return MSP_PODCAST if kinds == {MSP_PODCAST} else UNKNOWN


def _read_json(path):
    path = Path(path)
    return read_json(path) if path.is_file() else None


def _task1_columns(package, manifest, fusion_dir):
    """Table-1 columns (name → report), the report of the confusion matrix, and a note."""
    metrics = _read_json(Path(fusion_dir) / "fusion_metrics.json") if fusion_dir is not None else None
    if metrics is not None:
        columns = {**metrics["per_system"], "Fusion": metrics["fusion"]}
        note = (f"Dev scores on {metrics['n_valid']} turns of {metrics['n_speakers']} speakers; the fusion "
                f"column comes from a {metrics['cv']['folds']}-fold speaker-disjoint cross-validation.")
        return columns, metrics["fusion"], note
    columns = {}
    for entry in manifest["systems"]:
        report = _read_json(Path(package) / entry["folder"] / "metrics.json")
        if report is not None and "macro_f1" in report:
            columns[entry["label"]] = report
    if not columns:
        return {}, None, None
    first = next(iter(columns.values()))
    return columns, first, f"Dev scores on {first.get('n_turns', '?')} turns (train.py's metrics.json)."


def _task2_columns(package, manifest, attribute_fusion_dir):
    metrics = None
    if attribute_fusion_dir is not None:
        metrics = _read_json(Path(attribute_fusion_dir) / "attribute_fusion_metrics.json")
    if metrics is not None:
        note = (f"CCC on {metrics['n_valid']} dev turns; the fusion column is scored out of fold "
                "(speaker-disjoint cross-validation).")
        return {**metrics["per_system"], "Fusion": metrics["fusion"]}, note
    columns = {}
    for entry in manifest["systems"]:
        report = _read_json(Path(package) / entry["folder"] / "metrics.json")
        if report is not None and "ccc" in report:
            columns[entry.get("attribute_label", entry["label"])] = report
    return columns, ("CCC on the dev turns (train.py's metrics.json)." if columns else None)


def _confusion_table(report):
    classes = report["classes"]
    lines = ["| true \\ predicted | " + " | ".join(classes) + " |", "|---|" + "---:|" * len(classes)]
    for letter, row in zip(classes, report["confusion_matrix"], strict=True):
        lines.append(f"| {letter} | " + " | ".join(str(int(v)) for v in row) + " |")
    return "\n".join(lines)


def _eval_results(task1, task2, kind):
    """The ``model-index`` entries: dev macro-F1 per column of Task 1, dev CCC per column of Task 2."""
    from huggingface_hub import EvalResult

    if kind == SYNTHETIC:
        dataset = {"dataset_type": "synthetic", "dataset_name": "msp-ser mini corpus (synthetic speech)"}
    elif kind == MSP_PODCAST:
        dataset = {"dataset_type": "MSP-Podcast", "dataset_name": "MSP-Podcast"}
    else:
        dataset = {"dataset_type": "unknown", "dataset_name": "development set (not recorded)"}
    dataset["dataset_split"] = "Development"
    results = []
    for name, report in task1.items():
        results.append(EvalResult(task_type="audio-classification", task_name="Speech emotion recognition",
                                  metric_type="f1", metric_name=f"Macro-F1 ({name})",
                                  metric_value=round(float(report["macro_f1"]), 4), **dataset))
    for name, report in task2.items():
        results.append(EvalResult(task_type="audio-classification",
                                  task_name="Emotional attributes (arousal, valence, dominance)",
                                  metric_type="ccc", metric_name=f"Mean CCC ({name})",
                                  metric_value=round(float(report["mean_ccc"]), 4), **dataset))
    return results


def build_card_data(manifest, task1=None, task2=None):
    """The card's metadata (:class:`huggingface_hub.ModelCardData`) for a package's manifest.

    Example
    -------
    >>> manifest = {"systems": [{"name": "system_a", "label": "Sub-System A", "folder": "systems/system_a",
    ...             "uses_text": False, "base_models": ["microsoft/wavlm-large"],
    ...             "training_data": "synthetic"}]}
    >>> data = build_card_data(manifest, {"Sub-System A": {"macro_f1": 0.25}})
    >>> data.library_name, data.base_model, data.datasets, data.eval_results[0].metric_value
    ('speechbrain', ['microsoft/wavlm-large'], None, 0.25)
    """
    from huggingface_hub import ModelCardData

    kind = _data_kind(manifest)
    base_models = list(dict.fromkeys(m for e in manifest["systems"] for m in e.get("base_models", [])))
    tags = ["speech-emotion-recognition", "speechbrain", "audio-classification"]
    tags += {MSP_PODCAST: ["msp-podcast"], SYNTHETIC: ["toy-model", "synthetic-data"]}.get(kind, [])
    results = _eval_results(task1 or {}, task2 or {}, kind)
    return ModelCardData(
        language="en",
        library_name="speechbrain",
        pipeline_tag="audio-classification",
        tags=tags,
        license="other" if kind != SYNTHETIC else "apache-2.0",
        license_name="msp-podcast-academic-license" if kind != SYNTHETIC else None,
        base_model=base_models or None,
        datasets=["MSP-Podcast"] if kind == MSP_PODCAST else None,
        metrics=[m for m, on in (("f1", task1), ("ccc", task2)) if on] or None,
        model_name=("msp-ser speech emotion recognition" + (" (toy, synthetic speech)" if kind == SYNTHETIC
                                                            else "")) if results else None,
        eval_results=results or None,
    )


def _body(manifest, task1, confusion, note1, task2, note2, kind):
    metrics = [entry.get("metrics") or {} for entry in manifest["systems"]]
    classes = bool(task1 or manifest.get("fusion")) or any("macro_f1" in m for m in metrics)
    attributes = bool(task2 or manifest.get("attribute_fusion")) or any("mean_ccc" in m for m in metrics)
    names = ", ".join(f"{e['label']} ({'speech + Whisper text' if e['uses_text'] else 'speech'})"
                      for e in manifest["systems"])
    lines = ["# Speech emotion recognition (msp-ser)", ""]
    if kind == SYNTHETIC:
        lines += [f"> **{TOY_WARNING}** Its systems were trained by `make demo` on the msp-ser mini corpus: "
                  "a few hundred sentences spoken by espeak-ng voices and labelled by simulated annotators. "
                  "Its scores say that the pipeline works, nothing about emotions in real speech.", ""]
    trained_on = {SYNTHETIC: "the synthetic mini corpus", MSP_PODCAST: "MSP-Podcast",
                  UNKNOWN: "a corpus this export could not identify"}[kind]
    lines += [
        "Exported with `python -m ser.export` from the msp-ser recipes, a reproduction of the LIA system of "
        "the Odyssey 2024 MSP-Podcast Speech Emotion Recognition Challenge (Duret, Rouvier and Estève, "
        f"2024), trained on {trained_on}.",
        "",
    ]
    if classes:
        lines += ["Task 1: each speaking turn gets one of eight classes, "
                  + ", ".join(f"{EMOTION_NAMES[c]} ({c})" for c in EMOTIONS) + ".", ""]
    if attributes:
        lines += ["Task 2: each turn gets its arousal (`EmoAct`), valence (`EmoVal`) and dominance "
                  "(`EmoDom`) on the corpus's 1-7 scale.", ""]
    fusions = [f for f, on in (("an SVM fuses the Task 1 posteriors (paper §7)", manifest.get("fusion")),
                               ("a ridge regressor fuses the Task 2 attributes",
                                manifest.get("attribute_fusion"))) if on]
    lines += [f"Systems: {names}." + (f" Then {' and '.join(fusions)}." if fusions else
                                      " Several systems are averaged."), ""]
    lines += ["## Dev results", ""]
    if task1:
        lines += [note1, "", format_f1_table(task1), ""]
    if confusion is not None:
        lines += ["Confusion matrix (rows: true class, columns: predicted; counts):", "",
                  _confusion_table(confusion), ""]
        if manifest.get("fusion"):
            lines += ["![confusion matrix](fusion/confusion_matrix.png)", ""]
    if task2:
        lines += [note2, "", format_ccc_table(task2), ""]
    if not (task1 or task2):
        lines += ["No dev results were found beside the systems.", ""]
    lines += [
        "## Install",
        "",
        "```bash",
        "pip install ./msp-ser        # a clone of the msp-ser repository (the library this package needs)",
        "```",
        "",
        "## How to use",
        "",
        "```python",
        "from ser.inference import EmotionRecognizer",
        "",
        'recognizer = EmotionRecognizer.from_pretrained("path/or/hf-id/of/this/model")',
        'result = recognizer.classify_file("turn.wav")   # .label, .label_name, .probabilities, .attributes',
        "result.top_k(3)                                  # [(letter, name, probability), ...]",
        f"results = recognizer.classify_batch([waveform], sample_rate={SAMPLE_RATE})  # arrays in memory",
        'timeline = recognizer.classify_timeline("long.wav", window=3.0, hop=1.0)',
        "```",
        "",
        "With SpeechBrain's own loader (its 4-tuple: log-probabilities, best score, index, class letters):",
        "",
        "```python",
        "from speechbrain.inference.interfaces import foreign_class",
        "",
        f"classifier = {INTERFACE_LINE}",
        'out_prob, score, index, text_lab = classifier.classify_file("turn.wav")',
        "print(text_lab, classifier.id2label[int(index)])",
        "```",
        "",
        "From the command line:",
        "",
        "```bash",
        "python -m ser.predict --model path/to/this/model FILES_OR_FOLDERS [--out preds.csv] [--top_k 3]",
        "python -m ser.app --model path/to/this/model     # web demo on http://127.0.0.1:7860",
        "```",
        "",
        "Audio of any format, sample rate and channel count is read as 16 kHz mono; text systems transcribe "
        "it with the packaged Whisper settings (`systems/*/transcriber.json`).",
        "",
        "## Publish",
        "",
        "This folder is a Hugging Face model repository as it is:",
        "",
        "```python",
        "from huggingface_hub import HfApi",
        "",
        'HfApi().upload_folder(folder_path="path/to/this/model", repo_id="you/ser-model", repo_type="model")',
        "```",
        "",
        "## Citation",
        "",
        "```bibtex",
        CITATION,
        "```",
        "",
        "## Licence",
        "",
    ]
    if kind == SYNTHETIC:
        lines += ["The code is Apache-2.0; the weights were trained on synthetic speech made for this "
                  "repository, under the same licence.", ""]
    else:
        lines += ["The weights were trained on MSP-Podcast, distributed by The University of Texas at Dallas "
                  "under an academic licence: its terms apply to this model and to what you do with it "
                  "(research use; check the licence before any other use or redistribution). The code is "
                  "Apache-2.0.", ""]
    return "\n".join(lines)


def render_model_card(package, manifest, fusion_dir=None, attribute_fusion_dir=None):
    """The card's text: YAML metadata (:func:`build_card_data`) and Markdown.

    Parameters
    ----------
    package : str or Path
        The package folder (its systems' ``metrics.json`` give the dev results without a fusion).
    manifest : dict
        Its ``ser_package.json``.
    fusion_dir, attribute_fusion_dir : str or Path, optional
        The fusion folders exported with it (their metrics give the dev tables).

    Example
    -------
    >>> manifest = {"systems": [{"name": "system_a", "label": "Sub-System A", "folder": "systems/system_a",
    ...             "uses_text": False, "training_data": "synthetic"}], "fusion": None}
    >>> text = render_model_card("/nonexistent", manifest)
    >>> text.splitlines()[0], "library_name: speechbrain" in text, TOY_WARNING in text
    ('---', True, True)
    >>> "trained on MSP" in text
    False
    """
    from huggingface_hub import ModelCard

    task1, confusion, note1 = _task1_columns(package, manifest, fusion_dir)
    task2, note2 = _task2_columns(package, manifest, attribute_fusion_dir)
    data = build_card_data(manifest, task1, task2)
    body = _body(manifest, task1, confusion, note1, task2, note2, _data_kind(manifest))
    return str(ModelCard(f"---\n{data.to_yaml()}\n---\n\n{body}"))


def write_model_card(package, manifest, fusion_dir=None, attribute_fusion_dir=None):
    """Write ``README.md`` into the package folder; returns its path."""
    path = Path(package) / "README.md"
    path.write_text(render_model_card(package, manifest, fusion_dir, attribute_fusion_dir), encoding="utf-8")
    return path
